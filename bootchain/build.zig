//! Builds the Pippin boot chain: stage1.bin and stage2.bin (freestanding aarch64, ReleaseSafe,
//! raw images with an arm64 Image header), plus host unit tests of the core modules.
//!
//!   zig build            -> zig-out/bin/stage1.bin, zig-out/bin/stage2.bin
//!   zig build test       -> host tests of src/core/*
//!   zig build -Dplatform=apple   (compiles the documented Apple stub; not runnable)
const std = @import("std");

/// Semantic version embedded in both stages as `##pippin_ver##<version>\0`.
const version = "0.1.0";

const Platform = enum { qemu_virt, apple };

pub fn build(b: *std.Build) void {
    const platform = b.option(Platform, "platform", "machine support to build in") orelse .qemu_virt;
    const optimize = b.option(std.builtin.Optimize, "optimize", "default ReleaseSafe") orelse .safe;

    // Bare aarch64: no FP/SIMD (the loaders run before anything enables it) and strict
    // alignment (with the MMU off every access is Device memory, where unaligned faults).
    var query: std.Target.Query = .{
        .cpu_arch = .aarch64,
        .os_tag = .freestanding,
        .abi = .none,
        .cpu_model = .{ .explicit = &std.Target.aarch64.cpu.generic },
    };
    query.cpu_features_add.addFeature(@backingInt(std.Target.aarch64.Feature.strict_align));
    // CRC32 instructions (mandatory from ARMv8.1; every Apple SoC and QEMU `max` has them).
    query.cpu_features_add.addFeature(@backingInt(std.Target.aarch64.Feature.crc));
    query.cpu_features_sub.addFeature(@backingInt(std.Target.aarch64.Feature.neon));
    query.cpu_features_sub.addFeature(@backingInt(std.Target.aarch64.Feature.fp_armv8));
    const target = b.resolveTargetQuery(query);

    const strip = b.option(bool, "strip", "strip symbols (default true)") orelse true;
    const options = b.addOptions();
    options.addOption([]const u8, "version", version);
    options.addOption(Platform, "platform", platform);

    const core = b.createModule(.{ .root_source_file = b.path("src/core/core.zig") });

    inline for (.{ "stage1", "stage2" }) |name| {
        const mod = b.createModule(.{
            .root_source_file = b.path("src/" ++ name ++ ".zig"),
            .target = target,
            .optimize = optimize,
            .pic = true,
            .strip = strip,
            .single_threaded = true,
            .red_zone = false,
            .code_model = .small,
            .unwind_tables = .none,
        });
        mod.addImport("core", core);
        mod.addOptions("build_options", options);
        mod.addAssemblyFile(b.path("src/start.S"));
        const exe = b.addExecutable(.{ .name = name, .root_module = mod, .use_lld = true });
        exe.setLinkerScript(b.path("src/link.ld"));
        exe.pie = true;
        exe.entry = .{ .symbol_name = "_head" };
        const bin = b.addObjCopy(exe.getEmittedBin(), .{ .format = .binary, .basename = name ++ ".bin" });
        b.getInstallStep().dependOn(&b.addInstallBinFile(bin.getOutput(), name ++ ".bin").step);
    }

    // Host unit tests of the hardware-free core (every parser, fuzz entries included).
    const test_mod = b.createModule(.{
        .root_source_file = b.path("tests.zig"),
        .target = b.graph.host,
        .optimize = b.option(std.builtin.Optimize, "test-optimize", "host tests (default debug; fuzz with safe)") orelse .debug,
    });
    const filters = b.option([]const []const u8, "test-filter", "only tests whose name contains this") orelse &.{};
    const tests = b.addTest(.{ .root_module = test_mod, .filters = filters });
    const run_tests = b.addRunArtifact(tests);
    run_tests.has_side_effects = true; // always run (and report counts), never "cached"
    b.step("test", "run the host unit tests of src/core").dependOn(&run_tests.step);
}
