//! Stage-2 signature check (formats.md §4): the last 109 bytes of the loaded file are
//! `m1n1_sig` | LE u32 109 | u8 alg (1 = Ed25519) | 32-byte SHA-256(public key) | 64-byte
//! signature over every byte before the payload.
const std = @import("std");
const mem = std.mem;
const Ed25519 = std.crypto.sign.Ed25519;

/// Signature payload tag.
pub const tag = "m1n1_sig";
/// Total size of an Ed25519 signature payload.
pub const payload_len = 8 + 4 + 1 + 32 + 64;

/// Why a file does not verify.
pub const Error = error{ Unsigned, BadSignaturePayload, UnknownAlgorithm, WrongKey, BadSignature };

/// Where the signed part of `file` ends (the offset of its signature payload), if it has one.
pub fn signedLen(file: []const u8) ?usize {
    if (file.len < payload_len) return null;
    const p = file[file.len - payload_len ..];
    if (!mem.eql(u8, p[0..8], tag)) return null;
    return file.len - payload_len;
}

/// Verify `file` against `public_key`; returns the length of the signed part.
pub fn verify(file: []const u8, public_key: [32]u8) Error!usize {
    const n = signedLen(file) orelse return error.Unsigned;
    const p = file[n..];
    if (mem.readInt(u32, p[8..12], .little) != payload_len) return error.BadSignaturePayload;
    if (p[12] != 1) return error.UnknownAlgorithm;
    var id: [32]u8 = undefined;
    std.crypto.hash.sha2.Sha256.hash(&public_key, &id, .{});
    if (!mem.eql(u8, p[13..45], &id)) return error.WrongKey;
    const pk = Ed25519.PublicKey.fromBytes(public_key) catch return error.WrongKey;
    const s = Ed25519.Signature.fromBytes(p[45..109].*);
    s.verify(file[0..n], pk) catch return error.BadSignature;
    return n;
}

const testing = std.testing;

fn signed(comptime msg: []const u8, kp: Ed25519.KeyPair) ![msg.len + payload_len]u8 {
    var out: [msg.len + payload_len]u8 = undefined;
    @memcpy(out[0..msg.len], msg);
    const p = out[msg.len..];
    @memcpy(p[0..8], tag);
    mem.writeInt(u32, p[8..12], payload_len, .little);
    p[12] = 1;
    std.crypto.hash.sha2.Sha256.hash(&kp.public_key.toBytes(), p[13..45], .{});
    p[45..109].* = (try kp.sign(msg, null)).toBytes();
    return out;
}

test "sig: good, tampered, unsigned, wrong key" {
    const kp = try Ed25519.KeyPair.generateDeterministic(@splat(7));
    const other = try Ed25519.KeyPair.generateDeterministic(@splat(8));
    var f = try signed("stage2 image bytes", kp);
    try testing.expectEqual(@as(usize, 18), try verify(&f, kp.public_key.toBytes()));
    try testing.expectError(error.WrongKey, verify(&f, other.public_key.toBytes()));
    f[3] ^= 1;
    try testing.expectError(error.BadSignature, verify(&f, kp.public_key.toBytes()));
    try testing.expectError(error.Unsigned, verify("short", kp.public_key.toBytes()));
    f[3] ^= 1;
    f[f.len - payload_len + 12] = 2;
    try testing.expectError(error.UnknownAlgorithm, verify(&f, kp.public_key.toBytes()));
}
