"""``FileStorage`` step by step on real files: the errors a user reads when a step file is
missing or empty, the manifest every write leaves, the cached reads and fingerprints (each file
read and hashed once while it is unchanged, and read again once it changes), reuse only of a
finished step, and the rows a DataFrame or odd values are written as."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataflow.core.errors import ConfigError, InputFileError
from dataflow.storage import _file_storage, formats
from dataflow.storage.manifest import manifest_path
from dataflow.utils.storage import FileStorage
from dataflow.version import __version__


@pytest.fixture
def entry(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text('{"q": "a"}\n{"q": "b"}\n')
    return path


def _storage(entry: Path, **options) -> FileStorage:
    return FileStorage(str(entry), cache_path=str(entry.parent / "cache"), pipeline="p.py", **options)


def test_defaults_and_the_pipeline_name(entry):
    storage = FileStorage(str(entry))
    assert storage.cache_path == "./cache" and storage.file_name_prefix == "dataflow_cache_step"
    assert storage.cache_type == "jsonl" and storage.operator_step == -1
    main_file = getattr(sys.modules["__main__"], "__file__", None)  # pytest's own script here
    assert storage.pipeline == (os.path.basename(main_file) if main_file else None)
    assert storage.pipeline == _file_storage._main_script()
    assert FileStorage(str(entry), pipeline="mine.py").pipeline == "mine.py"
    assert FileStorage(str(entry), pipeline="").pipeline == ""
    assert repr(_storage(entry)) == (f"FileStorage({str(entry)!r}, cache_path={str(entry.parent / 'cache')!r}, "
                                     "cache_type='jsonl', operator_step=-1)")


def test_bad_settings_are_config_errors_saying_what_to_use(entry):
    with pytest.raises(ConfigError) as info:
        FileStorage("data.txt")
    assert str(info.value) == ("first_entry_file_name='data.txt' has an unknown extension; "
                               "use one of: .jsonl, .ndjson, .json, .csv, .parquet, .pq")
    for prefix in ("", "a/b"):
        with pytest.raises(ConfigError) as info:
            FileStorage(str(entry), file_name_prefix=prefix)
        assert str(info.value) == f"file_name_prefix={prefix!r} must be a plain file name prefix"
    with pytest.raises(ConfigError) as info:
        FileStorage(str(entry)).input_path()
    assert str(info.value) == "call storage.step() before reading or writing (each operator gets storage.step())"


def test_step_file_names_and_the_older_doubled_names(entry):
    storage = _storage(entry)
    first = storage.step()
    assert first.input_path() == str(entry)
    assert first.output_path() == os.path.join(storage.cache_path, "dataflow_cache_step1.jsonl")
    other = _storage(entry, file_name_prefix="run").step()
    assert other.output_path() == os.path.join(storage.cache_path, "run_step1.jsonl")
    legacy = Path(storage.cache_path) / "dataflow_cache_step_step1.jsonl"
    legacy.parent.mkdir(parents=True)
    legacy.write_text('{"q": "x"}\n')
    assert first.output_path() == str(legacy)  # an older cache is resumed
    Path(storage.cache_path, "dataflow_cache_step1.jsonl").write_text('{"q": "y"}\n')
    assert first.output_path() == os.path.join(storage.cache_path, "dataflow_cache_step1.jsonl")


def test_a_missing_input_names_what_to_do(entry, tmp_path):
    missing = FileStorage(str(tmp_path / "nope.jsonl"), cache_path=str(tmp_path / "cache")).step()
    with pytest.raises(InputFileError) as info:
        missing.read("dict")
    assert str(info.value) == (f"{tmp_path / 'nope.jsonl'}: input file not found — check first_entry_file_name; "
                               f"relative paths start from {os.getcwd()}")
    storage = _storage(entry)
    storage.step()
    second = storage.step()  # step 1 reads a step file nobody wrote
    expected = (f"{second.input_path()}: step 1 output not found — run the pipeline's earlier steps first; "
                "each operator must get its own storage.step()")
    for read in (lambda: second.read("dict"), second.read_columns, second.input_fingerprint):
        with pytest.raises(InputFileError) as info:
            read()
        assert str(info.value) == expected


def test_an_empty_first_entry_is_an_input_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    storage = FileStorage(str(tmp_path / "empty.jsonl"), cache_path=str(tmp_path / "cache")).step()
    with pytest.raises(InputFileError) as info:
        storage.read("dict")
    assert str(info.value) == f"{tmp_path / 'empty.jsonl'}: has no rows — the first entry file must hold at least one record"


def test_every_write_leaves_a_manifest_describing_the_file(entry):
    storage = _storage(entry)
    step = storage.step()
    path = step.write([{"q": "a", "n": 1}, {"q": "b"}], rejected=[{"q": "c", "_reason": "x"}])
    manifest = json.loads(manifest_path(path).read_text())
    created = manifest.pop("created_at")
    data = Path(path).read_bytes()
    assert manifest == {
        "operator": None, "parameters": None, "model": None, "prompt_hash": None, "input_fingerprint": None,
        "counts": {"rows_out": 2}, "pipeline": "p.py", "dataflow_version": __version__, "step": 1,
        "input_file": str(entry), "file": "dataflow_cache_step1.jsonl", "format": "jsonl", "columns": ["q", "n"],
        "column_types": None, "rows": 2, "size": len(data), "sha256": _sha(data),
        "rejected_file": "dataflow_cache_step1.rejected.jsonl", "rejected_rows": 1,
    }
    assert created.endswith("+00:00")
    assert Path(path).with_name("dataflow_cache_step1.rejected.jsonl").read_text() == '{"q":"c","_reason":"x"}\n'
    step.write([{"q": "a"}])  # rewritten without rejected rows: the old rejected file goes
    assert not Path(path).with_name("dataflow_cache_step1.rejected.jsonl").exists()
    assert json.loads(manifest_path(path).read_text())["rejected_file"] is None


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_write_creates_nested_cache_folders(entry):
    storage = FileStorage(str(entry), cache_path=str(entry.parent / "a" / "b" / "c"), pipeline="p.py").step()
    assert Path(storage.write([{"q": 1}])).is_file()


def test_a_file_is_read_once_while_unchanged_and_again_once_changed(entry, monkeypatch):
    reads: list = []
    real = formats.read_table
    monkeypatch.setattr(formats, "read_table", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    step = _storage(entry).step()
    assert step.read_columns() == ["q"]
    assert step.read("dict") == [{"q": "a"}, {"q": "b"}]
    assert len(reads) == 1  # read_columns' table is the one read() hands over
    entry.write_text('{"q": "c", "z": 1}\n')
    assert step.read_columns() == ["q", "z"]  # the file changed: read again
    entry.write_text('{"w": 1}\n')
    assert step.read("dict") == [{"w": 1}]
    assert len(reads) == 3


def test_later_steps_take_their_columns_from_the_manifest_without_reading_rows(entry, monkeypatch):
    storage = _storage(entry)
    storage.step().write([], columns=["q", "answer"])
    second = storage.step()
    reads: list = []
    monkeypatch.setattr(formats, "read_table", lambda *a, **k: reads.append(a[0]))
    assert second.read_columns() == ["q", "answer"]
    assert reads == []


def test_an_edited_step_file_is_read_without_its_manifest_and_said_once(entry, monkeypatch):
    warnings: list[str] = []

    class Log:  # the storage's logger, recording what it would say
        def warning(self, message: str, *args: object) -> None:
            warnings.append(message % args)

    monkeypatch.setattr(_file_storage, "log", Log())
    monkeypatch.setattr(_file_storage, "_WARNED", set())
    storage = _storage(entry, cache_type="csv")
    path = storage.step().write([{"q": "007", "n": 1}])
    second = storage.step()
    Path(path).write_text("q,n\n007,2\n")  # edited by hand: the manifest's column kinds no longer apply
    # kinds inferred, as for any user's csv: n is a number again, "007" keeps its zeros
    assert second.read("dict") == [{"q": "007", "n": 2}]
    assert second.read_columns() == ["q", "n"]
    assert warnings == [f"{path} does not match its manifest (edited by hand?); reading it without it"]


def test_a_file_is_hashed_once_while_unchanged(entry, monkeypatch):
    hashed: list = []
    real = _file_storage.sha256_file
    monkeypatch.setattr(_file_storage, "sha256_file", lambda p: hashed.append(str(p)) or real(p))
    storage = _storage(entry)
    first = storage.step()
    digest = first.input_fingerprint()
    assert first.input_fingerprint() == digest == _sha(entry.read_bytes())
    assert hashed == [str(entry)]
    path = first.write([{"q": "a"}])
    assert storage.step().input_fingerprint() == _sha(Path(path).read_bytes())
    assert hashed == [str(entry)]  # the writer's own hash of the bytes it wrote is remembered


def test_read_output_reads_what_the_step_wrote(entry):
    storage = _storage(entry)
    step = storage.step()
    step.write([{"q": "a", "v": [1, 2]}])
    assert step.read_output("dict") == [{"q": "a", "v": [1, 2]}]
    frame = step.read_output()
    assert list(frame.columns) == ["q", "v"] and frame["v"][0] == [1, 2]
    assert step.operator_step == 0
    with pytest.raises(ConfigError, match="output_type='table' is not supported; use 'dataframe' or 'dict'"):
        step.read("table")


def test_a_finished_step_is_reused_only_when_everything_matches(entry):
    storage = _storage(entry)
    step = storage.step()
    wanted = {"operator": "Op", "parameters": {"k": 1}, "model": None, "prompt_hash": None, "input_fingerprint": "f"}
    assert step.find_reusable(wanted) is None  # nothing written yet
    path = step.write([{"q": "a"}], manifest={**wanted, "counts": {"rows_out": 1, "failed": 0}})
    assert step.find_reusable(wanted)["sha256"] == _sha(Path(path).read_bytes())
    assert step.find_reusable({**wanted, "parameters": {"k": 2}}) is None
    step.write([{"q": "a"}], manifest={**wanted, "counts": {"rows_out": 1, "failed": 1}})
    assert step.find_reusable(wanted) is None  # a row failed: run again
    step.write([{"q": "a"}], manifest=wanted)
    manifest = json.loads(manifest_path(path).read_text())
    manifest_path(path).write_text(json.dumps({**manifest, "dataflow_version": "0.0.0"}))
    assert step.find_reusable(wanted) is None
    manifest_path(path).write_text(json.dumps({**manifest, "format": "csv"}))
    assert step.find_reusable(wanted) is None
    manifest_path(path).write_text(json.dumps(manifest))
    assert step.find_reusable(wanted) is not None
    Path(path).write_text('{"q": "b"}\n')  # same size, other bytes
    assert step.find_reusable(wanted) is None


def test_rows_from_a_dataframe_or_with_odd_values_are_written_as_json(entry):
    storage = _storage(entry)
    step = storage.step()
    frame = pd.DataFrame({"q": ["a", None], 1: [np.int64(2), np.nan], "t": [pd.Timestamp("2026-01-02"), pd.NaT]})
    path = step.write(frame)
    assert Path(path).read_text() == ('{"q":"a","1":2.0,"t":"2026-01-02T00:00:00"}\n'
                                      '{"q":null,"1":null,"t":null}\n')
    assert json.loads(manifest_path(path).read_text())["columns"] == ["q", "1", "t"]
    step.write(frame, columns=["t", "q", "1", "extra"])
    assert json.loads(manifest_path(path).read_text())["columns"] == ["t", "q", "1", "extra"]
    plain = {"a": 1, "b": "x", "c": True, "d": None, "e": [1], "f": {"g": 1.5}}
    step.write([plain, {"h": float("nan"), "i": np.float32(0.5), 3: "k"}])
    assert Path(path).read_text() == ('{"a":1,"b":"x","c":true,"d":null,"e":[1],"f":{"g":1.5}}\n'
                                      '{"h":null,"i":0.5,"3":"k"}\n')
    step.write(iter([{"a": 1}]))
    assert Path(path).read_text() == '{"a":1}\n'
    step.write(None, columns=["a"])
    assert Path(path).read_text() == "" and json.loads(manifest_path(path).read_text())["columns"] == ["a"]
    with pytest.raises(TypeError, match="^write\\(\\) expects a DataFrame or a list of dicts; item 1 is str$"):
        step.write([{"a": 1}, "b"])


def test_the_clean_row_is_the_row_itself_when_already_plain():
    row = {"a": 1, "b": [1.5], "c": {"d": None}, "e": 2.5}
    assert _file_storage._clean_row(row) is row
    for odd, clean in (({"a": float("nan")}, {"a": None}), ({"a": np.int64(1)}, {"a": 1}), ({"a": (1, 2)}, {"a": [1, 2]})):
        assert _file_storage._clean_row(odd) == clean
    assert _file_storage._clean_row({1: "x", "n": float("nan")}) == {"1": "x", "n": None}


def test_a_step_the_preflight_check_recorded_has_its_columns_and_no_rows(entry):
    from dataflow.core.preflight import CheckComplete, PipelineCheck

    storage = _storage(entry)
    first = storage.step()
    second = storage.step()
    with PipelineCheck() as check:
        check.record(step=1, operator="Op", inputs={"input_key": "q"}, written=["answer"], columns=["q"],
                     output_path=first.output_path())
        assert second.read_columns() == ["q", "answer"]
        with pytest.raises(CheckComplete) as info:
            second.read("dict")
        assert str(info.value) == f"{second.input_path()} is a step the pre-flight check only recorded: it has no rows"
    assert not Path(second.input_path()).exists()


def test_a_step_file_of_another_pipeline_is_never_replaced(entry):
    cache = str(entry.parent / "cache")
    FileStorage(str(entry), cache_path=cache, pipeline="apigen.py").step().write([{"q": "a"}])
    other = FileStorage(str(entry), cache_path=cache, pipeline="chat.py")
    other.step()
    second = other.step()
    second.write([{"q": "b"}])  # step 2 does not exist yet: nothing to refuse
    with pytest.raises(ConfigError) as info:
        FileStorage(str(entry), cache_path=cache, pipeline="chat.py").step().write([{"q": "c"}])
    path = os.path.join(cache, "dataflow_cache_step1.jsonl")
    assert str(info.value) == (
        f"{path} holds step 1 of pipeline 'apigen.py'; 'chat.py' would replace it. Give each pipeline its own "
        "cache folder (cache_path=..., or --cache-dir), or delete that pipeline's step files if you no longer need them")
    assert Path(path).read_text() == '{"q":"a"}\n'
    FileStorage(str(entry), cache_path=cache, pipeline="apigen.py").step().write([{"q": "d"}])  # its own file
    FileStorage(str(entry), cache_path=cache, pipeline="").step().write([{"q": "e"}])  # no name: no owner to check
    assert Path(path).read_text() == '{"q":"e"}\n'
    manifest = json.loads(manifest_path(path).read_text())
    assert "pipeline" not in manifest
    FileStorage(str(entry), cache_path=cache, pipeline="chat.py").step().write([{"q": "f"}])  # unowned now
    manifest_path(path).write_text("{broken")
    FileStorage(str(entry), cache_path=cache, pipeline="apigen.py").step().write([{"q": "g"}])  # no manifest: no owner
    assert Path(path).read_text() == '{"q":"g"}\n'


def test_read_gives_a_dataframe_by_default(entry):
    frame = _storage(entry).step().read()
    assert isinstance(frame, pd.DataFrame) and list(frame["q"]) == ["a", "b"]


def test_an_interactive_session_has_no_pipeline_name(monkeypatch):
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # no __file__
    assert _file_storage._main_script() is None
    main = types.ModuleType("__main__")
    main.__file__ = ""
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert _file_storage._main_script() is None
    main.__file__ = "/somewhere/run_me.py"
    assert _file_storage._main_script() == "run_me.py"
