//! QEMU `virt` machine: PL011 console, virtio-mmio block devices and PSCI, all found in
//! the FDT that QEMU (or the previous stage) passes in x0.
const std = @import("std");
const core = @import("core");
const virtio = @import("virtio_blk.zig");

/// Platform name printed in the banner.
pub const name = "qemu-virt";
/// Compatible string of the machine (for choosing among appended FDTs).
pub const machine_compatible = "linux,dummy-virt";
/// Most block devices we look at (each needs `virtio.queue_mem` bytes of scratch).
pub const max_disks = 4;

/// Errors of `init`.
pub const InitError = core.fdt.Error || error{ NoMemoryNode, NoScratch };
/// Errors of a block read.
pub const BlockError = virtio.Error;
/// One disk.
pub const Disk = virtio.Disk;

var uart: usize = 0x0900_0000; // QEMU virt default until the FDT says otherwise
var psci_smc: bool = true; // virt with virtualization=on and no firmware: PSCI via SMC

/// What the stages need to know about the machine.
pub const Machine = struct {
    ram_base: u64,
    ram_size: u64,
    disks: [max_disks]Disk = undefined,
    disk_count: usize = 0,
};

/// Write to the PL011 (polling the TX FIFO-full flag).
pub fn consoleWrite(s: []const u8) void {
    const dr: *volatile u32 = @ptrFromInt(uart);
    const fr: *volatile u32 = @ptrFromInt(uart + 0x18);
    for (s) |c| {
        if (c == '\n') {
            while (fr.* & (1 << 5) != 0) {}
            dr.* = '\r';
        }
        while (fr.* & (1 << 5) != 0) {}
        dr.* = c;
    }
}

/// PSCI SYSTEM_OFF; spin if the call returns.
pub fn halt() noreturn {
    const system_off: u64 = 0x8400_0008;
    if (psci_smc) {
        asm volatile (".inst 0xd4000003 // smc #0"
            :
            : [fid] "{x0}" (system_off),
            : .{ .memory = true });
    } else {
        asm volatile (".inst 0xd4000002 // hvc #0"
            :
            : [fid] "{x0}" (system_off),
            : .{ .memory = true });
    }
    while (true) asm volatile ("wfe");
}

/// U-Boot for QEMU virt (OF_BOARD) reads its control device tree from the start of RAM,
/// where QEMU itself puts the tree when it runs firmware (formats.md §14).
pub fn firmwareFdtAddr(ram_base: u64) ?u64 {
    return ram_base;
}

/// RAM from /memory (needed before anything else, to place the scratch area).
pub fn ramOf(f: core.fdt.Fdt) InitError!struct { base: u64, size: u64 } {
    const node = (try f.findNode("/memory")) orelse return error.NoMemoryNode;
    const r = (try f.reg(node)) orelse return error.NoMemoryNode;
    return .{ .base = r.addr, .size = r.size };
}

/// Find the console, PSCI conduit, RAM and virtio block devices. `scratch` (zeroed,
/// 4 KiB-aligned) holds the virtqueues.
pub fn init(f: core.fdt.Fdt, scratch: []align(4096) u8) InitError!Machine {
    if (try f.findCompatible("arm,pl011", null)) |n| {
        if (try f.reg(n)) |r| uart = @intCast(r.addr);
    }
    if (try f.findNode("/psci")) |n| {
        if (try f.prop(n, "method")) |m| psci_smc = std.mem.startsWith(u8, m, "smc");
    }
    const ram = try ramOf(f);
    var m: Machine = .{ .ram_base = ram.base, .ram_size = ram.size };
    var node: ?usize = null;
    var used: usize = 0;
    while (m.disk_count < max_disks) {
        node = (try f.findCompatible("virtio,mmio", node)) orelse break;
        const r = (try f.reg(node.?)) orelse continue;
        if (used + virtio.queue_mem > scratch.len) return error.NoScratch;
        const q: []align(4096) u8 = @alignCast(scratch[used..][0..virtio.queue_mem]);
        if (virtio.Disk.probe(@intCast(r.addr), q)) |d| {
            m.disks[m.disk_count] = d;
            m.disk_count += 1;
            used += virtio.queue_mem;
        }
    }
    return m;
}
