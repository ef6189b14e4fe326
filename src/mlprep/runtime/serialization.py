"""JSON output that never crashes on what pandas/numpy code returns, and stays valid JSON.

orjson already writes NaN/inf as null and handles numpy arrays and scalars (OPT_SERIALIZE_NUMPY),
datetimes, UUIDs and dataclasses; ``_default`` covers the rest without importing numpy or pandas.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import orjson

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# OPT_NON_STR_KEYS makes every dict slower to write (about +60% on a small record) and changes nothing
# for string keys: it is used only for a value that orjson refuses without it.
_FIRST_TRY = orjson.OPT_SERIALIZE_NUMPY
_NULL_TYPES = frozenset({"NAType", "NaTType"})


def _default(obj: Any) -> Any:
    """Convert what orjson does not know natively; raise TypeError for the truly unknown."""
    if isinstance(obj, Decimal):
        return orjson.Fragment(str(obj)) if obj.is_finite() else None
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(obj).decode("ascii")
    name = type(obj).__name__
    if name in _NULL_TYPES:  # pandas.NA, pandas.NaT
        return None
    if name == "DataFrame":
        return obj.to_dict(orient="records")
    if name == "Series":
        return obj.tolist() if _is_range_index(obj) else obj.to_dict()
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):  # subclasses such as pandas.Timestamp
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta) or name == "Timedelta":
        return obj.total_seconds()
    if hasattr(obj, "tolist"):  # numpy arrays orjson refuses (object dtype, float16...) and numpy scalars
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    raise TypeError(f"cannot serialise {type(obj).__module__}.{name} to JSON")


def _is_range_index(series: Any) -> bool:
    return type(series.index).__name__ == "RangeIndex"


def dumps(obj: Any, _dumps: Callable[..., bytes] = orjson.dumps) -> bytes:
    """Serialise one value to compact JSON bytes."""
    try:
        return _dumps(obj, default=_default, option=_FIRST_TRY)
    except TypeError:  # a key that is not a string; else the same error again
        return _dumps(obj, default=_default, option=OPTIONS)


def dumps_many(values: list[Any], _dumps: Callable[..., bytes] = orjson.dumps) -> list[bytes]:
    """``dumps`` of each value, in one C-speed pass when none needs a second try; raises what ``dumps``
    raises for the first value that cannot be serialised (call ``dumps`` on each to know which)."""
    try:
        return [_dumps(value, default=_default, option=_FIRST_TRY) for value in values]
    except TypeError:
        return [dumps(value) for value in values]
