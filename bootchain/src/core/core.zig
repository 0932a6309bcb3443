//! Hardware-free core of the boot chain, shared by both stages and tested on the host.
//! Every parser here treats its input as hostile: lengths are checked, errors are values.
pub const fdt = @import("fdt.zig");
pub const vars = @import("vars.zig");
pub const blockdev = @import("blockdev.zig");
pub const gpt = @import("gpt.zig");
pub const fat = @import("fat.zig");
pub const sig = @import("sig.zig");
pub const payload = @import("payload.zig");
pub const xz = @import("xz.zig");
pub const inflate = @import("inflate.zig");

test {
    @import("std").testing.refAllDecls(@This());
}
