//! FAT12/16/32 reader: mount from the boot sector, look a path up (long names or 8.3,
//! case-insensitive) and read a whole file. Every number from disk is checked: cluster
//! numbers, chain length, directory size, and reads never leave the partition.
const std = @import("std");
const mem = std.mem;
const blockdev = @import("blockdev.zig");
const BlockDev = blockdev.BlockDev;

/// What can be wrong with a filesystem or a lookup.
pub const Error = blockdev.Error || error{ NotFat, BadBootSector, NotFound, NotAFile, BadCluster, ChainTooShort, DirTooLarge, FileTooLarge, ScratchTooSmall, PathTooLong };

/// FAT flavour, from the cluster count as the specification defines it.
pub const Kind = enum { fat12, fat16, fat32 };

const max_dir_entries = 65536;
const attr_lfn = 0x0f;
const attr_dir = 0x10;
const attr_volume = 0x08;

/// A mounted filesystem on a partition of `dev`.
pub const Volume = struct {
    dev: BlockDev,
    /// Partition start and length in disk blocks.
    part_lba: u64,
    part_blocks: u64,
    /// One block of scratch for unaligned reads and a cache of which block it holds.
    bounce: []u8,
    cached: ?u64 = null,
    kind: Kind,
    bytes_per_sector: u32,
    cluster_bytes: u32,
    fat_off: u64,
    root_off: u64, // FAT12/16 fixed root directory
    root_entries: u32,
    root_cluster: u32, // FAT32
    data_off: u64,
    cluster_count: u32,

    /// Read the boot sector at `part_lba` and check its geometry against the partition.
    /// `scratch` must hold one disk block.
    pub fn mount(dev: BlockDev, part_lba: u64, part_blocks: u64, scratch: []u8) Error!Volume {
        if (scratch.len < dev.block_size) return error.ScratchTooSmall;
        var v: Volume = undefined;
        v.dev = dev;
        v.part_lba = part_lba;
        v.part_blocks = part_blocks;
        v.bounce = scratch[0..dev.block_size];
        v.cached = null;
        var bs: [512]u8 = undefined;
        try v.readAt(0, &bs);
        if (bs[510] != 0x55 or bs[511] != 0xaa) return error.NotFat;
        const bps = mem.readInt(u16, bs[11..13], .little);
        const spc = bs[13];
        const reserved = mem.readInt(u16, bs[14..16], .little);
        const nfats = bs[16];
        const root_entries = mem.readInt(u16, bs[17..19], .little);
        const ts16 = mem.readInt(u16, bs[19..21], .little);
        const fs16 = mem.readInt(u16, bs[22..24], .little);
        const ts32 = mem.readInt(u32, bs[32..36], .little);
        const fs32 = mem.readInt(u32, bs[36..40], .little);
        if (bps < 512 or bps > 4096 or !std.math.isPowerOfTwo(bps)) return error.BadBootSector;
        if (spc == 0 or !std.math.isPowerOfTwo(spc) or reserved == 0 or nfats == 0) return error.BadBootSector;
        const fat_size: u64 = if (fs16 != 0) fs16 else fs32;
        const total: u64 = if (ts16 != 0) ts16 else ts32;
        if (fat_size == 0 or total == 0) return error.BadBootSector;
        if (total * bps > part_blocks * dev.block_size) return error.BadBootSector;
        const root_sectors = (@as(u64, root_entries) * 32 + bps - 1) / bps;
        const meta = reserved + nfats * fat_size + root_sectors;
        if (meta >= total) return error.BadBootSector;
        const clusters = (total - meta) / spc;
        v.kind = if (clusters < 4085) .fat12 else if (clusters < 65525) .fat16 else .fat32;
        if (v.kind == .fat32 and (root_entries != 0 or fs32 == 0)) return error.BadBootSector;
        if (v.kind != .fat32 and root_entries == 0) return error.BadBootSector;
        // The FAT must have an entry for every cluster.
        const fat_bits: u64 = switch (v.kind) {
            .fat12 => 12,
            .fat16 => 16,
            .fat32 => 32,
        };
        if ((clusters + 2) * fat_bits > fat_size * bps * 8) return error.BadBootSector;
        v.bytes_per_sector = bps;
        v.cluster_bytes = @as(u32, spc) * bps;
        if (v.cluster_bytes > 256 * 1024) return error.BadBootSector;
        v.fat_off = @as(u64, reserved) * bps;
        v.root_off = (reserved + nfats * fat_size) * bps;
        v.root_entries = root_entries;
        v.root_cluster = if (v.kind == .fat32) mem.readInt(u32, bs[44..48], .little) else 0;
        v.data_off = meta * bps;
        v.cluster_count = @intCast(clusters);
        if (v.kind == .fat32 and !v.validCluster(v.root_cluster)) return error.BadCluster;
        return v;
    }

    fn validCluster(v: Volume, c: u32) bool {
        return c >= 2 and c - 2 < v.cluster_count;
    }

    /// Read `buf.len` bytes at byte offset `off` of the partition.
    pub fn readAt(v: *Volume, off: u64, buf: []u8) Error!void {
        const bsz: u64 = v.dev.block_size;
        const end = std.math.add(u64, off, buf.len) catch return error.OutOfRange;
        if (end > v.part_blocks * bsz) return error.OutOfRange;
        var pos = off;
        var done: usize = 0;
        while (done < buf.len) {
            const lba = pos / bsz;
            const in_block = pos % bsz;
            const left = buf.len - done;
            if (in_block == 0 and left >= bsz) {
                // Whole blocks go straight into the destination.
                const n = left - left % bsz;
                try v.dev.read(v.part_lba + lba, buf[done..][0..n]);
                done += n;
                pos += n;
                continue;
            }
            if (v.cached != lba) {
                v.cached = null;
                try v.dev.read(v.part_lba + lba, v.bounce);
                v.cached = lba;
            }
            const n: usize = @intCast(@min(left, bsz - in_block));
            @memcpy(buf[done..][0..n], v.bounce[@intCast(in_block)..][0..n]);
            done += n;
            pos += n;
        }
    }

    /// The FAT entry of cluster `c` (end-of-chain values are >= 0x0ffffff8 after widening).
    fn next(v: *Volume, c: u32) Error!u32 {
        switch (v.kind) {
            .fat12 => {
                var b: [2]u8 = undefined;
                try v.readAt(v.fat_off + c + c / 2, &b);
                const raw = mem.readInt(u16, &b, .little);
                const e: u32 = if (c & 1 == 1) raw >> 4 else raw & 0xfff;
                return if (e >= 0xff8) 0x0fff_ffff else e;
            },
            .fat16 => {
                var b: [2]u8 = undefined;
                try v.readAt(v.fat_off + @as(u64, c) * 2, &b);
                const e: u32 = mem.readInt(u16, &b, .little);
                return if (e >= 0xfff8) 0x0fff_ffff else e;
            },
            .fat32 => {
                var b: [4]u8 = undefined;
                try v.readAt(v.fat_off + @as(u64, c) * 4, &b);
                return mem.readInt(u32, &b, .little) & 0x0fff_ffff;
            },
        }
    }

    fn clusterOff(v: Volume, c: u32) u64 {
        return v.data_off + @as(u64, c - 2) * v.cluster_bytes;
    }

    /// A directory entry that was found.
    pub const Entry = struct { cluster: u32, size: u32, is_dir: bool };

    /// Look up `path` ("m1n1/boot.bin"), component by component from the root.
    pub fn lookup(v: *Volume, path: []const u8) Error!Entry {
        var dir: Entry = .{ .cluster = v.root_cluster, .size = 0, .is_dir = true };
        var it = mem.tokenizeScalar(u8, path, '/');
        var at_root = true;
        while (it.next()) |name| {
            if (!dir.is_dir) return error.NotFound;
            if (name.len > 255) return error.PathTooLong;
            dir = try v.findIn(if (at_root and v.kind != .fat32) null else dir.cluster, name);
            at_root = false;
        }
        return dir;
    }

    /// Search one directory (null cluster = the FAT12/16 fixed root) for `name`.
    fn findIn(v: *Volume, cluster: ?u32, name: []const u8) Error!Entry {
        var lfn: [260]u16 = undefined;
        var lfn_len: usize = 0;
        var lfn_next: u8 = 0; // expected next LFN sequence number, 0 = none in progress
        var lfn_sum: u8 = 0;
        var c = cluster orelse 0;
        if (cluster != null and !v.validCluster(c)) return error.BadCluster;
        const per_cluster = v.cluster_bytes / 32;
        var i: u32 = 0;
        while (i < max_dir_entries) : (i += 1) {
            var off: u64 = undefined;
            if (cluster == null) {
                if (i >= v.root_entries) return error.NotFound;
                off = v.root_off + @as(u64, i) * 32;
            } else {
                if (i > 0 and i % per_cluster == 0) {
                    c = try v.next(c);
                    if (c >= 0x0fff_fff8) return error.NotFound;
                    if (!v.validCluster(c)) return error.BadCluster;
                }
                off = v.clusterOff(c) + @as(u64, i % per_cluster) * 32;
            }
            var e: [32]u8 = undefined;
            try v.readAt(off, &e);
            if (e[0] == 0) return error.NotFound;
            if (e[0] == 0xe5) {
                lfn_next = 0;
                continue;
            }
            if (e[11] & 0x3f == attr_lfn) {
                const ord = e[0] & 0x1f;
                if (e[0] & 0x40 != 0) {
                    if (ord == 0 or ord > 20) {
                        lfn_next = 0;
                        continue;
                    }
                    lfn_len = @as(usize, ord) * 13;
                    lfn_sum = e[13];
                    lfn_next = ord;
                    @memset(lfn[0..lfn_len], 0xffff);
                } else if (lfn_next == 0 or ord != lfn_next or e[13] != lfn_sum) {
                    lfn_next = 0;
                    continue;
                }
                const base = (@as(usize, ord) - 1) * 13;
                const spots = [_]usize{ 1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30 };
                for (spots, 0..) |s, k| lfn[base + k] = mem.readInt(u16, e[s..][0..2], .little);
                lfn_next = ord - 1;
                if (lfn_next == 0) lfn_next = 0xff; // complete; the short entry comes next
                continue;
            }
            const had_lfn = lfn_next == 0xff and shortSum(e[0..11]) == lfn_sum;
            lfn_next = 0;
            if (e[11] & attr_volume != 0) continue;
            const match = (had_lfn and lfnEquals(lfn[0..lfn_len], name)) or shortEquals(e[0..11], name);
            if (!match) continue;
            const hi: u32 = if (v.kind == .fat32) mem.readInt(u16, e[20..22], .little) else 0;
            const first = (hi << 16) | mem.readInt(u16, e[26..28], .little);
            return .{ .cluster = first, .size = mem.readInt(u32, e[28..32], .little), .is_dir = e[11] & attr_dir != 0 };
        }
        return error.DirTooLarge;
    }

    /// Read the file at `path` into `dest`; returns the filled part.
    pub fn readFile(v: *Volume, path: []const u8, dest: []u8) Error![]u8 {
        const e = try v.lookup(path);
        if (e.is_dir) return error.NotAFile;
        if (e.size > dest.len) return error.FileTooLarge;
        const out = dest[0..e.size];
        if (e.size == 0) return out;
        var c = e.cluster;
        if (!v.validCluster(c)) return error.BadCluster;
        var done: usize = 0;
        // Read runs of consecutive clusters with one request each.
        while (done < out.len) {
            const run_start = c;
            var run: u32 = 1;
            while (done + @as(usize, run) * v.cluster_bytes < out.len) {
                const n = try v.next(c);
                if (n >= 0x0fff_fff8) return error.ChainTooShort;
                if (!v.validCluster(n)) return error.BadCluster;
                if (n != c + 1) {
                    c = n;
                    break;
                }
                c = n;
                run += 1;
            }
            const bytes = @min(out.len - done, @as(usize, run) * v.cluster_bytes);
            try v.readAt(v.clusterOff(run_start), out[done..][0..bytes]);
            done += bytes;
        }
        return out;
    }
};

fn shortSum(n: []const u8) u8 {
    var sum: u8 = 0;
    for (n) |ch| sum = ((sum & 1) << 7) +% (sum >> 1) +% ch;
    return sum;
}

fn lfnEquals(l: []const u16, want: []const u8) bool {
    var n: usize = 0;
    while (n < l.len and l[n] != 0 and l[n] != 0xffff) n += 1;
    if (n != want.len) return false;
    for (l[0..n], want) |a, b| {
        if (a > 0x7f) return false;
        if (std.ascii.toLower(@intCast(a)) != std.ascii.toLower(b)) return false;
    }
    return true;
}

fn shortEquals(raw: []const u8, want: []const u8) bool {
    var buf: [12]u8 = undefined;
    var n: usize = 0;
    const base = mem.trimEnd(u8, raw[0..8], " ");
    const ext = mem.trimEnd(u8, raw[8..11], " ");
    @memcpy(buf[0..base.len], base);
    n = base.len;
    if (n > 0 and buf[0] == 0x05) buf[0] = 0xe5;
    if (ext.len > 0) {
        buf[n] = '.';
        @memcpy(buf[n + 1 ..][0..ext.len], ext);
        n += 1 + ext.len;
    }
    return std.ascii.eqlIgnoreCase(buf[0..n], want);
}

const testing = std.testing;

/// The gzip-compressed test image at `path` (relative to this file), decompressed.
fn gunzip(comptime path: []const u8) ![]u8 {
    return blockdev.gunzipTestImage(@embedFile(path));
}

test "fat: read files by long and short names from FAT12/16/32 (512 and 4096 sectors)" {
    const cases = .{
        .{ "../../testdata/fat12.img.gz", 512, Kind.fat12 },
        .{ "../../testdata/fat16.img.gz", 512, Kind.fat16 },
        .{ "../../testdata/fat32.img.gz", 512, Kind.fat32 },
        .{ "../../testdata/fat16-4096.img.gz", 4096, Kind.fat16 },
    };
    inline for (cases) |c| {
        const img = try gunzip(c[0]);
        defer testing.allocator.free(img);
        var md: blockdev.MemDisk = .{ .data = img, .block_size = c[1] };
        var scratch: [4096]u8 = undefined;
        var v = try Volume.mount(md.dev(), 0, img.len / c[1], &scratch);
        try testing.expectEqual(c[2], v.kind);
        var dest: [16384]u8 = undefined;
        const boot = try v.readFile("m1n1/boot.bin", &dest);
        try testing.expectEqual(@as(usize, 10243), boot.len);
        try testing.expectEqualStrings("END", boot[boot.len - 3 ..]);
        try testing.expectEqual(@as(u8, 77), boot[256 * 7 + 77]);
        try testing.expectEqualStrings("long name\n", try v.readFile("/M1N1/a long file name.TXT", &dest));
        try testing.expectEqualStrings("long name\n", try v.readFile("m1n1/ALONGF~1.TXT", &dest));
        try testing.expectEqualStrings("short\n", try v.readFile("short.txt", &dest));
        try testing.expectError(error.NotFound, v.readFile("m1n1/boot.bin.old", &dest));
        try testing.expectError(error.NotAFile, v.readFile("m1n1", &dest));
        try testing.expectError(error.FileTooLarge, v.readFile("m1n1/boot.bin", dest[0..100]));
    }
}

test "fat: a corrupt chain and a non-FAT partition are errors" {
    const img = try gunzip("../../testdata/fat16-bad-chain.img.gz");
    defer testing.allocator.free(img);
    var md: blockdev.MemDisk = .{ .data = img, .block_size = 512 };
    var scratch: [512]u8 = undefined;
    var v = try Volume.mount(md.dev(), 0, img.len / 512, &scratch);
    var dest: [16384]u8 = undefined;
    try testing.expectError(error.BadCluster, v.readFile("m1n1/boot.bin", &dest));
    const zeros: [4096]u8 = @splat(0);
    var mz: blockdev.MemDisk = .{ .data = &zeros, .block_size = 512 };
    try testing.expectError(error.NotFat, Volume.mount(mz.dev(), 0, 8, &scratch));
}

test "fat: tiny hand-made FAT12 (the fuzz seed)" {
    const img = @embedFile("../../testdata/fat12-tiny.img");
    var md: blockdev.MemDisk = .{ .data = img, .block_size = 512 };
    var scratch: [512]u8 = undefined;
    var v = try Volume.mount(md.dev(), 0, img.len / 512, &scratch);
    var dest: [1024]u8 = undefined;
    const f = try v.readFile("m1n1/boot.bin", &dest);
    try testing.expectEqual(@as(usize, 700), f.len);
    try testing.expectEqual(@as(u8, 255), f[511]);
}

/// Mutate the hand-made FAT12 (boot sector, FAT, directories, data) a few bytes at a time.
fn fuzzOne(_: void, smith: *std.testing.Smith) anyerror!void {
    var img = @embedFile("../../testdata/fat12-tiny.img").*;
    const flips = smith.valueRangeAtMost(u8, 1, 24);
    for (0..flips) |_| {
        const region = smith.valueRangeAtMost(u8, 0, 3);
        const at = switch (region) {
            0 => smith.index(64), // BPB
            1 => 512 + smith.index(16), // FAT entries
            2 => if (smith.boolWeighted(1, 1)) 1024 + smith.index(64) else 1536 + smith.index(64), // dirs
            else => smith.index(img.len),
        };
        img[at] = smith.value(u8);
    }
    var md: blockdev.MemDisk = .{ .data = &img, .block_size = 512 };
    var scratch: [512]u8 = undefined;
    var v = Volume.mount(md.dev(), 0, img.len / 512, &scratch) catch return;
    var dest: [4096]u8 = undefined;
    if (v.readFile("m1n1/boot.bin", &dest)) |f| {
        try testing.expect(f.len <= dest.len);
    } else |_| {}
    _ = v.readFile("M1N1/A Long File Name.txt", &dest) catch {};
}

test "fat: fuzz" {
    try std.testing.fuzz({}, fuzzOne, .{});
}
