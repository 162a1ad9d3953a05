"""APILLMServing_request over real HTTP against the loopback fake server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from pydantic import BaseModel

from dataflow.core.errors import ConfigError, ServingError
from dataflow.core.structured import parse_reply, schema_for
from dataflow.serving import APILLMServing_request
from dataflow.serving._wire import parse_retry_after
from dataflow.serving import FakeFault, FakeOpenAIServer

pytestmark = pytest.mark.usefixtures("no_api_key")


def client(url, **kw) -> APILLMServing_request:
    kw.setdefault("model_name", "test-model")
    kw.setdefault("max_workers", 8)
    kw.setdefault("backoff_base", 0.02)
    kw.setdefault("timeout", 5)
    kw.setdefault("cache", False)
    return APILLMServing_request(api_url=url, **kw)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1/chat/completions"


def last_user(messages) -> str:
    return messages[-1]["content"]


def assert_never_empty_failure(results):
    for r in results:
        if r.ok:
            assert isinstance(r.text, str)
        else:
            assert r.text is None and r.reason


def test_batch_in_order_with_usage(fake_server):
    fake_server.responder = lambda m, s: f"answer to {last_user(m)}"
    serving = client(fake_server.url)
    results = serving.generate_from_input([f"q{i}" for i in range(30)], system_prompt="sys")
    assert [r.text for r in results] == [f"answer to q{i}" for i in range(30)]
    assert all(r.ok and not r.cached and r.status == 200 for r in results)
    assert fake_server.request_count == 30
    body = fake_server.received[0]
    assert body["model"] == "test-model" and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    stats = serving.stats
    assert stats.succeeded == 30 and stats.requests_sent == 30 and stats.retries == 0
    assert stats.prompt_tokens == sum(r.prompt_tokens for r in results) > 0
    assert stats.completion_tokens == sum(r.completion_tokens for r in results) > 0


def test_empty_batch_makes_no_request(fake_server):
    assert client(fake_server.url).generate_from_input([]) == []
    assert fake_server.request_count == 0


def test_extra_body_and_conversations(fake_server):
    serving = client(fake_server.url, temperature=None, top_p=0.5, max_tokens=17)
    conv = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}]
    [result] = serving.generate_from_conversations([conv])
    assert result.ok
    body = fake_server.received[0]
    assert body["messages"] == conv
    assert body["top_p"] == 0.5 and body["max_tokens"] == 17 and "temperature" not in body


def test_retry_after_is_honoured(fake_server):
    calls: list[float] = []

    def responder(messages, schema):
        calls.append(time.monotonic())
        if len(calls) == 1:
            return FakeFault("429", retry_after=0.4)
        return "fine"

    fake_server.responder = responder
    serving = client(fake_server.url, max_workers=1, backoff_base=0.001)
    [result] = serving.generate_from_input(["x"])
    assert result.ok and result.text == "fine"
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.4
    assert serving.stats.retries == 1


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412500.0) == 0.0


def test_row_that_always_fails_is_a_failure_with_status(fake_server):
    fake_server.responder = lambda m, s: FakeFault("500", "kaput") if last_user(m) == "bad" else "ok " + last_user(m)
    serving = client(fake_server.url, max_retries=3)
    prompts = ["a", "b", "bad", "c", "d"]
    results = serving.generate_from_input(prompts)
    assert_never_empty_failure(results)
    bad = results[2]
    assert not bad.ok and bad.status == 500
    assert bad.reason == "HTTP 500: kaput"
    assert [r.text for i, r in enumerate(results) if i != 2] == ["ok a", "ok b", "ok c", "ok d"]
    sent = [last_user(b["messages"]) for b in fake_server.received]
    assert sent.count("bad") == 4  # first attempt + 3 retries
    assert serving.stats.failed == 1 and serving.stats.succeeded == 4


def test_other_4xx_not_retried(fake_server):
    fake_server.responder = lambda m, s: FakeFault("400", "context too long")
    serving = client(fake_server.url, max_retries=5)
    [result] = serving.generate_from_input(["x"])
    assert not result.ok and result.status == 400
    assert result.reason == "HTTP 400: context too long"
    assert fake_server.request_count == 1


def test_unreachable_server_fails_fast():
    url = dead_url()
    serving = client(url, max_workers=4, backoff_base=0.5, max_retries=10)
    start = time.monotonic()
    with pytest.raises(ServingError) as info:
        serving.generate_from_input([f"q{i}" for i in range(50)])
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert url in message and "running" in message


def test_unreachable_server_fails_fast_without_retries():
    with pytest.raises(ServingError):
        client(dead_url(), max_retries=0).generate_from_input(["q"])


def test_failover_to_live_endpoint(fake_server):
    serving = client([dead_url(), fake_server.url], max_workers=4, backoff_base=0.5)
    start = time.monotonic()
    results = serving.generate_from_input([f"q{i}" for i in range(20)])
    assert all(r.ok for r in results)
    assert fake_server.completed_count == 20
    assert time.monotonic() - start < 3


def test_load_balanced_and_failover_on_rate_limit(fake_server):
    with FakeOpenAIServer(fault_rate=1.0, faults=("429",), retry_after=30) as limited:
        serving = client([limited.url, fake_server.url], max_workers=4)
        start = time.monotonic()
        results = serving.generate_from_input([f"q{i}" for i in range(20)])
        assert all(r.ok for r in results)
        assert time.monotonic() - start < 5  # nobody waited the 30 s Retry-After
        assert limited.request_count >= 1
    with FakeOpenAIServer() as other:
        serving = client([other.url, fake_server.url], max_workers=4)
        assert all(r.ok for r in serving.generate_from_input([f"p{i}" for i in range(40)]))
        assert other.request_count >= 10 and fake_server.completed_count >= 30  # both used


def test_key_list_must_match_urls():
    with pytest.raises(ConfigError):
        APILLMServing_request(api_url=["http://a/v1/chat/completions", "http://b/v1/chat/completions"],
                              key_name_of_api_key=["K1", "K2", "K3"])
    with pytest.raises(ConfigError):
        APILLMServing_request(api_url="not a url")


class Weather(BaseModel):
    city: str
    celsius: float
    windy: bool


def test_json_schema_sent_as_response_format(fake_server):
    schema = schema_for(Weather)
    serving = client(fake_server.url)
    [result] = serving.generate_from_input(["weather?"], json_schema=schema)
    rf = fake_server.received[0]["response_format"]
    assert rf == {"type": "json_schema", "json_schema": {"name": "Weather", "schema": schema, "strict": True}}
    parsed = parse_reply(result, Weather)
    assert parsed.value == Weather(city="city", celsius=0, windy=False)


def test_api_key_sent_as_bearer_only_when_set(fake_server, monkeypatch):
    client(fake_server.url).generate_from_input(["no key"])
    monkeypatch.setenv("MY_TEST_KEY", "sk-test-SECRET-123")
    client(fake_server.url, key_name_of_api_key="MY_TEST_KEY").generate_from_input(["key"])
    first, second = fake_server.requests()
    assert "authorization" not in first["headers"]
    assert second["headers"]["authorization"] == fake_server.credential_tag("Bearer sk-test-SECRET-123")


def test_api_key_never_in_reasons_or_errors(fake_server, monkeypatch):
    key = "sk-test-LEAKCHECK-987"
    monkeypatch.setenv("DF_API_KEY", key)
    fake_server.responder = lambda m, s: FakeFault("401", f"invalid key {key}")
    serving = client(fake_server.url)
    with pytest.raises(ServingError) as info:  # every request rejected: the batch stops (test_bad_auth.py)
        serving.generate_from_input(["x"])
    assert key not in str(info.value) and "***" in str(info.value)
    fake_server.responder = lambda m, s: "ok" if m[-1]["content"] == "fine" else FakeFault("401", f"invalid key {key}")
    assert serving.generate_from_input(["fine"])[0].ok  # the key is accepted: a later 401 is a row failure
    [result] = serving.generate_from_input(["x"])
    assert not result.ok and key not in result.reason and "***" in result.reason
    assert key not in repr(serving)
    with pytest.raises(ServingError) as info:
        client(dead_url()).generate_from_input(["x"])
    assert key not in str(info.value)


def test_transient_faults_all_recovered():
    with FakeOpenAIServer(fault_rate=0.3, retry_after=0.02, hang_seconds=5, max_faults_per_request=3,
                          seed=3) as server:
        serving = client(server.url, timeout=0.5, max_retries=5, max_workers=16)
        results = serving.generate_from_input([f"q{i}" for i in range(150)])
        assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
        stats = server.stats()
        assert len(stats["faults"]) == 7  # every kind was injected at least once
        assert stats["completed"] == 150
        assert serving.stats.retries == sum(stats["faults"].values())


@pytest.mark.parametrize("kind,reason", [
    ("timeout", "timeout after 0.3s"),
    ("reset", "connection error: "),
    ("malformed", "malformed response: "),
    ("truncated", "malformed response: "),
    ("503", "HTTP 503: injected fault 503"),
])
def test_permanent_fault_reasons(kind, reason):
    with FakeOpenAIServer(fault_rate=1.0, faults=(kind,), hang_seconds=2) as server:
        serving = client(server.url, timeout=0.3, max_retries=1)
        [result] = serving.generate_from_input(["x"])
        assert not result.ok and result.reason.startswith(reason), result.reason
        assert server.request_count == 2


def test_works_inside_running_event_loop(fake_server):
    serving = client(fake_server.url)

    async def main():
        return serving.generate_from_input(["inside"])

    [result] = asyncio.run(main())
    assert result.ok


def test_works_from_worker_thread(fake_server):
    serving = client(fake_server.url)
    out = []
    thread = threading.Thread(target=lambda: out.extend(serving.generate_from_input(["t1", "t2"])))
    thread.start()
    thread.join(30)
    assert [r.ok for r in out] == [True, True]


def test_tool_calls_reply(fake_server):
    from dataflow.serving._wire import parse_reply as _parse_reply

    raw = json.dumps({"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}).encode()
    attempt = _parse_reply(raw)  # native tool calls are not read: a failure that says so, never "" as data
    assert not attempt.result.ok and "native tool_calls" in attempt.result.reason
    empty = _parse_reply(json.dumps({"choices": [{"message": {"content": None}, "finish_reason": "length"}]}).encode())
    assert not empty.result.ok and "finish_reason=length" in empty.result.reason
    blank = _parse_reply(json.dumps({"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}).encode())
    assert not blank.result.ok and blank.result.reason.startswith("empty reply")


def test_empty_reply_is_a_failure(fake_server):
    fake_server.responder = lambda m, s: ""
    [result] = client(fake_server.url).generate_from_input(["x"])
    assert not result.ok and result.text is None and result.reason == "empty reply (finish_reason=stop)"
    assert fake_server.request_count == 1


def _run_in_thread(fn):
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def test_server_restart_mid_batch_is_ridden_out():
    first = FakeOpenAIServer(latency=0.05).start()
    port = first.port
    serving = client(first.url, max_workers=4, max_retries=1, down_timeout=10)
    thread, out = _run_in_thread(lambda: serving.generate_from_input([f"q{i}" for i in range(60)]))
    time.sleep(0.3)
    first.stop()
    time.sleep(1.0)
    with FakeOpenAIServer(port=port, latency=0.05):
        thread.join(30)
    assert "error" not in out, out.get("error")
    assert all(r.ok for r in out["value"]), [r.reason for r in out["value"] if not r.ok][:3]


def test_server_gone_for_good_mid_batch_raises_serving_error():
    server = FakeOpenAIServer(latency=0.05).start()
    serving = client(server.url, max_workers=4, down_timeout=1.5)
    thread, out = _run_in_thread(lambda: serving.generate_from_input([f"q{i}" for i in range(200)]))
    time.sleep(0.3)
    server.stop()
    thread.join(15)
    assert not thread.is_alive()
    assert isinstance(out.get("error"), ServingError)
    assert "stopped accepting connections" in str(out["error"])


def test_endpoint_repr_hides_key(monkeypatch):
    monkeypatch.setenv("DF_API_KEY", "sk-test-REPR-555")
    endpoints, secrets = client("http://127.0.0.1:1/v1/chat/completions")._endpoints()
    assert endpoints[0].headers["Authorization"] == "Bearer sk-test-REPR-555"
    assert "sk-test-REPR-555" not in repr(endpoints[0])
