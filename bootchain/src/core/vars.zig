//! Appended configuration variables (formats.md §2): `name=value\n` lines ended by four NUL
//! bytes (or the end of the data). Untrusted: every line is bounded and validated.
const std = @import("std");
const mem = std.mem;

/// Longest variable name.
pub const max_name = 64;
/// Longest value.
pub const max_value = 1024;
/// Most `chosen.*` variables in one block.
pub const max_chosen = 16;
/// The block terminator.
pub const terminator = "\x00\x00\x00\x00";

/// What can be wrong with a variable block.
pub const Error = error{ BadName, NameTooLong, ValueTooLong, MissingEquals, Unterminated, StrayNul, TooManyChosen, BadValue };

/// One `name=value` line (slices into the block).
pub const Var = struct {
    name: []const u8,
    value: []const u8,

    /// The FDT property for a `chosen.<prop>` variable, else null.
    pub fn chosenProp(v: Var) ?[]const u8 {
        if (!mem.startsWith(u8, v.name, "chosen.")) return null;
        return v.name["chosen.".len..];
    }
};

/// Iterates the lines of a block starting at `data[0]`.
pub const Iterator = struct {
    data: []const u8,
    pos: usize = 0,
    done: bool = false,
    chosen: usize = 0,

    /// The next variable, null at the terminator or the end of data.
    pub fn next(it: *Iterator) Error!?Var {
        if (it.done) return null;
        const rest = it.data[it.pos..];
        if (rest.len == 0) {
            it.done = true;
            return null;
        }
        if (rest[0] == 0) {
            if (rest.len >= 4 and mem.eql(u8, rest[0..4], terminator)) {
                it.pos += 4;
                it.done = true;
                return null;
            }
            if (mem.allEqual(u8, rest, 0)) { // fewer than 4 NULs, then the end of data
                it.pos = it.data.len;
                it.done = true;
                return null;
            }
            return error.StrayNul;
        }
        const v = try parseLine(rest);
        it.pos += v.len;
        if (v.v.chosenProp() != null) {
            it.chosen += 1;
            if (it.chosen > max_chosen) return error.TooManyChosen;
        }
        return v.v;
    }

    /// Offset just past the block (after its terminator), valid once `next` returned null.
    pub fn end(it: Iterator) usize {
        return it.pos;
    }
};

/// Parse one line at the start of `b`; returns the variable and the line length with `\n`.
pub fn parseLine(b: []const u8) Error!struct { v: Var, len: usize } {
    const limit = @min(b.len, max_name + 1 + max_value + 1);
    const nl = mem.indexOfScalar(u8, b[0..limit], '\n') orelse
        return if (limit == b.len) error.Unterminated else error.ValueTooLong;
    const line = b[0..nl];
    const eq = mem.indexOfScalar(u8, line, '=') orelse return error.MissingEquals;
    const name = line[0..eq];
    const value = line[eq + 1 ..];
    if (name.len == 0) return error.BadName;
    if (name.len > max_name) return error.NameTooLong;
    if (value.len > max_value) return error.ValueTooLong;
    for (name) |c| if (c <= 0x20 or c >= 0x7f) return error.BadName;
    for (value) |c| if (c == 0 or c == '\r') return error.BadValue;
    return .{ .v = .{ .name = name, .value = value }, .len = nl + 1 };
}

/// Whether `b` starts with one well-formed variable line (used by the payload scanner).
pub fn startsWithLine(b: []const u8) bool {
    _ = parseLine(b) catch return false;
    return true;
}

/// A parsed `chainload=<PARTUUID>;<path>` value.
pub const Chainload = struct { partuuid: [16]u8, path: []const u8 };

/// Errors of the chainload/key values.
pub const ValueError = error{ BadChainload, BadGuid, BadKey };

/// Parse `<uuid>;<path>`; the path must be non-empty and relative.
pub fn parseChainload(value: []const u8) ValueError!Chainload {
    const semi = mem.indexOfScalar(u8, value, ';') orelse return error.BadChainload;
    const guid = parseGuid(value[0..semi]) orelse return error.BadGuid;
    const path = mem.trimStart(u8, value[semi + 1 ..], "/");
    if (path.len == 0) return error.BadChainload;
    return .{ .partuuid = guid, .path = path };
}

/// Parse `ed25519:<64 hex>` into a public key.
pub fn parseKey(value: []const u8) ValueError![32]u8 {
    const prefix = "ed25519:";
    if (!mem.startsWith(u8, value, prefix) or value.len != prefix.len + 64) return error.BadKey;
    var key: [32]u8 = undefined;
    _ = std.fmt.hexToBytes(&key, value[prefix.len..]) catch return error.BadKey;
    return key;
}

/// Text GUID (any case) to its on-disk bytes: the first three groups little-endian.
pub fn parseGuid(s: []const u8) ?[16]u8 {
    if (s.len != 36 or s[8] != '-' or s[13] != '-' or s[18] != '-' or s[23] != '-') return null;
    var hex: [32]u8 = undefined;
    var n: usize = 0;
    for (s) |c| {
        if (c == '-') continue;
        if (n == 32) return null;
        hex[n] = c;
        n += 1;
    }
    var raw: [16]u8 = undefined;
    _ = std.fmt.hexToBytes(&raw, &hex) catch return null;
    var out = raw;
    // Mixed endian: u32, u16, u16 little-endian, then 8 bytes as written.
    for (0..4) |i| out[i] = raw[3 - i];
    out[4] = raw[5];
    out[5] = raw[4];
    out[6] = raw[7];
    out[7] = raw[6];
    return out;
}

const testing = std.testing;

test "vars: a block with chainload and chosen lines" {
    const block = "chosen.asahi,efi-system-partition=0b0f4e5a-3f2d-4a51-9c3e-2d1f0e9a8b7c\n" ++
        "chainload=0b0f4e5a-3f2d-4a51-9c3e-2d1f0e9a8b7c;m1n1/boot.bin\n" ++ terminator ++ "junk";
    var it: Iterator = .{ .data = block };
    const a = (try it.next()).?;
    try testing.expectEqualStrings("asahi,efi-system-partition", a.chosenProp().?);
    const b = (try it.next()).?;
    const cl = try parseChainload(b.value);
    try testing.expectEqualStrings("m1n1/boot.bin", cl.path);
    try testing.expectEqualSlices(u8, &.{ 0x5a, 0x4e, 0x0f, 0x0b, 0x2d, 0x3f, 0x51, 0x4a, 0x9c, 0x3e }, cl.partuuid[0..10]);
    try testing.expectEqual(null, try it.next());
    try testing.expectEqual(block.len - 4, it.end());
}

test "vars: hostile blocks are errors" {
    const cases = .{
        .{ "novalue\n", error.MissingEquals },
        .{ "=x\n", error.BadName },
        .{ "a b=x\n", error.BadName },
        .{ "a=x", error.Unterminated },
        .{ "a=x\n\x00z", error.StrayNul },
        .{ "\n", error.MissingEquals },
        .{ "a=b\rc\n", error.BadValue },
    };
    inline for (cases) |c| {
        var it: Iterator = .{ .data = c[0] };
        const r = blk: {
            while (true) _ = (it.next() catch |e| break :blk e) orelse break :blk error.NoError;
        };
        try testing.expectEqual(@as(anyerror, c[1]), r);
    }
    var long: [max_name + 3]u8 = @splat('n');
    long[max_name + 1] = '=';
    long[max_name + 2] = '\n';
    try testing.expectError(error.NameTooLong, parseLine(&long));
    var many: [17 * 11]u8 = undefined;
    for (0..17) |i| @memcpy(many[i * 11 ..][0..11], "chosen.a=b\n");
    var it: Iterator = .{ .data = &many };
    const r = blk: {
        while (true) _ = (it.next() catch |e| break :blk e) orelse break :blk error.NoError;
    };
    try testing.expectEqual(@as(anyerror, error.TooManyChosen), r);
    try testing.expectError(error.BadGuid, parseChainload("zz;m1n1/boot.bin"));
    try testing.expectError(error.BadChainload, parseChainload("0b0f4e5a-3f2d-4a51-9c3e-2d1f0e9a8b7c;"));
    try testing.expectError(error.BadKey, parseKey("ed25519:00"));
    const file = @embedFile("../../testdata/vars-no-equals.txt");
    var fit: Iterator = .{ .data = file };
    _ = try fit.next();
    try testing.expectError(error.MissingEquals, fit.next());
}

fn fuzzOne(_: void, smith: *std.testing.Smith) anyerror!void {
    var buf: [2048]u8 = undefined;
    const input = buf[0..smith.slice(&buf)];
    var it: Iterator = .{ .data = input };
    var n: usize = 0;
    while (n < 4096) : (n += 1) {
        const v = (it.next() catch return) orelse break;
        _ = parseChainload(v.value) catch {};
        _ = parseKey(v.value) catch {};
    }
    try testing.expect(it.end() <= input.len);
}

test "vars: fuzz" {
    try std.testing.fuzz({}, fuzzOne, .{ .corpus = &.{"chainload=0b0f4e5a-3f2d-4a51-9c3e-2d1f0e9a8b7c;m1n1/boot.bin\n\x00\x00\x00\x00"} });
}
