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
extern fn pippin_jump(entry: usize, fdt: usize) noreturn;

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

/// Enter the next image at `entry` with x0 = `fdt`, x1..x3 = 0 (MMU and caches are off).
pub fn jump(entry: usize, fdt: usize) noreturn {
    pippin_jump(entry, fdt);
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
