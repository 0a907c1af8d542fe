"""Where grids live: a grid's file in the cache, reading and writing it atomically (NetCDF), and joining
shards into the grid one process would have computed.

A stored grid is an :class:`xarray.Dataset` (see :mod:`bertscape.geometry.grids`); NetCDF has no booleans,
so its ``done`` mask is stored as int8 and read back as booleans.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr

from bertscape.base import cache
from bertscape.base.errors import bad_value

__all__ = ["store_path", "read_grid", "write_grid", "merge_shards"]


def store_path(store: str | Path | None, kind: str, key: str, shard: tuple[int, int]) -> Path | None:
    if store is None:
        return None
    suffix = "" if shard[1] == 1 else f"-shard{shard[0]}of{shard[1]}"
    if isinstance(store, str) and store == "auto":
        return cache.subdir("grids") / f"{kind}-{key}{suffix}.nc"
    path = Path(store)
    if path.suffix != ".nc":  # a bare name: a file in the grids folder
        if isinstance(store, str) and "/" not in store and "\\" not in store:
            return cache.subdir("grids") / f"{store}{suffix}.nc"
        raise bad_value("store", store, "None, 'auto', a name, or a path ending in .nc")
    if suffix:
        path = path.with_name(f"{path.stem}{suffix}.nc")
    return path


def read_grid(path: str | Path) -> xr.Dataset | None:
    """A stored grid loaded into memory (:func:`bertscape.base.cache.read_nc`, its ``done`` mask as
    booleans); ``None`` when missing or unreadable."""
    out = cache.read_nc(path)
    if out is not None and "done" in out:
        out["done"] = out["done"].astype(bool)
    return out


def write_grid(ds: xr.Dataset, path: str | Path) -> None:
    """Save a grid atomically (:func:`bertscape.base.cache.write_nc`; NetCDF has no booleans, so the
    ``done`` mask is stored as int8)."""
    out = ds.copy()
    out["done"] = out["done"].astype(np.int8)
    cache.write_nc(out, path)


def merge_shards(shards: Sequence[xr.Dataset | str | Path]) -> xr.Dataset:
    """Join shards of one grid (same ``grid_key``) into the grid one process would compute.

    Each point is taken from the shard that computed it. Raises when shards belong to
    different grids. The result's ``complete`` attribute says whether every point is done.
    """
    items = [read_grid(s) if isinstance(s, (str, Path)) else s for s in shards]
    if not items or any(s is None for s in items):
        raise bad_value("shards", list(shards), "a non-empty list of grids (Datasets or readable .nc paths)")
    keys = {s.attrs.get("grid_key") for s in items}
    if len(keys) != 1:
        raise bad_value("shards", sorted(map(str, keys)), "shards of one grid (a single grid_key)")
    first = items[0]
    done = np.zeros(first["done"].shape, dtype=bool)
    grid_dims = first["done"].dims
    names = sorted({v for s in items for v in s.data_vars if v != "done" and s[v].dims[:len(grid_dims)] == grid_dims})
    def blank(v: str) -> np.ndarray:  # as evaluate_grid starts them: NaN values, zeroed per-sentence arrays
        like = next(s[v] for s in items if v in s)
        if "_sample_" in v or not np.issubdtype(like.dtype, np.floating):
            return np.zeros(like.shape, like.dtype)
        return np.full(like.shape, np.nan, like.dtype)

    values = {v: blank(v) for v in names}
    for s in items:
        m = s["done"].values.astype(bool) & ~done
        for v in names:
            if v in s:
                values[v][m] = s[v].values[m]
        done |= m
    dims_of = {v: next(s[v].dims for s in items if v in s) for v in names}
    out = xr.Dataset({v: (dims_of[v], values[v]) for v in names} | {"done": (grid_dims, done)},
                     coords={d: first[d].values for d in grid_dims})
    for v in first.data_vars:  # per-sentence labels (``<set>_label``): the same in every shard
        if v not in names and v != "done":
            out[v] = first[v]
    out.attrs.update(first.attrs)
    out.attrs["shard"] = "0/1"
    out.attrs["complete"] = int(bool(done.all()))
    return out
