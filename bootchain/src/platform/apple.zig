//! Apple Silicon platform: documented stub, NOT validated (no hardware here). It compiles
//! so the interface stays honest; every entry point halts. What a real implementation needs:
//!
//! - Console: the boot-time framebuffer or the debug UART (`uart0` in the ADT, Samsung-style
//!   UART); iBoot hands over `boot_args` in x0, not an FDT, so `init` must parse
//!   boot_args (revision, virtual/physical base, memory size, device tree (ADT) pointer).
//! - RAM: `boot_args.phys_base` / `mem_size`, minus the carve-outs listed in the ADT.
//! - Disk: ANS2 NVMe (the SART/RTKit co-processor must be brought up first; the mailbox
//!   and NVMe queues live in the ADT's `ans` node). Logical blocks are 4096 bytes.
//! - The FDT for Linux comes from the stage-2 payloads (chosen by `apple,<target-type>`),
//!   and must be fixed up from the ADT (memory, serial numbers, MAC addresses).
//! - `halt`: the PMGR/`wdt` reboot or a spin; there is no PSCI.
const core = @import("core");

/// Platform name printed in the banner.
pub const name = "apple (stub)";
/// Real value: `apple,<target-type lowercase>` from the ADT (e.g. `apple,j274`).
pub const machine_compatible = "apple,unknown";
/// Errors of `init`.
pub const InitError = core.fdt.Error || error{ NoMemoryNode, Unsupported };
/// Errors of a block read.
pub const BlockError = error{IoError};

/// An ANS2 NVMe namespace (not implemented).
pub const Disk = struct {
    block_size: u32 = 4096,
    block_count: u64 = 0,
    /// Always fails in the stub.
    pub fn readBlocks(_: *Disk, _: u64, _: []u8) BlockError!void {
        return error.IoError;
    }
};

/// Same shape as qemu_virt.Machine.
pub const Machine = struct {
    ram_base: u64,
    ram_size: u64,
    disks: [1]Disk = undefined,
    disk_count: usize = 0,
};

/// No console in the stub.
pub fn consoleWrite(_: []const u8) void {}

/// Spin (no PSCI on Apple machines).
pub fn halt() noreturn {
    while (true) asm volatile ("wfe");
}

/// On Apple machines U-Boot is built with an Image header and takes the FDT from x0
/// (booted as a kernel); a headerless firmware payload has no defined place.
pub fn firmwareFdtAddr(_: u64) ?u64 {
    return null;
}

/// Would read boot_args; unsupported in the stub.
pub fn ramOf(_: core.fdt.Fdt) InitError!struct { base: u64, size: u64 } {
    return error.Unsupported;
}

/// Would bring up ADT, console and NVMe; unsupported in the stub.
pub fn init(_: core.fdt.Fdt, _: []align(4096) u8) InitError!Machine {
    return error.Unsupported;
}
