"""FileStorage on real files: formats, atomic writes and manifests, step reuse, input errors,
and the operator machinery (OperatorABC + FakeLLMServing) on top of it."""

from __future__ import annotations

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.core.errors import ConfigError, InputFileError, MissingColumnError
from dataflow.core.operator import OperatorABC, RowOutcome, merge_row
from dataflow.serving import FakeLLMServing
from dataflow.storage.manifest import manifest_path, rejected_path
from dataflow.utils.storage import FileStorage

FORMATS = ["jsonl", "json", "csv", "parquet"]

# every row has every key, so the rows round-trip exactly through every format
NESTED_ROWS = [
    {
        "id": 1,
        "text": "héllo, \"world\"\nsecond line",
        "score": 0.5,
        "ok": True,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"a": [1, 2]}}}],
        "meta": {"k": None, "nested": {"deep": ["x", 1, 2.5, False]}},
        "maybe": None,
        "mixed": 1,
    },
    {
        "id": 2,
        "text": "",
        "score": 1.25,
        "ok": False,
        "tools": [],
        "meta": {},
        "maybe": None,
        "mixed": "one",
    },
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def chdir_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def storage_for(tmp_path: Path, rows: list[dict] | None = None, cache_type: str = "jsonl", name: str = "in.jsonl") -> FileStorage:
    entry = tmp_path / name
    if rows is not None:
        write_jsonl(entry, rows)
    return FileStorage(str(entry), cache_path=str(tmp_path / "cache"), cache_type=cache_type)


# -- step numbering ------------------------------------------------------------------------------
def test_step_files_are_numbered_like_the_seed(tmp_path):
    storage = FileStorage(str(tmp_path / "chat.jsonl"), cache_path=str(tmp_path / "cache"),
                          file_name_prefix="dataflow_cache_step", cache_type="jsonl")
    assert storage.operator_step == -1
    with pytest.raises(ConfigError, match="step"):
        storage.input_path()
    first = storage.step()
    assert first.operator_step == 0 and storage.operator_step == 0
    assert first.input_path() == str(tmp_path / "chat.jsonl")
    assert first.output_path() == os.path.join(str(tmp_path / "cache"), "dataflow_cache_step1.jsonl")
    second = storage.step()
    assert second.input_path() == os.path.join(str(tmp_path / "cache"), "dataflow_cache_step1.jsonl")
    assert second.output_path() == os.path.join(str(tmp_path / "cache"), "dataflow_cache_step2.jsonl")
    assert first.operator_step == 0  # a view keeps its step
    assert second.reports is storage.reports is first.reports


def test_chain_of_steps_reads_previous_output(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}, {"a": 2}])
    s1 = storage.step()
    s1.write([dict(r, b=r["a"] * 10) for r in s1.read("dict")])
    s2 = storage.step()
    assert s2.read("dict") == [{"a": 1, "b": 10}, {"a": 2, "b": 20}]
    s2.write([{"c": 3}])
    s3 = storage.step()
    assert s3.read("dict") == [{"c": 3}]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "dataflow_cache_step1.jsonl", "dataflow_cache_step1.jsonl.manifest.json",
        "dataflow_cache_step2.jsonl", "dataflow_cache_step2.jsonl.manifest.json",
    ]


def test_read_output_reads_what_the_step_wrote_without_advancing(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    with pytest.raises(ConfigError, match="storage.step"):
        storage.read_output("dict")
    s1 = storage.step()
    s1.write([{"a": 1, "b": [1, {"c": None}]}], columns=["a", "b", "z"])
    assert storage.read_output("dict") == s1.read_output("dict") == [{"a": 1, "b": [1, {"c": None}]}]
    assert list(storage.read_output().columns) == ["a", "b", "z"]
    assert storage.operator_step == 0 and s1.read("dict") == [{"a": 1}]  # nothing advanced
    assert storage.step().read("dict") == [{"a": 1, "b": [1, {"c": None}]}]


# -- formats -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_type", FORMATS)
def test_cache_round_trips_nested_values(tmp_path, cache_type):
    storage = storage_for(tmp_path, NESTED_ROWS, cache_type=cache_type)
    s1 = storage.step()
    assert s1.read("dict") == NESTED_ROWS
    path = s1.write(s1.read("dict"))
    assert path.endswith(f"dataflow_cache_step1.{cache_type}")
    s2 = storage.step()
    assert s2.read("dict") == NESTED_ROWS
    assert s2.read_columns() == list(NESTED_ROWS[0])
    frame = s2.read("dataframe")
    assert list(frame.columns) == list(NESTED_ROWS[0])
    assert frame["tools"][0] == NESTED_ROWS[0]["tools"]
    assert frame["meta"][0] == NESTED_ROWS[0]["meta"]


@pytest.mark.parametrize("cache_type", ["csv", "parquet"])
def test_flat_formats_record_json_columns_in_the_manifest(tmp_path, cache_type):
    storage = storage_for(tmp_path, NESTED_ROWS, cache_type=cache_type)
    s1 = storage.step()
    s1.write(s1.read("dict"))
    manifest = json.loads(manifest_path(s1.output_path()).read_text())
    types = manifest["column_types"]
    assert types["tools"] == types["meta"] == types["mixed"] == "json"
    assert types["id"] == "int" and types["score"] == "float" and types["ok"] == "bool"


@pytest.mark.parametrize("cache_type", FORMATS)
def test_first_entry_in_every_format(tmp_path, cache_type):
    rows = [{"q": "what?", "n": 3, "tags": ["a", "b"]}, {"q": "why?", "n": 4, "tags": []}]
    entry = tmp_path / f"data.{cache_type}"
    if cache_type == "jsonl":
        write_jsonl(entry, rows)
    elif cache_type == "json":
        entry.write_text(json.dumps(rows, indent=2))
    elif cache_type == "csv":  # a user's csv: nested values as JSON text, numbers inferred
        with open(entry, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["q", "n", "tags"])
            for r in rows:
                writer.writerow([r["q"], r["n"], json.dumps(r["tags"])])
        rows = [dict(r, tags=json.dumps(r["tags"])) for r in rows]
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), entry)
    s1 = FileStorage(str(entry), cache_path=str(tmp_path / "cache")).step()
    assert s1.read_columns() == ["q", "n", "tags"]
    assert s1.read("dict") == rows


def test_jsonl_keeps_rows_as_in_the_file(tmp_path):
    rows = [{"a": 1}, {"b": [1, {"c": None}]}, {"a": 2, "b": []}]
    storage = storage_for(tmp_path, rows)
    s1 = storage.step()
    assert s1.read_columns() == ["a", "b"]
    got = s1.read("dict")
    assert got == rows  # no NaN and no invented keys for missing values
    s1.write(got)
    assert storage.step().read("dict") == rows
    frame = s1.read("dataframe")
    assert frame["a"].isna().sum() == 1


def test_json_file_holding_json_lines_is_read(tmp_path):
    entry = tmp_path / "data.json"
    write_jsonl(entry, [{"a": 1}, {"a": 2}])
    assert FileStorage(str(entry), cache_path=str(tmp_path / "c")).step().read("dict") == [{"a": 1}, {"a": 2}]


def test_dataframe_write_is_json_native(tmp_path):
    import numpy as np
    import pandas as pd

    storage = storage_for(tmp_path, [{"x": 1}])
    s1 = storage.step()
    frame = pd.DataFrame({"i": [1, 2], "f": [0.5, np.nan], "nested": [[1, 2], {"k": "v"}], "s": ["a", None]})
    s1.write(frame)
    back = storage.step().read("dict")
    assert back == [
        {"i": 1, "f": 0.5, "nested": [1, 2], "s": "a"},
        {"i": 2, "f": None, "nested": {"k": "v"}, "s": None},
    ]
    assert type(back[0]["i"]) is int


# -- zero rows -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_type", FORMATS)
def test_zero_rows_then_next_step_gets_empty_table_with_columns(tmp_path, cache_type):
    storage = storage_for(tmp_path, [{"a": 1, "b": 2}], cache_type=cache_type)
    s1 = storage.step()
    s1.write([], columns=["a", "b", "answer"])
    s2 = storage.step()
    assert s2.read_columns() == ["a", "b", "answer"]
    assert s2.read("dict") == []
    frame = s2.read("dataframe")
    assert list(frame.columns) == ["a", "b", "answer"] and len(frame) == 0


# -- input errors --------------------------------------------------------------------------------
def test_malformed_jsonl_line_is_named(tmp_path):
    entry = tmp_path / "bad.jsonl"
    entry.write_text('{"a": 1}\n\n{"a": 2,}\n{"a": 3}\n')
    with pytest.raises(InputFileError) as info:
        FileStorage(str(entry)).step().read("dict")
    assert info.value.line == 3
    assert f"{entry}:3" in str(info.value) and "invalid JSON" in str(info.value)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    entry = tmp_path / "bad.jsonl"
    entry.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InputFileError, match="expected a JSON object") as info:
        FileStorage(str(entry)).step().read_columns()
    assert info.value.line == 2


def test_truncated_last_line_gets_a_hint(tmp_path):
    entry = tmp_path / "cut.jsonl"
    entry.write_text('{"a": 1}\n{"a": 2, "b": "unfini')
    with pytest.raises(InputFileError, match="truncated") as info:
        FileStorage(str(entry)).step().read("dict")
    assert info.value.line == 2


def test_non_utf8_file_names_line_and_byte(tmp_path):
    entry = tmp_path / "latin1.jsonl"
    entry.write_bytes(b'{"a": "ok"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(InputFileError, match="UTF-8") as info:
        FileStorage(str(entry)).step().read("dict")
    assert info.value.line == 2
    assert str(entry) in str(info.value) and "byte offset 22" in str(info.value)


def test_non_utf8_csv(tmp_path):
    entry = tmp_path / "latin1.csv"
    entry.write_bytes(b"a,b\n1,\xff\n")
    with pytest.raises(InputFileError, match="UTF-8") as info:
        FileStorage(str(entry)).step().read("dict")
    assert info.value.line == 2


def test_csv_row_with_wrong_field_count(tmp_path):
    entry = tmp_path / "bad.csv"
    entry.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(InputFileError, match="3 fields") as info:
        FileStorage(str(entry)).step().read("dict")
    assert info.value.line == 3


def test_invalid_json_array_names_line(tmp_path):
    entry = tmp_path / "bad.json"
    entry.write_text('[\n  {"a": 1},\n  {"a": }\n]\n')
    with pytest.raises(InputFileError) as info:
        FileStorage(str(entry)).step().read("dict")
    assert info.value.line == 3


def test_missing_first_entry_has_a_hint(tmp_path, chdir_tmp):
    step = FileStorage("nope/data.jsonl").step()
    with pytest.raises(InputFileError, match="not found") as info:
        step.read_columns()
    assert "first_entry_file_name" in str(info.value) and "nope/data.jsonl" in str(info.value)
    with pytest.raises(InputFileError):
        step.input_fingerprint()


@pytest.mark.parametrize("content", ["", "\n\n", "[]"])
def test_empty_first_entry_is_a_clear_error(tmp_path, content):
    entry = tmp_path / ("empty.json" if content == "[]" else "empty.jsonl")
    entry.write_text(content)
    with pytest.raises(InputFileError, match="no rows"):
        FileStorage(str(entry)).step().read("dict")


def test_missing_previous_step_is_a_clear_error(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    storage.step()
    s2 = storage.step()
    with pytest.raises(InputFileError, match="step 1 output not found"):
        s2.read_columns()


def test_unknown_cache_type_and_extension(tmp_path):
    with pytest.raises(ConfigError, match="jsonl, json, csv, parquet"):
        FileStorage("x.jsonl", cache_type="xlsx")
    with pytest.raises(ConfigError, match="unknown extension"):
        FileStorage("x.txt")
    with pytest.raises(ConfigError, match="output_type"):
        storage_for(tmp_path, [{"a": 1}]).step().read("arrow")


# -- atomicity and manifests ---------------------------------------------------------------------
def test_manifest_describes_the_step(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    s1 = storage.step()
    wanted = {"operator": "Op", "parameters": {"k": 1}, "model": "m", "prompt_hash": "p",
              "input_fingerprint": s1.input_fingerprint()}
    out = s1.write([{"a": 1, "b": 2}], manifest=dict(wanted), rejected=[{"a": 0, "_reason": "bad: x"}])
    manifest = json.loads(manifest_path(out).read_text())
    for key, value in wanted.items():
        assert manifest[key] == value
    from dataflow.storage.atomic import sha256_file
    from dataflow.version import __version__

    assert manifest["dataflow_version"] == __version__
    assert manifest["columns"] == ["a", "b"] and manifest["rows"] == 1
    assert manifest["sha256"] == sha256_file(out) and manifest["size"] == os.path.getsize(out)
    assert manifest["created_at"] and manifest["counts"] == {"rows_out": 1}
    rejected = rejected_path(out)
    assert manifest["rejected_file"] == rejected.name
    assert [json.loads(line) for line in rejected.read_text().splitlines()] == [{"a": 0, "_reason": "bad: x"}]
    s1.write([{"a": 1}])  # a rewrite without rejected rows removes the stale rejected file
    assert not rejected.exists()


def test_leftover_temp_file_is_never_read(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    s1 = storage.step()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".dataflow_cache_step1.jsonl.999999.abcd.tmp").write_text('{"a": 1}\n')
    assert s1.find_reusable({"operator": None}) is None
    with pytest.raises(InputFileError, match="not found"):
        storage.step().read("dict")


def test_stale_temp_of_a_dead_process_is_removed(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    s1 = storage.step()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / f".dataflow_cache_step1.jsonl.{dead.pid}.abcd.tmp"
    stale.write_text("half")
    s1.write([{"a": 1}])
    assert not stale.exists()
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")] == []


def test_crash_during_write_leaves_no_reusable_step(tmp_path, monkeypatch):
    storage = storage_for(tmp_path, [{"a": 1}])
    s1 = storage.step()
    wanted = {"operator": "Op", "parameters": {}, "input_fingerprint": s1.input_fingerprint()}
    out = Path(s1.write([{"a": 1}], manifest=dict(wanted)))
    assert s1.find_reusable(wanted) is not None
    old_bytes = out.read_bytes()

    from dataflow.storage import formats

    def exploding_writer(stream, rows, columns, fmt):
        stream.write(b'{"a": 1}\n{"a": 2')
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(formats, "write_table", exploding_writer)
    with pytest.raises(RuntimeError):
        s1.write([{"a": 1}, {"a": 2}], manifest=dict(wanted))
    assert out.read_bytes() == old_bytes  # the old file is intact, never half-written
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert s1.find_reusable(wanted) is None  # but it is no longer vouched for by a manifest


def test_step_file_without_manifest_is_not_reusable(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    s1 = storage.step()
    out = Path(s1.output_path())
    out.parent.mkdir()
    write_jsonl(out, [{"a": 1}])
    assert s1.find_reusable({"operator": None, "input_fingerprint": s1.input_fingerprint()}) is None
    assert storage.step().read("dict") == [{"a": 1}]  # still readable by the next step


# -- find_reusable -------------------------------------------------------------------------------
def _wanted(step: FileStorage, **changes) -> dict:
    wanted = {"operator": "Op", "operator_module": "tests", "parameters": {"input_key": "a", "k": 1},
              "model": "fake", "prompt_hash": "abc", "input_fingerprint": step.input_fingerprint()}
    wanted.update(changes)
    return wanted


def test_find_reusable_matches_only_the_same_work(tmp_path, monkeypatch):
    storage = storage_for(tmp_path, [{"a": 1}, {"a": 2}])
    s1 = storage.step()
    manifest = _wanted(s1)
    manifest["counts"] = {"rows_in": 2, "rows_out": 2, "failed": 0}
    s1.write(s1.read("dict"), manifest=dict(manifest))

    again = FileStorage(storage.first_entry_file_name, cache_path=storage.cache_path).step()
    previous = again.find_reusable(_wanted(again))
    assert previous is not None and previous["counts"]["rows_out"] == 2
    assert again.find_reusable(_wanted(again, parameters={"input_key": "a", "k": 2})) is None
    assert again.find_reusable(_wanted(again, model="other")) is None
    assert again.find_reusable(_wanted(again, prompt_hash="changed")) is None
    assert again.find_reusable(_wanted(again, operator="Other")) is None

    import dataflow.version

    monkeypatch.setattr(dataflow.version, "__version__", "99.0")
    assert again.find_reusable(_wanted(again)) is None
    monkeypatch.undo()
    assert again.find_reusable(_wanted(again)) is not None

    write_jsonl(Path(storage.first_entry_file_name), [{"a": 1}, {"a": 3}])  # input changed
    assert again.find_reusable(_wanted(again)) is None


def test_find_reusable_rejects_a_tampered_or_truncated_file(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}, {"a": 2}])
    s1 = storage.step()
    s1.write(s1.read("dict"), manifest=_wanted(s1))
    assert s1.find_reusable(_wanted(s1)) is not None
    out = Path(s1.output_path())
    original = out.read_bytes()
    out.write_bytes(original.replace(b'"a":2', b'"a":7'))  # same size, other content
    assert len(out.read_bytes()) == len(original)
    assert s1.find_reusable(_wanted(s1)) is None
    out.write_bytes(original[:-5])  # truncated
    assert s1.find_reusable(_wanted(s1)) is None
    out.write_bytes(original)
    assert s1.find_reusable(_wanted(s1)) is not None
    manifest_path(out).unlink()
    assert s1.find_reusable(_wanted(s1)) is None


def test_find_reusable_rejects_a_step_with_failed_rows(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    s1 = storage.step()
    s1.write([], columns=["a"], manifest=dict(_wanted(s1), counts={"rows_in": 1, "failed": 1}))
    assert s1.find_reusable(_wanted(s1)) is None


def test_input_fingerprint_follows_content(tmp_path):
    storage = storage_for(tmp_path, [{"a": 1}])
    s1 = storage.step()
    first = s1.input_fingerprint()
    assert first == s1.input_fingerprint() and len(first) == 64
    write_jsonl(Path(s1.input_path()), [{"a": 2}])
    assert s1.input_fingerprint() != first
    write_jsonl(Path(s1.input_path()), [{"a": 1}])
    assert s1.input_fingerprint() == first


# -- operators on FileStorage --------------------------------------------------------------------
class Shout(OperatorABC):
    """Test operator: asks the LLM to shout each row's text."""

    def run(self, storage, input_text_key: str = "text", output_key: str = "loud"):
        return self._run_step(
            storage,
            inputs={"input_text_key": input_text_key},
            outputs={"output_key": output_key},
            batch_fn=functools.partial(self.process_batch, input_text_key=input_text_key, output_key=output_key),
        )

    def process_batch(self, rows, input_text_key="text", output_key="loud"):
        results = self.require_llm().generate_from_input([r[input_text_key] for r in rows])
        return [
            RowOutcome.keep(merge_row(row, **{output_key: res.text})) if res.ok else RowOutcome.fail(f"llm_error: {res.reason}")
            for row, res in zip(rows, results)
        ]


def shout(messages, json_schema):
    text = messages[-1]["content"]
    if text == "boom":
        raise ValueError("cannot")
    return text.upper()


def run_pipeline(tmp_path: Path, responder=shout, output_key: str = "loud"):
    serving = FakeLLMServing(responder)
    storage = FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache"))
    report = Shout(llm_serving=serving).run(storage.step(), input_text_key="text", output_key=output_key)
    return storage, serving, report


def test_operator_missing_column_names_operator_key_and_columns(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "hi", "id": 1}])
    serving = FakeLLMServing(shout)
    storage = FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache"))
    with pytest.raises(MissingColumnError) as info:
        Shout(llm_serving=serving).run(storage.step(), input_text_key="txt")
    message = str(info.value)
    assert "Shout" in message and "input_text_key" in message and "'txt'" in message
    assert "text, id" in message
    assert serving.calls == []  # checked before any LLM call


def test_operator_rerun_reuses_the_finished_step(tmp_path, capsys):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "hi"}, {"text": "there"}])
    storage, serving, report = run_pipeline(tmp_path)
    assert not report.reused and len(serving.calls) == 2
    assert report.rows_in == 2 and report.rows_out == 2 and report.failed == 0
    assert storage.reports == [report]
    assert storage.step().read("dict") == [{"text": "hi", "loud": "HI"}, {"text": "there", "loud": "THERE"}]

    storage2, serving2, report2 = run_pipeline(tmp_path)
    assert report2.reused and serving2.calls == [] and report2.rows_out == 2
    assert "reused" in capsys.readouterr().err

    _, serving3, report3 = run_pipeline(tmp_path, output_key="shouted")  # a parameter changed
    assert not report3.reused and len(serving3.calls) == 2

    write_jsonl(tmp_path / "in.jsonl", [{"text": "hi"}, {"text": "again"}])  # the input changed
    _, serving4, report4 = run_pipeline(tmp_path, output_key="shouted")
    assert not report4.reused and len(serving4.calls) == 2


def test_operator_failed_rows_go_to_rejected_file_and_block_reuse(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "ok"}, {"text": "boom"}])
    storage, _, report = run_pipeline(tmp_path)
    assert report.failed == 1 and report.failed_by_reason == {"llm_error": 1}
    out = Path(report.output_file)
    assert [r["text"] for r in storage.step().read("dict")] == ["ok"]
    rejected = [json.loads(line) for line in rejected_path(out).read_text().splitlines()]
    assert rejected[0]["text"] == "boom" and rejected[0]["_status"] == "failed"
    assert rejected[0]["_reason"].startswith("llm_error: ")
    _, serving2, report2 = run_pipeline(tmp_path)
    assert not report2.reused and len(serving2.calls) == 2


def test_operator_with_every_row_failed_leaves_columns_for_next_step(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "boom"}])
    storage, _, report = run_pipeline(tmp_path)
    assert report.rows_out == 0
    following = storage.step()
    assert following.read_columns() == ["text", "loud"]
    assert following.read("dict") == []
