"""``dataflow run SCRIPT``: a pipeline script runs under the chosen runner, with its own args."""

from __future__ import annotations

import json
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
    from dataflow.serving.fake_server import FakeOpenAIServer

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
