"""A rejected API key stops the batch at once with one clear ``ServingError`` (never the key),
instead of turning every row into an ``HTTP 401`` failure; a single row's 403 among successes
stays that row's failure. Real HTTP against the loopback fake server."""

from __future__ import annotations

import json
import time

import pytest

from dataflow.core.errors import ServingError
from dataflow.serving import APILLMServing_request
from dataflow.serving import FakeFault, FakeOpenAIServer

KEY = "sk-test-SECRET-1234567890"


def client(url, **kw) -> APILLMServing_request:
    kw.setdefault("model_name", "test-model")
    kw.setdefault("max_workers", 4)
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("timeout", 5)
    kw.setdefault("cache", False)
    return APILLMServing_request(api_url=url, **kw)


def reject(status: str = "401"):
    def responder(messages, schema):
        # like real APIs, the body echoes the key it was given
        raise FakeFault(status, f"Incorrect API key provided: {KEY}. You can find your API key at ...")
    return responder


@pytest.mark.parametrize("status", ["401", "403"])
def test_every_request_rejected_raises_quickly_naming_the_variable_not_the_key(fake_server, monkeypatch, status):
    monkeypatch.setenv("DF_API_KEY", KEY)
    fake_server.responder = reject(status)
    serving = client(fake_server.url)
    started = time.monotonic()
    with pytest.raises(ServingError) as info:
        serving.generate_from_input([f"q{i}" for i in range(200)])
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "rejected the API key from $DF_API_KEY" in message and f"HTTP {status}" in message
    assert fake_server.url in message and "\n" not in message
    assert KEY not in message and KEY not in repr(info.value)
    assert fake_server.request_count <= 2 * serving.max_workers + 3  # stopped after the first few, not 200
    # the key was sent (the header is how the server saw it), only never shown
    assert fake_server.received  # request bodies recorded; the key is in no body
    assert all(KEY not in json.dumps(body) for body in fake_server.received)


def test_no_key_set_says_none_was_sent(fake_server, no_api_key):
    fake_server.responder = reject("401")
    with pytest.raises(ServingError) as info:
        client(fake_server.url).generate_from_input(["a", "b", "c", "d"])
    message = str(info.value)
    assert "none was sent" in message and "$DF_API_KEY is not set" in message and "HTTP 401" in message


def test_custom_key_variable_is_named(fake_server, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    fake_server.responder = reject("401")
    with pytest.raises(ServingError, match=r"\$MY_LLM_KEY") as info:
        client(fake_server.url, key_name_of_api_key="MY_LLM_KEY").generate_from_input(["a", "b", "c"])
    assert KEY not in str(info.value)


def test_single_request_batch_rejected_raises(fake_server, monkeypatch):
    monkeypatch.setenv("DF_API_KEY", KEY)
    fake_server.responder = reject("401")
    with pytest.raises(ServingError, match="rejected the API key"):
        client(fake_server.url).generate_from_input(["only one"])
    assert fake_server.request_count == 1


def test_one_rows_403_among_successes_stays_a_row_failure(fake_server, monkeypatch):
    monkeypatch.setenv("DF_API_KEY", KEY)

    def responder(messages, schema):
        if messages[-1]["content"] == "q5":
            raise FakeFault("403", "this content is not allowed")
        return "fine"

    fake_server.responder = responder
    serving = client(fake_server.url)
    results = serving.generate_from_input([f"q{i}" for i in range(20)])
    assert [r.ok for r in results] == [i != 5 for i in range(20)]
    assert results[5].reason.startswith("HTTP 403") and results[5].text is None
    # the key is now known to be good: a later batch whose only request gets 403 is a row failure
    [again] = serving.generate_from_input(["q5"])
    assert not again.ok and again.reason.startswith("HTTP 403")


def test_failover_to_an_endpoint_that_accepts_the_key(monkeypatch):
    monkeypatch.setenv("BAD_KEY", "sk-bad-0000000000")
    monkeypatch.setenv("GOOD_KEY", KEY)
    with FakeOpenAIServer(responder=reject("401")) as bad, FakeOpenAIServer(responder=lambda m, s: "ok") as good:
        serving = client([bad.url, good.url], key_name_of_api_key=["BAD_KEY", "GOOD_KEY"])
        results = serving.generate_from_input([f"q{i}" for i in range(30)])
        assert all(r.ok and r.text == "ok" for r in results)
        assert good.request_count == 30
        assert bad.request_count <= serving.max_workers + 2


def test_every_endpoint_rejecting_raises(monkeypatch):
    monkeypatch.setenv("DF_API_KEY", KEY)
    with FakeOpenAIServer(responder=reject("401")) as one, FakeOpenAIServer(responder=reject("403")) as two:
        with pytest.raises(ServingError) as info:
            client([one.url, two.url]).generate_from_input([f"q{i}" for i in range(50)])
        message = str(info.value)
        assert one.url in message and two.url in message and KEY not in message
        assert one.request_count + two.request_count < 20


def test_operator_run_stops_before_writing_anything(fake_server, monkeypatch, tmp_path):
    from dataflow.operators.conversations import ScenarioExtractor
    from dataflow.utils.storage import FileStorage

    monkeypatch.setenv("DF_API_KEY", KEY)
    fake_server.responder = reject("401")
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"chat": f"USER: hello {i}"}) + "\n" for i in range(10)))
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"))
    serving = client(fake_server.url, cache=True)
    with pytest.raises(ServingError, match=r"\$DF_API_KEY"):
        ScenarioExtractor(llm_serving=serving).run(storage.step(), input_chat_key="chat")
    serving.close()
    cache = tmp_path / "cache"
    assert not list(cache.glob("dataflow_cache_step*"))  # no step file, no manifest, no rejected rows
    for path in cache.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes()
