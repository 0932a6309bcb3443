"""Catalog trust (issue 9 item 6): the detached Ed25519 signature ``<catalog>.sig``, pinned
keys, and what `pippin install` / `pippin plan` do with signed, unsigned and hostile
catalogs. Served over real nginx where a URL is involved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from installer import catalog_trust as ct
from installer.bootobj import sign
from installer.demo.site import CATALOG_NAME, UEFI_ONLY, ensure_site
from installer.errors import CatalogError
from tests.support import nginx
from tests.support.installfix import new_sim

ROOT = Path(__file__).resolve().parents[1]
PREBUILT = ROOT / "bootchain" / "prebuilt"
CATALOG = b'{"os_list": []}\n'
REF = "https://example.org/pippin/installer_data.json"


def key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def pub(k: Ed25519PrivateKey) -> bytes:
    return sign.public_bytes(k.public_key())


A, B = key(1), key(2)


def test_signature_file_round_trip_and_format():
    sig = ct.sign_catalog(CATALOG, A)
    lines = sig.decode().split("\n")
    assert lines[0] == "pippin-catalog-signature 1"
    assert lines[1] == f"key ed25519:{pub(A).hex()}"
    assert lines[2].startswith("signature ")
    assert len(lines[2]) == len("signature ") + 128
    assert lines[3] == ""
    parsed = ct.parse_signature(sig, "x.sig")
    assert parsed.public_key == pub(A)
    assert ct.render_signature(parsed) == sig


def test_pinned_key_verifies():
    v = ct.check_catalog(REF, CATALOG, ct.sign_catalog(CATALOG, A),
                         [ct.Pin("https://example.org/", pub(A))])
    assert v.trust is ct.Trust.PINNED
    assert v.message == f"catalog {REF}: signature by pinned key {ct.key_id(pub(A))} verified"


def test_wrong_key_is_refused():
    with pytest.raises(CatalogError) as e:
        ct.check_catalog(REF, CATALOG, ct.sign_catalog(CATALOG, B), [ct.Pin("", pub(A))])
    assert e.value.message == (f"catalog {REF} is signed by key {ct.key_id(pub(B))}, not by the "
                               f"key pinned for it ({ct.key_id(pub(A))}); not using it")


def test_signature_for_other_bytes_is_refused():
    sig = ct.sign_catalog(b'{"os_list": [1]}\n', A)
    for pins in ([ct.Pin("", pub(A))], []):
        with pytest.raises(CatalogError, match="does not match its signature"):
            ct.check_catalog(REF, CATALOG, sig, pins)


def test_truncated_catalog_is_refused():
    sig = ct.sign_catalog(CATALOG, A)
    with pytest.raises(CatalogError, match=r"altered or truncated; not using it$"):
        ct.check_catalog(REF, CATALOG[:-2], sig, [])


def test_signature_of_a_boot_object_does_not_vouch_for_a_catalog():
    """The same key signing raw bytes (as formats.md §4 boot objects are) is no catalog
    signature: the catalog signature covers a context prefix."""
    raw = A.sign(CATALOG)
    forged = ct.render_signature(ct.CatalogSignature(pub(A), raw))
    with pytest.raises(CatalogError, match="does not match"):
        ct.check_catalog(REF, CATALOG, forged, [ct.Pin("", pub(A))])


def good_sig() -> bytes:
    return ct.sign_catalog(CATALOG, A)


HEAD = "the first line is not 'pippin-catalog-signature 1'"


@pytest.mark.parametrize(("data", "why"), [
    (good_sig()[:-1], "it does not end with a newline (cut short?)"),
    (good_sig()[:60], "it does not end with a newline (cut short?)"),
    (good_sig()[: good_sig().index(b"\nsignature") + 1], "2 lines, not 3 (header, key, signature)"),
    (b"", "it does not end with a newline (cut short?)"),
    (b"\n", HEAD),
    (b"untrusted comment: minisign\nRWQ...\n", HEAD),
    (good_sig().replace(b"\n", b"\r\n"), HEAD),
    (good_sig() + b"extra\n", "4 lines, not 3 (header, key, signature)"),
    (good_sig().replace(b"key ed25519:", b"key rsa:"),
     "line 2 is not 'key ed25519:<64 hex digits>'"),
    (good_sig().replace(b"\nsignature ", b"\nsignature zz")[:-3] + b"\n",
     "line 3 is not 'signature <128 hex digits>'"),
    (good_sig()[:-3] + b"\n", "line 3 is not 'signature <128 hex digits>'"),
    (b"\xff\xfe" + good_sig(), "not ASCII text"),
    (bytes(5000), "5000 bytes (a signature file is under 4096)"),
    (A.sign(CATALOG), "not ASCII text"),  # a raw 64-byte signature is not our format
])
def test_malformed_signature_file_is_a_one_line_refusal(data, why):
    with pytest.raises(CatalogError) as e:
        ct.check_catalog(REF, CATALOG, data, [])
    assert e.value.message == f"catalog signature {REF}.sig is malformed: {why}"
    assert "\n" not in e.value.message


def test_unsigned_catalog_gets_a_notice_unless_a_key_is_pinned():
    v = ct.check_catalog(REF, CATALOG, None, [ct.Pin("https://other.example/", pub(A))])
    assert v.trust is ct.Trust.UNSIGNED
    assert v.message == (f"catalog {REF} is unsigned (no {REF}.sig); using it without a "
                         "signature check")
    with pytest.raises(CatalogError, match=r"has no signature .* but key .* is pinned for it"):
        ct.check_catalog(REF, CATALOG, None, [ct.Pin("https://example.org/pippin/", pub(A))])


def test_signed_but_unpinned_is_checked_and_named():
    v = ct.check_catalog(REF, CATALOG, good_sig(), [])
    assert v.trust is ct.Trust.SIGNED
    assert f"PIPPIN_CATALOG_KEY=ed25519:{pub(A).hex()}" in v.message


def test_longest_prefix_pin_wins_and_prefixes_are_plain():
    pins = [ct.Pin("", pub(B)), ct.Pin("https://example.org/", pub(A))]
    assert ct.pinned_key(REF, pins) == pins[1]
    assert ct.pinned_key("https://example.org.evil/x", pins) == pins[0]


def test_pins_from_env(tmp_path):
    assert ct.pins_from_env({}) == ct.BUILTIN_PINS
    assert ct.pins_from_env({"PIPPIN_CATALOG_KEY": f"ed25519:{pub(A).hex()}"})[-1] == \
        ct.Pin("", pub(A))
    f = tmp_path / "k.pub"
    sign.save_public_key(f, pub(B))
    assert ct.pins_from_env({"PIPPIN_CATALOG_KEY": str(f)})[-1] == ct.Pin("", pub(B))
    with pytest.raises(CatalogError, match="^PIPPIN_CATALOG_KEY: cannot read key file"):
        ct.pins_from_env({"PIPPIN_CATALOG_KEY": str(tmp_path / "missing")})


def test_demo_site_catalog_is_signed_with_the_demo_key(tmp_path):
    site = ensure_site(tmp_path, prebuilt=PREBUILT, assets=None)
    data = (site.root / CATALOG_NAME).read_bytes()
    sig = (site.root / (CATALOG_NAME + ct.SIG_SUFFIX)).read_bytes()
    v = ct.check_catalog("http://x/installer_data.json", data, sig,
                         [ct.Pin("http://x/", site.catalog_key)])
    assert v.trust is ct.Trust.PINNED
    assert not any("key" in p.name for p in site.root.iterdir())  # private key not served
    assert ((tmp_path / "demo" / "catalog-key.pem").stat().st_mode & 0o777) == 0o600
    again = ensure_site(tmp_path, prebuilt=PREBUILT, assets=None)
    assert again.catalog_key == site.catalog_key  # the key is kept, the site not rebuilt


# -- through the CLI -----------------------------------------------------------------------


def pippin(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k not in ("INSTALLER_DATA", "PIPPIN_CATALOG_KEY")}
    e.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), **env)
    return subprocess.run([sys.executable, "-m", "installer.cli", *args], capture_output=True,
                          text=True, env=e, timeout=600, stdin=subprocess.DEVNULL, cwd=ROOT)


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    """The demo site (made once) copied into a folder nginx serves, plus tampered copies."""
    cache = tmp_path_factory.mktemp("trust-cache")
    site = ensure_site(cache, prebuilt=PREBUILT, assets=None)
    root = tmp_path_factory.mktemp("trust-www")
    data = (site.root / CATALOG_NAME).read_bytes()
    sig = (site.root / (CATALOG_NAME + ct.SIG_SUFFIX)).read_bytes()
    cases = {
        "good": (data, sig),
        "unsigned": (data, None),
        "tampered": (data.replace(b'"expert": false', b'"expert": true ', 1), sig),
        "badsig": (data, b"garbage\n"),
        "e500": (data, sig),
    }
    for name, (cat, s) in cases.items():
        d = root / name
        d.mkdir()
        (d / CATALOG_NAME).write_bytes(cat)
        if s is not None:
            (d / (CATALOG_NAME + ct.SIG_SUFFIX)).write_bytes(s)
        for f in site.root.iterdir():  # packages and the restore image, shared
            if f.name not in (CATALOG_NAME, CATALOG_NAME + ct.SIG_SUFFIX) and \
                    not f.name.startswith("."):
                os.symlink(f, d / f.name)
    extra = f"location = /e500/{CATALOG_NAME}.sig {{ return 500; }}"
    with nginx.serve(root, tmp_path_factory.mktemp("trust-ngx"), extra=extra) as srv:
        yield srv, site


def dry_run(tmp_path, srv, case, **env):
    url = srv.url(f"{case}/{CATALOG_NAME}")
    return url, pippin(tmp_path, "install", "--dry-run", "--catalog", url, "--os", UEFI_ONLY,
                       "--target", f"sim:{tmp_path / 'mac.img'}", **env)


def test_cli_pinned_key_plans_quietly(tmp_path, www):
    srv, site = www
    url, r = dry_run(tmp_path, srv, "good",
                     PIPPIN_CATALOG_KEY=f"ed25519:{site.catalog_key.hex()}")
    assert r.returncode == 0, r.stderr
    assert "operations:" in r.stdout
    assert "WARNING: catalog" not in r.stderr
    assert f"GET /good/{CATALOG_NAME}.sig" in "\n".join(srv.log_lines())


def test_cli_unsigned_catalog_one_line_notice(tmp_path, www):
    srv, _ = www
    url, r = dry_run(tmp_path, srv, "unsigned")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [f"WARNING: catalog {url} is unsigned (no {url}.sig); using "
                                     "it without a signature check"]


@pytest.mark.parametrize(("case", "pinned", "line"), [
    ("tampered", True, "catalog {url} does not match its signature {url}.sig (key {kid}): "
                       "altered or truncated; not using it"),
    ("tampered", False, "catalog {url} does not match its signature {url}.sig (key {kid}): "
                        "altered or truncated; not using it"),
    ("badsig", False, "catalog signature {url}.sig is malformed: the first line is not "
                      "'pippin-catalog-signature 1'"),
    ("e500", False, "cannot fetch catalog signature {url}.sig: HTTP 500; not using the catalog"),
    ("unsigned", True, "catalog {url} has no signature ({url}.sig) but key {kid} is pinned for "
                       "it; not using it"),
])
def test_cli_refusals_are_one_line(tmp_path, www, case, pinned, line):
    srv, site = www
    env = {"PIPPIN_CATALOG_KEY": f"ed25519:{site.catalog_key.hex()}"} if pinned else {}
    url, r = dry_run(tmp_path, srv, case, **env)
    assert r.returncode == 1
    kid = ct.key_id(site.catalog_key)
    assert r.stderr.splitlines() == ["pippin: error: " + line.format(url=url, kid=kid)]
    assert not (tmp_path / "mac.img").exists()  # nothing was used: no sim created


def test_cli_wrong_pinned_key(tmp_path, www):
    srv, site = www
    url, r = dry_run(tmp_path, srv, "good", PIPPIN_CATALOG_KEY=f"ed25519:{pub(B).hex()}")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"pippin: error: catalog {url} is signed by key {ct.key_id(site.catalog_key)}, not by "
        f"the key pinned for it ({ct.key_id(pub(B))}); not using it"]


def test_cli_demo_catalog_tampered_in_the_cache_is_refused(tmp_path):
    """The embedded demo: its catalog is pinned to the demo key, so an edit in the cache
    (after the site was generated) is refused before anything is planned."""
    r = pippin(tmp_path, "install", "--dry-run", "--target", f"sim:{tmp_path / 'mac.img'}",
               PIPPIN_DEMO_ASSETS=str(tmp_path / "none"))
    assert r.returncode == 0, r.stderr
    assert "WARNING: catalog" not in r.stderr  # signed and pinned: no notice
    cat = tmp_path / "xdg" / "pippin" / "demo" / "www" / CATALOG_NAME
    doc = json.loads(cat.read_text())
    doc["os_list"][0]["name"] = "Something else"
    cat.write_text(json.dumps(doc))
    r = pippin(tmp_path, "install", "--dry-run", "--target", f"sim:{tmp_path / 'mac.img'}",
               PIPPIN_DEMO_ASSETS=str(tmp_path / "none"))
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("pippin: error:")]
    assert len(errors) == 1, r.stderr  # (the WARNING lines before it: no demo kernel here)
    assert "does not match its signature" in errors[0]


def test_plan_verifies_a_local_catalog(tmp_path):
    new_sim(tmp_path / "mac.img")
    cat = tmp_path / CATALOG_NAME
    cat.write_bytes(CATALOG)
    (tmp_path / (CATALOG_NAME + ".sig")).write_bytes(ct.sign_catalog(CATALOG + b" ", A))
    r = pippin(tmp_path, "plan", "--catalog", str(cat), "--os", "X",
               "--target", f"sim:{tmp_path / 'mac.img'}")
    assert r.returncode == 1
    assert r.stderr.splitlines()[0].startswith(f"pippin: error: catalog {cat} does not match")


def test_catalog_sign_and_verify_commands(tmp_path):
    """What a publisher runs: keygen, sign, verify; then an edited catalog fails verify."""
    k = tmp_path / "k.pem"
    assert pippin(tmp_path, "bootobj", "keygen", "-o", str(k)).returncode == 0
    cat = tmp_path / CATALOG_NAME
    cat.write_bytes(b'{"os_list": []}\n')
    r = pippin(tmp_path, "catalog", "sign", "--key", str(k), str(cat))
    assert r.returncode == 0, r.stderr
    public = sign.load_public_key(k)
    assert r.stdout.strip() == (f"{cat}.sig: signed by key {ct.key_id(public)} (pin it with "
                                f"PIPPIN_CATALOG_KEY=ed25519:{public.hex()})")
    r = pippin(tmp_path, "catalog", "verify", "--key", str(k), str(cat))
    assert (r.returncode, r.stdout.strip()) == (
        0, f"catalog {cat}: signature by pinned key {ct.key_id(public)} verified")
    cat.write_bytes(b'{"os_list": [ ]}\n')
    r = pippin(tmp_path, "catalog", "verify", str(cat))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"pippin: error: catalog {cat} does not match its "
                                     f"signature {cat}.sig (key {ct.key_id(public)}): altered "
                                     "or truncated; not using it"]


def test_catalog_sign_refuses_a_broken_catalog(tmp_path):
    k = tmp_path / "k.pem"
    sign.save_private_key(k, A)
    cat = tmp_path / CATALOG_NAME
    cat.write_bytes(b'{"os_list": [')
    r = pippin(tmp_path, "catalog", "sign", "--key", str(k), str(cat))
    assert r.returncode == 1
    assert r.stderr.splitlines()[0].startswith("pippin: error: catalog is not valid JSON")
    assert not (tmp_path / (CATALOG_NAME + ".sig")).exists()
