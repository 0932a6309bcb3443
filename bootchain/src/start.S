/* arm64 Image header at offset 0 and the entry at 0x800 (shared by both stages).
 *
 * The header makes the stage bootable by anything that boots a Linux arm64 Image (QEMU
 * -kernel, our own stage 1); its first word branches to 0x800, which is also where
 * `kmutil configure-boot --raw --entry-point 2048` starts execution.
 *
 * Entry state: x0 = FDT (Linux boot protocol; may be 0 on platforms without one),
 * MMU and D-cache off. We apply our own R_AARCH64_RELATIVE fixups (the image is a PIE
 * linked at 0), switch to the in-image early stack, and call
 * pippin_entry(fdt, base, x1, x2, x3) with x1..x3 as received (the Pippin hand-over). */

#define R_AARCH64_RELATIVE 1027

    .section .text.head, "ax"
    .globl _head
_head:
    b       _start                  /* code0: to the entry at 0x800 */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset */
    .quad   _image_size             /* image_size: file bytes (bss and stack included) */
    .quad   0xa                     /* flags: LE, 4 KiB pages, anywhere in RAM */
    .quad   0, 0, 0                 /* res2..res4 */
    .ascii  "ARM\x64"               /* magic */
    .long   0                       /* res5 (no PE header) */

    .section .text.entry, "ax"
    .globl _start
_start:
    mov     x19, x0                 /* FDT pointer from the previous stage */
    adr     x20, _head              /* where we actually run */
    mov     x21, x1                 /* Pippin hand-over: magic, data end, file end */
    mov     x22, x2
    mov     x23, x3

    /* Apply R_AARCH64_RELATIVE fixups: *(base + off) = base + addend. */
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
1:  cmp     x1, x2
    b.hs    3f
    ldp     x3, x4, [x1]            /* r_offset, r_info */
    ldr     x5, [x1, #16]           /* r_addend */
    add     x1, x1, #24
    cmp     x4, #R_AARCH64_RELATIVE
    b.ne    2f                      /* anything else is a build bug: stop here */
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       1b
2:  wfe
    b       2b
3:
    adrp    x1, __early_stack_top
    add     x1, x1, :lo12:__early_stack_top
    mov     sp, x1
    mov     x29, #0
    mov     x30, #0
    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    mov     x3, x22
    mov     x4, x23
    bl      pippin_entry
4:  wfe
    b       4b

/* pippin_call_on_stack(arg, fn, stack_top): run fn(arg) on another stack (never returns). */
    .text
    .globl pippin_call_on_stack
pippin_call_on_stack:
    mov     sp, x2
    mov     x29, #0
    mov     x30, #0
    blr     x1
5:  wfe
    b       5b

/* pippin_jump(entry, fdt, x1, x2, x3): hand over with x0 = FDT, x1..x3 as given (0 for a
 * kernel). Caches and the MMU are off (nothing here ever turned them on). */
    .globl pippin_jump
pippin_jump:
    mov     x16, x0
    mov     x0, x1
    mov     x1, x2
    mov     x2, x3
    mov     x3, x4
    dsb     sy
    isb
    ic      iallu
    dsb     sy
    isb
    br      x16

/* The early stack and an end tag, as file-backed bytes (see link.ld). */
    .section .pippin.stack, "aw", %progbits
    .balign 16
    .space  0x2000                  /* rt.start needs < 2 KiB; the main stack is in scratch */
    .globl __early_stack_top
__early_stack_top:
    .section .pippin.end, "aw", %progbits
    .ascii  "PEND"                  /* the image's last bytes are never NUL */
