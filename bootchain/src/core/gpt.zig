//! GPT reader: find a partition by its unique GUID. Checks the header CRC32, its own LBA
//! and the entry-array CRC32; falls back to the backup header at the last LBA. Works for
//! any block size (512 and 4096 tested). GUIDs are compared in on-disk (mixed-endian) form.
const std = @import("std");
const mem = std.mem;
const blockdev = @import("blockdev.zig");
const BlockDev = blockdev.BlockDev;

/// Why no partition was found.
pub const Error = blockdev.Error || error{ NoValidGpt, PartitionNotFound, BadPartition, ScratchTooSmall };

/// A partition's extent in blocks of the disk.
pub const Partition = struct { first_lba: u64, last_lba: u64, index: u32 };

const max_entries = 16384;

const Header = struct {
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
};

fn parseHeader(b: []const u8, lba: u64, dev: BlockDev) ?Header {
    if (b.len < 92 or !mem.eql(u8, b[0..8], "EFI PART")) return null;
    const hsize = mem.readInt(u32, b[12..16], .little);
    if (hsize < 92 or hsize > b.len) return null;
    const want_crc = mem.readInt(u32, b[16..20], .little);
    var crc = std.hash.Crc32.init();
    crc.update(b[0..16]);
    crc.update(&[_]u8{ 0, 0, 0, 0 });
    crc.update(b[20..hsize]);
    if (crc.final() != want_crc) return null;
    if (mem.readInt(u64, b[24..32], .little) != lba) return null;
    const h: Header = .{
        .entries_lba = mem.readInt(u64, b[72..80], .little),
        .num_entries = mem.readInt(u32, b[80..84], .little),
        .entry_size = mem.readInt(u32, b[84..88], .little),
        .entries_crc = mem.readInt(u32, b[88..92], .little),
    };
    if (h.entry_size < 128 or h.entry_size % 8 != 0 or h.entry_size > dev.block_size) return null;
    if (dev.block_size % h.entry_size != 0) return null;
    if (h.num_entries == 0 or h.num_entries > max_entries) return null;
    const bytes = @as(u64, h.num_entries) * h.entry_size;
    const blocks = (bytes + dev.block_size - 1) / dev.block_size;
    const end = std.math.add(u64, h.entries_lba, blocks) catch return null;
    if (h.entries_lba < 2 or end > dev.block_count) return null;
    return h;
}

/// Find the partition whose unique GUID is `guid` (on-disk bytes). `scratch` must hold
/// one block.
pub fn findPartition(dev: BlockDev, guid: [16]u8, scratch: []u8) Error!Partition {
    if (scratch.len < dev.block_size) return error.ScratchTooSmall;
    if (dev.block_count < 3) return error.NoValidGpt;
    const buf = scratch[0..dev.block_size];
    var found_table = false;
    for ([_]u64{ 1, dev.block_count - 1 }) |lba| {
        try dev.read(lba, buf);
        const h = parseHeader(buf, lba, dev) orelse continue;
        if (search(dev, h, guid, buf)) |r| {
            found_table = true;
            if (r) |p| return p;
            return error.PartitionNotFound;
        } else |err| switch (err) {
            error.NoValidGpt => continue, // entry array CRC mismatch: try the backup
            else => |e| return e,
        }
    }
    if (!found_table) return error.NoValidGpt;
    return error.PartitionNotFound;
}

/// Scan the entry array once: check its CRC and remember the match. Returns
/// NoValidGpt when the CRC is wrong (so a corrupt array is never trusted).
fn search(dev: BlockDev, h: Header, guid: [16]u8, buf: []u8) Error!?Partition {
    var crc = std.hash.Crc32.init();
    var found: ?Partition = null;
    var bad = false;
    const per_block = dev.block_size / h.entry_size;
    var idx: u32 = 0;
    var lba = h.entries_lba;
    while (idx < h.num_entries) : (lba += 1) {
        try dev.read(lba, buf);
        var k: u32 = 0;
        while (k < per_block and idx < h.num_entries) : ({
            k += 1;
            idx += 1;
        }) {
            const e = buf[k * h.entry_size ..][0..h.entry_size];
            crc.update(e);
            if (found != null or mem.allEqual(u8, e[0..16], 0)) continue;
            if (!mem.eql(u8, e[16..32], &guid)) continue;
            const first = mem.readInt(u64, e[32..40], .little);
            const last = mem.readInt(u64, e[40..48], .little);
            if (first > last or last >= dev.block_count or first < 2) {
                bad = true;
                continue;
            }
            found = .{ .first_lba = first, .last_lba = last, .index = idx + 1 };
        }
    }
    if (crc.final() != h.entries_crc) return error.NoValidGpt;
    if (bad and found == null) return error.BadPartition;
    return found;
}

const testing = std.testing;
const vars = @import("vars.zig");

/// The gzip-compressed test image at `path` (relative to this file), decompressed.
fn gunzip(comptime path: []const u8) ![]u8 {
    return blockdev.gunzipTestImage(@embedFile(path));
}

const esp_uuid = "6a1f3b7e-2c4d-4e5f-8a9b-0c1d2e3f4a5b";

test "gpt: find the ESP on 512- and 4096-byte-sector disks, primary and backup" {
    const guid = vars.parseGuid(esp_uuid).?;
    var scratch: [4096]u8 = undefined;
    const cases = .{
        .{ "../../testdata/gpt-512.img.gz", 512, true },
        .{ "../../testdata/gpt-4096.img.gz", 4096, true },
        .{ "../../testdata/gpt-512-bad-primary-crc.img.gz", 512, true },
        .{ "../../testdata/gpt-512-bad-entries-crc-both.img.gz", 512, false },
    };
    inline for (cases) |c| {
        const img = try gunzip(c[0]);
        defer testing.allocator.free(img);
        var md: blockdev.MemDisk = .{ .data = img, .block_size = c[1] };
        if (c[2]) {
            const p = try findPartition(md.dev(), guid, &scratch);
            try testing.expectEqual(@as(u64, 1024 * 1024 / c[1]), p.first_lba);
            try testing.expectEqual(@as(u32, 2), p.index);
        } else {
            try testing.expectError(error.NoValidGpt, findPartition(md.dev(), guid, &scratch));
        }
    }
    const img = try gunzip("../../testdata/gpt-512.img.gz");
    defer testing.allocator.free(img);
    var md: blockdev.MemDisk = .{ .data = img, .block_size = 512 };
    try testing.expectError(error.PartitionNotFound, findPartition(md.dev(), vars.parseGuid("00000000-0000-0000-0000-000000000001").?, &scratch));
}

test "gpt: tiny corpus image" {
    const img = @embedFile("../../testdata/gpt-tiny.img");
    var md: blockdev.MemDisk = .{ .data = img, .block_size = 512 };
    var scratch: [512]u8 = undefined;
    const p = try findPartition(md.dev(), vars.parseGuid(esp_uuid).?, &scratch);
    try testing.expectEqual(@as(u64, 10), p.first_lba);
}

/// Mutate the tiny GPT a few bytes at a time, then (usually) repair the CRCs, so the
/// fuzzer gets past the checksums into the header and entry logic.
fn fuzzOne(_: void, smith: *std.testing.Smith) anyerror!void {
    var img = @embedFile("../../testdata/gpt-tiny.img").*;
    const flips = smith.valueRangeAtMost(u8, 1, 24);
    for (0..flips) |_| {
        // Mostly the two headers and the entries, sometimes anywhere.
        const region = smith.valueRangeAtMost(u8, 0, 3);
        const at = switch (region) {
            0 => 512 + smith.index(92),
            1 => 2 * 512 + smith.index(256),
            2 => (img.len - 512) + smith.index(92),
            else => smith.index(img.len),
        };
        img[at] = smith.value(u8);
    }
    if (smith.boolWeighted(1, 4)) {
        for ([_]usize{ 1, img.len / 512 - 1 }) |lba| {
            const h = img[lba * 512 ..][0..512];
            const elba = mem.readInt(u64, h[72..80], .little);
            const n = mem.readInt(u32, h[80..84], .little);
            const sz = mem.readInt(u32, h[84..88], .little);
            if (elba < img.len / 512 and @as(u64, n) * sz <= img.len - elba * 512)
                mem.writeInt(u32, h[88..92], std.hash.Crc32.hash(img[elba * 512 ..][0 .. n * sz]), .little);
            const hs = @min(mem.readInt(u32, h[12..16], .little), 512);
            mem.writeInt(u32, h[16..20], 0, .little);
            mem.writeInt(u32, h[16..20], std.hash.Crc32.hash(h[0..hs]), .little);
        }
    }
    var md: blockdev.MemDisk = .{ .data = &img, .block_size = 512 };
    var scratch: [512]u8 = undefined;
    if (findPartition(md.dev(), vars.parseGuid(esp_uuid).?, &scratch)) |p| {
        try testing.expect(p.first_lba <= p.last_lba and p.last_lba < img.len / 512);
    } else |_| {}
}

test "gpt: fuzz" {
    try std.testing.fuzz({}, fuzzOne, .{});
}
