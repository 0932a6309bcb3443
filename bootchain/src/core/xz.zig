//! The container of one xz stream, walked without decompressing: stream header, block
//! headers, LZMA2 chunk headers (each says how many packed bytes follow and how many bytes
//! it unpacks to), block checks, index and footer. It gives the exact length of the stream
//! in O(chunks) time and no memory, and checks every block's CRC32/CRC64/SHA-256 against the
//! decompressed bytes — which std's xz decoder reads but does not verify.
const std = @import("std");
const mem = std.mem;

pub const Error = error{ CorruptStream, BadChecksum };

/// CRC-32 of a buffer (the loader passes a hardware one).
pub const Crc32Fn = *const fn (data: []const u8) u32;

const magic = "\xfd7zXZ\x00";
const footer_magic = "YZ";

const Cursor = struct {
    data: []const u8,
    pos: usize = 0,

    fn take(c: *Cursor, n: usize) Error![]const u8 {
        if (n > c.data.len - c.pos) return error.CorruptStream;
        defer c.pos += n;
        return c.data[c.pos..][0..n];
    }

    fn byte(c: *Cursor) Error!u8 {
        return (try c.take(1))[0];
    }

    fn be16(c: *Cursor) Error!usize {
        return mem.readInt(u16, (try c.take(2))[0..2], .big);
    }

    /// xz's variable-length integer: 7 bits a byte, low group first, at most 9 bytes,
    /// no superfluous trailing zero byte.
    fn varint(c: *Cursor) Error!u64 {
        var v: u64 = 0;
        var i: u6 = 0;
        while (i < 9) : (i += 1) {
            const b = try c.byte();
            v |= @as(u64, b & 0x7f) << (i * 7);
            if (b & 0x80 == 0) {
                if (b == 0 and i > 0) return error.CorruptStream;
                return v;
            }
        }
        return error.CorruptStream;
    }

    /// Zero bytes up to the next multiple of 4 (counted from the stream start).
    fn pad4(c: *Cursor) Error!void {
        while (c.pos % 4 != 0) if (try c.byte() != 0) return error.CorruptStream;
    }
};

fn checkSize(check: u4) usize {
    return switch (check) {
        0 => 0,
        1...3 => 4,
        4...6 => 8,
        7...9 => 16,
        10...12 => 32,
        13...15 => 64,
    };
}

/// Walk the xz stream at the start of `src` and return its length (padding after the
/// footer excluded). With `out` (the decompressed stream, block after block), each block's
/// size and check are verified against it, and all of `out` must be accounted for.
pub fn walk(src: []const u8, out: ?[]const u8, crc32: Crc32Fn) Error!usize {
    var c: Cursor = .{ .data = src };
    if (!mem.eql(u8, try c.take(6), magic)) return error.CorruptStream;
    const flags = try c.take(2);
    if (std.hash.Crc32.hash(flags) != mem.readInt(u32, (try c.take(4))[0..4], .little)) return error.CorruptStream;
    if (flags[0] != 0 or flags[1] & 0xf0 != 0) return error.CorruptStream;
    const check: u4 = @intCast(flags[1]);
    if (out != null and check != 0 and check != 1 and check != 4 and check != 10) return error.CorruptStream;

    var blocks: u64 = 0;
    var unpadded_sum: u64 = 0;
    var unpacked_sum: u64 = 0;
    var out_pos: usize = 0;
    while (true) {
        const block_start = c.pos;
        const size_byte = try c.byte();
        if (size_byte == 0) break; // the index
        const hdr_len = (@as(usize, size_byte) + 1) * 4;
        c.pos = block_start;
        const hdr = try c.take(hdr_len);
        if (std.hash.Crc32.hash(hdr[0 .. hdr_len - 4]) != mem.readInt(u32, hdr[hdr_len - 4 ..][0..4], .little)) return error.CorruptStream;
        const bflags = hdr[1];
        if (bflags & 0x3c != 0) return error.CorruptStream;
        var h: Cursor = .{ .data = hdr[0 .. hdr_len - 4], .pos = 2 };
        const declared_packed = if (bflags & 0x40 != 0) try h.varint() else null;
        const declared_unpacked = if (bflags & 0x80 != 0) try h.varint() else null;
        // One filter: LZMA2 (id 0x21, one property byte). Deltas/BCJ are not produced by
        // the installer and not supported by std's decoder either.
        if (bflags & 0x03 != 0) return error.CorruptStream;
        if (try h.varint() != 0x21 or try h.varint() != 1) return error.CorruptStream;
        if (try h.byte() > 40) return error.CorruptStream; // dictionary size code
        while (h.pos < h.data.len) if (try h.byte() != 0) return error.CorruptStream;

        const data_start = c.pos;
        const unpacked = try lzma2Chunks(&c);
        const packed_len = c.pos - data_start;
        if (declared_packed) |p| if (p != packed_len) return error.CorruptStream;
        if (declared_unpacked) |u| if (u != unpacked) return error.CorruptStream;
        try c.pad4();
        const stored = try c.take(checkSize(check));
        if (out) |o| {
            if (unpacked > o.len - out_pos) return error.BadChecksum;
            const n: usize = @intCast(unpacked);
            try verify(check, o[out_pos..][0..n], stored, crc32);
            out_pos += n;
        }
        blocks += 1;
        unpadded_sum += hdr_len + packed_len + stored.len;
        unpacked_sum += unpacked;
    }
    if (out) |o| if (out_pos != o.len) return error.BadChecksum;

    // Index: record count, (unpadded, uncompressed) per block, padding, CRC32.
    const index_start = c.pos - 1;
    if (try c.varint() != blocks) return error.CorruptStream;
    var unpadded_rec: u64 = 0;
    var unpacked_rec: u64 = 0;
    var i: u64 = 0;
    while (i < blocks) : (i += 1) {
        unpadded_rec +%= try c.varint();
        unpacked_rec +%= try c.varint();
    }
    if (unpadded_rec != unpadded_sum or unpacked_rec != unpacked_sum) return error.CorruptStream;
    try c.pad4();
    const index_len = c.pos - index_start;
    if (std.hash.Crc32.hash(src[index_start..c.pos]) != mem.readInt(u32, (try c.take(4))[0..4], .little)) return error.CorruptStream;

    // Footer: CRC32 of (backward size, flags), backward size, flags, "YZ".
    const footer = try c.take(12);
    if (std.hash.Crc32.hash(footer[4..10]) != mem.readInt(u32, footer[0..4], .little)) return error.CorruptStream;
    const backward = (@as(u64, mem.readInt(u32, footer[4..8], .little)) + 1) * 4;
    if (backward != index_len + 4) return error.CorruptStream;
    if (!mem.eql(u8, footer[8..10], flags) or !mem.eql(u8, footer[10..12], footer_magic)) return error.CorruptStream;
    return c.pos;
}

/// Skip the LZMA2 chunks of one block; returns how many bytes they unpack to.
fn lzma2Chunks(c: *Cursor) Error!u64 {
    var unpacked: u64 = 0;
    var first = true;
    while (true) : (first = false) {
        const ctl = try c.byte();
        switch (ctl) {
            0 => return unpacked,
            1, 2 => { // uncompressed chunk (1: with a dictionary reset)
                if (first and ctl != 1) return error.CorruptStream;
                const n = try c.be16() + 1;
                _ = try c.take(n);
                unpacked += n;
            },
            3...0x7f => return error.CorruptStream,
            else => { // LZMA chunk; bits 5-6: reset level (>= 2: a property byte follows)
                if (first and ctl < 0xe0) return error.CorruptStream; // must reset everything
                const hi: usize = ctl & 0x1f;
                const n = (hi << 16) + try c.be16() + 1;
                const p = try c.be16() + 1;
                if (ctl >= 0xc0) _ = try c.byte();
                _ = try c.take(p);
                unpacked += n;
            },
        }
    }
}

fn verify(check: u4, data: []const u8, stored: []const u8, crc32: Crc32Fn) Error!void {
    switch (check) {
        0 => {},
        1 => if (crc32(data) != mem.readInt(u32, stored[0..4], .little)) return error.BadChecksum,
        4 => if (std.hash.crc.@"CRC-64/XZ".hash(data) != mem.readInt(u64, stored[0..8], .little)) return error.BadChecksum,
        10 => {
            var d: [32]u8 = undefined;
            std.crypto.hash.sha2.Sha256.hash(data, &d, .{});
            if (!mem.eql(u8, &d, stored)) return error.BadChecksum;
        },
        else => unreachable, // refused above
    }
}

const testing = std.testing;

/// The bytes testdata/make_testdata.py `xz_plain` compresses (the gzip fixtures too).
pub fn testPlain(buf: *[160 * 1024]u8) void {
    var x: u32 = 12345;
    var i: usize = 0;
    while (i < buf.len / 8) : (i += 1) {
        x = (x *% 1103515245 +% 12345) & 0x7fff_ffff;
        const w = buf[i * 8 ..][0..8];
        if (i * 8 >= 8192 and i * 8 < 8192 + 4096) {
            mem.writeInt(u64, w, @as(u64, x) *% 0x9E3779B97F4A7C15, .little);
        } else {
            const k: u8 = @intCast((x >> 16) & 15);
            w.* = .{ 0x41 + k, 0x41 + k, 0x41 + k, 0x41 + k, 0x61 + k, k, 0x20, 0x0a };
        }
    }
}

fn stdCrc32(data: []const u8) u32 {
    return std.hash.Crc32.hash(data);
}

const fixtures = .{
    "../../testdata/xz-crc64.xz", "../../testdata/xz-crc32.xz",  "../../testdata/xz-sha256.xz",
    "../../testdata/xz-none.xz",  "../../testdata/xz-blocks.xz",
};

test "xz: walk finds the end and verifies every check kind of real xz output" {
    var want: [160 * 1024]u8 = undefined;
    testPlain(&want);
    inline for (fixtures) |f| {
        const src = @embedFile(f);
        try testing.expectEqual(src.len, try walk(src, &want, stdCrc32));
        try testing.expectEqual(src.len, try walk(src ++ "\x00\x00\x00\x00junk", null, stdCrc32));
        if (!mem.endsWith(u8, f, "none.xz")) {
            var bad = want;
            bad[100_000] ^= 1;
            try testing.expectError(error.BadChecksum, walk(src, &bad, stdCrc32));
        }
        try testing.expectError(error.BadChecksum, walk(src, want[0 .. want.len - 1], stdCrc32));
    }
}

test "xz: every truncation and every flipped header byte is an error, never a panic" {
    const src = @embedFile("../../testdata/xz-blocks.xz");
    var n: usize = 0;
    while (n < src.len) : (n += 1) {
        try testing.expectError(error.CorruptStream, walk(src[0..n], null, stdCrc32));
    }
    var buf: [src.len]u8 = src.*;
    // Stream header, first block header and the tail (index + footer) are all checksummed
    // or cross-checked; a flip in them must not go unnoticed.
    const index_len = (@as(usize, mem.readInt(u32, src[src.len - 8 ..][0..4], .little)) + 1) * 4;
    for ([_][2]usize{ .{ 0, 24 }, .{ src.len - 12 - index_len, src.len } }) |r| {
        for (r[0]..r[1]) |i| {
            buf[i] ^= 0x10;
            if (walk(&buf, null, stdCrc32)) |len| {
                return std.debug.panic("flip at {d} accepted (len {d})", .{ i, len });
            } else |_| {}
            buf[i] ^= 0x10;
        }
    }
}

fn fuzzOne(_: void, smith: *std.testing.Smith) anyerror!void {
    var buf: [4096]u8 = undefined;
    const input = buf[0..smith.slice(&buf)];
    var out: [4096]u8 = undefined;
    const n = walk(input, null, stdCrc32) catch return;
    if (n > input.len) return error.TestUnexpectedResult;
    _ = walk(input, &out, stdCrc32) catch return;
}

test "xz: fuzz" {
    try std.testing.fuzz({}, fuzzOne, .{ .corpus = &.{@embedFile("../../testdata/xz-crc32.xz")[0..4096]} });
}
