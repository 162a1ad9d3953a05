"""The LLM judges: reason-first replies, votes (distinct requests, strict majority), the calibration
gate (advisory verdicts on an uncalibrated model, counted in the run report), the composition
filter's fuzzy duplicate check, and the calibration sets and benchmark."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from dataflow.core.llm import LLMResult
from dataflow.core.structured import Parsed
from dataflow.operators.apigen import SemanticChecker
from dataflow.operators.conversations import CompositionTaskFilter, ConversationQualityEvaluator
from dataflow.operators.conversations.composition_filter import repeated_sub_task
from dataflow.operators.judges import Tally, tally, vote_options
from dataflow.quality import calibration
from dataflow.serving import APILLMServing_request
from dataflow.serving import FakeLLMServing
from dataflow.utils.storage import FileStorage

ROOT = Path(__file__).resolve().parents[1]

TOOLS = [{"type": "function", "function": {"name": "calculate_bmi", "description": "Body mass index",
                                           "parameters": {"type": "object", "properties": {
                                               "weight_kg": {"type": "number"}, "height_m": {"type": "number"}},
                                               "required": ["weight_kg", "height_m"]}}}]
SEMANTIC_ROW = {"query": "I weigh 300 kg and I'm 1.8 m tall: my BMI?", "tools": TOOLS,
                "answers": [{"name": "calculate_bmi", "arguments": {"weight_kg": 300, "height_m": 1.8}}],
                "execution_results": [{"name": "calculate_bmi", "ok": True, "result": {"bmi": 92.59}}],
                "execution_ok": True}


def semantic_reply(passes: bool, best_function: str = "calculate_bmi") -> dict:
    """Agrees with SEMANTIC_ROW's call when ``passes``, else reads another weight from the query."""
    return {"asked": "BMI", "requests": 1, "best_function": best_function,
            "question_values": {"call_1": {"weight_kg": 300 if passes else 30, "height_m": 1.8}}}


def composition_reply(problem: str) -> dict:
    return {"checks": "1 converts, 2 tips on the result", "reason": f"problem: {problem}", "problem": problem}


def quality_reply(score: int, **checks) -> dict:
    flags = {"calls_fit": True, "values_from_conversation": True, "answer_matches_results": True, **checks}
    return {"explanation": "calls use the user's values; the answer states the result", **flags, "score": score}


def sequence(*replies):
    """A responder that answers each call with the next reply (votes of one row come in order)."""
    queue = list(replies)
    return lambda messages, schema: queue.pop(0)


COMPOSITION_ROW = {"composition_task": "Convert 100 USD to EUR, then a 15% tip on it.",
                   "atom_task": "Convert 100 USD to EUR", "subsequent_task": "Calculate a 15% tip on the euro amount"}
CONVERSATION = [{"role": "user", "content": "BMI for 70 kg, 1.75 m?"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "calculate_bmi", "arguments": "{\"weight_kg\": 70, \"height_m\": 1.75}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"bmi\": 22.86}"},
                {"role": "assistant", "content": "Your BMI is 22.86."}]


# -- tally -----------------------------------------------------------------------------------------
def test_tally_needs_a_strict_majority():
    assert Tally(2, 1, 0).decision == "accept" and Tally(1, 2, 0).decision == "reject"
    assert Tally(1, 1, 0).decision == "reject"  # a tie is no majority to keep
    assert Tally(1, 0, 0).decision == "accept" and Tally(0, 1, 0).decision == "reject"
    assert Tally(1, 1, 1, "truncated: cut").decision is None  # the failed vote could have decided
    assert Tally(0, 2, 1, "llm_error: x").decision == "reject"
    assert Tally(0, 0, 1, "truncated: cut").failure_reason() == "truncated: cut"
    assert Tally(1, 1, 1, "truncated: cut").failure_reason().startswith("truncated: cut (votes 1/3")


def test_tally_reads_parsed_votes():
    votes = [Parsed(1, None), Parsed(0, None), Parsed(None, "invalid_reply: x")]
    counted, yes, no = tally(votes, bool)
    assert (counted.accepted, counted.rejected, counted.failed, counted.failure) == (1, 1, 1, "invalid_reply: x")
    assert yes == [1] and no == [0]


def test_vote_options_make_distinct_samples():
    assert vote_options(1) == [None]
    options = vote_options(3)
    assert options[0] is None and options[1]["seed"] != options[2]["seed"]
    assert all(o["temperature"] > 0 for o in options[1:])


# -- votes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("replies,status", [
    ((True, True, False), "ok"), ((True, False, False), "filtered"), ((False, True, True), "ok"),
])
def test_semantic_votes_keep_on_majority(replies, status):
    serving = FakeLLMServing(sequence(*[semantic_reply(r) for r in replies]))
    (outcome,) = SemanticChecker(serving, n_votes=3, judge_mode="enforce").process_batch([dict(SEMANTIC_ROW)])
    assert outcome.status == status
    accepted = sum(replies)
    if status == "ok":
        assert outcome.rows[0]["semantic_valid"] is True
        assert outcome.rows[0]["semantic_thought"].startswith(f"votes {accepted}/3 accept: ")
    else:
        assert outcome.reason.startswith(f"failed_semantic: votes {accepted}/3 accept: ")
    assert serving.call_options == vote_options(3)


def test_votes_are_distinct_requests_and_cache_entries(fake_server, tmp_path, no_api_key):
    fake_server.responder = sequence(semantic_reply(True), semantic_reply(False), semantic_reply(True))
    serving = APILLMServing_request(api_url=fake_server.url, model_name="m", cache_dir=tmp_path, max_workers=1,
                                    progress=False)
    checker = SemanticChecker(serving, n_votes=3, judge_mode="enforce")
    (first,) = checker.process_batch([dict(SEMANTIC_ROW)])
    bodies = fake_server.received
    assert len(bodies) == 3 and len({json.dumps(b, sort_keys=True) for b in bodies}) == 3
    assert sorted((b.get("seed"), b["temperature"]) for b in bodies if "seed" in b) == [(1, 0.7), (2, 0.7)]
    assert first.status == "ok"
    (again,) = checker.process_batch([dict(SEMANTIC_ROW)])
    assert fake_server.request_count == 3 and again.rows == first.rows  # every vote from the cache
    # one vote is the request n_votes=1 sends: lowering the count reuses it
    SemanticChecker(serving, judge_mode="enforce").process_batch([dict(SEMANTIC_ROW)])
    assert fake_server.request_count == 3


def test_a_cut_vote_fails_the_row_as_truncated():
    serving = FakeLLMServing(lambda m, s: LLMResult(text='{"asked": "BMI", "function_does": "the the the',
                                                    finish_reason="length"))
    (outcome,) = SemanticChecker(serving, judge_mode="enforce").process_batch([dict(SEMANTIC_ROW)])
    assert outcome.status == "failed" and outcome.reason.startswith("truncated: ")


def test_composition_votes_name_the_majority_problem():
    serving = FakeLLMServing(sequence(composition_reply("missing_step"), composition_reply("none"),
                                      composition_reply("missing_step")))
    (outcome,) = CompositionTaskFilter(serving, n_votes=3, judge_mode="enforce").process_batch([dict(COMPOSITION_ROW)])
    assert outcome.status == "filtered"
    assert outcome.reason == "rejected_missing_step: votes 1/3 accept: problem: missing_step"


def test_quality_failed_check_caps_score_and_votes_take_the_median():
    serving = FakeLLMServing(sequence(quality_reply(5, answer_matches_results=False)))
    (outcome,) = ConversationQualityEvaluator(serving).process_batch([{"conversations": CONVERSATION, "tools": TOOLS}])
    assert outcome.rows[0]["quality_score"] == 2 and "fails answer_matches_results" in outcome.rows[0]["quality_explanation"]
    serving = FakeLLMServing(sequence(quality_reply(5), quality_reply(4), quality_reply(1)))
    evaluator = ConversationQualityEvaluator(serving, min_score=4, n_votes=3, judge_mode="enforce")
    (outcome,) = evaluator.process_batch([{"conversations": CONVERSATION, "tools": TOOLS}])
    assert outcome.status == "ok" and outcome.rows[0]["quality_score"] == 4
    assert outcome.rows[0]["quality_explanation"].startswith("votes 2/3 accept: ")


def test_judge_schemas_are_reason_first():
    for reply_schema, last in ((SemanticChecker, "question_values"), (CompositionTaskFilter, "problem"),
                               (ConversationQualityEvaluator, "score")):
        serving = FakeLLMServing(lambda m, s: LLMResult.failure("HTTP 500: x"))
        if reply_schema is SemanticChecker:
            reply_schema(serving).process_batch([dict(SEMANTIC_ROW)])
        elif reply_schema is CompositionTaskFilter:
            reply_schema(serving).process_batch([dict(COMPOSITION_ROW)])
        else:
            reply_schema(serving).process_batch([{"conversations": CONVERSATION}])
        (_, schema), = serving.calls
        properties = list(schema["properties"])
        assert properties[-1] == last and len(properties) >= 3, properties


def test_bad_judge_options_are_config_errors():
    from dataflow.core.errors import ConfigError

    with pytest.raises(ConfigError, match="n_votes"):
        SemanticChecker(n_votes=0)
    with pytest.raises(ConfigError, match="judge_mode"):
        CompositionTaskFilter(judge_mode="strict")


# -- the calibration gate --------------------------------------------------------------------------
def _storage(tmp_path: Path, rows: list[dict]) -> FileStorage:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return FileStorage(str(path), cache_path=str(tmp_path / "cache"))


def _calibrate(monkeypatch, tmp_path, operator, accept_good: float, reject_bad: float) -> None:
    results = tmp_path / "results.json"
    entry = {"accept_good": accept_good, "reject_bad": reject_bad, "n_good": 20, "n_bad": 20,
             "prompt_hash": operator.prompt_hash}
    key = calibration.settings_key(operator.calibration_settings())
    results.write_text(json.dumps({"fake-model": {type(operator).__name__: {key: entry}}}))
    monkeypatch.setattr(calibration, "RESULTS_FILE", results)


def test_uncalibrated_judge_is_advisory_says_so_and_is_counted(tmp_path, capsys):
    serving = FakeLLMServing(lambda m, s: composition_reply("steps_unrelated"))
    report = CompositionTaskFilter(serving).run(_storage(tmp_path, [COMPOSITION_ROW]).step())
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "CompositionTaskFilter on model fake-model" in line]
    assert len(lines) == 1 and "no calibration" in lines[0] and "advisory" in lines[0]
    assert report.rows_out == 1 and report.filtered == 0
    assert report.advisory_by_reason == {"rejected_steps_unrelated": 1}
    assert "kept despite an advisory judge's rejection" in report.summary_line()
    (row,) = FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache")).step().step().read("dict")
    assert row["composition_verdict"] == "reject" and row["composition_reason"].startswith("advisory: rejected_")


def test_enforce_drops_and_calibrated_auto_drops(tmp_path, monkeypatch, capsys):
    serving = FakeLLMServing(lambda m, s: composition_reply("steps_unrelated"))
    enforced = CompositionTaskFilter(serving, judge_mode="enforce")
    report = enforced.run(_storage(tmp_path / "a", [COMPOSITION_ROW]).step())
    assert report.filtered_by_reason == {"rejected_steps_unrelated": 1} and report.rows_out == 0
    assert "enforced anyway" in capsys.readouterr().err

    auto = CompositionTaskFilter(serving)
    _calibrate(monkeypatch, tmp_path, auto, 0.95, 0.92)
    assert auto.calibrated() and auto.enforced()
    report = auto.run(_storage(tmp_path / "b", [COMPOSITION_ROW]).step())
    assert report.filtered == 1 and "CompositionTaskFilter on model" not in capsys.readouterr().err


def test_calibration_below_target_or_for_another_prompt_or_vote_count_is_not_trusted(tmp_path, monkeypatch):
    checker = SemanticChecker(FakeLLMServing(lambda m, s: semantic_reply(False)))
    _calibrate(monkeypatch, tmp_path, checker, 0.95, 0.80)
    assert not checker.calibrated()
    _calibrate(monkeypatch, tmp_path, checker, 0.95, 0.95)
    assert checker.calibrated()
    assert not SemanticChecker(checker.llm_serving, n_votes=3).calibrated()
    assert not SemanticChecker(checker.llm_serving, prompt_template="{% macro user() %}x{% endmacro %}").calibrated()
    (outcome,) = checker.process_batch([dict(SEMANTIC_ROW)])
    assert outcome.status == "filtered"


def test_advisory_semantic_rejection_keeps_the_row_marked(tmp_path):
    serving = FakeLLMServing(lambda m, s: semantic_reply(False))
    (outcome,) = SemanticChecker(serving).process_batch([dict(SEMANTIC_ROW)])
    assert outcome.status == "ok" and outcome.advisory.startswith("failed_semantic: ")
    assert outcome.rows[0]["semantic_valid"] is False and outcome.rows[0]["semantic_thought"].startswith("advisory: ")


def test_n_votes_and_judge_mode_are_manifest_parameters(tmp_path):
    serving = FakeLLMServing(lambda m, s: quality_reply(4))
    _storage(tmp_path, [{"conversations": CONVERSATION, "tools": TOOLS}])

    def first_step() -> FileStorage:  # the same step of a fresh pipeline run
        return FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache")).step()

    assert not ConversationQualityEvaluator(serving).run(first_step()).reused
    assert ConversationQualityEvaluator(serving).run(first_step()).reused
    assert not ConversationQualityEvaluator(serving, n_votes=3).run(first_step()).reused
    assert ConversationQualityEvaluator(serving, n_votes=3).run(first_step()).reused
    assert not ConversationQualityEvaluator(serving, n_votes=3, judge_mode="enforce").run(first_step()).reused


# -- the composition filter's deterministic duplicate check --------------------------------------
def test_sub_tasks_differing_by_a_few_words_are_duplicates_without_an_llm_call():
    serving = FakeLLMServing(lambda m, s: composition_reply("none"))
    rows = [
        {"composition_task": "Convert the budget.", "atom_task": "Convert user's budget from the US to the US",
         "subsequent_task": "Convert user's budget from US to the US"},
        {"composition_task": "Find the next train from Paris to Brussels on Friday, then book a hotel there.",
         "atom_task": "Find the next train from Paris to Brussels on Friday",
         "subsequent_task": "find the next Friday train from Paris to Brussels"},
        {"composition_task": "Find the distance from Berlin to Munich and email it to my boss.",
         "atom_task": "Find the distance from Berlin to Munich and email it to my boss",
         "subsequent_task": "Email the distance to my boss"},
        dict(COMPOSITION_ROW),
    ]
    outcomes = CompositionTaskFilter(serving, judge_mode="enforce").process_batch(rows)
    assert [o.status for o in outcomes] == ["filtered", "filtered", "filtered", "ok"]
    assert all(o.reason.startswith("rejected_duplicate_steps: ") for o in outcomes[:3])
    assert "restates the whole composed task" in outcomes[2].reason
    assert len(serving.calls) == 1  # only the distinct row reached the judge


def test_duplicate_check_passes_every_good_calibration_item():
    for item in calibration.load_items("CompositionTaskFilter"):
        row = {"composition_task": item["composition_task"], "sub_tasks": item["sub_tasks"]}
        verdict = repeated_sub_task(row, "composition_task", ["sub_tasks"])
        if item["label"] == "good":
            assert verdict is None, (item["id"], verdict)


# -- calibration sets and the benchmark ------------------------------------------------------------
REQUIRED = {"SemanticChecker": ("query", "tools", "answers", "execution_results"),
            "CompositionTaskFilter": ("composition_task", "sub_tasks"),
            "ConversationQualityEvaluator": ("messages", "tools")}


@pytest.mark.parametrize("judge", sorted(calibration.SETS))
def test_calibration_sets_have_20_good_and_20_bad_items(judge):
    items = calibration.load_items(judge)
    assert sum(i["label"] == "good" for i in items) >= 20 and sum(i["label"] == "bad" for i in items) >= 20
    assert {i["label"] for i in items} == {"good", "bad"}
    assert len({i["id"] for i in items}) == len(items)
    for item in items:
        assert item["note"] and all(item.get(k) is not None for k in REQUIRED[judge]), item["id"]


def test_calibration_files_ship_in_the_package():
    setup = (ROOT / "setup.py").read_text()
    assert '"dataflow.quality.calibration": ["*.jsonl", "*.json"]' in setup


def test_issue_10_near_misses_are_in_the_semantic_set():
    items = {i["query"]: i for i in calibration.load_items("SemanticChecker") if i["label"] == "bad"}
    assert items["What's the capital of Australia?"]["answers"][0]["name"] == "get_weather_forecast"
    assert any(i["answers"][0]["name"] == "calculate_loan_payment" for i in items.values())


def test_bench_judges_on_the_fake_server(fake_server, tmp_path, monkeypatch, no_api_key, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_judges

    def responder(messages, schema):
        title = schema["title"]
        if title == "SemanticVerdict":  # names the called function, but reads no value from the query
            called = re.findall(r"^call_\d+: (\w+)\(", messages[-1]["content"], re.MULTILINE)
            readings = schema["properties"]["question_values"]["properties"]
            return {"asked": "something", "requests": len(called), "best_function": called[0] if called else "none",
                    "question_values": {k: dict.fromkeys(v["properties"]) for k, v in readings.items()}}
        if title == "CompositionVerdictReply":
            return composition_reply("none")
        return quality_reply(4)

    fake_server.responder = responder
    monkeypatch.setenv("DF_API_URL", fake_server.base_url)
    monkeypatch.setenv("DF_MODEL", "bench-fake")
    results = tmp_path / "results.json"
    monkeypatch.setattr(bench_judges, "CHUNK", 3)
    assert bench_judges.main(["--votes", "1,3", "--results", str(results), "--judges", "semantic,composition"]) == 0
    out = capsys.readouterr().out
    assert "SemanticChecker on bench-fake, n_votes=1: accept good 0% (24), reject bad 100% (24), failed 0" in out
    data = json.loads(results.read_text())
    entry = data["bench-fake"]["SemanticChecker"]["n_votes=3"]
    assert entry["accept_good"] == 0.0 and entry["reject_bad"] == 1.0 and entry["failed"] == 0
    assert entry["cached"] > 0  # vote 0 reused from the 1-vote run
    composition = data["bench-fake"]["CompositionTaskFilter"]["n_votes=1"]
    assert composition["decided_without_llm"] >= 3 and composition["llm_only"]["reject_bad"] == 0.0
    assert composition["reject_bad"] > 0.2  # the near-duplicate check rejected some bad items
    # the gate reads what the benchmark wrote
    monkeypatch.setattr(calibration, "RESULTS_FILE", results)
    serving = APILLMServing_request(api_url=fake_server.url, model_name="bench-fake", cache=False)
    assert SemanticChecker(serving).calibration()["n_good"] >= 20
    assert not SemanticChecker(serving).calibrated()


# -- the shared round ------------------------------------------------------------------------------
@pytest.mark.parametrize("judge,row,reply", [
    (lambda s: SemanticChecker(s, n_votes=3, judge_mode="enforce"), SEMANTIC_ROW, semantic_reply(True)),
    (lambda s: CompositionTaskFilter(s, n_votes=3, judge_mode="enforce"), COMPOSITION_ROW, composition_reply("none")),
    (lambda s: ConversationQualityEvaluator(s, min_score=3, n_votes=3, judge_mode="enforce"),
     {"conversations": CONVERSATION, "tools": TOOLS}, quality_reply(4)),
])
def test_every_judge_votes_on_the_shared_structured_round(judge, row, reply, monkeypatch):
    """Each judge is a reply model, a template and what a vote says: its votes are requests of one
    ``structured_round`` (one batch of rows x votes, vote k with ``vote_options(3)[k]``), never
    re-asked for echoing its instructions."""
    from dataflow.operators import llm
    from dataflow.operators.llm import StructuredLLMOperator

    rounds = []
    shared = llm.structured_round

    def recording(serving, rows, prompt, reply_model, finish, **kwargs):
        rounds.append((len(rows), [kwargs["options"](r) for r in rows], kwargs["check"]))
        return shared(serving, rows, prompt, reply_model, finish, **kwargs)

    monkeypatch.setattr(llm, "structured_round", recording)
    serving = FakeLLMServing(lambda messages, schema: reply)
    operator = judge(serving)
    assert isinstance(operator, StructuredLLMOperator)
    outcomes = operator.process_batch([dict(row), dict(row)])
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert rounds == [(6, vote_options(3) * 2, None)]
    assert serving.call_options == vote_options(3) * 2
