//! Stage 2: scan the payloads appended to this image (DTBs, compressed kernel, initramfs,
//! UEFI firmware, variables, signature), pick the FDT for this machine (or keep the one
//! passed in), fill in /chosen and boot the kernel per the arm64 boot protocol, or the
//! firmware (U-Boot) with the FDT where the platform's firmware reads it. Any failure
//! prints one line and halts; nothing unverified or half-loaded is ever entered.
const std = @import("std");
const core = @import("core");
const rt = @import("rt.zig");
const payload = core.payload;

/// Safety-check failures print and halt; they never fall through to a boot.
pub const panic = std.debug.FullPanic(rt.panicFn);

comptime {
    rt.exportMarkers("stage2");
    @export(&entry, .{ .name = "pippin_entry" });
}

const stage = "stage2";
const two_mib = 2 << 20;
const max_chosen = 2 * core.vars.max_chosen + 8;
const max_initrd_pieces = 8;

var handoff_end: ?usize = null;
/// Where the loaded file ends and stage 1's forwarded lines begin (0 from an older stage 1).
var handoff_file_end: usize = 0;

fn entry(fdt_addr: usize, base: usize, x1: u64, x2: u64, x3: u64) callconv(.c) noreturn {
    _ = base;
    if (x1 == rt.handoff_magic) {
        handoff_end = @intCast(x2);
        handoff_file_end = @intCast(x3);
    }
    rt.start(stage, fdt_addr, main);
}

const Range = struct { start: usize, len: usize };

/// What the scan found.
const Found = struct {
    fdt: ?[]const u8 = null,
    kernel: ?Range = null, // start = load address, len = image_size
    firmware: ?Range = null, // the tagged bytes where they lie in the boot object
    initrd: [max_initrd_pieces]Range = undefined,
    initrd_count: usize = 0,
    chosen: [max_chosen]core.vars.Var = undefined,
    chosen_count: usize = 0,

    fn setChosen(f: *Found, v: core.vars.Var) void {
        for (f.chosen[0..f.chosen_count]) |*c| if (std.mem.eql(u8, c.name, v.name)) {
            c.* = v; // a later line (the forwarded stage-1 value) wins
            return;
        };
        if (f.chosen_count == max_chosen) rt.halt(stage, "more than {d} chosen.* variables", .{max_chosen});
        f.chosen[f.chosen_count] = v;
        f.chosen_count += 1;
    }

    fn addInitrd(f: *Found, r: Range) void {
        if (f.initrd_count == max_initrd_pieces) rt.halt(stage, "more than {d} initramfs payloads", .{max_initrd_pieces});
        f.initrd[f.initrd_count] = r;
        f.initrd_count += 1;
    }
};

/// Bump allocator over free RAM [cur, top).
const Arena = struct {
    cur: usize,
    top: usize,

    fn take(a: *Arena, alignment: usize, what: []const u8) []u8 {
        const s = std.mem.alignForward(usize, a.cur, alignment);
        if (s >= a.top) rt.halt(stage, "no free RAM left for {s}", .{what});
        return @as([*]u8, @ptrFromInt(s))[0 .. a.top - s];
    }
};

fn main(b: *rt.Boot) noreturn {
    const data_start = b.image_end;
    const data_end = handoff_end orelse findEnd(b);
    if (data_end < data_start or data_end > b.scratch_base) rt.halt(stage, "bad hand-over: data end {x}", .{data_end});
    const file_end = handoff_file_end;
    if (file_end != 0 and (file_end < data_start or file_end > data_end)) rt.halt(stage, "bad hand-over: file end {x}", .{file_end});
    const data = @as([*]const u8, @ptrFromInt(data_start))[0 .. data_end - data_start];

    // The FDT we were given, kept in scratch (its old place may be reused below).
    const fdt_in = @as([*]const u8, @ptrFromInt(b.fdt_in))[0..rt.fdt_max];
    var found: Found = .{};
    var arena: Arena = .{ .cur = std.mem.alignForward(usize, data_end, two_mib), .top = b.scratch_base };
    var ed = core.fdt.Editor.open(fdt_in, b.fdt_buf) catch |e| rt.halt(stage, "device tree: {t}", .{e});

    var s: payload.Scanner = .{ .data = data };
    while (true) {
        const it = s.next() catch |e| rt.halt(stage, "payload at +{d}: {t}", .{ s.pos, e });
        switch (it.kind) {
            .end => break,
            .fdt => {
                const f = core.fdt.Fdt.init(it.data) catch |e| rt.halt(stage, "device tree payload at +{d}: {t}", .{ it.off, e });
                const ok = f.machineIs(rt.platform.machine_compatible) catch false;
                if (ok) found.fdt = it.data; // the last matching one wins
            },
            .gzip, .xz => inflateOne(&s, it, &arena, &found),
            .image => {
                const info = rt.imageInfo(it.data) orelse unreachable; // the scanner checked the magic
                // A raw kernel runs to the end of the file; stage 1's forwarded lines
                // (asahi,efi-system-partition, …) follow it and are scanned next.
                var len = it.data.len;
                if (file_end > data_start + it.off) {
                    len = file_end - (data_start + it.off);
                    s.pos = file_end - data_start;
                }
                const n: usize = @intCast(@min(len, info.image_size));
                const at = @intFromPtr(it.data.ptr);
                if (info.text_offset == 0 and at % two_mib == 0 and info.image_size <= arena.top - at) {
                    // Already on a 2 MiB boundary (bootobj pads boot.bin so): boot it where
                    // it lies. Its bss may cover the forwarded lines after it; they are
                    // copied into /chosen before the jump, and nothing is placed there.
                    const kend = at + @as(usize, @intCast(info.image_size));
                    arena.cur = @max(arena.cur, kend);
                    moveFromUnder(&found, &arena, at, kend);
                    found.kernel = .{ .start = at, .len = @intCast(info.image_size) };
                } else {
                    const dst = placeKernel(&arena, info, n);
                    rt.copyToAligned(dst[0..n], it.data[0..n]);
                    found.kernel = .{ .start = @intFromPtr(dst.ptr), .len = @intCast(info.image_size) };
                }
            },
            .initramfs => found.addInitrd(.{ .start = @intFromPtr(it.data.ptr), .len = it.data.len }),
            .firmware => {
                if (found.firmware != null) rt.halt(stage, "second firmware payload at +{d}", .{it.off});
                found.firmware = .{ .start = @intFromPtr(it.data.ptr), .len = it.data.len };
            },
            .signature => {}, // checked by stage 1 when it has a key
            .vars => {
                var vi: core.vars.Iterator = .{ .data = it.data };
                while (vi.next() catch |e| rt.halt(stage, "variables at +{d}: {t}", .{ it.off, e })) |v| {
                    if (v.chosenProp() != null) found.setChosen(v);
                }
            },
        }
    }
    if (found.fdt) |f| {
        ed = core.fdt.Editor.open(f, b.fdt_buf) catch |e| rt.halt(stage, "device tree payload: {t}", .{e});
    }
    if (found.firmware) |fw| {
        if (found.kernel != null) rt.halt(stage, "both a kernel and a UEFI firmware payload", .{});
        if (found.initrd_count != 0) rt.halt(stage, "an initramfs payload next to a UEFI firmware payload (the firmware loads its own)", .{});
        bootFirmware(b, &ed, &found, &arena, fw, data_end);
    }
    const kernel = found.kernel orelse rt.halt(stage, "no kernel payload found", .{});
    const initrd = joinInitrd(&found, &arena);
    setChosen(&ed, &found, initrd);
    const blob = ed.blob();
    rt.print("pippin stage2: kernel at {x} ({d} bytes), initrd {x}+{d}, fdt {x} ({s}); booting at {d} us\n", .{
        kernel.start, kernel.len, if (initrd) |r| r.start else 0, if (initrd) |r| r.len else 0, @intFromPtr(blob.ptr), if (found.fdt != null) "from payload" else "passed in", rt.micros(),
    });
    rt.jump(kernel.start, @intFromPtr(blob.ptr));
}

/// Enter a UEFI firmware payload (U-Boot's u-boot.bin: position independent, no Image
/// header): copy it to a 2 MiB boundary, put the final FDT where the platform's firmware
/// reads it (qemu-virt: the start of RAM), and jump to its first byte at EL2 with x0 = FDT.
fn bootFirmware(b: *rt.Boot, ed: *core.fdt.Editor, found: *Found, arena: *Arena, fw: Range, data_end: usize) noreturn {
    const dst = arena.take(two_mib, "the firmware");
    if (fw.len > dst.len) rt.halt(stage, "firmware ({d} bytes) does not fit in RAM", .{fw.len});
    rt.copyToAligned(dst[0..fw.len], @as([*]const u8, @ptrFromInt(fw.start))[0..fw.len]);
    setChosen(ed, found, null);
    const blob = ed.blob();
    const at: usize = @intCast(rt.platform.firmwareFdtAddr(b.ram_base) orelse
        rt.halt(stage, "{s} has no place for a firmware device tree", .{rt.platform.name}));
    const end = at + blob.len;
    const fw_at = @intFromPtr(dst.ptr);
    // Nothing still needed may lie under the new tree: this code (and its data), the
    // firmware copy, the tree being copied (in scratch).
    if (end > b.scratch_base or (at < data_end and b.image_base < end) or (at < fw_at + fw.len and fw_at < end))
        rt.halt(stage, "the device tree ({d} bytes) at {x} would overlap the loader or the firmware", .{ blob.len, at });
    const out = @as([*]u8, @ptrFromInt(at))[0..blob.len];
    @memcpy(out, blob);
    rt.print("pippin stage2: UEFI firmware at {x} ({d} bytes), fdt {x} ({s}, {d} bytes); booting at {d} us\n", .{
        fw_at, fw.len, at, if (found.fdt != null) "from payload" else "passed in", blob.len, rt.micros(),
    });
    rt.jump(fw_at, at);
}

fn inflateOne(s: *payload.Scanner, it: payload.Item, arena: *Arena, found: *Found) void {
    var top = arena.top;
    var fba: std.heap.FixedBufferAllocator = .init(&.{});
    if (it.kind == .xz) {
        // std's xz decoder collects a whole block in a growing buffer (up to ~3x the output
        // while it grows), so it gets the upper half of free RAM and the output the lower.
        const heap = std.mem.alignBackward(usize, (top -| arena.cur) / 2, two_mib);
        if (heap < 8 * two_mib) rt.halt(stage, "no RAM for xz at +{d}", .{it.off});
        top -= heap;
        fba = .init(@as([*]u8, @ptrFromInt(top))[0..heap]);
    }
    const saved = arena.top;
    arena.top = top;
    const dst = arena.take(two_mib, "a decompressed payload");
    arena.top = saved;
    const r = payload.inflateWith(it.kind, it.data, dst, fba.allocator(), rt.crc32) catch |e|
        rt.halt(stage, "{t} payload at +{d}: {t}", .{ it.kind, it.off, e });
    s.advance(r.consumed) catch |e| rt.halt(stage, "{t} payload at +{d}: {t}", .{ it.kind, it.off, e });
    const out = dst[0..r.produced];
    if (rt.imageInfo(out)) |info| {
        if (found.kernel != null) rt.halt(stage, "second kernel at +{d}", .{it.off});
        if (info.image_size < out.len) rt.halt(stage, "kernel at +{d}: image_size {d} < {d} bytes", .{ it.off, info.image_size, out.len });
        if (info.text_offset % 4096 != 0 or info.text_offset >= two_mib) rt.halt(stage, "kernel text_offset {x}", .{info.text_offset});
        const load = @intFromPtr(dst.ptr) + info.text_offset;
        if (info.text_offset != 0) std.mem.copyBackwards(u8, dst[info.text_offset..][0..out.len], out);
        if (load + info.image_size > arena.top) rt.halt(stage, "kernel does not fit in RAM", .{});
        found.kernel = .{ .start = load, .len = @intCast(info.image_size) };
        arena.cur = load + info.image_size;
    } else if (std.mem.startsWith(u8, out, "070701")) {
        found.addInitrd(.{ .start = @intFromPtr(out.ptr), .len = out.len });
        arena.cur = @intFromPtr(out.ptr) + out.len;
    } else if (out.len >= 4 and std.mem.readInt(u32, out[0..4], .big) == core.fdt.magic) {
        const f = core.fdt.Fdt.init(out) catch |e| rt.halt(stage, "compressed device tree at +{d}: {t}", .{ it.off, e });
        if (f.machineIs(rt.platform.machine_compatible) catch false) found.fdt = out;
        arena.cur = @intFromPtr(out.ptr) + out.len;
    } else {
        rt.halt(stage, "{t} payload at +{d} holds neither a kernel nor an initramfs", .{ it.kind, it.off });
    }
}

/// An in-place kernel's image_size runs past the file end (its bss), where the arena may
/// already hold payloads inflated before it (a gzip initramfs): move those above it, or
/// the kernel's bss clearing would wipe them (bug: "Initramfs unpacking failed").
fn moveFromUnder(found: *Found, arena: *Arena, kstart: usize, kend: usize) void {
    for (found.initrd[0..found.initrd_count]) |*r| {
        if (r.start < kend and kstart < r.start + r.len) r.start = moveAbove(arena, r.start, r.len);
    }
    if (found.fdt) |f| {
        const fs = @intFromPtr(f.ptr);
        if (fs < kend and kstart < fs + f.len) {
            const to = moveAbove(arena, fs, f.len);
            found.fdt = @as([*]const u8, @ptrFromInt(to))[0..f.len];
        }
    }
}

/// Copy `len` bytes at `from` (all below `arena.cur`) to fresh arena space; the new address.
fn moveAbove(arena: *Arena, from: usize, len: usize) usize {
    const dst = arena.take(4096, "a payload under the kernel");
    if (len > dst.len) rt.halt(stage, "no free RAM to move a payload from under the kernel", .{});
    @memcpy(dst[0..len], @as([*]const u8, @ptrFromInt(from))[0..len]);
    arena.cur = @intFromPtr(dst.ptr) + len;
    return @intFromPtr(dst.ptr);
}

fn placeKernel(arena: *Arena, info: rt.ImageInfo, copy_len: u64) []u8 {
    const dst = arena.take(two_mib, "the kernel");
    const need = std.math.add(u64, info.text_offset, @max(info.image_size, copy_len)) catch rt.halt(stage, "bad kernel header", .{});
    if (need > dst.len) rt.halt(stage, "kernel ({d} bytes) does not fit in RAM", .{info.image_size});
    arena.cur = @intFromPtr(dst.ptr) + @as(usize, @intCast(need));
    return dst[@intCast(info.text_offset)..];
}

fn joinInitrd(found: *Found, arena: *Arena) ?Range {
    if (found.initrd_count == 0) return null;
    if (found.initrd_count == 1) return found.initrd[0];
    // Several pieces: the kernel takes one range, so concatenate them (cpio archives chain).
    var total: usize = 0;
    for (found.initrd[0..found.initrd_count]) |r| total += r.len;
    const dst = arena.take(4096, "the initramfs");
    if (total > dst.len) rt.halt(stage, "initramfs ({d} bytes) does not fit in RAM", .{total});
    var at: usize = 0;
    for (found.initrd[0..found.initrd_count]) |r| {
        @memcpy(dst[at..][0..r.len], @as([*]const u8, @ptrFromInt(r.start))[0..r.len]);
        at += r.len;
    }
    arena.cur = @intFromPtr(dst.ptr) + total;
    return .{ .start = @intFromPtr(dst.ptr), .len = total };
}

fn setChosen(ed: *core.fdt.Editor, found: *Found, initrd: ?Range) void {
    for (found.chosen[0..found.chosen_count]) |v| {
        ed.setString("/chosen", v.chosenProp().?, v.value) catch |e| rt.halt(stage, "setting /chosen/{s}: {t}", .{ v.chosenProp().?, e });
    }
    chosenErr(ed.setString("/chosen", "asahi,m1n1-stage2-version", rt.version));
    if (initrd) |r| {
        chosenErr(ed.setU64("/chosen", "linux,initrd-start", r.start));
        chosenErr(ed.setU64("/chosen", "linux,initrd-end", r.start + r.len));
    }
    var seed: [64 + 8]u8 = undefined;
    rt.random(&seed);
    chosenErr(ed.setProp("/chosen", "rng-seed", seed[0..64]));
    chosenErr(ed.setProp("/chosen", "kaslr-seed", seed[64..72]));
}

fn chosenErr(r: core.fdt.Error!void) void {
    r catch |e| rt.halt(stage, "editing /chosen: {t}", .{e});
}

/// Where the payloads end when no Pippin stage 1 told us: walk them once, decompressing
/// into nothing, up to the end marker.
fn findEnd(b: *rt.Boot) usize {
    const data = @as([*]const u8, @ptrFromInt(b.image_end))[0 .. b.scratch_base - b.image_end];
    var fba: std.heap.FixedBufferAllocator = .init(b.heap);
    const window = fba.allocator().alloc(u8, std.compress.flate.max_window_len) catch unreachable; // heap is MiBs
    var s: payload.Scanner = .{ .data = data };
    while (true) {
        const it = s.next() catch |e| rt.halt(stage, "payload at +{d}: {t}", .{ s.pos, e });
        switch (it.kind) {
            .end => return b.image_end + it.off,
            .image => { // an uncompressed kernel is last; it is at most image_size long
                const info = rt.imageInfo(it.data) orelse unreachable; // the scanner checked the magic
                const len = @min(info.image_size, it.data.len);
                return b.image_end + it.off + @as(usize, @intCast(len));
            },
            .gzip, .xz => {
                const n = payload.skip(it.kind, it.data, window) catch |e|
                    rt.halt(stage, "{t} payload at +{d}: {t}", .{ it.kind, it.off, e });
                s.advance(n) catch |e| rt.halt(stage, "{t} payload at +{d}: {t}", .{ it.kind, it.off, e });
            },
            else => {},
        }
    }
}
