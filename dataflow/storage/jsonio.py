"""Fast JSON encode/decode: ``orjson`` when installed, the standard library otherwise.

Values that JSON cannot hold natively (numpy scalars and arrays, dates, Decimals, sets) are
converted; NaN becomes ``null`` so files stay strict JSON.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
from typing import Any, Callable

__all__ = ["dumps", "dumps_str", "loads", "fast_loads", "to_native"]

try:  # pragma: no cover - depends on the environment
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None


def _default(value: Any) -> Any:
    """Convert a non-JSON value to a JSON-native one, or raise ``TypeError``."""
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas missing markers (NaT is a datetime)
        return None
    if type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):  # numpy array, pandas array
        return value.tolist()
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"a value of type {type(value).__name__} cannot be stored as JSON: {value!r:.80}")


def _clean_nan(value: Any) -> Any:
    """Replace float NaN/inf anywhere in ``value`` with None (the stdlib would write ``NaN``)."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {k: _clean_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_nan(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON bytes of ``value``. ``ValueError`` when it is nested too deeply for
    the JSON writer (orjson stops at 255 levels; the standard library, tried next, near the
    interpreter's recursion limit)."""
    if _orjson is not None:
        try:
            return _orjson.dumps(
                value, default=_default, option=_orjson.OPT_SERIALIZE_NUMPY | _orjson.OPT_NON_STR_KEYS
            )
        except _orjson.JSONEncodeError as exc:
            if "recursion" not in str(exc).lower():
                raise
    try:
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default, allow_nan=False)
        except ValueError:  # NaN or inf somewhere: write null instead
            text = json.dumps(_clean_nan(value), ensure_ascii=False, separators=(",", ":"), default=_default)
    except RecursionError:
        raise ValueError("a value is nested too deeply to store as JSON") from None
    return text.encode("utf-8")


def dumps_str(value: Any) -> str:
    """Compact JSON text of ``value``."""
    return dumps(value).decode("utf-8")


#: the message of a ``ValueError`` for JSON nested deeper than the parser goes
TOO_DEEP = "nested too deeply (more levels of arrays and objects than the JSON reader allows)"


def loads(data: bytes | str) -> Any:
    """Parse JSON text or UTF-8 bytes; raises ``ValueError`` (a ``json.JSONDecodeError`` for
    bad syntax), also for a value nested too deeply to parse (orjson stops at 1024 levels, the
    standard library near the recursion limit), never ``RecursionError``."""
    if _orjson is not None:
        return _orjson.loads(data)
    return _std_loads(data)


def _std_loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


def fast_loads() -> Callable[[str], Any]:
    """The fastest available parser of one JSON text (for tight loops); raises ``ValueError``
    like ``loads``."""
    return _orjson.loads if _orjson is not None else _std_loads


def to_native(value: Any) -> Any:
    """``value`` with every nested non-JSON object converted (e.g. Parquet timestamps, numpy)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): to_native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_native(v) for v in value]
    return to_native(_default(value))
