//! What a machine layer must provide. `check` runs at comptime on the selected module, so a
//! platform missing a declaration (or with a wrong signature) does not build.
//!
//! - `name`, `machine_compatible` (the FDT compatible stage 2 prefers among payload DTBs).
//! - `consoleWrite([]const u8) void`: best-effort output, usable before `init`.
//! - `halt() noreturn`: power off (or spin) without booting anything.
//! - `ramOf(Fdt)`: RAM base/size, needed before `init` to place the scratch area.
//! - `init(Fdt, scratch) InitError!Machine`: console, RAM and block devices from the
//!   firmware's description (FDT on qemu-virt; ADT + iBoot boot_args on Apple).
//! - `firmwareFdtAddr(ram_base) ?u64`: where a UEFI firmware payload (U-Boot) reads its
//!   device tree, or null when the platform has no such place.
//! - `Disk.readBlocks(*Disk, lba, buf) BlockError!void`, `Disk.block_size`, `Disk.block_count`.
const core = @import("core");

/// Fail the build when `P` lacks part of the platform interface.
pub fn check(comptime P: type) void {
    const need = .{ "name", "machine_compatible", "init", "ramOf", "consoleWrite", "halt", "Machine", "Disk", "InitError", "BlockError", "firmwareFdtAddr" };
    for (need) |decl| {
        if (!@hasDecl(P, decl)) @compileError("platform lacks `" ++ decl ++ "`");
    }
    _ = @as(fn ([]const u8) void, P.consoleWrite);
    _ = @as(fn () noreturn, P.halt);
    _ = @as(fn (core.fdt.Fdt, []align(4096) u8) P.InitError!P.Machine, P.init);
    _ = @as(fn (*P.Disk, u64, []u8) P.BlockError!void, P.Disk.readBlocks);
    _ = @as(fn (u64) ?u64, P.firmwareFdtAddr);
    if (!@hasField(P.Machine, "disks") or !@hasField(P.Machine, "disk_count")) @compileError("Machine needs disks/disk_count");
    if (!@hasField(P.Disk, "block_size") or !@hasField(P.Disk, "block_count")) @compileError("Disk needs block_size/block_count");
}
