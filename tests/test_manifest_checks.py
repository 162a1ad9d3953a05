"""Step manifests: a manifest is trusted only when every value a reader relies on has its type
(else the step file is read without it and never reused); a finished step is reused only when
what produced it is the same and its data file has the recorded size and sha256."""

from __future__ import annotations

import hashlib
import json

import pytest

from dataflow.storage.manifest import (
    data_matches, identity_matches, load_manifest, manifest_path, normalize, rejected_path, well_formed,
    write_manifest,
)

GOOD = {
    "operator": "Op", "parameters": {"k": 1}, "model": "m", "prompt_hash": "h", "input_fingerprint": "f",
    "counts": {"rows_in": 3, "rows_out": 2, "kept": 2, "failed": 1, "filtered": 0,
               "failed_by_reason": {"llm_error": 1}, "filtered_by_reason": {}, "advisory_by_reason": {"x": 0}},
    "size": 10, "sha256": "ab", "columns": ["a", "b"],
    "column_types": {"a": "str", "b": "str|null", "c": "int", "d": "float", "e": "bool", "f": "null", "g": "json"},
}

BAD = {
    "not an object": [GOOD],
    "counts not an object": {**GOOD, "counts": [1]},
    "a negative count": {**GOOD, "counts": {**GOOD["counts"], "kept": -1}},
    "a count given as text": {**GOOD, "counts": {**GOOD["counts"], "rows_in": "3"}},
    "a boolean count": {**GOOD, "counts": {**GOOD["counts"], "filtered": True}},
    "a float count": {**GOOD, "counts": {**GOOD["counts"], "failed": 1.0}},
    "reasons not an object": {**GOOD, "counts": {**GOOD["counts"], "failed_by_reason": [1]}},
    "a negative reason count": {**GOOD, "counts": {**GOOD["counts"], "filtered_by_reason": {"x": -2}}},
    "an advisory count as text": {**GOOD, "counts": {**GOOD["counts"], "advisory_by_reason": {"x": "1"}}},
    "a negative size": {**GOOD, "size": -1},
    "a size as text": {**GOOD, "size": "10"},
    "a sha256 as a number": {**GOOD, "sha256": 12},
    "columns not a list": {**GOOD, "columns": "a,b"},
    "a column that is not a name": {**GOOD, "columns": ["a", 1]},
    "column kinds not an object": {**GOOD, "column_types": ["str"]},
    "an unknown column kind": {**GOOD, "column_types": {"a": "text"}},
    "a column kind that is not text": {**GOOD, "column_types": {"a": 1}},
}


def test_a_manifest_with_every_value_of_its_type_is_trusted():
    assert well_formed(GOOD)
    assert well_formed({})  # every key is optional
    assert well_formed({**GOOD, "counts": {"kept": 0}, "size": 0})
    assert well_formed({**GOOD, "counts": None, "columns": None, "column_types": None})


@pytest.mark.parametrize("case", list(BAD))
def test_a_manifest_with_a_value_of_another_type_is_no_manifest(tmp_path, case):
    assert not well_formed(BAD[case])
    path = tmp_path / "step.jsonl.manifest.json"
    path.write_text(json.dumps(BAD[case]))
    assert load_manifest(path) is None


def test_load_manifest_reads_a_good_file_and_refuses_missing_broken_or_deep_ones(tmp_path):
    path = manifest_path(tmp_path / "step.jsonl")
    assert path.name == "step.jsonl.manifest.json"
    assert load_manifest(path) is None
    write_manifest(path, dict(GOOD))
    loaded = load_manifest(path)
    assert {k: loaded[k] for k in GOOD} == GOOD
    path.write_text("{not json")
    assert load_manifest(path) is None
    path.write_bytes(b"\xff\xfe")
    assert load_manifest(path) is None
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert load_manifest(path) is None
    assert load_manifest(tmp_path) is None  # a folder


def test_write_manifest_stamps_the_time_once_and_keeps_key_order_and_text(tmp_path):
    path = tmp_path / "m.json"
    manifest = {"operator": "Op", "note": "é", "odd": {3}}
    write_manifest(path, manifest)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and '"note": "é"' in text and "\n  " in text  # indented, not escaped
    stamped = json.loads(text)
    assert list(stamped) == ["operator", "note", "odd", "created_at"] and stamped["odd"] == "{3}"
    assert stamped["created_at"].endswith("+00:00") and len(stamped["created_at"]) == len("2026-12-01T00:00:00+00:00")
    write_manifest(path, {"operator": "Op", "created_at": "then"})
    assert json.loads(path.read_text())["created_at"] == "then"


def test_identity_compares_what_produced_the_step_not_its_result():
    previous = normalize({**GOOD, "extra": ("x", 1)})
    assert identity_matches(previous, {**GOOD, "extra": ["x", 1]})
    assert identity_matches(previous, {**GOOD, "extra": ("x", 1), "counts": {}, "rows": 9, "size": 1, "sha256": "z",
                                       "columns": [], "llm": {}, "created_at": "now"})
    for key, other in (("operator", "Other"), ("parameters", {"k": 2}), ("model", "m2"), ("prompt_hash", "h2"),
                       ("input_fingerprint", "g"), ("extra", ["x", 2])):
        assert not identity_matches(previous, {**GOOD, "extra": ("x", 1), key: other}), key
    assert not identity_matches(previous, {**GOOD, "extra": ("x", 1), "operator_version": 2})
    assert not identity_matches({k: v for k, v in previous.items() if k != "model"}, {**GOOD, "extra": ("x", 1)})
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert not identity_matches(previous, {**GOOD, "extra": deep})


def test_normalize_is_the_value_as_json_reads_it_back():
    assert normalize({"b": (1, 2), "a": {"z": None}}) == {"a": {"z": None}, "b": [1, 2]}
    assert list(normalize({"b": 1, "a": 2})) == ["a", "b"]
    assert normalize({"s": {3}}) == {"s": "{3}"}


def test_data_matches_checks_size_and_sha256(tmp_path):
    data = tmp_path / "step.jsonl"
    data.write_bytes(b'{"a":1}\n')
    recorded = {"size": 8, "sha256": hashlib.sha256(b'{"a":1}\n').hexdigest()}
    assert data_matches(recorded, data)
    assert not data_matches({**recorded, "size": 9}, data)
    assert not data_matches({**recorded, "sha256": "0" * 64}, data)
    assert not data_matches({}, data)
    data.write_bytes(b'{"a":2}\n')  # same size, other bytes
    assert not data_matches(recorded, data)
    assert not data_matches(recorded, tmp_path / "missing.jsonl")


def test_rejected_rows_file_name():
    assert rejected_path("out/step3.jsonl").name == "step3.rejected.jsonl"
    assert rejected_path("out/step3.parquet").name == "step3.rejected.jsonl"
