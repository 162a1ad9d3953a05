"""The four seed-000 subcommands on the example files, and the example pipeline end to end,
against the loopback fake OpenAI server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "example_data" / "APIGen"


@pytest.fixture
def apigen_server(fake_server):
    from dataflow.operators.apigen.testing import apigen_responder

    fake_server.responder = apigen_responder
    return fake_server


def _env(server=None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DF_API_KEY", None)
    if server is not None:
        env["DF_API_URL"] = server.url
        env["DF_MODEL"] = "fake-model"
    return env


def dataflow_cli(*args: str, server=None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataflow.cli.main", *args], capture_output=True, text=True,
                          env=_env(server), cwd=cwd or ROOT, timeout=240)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_four_subcommands_on_the_example_files(tmp_path, apigen_server):
    generated = tmp_path / "generated.jsonl"
    r = dataflow_cli("apigen", "generate", "--config-path", str(DATA / "generator_config.yaml"),
                     "--qa-jsonl-path", str(DATA / "seed_qa.jsonl"),
                     "--function-definitions-path", str(DATA / "function_definitions.json"),
                     "--output-path", str(generated), server=apigen_server)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(generated)
    assert len(rows) >= 10 and all({"query", "answers"} <= set(r) for r in rows)
    assert apigen_server.request_count >= 10

    verified = tmp_path / "verified.jsonl"
    r = dataflow_cli("apigen", "verify", "--generated-query-answer-path", str(generated),
                     "--function-definitions-path", str(DATA / "function_definitions.json"),
                     "--verified-query-answer-path", str(verified), "--tools-module", str(DATA / "tools.py"),
                     server=apigen_server)
    assert r.returncode == 0, r.stderr
    assert "pass rate" in r.stdout and "failed execution" in r.stdout
    table = json.loads(verified.with_suffix(".stages.json").read_text())
    kept = read_jsonl(verified)
    assert table["verified"] == len(kept) and table["generated"] == len(rows)
    rejected = read_jsonl(tmp_path / "verified.rejected.jsonl")
    assert len(rejected) + len(kept) == len(rows)
    assert all(r["_reason"].split(":")[0] in {"failed_format", "failed_grounding", "failed_irrelevance", "failed_execution",
                                                "failed_semantic"}
               for r in rejected)

    train, val, test = tmp_path / "train.jsonl", tmp_path / "val.jsonl", tmp_path / "test.jsonl"
    r = dataflow_cli("split", "--input-file-path", str(DATA / "seed_qa.jsonl"), "--train-output-path", str(train),
                     "--val-output-path", str(val), "--test-output-path", str(test), "--test-size", "0.3")
    assert r.returncode == 0, r.stderr
    assert "split: train" in r.stdout
    assert len(read_jsonl(train)) + len(read_jsonl(val)) + len(read_jsonl(test)) == len(read_jsonl(DATA / "seed_qa.jsonl"))

    out = tmp_path / "ft.jsonl"
    r = dataflow_cli("convert", "--input-path", str(train), "--output-path", str(out))
    assert r.returncode == 0, r.stderr
    first = read_jsonl(out)[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    json.loads(first["messages"][2]["content"])
    for fmt in ("openai", "hermes", "xlam"):
        r = dataflow_cli("convert", "--input-path", str(verified), "--output-path", str(tmp_path / f"{fmt}.jsonl"),
                         "--format", fmt, "--system-prompt-path", str(DATA / "system_prompt.txt"))
        assert r.returncode == 0, r.stderr


def test_verify_without_llm_and_bad_input(tmp_path):
    bad = tmp_path / "gen.jsonl"
    bad.write_text(json.dumps({"query": "q", "function_calls": [{"function_name": "prime_factors", "arguments": {"n": "12"}}]}) + "\n"
                   + json.dumps({"query": "Prime factors of 12?", "function_calls": [{"function_name": "prime_factors", "arguments": {"n": 12}}]}) + "\n"
                   + json.dumps({"query": "Prime factors, please", "function_calls": [{"function_name": "prime_factors", "arguments": {"n": 12}}]}) + "\n")
    out = tmp_path / "ok.jsonl"
    r = dataflow_cli("apigen", "verify", "--generated-query-answer-path", str(bad),
                     "--function-definitions-path", str(DATA / "function_definitions.json"),
                     "--verified-query-answer-path", str(out), "--no-semantic")
    assert r.returncode == 0, r.stderr
    assert len(read_jsonl(out)) == 1
    reasons = [r["_reason"] for r in read_jsonl(tmp_path / "ok.rejected.jsonl")]
    assert reasons == ["failed_format: call 0 (prime_factors): argument 'n': \"12\" is not of type 'integer'",
                       "failed_grounding: call 0 (prime_factors): ungrounded_argument: n=12 is not in the query"]


def test_register_adds_commands():
    import click

    from dataflow.cli.apigen_commands import register

    group = click.Group("g")
    register(group)
    assert set(group.commands) == {"apigen", "split", "convert"}
    assert set(group.commands["apigen"].commands) == {"generate", "verify"}


def _check_single_turn_export(export: Path, cache: Path) -> None:
    """Read the written OpenAI files back: each example is ``user`` then ``assistant`` (with
    ``tool_calls``, or a plain answer when no tool fits), never a trailing ``tool`` message or
    harness fields, and no query copies a few-shot example or seed row."""
    from dataflow.operators.apigen import copied_example
    from dataflow.operators.apigen.sampler import load_seed_examples

    seeds = [e["query"] for e in load_seed_examples(DATA / "seed_qa.jsonl")]
    rows = read_jsonl(export / "train.openai.jsonl") + read_jsonl(export / "validation.openai.jsonl")
    assert rows
    shown = {}
    for row in read_jsonl(next(cache.glob("*step2.jsonl"))):  # the generator's output carries its examples
        shown[row["query"]] = [e["query"] for e in row.get("examples") or []]
    for row in rows:
        messages = row["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"], messages
        assistant = messages[1]
        if assistant.get("tool_calls"):
            assert assistant.get("content") is None  # OpenAI's form: no content beside the calls
            for call in assistant["tool_calls"]:
                assert call["type"] == "function" and isinstance(json.loads(call["function"]["arguments"]), dict)
        else:
            assert assistant["content"]
        query = messages[0]["content"]
        assert copied_example(query, shown[query], seeds) is None, query
    hermes = read_jsonl(export / "train.hermes.jsonl")
    assert all([t["from"] for t in row["conversations"]] == ["system", "human", "gpt"] for row in hermes)


@pytest.mark.parametrize("from_root", [True, False])
def test_example_pipeline_end_to_end_against_the_fake_server(tmp_path, apigen_server, from_root):
    cache = tmp_path / "cache"
    script = "api_pipelines/apigen_synthesis.py" if from_root else "apigen_synthesis.py"
    cwd = ROOT if from_root else ROOT / "api_pipelines"
    export = tmp_path / "out"
    run = lambda: subprocess.run([sys.executable, script, "--cache", str(cache), "--out-dir", str(export)],
                                 capture_output=True, text=True, env=_env(apigen_server), cwd=cwd, timeout=240)
    r = run()
    assert r.returncode == 0, r.stderr
    assert "APIGen stage table" in r.stdout and "pass rate" in r.stdout
    table = json.loads((cache / "apigen_stage_table.json").read_text())
    assert table["generated"] > 0 and 0 < table["verified"] <= table["generated"]
    assert table["generated"] == (table["copied_example"] + table["duplicate_query"] + table["failed_format"]
                                  + table["failed_grounding"] + table["failed_irrelevance"]
                                  + table["failed_execution"] + table["failed_semantic"]
                                  + table["judge_errors"] + table["verified"])
    assert table["reasked"] > 0  # the fake copies an example now and then; the generator asks again
    assert table["copied_example"] > 0  # ... and sometimes copies again: the NoveltyFilter drops those
    _check_single_turn_export(export, cache)
    for fmt in ("trl", "llamafactory", "hermes", "xlam", "chat_message"):
        assert (export / f"train.{fmt}.jsonl").exists(), fmt
    assert (export / "README.md").exists() and (export / "run_summary.json").exists()
    sent = apigen_server.request_count
    r2 = run()  # a rerun reuses every step: zero LLM calls
    assert r2.returncode == 0, r2.stderr
    assert apigen_server.request_count == sent


def test_example_pipeline_without_the_judge(tmp_path, apigen_server):
    cache = tmp_path / "cache"
    r = subprocess.run([sys.executable, "api_pipelines/apigen_synthesis.py", "--cache", str(cache), "--rows", "6",
                        "--no-semantic", "--out-dir", str(tmp_path / "out")], capture_output=True, text=True,
                       env=_env(apigen_server), cwd=ROOT, timeout=240)
    assert r.returncode == 0, r.stderr
    assert "SemanticChecker" not in r.stderr and "ExecutionChecker" in r.stderr
    table = json.loads((cache / "apigen_stage_table.json").read_text())
    assert table["failed_semantic"] == 0 and table["verified"] > 0
    _check_single_turn_export(tmp_path / "out", cache)
