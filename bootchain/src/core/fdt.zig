//! Flattened device tree (DTB) reader and editor. The blob is untrusted: every offset and
//! length is checked against the header and the slice, and bad data is an error value.
//! The editor works in a caller-provided buffer and grows the blob inside it.
const std = @import("std");
const mem = std.mem;

/// FDT header magic (big-endian on disk).
pub const magic: u32 = 0xd00dfeed;
const header_len = 40;
const token_begin: u32 = 1;
const token_end: u32 = 2;
const token_prop: u32 = 3;
const token_nop: u32 = 4;
const token_fin: u32 = 9;

/// Everything that can be wrong with a blob or an edit.
pub const Error = error{ BadMagic, Truncated, BadVersion, BadStructure, NoSpace, NotFound };

fn be32(b: []const u8, off: usize) Error!u32 {
    const end = std.math.add(usize, off, 4) catch return error.Truncated;
    if (end > b.len) return error.Truncated;
    return mem.readInt(u32, b[off..][0..4], .big);
}

fn put32(b: []u8, off: usize, v: u32) void {
    mem.writeInt(u32, b[off..][0..4], v, .big);
}

fn pad4(n: usize) usize {
    return (n + 3) & ~@as(usize, 3);
}

/// Size a blob claims in its header, after checking the magic (for the payload scanner).
pub fn totalSize(b: []const u8) Error!u32 {
    if (try be32(b, 0) != magic) return error.BadMagic;
    const total = try be32(b, 4);
    if (total < header_len) return error.BadStructure;
    return total;
}

/// A validated, read-only view of a blob.
pub const Fdt = struct {
    blob: []const u8,
    structs: []const u8,
    strings: []const u8,
    rsvmap_off: u32,

    /// Check the header and that the blocks lie inside the blob (and `b`).
    pub fn init(b: []const u8) Error!Fdt {
        const total = try totalSize(b);
        if (total > b.len) return error.Truncated;
        const blob = b[0..total];
        const version = try be32(blob, 20);
        const last_comp = try be32(blob, 24);
        if (version < 16 or last_comp > 17) return error.BadVersion;
        const off_struct = try be32(blob, 8);
        const off_strings = try be32(blob, 12);
        const off_rsv = try be32(blob, 16);
        const size_strings = try be32(blob, 32);
        const size_struct = try be32(blob, 36);
        const s_end = std.math.add(u64, off_struct, size_struct) catch return error.BadStructure;
        const t_end = std.math.add(u64, off_strings, size_strings) catch return error.BadStructure;
        if (s_end > total or t_end > total or off_rsv > total) return error.BadStructure;
        if (off_struct % 4 != 0 or off_rsv % 8 != 0) return error.BadStructure;
        return .{
            .blob = blob,
            .structs = blob[off_struct..@intCast(s_end)],
            .strings = blob[off_strings..@intCast(t_end)],
            .rsvmap_off = off_rsv,
        };
    }

    /// One structure token with its decoded payload.
    pub const Token = union(enum) {
        begin: struct { name: []const u8, off: usize },
        end: usize,
        prop: struct { name: []const u8, value: []const u8, off: usize },
        fin,
    };

    /// Decode the token at `off`; returns it and the offset of the next one.
    pub fn tokenAt(f: Fdt, off: usize) Error!struct { tok: Token, next: usize } {
        var o = off;
        while (true) {
            const t = try be32(f.structs, o);
            switch (t) {
                token_nop => o += 4,
                token_begin => {
                    const rest = f.structs[o + 4 ..];
                    const n = mem.indexOfScalar(u8, rest, 0) orelse return error.BadStructure;
                    const next = std.math.add(usize, o + 4, pad4(n + 1)) catch return error.BadStructure;
                    if (next > f.structs.len) return error.BadStructure;
                    return .{ .tok = .{ .begin = .{ .name = rest[0..n], .off = o } }, .next = next };
                },
                token_end => return .{ .tok = .{ .end = o }, .next = o + 4 },
                token_prop => {
                    const len = try be32(f.structs, o + 4);
                    const nameoff = try be32(f.structs, o + 8);
                    const vstart = o + 12;
                    const vend = std.math.add(usize, vstart, len) catch return error.BadStructure;
                    if (vend > f.structs.len) return error.BadStructure;
                    if (nameoff >= f.strings.len) return error.BadStructure;
                    const nrest = f.strings[nameoff..];
                    const nlen = mem.indexOfScalar(u8, nrest, 0) orelse return error.BadStructure;
                    return .{
                        .tok = .{ .prop = .{ .name = nrest[0..nlen], .value = f.structs[vstart..vend], .off = o } },
                        .next = pad4(vend),
                    };
                },
                token_fin => return .{ .tok = .fin, .next = o + 4 },
                else => return error.BadStructure,
            }
        }
    }

    /// Offset of the node at `path` ("/", "/chosen", "/memory" matches "memory@…").
    pub fn findNode(f: Fdt, path: []const u8) Error!?usize {
        var it = mem.tokenizeScalar(u8, path, '/');
        var node: usize = 0;
        const first = try f.tokenAt(0);
        if (first.tok != .begin) return error.BadStructure;
        while (it.next()) |want| {
            node = (try f.child(node, want)) orelse return null;
        }
        return node;
    }

    /// Direct child of the node at `node` named `want` (unit address optional).
    pub fn child(f: Fdt, node: usize, want: []const u8) Error!?usize {
        var t = try f.tokenAt(node);
        var off = t.next;
        var depth: usize = 0;
        var steps: usize = 0;
        while (steps < f.structs.len) : (steps += 1) {
            t = try f.tokenAt(off);
            switch (t.tok) {
                .begin => |b| {
                    if (depth == 0 and nameMatches(b.name, want)) return b.off;
                    depth += 1;
                },
                .end => {
                    if (depth == 0) return null;
                    depth -= 1;
                },
                .prop => {},
                .fin => return error.BadStructure,
            }
            off = t.next;
        }
        return error.BadStructure;
    }

    /// Value of property `name` of the node at `node`, or null.
    pub fn prop(f: Fdt, node: usize, name: []const u8) Error!?[]const u8 {
        var t = try f.tokenAt(node);
        while (true) {
            t = try f.tokenAt(t.next);
            switch (t.tok) {
                .prop => |p| if (mem.eql(u8, p.name, name)) return p.value,
                else => return null,
            }
        }
    }

    /// Offset of the first node after `after` (exclusive; null = from the start) whose
    /// `compatible` list contains `compat`.
    pub fn findCompatible(f: Fdt, compat: []const u8, after: ?usize) Error!?usize {
        var off: usize = 0;
        var steps: usize = 0;
        while (steps < f.structs.len) : (steps += 1) {
            const t = try f.tokenAt(off);
            switch (t.tok) {
                .begin => |b| if (after == null or b.off > after.?) {
                    if (try f.prop(b.off, "compatible")) |c| {
                        if (listContains(c, compat)) return b.off;
                    }
                },
                .fin => return null,
                else => {},
            }
            off = t.next;
        }
        return error.BadStructure;
    }

    /// Whether the root node's `compatible` contains `compat`.
    pub fn machineIs(f: Fdt, compat: []const u8) Error!bool {
        const c = (try f.prop(0, "compatible")) orelse return false;
        return listContains(c, compat);
    }

    /// First (address, size) of a node's `reg`, with 2 address and 2 size cells (the
    /// layout of the root's children on arm64) unless the root says otherwise.
    pub fn reg(f: Fdt, node: usize) Error!?struct { addr: u64, size: u64 } {
        const acells = try f.cells("#address-cells", 2);
        const scells = try f.cells("#size-cells", 1);
        const r = (try f.prop(node, "reg")) orelse return null;
        const need = (acells + scells) * 4;
        if (r.len < need or acells > 2 or scells > 2) return error.BadStructure;
        return .{ .addr = readCells(r[0 .. acells * 4]), .size = readCells(r[acells * 4 .. need]) };
    }

    fn cells(f: Fdt, name: []const u8, default: usize) Error!usize {
        const v = (try f.prop(0, name)) orelse return default;
        if (v.len != 4) return error.BadStructure;
        return mem.readInt(u32, v[0..4], .big);
    }
};

fn readCells(b: []const u8) u64 {
    var v: u64 = 0;
    var i: usize = 0;
    while (i + 4 <= b.len) : (i += 4) v = (v << 32) | mem.readInt(u32, b[i..][0..4], .big);
    return v;
}

fn nameMatches(name: []const u8, want: []const u8) bool {
    if (mem.eql(u8, name, want)) return true;
    if (mem.indexOfScalar(u8, want, '@') != null) return false;
    return name.len > want.len and mem.startsWith(u8, name, want) and name[want.len] == '@';
}

/// Whether a NUL-separated string list contains `s`.
pub fn listContains(list: []const u8, s: []const u8) bool {
    var it = mem.splitScalar(u8, list, 0);
    while (it.next()) |item| if (mem.eql(u8, item, s)) return true;
    return false;
}

/// An editable blob in `buf`, laid out header | rsvmap | struct | strings | free space.
pub const Editor = struct {
    buf: []u8,
    off_struct: usize,
    size_struct: usize,
    off_strings: usize,
    size_strings: usize,

    /// Validate `src` and copy it into `buf` in canonical order (src and buf must not overlap).
    pub fn open(src: []const u8, buf: []u8) Error!Editor {
        const f = try Fdt.init(src);
        // Reservation map: 16-byte entries up to an all-zero one.
        var rsv_len: usize = 0;
        while (true) {
            const o = std.math.add(usize, f.rsvmap_off, rsv_len) catch return error.BadStructure;
            if (o + 16 > f.blob.len) return error.BadStructure;
            rsv_len += 16;
            if (mem.allEqual(u8, f.blob[o..][0..16], 0)) break;
        }
        const rsv_at = 48; // header padded to 8
        const off_struct = rsv_at + rsv_len;
        const off_strings = off_struct + f.structs.len;
        const total = off_strings + f.strings.len;
        if (total > buf.len) return error.NoSpace;
        @memset(buf[0..rsv_at], 0);
        @memcpy(buf[0..header_len], f.blob[0..header_len]);
        @memcpy(buf[rsv_at..][0..rsv_len], f.blob[f.rsvmap_off..][0..rsv_len]);
        @memcpy(buf[off_struct..][0..f.structs.len], f.structs);
        @memcpy(buf[off_strings..][0..f.strings.len], f.strings);
        var e: Editor = .{
            .buf = buf,
            .off_struct = off_struct,
            .size_struct = f.structs.len,
            .off_strings = off_strings,
            .size_strings = f.strings.len,
        };
        put32(buf, 16, rsv_at);
        put32(buf, 20, 17);
        put32(buf, 24, 16);
        e.sync();
        return e;
    }

    fn sync(e: *Editor) void {
        put32(e.buf, 4, @intCast(e.off_strings + e.size_strings));
        put32(e.buf, 8, @intCast(e.off_struct));
        put32(e.buf, 12, @intCast(e.off_strings));
        put32(e.buf, 32, @intCast(e.size_strings));
        put32(e.buf, 36, @intCast(e.size_struct));
    }

    /// The current blob.
    pub fn blob(e: Editor) []u8 {
        return e.buf[0 .. e.off_strings + e.size_strings];
    }

    /// A reader over the current blob.
    pub fn view(e: Editor) Error!Fdt {
        return Fdt.init(e.blob());
    }

    /// Open a gap of `n` bytes at struct offset `at` (or close one if n < 0).
    fn resizeStruct(e: *Editor, at: usize, delta: isize) Error!void {
        const total = e.off_strings + e.size_strings;
        const abs_at = e.off_struct + at;
        if (delta > 0) {
            const d: usize = @intCast(delta);
            if (total + d > e.buf.len) return error.NoSpace;
            mem.copyBackwards(u8, e.buf[abs_at + d .. total + d], e.buf[abs_at..total]);
            e.size_struct += d;
            e.off_strings += d;
        } else if (delta < 0) {
            const d: usize = @intCast(-delta);
            mem.copyForwards(u8, e.buf[abs_at .. total - d], e.buf[abs_at + d .. total]);
            e.size_struct -= d;
            e.off_strings -= d;
        }
        e.sync();
    }

    fn stringOffset(e: *Editor, name: []const u8) Error!u32 {
        const strs = e.buf[e.off_strings..][0..e.size_strings];
        var i: usize = 0;
        while (i < strs.len) {
            const n = mem.indexOfScalarPos(u8, strs, i, 0) orelse break;
            if (mem.eql(u8, strs[i..n], name)) return @intCast(i);
            i = n + 1;
        }
        const total = e.off_strings + e.size_strings;
        if (total + name.len + 1 > e.buf.len) return error.NoSpace;
        @memcpy(e.buf[total..][0..name.len], name);
        e.buf[total + name.len] = 0;
        const off = e.size_strings;
        e.size_strings += name.len + 1;
        e.sync();
        return @intCast(off);
    }

    /// Make sure the node at `path` exists (creating one missing direct child of the root).
    pub fn ensureNode(e: *Editor, path: []const u8) Error!usize {
        const f = try e.view();
        if (try f.findNode(path)) |n| return n;
        const name = mem.trimStart(u8, path, "/");
        if (name.len == 0 or mem.indexOfScalar(u8, name, '/') != null) return error.NotFound;
        // Insert BEGIN_NODE name END_NODE just before the root's END_NODE.
        var depth: usize = 0;
        var off: usize = 0;
        const root_end = while (true) {
            const t = try f.tokenAt(off);
            switch (t.tok) {
                .begin => depth += 1,
                .end => |o| {
                    depth -= 1;
                    if (depth == 0) break o;
                },
                .fin => return error.BadStructure,
                .prop => {},
            }
            off = t.next;
        };
        const len = 4 + pad4(name.len + 1) + 4;
        try e.resizeStruct(root_end, @intCast(len));
        const at = e.off_struct + root_end;
        @memset(e.buf[at..][0..len], 0);
        put32(e.buf, at, token_begin);
        @memcpy(e.buf[at + 4 ..][0..name.len], name);
        put32(e.buf, at + len - 4, token_end);
        return root_end;
    }

    /// Set property `name` of the node at `path` to `value`, replacing an existing one.
    pub fn setProp(e: *Editor, path: []const u8, name: []const u8, value: []const u8) Error!void {
        const node = try e.ensureNode(path);
        const nameoff = try e.stringOffset(name);
        const f = try e.view();
        var t = try f.tokenAt(node);
        const insert_at = t.next;
        const new_len = 12 + pad4(value.len);
        while (true) {
            t = try f.tokenAt(t.next);
            switch (t.tok) {
                .prop => |p| if (mem.eql(u8, p.name, name)) {
                    const old_len = t.next - p.off;
                    try e.resizeStruct(p.off, @as(isize, @intCast(new_len)) - @as(isize, @intCast(old_len)));
                    e.writeProp(p.off, nameoff, value);
                    return;
                },
                else => break,
            }
        }
        try e.resizeStruct(insert_at, @intCast(new_len));
        e.writeProp(insert_at, nameoff, value);
    }

    fn writeProp(e: *Editor, at_struct: usize, nameoff: u32, value: []const u8) void {
        const at = e.off_struct + at_struct;
        put32(e.buf, at, token_prop);
        put32(e.buf, at + 4, @intCast(value.len));
        put32(e.buf, at + 8, nameoff);
        @memcpy(e.buf[at + 12 ..][0..value.len], value);
        @memset(e.buf[at + 12 + value.len .. at + 12 + pad4(value.len)], 0);
    }

    /// Set a string property (NUL-terminated on the way in).
    pub fn setString(e: *Editor, path: []const u8, name: []const u8, value: []const u8) Error!void {
        var tmp: [1100]u8 = undefined;
        if (value.len + 1 > tmp.len) return error.NoSpace;
        @memcpy(tmp[0..value.len], value);
        tmp[value.len] = 0;
        try e.setProp(path, name, tmp[0 .. value.len + 1]);
    }

    /// Set a 64-bit big-endian cell pair property.
    pub fn setU64(e: *Editor, path: []const u8, name: []const u8, value: u64) Error!void {
        var tmp: [8]u8 = undefined;
        mem.writeInt(u64, &tmp, value, .big);
        try e.setProp(path, name, &tmp);
    }
};

test "fdt: read the test blob, edit /chosen, grow, read back" {
    const src = @embedFile("../../testdata/virt.dtb");
    const f = try Fdt.init(src);
    try std.testing.expect(try f.machineIs("linux,dummy-virt"));
    const mem_node = (try f.findNode("/memory")).?;
    const r = (try f.reg(mem_node)).?;
    try std.testing.expectEqual(@as(u64, 0x40000000), r.addr);
    try std.testing.expect((try f.findCompatible("arm,pl011", null)) != null);

    var buf: [src.len + 4096]u8 = undefined;
    var e = try Editor.open(src, &buf);
    try e.setString("/chosen", "bootargs", "console=ttyAMA0");
    try e.setString("/chosen", "bootargs", "console=ttyAMA0 quiet loglevel=8");
    try e.setU64("/chosen", "linux,initrd-start", 0x48000000);
    try e.setString("/newnode", "x", "y");
    const g = try e.view();
    const ch = (try g.findNode("/chosen")).?;
    try std.testing.expectEqualStrings("console=ttyAMA0 quiet loglevel=8\x00", (try g.prop(ch, "bootargs")).?);
    const v = (try g.prop(ch, "linux,initrd-start")).?;
    try std.testing.expectEqual(@as(u64, 0x48000000), mem.readInt(u64, v[0..8], .big));
    try std.testing.expect((try g.findNode("/newnode")) != null);
    try std.testing.expect((try g.findNode("/memory")) != null);
    var small: [64]u8 = undefined;
    try std.testing.expectError(error.NoSpace, Editor.open(src, &small));
}

test "fdt: hostile blobs are errors" {
    const zeros: [48]u8 = @splat(0);
    try std.testing.expectError(error.BadMagic, Fdt.init(&zeros));
    try std.testing.expectError(error.Truncated, Fdt.init("\xd0\x0d\xfe\xed"));
    const bad = @embedFile("../../testdata/fdt-bad-struct-offset.dtb");
    try std.testing.expectError(error.BadStructure, Fdt.init(bad));
}

/// Mutate QEMU's virt DTB a few bytes at a time (header, structure, strings), then read
/// it and edit /chosen.
fn fuzzOne(_: void, smith: *std.testing.Smith) anyerror!void {
    var blob = @embedFile("../../testdata/virt.dtb").*;
    const flips = smith.valueRangeAtMost(u8, 1, 16);
    for (0..flips) |_| {
        const at = if (smith.boolWeighted(1, 3)) smith.index(header_len) else smith.index(blob.len);
        blob[at] = smith.value(u8);
    }
    const f = Fdt.init(&blob) catch return;
    _ = f.findNode("/chosen") catch {};
    _ = f.findCompatible("virtio,mmio", null) catch {};
    if (f.findNode("/memory") catch null) |n| _ = f.reg(n) catch {};
    var buf: [16384]u8 = undefined;
    var e = Editor.open(&blob, &buf) catch return;
    e.setString("/chosen", "bootargs", "console=ttyAMA0") catch {};
    e.setU64("/chosen", "linux,initrd-start", 1) catch {};
    _ = e.view() catch {};
}

test "fdt: fuzz" {
    try std.testing.fuzz({}, fuzzOne, .{});
}
