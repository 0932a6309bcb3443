//! virtio-mmio block device driver (legacy v1 and modern v2 transports), polled, one
//! request in flight. MMU and caches are off, so the device sees memory as we do.
const std = @import("std");

/// Bytes of 4 KiB-aligned memory one disk needs for its virtqueue.
pub const queue_mem = 8192;
const qsize = 8;
const max_request = 256 * 1024;

/// Errors of a block read.
pub const Error = error{ IoError, OutOfRange, BadLength };

const Reg = enum(usize) {
    magic = 0x000,
    version = 0x004,
    device_id = 0x008,
    device_features = 0x010,
    device_features_sel = 0x014,
    driver_features = 0x020,
    driver_features_sel = 0x024,
    guest_page_size = 0x028,
    queue_sel = 0x030,
    queue_num_max = 0x034,
    queue_num = 0x038,
    queue_align = 0x03c,
    queue_pfn = 0x040,
    queue_ready = 0x044,
    queue_notify = 0x050,
    interrupt_status = 0x060,
    interrupt_ack = 0x064,
    status = 0x070,
    queue_desc_lo = 0x080,
    queue_desc_hi = 0x084,
    queue_avail_lo = 0x090,
    queue_avail_hi = 0x094,
    queue_used_lo = 0x0a0,
    queue_used_hi = 0x0a4,
    config = 0x100,
};

const Desc = extern struct { addr: u64, len: u32, flags: u16, next: u16 };
const flag_next = 1;
const flag_write = 2;
const feature_blk_size = 1 << 6;

/// One virtio block device.
pub const Disk = struct {
    base: usize,
    queue: []align(4096) u8,
    /// Logical block size in bytes (512 or 4096 here).
    block_size: u32,
    /// Number of logical blocks.
    block_count: u64,
    last_used: u16 = 0,
    avail_idx: u16 = 0,
    hdr: [16]u8 align(16) = undefined,
    status: u8 = 0xff,

    fn rd(d: *const Disk, r: Reg) u32 {
        const p: *volatile u32 = @ptrFromInt(d.base + @backingInt(r));
        return p.*;
    }

    fn wr(d: *const Disk, r: Reg, v: u32) void {
        const p: *volatile u32 = @ptrFromInt(d.base + @backingInt(r));
        p.* = v;
    }

    /// A ready block device at `base`, or null for anything else (empty transport, other
    /// device type, refused setup). `queue` must be zeroed.
    pub fn probe(base: usize, queue: []align(4096) u8) ?Disk {
        var d: Disk = .{ .base = base, .queue = queue, .block_size = 512, .block_count = 0 };
        if (d.rd(.magic) != 0x74726976) return null;
        const version = d.rd(.version);
        if (version != 1 and version != 2) return null;
        if (d.rd(.device_id) != 2) return null;
        d.wr(.status, 0);
        d.wr(.status, 1 | 2); // ACKNOWLEDGE | DRIVER
        d.wr(.device_features_sel, 0);
        const feat = d.rd(.device_features) & feature_blk_size;
        d.wr(.driver_features_sel, 0);
        d.wr(.driver_features, feat);
        if (version == 2) {
            d.wr(.driver_features_sel, 1);
            d.wr(.driver_features, 1); // VIRTIO_F_VERSION_1
            d.wr(.status, 1 | 2 | 8); // FEATURES_OK
            if (d.rd(.status) & 8 == 0) return null;
        }
        d.wr(.queue_sel, 0);
        if (d.rd(.queue_num_max) < qsize) return null;
        d.wr(.queue_num, qsize);
        @memset(queue, 0);
        const qaddr: u64 = @intFromPtr(queue.ptr);
        if (version == 1) {
            d.wr(.guest_page_size, 4096);
            d.wr(.queue_align, 4096);
            d.wr(.queue_pfn, @intCast(qaddr / 4096));
        } else {
            d.wr(.queue_desc_lo, @truncate(qaddr));
            d.wr(.queue_desc_hi, @truncate(qaddr >> 32));
            d.wr(.queue_avail_lo, @truncate(qaddr + avail_off));
            d.wr(.queue_avail_hi, @truncate((qaddr + avail_off) >> 32));
            d.wr(.queue_used_lo, @truncate(qaddr + used_off));
            d.wr(.queue_used_hi, @truncate((qaddr + used_off) >> 32));
            d.wr(.queue_ready, 1);
        }
        d.wr(.status, d.rd(.status) | 4); // DRIVER_OK
        const lo: u64 = d.rd(.config);
        const hi: u64 = @as(*volatile u32, @ptrFromInt(base + 0x104)).*;
        const sectors = (hi << 32) | lo;
        if (feat != 0) {
            const bs = @as(*volatile u32, @ptrFromInt(base + 0x100 + 20)).*;
            if (bs >= 512 and bs <= 65536 and std.math.isPowerOfTwo(bs)) d.block_size = bs;
        }
        d.block_count = sectors / (d.block_size / 512);
        return d;
    }

    const avail_off = qsize * @sizeOf(Desc);
    const used_off = 4096;

    /// Read whole blocks starting at `lba` into `buf` (a multiple of the block size).
    pub fn readBlocks(d: *Disk, lba: u64, buf: []u8) Error!void {
        if (buf.len % d.block_size != 0) return error.BadLength;
        const n = buf.len / d.block_size;
        const end = std.math.add(u64, lba, n) catch return error.OutOfRange;
        if (end > d.block_count) return error.OutOfRange;
        var done: usize = 0;
        while (done < buf.len) {
            const chunk = @min(buf.len - done, max_request);
            const sector = (lba * d.block_size + done) / 512;
            try d.request(sector, buf[done..][0..chunk]);
            done += chunk;
        }
    }

    fn request(d: *Disk, sector: u64, buf: []u8) Error!void {
        std.mem.writeInt(u32, d.hdr[0..4], 0, .little); // VIRTIO_BLK_T_IN
        std.mem.writeInt(u32, d.hdr[4..8], 0, .little);
        std.mem.writeInt(u64, d.hdr[8..16], sector, .little);
        d.status = 0xff;
        const desc: [*]volatile Desc = @ptrCast(@alignCast(d.queue.ptr));
        desc[0] = .{ .addr = @intFromPtr(&d.hdr), .len = 16, .flags = flag_next, .next = 1 };
        desc[1] = .{ .addr = @intFromPtr(buf.ptr), .len = @intCast(buf.len), .flags = flag_next | flag_write, .next = 2 };
        desc[2] = .{ .addr = @intFromPtr(&d.status), .len = 1, .flags = flag_write, .next = 0 };
        const avail: [*]volatile u16 = @ptrCast(@alignCast(d.queue.ptr + avail_off));
        avail[2 + d.avail_idx % qsize] = 0;
        asm volatile ("dsb sy" ::: .{ .memory = true });
        d.avail_idx +%= 1;
        avail[1] = d.avail_idx;
        asm volatile ("dsb sy" ::: .{ .memory = true });
        d.wr(.queue_notify, 0);
        const used: [*]volatile u16 = @ptrCast(@alignCast(d.queue.ptr + used_off));
        var spins: u64 = 0;
        while (used[1] == d.last_used) : (spins += 1) {
            if (spins > 1 << 32) return error.IoError;
        }
        d.last_used +%= 1;
        d.wr(.interrupt_ack, d.rd(.interrupt_status));
        asm volatile ("dsb sy" ::: .{ .memory = true });
        const st: *volatile u8 = &d.status;
        if (st.* != 0) return error.IoError;
    }
};
