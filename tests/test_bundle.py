"""Results bundles refuse what is not safe or not theirs, and write nothing to the cache when they do.
(The round trip of a real build — export, import into an empty cache, render with no work — is in
test_site.py, beside the smoke book it needs.)"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from bertscape.base import versions
from bertscape.book import bundle as B


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _member(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.linkname = link
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_bundle(path: Path, members: dict[str, bytes], *, listed: dict[str, bytes] | None = None,
                versions_: dict | None = None, extra: list[tuple[str, bytes, bytes, str]] = ()) -> Path:
    """A bundle by hand: ``members`` in the archive, ``listed`` in the manifest (default: the same)."""
    listed = members if listed is None else listed
    manifest = {"format": B.FORMAT, "profile": "smoke", "settings": {}, "package_version": "0",
                "versions": versions_ if versions_ is not None else {k: v[0] for k, v in versions.KINDS.items()},
                "machine": {"device": "test"}, "precision": {"precision": "fp32"}, "created": "today",
                "with_weights": False,
                "members": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in listed.items()}}
    with tarfile.open(path, "w:gz") as tar:
        _member(tar, B.MANIFEST, json.dumps(manifest).encode())
        for n, d in members.items():
            _member(tar, n, d)
        for n, d, kind, link in extra:
            _member(tar, n, d, kind, link)
    return path


GOOD = {"memo/widths-abc.json": b'{"value": 1}', "grids/surface-123.nc": b"not really netcdf"}


@pytest.fixture()
def cache_root(fresh_cache: Path) -> Path:
    fresh_cache.mkdir(parents=True, exist_ok=True)
    (fresh_cache / "memo").mkdir()
    (fresh_cache / "memo" / "mine.json").write_text('{"value": 0}')  # something already there
    return fresh_cache


def test_a_good_bundle_fills_the_cache(tmp_path: Path, cache_root: Path) -> None:
    m = B.import_bundle(make_bundle(tmp_path / "b.tar.gz", GOOD), log=lambda *_: None)
    assert m["profile"] == "smoke"
    for name, data in GOOD.items():
        assert (cache_root / name).read_bytes() == data
    assert (cache_root / "memo" / "mine.json").is_file()
    assert json.loads((cache_root / "bundles" / "smoke.json").read_text())["profile"] == "smoke"


@pytest.mark.parametrize("case, message", [
    ("tampered", "does not match its sha256"),
    ("versions", "other cache versions than this code's: grids"),
    ("dotdot", "'runs/../../evil.json' is not accepted"),
    ("absolute", "'/etc/evil.json' is not accepted"),
    ("unlisted", "not listed in its manifest"),
    ("absent", "missing from the archive"),
    ("link", "is not a plain file"),
    ("outside", "'tokens/x.json' is not accepted"),
    ("too big", "more than the cap"),
    ("not a bundle", "is not a bertscape results bundle"),
])
def test_a_bad_bundle_is_refused_and_nothing_is_written(tmp_path: Path, cache_root: Path, case: str,
                                                        message: str) -> None:
    before = _snapshot(cache_root)
    path = tmp_path / "bad.tar.gz"
    cap = B.MAX_BYTES
    if case == "tampered":
        make_bundle(path, {**GOOD, "memo/widths-abc.json": b'{"value": 2}'}, listed=GOOD)
    elif case == "versions":
        v = {k: x[0] for k, x in versions.KINDS.items()}
        make_bundle(path, GOOD, versions_={**v, "grids": "999"})
    elif case == "dotdot":
        make_bundle(path, {**GOOD, "runs/../../evil.json": b"{}"})
    elif case == "absolute":
        make_bundle(path, {**GOOD, "/etc/evil.json": b"{}"})
    elif case == "unlisted":
        make_bundle(path, {**GOOD, "memo/extra.json": b"{}"}, listed=GOOD)
    elif case == "absent":
        make_bundle(path, {"memo/widths-abc.json": GOOD["memo/widths-abc.json"]}, listed=GOOD)
    elif case == "link":
        make_bundle(path, GOOD, listed={**GOOD, "memo/link.json": b""},
                    extra=[("memo/link.json", b"", tarfile.SYMTYPE, "/etc/passwd")])
    elif case == "outside":
        make_bundle(path, {**GOOD, "tokens/x.json": b"{}"})
    elif case == "too big":
        make_bundle(path, GOOD)
        cap = 10
    else:
        path.write_bytes(b"plain text, not a gzipped tar")
    with pytest.raises(B.BundleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        B.import_bundle(path, max_bytes=cap, log=lambda *_: None)
    assert _snapshot(cache_root) == before


def test_render_overrides_pin_the_precisions_and_keep_the_settings() -> None:
    from bertscape.book.profiles import get_profile

    settings = get_profile("smoke", seeds=(0, 1, 2), n_train=48).to_dict()
    o = B.render_overrides({"profile": "smoke", "settings": settings,
                            "precision": {"precision": "bf16", "curve_precision": "bf16", "grid_precision": "fp32"}})
    assert o["seeds"] == [0, 1, 2] and o["n_train"] == 48 and "n_dev" not in o
    assert (o["precision"], o["curve_precision"], o["grid_precision"]) == ("bf16", "bf16", "fp32")
