//! Stage-2 payload scanner (formats.md §3). Walks the bytes after the stage-2 image and
//! reports one payload at a time; compressed streams are decompressed by the caller
//! (`inflate`), which then tells the scanner how much input they used (`advance`).
const std = @import("std");
const mem = std.mem;
const fdt = @import("fdt.zig");
const vars = @import("vars.zig");
const xz = @import("xz.zig");
const gz = @import("inflate.zig");

/// Payload kinds, in the words of formats.md §3.
pub const Kind = enum { gzip, xz, fdt, image, initramfs, firmware, signature, vars, end };

/// What the scanner rejects.
pub const Error = fdt.Error || error{ UnknownPayload, TruncatedPayload, BadSize };

/// One payload: its kind, offset and bytes (for gzip/xz/image: everything from its start).
pub const Item = struct { kind: Kind, off: usize, data: []const u8 };

/// Tag of an uncompressed initramfs payload, followed by a LE u32 size.
pub const initramfs_tag = "m1n1_initramfs";
/// (Pippin) Tag of a UEFI firmware payload without an Image header (U-Boot's u-boot.bin),
/// followed by a LE u32 size and the raw bytes, entered at their first byte.
pub const firmware_tag = "pippin_firmware";
/// Tag of a signature payload, followed by a LE u32 total size.
pub const sig_tag = "m1n1_sig";
/// A NUL run this long (or longer) ends the data for good (stage 1 writes 4 + 64).
pub const end_run = 64;

/// Walks `data`.
pub const Scanner = struct {
    data: []const u8,
    pos: usize = 0,
    pending: ?Kind = null,

    /// The next payload. After gzip/xz, call `advance` with the bytes the stream used.
    pub fn next(s: *Scanner) Error!Item {
        if (s.pending != null) unreachable; // caller contract: advance() after gzip/xz
        while (true) {
            const rest = s.data[s.pos..];
            const off = s.pos;
            if (rest.len == 0) return .{ .kind = .end, .off = off, .data = rest };
            if (rest[0] == 0) {
                // An end marker (4 NULs). Stage 1 may have appended more lines, and a
                // signature may follow; anything else (or a long NUL run) ends the data.
                var run: usize = 0;
                while (run < rest.len and rest[run] == 0 and run < end_run) run += 1;
                if (run < 4 and run == rest.len) return .{ .kind = .end, .off = off, .data = rest[run..] };
                if (run < 4 or run >= end_run) return .{ .kind = .end, .off = off, .data = rest[run..] };
                const after = rest[run..];
                if (mem.startsWith(u8, after, sig_tag) or vars.startsWithLine(after)) {
                    s.pos += run;
                    continue;
                }
                return .{ .kind = .end, .off = off, .data = after };
            }
            if (mem.startsWith(u8, rest, "\x1f\x8b")) return s.stream(.gzip, off, rest);
            if (mem.startsWith(u8, rest, "\xfd7zXZ\x00")) return s.stream(.xz, off, rest);
            if (rest.len >= 4 and mem.readInt(u32, rest[0..4], .big) == fdt.magic) {
                const total = try fdt.totalSize(rest);
                if (total > rest.len) return error.TruncatedPayload;
                s.pos += total;
                return .{ .kind = .fdt, .off = off, .data = rest[0..total] };
            }
            if (mem.startsWith(u8, rest, initramfs_tag)) {
                const n = try sized(rest, initramfs_tag.len, false);
                s.pos += initramfs_tag.len + 4 + n;
                return .{ .kind = .initramfs, .off = off, .data = rest[initramfs_tag.len + 4 ..][0..n] };
            }
            if (mem.startsWith(u8, rest, firmware_tag)) {
                const n = try sized(rest, firmware_tag.len, false);
                if (n == 0) return error.BadSize;
                s.pos += firmware_tag.len + 4 + n;
                return .{ .kind = .firmware, .off = off, .data = rest[firmware_tag.len + 4 ..][0..n] };
            }
            if (mem.startsWith(u8, rest, sig_tag)) {
                const total = try sized(rest, sig_tag.len, true);
                if (total < sig_tag.len + 4) return error.BadSize;
                s.pos += total;
                return .{ .kind = .signature, .off = off, .data = rest[0..total] };
            }
            if (rest.len >= 0x40 and mem.eql(u8, rest[0x38..0x3c], "ARM\x64")) {
                // An uncompressed kernel has no reliable size: it is the last payload.
                s.pos = s.data.len;
                return .{ .kind = .image, .off = off, .data = rest };
            }
            if (vars.startsWithLine(rest)) {
                var n: usize = 0;
                while (true) {
                    const l = vars.parseLine(rest[n..]) catch break;
                    n += l.len;
                }
                s.pos += n;
                return .{ .kind = .vars, .off = off, .data = rest[0..n] };
            }
            return error.UnknownPayload;
        }
    }

    fn stream(s: *Scanner, kind: Kind, off: usize, rest: []const u8) Item {
        s.pending = kind;
        return .{ .kind = kind, .off = off, .data = rest };
    }

    /// Skip the `n` input bytes a gzip/xz stream used.
    pub fn advance(s: *Scanner, n: usize) Error!void {
        if (s.pending == null) unreachable; // caller contract
        if (n == 0 or n > s.data.len - s.pos) return error.TruncatedPayload;
        s.pending = null;
        s.pos += n;
    }
};

/// `<tag> | LE u32 size` (of what follows, or `inclusive` of the tag): the size, checked
/// against what is left.
fn sized(rest: []const u8, tag_len: usize, inclusive: bool) Error!usize {
    if (rest.len < tag_len + 4) return error.TruncatedPayload;
    const n = mem.readInt(u32, rest[tag_len..][0..4], .little);
    const need = if (inclusive) n else std.math.add(usize, n, tag_len + 4) catch return error.TruncatedPayload;
    if (need > rest.len) return error.TruncatedPayload;
    return n;
}

/// Why decompression failed.
pub const InflateError = error{ CorruptStream, BadChecksum, OutputTooLarge, OutOfMemory };

/// Result of `inflate`.
pub const Inflated = struct { consumed: usize, produced: usize };

/// CRC-32 (gzip's) of a buffer; the loader passes a hardware one.
pub const Crc32Fn = *const fn (data: []const u8) u32;

fn stdCrc32(data: []const u8) u32 {
    return std.hash.Crc32.hash(data);
}

/// Decompress the stream at the start of `src` into `dest`. gzip needs no scratch (the
/// output is its own history); xz allocates its dictionary from `gpa`.
pub fn inflate(kind: Kind, src: []const u8, dest: []u8, gpa: std.mem.Allocator) InflateError!Inflated {
    return inflateWith(kind, src, dest, gpa, stdCrc32);
}

/// `inflate` with a given CRC-32 implementation for the gzip trailer check.
pub fn inflateWith(kind: Kind, src: []const u8, dest: []u8, gpa: std.mem.Allocator, crc32: Crc32Fn) InflateError!Inflated {
    var in: std.Io.Reader = .fixed(src);
    var out: std.Io.Writer = .fixed(dest);
    switch (kind) {
        .gzip => {
            // Our own inflater: ~8x fewer instructions than std's, and it checks the
            // trailer (std reads the CRC-32/ISIZE but does not compare them).
            const r = try gz.gunzip(src, dest, crc32);
            return .{ .consumed = r.consumed, .produced = r.produced };
        },
        .xz => {
            const buf = gpa.alloc(u8, 64 * 1024) catch return error.OutOfMemory;
            var d = std.compress.xz.Decompress.init(&in, gpa, buf) catch {
                gpa.free(buf);
                return error.CorruptStream;
            };
            defer d.deinit();
            _ = d.reader.streamRemaining(&out) catch |e| return switch (e) {
                error.WriteFailed => error.OutputTooLarge,
                error.ReadFailed => if (d.err) |de| switch (de) {
                    error.OutOfMemory => error.OutOfMemory,
                    else => error.CorruptStream,
                } else error.CorruptStream,
            };
            // std's decoder skips the block checks: verify them (and the container).
            const n = try xz.walk(src, dest[0..out.end], crc32);
            if (n != in.seek) return error.CorruptStream;
        },
        else => unreachable, // only called for compressed kinds
    }
    return .{ .consumed = in.seek, .produced = out.end };
}

/// Decompress-and-discard the stream at the start of `src`, returning how many input bytes
/// it used (to find where the payloads end when no previous stage said so). `window` must
/// hold `std.compress.flate.max_window_len` bytes.
pub fn skip(kind: Kind, src: []const u8, window: []u8) InflateError!usize {
    var in: std.Io.Reader = .fixed(src);
    switch (kind) {
        .gzip => {
            if (window.len < std.compress.flate.max_window_len) return error.OutOfMemory;
            var d: std.compress.flate.Decompress = .init(&in, .gzip, window[0..std.compress.flate.max_window_len]);
            var sink: std.Io.Writer.Discarding = .init(&.{});
            _ = d.reader.streamRemaining(&sink.writer) catch return error.CorruptStream;
        },
        // The container says where every chunk ends: no decoding, no memory (std's decoder
        // would need the whole block in a growing heap buffer, which findEnd does not have).
        .xz => return xz.walk(src, null, stdCrc32),
        else => unreachable, // only called for compressed kinds
    }
    return in.seek;
}

const testing = std.testing;

test "payload: skip agrees with inflate" {
    const data = @embedFile("../../testdata/payloads-ok.bin");
    var s: Scanner = .{ .data = data };
    var out: [8192]u8 = undefined;
    var window: [std.compress.flate.max_window_len]u8 = undefined;
    while (true) {
        const it = try s.next();
        switch (it.kind) {
            .gzip, .xz => {
                const r = try inflate(it.kind, it.data, &out, testing.allocator);
                try testing.expectEqual(r.consumed, try skip(it.kind, it.data, &window));
                try s.advance(r.consumed);
            },
            .end => break,
            else => {},
        }
    }
}

test "payload: scan a boot object with every kind" {
    const data = @embedFile("../../testdata/payloads-ok.bin");
    var s: Scanner = .{ .data = data };
    var out: [8192]u8 = undefined;
    var kinds: [12]Kind = undefined;
    var n: usize = 0;
    var inner: [4][8]u8 = undefined;
    var ni: usize = 0;
    while (true) {
        const it = try s.next();
        kinds[n] = it.kind;
        n += 1;
        switch (it.kind) {
            .gzip, .xz => {
                const r = try inflate(it.kind, it.data, &out, testing.allocator);
                @memcpy(&inner[ni], out[0..8]);
                ni += 1;
                try s.advance(r.consumed);
            },
            .end => break,
            else => {},
        }
    }
    try testing.expectEqualSlices(Kind, &.{ .fdt, .gzip, .xz, .initramfs, .vars, .signature, .vars, .end }, kinds[0..n]);
    try testing.expectEqualStrings("070701", inner[1][0..6]);
}

test "payload: truncated and unknown payloads are errors" {
    const cases = .{
        .{ "../../testdata/payloads-truncated-initramfs.bin", error.TruncatedPayload },
        .{ "../../testdata/payloads-truncated-fdt.bin", error.TruncatedPayload },
        .{ "../../testdata/payloads-truncated-gzip.bin", error.CorruptStream },
        .{ "../../testdata/payloads-unknown.bin", error.UnknownPayload },
    };
    inline for (cases) |c| {
        var s: Scanner = .{ .data = @embedFile(c[0]) };
        var out: [8192]u8 = undefined;
        const r: anyerror!void = blk: {
            while (true) {
                const it = s.next() catch |e| break :blk e;
                switch (it.kind) {
                    .gzip, .xz => {
                        const x = inflate(it.kind, it.data, &out, testing.allocator) catch |e| break :blk e;
                        s.advance(x.consumed) catch |e| break :blk e;
                    },
                    .end => break :blk {},
                    else => {},
                }
            }
        };
        try testing.expectError(c[1], r);
    }
}

test "payload: gzip with a wrong trailer is refused (std does not check it)" {
    const data = @embedFile("../../testdata/payloads-ok.bin");
    var s: Scanner = .{ .data = data };
    _ = try s.next(); // fdt
    const it = try s.next();
    try testing.expectEqual(Kind.gzip, it.kind);
    var out: [8192]u8 = undefined;
    const r = try inflate(.gzip, it.data, &out, testing.allocator);
    var bad: [4096]u8 = undefined;
    @memcpy(bad[0..r.consumed], it.data[0..r.consumed]);
    bad[r.consumed - 8] ^= 1; // CRC32
    try testing.expectError(error.BadChecksum, inflate(.gzip, bad[0..r.consumed], &out, testing.allocator));
    @memcpy(bad[0..r.consumed], it.data[0..r.consumed]);
    bad[r.consumed - 1] ^= 1; // ISIZE
    try testing.expectError(error.BadChecksum, inflate(.gzip, bad[0..r.consumed], &out, testing.allocator));
}

test "payload: xz from the xz tool inflates (CorruptStream bug), its block checks are verified" {
    // An earlier stage 2 refused every plain `xz -T1` kernel: finding the end made std's
    // decoder buffer the whole block in a small heap. skip() now walks the container.
    inline for (.{ "../../testdata/xz-crc64.xz", "../../testdata/xz-blocks.xz" }) |f| {
        const src = @embedFile(f);
        var window: [1]u8 = undefined; // xz needs none
        try testing.expectEqual(src.len, try skip(.xz, src ++ "\x00\x00\x00\x00", &window));
        const out = try testing.allocator.alloc(u8, 256 * 1024);
        defer testing.allocator.free(out);
        const r = try inflate(.xz, src, out, testing.allocator);
        try testing.expectEqual(src.len, r.consumed);
        try testing.expectEqual(160 * 1024, r.produced);
        // The CRC64 of the (only) block sits just before the index; std ignores it.
        const index_len = (@as(usize, mem.readInt(u32, src[src.len - 8 ..][0..4], .little)) + 1) * 4;
        var bad: [src.len]u8 = src.*;
        bad[src.len - 12 - index_len - 1] ^= 1;
        try testing.expectError(error.BadChecksum, inflate(.xz, &bad, out, testing.allocator));
    }
}

test "payload: a tagged UEFI firmware payload, then variables" {
    const body = "\x0a\x00\x00\x14firmware bytes";
    const data = firmware_tag ++ "\x12\x00\x00\x00" ++ body ++ "chosen.a=b\n\x00\x00\x00\x00";
    var s: Scanner = .{ .data = data };
    const it = try s.next();
    try testing.expectEqual(Kind.firmware, it.kind);
    try testing.expectEqual(@as(usize, 0), it.off);
    try testing.expectEqualStrings(body, it.data);
    try testing.expectEqual(Kind.vars, (try s.next()).kind);
    try testing.expectEqual(Kind.end, (try s.next()).kind);
}

test "payload: truncated or empty firmware payloads are errors" {
    var s: Scanner = .{ .data = firmware_tag ++ "\x20\x00\x00\x00short" };
    try testing.expectError(error.TruncatedPayload, s.next());
    s = .{ .data = firmware_tag ++ "\x00\x00\x00\x00" };
    try testing.expectError(error.BadSize, s.next());
    s = .{ .data = firmware_tag ++ "\x01\x00" };
    try testing.expectError(error.TruncatedPayload, s.next());
}

fn inflateXz(gpa: std.mem.Allocator, src: []const u8) !void {
    var out: [8192]u8 = undefined;
    _ = try inflate(.xz, src, &out, gpa);
}

test "payload: std xz frees an undefined pointer after an allocation failure" {
    // Found by checkAllAllocationFailures: when an allocation inside std's LZMA decoder
    // fails, lzma.zig `deinit` frees `literal_probs` that were never set (a crash, or
    // heap corruption in the loader). Until std is fixed the loader gives xz half of free
    // RAM, and a key in stage 1 keeps unsigned xz payloads out. Re-enable this to check.
    if (true) return error.SkipZigTest;
    const data = @embedFile("../../testdata/payloads-ok.bin");
    const at = mem.indexOf(u8, data, "\xfd7zXZ\x00").?;
    try std.testing.checkAllAllocationFailures(testing.allocator, inflateXz, .{data[at..]});
}

fn fuzzOne(_: void, smith: *std.testing.Smith) anyerror!void {
    var buf: [4096]u8 = undefined;
    const input = buf[0..smith.slice(&buf)];
    var heap: [1 << 20]u8 = undefined;
    var fba: std.heap.FixedBufferAllocator = .init(&heap);
    var s: Scanner = .{ .data = input };
    var out: [16384]u8 = undefined;
    var steps: usize = 0;
    while (steps < 64) : (steps += 1) {
        const it = s.next() catch return;
        switch (it.kind) {
            .gzip, .xz => {
                fba.reset();
                const r = inflate(it.kind, it.data, &out, fba.allocator()) catch return;
                s.advance(r.consumed) catch return;
            },
            .end => return,
            else => {},
        }
    }
}

test "payload: fuzz" {
    try std.testing.fuzz({}, fuzzOne, .{ .corpus = &.{@embedFile("../../testdata/payloads-ok.bin")} });
}
