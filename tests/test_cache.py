"""The cache's stores: NetCDF datasets and JSON tables round-trip, and a damaged entry reads as missing."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr

from bertscape.base import cache


def test_a_dataset_round_trips_and_a_damaged_file_reads_as_missing(tmp_path) -> None:
    ds = xr.Dataset({"loss": (("alpha",), np.array([0.3, 0.2, np.nan]))}, coords={"alpha": [0.0, 0.5, 1.0]},
                    attrs={"grid_key": "abc"})
    path = tmp_path / "g.nc"
    cache.write_nc(ds, path)
    back = cache.read_nc(path)
    assert back.attrs["grid_key"] == "abc" and back["loss"].values.tolist()[:2] == [0.3, 0.2]
    assert math.isnan(float(back["loss"].values[2]))
    assert [p.name for p in tmp_path.iterdir()] == ["g.nc"]  # no temporary file left behind
    path.write_bytes(path.read_bytes()[:100])  # a partial write
    assert cache.read_nc(path) is None
    assert cache.read_nc(tmp_path / "absent.nc") is None


def test_a_table_round_trips_through_json_with_its_index_and_empty_columns() -> None:
    df = pd.DataFrame({"layer": ["emb", "L0", "L1"], "order": ["bottom-up"] * 3, "cost": [0.1, 0.25, 0.5],
                       "spread": [np.nan] * 3}).set_index(["layer", "order"])
    back = cache.frame_from_json(cache.frame_to_json(df))
    pd.testing.assert_frame_equal(back, df)
    flat = pd.DataFrame({"a": [1, 2], "b": [np.nan, 0.5]})
    pd.testing.assert_frame_equal(cache.frame_from_json(cache.frame_to_json(flat)), flat)
    assert cache.frame_from_json({"columns": ["a"]}) is None  # not such a table
