"""Hostile or corrupt files a user can meet: each ends in one ``error:`` line naming the file (or,
for a step manifest, in the step simply running again), never a traceback, and nothing is written
through a link.

- step manifests: ``'[' * 100000``, values of the wrong type -> "not reusable", the step reruns;
- a ``.json`` / ``.jsonl`` input nested 100,000 deep -> ``InputFileError`` naming the file;
- ``llm_responses.sqlite``: garbage, another program's database, a symbolic link (dangling or to
  another database), a hard link, a link at its ``-wal`` file -> ``ConfigError`` naming it, and
  the other file is untouched;
- ``dataflow init`` refuses to write through a symbolically linked folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dataflow
from dataflow.core.errors import ConfigError, InputFileError
from dataflow.core.operator import OperatorABC, RowOutcome, merge_row
from dataflow.serving import FakeLLMServing
from dataflow.serving.response_cache import CACHE_FILE_NAME, CachedResponse, ResponseCache
from dataflow.storage import jsonio
from dataflow.storage.manifest import load_manifest, manifest_path
from dataflow.utils.storage import FileStorage

ROOT = Path(__file__).resolve().parents[1]
DEEP = 100_000
pytestmark = pytest.mark.usefixtures("no_api_key")


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_main(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run ``body`` as a pipeline script's ``main()`` under ``run_pipeline_main`` (this test
    folder is importable, for its test operator)."""
    script = tmp_path / "pipeline.py"
    script.write_text(
        "import sys\nfrom dataflow.cli.entry import run_pipeline_main\n\n\ndef main():\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
        + "\n\nif __name__ == '__main__':\n    sys.exit(run_pipeline_main(main))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(Path(__file__).parent),
                                                       os.environ.get("PYTHONPATH", "")]))
    env.pop("DF_DEBUG", None)
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# == step manifests ===============================================================================
class Shout(OperatorABC):
    """Test operator: asks the LLM to shout each row's text."""

    def run(self, storage, input_text_key: str = "text", output_key: str = "loud"):
        return self._run_step(
            storage, inputs={"input_text_key": input_text_key}, outputs={"output_key": output_key},
            batch_fn=functools.partial(self.process_batch, input_text_key=input_text_key, output_key=output_key),
        )

    def process_batch(self, rows, input_text_key="text", output_key="loud"):
        results = self.require_llm().generate_from_input([r[input_text_key] for r in rows])
        return [RowOutcome.keep(merge_row(row, **{output_key: res.text})) for row, res in zip(rows, results)]


def shout_step(tmp_path: Path, cache_type: str = "jsonl"):
    serving = FakeLLMServing(lambda messages, schema: messages[-1]["content"].upper())
    storage = FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache"), cache_type=cache_type)
    report = Shout(llm_serving=serving).run(storage.step())
    return storage, serving, report


def valid_manifest_with(**changes) -> str:
    """A manifest shaped like ours except for ``changes`` (the identity is irrelevant: the step
    must not be reused, and nothing may crash on the way to deciding that)."""
    value = {"operator": "Shout", "parameters": {}, "model": None, "prompt_hash": None,
             "input_fingerprint": None, "dataflow_version": dataflow.__version__, "format": "jsonl",
             "counts": {"rows_in": 2, "rows_out": 2, "failed": 0}, "columns": ["text", "loud"],
             "size": 1, "sha256": "0" * 64}
    value.update(changes)
    return json.dumps(value)


CORRUPT_MANIFESTS = {
    "brackets": "[" * DEEP,
    "deep_object": '{"operator": ' + "[" * DEEP + "]" * DEEP + "}",
    "deep_parameters": valid_manifest_with(parameters=None).replace('"parameters": null',
                                                                    '"parameters": ' + "[" * 900 + "]" * 900),
    "not_json": "\xff\xfe garbage",
    "empty": "",
    "array": "[1, 2]",
    "counts_list": valid_manifest_with(counts=[1]),
    "counts_string": valid_manifest_with(counts="x"),
    "failed_string": valid_manifest_with(counts={"failed": "0"}),
    "rows_out_negative": valid_manifest_with(counts={"rows_out": -5}),
    "by_reason_list": valid_manifest_with(counts={"failed_by_reason": ["x"]}),
    "size_string": valid_manifest_with(size="1"),
    "sha_number": valid_manifest_with(sha256=5),
    "columns_number": valid_manifest_with(columns=5),
    "columns_of_numbers": valid_manifest_with(columns=[1, 2]),
    "column_types_list": valid_manifest_with(column_types=["int"]),
    "column_types_unknown_kind": valid_manifest_with(column_types={"text": "pickle"}),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_MANIFESTS))
def test_corrupt_manifest_means_not_reusable_and_the_step_reruns(tmp_path, case):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "hi"}, {"text": "there"}])
    _, _, first = shout_step(tmp_path)
    out = Path(first.output_file)
    manifest_path(out).write_text(CORRUPT_MANIFESTS[case], encoding="utf-8", errors="surrogateescape")
    assert load_manifest(manifest_path(out)) is None or case == "deep_parameters"  # that one is well formed

    storage, serving, again = shout_step(tmp_path)  # no RecursionError/TypeError/AttributeError
    assert not again.reused and len(serving.calls) == 2
    assert storage.step().read("dict") == [{"text": "hi", "loud": "HI"}, {"text": "there", "loud": "THERE"}]
    assert load_manifest(manifest_path(out)) is not None  # rewritten by the rerun


@pytest.mark.parametrize("case", ["brackets", "counts_list", "columns_number", "column_types_list",
                                  "column_types_unknown_kind"])
@pytest.mark.parametrize("cache_type", ["jsonl", "csv"])
def test_next_step_reads_its_input_without_a_corrupt_manifest(tmp_path, case, cache_type):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "hi"}])
    storage, _, report = shout_step(tmp_path, cache_type)
    out = Path(report.output_file)
    # the corrupt manifest even claims the file's real digest, so that it would be believed
    text = CORRUPT_MANIFESTS[case]
    if text.startswith("{"):
        value = json.loads(text)
        value.update(sha256=digest(out), size=out.stat().st_size, format=cache_type)
        text = json.dumps(value)
    manifest_path(out).write_text(text)
    following = storage.step()
    assert following.read_columns() == ["text", "loud"]
    assert following.read("dict") == [{"text": "hi", "loud": "HI"}]


def test_corrupt_manifest_in_a_pipeline_script_reruns_the_step(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"text": "hi"}])
    body = """
        import json
        from dataflow.serving import FakeLLMServing
        from dataflow.utils.storage import FileStorage
        from test_hostile_files import Shout
        storage = FileStorage("in.jsonl", cache_path="cache")
        report = Shout(llm_serving=FakeLLMServing(lambda m, s: "LOUD")).run(storage.step())
        print(json.dumps({"reused": report.reused, "rows_out": report.rows_out}))
    """
    first = run_main(tmp_path, body)
    assert first.returncode == 0, first.stderr[-2000:]
    for manifest in (tmp_path / "cache").glob("*.manifest.json"):
        manifest.write_text("[" * DEEP)
    second = run_main(tmp_path, body)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr[-2000:]
    assert json.loads(second.stdout.splitlines()[-1]) == {"reused": False, "rows_out": 1}


# == deeply nested input files ====================================================================
DEEP_INPUTS = {
    "deep.json": "[" * DEEP + "]" * DEEP,
    "deep_row.json": '[{"a": ' + "[" * DEEP + "]" * DEEP + "}]",
    "deep_unclosed.json": "[" * DEEP,
    "deep.jsonl": '{"a": ' + "[" * DEEP + "]" * DEEP + "}\n",
}


@pytest.mark.parametrize("with_orjson", [True, False], ids=["orjson", "stdlib"])
@pytest.mark.parametrize("name", sorted(DEEP_INPUTS))
def test_deeply_nested_input_is_an_input_file_error(tmp_path, monkeypatch, name, with_orjson):
    if not with_orjson:
        monkeypatch.setattr(jsonio, "_orjson", None)
    elif jsonio._orjson is None:
        pytest.skip("orjson is not installed")
    path = tmp_path / name
    path.write_text(DEEP_INPUTS[name])
    storage = FileStorage(str(path), cache_path=str(tmp_path / "cache")).step()
    with pytest.raises(InputFileError) as info:
        storage.read("dict")
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "nested too deeply" in message or "depth limit" in message


def test_deeply_nested_json_input_ends_in_one_error_line(tmp_path):
    (tmp_path / "deep.json").write_text(DEEP_INPUTS["deep_row.json"])
    result = run_main(tmp_path, """
        from dataflow.utils.storage import FileStorage
        FileStorage("deep.json", cache_path="cache").step().read("dict")
    """)
    assert_one_error_line(result, "deep.json", "nested too deeply")


@pytest.mark.parametrize("with_orjson", [True, False], ids=["orjson", "stdlib"])
def test_a_row_deeper_than_orjson_writes_is_stored(tmp_path, monkeypatch, with_orjson):
    """orjson reads 1024 levels but writes only 255: the writer falls back to the standard library."""
    if not with_orjson:
        monkeypatch.setattr(jsonio, "_orjson", None)
    value: list = []
    for _ in range(400):
        value = [value]
    write_jsonl(tmp_path / "in.jsonl", [{"a": 1}])
    step = FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache")).step()
    step.write([{"a": value}])
    assert json.loads(Path(step.output_path()).read_text()) == {"a": value}


# == the response cache ===========================================================================
def open_cache(folder: Path) -> ResponseCache:
    cache = ResponseCache(folder)
    cache.get("k")
    return cache


@pytest.mark.parametrize("content", [os.urandom(4096), b"SQLite format 3\x00" + b"\x00" * 84 + b"garbage" * 100,
                                     b"hello world\n"], ids=["random", "bad_header", "text"])
def test_garbage_response_cache_is_a_config_error_naming_it(tmp_path, content):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / CACHE_FILE_NAME).write_bytes(content)
    with pytest.raises(ConfigError) as info:
        open_cache(folder)
    message = str(info.value)
    assert str(folder / CACHE_FILE_NAME) in message and "delete" in message and "\n" not in message
    assert (folder / CACHE_FILE_NAME).read_bytes() == content


def test_garbage_response_cache_in_a_pipeline_script_is_one_error_line(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / CACHE_FILE_NAME).write_bytes(os.urandom(4096))
    result = run_main(tmp_path, """
        from dataflow.serving import APILLMServing_request
        serving = APILLMServing_request(api_url="http://127.0.0.1:9/v1/chat/completions", model_name="m",
                                        cache_dir="cache")
        serving.generate_from_input(["hi"])
    """)
    assert_one_error_line(result, CACHE_FILE_NAME, "not a database")


def other_database(path: Path) -> str:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE accounts (name TEXT, balance REAL)")
    db.execute("INSERT INTO accounts VALUES ('a', 1.0)")
    db.commit()
    db.close()
    return digest(path)


def test_another_programs_database_is_refused_and_left_alone(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    before = other_database(folder / CACHE_FILE_NAME)
    with pytest.raises(ConfigError, match="holds other tables"):
        open_cache(folder)
    assert digest(folder / CACHE_FILE_NAME) == before
    assert sorted(p.name for p in folder.iterdir()) == [CACHE_FILE_NAME]


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_response_cache_refuses_a_dangling_symlink(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    outside = tmp_path / "outside" / "planted.sqlite"
    outside.parent.mkdir()
    os.symlink(outside, folder / CACHE_FILE_NAME)
    with pytest.raises(ConfigError, match="symbolic link") as info:
        open_cache(folder).put("k", CachedResponse("x"))
    assert str(folder / CACHE_FILE_NAME) in str(info.value)
    assert list(outside.parent.iterdir()) == []  # no database was created outside the cache folder


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_response_cache_refuses_a_symlink_to_another_database(tmp_path):
    other = tmp_path / "app.db"
    before = other_database(other)
    folder = tmp_path / "cache"
    folder.mkdir()
    os.symlink(other, folder / CACHE_FILE_NAME)
    with pytest.raises(ConfigError, match="symbolic link"):
        open_cache(folder).put("k", CachedResponse("x"))
    assert digest(other) == before
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    assert tables == [("accounts",)]  # no responses table was added


def test_response_cache_refuses_a_hard_link(tmp_path):
    other = tmp_path / "app.db"
    sqlite3.connect(other).close()  # an empty database another program owns
    folder = tmp_path / "cache"
    folder.mkdir()
    try:
        os.link(other, folder / CACHE_FILE_NAME)
    except OSError as exc:
        pytest.skip(f"cannot make a hard link here: {exc}")
    with pytest.raises(ConfigError, match="hard link"):
        open_cache(folder).put("k", CachedResponse("x"))
    assert other.stat().st_size == 0


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
@pytest.mark.parametrize("suffix", ["-wal", "-shm", "-journal"])
def test_response_cache_refuses_a_link_at_a_side_file(tmp_path, suffix):
    folder = tmp_path / "cache"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside / "planted", folder / (CACHE_FILE_NAME + suffix))
    with pytest.raises(ConfigError, match="symbolic link"):
        open_cache(folder).put("k", CachedResponse("x"))
    assert list(outside.iterdir()) == []


def test_response_cache_still_works_in_a_linked_cache_folder(tmp_path):
    """The folder is the user's choice (a link to a bigger disk is fine); only the file is checked."""
    real = tmp_path / "big_disk"
    real.mkdir()
    os.symlink(real, tmp_path / "cache", target_is_directory=True)
    cache = ResponseCache(tmp_path / "cache")
    cache.put("k", CachedResponse("x"))
    assert cache.get("k") == CachedResponse("x")
    cache.close()
    assert (real / CACHE_FILE_NAME).is_file()


# == dataflow init ================================================================================
@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
@pytest.mark.parametrize("link", ["api_pipelines", "example_data/APIGen", ".dataflow-init.json"])
def test_init_refuses_to_write_through_a_symlink(tmp_path, link):
    from dataflow.cli.scaffold import copy_scaffold

    dest = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dest / link).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(elsewhere, dest / link)
    with pytest.raises(ConfigError) as info:
        copy_scaffold(dest)
    assert link in str(info.value) and "symbolic link" in str(info.value)
    assert list(elsewhere.iterdir()) == []
    assert [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()] == []  # nothing written at all


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs symbolic links")
def test_init_command_names_the_link_in_one_error_line(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    os.symlink(elsewhere, project / "api_pipelines")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-m", "dataflow.cli", "init"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=60)
    assert_one_error_line(result, "api_pipelines", str(elsewhere))
    assert list(elsewhere.iterdir()) == []


def test_init_into_a_linked_destination_is_fine(tmp_path):
    from dataflow.cli.scaffold import copy_scaffold

    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link", target_is_directory=True)
    result = copy_scaffold(tmp_path / "link")
    assert result.copied and (real / "api_pipelines").is_dir()
