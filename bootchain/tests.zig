//! Root of the host unit tests (`zig build test`): the hardware-free core modules. It
//! lives at the package top so tests can @embedFile crafted inputs from testdata/.
test {
    _ = @import("src/core/core.zig");
}
