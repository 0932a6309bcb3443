//! Stage 1: parse the appended variables, find the `chainload=` partition on a disk, read
//! stage 2 from its FAT filesystem, verify it when `chainload.key` is set, append the
//! forwarded `chosen.*` variables and jump to it. Any failure prints one line and halts.
const std = @import("std");
const core = @import("core");
const rt = @import("rt.zig");

/// Safety-check failures print and halt; they never fall through to a boot.
pub const panic = std.debug.FullPanic(rt.panicFn);

comptime {
    rt.exportMarkers("stage1");
    @export(&entry, .{ .name = "pippin_entry" });
}

const stage = "stage1";
const max_vars_len = 64 * 1024;
const forward_room = 64 * 1024;

fn entry(fdt_addr: usize, base: usize, x1: u64, x2: u64) callconv(.c) noreturn {
    _ = .{ base, x1, x2 };
    rt.start(stage, fdt_addr, main);
}

/// Configuration read from the appended variables.
const Config = struct {
    chainload: ?core.vars.Chainload = null,
    chainload_text: []const u8 = "",
    key: ?[32]u8 = null,
    chosen: [core.vars.max_chosen]core.vars.Var = undefined,
    chosen_count: usize = 0,
};

fn readConfig(b: *rt.Boot) Config {
    const limit = @min(max_vars_len, b.scratch_base - b.image_end);
    const data = @as([*]const u8, @ptrFromInt(b.image_end))[0..limit];
    var it: core.vars.Iterator = .{ .data = data };
    var cfg: Config = .{};
    while (true) {
        const v = (it.next() catch |e| rt.halt(stage, "appended variables at +{d}: {t}", .{ it.pos, e })) orelse break;
        if (v.chosenProp() != null) {
            // chosen.* are forwarded as they are (a later line replaces an earlier one).
            cfg.chosen[cfg.chosen_count] = v;
            cfg.chosen_count += 1;
        } else if (std.mem.eql(u8, v.name, "chainload")) {
            cfg.chainload = core.vars.parseChainload(v.value) catch |e| rt.halt(stage, "chainload={s}: {t}", .{ v.value, e });
            cfg.chainload_text = v.value;
        } else if (std.mem.eql(u8, v.name, "chainload.key")) {
            cfg.key = core.vars.parseKey(v.value) catch |e| rt.halt(stage, "chainload.key: {t} (want ed25519:<64 hex>)", .{e});
        } else if (isKnown(v.name)) {
            // display/mitigations/tso matter on Apple hardware only.
        } else {
            rt.print("pippin stage1: warning: unknown variable {s} ignored\n", .{v.name});
        }
    }
    return cfg;
}

fn isKnown(name: []const u8) bool {
    for ([_][]const u8{ "display", "mitigations", "tso" }) |k| if (std.mem.eql(u8, name, k)) return true;
    return false;
}

fn main(b: *rt.Boot) noreturn {
    const cfg = readConfig(b);
    const cl = cfg.chainload orelse rt.halt(stage, "no chainload= variable", .{});
    const fdt = core.fdt.Fdt.init(@as([*]const u8, @ptrFromInt(b.fdt_in))[0..rt.fdt_max]) catch unreachable; // checked in rt.start
    var m = rt.platform.init(fdt, b.queues) catch |e| rt.halt(stage, "machine setup: {t}", .{e});
    if (m.disk_count == 0) rt.halt(stage, "no block devices found", .{});

    // Find the partition on any disk.
    var found: ?struct { dev: core.blockdev.BlockDev, part: core.gpt.Partition } = null;
    var last_err: core.gpt.Error = error.PartitionNotFound;
    for (m.disks[0..m.disk_count]) |*d| {
        const dev = rt.blockDev(d);
        const p = core.gpt.findPartition(dev, cl.partuuid, b.bounce) catch |e| {
            last_err = e;
            continue;
        };
        found = .{ .dev = dev, .part = p };
        break;
    }
    const uuid = cfg.chainload_text[0 .. std.mem.indexOfScalar(u8, cfg.chainload_text, ';') orelse 0];
    const loc = found orelse rt.halt(stage, "partition {s} not found on {d} disk(s): {t}", .{ uuid, m.disk_count, last_err });
    var vol = core.fat.Volume.mount(loc.dev, loc.part.first_lba, loc.part.last_lba - loc.part.first_lba + 1, b.bounce) catch |e|
        rt.halt(stage, "partition {s}: no FAT filesystem: {t}", .{ uuid, e });

    // Load stage 2 into the largest free gap, 2 MiB aligned.
    const gap = freeGap(b);
    const dest = @as([*]u8, @ptrFromInt(gap.start))[0 .. gap.end - gap.start - forward_room];
    var path_buf: [300]u8 = undefined;
    var file = load(&vol, cl.path, dest, uuid);
    if (cfg.key) |key| {
        if (core.sig.verify(file, key)) |_| {
            rt.print("pippin stage1: {s}: signature good\n", .{cl.path});
        } else |e| {
            rt.print("pippin stage1: {s}: signature check failed: {t}\n", .{ cl.path, e });
            const old = std.fmt.bufPrint(&path_buf, "{s}.old", .{cl.path}) catch rt.halt(stage, "path too long", .{});
            file = vol.readFile(old, dest) catch |e2| rt.halt(stage, "stage 2 {s} is not validly signed ({t}) and {s} is unusable ({t})", .{ cl.path, e, old, e2 });
            _ = core.sig.verify(file, key) catch |e2| rt.halt(stage, "stage 2 {s} is not validly signed ({t}) and neither is {s} ({t})", .{ cl.path, e, old, e2 });
            rt.print("pippin stage1: falling back to {s} (signature good)\n", .{old});
        }
    }
    const info = rt.imageInfo(file) orelse rt.halt(stage, "{s} is not an arm64 Image", .{cl.path});
    if (info.image_size > file.len) rt.halt(stage, "{s} is truncated: {d} of {d} image bytes", .{ cl.path, file.len, info.image_size });

    const end = forward(cfg, gap.start + file.len, gap.end);
    rt.print("pippin stage1: loaded {s} ({d} bytes) at {x}, jumping\n", .{ cl.path, file.len, gap.start });
    rt.jumpStage(gap.start, b.fdt_in, gap.start + file.len, end);
}

fn load(vol: *core.fat.Volume, path: []const u8, dest: []u8, uuid: []const u8) []u8 {
    return vol.readFile(path, dest) catch |e| switch (e) {
        error.NotFound => rt.halt(stage, "file {s} not found on partition {s}", .{ path, uuid }),
        else => rt.halt(stage, "reading {s} from partition {s}: {t}", .{ path, uuid, e }),
    };
}

/// Append the forwarded `chosen.*` lines, our version, four NULs and a zeroed guard (so the
/// stage-2 scanner always finds the end) at `at`. Returns the end address.
fn forward(cfg: Config, at: usize, limit: usize) usize {
    var w: std.Io.Writer = .fixed(@as([*]u8, @ptrFromInt(at))[0..@min(forward_room, limit - at)]);
    for (cfg.chosen[0..cfg.chosen_count]) |v| w.print("{s}={s}\n", .{ v.name, v.value }) catch unreachable; // ≤ 16 * 1090 bytes
    w.print("chosen.asahi,m1n1-stage1-version={s}\n", .{rt.version}) catch unreachable;
    const zeros: [4 + 64]u8 = @splat(0);
    w.writeAll(&zeros) catch unreachable;
    return at + w.end;
}

const Gap = struct { start: usize, end: usize };

/// The largest RAM range below scratch that holds neither this image (+ vars) nor the FDT.
fn freeGap(b: *rt.Boot) Gap {
    const fdt_end = b.fdt_in + rt.fdt_max;
    const img_end = b.image_end + max_vars_len;
    var best: Gap = .{ .start = 0, .end = 0 };
    const cuts = [_]Gap{ .{ .start = b.image_base, .end = img_end }, .{ .start = b.fdt_in, .end = fdt_end } };
    const lo: usize = @intCast(b.ram_base);
    const points = [_]usize{ lo, img_end, fdt_end };
    for (points) |p| {
        var s = std.mem.alignForward(usize, p, 2 << 20);
        var e = b.scratch_base;
        for (cuts) |c| {
            if (c.start >= s and c.start < e) e = c.start;
            if (s >= c.start and s < c.end) s = std.mem.alignForward(usize, c.end, 2 << 20);
        }
        if (e > s and e - s > best.end - best.start) best = .{ .start = s, .end = e };
    }
    if (best.end - best.start < 4 * forward_room) rt.halt(stage, "no free RAM to load stage 2", .{});
    return best;
}
