"""What is sent keeps the reply schema's declared property order (reasoning before verdict), the
response cache sees that order, per-request options make distinct requests, and a reply cut at
max_tokens is reported as ``truncated``."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from dataflow.core.llm import LLMResult
from dataflow.core.structured import parse_reply, schema_for
from dataflow.serving import APILLMServing_request
from dataflow.serving import FakeLLMServing
from dataflow.serving.response_cache import CachedResponse, ResponseCache, request_key

pytestmark = pytest.mark.usefixtures("no_api_key")


class ReasonFirst(BaseModel):
    zeta_reasoning: str
    beta_evidence: str
    alpha_verdict: bool


class VerdictFirst(BaseModel):
    alpha_verdict: bool
    zeta_reasoning: str
    beta_evidence: str


def client(url, **kw) -> APILLMServing_request:
    kw.setdefault("model_name", "test-model")
    kw.setdefault("max_workers", 4)
    kw.setdefault("timeout", 5)
    kw.setdefault("backoff_base", 0.02)
    return APILLMServing_request(api_url=url, **kw)


def sent_properties(body: dict) -> list[str]:
    return list(body["response_format"]["json_schema"]["schema"]["properties"])


def test_schema_for_keeps_declared_order():
    assert list(schema_for(ReasonFirst)["properties"]) == ["zeta_reasoning", "beta_evidence", "alpha_verdict"]
    assert schema_for(ReasonFirst)["required"] == ["zeta_reasoning", "beta_evidence", "alpha_verdict"]


def test_request_body_keeps_declared_property_order(fake_server, tmp_path):
    serving = client(fake_server.url, cache_dir=tmp_path)
    serving.generate_from_input(["judge this"], json_schema=schema_for(ReasonFirst))
    [body] = fake_server.received
    assert sent_properties(body) == ["zeta_reasoning", "beta_evidence", "alpha_verdict"]


def test_judge_schemas_put_reasoning_before_verdict(fake_server):
    from dataflow.operators.apigen.checkers import SemanticVerdict
    from dataflow.operators.conversations.composition_filter import CompositionVerdictReply
    from dataflow.operators.conversations.quality import QualityReply

    serving = client(fake_server.url, cache=False)
    for model, verdict in ((CompositionVerdictReply, "problem"), (QualityReply, "score")):
        serving.generate_from_input(["x"], json_schema=schema_for(model))
        props = sent_properties(fake_server.received[-1])
        assert props[-1] == verdict, (model.__name__, props)
        assert len(props) >= 2
    # The semantic judge gives no verdict: it writes what the query asks before its structured reading
    # of the values, and the checker compares that reading with the calls.
    serving.generate_from_input(["x"], json_schema=schema_for(SemanticVerdict))
    props = sent_properties(fake_server.received[-1])
    assert props[0] == "asked" and props[-1] == "question_values", props


def test_reordered_schema_is_a_cache_miss(fake_server, tmp_path):
    serving = client(fake_server.url, cache_dir=tmp_path)
    [first] = serving.generate_from_input(["same prompt"], json_schema=schema_for(VerdictFirst))
    [again] = serving.generate_from_input(["same prompt"], json_schema=schema_for(VerdictFirst))
    assert not first.cached and again.cached and fake_server.request_count == 1
    [reordered] = serving.generate_from_input(["same prompt"], json_schema=schema_for(ReasonFirst))
    assert not reordered.cached and fake_server.request_count == 2
    assert sent_properties(fake_server.received[-1])[0] == "zeta_reasoning"


def test_request_key_property_order_counts_other_key_order_does_not():
    msgs = [{"role": "user", "content": "hi"}]
    a = {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "boolean"}}}
    b = {"properties": {"x": {"type": "string"}, "y": {"type": "boolean"}}, "type": "object"}
    swapped = {"type": "object", "properties": {"y": {"type": "boolean"}, "x": {"type": "string"}}}
    nested = {"type": "object", "properties": {"o": {"type": "object", "properties": {"p": {}, "q": {}}}}}
    nested_swapped = {"type": "object", "properties": {"o": {"type": "object", "properties": {"q": {}, "p": {}}}}}
    assert request_key("m", msgs, 0.0, None, a) == request_key("m", msgs, 0.0, None, b)
    assert request_key("m", msgs, 0.0, None, a) != request_key("m", msgs, 0.0, None, swapped)
    assert request_key("m", msgs, 0.0, None, nested) != request_key("m", msgs, 0.0, None, nested_swapped)


def test_per_request_options_are_sent_and_keyed(fake_server, tmp_path):
    serving = client(fake_server.url, cache_dir=tmp_path, temperature=0.0)
    prompts = ["judge", "judge", "judge"]
    options = [None, {"temperature": 0.7, "seed": 1}, {"temperature": 0.7, "seed": 2}]
    results = serving.generate_from_input(prompts, json_schema=schema_for(ReasonFirst), options=options)
    assert fake_server.request_count == 3 and not any(r.cached for r in results)
    bodies = sorted(fake_server.received, key=lambda b: b.get("seed", 0))
    assert [(b["temperature"], b.get("seed")) for b in bodies] == [(0.0, None), (0.7, 1), (0.7, 2)]
    again = serving.generate_from_input(prompts, json_schema=schema_for(ReasonFirst), options=options)
    assert all(r.cached for r in again) and fake_server.request_count == 3


def test_options_length_must_match():
    serving = FakeLLMServing(lambda m, s: "x")
    with pytest.raises(ValueError):
        serving.generate_from_input(["a", "b"], options=[None])
    serving.generate_from_input(["a", "b"], options=[None, {"seed": 1}])
    assert serving.call_options == [None, {"seed": 1}]


# -- truncation ------------------------------------------------------------------------------------
CUT = '{"zeta_reasoning": "the the the the the the the'
CUT_WITH_INNER_OBJECT = '{"zeta_reasoning": "ok", "beta_evidence": {"alpha_verdict": true}, "more": "the the'


@pytest.mark.parametrize("text", [CUT, CUT_WITH_INNER_OBJECT])
def test_reply_cut_at_max_tokens_is_truncated_not_no_json(fake_server, tmp_path, text):
    fake_server.responder = lambda m, s: LLMResult(text=text, finish_reason="length")
    serving = client(fake_server.url, cache_dir=tmp_path, max_tokens=64)
    [result] = serving.generate_from_input(["judge"], json_schema=schema_for(ReasonFirst))
    assert result.ok and result.finish_reason == "length"
    parsed = parse_reply(result, ReasonFirst)
    assert parsed.reason.startswith("truncated: ") and "max_tokens" in parsed.reason
    assert "no JSON" not in parsed.reason
    # the cached reply is still known as cut
    [cached] = serving.generate_from_input(["judge"], json_schema=schema_for(ReasonFirst))
    assert cached.cached and parse_reply(cached, ReasonFirst).reason.startswith("truncated: ")


def test_empty_reply_at_max_tokens_is_truncated(fake_server):
    fake_server.responder = lambda m, s: LLMResult(text="", finish_reason="length")
    [result] = client(fake_server.url, cache=False).generate_from_input(["judge"])
    assert not result.ok
    assert parse_reply(result, ReasonFirst).reason.startswith("truncated: ")


def test_complete_reply_is_parsed_and_stop_is_recorded(fake_server):
    reply = {"zeta_reasoning": "r", "beta_evidence": "e", "alpha_verdict": True}
    fake_server.responder = lambda m, s: reply
    [result] = client(fake_server.url, cache=False).generate_from_input(["judge"])
    assert result.finish_reason == "stop"
    assert parse_reply(result, ReasonFirst).value == ReasonFirst(**reply)
    # a complete JSON reply that happens to end exactly at the limit is still data
    whole = LLMResult(text=json.dumps(reply), finish_reason="length")
    assert parse_reply(whole, ReasonFirst).ok


def test_cache_entry_keeps_finish_reason(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k", CachedResponse("{", 1, 2, "length"))
    cache.put("k2", CachedResponse("{}", 1, 2))
    assert cache.get("k").finish_reason == "length" and cache.get("k2").finish_reason is None


def test_fake_server_llmresult_failure_is_a_server_error(fake_server):
    fake_server.responder = lambda m, s: LLMResult.failure("model crashed")
    [result] = client(fake_server.url, cache=False, max_retries=0).generate_from_input(["x"])
    assert not result.ok and result.reason.startswith("HTTP 500") and "model crashed" in result.reason
