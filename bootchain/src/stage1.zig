//! Stage 1: parse the appended variables, find the `chainload=` partition on a disk, read
//! stage 2 from its FAT filesystem, verify it when `chainload.key` is set, append the
//! forwarded `chosen.*` variables and jump to it. Any failure prints one line and halts.
const std = @import("std");
const core = @import("core");
const rt = @import("rt.zig");

pub const panic = std.debug.FullPanic(rt.panicFn);

comptime {
    rt.exportMarkers("stage1");
    @export(&entry, .{ .name = "pippin_entry" });
}

const stage = "stage1";

fn entry(fdt_addr: usize, base: usize) callconv(.c) noreturn {
    _ = base;
    const span = rt.imageSpan();
    rt.print("pippin stage1 {s} on {s}: image {x}..{x}, fdt {x}\n", .{ rt.version, rt.platform.name, span.base, span.end, fdt_addr });
    rt.halt(stage, "not implemented", .{});
}
