"""``dataflow.storage.jsonio``: the JSON every step file, manifest and cache entry is written
with. Values JSON cannot hold (numpy, pandas, dates, Decimals, sets, bytes) are stored as the
JSON a reader expects, NaN and infinities become ``null`` (files stay strict JSON), and both
writers (orjson, and the standard library used without it) write the same bytes."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import numpy as np
import pandas as pd
import pytest

from dataflow.storage import jsonio


@pytest.fixture(params=["orjson", "stdlib"])
def writer(request, monkeypatch):
    """Run the test with orjson and again with the standard library only."""
    if request.param == "stdlib":
        monkeypatch.setattr(jsonio, "_orjson", None)
    else:
        assert jsonio._orjson is not None, "orjson is a dependency: this case must run with it"
    return request.param


#: (value, the exact bytes both writers store)
CONVERTED = [
    (np.int64(3), b"3"),
    (np.float32(1.5), b"1.5"),
    (np.bool_(True), b"true"),
    (np.array(7), b"7"),
    (np.array([[1, 2], [3, 4]]), b"[[1,2],[3,4]]"),
    (pd.array([1, None], dtype="Int64"), b"[1,null]"),
    (dt.datetime(2026, 12, 1, 10, 30, 5), b'"2026-12-01T10:30:05"'),
    (dt.date(2026, 12, 1), b'"2026-12-01"'),
    (dt.time(10, 30), b'"10:30:00"'),
    (pd.Timestamp("2026-01-02 03:04:05"), b'"2026-01-02T03:04:05"'),
    (decimal.Decimal("1.25"), b"1.25"),
    ({"b", "a", "c"}, b'["a","b","c"]'),
    (frozenset({2, 1}), b"[1,2]"),
    ({1, "a"}, b'["a",1]'),  # sorted by repr: "'a'" < "1"
    (b"hi\xff", '"hi\ufffd"'.encode()),
    (pd.NA, b"null"),
    (pd.NaT, b"null"),  # a missing timestamp is null, not the text "NaT" (NaT is a datetime)
    ({"when": pd.NaT, "n": pd.NA}, b'{"when":null,"n":null}'),
    (float("nan"), b"null"),
    ([1.5, float("inf"), float("-inf")], b"[1.5,null,null]"),
    ({"a": {"b": (float("nan"), 2)}}, b'{"a":{"b":[null,2]}}'),
    ((1, "x"), b'[1,"x"]'),
    ({"é": "ü"}, '{"é":"ü"}'.encode()),
    ({"a": 1, "b": [1, 2]}, b'{"a":1,"b":[1,2]}'),
]


@pytest.mark.parametrize("value,stored", CONVERTED, ids=[repr(v)[:30] for v, _ in CONVERTED])
def test_values_json_cannot_hold_are_stored_as_plain_json(writer, value, stored):
    assert jsonio.dumps(value) == stored
    assert jsonio.dumps_str(value) == stored.decode("utf-8")
    json.loads(stored)  # strict JSON: no NaN, no Infinity


def test_an_unknown_object_is_a_type_error_naming_its_type(writer):
    class Widget:
        def __repr__(self) -> str:
            return "<widget " + "w" * 200 + ">"

    with pytest.raises(TypeError) as info:
        jsonio.dumps({"x": Widget()})
    message = str(info.value)
    assert "Widget" in message
    if writer == "stdlib":  # orjson words the error itself
        assert message.startswith("a value of type Widget cannot be stored as JSON: <widget www")
        assert len(message) < 150  # the value's repr is cut to 80 characters


def test_a_value_nested_too_deeply_is_a_value_error(writer):
    value: list = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(ValueError, match="nested too deeply to store as JSON"):
        jsonio.dumps(value)


def test_a_value_orjson_cannot_nest_is_written_by_the_standard_library():
    value: list = [1]
    for _ in range(300):  # orjson stops at 255 levels
        value = [value]
    assert jsonio.dumps(value) == b"[" * 300 + b"[1]" + b"]" * 300


def test_an_orjson_error_other_than_depth_is_not_retried():
    with pytest.raises(TypeError):  # orjson.JSONEncodeError is a TypeError
        jsonio.dumps({"x": object()})


@pytest.mark.parametrize("reader", ["orjson", "stdlib"])
def test_loads_reads_text_and_bytes_and_refuses_bad_or_too_deep_json(monkeypatch, reader):
    if reader == "stdlib":
        monkeypatch.setattr(jsonio, "_orjson", None)
    assert jsonio.loads('{"a": [1, "é"]}') == {"a": [1, "é"]}
    assert jsonio.loads('{"a": 1}'.encode()) == {"a": 1}
    assert jsonio.fast_loads()("[1, 2]") == [1, 2]
    with pytest.raises(ValueError):
        jsonio.loads("{bad")
    with pytest.raises(ValueError):
        jsonio.fast_loads()("[1,")
    deep = "[" * 100_000 + "]" * 100_000
    for parse in (jsonio.loads, jsonio.fast_loads()):
        with pytest.raises(ValueError) as info:
            parse(deep)
        assert not isinstance(info.value, RecursionError)
        if reader == "stdlib":
            assert str(info.value) == jsonio.TOO_DEEP


def test_to_native_converts_every_nested_value():
    value = {
        1: np.int64(2),
        "when": dt.datetime(2026, 12, 1),
        "list": (np.float64(0.5), float("nan"), None, True, "s", 3),
        "nested": {"arr": np.array([1, 2]), "missing": pd.NaT, "dec": decimal.Decimal("2.5")},
    }
    native = jsonio.to_native(value)
    assert native == {
        "1": 2,
        "when": "2026-12-01T00:00:00",
        "list": [0.5, None, None, True, "s", 3],
        "nested": {"arr": [1, 2], "missing": None, "dec": 2.5},
    }
    assert type(native["1"]) is int
    assert jsonio.to_native(float("nan")) is None
    assert jsonio.to_native(1.5) == 1.5
    for plain in (None, True, 0, "x"):
        assert jsonio.to_native(plain) is plain
    with pytest.raises(TypeError, match="type object cannot be stored"):
        jsonio.to_native(object())
