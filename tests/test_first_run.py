"""A first run as a new user makes it, in a folder made by ``dataflow init``, on the loopback fake
server: the main job, then the APIGen example, then the main job again, without a surprise.

- each pipeline keeps its step files in its own cache folder, and its results in an output folder
  apart from the cache (one per run configuration), each with a dataset card and a report;
- the rerun of the main job reuses every step (zero LLM requests) and finds its files unchanged;
- step files are named ``dataflow_cache_step<k>`` (one "step"), and a cache written with the old
  doubled name still resumes;
- a step file another pipeline wrote is never replaced: pointing both pipelines at one cache
  folder is an error that says whose file it is.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUTTON = "dataflow.serving.fake_responders:button_responder"
APIGEN = "dataflow.operators.apigen.testing:apigen_responder"


def _run(cwd: Path, url: str, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DF_API_URL=url, DF_MODEL="fake-model", PYTHONPATH=str(ROOT))
    env.pop("DF_API_KEY", None)
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("dataflow_cache_step*"))}


@pytest.fixture()
def workspace(tmp_path) -> Path:
    done = subprocess.run([sys.executable, "-m", "dataflow.cli", "init"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0, done.stderr
    return tmp_path / "api_pipelines"


@pytest.mark.timeout(300)
def test_main_job_then_apigen_then_main_job_again(workspace):
    from dataflow.serving import FakeOpenAIServer

    with FakeOpenAIServer(responder=BUTTON) as button, FakeOpenAIServer(responder=APIGEN) as apigen:
        first = _run(workspace, button.url, "func_call_synthesis.py", "--rows", "3")
        assert first.returncode == 0, first.stderr[-3000:]
        steps = workspace / "cache" / "func_call"
        main_files = _hashes(steps)
        assert "dataflow_cache_step1.jsonl" in main_files and not any("step_step" in n for n in main_files)
        done = _run(workspace, apigen.url, "apigen_synthesis.py", "--rows", "6", "--no-semantic")
        assert done.returncode == 0, done.stderr[-3000:]
        assert (workspace / "cache" / "apigen" / "dataflow_cache_step1.jsonl").exists()
        sent = button.request_count
        again = _run(workspace, button.url, "func_call_synthesis.py", "--rows", "3")
        assert again.returncode == 0, again.stderr[-3000:]
        assert button.request_count == sent  # every step reused
        assert _hashes(steps) == main_files
    outputs = workspace / "output"
    assert sorted(p.name for p in outputs.iterdir()) == ["apigen_6rows_nosemantic", "func_call_3rows"]
    for folder in outputs.iterdir():
        for name in ("README.md", "run_summary.json", "report.html"):
            assert (folder / name).is_file(), (folder, name)
    assert "dataset card" in again.stdout and str(outputs / "func_call_3rows" / "report.html") in again.stdout


@pytest.mark.timeout(300)
def test_a_step_file_of_another_pipeline_is_never_replaced(workspace, tmp_path):
    from dataflow.serving import FakeOpenAIServer

    shared = tmp_path / "one_cache"
    with FakeOpenAIServer(responder=BUTTON) as button, FakeOpenAIServer(responder=APIGEN) as apigen:
        first = _run(workspace, button.url, "func_call_synthesis.py", "--rows", "2", "--cache-dir", str(shared))
        assert first.returncode == 0, first.stderr[-3000:]
        before = _hashes(shared)
        clash = _run(workspace, apigen.url, "apigen_synthesis.py", "--rows", "4", "--no-semantic",
                     "--cache-dir", str(shared))
    assert clash.returncode != 0
    assert "holds step 1 of pipeline 'func_call_synthesis.py'" in clash.stderr, clash.stderr[-2000:]
    assert "Traceback" not in clash.stderr
    assert _hashes(shared) == before


@pytest.mark.timeout(300)
def test_a_cache_with_the_old_doubled_step_names_still_resumes(workspace, tmp_path):
    from dataflow.serving import FakeOpenAIServer

    cache = tmp_path / "cache"
    with FakeOpenAIServer(responder=BUTTON) as button:
        first = _run(workspace, button.url, "func_call_synthesis.py", "--rows", "2", "--cache-dir", str(cache))
        assert first.returncode == 0, first.stderr[-3000:]
        for path in sorted(cache.glob("dataflow_cache_step*")):  # as an older release named them
            path.rename(path.with_name(path.name.replace("dataflow_cache_step", "dataflow_cache_step_step", 1)))
        old = _hashes(cache)
        assert "dataflow_cache_step_step6.jsonl" in old
        sent = button.request_count
        again = _run(workspace, button.url, "func_call_synthesis.py", "--rows", "2", "--cache-dir", str(cache))
        assert again.returncode == 0, again.stderr[-3000:]
        assert button.request_count == sent and "reused finished step" in again.stdout
    assert _hashes(cache) == old  # read and reused in place, nothing written under new names


def test_step_file_names_have_one_step(tmp_path):
    from dataflow.utils.storage import FileStorage

    source = tmp_path / "in.jsonl"
    source.write_text('{"a": 1}\n')
    storage = FileStorage(str(source), cache_path=str(tmp_path / "c"), file_name_prefix="dataflow_cache_step")
    assert Path(storage.step().output_path()).name == "dataflow_cache_step1.jsonl"
    other = FileStorage(str(source), cache_path=str(tmp_path / "c"), file_name_prefix="run", cache_type="parquet")
    assert Path(other.step().output_path()).name == "run_step1.parquet"
