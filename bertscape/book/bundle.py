"""Results bundles: what the book needs to render a profile, in one file that travels without the compute.

Usage::

    python -m bertscape.book.bundle export --profile gpu gpu.tar.gz          # on the machine that built the book
    python -m bertscape.book.bundle show gpu.tar.gz                           # its manifest
    make book PROFILE=gpu BUNDLE=gpu.tar.gz                              # anywhere: import, then render

A bundle is a gzipped tar of cache entries — run histories and dev predictions, grids, layer tables and
the study's memos; no weights unless ``--with-weights`` — plus ``manifest.json``: the profile and its
resolved settings, the package version, the cache versions of :mod:`bertscape.base.versions`, the machine's
device and the precisions it computed in, and the sha256 and size of every member. The members are the
cache files the chapters read when they render the profile (recorded while every result the book shows
is read back: :func:`bertscape.base.cache.recording_reads`), so the cache must hold a complete build.

Importing checks everything before writing anything: the manifest's cache versions must equal the code's
(the kinds that differ are named), every member must be a plain file under the cache's own folders (no
absolute path, no ``..``, no link), listed in the manifest with its hash and size, and within the size
cap. Only then are the members moved into the cache. No member is ever unpickled: JSON, NPZ without
pickles, NetCDF and safetensors only.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Sequence

import torch

from bertscape import __version__
from bertscape.base import cache, versions, workcount
from bertscape.base.errors import BertscapeError
from bertscape.book import claims, study, tables
from bertscape.book.profiles import (
    DEFAULT_PROFILE,
    PROFILE_NAMES,
    Profile,
    from_params,
    get_profile,
)
from bertscape.runs.models import resolve_device
from bertscape.runs.precision import describe as describe_precision
from bertscape.runs.train import PARAM_SIZES, RunResult, load_run

__all__ = ["FORMAT", "MAX_BYTES", "export_bundle", "import_bundle", "read_manifest", "render_overrides", "main"]

#: Version of the bundle layout.
FORMAT = 1
#: The largest bundle (members, uncompressed) import accepts by default: 4 GiB.
MAX_BYTES = 4 * 2 ** 30
#: The cache folders a bundle may hold members of.
FOLDERS = ("runs", "grids", "memo", "layers")
#: The files of a run folder that are weights (left out unless ``with_weights``).
WEIGHT_SUFFIX = ".safetensors"
MANIFEST = "manifest.json"


class BundleError(BertscapeError):
    """A bundle that cannot be exported or imported, and why."""


# ----------------------------------------------------------------------------- export

def results_of(P: Profile) -> None:
    """Read back (or, where the cache lacks it, compute) every result the book's chapters show for ``P``:
    each chapter's claims and every figure's data."""
    claims.full_scorecard(P)
    s0 = study.figure_seed(P)
    tables.flatness_table(P)
    for t in P.tasks:
        study.control_runs(P, t, s0)
        tables.final_metrics(P, t)
        tables.training_table(P, t)
        study.surfaces(P, t, s0)
        study.trajectories(P, t, s0)
        study.pca_paths(P, t, s0)
        study.basin_surfaces(P, t, s0)
        tables.flatness_ratios(P, t)
        study.layer_reports(P, t, s0)
        study.barriers(P, t)
        for s in P.seeds:
            study.curves(P, t, s)
            study.long_runs(P, t, s)


def _missing_runs(P: Profile) -> list[str]:
    from bertscape.book.sweep import (
        run_specs,  # the list of every run of a profile lives with the sweep
    )

    return [s.label() for s in run_specs(P) if load_run(s) is None]


def _run_folder_files(folder: Path, with_weights: bool) -> dict[str, bytes | Path]:
    """The members of one run folder: its files (weights only ``with_weights``), and without weights a
    ``param_sizes.json`` and a manifest that lists what the bundle holds."""
    out: dict[str, bytes | Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != MANIFEST and (with_weights or not p.name.endswith(WEIGHT_SUFFIX)):
            out[p.name] = p
    if not with_weights:  # what a layer report needs of the weights: the parameters' names and sizes
        out[PARAM_SIZES] = json.dumps(RunResult.param_sizes_of(folder), indent=1).encode()
    listing = {name: (len(v) if isinstance(v, bytes) else v.stat().st_size) for name, v in sorted(out.items())}
    out[MANIFEST] = json.dumps(listing, indent=1, sort_keys=True).encode()
    return out


def _machine() -> dict[str, Any]:
    if torch.cuda.is_available():
        return {"device": torch.cuda.get_device_name(0)}
    from bertscape.runs.precision import cpu_flags

    info = cpu_flags()
    return {"device": f"CPU: {info['model']} ({info['cores']} cores)"}


def export_bundle(P: Profile, out: str | os.PathLike, with_weights: bool = False, log: Any = print) -> dict[str, Any]:
    """Write the bundle of profile ``P`` to ``out`` (a ``.tar.gz``), from this machine's cache; return its
    manifest. The cache must hold the profile's build (``make book PROFILE=…``): a missing run is an error
    before anything is read, and anything the chapters show that the cache lacks would be computed (the
    export then says how much work that was)."""
    missing = _missing_runs(P)
    if missing:
        raise BundleError(f"the cache at {cache.cache_dir()} lacks {len(missing)} run(s) of profile {P.name!r} "
                          f"(e.g. {missing[0]}); build the book first: make book PROFILE={P.name}")
    root = cache.cache_dir().resolve()
    study.forget()  # results this process already holds would be read from memory, not recorded
    with workcount.counting() as work, cache.recording_reads() as reads:
        results_of(P)
    if any(work.values()):
        log(f"[bundle] note: the cache lacked some results, computed now: {work}")
    members: dict[str, bytes | Path] = {}
    runs = set()
    for p in sorted(reads):
        try:
            rel = p.relative_to(root)
        except ValueError:
            continue
        if not p.is_file() or rel.parts[0] not in FOLDERS:
            continue
        if rel.parts[0] == "runs":
            runs.add(root / "runs" / rel.parts[1])
        else:
            members[rel.as_posix()] = p
    for folder in sorted(runs):
        if folder.name.endswith(".partial"):
            continue
        for name, src in _run_folder_files(folder, with_weights).items():
            members[f"runs/{folder.name}/{name}"] = src
    listing = {}
    for name, src in members.items():
        data = src if isinstance(src, bytes) else src.read_bytes()
        listing[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    dev = resolve_device(P.device)
    manifest = {
        "format": FORMAT, "profile": P.name, "settings": P.to_dict(), "package_version": __version__,
        "versions": {k: v[0] for k, v in versions.KINDS.items()},
        "machine": {**_machine(), "precision_rule": describe_precision(dev)},
        "precision": {f: study._prec(P, f) for f in ("precision", "curve_precision", "grid_precision")},
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "with_weights": bool(with_weights), "members": listing,
    }
    out = Path(out)
    with cache.atomic_path(out) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            _add(tar, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
            for name, src in sorted(members.items()):
                _add(tar, name, src if isinstance(src, bytes) else src.read_bytes())
    total = sum(m["size"] for m in listing.values())
    log(f"[bundle] {out}: {len(listing)} files, {total / 2 ** 20:.1f} MiB uncompressed, "
        f"{out.stat().st_size / 2 ** 20:.1f} MiB on disk")
    return manifest


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


# ----------------------------------------------------------------------------- import

def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return (not p.is_absolute() and ".." not in p.parts and "\\" not in name and len(p.parts) >= 2
            and p.parts[0] in FOLDERS and all(part not in ("", ".") for part in p.parts))


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a bundle (checked to be one), without extracting anything."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.getmember(MANIFEST)
            if not member.isfile() or member.size > 64 * 2 ** 20:
                raise BundleError(f"{path}: its {MANIFEST} is not a plain file of sensible size")
            manifest = json.loads(tar.extractfile(member).read())
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise BundleError(f"{path} is not a bertscape results bundle ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("members"), dict):
        raise BundleError(f"{path}: bundle format {manifest.get('format') if isinstance(manifest, dict) else '?'} "
                          f"is not accepted; expected {FORMAT}")
    return manifest


def _version_mismatch(manifest: Mapping[str, Any]) -> list[str]:
    theirs = manifest.get("versions", {})
    ours = {k: v[0] for k, v in versions.KINDS.items()}
    return [f"{k} (bundle {theirs.get(k, 'absent')}, code {ours.get(k, 'absent')})"
            for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]


def import_bundle(path: str | os.PathLike, max_bytes: int = MAX_BYTES, log: Any = print) -> dict[str, Any]:
    """Check the bundle at ``path`` and, when every check passes, fill this machine's cache with it;
    return its manifest. Nothing is written to the cache when a check fails (a :class:`BundleError` says
    which): other cache versions than the code's, a member that is not a plain file under the cache's
    folders or whose path escapes them, a member the manifest does not list or whose hash or size differs,
    a manifest member missing from the archive, or more than ``max_bytes`` in all."""
    manifest = read_manifest(path)
    differ = _version_mismatch(manifest)
    if differ:
        raise BundleError(f"{path} was made with other cache versions than this code's: {', '.join(differ)}; "
                          "export it again with this version of bertscape, or render with the version that made it")
    listed: dict[str, dict] = manifest["members"]
    total = sum(int(m.get("size", 0)) for m in listed.values())
    if total > max_bytes:
        raise BundleError(f"{path} holds {total / 2 ** 30:.2f} GiB, more than the cap of {max_bytes / 2 ** 30:.2f} GiB "
                          "(pass a larger max_bytes / --max-gb if you trust it)")
    bad = [n for n in listed if not _safe_name(n)]
    if bad:
        raise BundleError(f"{path}: member {bad[0]!r} is not accepted; members must be relative paths inside "
                          f"{', '.join(FOLDERS)}/ without '..'")
    root = cache.cache_dir().resolve()
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=root.parent))
    try:
        seen = set()
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                if not _safe_name(member.name):
                    raise BundleError(f"{path}: member {member.name!r} is not accepted; members must be relative "
                                      f"paths inside {', '.join(FOLDERS)}/ without '..'")
                if not member.isfile():
                    raise BundleError(f"{path}: member {member.name!r} is not a plain file (a link or a device)")
                want = listed.get(member.name)
                if want is None:
                    raise BundleError(f"{path}: member {member.name!r} is not listed in its manifest")
                if member.size != want["size"] or member.size > max_bytes:
                    raise BundleError(f"{path}: member {member.name!r} has {member.size} bytes, its manifest says "
                                      f"{want['size']}")
                data = tar.extractfile(member).read()
                if hashlib.sha256(data).hexdigest() != want["sha256"]:
                    raise BundleError(f"{path}: member {member.name!r} does not match its sha256 in the manifest "
                                      "(the bundle was changed or damaged); nothing was imported")
                target = staging / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                seen.add(member.name)
        absent = sorted(set(listed) - seen)
        if absent:
            raise BundleError(f"{path}: {len(absent)} member(s) of its manifest are missing from the archive "
                              f"(e.g. {absent[0]})")
        for name in sorted(seen):  # every check passed: into the cache, one atomic move per file
            dst = root / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = cache.subdir("bundles") / f"{manifest['profile']}.json"
    cache.write_json(record, {k: v for k, v in manifest.items() if k != "members"} | {"path": str(Path(path).resolve()),
                                                                                      "imported": time.strftime("%Y-%m-%d %H:%M:%S")})
    log(f"[bundle] imported {len(seen)} files of profile {manifest['profile']!r} ({manifest['machine']['device']}, "
        f"made {manifest['created']} with bertscape {manifest['package_version']}) into {root}")
    return manifest


def render_overrides(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The chapters' parameters that render a bundle's results: its profile's settings where they differ
    from the named profile, and its precisions pinned to what it computed in (``auto`` resolves per
    machine, and the cache keys hold the resolved precision)."""
    name = manifest["profile"]
    base = get_profile(name).to_dict() if name in PROFILE_NAMES else {}
    settings = dict(manifest["settings"])
    overrides = {k: v for k, v in settings.items() if k not in ("name", "description") and base.get(k) != v}
    overrides.update(manifest["precision"])
    return overrides


# ----------------------------------------------------------------------------- command line

def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bertscape.book.bundle export|import|show``."""
    ap = argparse.ArgumentParser(prog="python -m bertscape.book.bundle", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the bundle of a profile from this machine's cache")
    ex.add_argument("out", help="the bundle to write (.tar.gz)")
    ex.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILE_NAMES)
    ex.add_argument("--tasks", nargs="+", help="tasks (default: the profile's)")
    ex.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the profile's)")
    ex.add_argument("--model", help="model (default: the profile's)")
    ex.add_argument("--glue-dir", help="GLUE folder")
    ex.add_argument("--overrides", help="JSON dict of profile fields, as the chapters' `overrides` parameter")
    ex.add_argument("--with-weights", action="store_true", help="include θ0, θ1 and the checkpoints (large)")
    im = sub.add_parser("import", help="check a bundle and fill this machine's cache with it")
    im.add_argument("bundle")
    im.add_argument("--max-gb", type=float, default=MAX_BYTES / 2 ** 30, help="size cap (uncompressed)")
    sh = sub.add_parser("show", help="print a bundle's manifest (without its member list)")
    sh.add_argument("bundle")
    args = ap.parse_args(argv)
    try:
        if args.command == "export":
            P = from_params(args.profile, args.tasks, args.glue_dir,
                            json.loads(args.overrides) if args.overrides else None, args.seeds, args.model)
            export_bundle(P, args.out, args.with_weights)
        elif args.command == "import":
            import_bundle(args.bundle, int(args.max_gb * 2 ** 30))
        else:
            m = read_manifest(args.bundle)
            print(json.dumps({k: v for k, v in m.items() if k != "members"} | {"members": len(m["members"])},
                             indent=1, sort_keys=True))
    except BertscapeError as exc:
        print(f"[bundle] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
