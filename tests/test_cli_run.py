"""``dataflow run SCRIPT``: a pipeline script runs under the chosen runner, with its own args."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESPONDER = "dataflow.serving.fake_responders:button_responder"


def _dataflow(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DF_API_URL=url, DF_MODEL="fake-model", PYTHONPATH=str(ROOT))
    env.pop("DF_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "dataflow.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=280)


@pytest.mark.timeout(300)
def test_run_local_passes_script_args_and_writes_outputs(tmp_path):
    from dataflow.serving import FakeOpenAIServer

    cache = tmp_path / "cache"
    with FakeOpenAIServer(responder=RESPONDER) as server:
        done = _dataflow("run", str(ROOT / "api_pipelines/func_call_synthesis.py"),
                         "--rows", "2", "--cache-dir", str(cache), "--out-dir", str(tmp_path / "out"),
                         url=server.url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert server.request_count > 0
    lines = (tmp_path / "out" / "func_call_conversations.openai.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["messages"] for line in lines)


def test_run_reports_a_failing_script_with_its_exit_status(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("import sys\nsys.exit(3)\n")
    done = _dataflow("run", str(script), url="http://127.0.0.1:9/v1/chat/completions", cwd=tmp_path)
    assert done.returncode == 3


def test_run_missing_script_is_one_line_error(tmp_path):
    done = _dataflow("run", str(tmp_path / "nope.py"), url="http://127.0.0.1:9/v1/chat/completions", cwd=tmp_path)
    assert done.returncode == 2
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_options_after_script_are_dataflow_runs_and_script_args_follow_the_separator(tmp_path):
    script = tmp_path / "echo.py"
    script.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    url = "http://127.0.0.1:9/v1/chat/completions"
    for args in (["run", str(script), "--runner", "local", "--num-actors", "3", "--", "--rows", "100"],
                 ["run", "--runner", "local", str(script), "--", "--rows", "100"],
                 ["run", str(script), "--rows", "100"]):
        done = _dataflow(*args, url=url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == ["--rows", "100"], args
    wrong = _dataflow("run", str(script), "--rows", "1", "--", "--x", url=url, cwd=tmp_path)
    assert wrong.returncode == 2 and "the script's own options go after '--'" in wrong.stderr
    twice = _dataflow("run", "--runner", "local", str(script), "--runner", "ray", url=url, cwd=tmp_path)
    assert twice.returncode == 2 and "both before and after SCRIPT" in twice.stderr
    bad = _dataflow("run", str(script), "--runner", "lcal", "--", "--rows", "1", url=url, cwd=tmp_path)
    assert bad.returncode == 2 and "'lcal' is not one of" in bad.stderr


@pytest.mark.timeout(600)
def test_the_readmes_ray_command_runs_the_steps_on_ray(tmp_path):
    """The README's command, word for word, in a folder made by `dataflow init`."""
    pytest.importorskip("ray")
    from dataflow.serving import FakeOpenAIServer

    readme = (ROOT / "README.md").read_text()
    command = "dataflow run api_pipelines/func_call_synthesis.py --runner ray --num-actors 4 -- --rows 100"
    assert command in readme
    dataflow_bin = Path(sys.executable).parent / "dataflow"
    assert _dataflow("init", url="http://127.0.0.1:9", cwd=tmp_path).returncode == 0
    with FakeOpenAIServer(responder=RESPONDER) as server:
        env = dict(os.environ, DF_API_URL=server.url, DF_MODEL="fake-model", PYTHONPATH=str(ROOT))
        env.pop("DF_API_KEY", None)
        argv = [str(dataflow_bin) if dataflow_bin.exists() else "dataflow", *command.split()[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stderr[-3000:]
    ray_line = next(line for line in done.stderr.splitlines() if line.startswith("dataflow run:"))
    assert "6 steps ran on Ray" in ray_line, ray_line
    for operator in ("ScenarioExtractor", "MultiTurnConversationGenerator"):
        assert re.search(operator + r" \(\d+ rows, \d+ batches, [1-4] actors\)", ray_line), ray_line
    out = tmp_path / "api_pipelines" / "output" / "func_call_100rows"
    assert (out / "func_call_conversations.openai.jsonl").read_text().strip()
