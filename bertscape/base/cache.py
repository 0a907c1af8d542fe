"""One on-disk cache for datasets, runs and grids.

Every entry is keyed by a hash of everything that determines it, written atomically (temporary
file or folder + ``os.replace``) and verified when read; an entry that fails verification is
treated as missing and recomputed, never half-read.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from bertscape.base import versions


def cache_dir() -> Path:
    """Root of the cache: ``$BERTSCAPE_CACHE`` or ``~/.cache/bertscape``."""
    root = os.environ.get("BERTSCAPE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "bertscape"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def subdir(name: str) -> Path:
    """A named folder inside the cache (created on demand)."""
    path = cache_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return repr(float(obj))
    if isinstance(obj, Path):
        return str(obj)
    return obj


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hash of a JSON-able object that does not depend on dict order or float formatting."""
    text = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it into place atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


_READS: list[set[Path]] = []


@contextlib.contextmanager
def recording_reads() -> Iterator[set[Path]]:
    """The cache files read inside the block (JSON, NPZ, NetCDF, run folders' manifests): what a set of
    results is made of, e.g. for a results bundle (:mod:`bertscape.book.bundle`)."""
    seen: set[Path] = set()
    _READS.append(seen)
    try:
        yield seen
    finally:
        _READS.remove(seen)


def _read(path: str | os.PathLike) -> None:
    for seen in _READS:
        seen.add(Path(path).resolve())


def read_json(path: str | os.PathLike) -> Any | None:
    """Read JSON; ``None`` when the file is missing or not valid JSON (a corrupt entry)."""
    _read(path)
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write an uncompressed ``.npz`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """Read an ``.npz`` without pickles; ``None`` when missing or corrupt."""
    _read(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError) as exc:  # noqa: F841 - corrupt or missing
        return None
    except Exception:  # zipfile.BadZipFile and friends
        return None


def manifest(folder: Path) -> dict[str, int]:
    """File sizes of a folder's files (the cheap completeness check of an entry)."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != "manifest.json"}


def write_manifest(folder: Path) -> None:
    """Record every file's size; written last, so its presence marks the entry complete."""
    write_json(folder / "manifest.json", manifest(folder))


def check_manifest(folder: Path) -> bool:
    """True when the folder holds exactly the files its manifest lists, with their sizes."""
    recorded = read_json(folder / "manifest.json")
    if not isinstance(recorded, dict):
        return False
    try:
        return manifest(folder) == recorded
    except OSError:
        return False


# ----------------------------------------------------------------------------- datasets and tables
# The stores of computed results: NetCDF for grids and per-layer curves (xarray), JSON for small
# tables (pandas). xarray and pandas are imported by these functions, not at the top: this module is
# imported by the package's lightest modules (compute's driver side, the book driver) that never
# read a grid.

def read_nc(path: str | os.PathLike) -> Any:
    """A NetCDF file (h5netcdf engine) loaded into memory as an ``xarray.Dataset``; ``None`` when it
    is missing or unreadable (a corrupt or partial entry is recomputed, never half-read)."""
    import xarray as xr

    path = Path(path)
    _read(path)
    if not path.is_file():
        return None
    try:
        return xr.load_dataset(path, engine="h5netcdf")
    except Exception:  # corrupt or foreign file: treated as missing
        return None


def write_nc(ds: Any, path: str | os.PathLike) -> None:
    """Save an ``xarray.Dataset`` as NetCDF (h5netcdf engine), atomically."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")


def frame_to_json(df: Any) -> dict:
    """A pandas DataFrame as plain JSON: index names, columns and rows (NaN as ``null``)."""
    idx_names = [n if n is not None else "index" for n in df.index.names]
    flat = df.reset_index()
    flat.columns = [str(c) for c in flat.columns]
    return {"index": idx_names, "columns": list(flat.columns),
            "data": [[(None if isinstance(v, float) and math.isnan(v) else v) for v in row]
                     for row in flat.astype(object).values.tolist()]}


def frame_from_json(obj: Any) -> Any:
    """The DataFrame :func:`frame_to_json` wrote (a column of nulls comes back as NaN); ``None``
    when ``obj`` is not such a table."""
    import pandas as pd

    try:
        df = pd.DataFrame(obj["data"], columns=obj["columns"])
        for c in df.columns:  # a column of NaNs comes back as None: make it float again
            if df[c].dtype == object and df[c].isna().all():
                df[c] = np.nan
        idx = list(obj["index"])
        if idx == ["index"]:
            return df.drop(columns="index")
        return df.set_index(idx if len(idx) > 1 else idx[0])
    except (KeyError, TypeError, ValueError):
        return None


def memo_path(name: str, key: Any) -> Path:
    """Where the memo ``name`` of ``key`` lives: ``<cache>/memo/<name>-<hash(key, the kind's version)>.json``."""
    return subdir("memo") / f"{name}-{stable_hash({'key': key, 'code': versions.version('memo:' + name)})}.json"


def memo_json(name: str, key: Any, compute: Callable[[], Any]) -> Any:
    """Cached JSON value of ``compute()`` under :func:`memo_path`.

    For small derived results (numbers, tables as dicts); a missing or corrupt entry is recomputed.
    """
    path = memo_path(name, key)
    stored = read_json(path)
    if isinstance(stored, dict) and "value" in stored:
        return stored["value"]
    value = compute()
    write_json(path, {"value": value})
    return value
