"""``pippin bootobj …``: build, sign, verify, inspect and install boot objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from installer.bootobj import assemble, espupdate, scan, sign, version
from installer.bootobj import vars as bvars
from installer.errors import BootObjectError
from vendorfw.atomic import write_bytes

_FILE = click.Path(exists=False, dir_okay=False, path_type=Path)
_IN = click.Path(dir_okay=False, path_type=Path)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BootObjectError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _emit(as_json: bool, doc: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        for line in lines:
            click.echo(line)


def _version_doc(v: version.ImageVersion | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"loader": str(v.kind), "version": str(v.version), "stage": str(v.stage)}


def _payload_doc(p: scan.Payload) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": str(p.kind), "offset": p.offset, "size": p.size}
    if p.detail:
        doc["detail"] = p.detail
    if p.inner:
        doc["inner"] = [_payload_doc(i) for i in p.inner]
    if p.kind is scan.Kind.VARIABLES:
        doc["variables"] = [[v.name, v.value] for v in p.variables]
    return doc


@click.group("bootobj")
def bootobj() -> None:
    """Boot objects: stage-1 config, stage-2 boot.bin with payloads, signatures."""


@bootobj.command()
@click.option("--stage2", type=_IN, required=True, help="Stage-2 loader image.")
@click.option("--dtb", "dtbs", type=_IN, multiple=True, help="Device tree blob (repeatable).")
@click.option("--kernel", type=_IN, help="arm64 Image (or Image.gz), or U-Boot with an "
              "Image header (u-boot-nodtb.bin).")
@click.option("--firmware", type=_IN,
              help="UEFI firmware without an Image header (Debian's u-boot-qemu "
                   "u-boot.bin), instead of --kernel: stage 2 puts the device tree where the "
                   "platform's firmware reads it (QEMU virt: start of RAM) and enters it.")
@click.option("--compress", type=click.Choice([c.value for c in assemble.Compression]),
              default="gzip", show_default=True,
              help="How the kernel is stored. 'none' boots fastest (the kernel goes last, "
                   "2 MiB-aligned, and stage 2 boots it in place instead of inflating it) "
                   "for a ~2.6x larger boot.bin.")
@click.option("--gzip-level", type=click.IntRange(1, 9), default=assemble.GZIP_LEVEL,
              show_default=True, help="gzip level (9: ~0.2% smaller, 2.6x slower to build).")
@click.option("--initramfs", type=_IN, help="Initramfs (cpio, maybe compressed).")
@click.option("--initramfs-mode", type=click.Choice([m.value for m in assemble.InitramfsMode]),
              default="tag", show_default=True,
              help="tag: the bytes as given behind m1n1_initramfs + size (any format the "
                   "kernel reads); gzip: a newc cpio recompressed as a gzip payload.")
@click.option("--var", "var_args", multiple=True, metavar="NAME=VALUE", help="Variable line.")
@click.option("--sign-key", type=_IN, help="Ed25519 private key (PEM or hex) to sign with.")
@click.option("-o", "--output", type=_FILE, required=True, help="Where to write boot.bin.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(stage2: Path, dtbs: tuple[Path, ...], kernel: Path | None, firmware: Path | None,
          compress: str,
          gzip_level: int, initramfs: Path | None, initramfs_mode: str, var_args: tuple[str, ...],
          sign_key: Path | None, output: Path, as_json: bool) -> None:
    """Assemble a stage-2 boot.bin: stage2 | dtb… | kernel | initramfs | vars | sig.

    With --compress none the kernel comes last: stage2 | dtb… | initramfs | filler FDT |
    vars | kernel | sig. With --firmware: stage2 | dtb… | firmware | vars | sig.
    """
    parts = assemble.Stage2Parts(
        stage2=_read(stage2, "stage 2"),
        dtbs=tuple(_read(d, "device tree") for d in dtbs),
        kernel=_read(kernel, "kernel") if kernel else None,
        firmware=_read(firmware, "firmware") if firmware else None,
        compression=assemble.Compression(compress),
        gzip_level=gzip_level,
        initramfs=_read(initramfs, "initramfs") if initramfs else None,
        initramfs_mode=assemble.InitramfsMode(initramfs_mode),
        variables=tuple(bvars.parse_assignment(a) for a in var_args),
    )
    key = sign.load_private_key(sign_key) if sign_key else None
    data = assemble.assemble_stage2(parts, key)
    write_bytes(output, data)
    _emit(as_json, {"output": str(output), "size": len(data), "signed": key is not None},
          [f"wrote {output} ({len(data)} bytes{', signed' if key else ''})"])


@bootobj.command()
@click.option("--image", type=_IN, required=True, help="Stage-1 loader image.")
@click.option("--esp-partuuid", required=True, help="PARTUUID of the OS's ESP.")
@click.option("--chainload-key", type=_IN, help="Public key stage 2 must be signed with.")
@click.option("--var", "var_args", multiple=True, metavar="NAME=VALUE",
              help="chosen.*, display=, mitigations=, tso=.")
@click.option("-o", "--output", type=_FILE, required=True)
def stage1(image: Path, esp_partuuid: str, chainload_key: Path | None,
           var_args: tuple[str, ...], output: Path) -> None:
    """Append the stage-1 configuration to the stage-1 image."""
    pub = sign.load_public_key(chainload_key) if chainload_key else None
    variables = bvars.stage1_config(
        esp_partuuid, [bvars.parse_assignment(a) for a in var_args], public_key=pub
    )
    data = assemble.assemble_stage1(_read(image, "stage 1"), variables)
    write_bytes(output, data)
    click.echo(f"wrote {output} ({len(data)} bytes)")


@bootobj.command("sign")
@click.argument("path", type=_IN)
@click.option("--key", type=_IN, required=True, help="Ed25519 private key (PEM or hex).")
@click.option("-o", "--output", type=_FILE, help="Write here instead of in place.")
@click.option("--replace", is_flag=True, help="Replace an existing signature.")
def sign_cmd(path: Path, key: Path, output: Path | None, replace: bool) -> None:
    """Append an Ed25519 signature payload to a boot object."""
    data = sign.sign(_read(path, "boot object"), sign.load_private_key(key), replace=replace)
    write_bytes(output or path, data)
    click.echo(f"signed {output or path}")


@bootobj.command()
@click.argument("path", type=_IN)
@click.option("--key", type=_IN, required=True, help="Public key (PEM, hex, ed25519:hex).")
@click.option("--json", "as_json", is_flag=True)
def verify(path: Path, key: Path, as_json: bool) -> None:
    """Check that a boot object carries a valid signature by KEY (exit 1 if not)."""
    found = sign.verify(_read(path, "boot object"), sign.load_public_key(key))
    _emit(as_json, {"valid": True, "key_id": found.key_id.hex(), "signed_bytes": found.offset},
          [f"{path}: valid signature by key {found.key_id.hex()}"])


@bootobj.command()
@click.argument("path", type=_IN)
@click.option("--json", "as_json", is_flag=True)
def info(path: Path, as_json: bool) -> None:
    """Show a boot object's loader version, payloads, variables and signature."""
    data = _read(path, "boot object")
    ver = version.read_version(data)
    doc: dict[str, Any] = {"size": len(data), "version": _version_doc(ver)}
    lines = [f"{path}: {len(data)} bytes"]
    lines.append(f"  loader: {ver.kind} {ver.version} ({ver.stage})" if ver else "  loader: ?")
    start = scan.payload_start(data)
    payloads = scan.scan(data, start)
    doc["image_size"] = start
    doc["payloads"] = [_payload_doc(p) for p in payloads]
    lines.append(f"  image: {start} bytes")
    for p in payloads:
        inner = "".join(f" [{i.kind} {i.size} bytes {i.detail}]".rstrip() for i in p.inner)
        lines.append(f"  {p.offset:>10}  {p.kind:<10} {p.size:>10}  {p.detail}{inner}".rstrip())
        lines.extend(f"{'':>14}{v.name}={v.value}" for v in p.variables)
    _emit(as_json, doc, lines)


@bootobj.command("update-esp")
@click.argument("esp", type=click.Path(file_okay=False, path_type=Path))
@click.argument("boot_bin", type=_IN)
@click.option("--allow-older", is_flag=True, help="Install even if older than the current one.")
@click.option("--key", type=_IN, help="Refuse unless signed by this public key.")
@click.option("--json", "as_json", is_flag=True)
def update_esp(esp: Path, boot_bin: Path, allow_older: bool, key: Path | None,
               as_json: bool) -> None:
    """Install BOOT_BIN as ESP/m1n1/boot.bin (previous kept as boot.bin.old)."""
    pub = sign.load_public_key(key) if key else None
    res = espupdate.update_esp(esp, _read(boot_bin, "boot object"), allow_older=allow_older,
                               public_key=pub)
    prev = f"{res.previous.kind} {res.previous.version}" if res.previous else "none"
    _emit(
        as_json,
        {"path": str(res.path), "installed": _version_doc(res.installed),
         "previous": _version_doc(res.previous), "kept_old": res.kept_old,
         "downgrade": res.downgrade},
        [f"installed {res.installed.kind} {res.installed.version} as {res.path} "
         f"(previous: {prev})"],
    )


@bootobj.command()
@click.option("-o", "--output", type=_FILE, required=True, help="Private key file (mode 0600).")
@click.option("--public-out", type=_FILE, help="Also write the public key here.")
@click.option("--format", "fmt", type=click.Choice([f.value for f in sign.KeyFormat]),
              default="pem", show_default=True)
def keygen(output: Path, public_out: Path | None, fmt: str) -> None:
    """Create an Ed25519 signing key."""
    if output.exists():
        raise BootObjectError(f"{output} exists; refusing to overwrite a key")
    key = sign.generate_key()
    sign.save_private_key(output, key, sign.KeyFormat(fmt))
    pub = sign.public_bytes(key.public_key())
    if public_out:
        sign.save_public_key(public_out, pub, sign.KeyFormat(fmt))
    click.echo(f"chainload.key=ed25519:{pub.hex()}")
