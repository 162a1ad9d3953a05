"""End to end: ``api_pipelines/func_call_synthesis.py`` as a subprocess against the loopback fake
server (deterministic BUTTON responder). Every exported conversation is structurally valid, and a
second run - this time from inside ``api_pipelines/`` as the seed runs it - sends zero requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.operators.conversations import check_conversation
from dataflow.quality import conversation_problems

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "api_pipelines" / "func_call_synthesis.py"
RESPONDER = "dataflow.serving.fake_responders:button_responder"


def _run(cwd: Path, script: str, url: str, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DF_API_URL=url, DF_MODEL="fake-model", PYTHONPATH=str(ROOT))
    env.pop("DF_API_KEY", None)
    return subprocess.run(
        [sys.executable, script, "--rows", "0", "--cache-dir", str(cache), "--out-dir", str(cache.parent / "out"), *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
    )


@pytest.mark.timeout(300)
def test_pipeline_end_to_end_then_rerun_makes_no_requests(tmp_path):
    from dataflow.serving import FakeOpenAIServer

    cache = tmp_path / "cache"
    n_input = sum(1 for line in (ROOT / "example_data/FuncCallPipeline/chat_data.jsonl").open() if line.strip())
    with FakeOpenAIServer(responder=RESPONDER) as server:
        first = _run(ROOT, "api_pipelines/func_call_synthesis.py", server.url, cache, "--evaluate")
        assert first.returncode == 0, first.stderr[-3000:]
        sent = server.request_count
        assert sent > 0

        openai_file = tmp_path / "out" / "func_call_conversations.openai.jsonl"
        records = [json.loads(line) for line in openai_file.open()]
        assert len(records) == n_input  # the fake answers every step validly
        for record in records:
            assert check_conversation(record["messages"], record["tools"]) == []
            assert conversation_problems(record["messages"], record["tools"]) == []
            assert sum(m["role"] == "user" for m in record["messages"]) == 2  # opening + follow-up
            assert sum(bool(m.get("tool_calls")) for m in record["messages"]) >= 2
        hermes = [json.loads(line) for line in (tmp_path / "out" / "func_call_conversations.hermes.jsonl").open()]
        assert len(hermes) == len(records) and "<tool_call>" in json.dumps(hermes[0])

        summary = first.stdout
        assert "MultiTurnConversationGenerator" in summary + first.stderr
        assert "LLM calls:" in summary and "Example conversation" in summary
        assert str(openai_file) in summary

        second = _run(ROOT / "api_pipelines", "func_call_synthesis.py", server.url, cache, "--evaluate")
        assert second.returncode == 0, second.stderr[-3000:]
        assert server.request_count == sent  # zero requests on the rerun
        assert "LLM calls: 0 sent" in second.stdout
        again = [json.loads(line) for line in openai_file.open()]
        assert again == records
