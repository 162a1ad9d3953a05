"""End to end: ``api_pipelines/environment_synthesis.py`` as a subprocess against the loopback fake
server (``shop_responder``): blueprints validated, conversations state-checked and exported, the
funnel written; a rerun sends zero requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESPONDER = "dataflow.serving.fake_environment:shop_responder"


def _run(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DF_API_URL=url, DF_MODEL="fake-model", PYTHONPATH=str(ROOT))
    env.pop("DF_API_KEY", None)
    return subprocess.run(
        [sys.executable, "api_pipelines/environment_synthesis.py", "--blueprints", "5", "--attempts", "2",
         "--cache-dir", str(tmp / "cache"), "--out-dir", str(tmp / "out"), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(300)
def test_environment_pipeline_end_to_end_then_rerun_makes_no_requests(tmp_path):
    from dataflow.serving import FakeOpenAIServer

    with FakeOpenAIServer(responder=RESPONDER) as server:
        first = _run(server.url, tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        sent = server.request_count
        assert sent > 0
        funnel = json.loads((tmp_path / "out" / "environment_funnel.json").read_text())
        assert funnel["environment"] == "shop"
        assert funnel["blueprint_pass_rate"] == 1.0 and funnel["trajectory_pass_rate"] == 1.0
        assert funnel["pass_hat_k"] == {"1": 1.0, "2": 1.0}
        assert "Trajectories kept (final state and facts checked): 5 of 5" in first.stdout
        records = [json.loads(line) for line in (tmp_path / "out" / "environment_conversations.openai.jsonl").open()]
        assert len(records) == 5  # exported: unused tools of the environment are no defect here
        assert len(records[0]["tools"]) == 10 and records[0]["messages"][-1]["role"] == "assistant"
        summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
        assert summary["environment"]["environment"] == "shop" and summary["environment"]["trajectory_pass_rate"] == 1.0
        assert any("state check" in c for c in summary["checks"])
        assert (tmp_path / "out" / "README.md").is_file()
        second = _run(server.url, tmp_path)
        assert second.returncode == 0, second.stderr[-3000:]
        assert server.request_count == sent  # zero LLM calls
        assert "reused finished step, 0 LLM calls" in second.stderr
