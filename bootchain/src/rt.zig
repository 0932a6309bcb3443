//! Runtime shared by both stages: the Zig side of the entry, the console, the panic
//! handler and the hand-over. A stage's `main` gets the FDT pointer from x0 and the
//! address it runs at; it either jumps to the next image or prints why not and halts.
const std = @import("std");
const build_options = @import("build_options");

/// The machine layer selected at build time (`-Dplatform=`), checked at comptime.
pub const platform = switch (build_options.platform) {
    .qemu_virt => @import("platform/qemu_virt.zig"),
    .apple => @import("platform/apple.zig"),
};

comptime {
    @import("platform/interface.zig").check(platform);
}

/// Semantic version of this build (also embedded as the `##pippin_ver##` marker).
pub const version = build_options.version;

extern fn pippin_call_on_stack(arg: usize, func: *const fn (usize) callconv(.c) noreturn, stack_top: usize) noreturn;
extern fn pippin_jump(entry: usize, fdt: usize, x1: u64, x2: u64, x3: u64) noreturn;

/// x1 from stage 1 to stage 2 ("PIPPIN12"); x2 then holds the end of the loaded data
/// (after the forwarded variables), so stage 2 knows where free memory starts.
pub const handoff_magic: u64 = 0x3231_4e49_5050_4950;

/// Linker-script symbols: the image's first byte and the first byte after it.
extern const _head_base: u8;
extern const _image_end: u8;

/// Bytes [base, image end) that this image occupies in memory.
pub fn imageSpan() struct { base: usize, end: usize } {
    return .{ .base = @intFromPtr(&_head_base), .end = @intFromPtr(&_image_end) };
}

/// Print to the console (truncated at 512 bytes per call).
pub fn print(comptime fmt: []const u8, args: anytype) void {
    var buf: [512]u8 = undefined;
    const s = std.fmt.bufPrint(&buf, fmt, args) catch buf[0..];
    platform.consoleWrite(s);
}

/// Print one line "pippin <stage>: refusing to boot: <why>", then stop for good.
pub fn halt(stage: []const u8, comptime fmt: []const u8, args: anytype) noreturn {
    print("pippin {s}: refusing to boot: " ++ fmt ++ "\n", .{stage} ++ args);
    platform.halt();
}

/// Run `func(arg)` with the stack pointer at `stack_top` (16-byte aligned).
pub fn callOnStack(arg: usize, func: *const fn (usize) callconv(.c) noreturn, stack_top: usize) noreturn {
    pippin_call_on_stack(arg, func, stack_top & ~@as(usize, 15));
}

/// Enter a kernel at `entry` with x0 = `fdt`, x1..x3 = 0 (MMU and caches are off).
pub fn jump(entry: usize, fdt: usize) noreturn {
    pippin_jump(entry, fdt, 0, 0, 0);
}

/// Enter the next Pippin stage, telling it where the loaded file ends (x3; the forwarded
/// variables follow it) and where all its data ends (x2).
pub fn jumpStage(entry: usize, fdt: usize, file_end: usize, data_end: usize) noreturn {
    pippin_jump(entry, fdt, handoff_magic, data_end, file_end);
}

/// Reached only through a bug (ReleaseSafe checks): report it and halt, never boot on.
pub fn panicFn(msg: []const u8, first_trace_addr: ?usize) noreturn {
    _ = first_trace_addr;
    print("pippin: internal error: {s}\n", .{msg});
    platform.halt();
}

/// Emit the `##pippin_ver##<version>\0` and `##pippin_stage##<kind>\0` markers into the
/// header area (between the Image header and the entry at 0x800).
pub fn exportMarkers(comptime kind: []const u8) void {
    const ver = ("##pippin_ver##" ++ version ++ "\x00").*;
    const knd = ("##pippin_stage##" ++ kind ++ "\x00").*;
    @export(&struct {
        const v = ver;
    }.v, .{ .name = "pippin_version_marker", .section = ".rodata.marker" });
    @export(&struct {
        const k = knd;
    }.k, .{ .name = "pippin_stage_marker", .section = ".rodata.marker" });
}

const core = @import("core");

/// Scratch memory at the top of RAM, owned by the running stage (and left to the next
/// stage, which makes its own): virtqueues, a bounce block, the FDT being edited, a heap,
/// and the main stack at the very top.
pub const scratch_size = 8 << 20;
const queues_len = 64 << 10;
const bounce_len = 64 << 10;
/// Largest FDT we accept (the kernel's limit too).
pub const fdt_max = 2 << 20;
const stack_len = 512 << 10;

/// Everything a stage's main gets.
pub const Boot = struct {
    stage: []const u8,
    fdt_in: usize,
    ram_base: u64,
    ram_end: u64,
    image_base: usize,
    image_end: usize,
    scratch_base: usize,
    queues: []align(4096) u8,
    bounce: []align(4096) u8,
    fdt_buf: []align(4096) u8,
    heap: []align(4096) u8,
};

var boot_state: Boot = undefined;

fn overlaps(a0: u64, a1: u64, b0: u64, b1: u64) bool {
    return a0 < b1 and b0 < a1;
}

/// Validate the handed-over FDT, find RAM, claim the scratch area, switch to its stack
/// and run `main`. Runs on the small in-image early stack.
pub fn start(comptime stage: []const u8, fdt_addr: usize, comptime main: fn (*Boot) noreturn) noreturn {
    const span = imageSpan();
    print("pippin {s} {s} ({s}) at {d} us\n", .{ stage, version, platform.name, micros() });
    if (fdt_addr == 0 or fdt_addr % 8 != 0) halt(stage, "no device tree in x0 ({x})", .{fdt_addr});
    const head: [*]const u8 = @ptrFromInt(fdt_addr);
    const total = core.fdt.totalSize(head[0..8]) catch |e| halt(stage, "device tree at {x}: {t}", .{ fdt_addr, e });
    if (total > fdt_max) halt(stage, "device tree at {x} is {d} bytes (limit {d})", .{ fdt_addr, total, fdt_max });
    const f = core.fdt.Fdt.init(head[0..total]) catch |e| halt(stage, "device tree at {x}: {t}", .{ fdt_addr, e });
    const ram = platform.ramOf(f) catch |e| halt(stage, "device tree has no usable /memory: {t}", .{e});
    const ram_end = std.math.add(u64, ram.base, ram.size) catch halt(stage, "bad /memory range", .{});
    if (ram.size < 2 * scratch_size) halt(stage, "only {d} bytes of RAM", .{ram.size});
    const sbase: usize = @intCast(ram_end - scratch_size);
    if (overlaps(sbase, ram_end, span.base, span.end + 64 * 1024) or overlaps(sbase, ram_end, fdt_addr, fdt_addr + total))
        halt(stage, "image or device tree overlaps the scratch area at {x}", .{sbase});
    const s: [*]align(4096) u8 = @ptrFromInt(sbase);
    const heap_off = queues_len + bounce_len + fdt_max;
    boot_state = .{
        .stage = stage,
        .fdt_in = fdt_addr,
        .ram_base = ram.base,
        .ram_end = ram_end,
        .image_base = span.base,
        .image_end = span.end,
        .scratch_base = sbase,
        .queues = s[0..queues_len],
        .bounce = @alignCast(s[queues_len..][0..bounce_len]),
        .fdt_buf = @alignCast(s[queues_len + bounce_len ..][0..fdt_max]),
        .heap = @alignCast(s[heap_off .. scratch_size - stack_len]),
    };
    @memset(s[0 .. queues_len + bounce_len], 0); // the FDT buffer and heap need no zeroing
    const T = struct {
        fn tramp(arg: usize) callconv(.c) noreturn {
            main(@ptrFromInt(arg));
        }
    };
    callOnStack(@intFromPtr(&boot_state), T.tramp, sbase + scratch_size);
}

/// The platform disk as the core's block device.
pub fn blockDev(d: *platform.Disk) core.blockdev.BlockDev {
    const A = struct {
        fn read(ctx: *anyopaque, lba: u64, buf: []u8) core.blockdev.Error!void {
            const disk: *platform.Disk = @ptrCast(@alignCast(ctx));
            disk.readBlocks(lba, buf) catch |e| {
                print("pippin: disk read at block {d} failed: {t}\n", .{ lba, e });
                return error.IoError;
            };
        }
    };
    return .{ .ctx = d, .readFn = A.read, .block_size = d.block_size, .block_count = d.block_count };
}

/// The bytes of an arm64 Image header that a loader needs, checked.
pub const ImageInfo = struct { text_offset: u64, image_size: u64 };

/// Parse an arm64 Image header at the start of `b`.
pub fn imageInfo(b: []const u8) ?ImageInfo {
    if (b.len < 64 or !std.mem.eql(u8, b[0x38..0x3c], "ARM\x64")) return null;
    return .{
        .text_offset = std.mem.readInt(u64, b[8..16], .little),
        .image_size = std.mem.readInt(u64, b[16..24], .little),
    };
}

/// Fill `out` with seed material: the CPU's RNDR when it has one (FEAT_RNG), always mixed
/// with the counter through SHA-256 so a missing RNG still gives per-boot values.
pub fn random(out: []u8) void {
    const Sha256 = std.crypto.hash.sha2.Sha256;
    var block: u64 = 0;
    var filled: usize = 0;
    while (filled < out.len) : (block += 1) {
        var h = Sha256.init(.{});
        const cnt = asm volatile ("mrs %[r], cntpct_el0"
            : [r] "=r" (-> u64),
        );
        h.update(std.mem.asBytes(&cnt));
        h.update(std.mem.asBytes(&block));
        const isar0 = asm volatile ("mrs %[r], id_aa64isar0_el1"
            : [r] "=r" (-> u64),
        );
        if (isar0 >> 60 != 0) {
            var i: usize = 0;
            while (i < 4) : (i += 1) {
                const r = asm volatile ("mrs %[r], s3_3_c2_c4_0" // RNDR
                    : [r] "=r" (-> u64),
                );
                h.update(std.mem.asBytes(&r));
            }
        }
        var d: [32]u8 = undefined;
        h.final(&d);
        const n = @min(d.len, out.len - filled);
        @memcpy(out[filled..][0..n], d[0..n]);
        filled += n;
    }
}

/// Microseconds since the machine's counter started (reset on QEMU), for boot timing.
pub fn micros() u64 {
    const cnt = asm volatile ("mrs %[r], cntpct_el0"
        : [r] "=r" (-> u64),
    );
    const freq = asm volatile ("mrs %[r], cntfrq_el0"
        : [r] "=r" (-> u64),
    );
    if (freq == 0) return 0;
    return @intCast(@as(u128, cnt) * 1_000_000 / freq);
}

/// gzip's CRC-32 with the ARMv8 CRC32 instructions, 8 bytes per step on aligned words
/// (strict alignment: the head and tail go byte by byte).
pub fn crc32(data: []const u8) u32 {
    var c: u32 = 0xffff_ffff;
    var i: usize = 0;
    while (i < data.len and (@intFromPtr(data.ptr) + i) % 8 != 0) : (i += 1) c = crc32b(c, data[i]);
    while (i + 8 <= data.len) : (i += 8) {
        const w: *const u64 = @ptrCast(@alignCast(data.ptr + i));
        c = asm ("crc32x %[out:w], %[in:w], %[w:x]"
            : [out] "=r" (-> u32),
            : [in] "r" (c),
              [w] "r" (w.*),
        );
    }
    while (i < data.len) : (i += 1) c = crc32b(c, data[i]);
    return ~c;
}

fn crc32b(c: u32, b: u8) u32 {
    return asm ("crc32b %[out:w], %[in:w], %[b:w]"
        : [out] "=r" (-> u32),
        : [in] "r" (c),
          [b] "r" (@as(u32, b)),
    );
}

/// Copy `src` to 8-byte-aligned `dst` a word at a time whatever `src`'s alignment (aligned
/// loads merged with shifts: strict alignment). May read up to 7 bytes past `src`'s end
/// (inside the same RAM), never writes past `dst`'s.
pub fn copyToAligned(dst: []u8, src: []const u8) void {
    std.debug.assert(dst.len == src.len and @intFromPtr(dst.ptr) % 8 == 0);
    const n = src.len / 8;
    const d: [*]u64 = @ptrCast(@alignCast(dst.ptr));
    const sa = @intFromPtr(src.ptr);
    const shift: u6 = @intCast((sa % 8) * 8);
    const s: [*]const u64 = @ptrFromInt(sa - sa % 8);
    const rs: u6 = @intCast((64 - @as(u7, shift)) % 64);
    if (shift == 0) {
        for (0..n) |k| d[k] = s[k];
    } else if (n > 0) {
        var w0 = s[0];
        var k: usize = 0;
        while (k + 2 <= n) : (k += 2) { // two words per turn: fewer loop overheads
            const w1 = s[k + 1];
            const w2 = s[k + 2];
            d[k] = (w0 >> shift) | (w1 << rs);
            d[k + 1] = (w1 >> shift) | (w2 << rs);
            w0 = w2;
        }
        if (k < n) d[k] = (w0 >> shift) | (s[k + 1] << rs);
    }
    @memcpy(dst[n * 8 ..], src[n * 8 ..]);
}
