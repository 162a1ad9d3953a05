"""The two example operators of ``api_pipelines/custom_operators.py``, run as a user runs them:
steps of a ``FileStorage`` on real files, the LLM one on the fake backend. Copy this file with
the operator you write."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dataflow.core.preflight import check_pipeline
from dataflow.serving import FakeLLMServing
from dataflow.utils.storage import FileStorage

ROOT = Path(__file__).resolve().parents[1]

ROWS = [
    {"query": "Weather in Oslo for 3 days?", "answers": [{"name": "forecast", "arguments": {"city": "Oslo", "days": 3}}]},
    {"query": "Convert 12 EUR to USD and 5 GBP to JPY",
     "answers": [{"name": "convert", "arguments": {"amount": 12, "from": "EUR", "to": "USD"}},
                 {"name": "convert", "arguments": {"amount": 5, "from": "GBP", "to": "JPY"}}]},
    {"query": "Tip on 40, 50 and 60 dollars",
     "answers": json.dumps([{"name": "tip", "arguments": {"bill": b}} for b in (40, 50, 60)])},
    {"query": "broken", "answers": "{not json"},
]


@pytest.fixture
def custom(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "api_pipelines"))
    import custom_operators

    return custom_operators


@pytest.fixture
def storage(tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return FileStorage(first_entry_file_name=str(source), cache_path=str(tmp_path / "cache"),
                       file_name_prefix="dataflow_cache_step", cache_type="jsonl")


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_max_calls_filter_keeps_drops_fails_and_counts(custom, storage, tmp_path):
    report = custom.MaxCallsFilter(max_calls=2).run(storage.step(), input_answers_key="answers")
    assert (report.rows_in, report.kept, report.filtered, report.failed) == (4, 2, 1, 1)
    assert report.filtered_by_reason == {"too_many_calls": 1} and report.failed_by_reason == {"unreadable_answer": 1}
    assert report.counters == {"calls_seen": 6}  # 1 + 2 + 3; the unreadable answer has none
    kept = _jsonl(tmp_path / "cache" / "dataflow_cache_step1.jsonl")
    assert [r["query"] for r in kept] == [ROWS[0]["query"], ROWS[1]["query"]]
    rejected = _jsonl(tmp_path / "cache" / "dataflow_cache_step1.rejected.jsonl")
    assert sorted(r["_reason"].split(":")[0] for r in rejected) == ["too_many_calls", "unreadable_answer"]


def test_max_calls_filter_step_is_reused_with_its_counts_and_rerun_when_its_setting_changes(custom, tmp_path):
    source = tmp_path / "readable.jsonl"  # a step with failed rows runs again (to retry them): none here
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]), encoding="utf-8")

    def run(max_calls):
        storage = FileStorage(first_entry_file_name=str(source), cache_path=str(tmp_path / "cache"),
                              file_name_prefix="dataflow_cache_step", cache_type="jsonl")
        return custom.MaxCallsFilter(max_calls=max_calls).run(storage.step())

    first = run(2)
    reused = run(2)
    assert not first.reused and reused.reused
    assert reused.counters == first.counters == {"calls_seen": 6} and reused.kept == first.kept == 2
    changed = run(3)
    assert not changed.reused and changed.kept == 3


def test_max_calls_filter_refuses_a_meaningless_setting(custom):
    from dataflow.core import ConfigError

    with pytest.raises(ConfigError, match="max_calls"):
        custom.MaxCallsFilter(max_calls=0)


def _rewriter_responder(replies: dict[str, list[str]]):
    """Answer each request by the query in its user message, one reply per ask, in order."""
    asked: dict[str, int] = {}

    def respond(messages, json_schema):
        assert json_schema is not None and "query" in json_schema["properties"]
        query = messages[-1]["content"].split("Request: ", 1)[1].split("\n", 1)[0]
        n = asked.get(query, 0)
        asked[query] = n + 1
        return {"query": replies[query][n]}

    return respond


def test_query_rewriter_keeps_grounded_rewrites_and_reasks_a_lost_value(custom, storage, tmp_path):
    replies = {
        ROWS[0]["query"]: ["hey, what's the weather in Oslo over the next 3 days?"],
        # first rewrite drops 12, the re-ask keeps both amounts
        ROWS[1]["query"]: ["swap some EUR to USD and 5 GBP to JPY", "could you swap 12 EUR to USD and 5 GBP to JPY"],
        # the value 60 is lost twice: the row fails with the reason, never an empty column
        ROWS[2]["query"]: ["tips on 40 and 50 bucks", "tips for 40 and 50 bucks please"],
    }
    serving = FakeLLMServing(_rewriter_responder(replies))
    custom.MaxCallsFilter(max_calls=3).run(storage.step())  # the broken row stops here
    report = custom.QueryRewriter(llm_serving=serving, style="casual").run(
        storage.step(), input_query_key="query", input_answers_key="answers", output_key="casual_query")
    assert (report.rows_in, report.kept, report.failed) == (3, 2, 1)
    assert report.failed_by_reason == {"lost_value": 1}
    assert serving.stats.requests_sent == 5  # 3 first asks + 2 re-asks
    kept = _jsonl(tmp_path / "cache" / "dataflow_cache_step2.jsonl")
    assert [r["casual_query"] for r in kept] == [replies[ROWS[0]["query"]][0], replies[ROWS[1]["query"]][1]]
    [rejected] = _jsonl(tmp_path / "cache" / "dataflow_cache_step2.rejected.jsonl")
    assert "60" in rejected["_reason"]


def test_query_rewriter_failed_call_is_a_reason_not_data(custom, storage, tmp_path):
    def down(messages, json_schema):
        raise RuntimeError("backend down")

    report = custom.QueryRewriter(llm_serving=FakeLLMServing(down)).run(storage.step())
    assert report.kept == 0 and report.failed == 4
    assert not _jsonl(tmp_path / "cache" / "dataflow_cache_step1.jsonl")


def test_a_pipeline_of_both_is_checked_before_it_spends(custom, storage):
    serving = FakeLLMServing(lambda m, s: {"query": "unused"})

    def forward():
        custom.MaxCallsFilter().run(storage.step(), input_answers_key="answers")
        custom.QueryRewriter(llm_serving=serving).run(storage.step(), input_query_key="question")

    out = io.StringIO()
    assert check_pipeline(forward, out) == 1
    assert "input_query_key='question'" in out.getvalue()
    assert serving.stats.requests_sent == 0
