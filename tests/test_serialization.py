"""Outputs of pandas/numpy code serialise to valid JSON, never crash the runner."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import orjson
import pandas as pd
import pytest

from mlprep.runtime.serialization import dumps


def roundtrip(value):
    text = dumps(value)
    return json.loads(text)  # the strict parser: NaN/Infinity would fail here


def test_numpy_scalars_and_arrays():
    value = {
        "i": np.int64(3),
        "f": np.float32(1.5),
        "b": np.bool_(True),
        "a": np.arange(3),
        "m": np.array([[1.0, 2.0]]),
        "o": np.array(["x", None], dtype=object),
        "h": np.float16(0.5),
    }
    assert roundtrip(value) == {
        "i": 3,
        "f": 1.5,
        "b": True,
        "a": [0, 1, 2],
        "m": [[1.0, 2.0]],
        "o": ["x", None],
        "h": 0.5,
    }


def test_nan_and_infinity_become_null():
    value = {"nan": float("nan"), "inf": float("inf"), "np": np.float64("nan"), "arr": np.array([1.0, np.inf])}
    assert roundtrip(value) == {"nan": None, "inf": None, "np": None, "arr": [1.0, None]}


def test_pandas_values():
    frame = pd.DataFrame({"a": [1, 2], "t": pd.to_datetime(["2024-01-01", None])})
    value = {
        "series": pd.Series({"x": 1.0, "y": np.nan}),
        "list_series": pd.Series([1, 2]),
        "frame": frame,
        "ts": pd.Timestamp("2024-05-01T12:30:00"),
        "nat": pd.NaT,
        "na": pd.NA,
        "delta": pd.Timedelta(seconds=90),
    }
    out = roundtrip(value)
    assert out["series"] == {"x": 1.0, "y": None}
    assert out["list_series"] == [1, 2]
    assert out["frame"] == [{"a": 1, "t": "2024-01-01T00:00:00"}, {"a": 2, "t": None}]
    assert out["ts"] == "2024-05-01T12:30:00"
    assert out["nat"] is None and out["na"] is None
    assert out["delta"] == 90.0


def test_python_values():
    value = {
        "d": dt.date(2024, 1, 2),
        "dt": dt.datetime(2024, 1, 2, 3, 4, 5),
        "dec": Decimal("1.10"),
        "dec_nan": Decimal("NaN"),
        "bytes": b"\x00\xff",
        "set": {1},
        "tuple": (1, 2),
        5: "int key",
    }
    assert roundtrip(value) == {
        "d": "2024-01-02",
        "dt": "2024-01-02T03:04:05",
        "dec": 1.1,
        "dec_nan": None,
        "bytes": "AP8=",
        "set": [1],
        "tuple": [1, 2],
        "5": "int key",
    }
    assert b'"dec":1.10' in dumps(value)  # Decimal digits kept as written


def test_unknown_type_is_a_clear_type_error():
    with pytest.raises((TypeError, orjson.JSONEncodeError), match="object"):
        dumps({"x": object()})
