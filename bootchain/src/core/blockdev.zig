//! The block-device view the GPT and FAT readers use: whole-block reads by LBA. The stages
//! wrap the platform disk in it; host tests wrap a byte slice (`MemDisk`).
const std = @import("std");

/// A read failure (the platform's own error is printed by the platform, not here).
pub const Error = error{ IoError, OutOfRange };

/// A disk: block size, block count and a read function.
pub const BlockDev = struct {
    ctx: *anyopaque,
    readFn: *const fn (ctx: *anyopaque, lba: u64, buf: []u8) Error!void,
    block_size: u32,
    block_count: u64,

    /// Read `buf.len / block_size` whole blocks starting at `lba`.
    pub fn read(d: BlockDev, lba: u64, buf: []u8) Error!void {
        if (buf.len % d.block_size != 0) return error.OutOfRange;
        const n = buf.len / d.block_size;
        const end = std.math.add(u64, lba, n) catch return error.OutOfRange;
        if (end > d.block_count) return error.OutOfRange;
        return d.readFn(d.ctx, lba, buf);
    }
};

/// A disk image in memory (tests, fuzzing).
pub const MemDisk = struct {
    data: []const u8,
    block_size: u32,

    fn readImpl(ctx: *anyopaque, lba: u64, buf: []u8) Error!void {
        const m: *MemDisk = @ptrCast(@alignCast(ctx));
        const off = std.math.mul(u64, lba, m.block_size) catch return error.OutOfRange;
        const end = std.math.add(u64, off, buf.len) catch return error.OutOfRange;
        if (end > m.data.len) return error.OutOfRange;
        @memcpy(buf, m.data[@intCast(off)..@intCast(end)]);
    }

    /// The BlockDev view of this image.
    pub fn dev(m: *MemDisk) BlockDev {
        return .{ .ctx = m, .readFn = readImpl, .block_size = m.block_size, .block_count = m.data.len / m.block_size };
    }
};

/// Host tests only: a gzip-compressed disk image (from testdata/) decompressed into
/// `std.testing.allocator`; the caller frees it. Never referenced by the stages.
pub fn gunzipTestImage(gz: []const u8) ![]u8 {
    var in: std.Io.Reader = .fixed(gz);
    var d: std.compress.flate.Decompress = .init(&in, .gzip, &.{});
    var out: std.Io.Writer.Allocating = .init(std.testing.allocator);
    errdefer out.deinit();
    _ = try d.reader.streamRemaining(&out.writer);
    return out.toOwnedSlice();
}
