"""The loopback fake OpenAI server: endpoints, responders, faults, subprocess mode."""

from __future__ import annotations

import http.client
import json

import jsonschema
import pytest
from pydantic import BaseModel

from dataflow.core.structured import schema_for
from dataflow.serving import FakeFault, FakeOpenAIServer
from dataflow.serving._fake_openai.state import default_responder
from dataflow.serving.schema_instance import instance_for


def _post(server, body, timeout=5.0):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _get(server, path):
    """GET ``path``; the harness's ``/_...`` endpoints get the server's control token."""
    headers = {"X-Fake-Server-Token": server.control_token} if path.startswith("/_") else {}
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def test_chat_reply_is_deterministic_and_has_usage(fake_server):
    status, _, raw = _post(fake_server, BODY)
    assert status == 200
    data = json.loads(raw)
    content = data["choices"][0]["message"]["content"]
    assert content == default_responder(BODY["messages"], None)
    assert "hello" in content
    assert data["usage"]["prompt_tokens"] > 0 and data["usage"]["completion_tokens"] > 0
    assert fake_server.request_count == 1
    assert fake_server.completed_count == 1
    assert fake_server.received == [BODY]


def test_harness_endpoints(fake_server):
    assert _get(fake_server, "/health") == (200, {"status": "ok"})
    status, models = _get(fake_server, "/v1/models")
    assert status == 200 and models["data"][0]["id"] == "fake-model"
    _post(fake_server, BODY)
    status, stats = _get(fake_server, "/_stats")
    assert stats["requests"] == 1 and stats["completed"] == 1
    fake_server.reset()
    assert fake_server.request_count == 0 and fake_server.received == []


def test_url_properties(fake_server):
    assert fake_server.url == f"http://127.0.0.1:{fake_server.port}/v1/chat/completions"
    assert fake_server.base_url == f"http://127.0.0.1:{fake_server.port}/v1"


class Item(BaseModel):
    name: str
    count: int
    price: float
    ok: bool


class Answer(BaseModel):
    kind: str
    items: list[Item]
    best: Item | None = None


def test_schema_reply_validates(fake_server):
    schema = schema_for(Answer)
    body = dict(BODY, response_format={"type": "json_schema",
                                       "json_schema": {"name": "Answer", "schema": schema, "strict": True}})
    status, _, raw = _post(fake_server, body)
    assert status == 200
    value = json.loads(json.loads(raw)["choices"][0]["message"]["content"])
    jsonschema.validate(value, schema)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 5}, "b": {"enum": ["x", "y"]}},
     "required": ["a", "b"]},
    {"type": "array", "items": {"type": "integer", "minimum": 3}, "minItems": 2},
    {"type": ["null", "number"], "exclusiveMinimum": 1},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
               {"properties": {"b": {"const": 7}}, "required": ["b"]}]},
    {"$defs": {"T": {"type": "object", "properties": {"t": {"type": "string"}}, "required": ["t"]}},
     "type": "object", "properties": {"x": {"$ref": "#/$defs/T"}, "y": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/T"}]}},
     "required": ["x", "y"]},
])
def test_schema_instance(schema):
    jsonschema.validate(instance_for(schema), schema)


def test_responder_and_permanent_fault(fake_server):
    def responder(messages, schema):
        text = messages[-1]["content"]
        if text == "bad":
            return FakeFault("503", "always down for this one")
        if text == "raise":
            raise FakeFault("400", "no such thing")
        if text == "boom":
            raise RuntimeError("oops")
        return {"echo": text}

    fake_server.responder = responder
    ok = _post(fake_server, BODY)
    assert ok[0] == 200 and json.loads(json.loads(ok[2])["choices"][0]["message"]["content"]) == {"echo": "hello"}
    for text, status in (("bad", 503), ("raise", 400), ("boom", 500)):
        got = _post(fake_server, {"messages": [{"role": "user", "content": text}]})
        assert got[0] == status
    assert b"always down" in _post(fake_server, {"messages": [{"role": "user", "content": "bad"}]})[2]
    assert fake_server.stats()["statuses"] == {"200": 1, "503": 2, "400": 1, "500": 1}


def test_invalid_request_is_400(fake_server):
    assert _post(fake_server, {"nope": 1})[0] == 400


@pytest.mark.parametrize("kind", ["429", "500", "503", "malformed", "truncated", "reset", "timeout"])
def test_each_fault(kind):
    with FakeOpenAIServer(fault_rate=1.0, faults=(kind,), retry_after=2, hang_seconds=0.3) as server:
        if kind in ("reset", "timeout"):
            with pytest.raises((ConnectionError, http.client.HTTPException)):
                _post(server, BODY)
        else:
            status, headers, raw = _post(server, BODY)
            if kind.isdigit():
                assert status == int(kind)
                if kind == "429":
                    assert headers["Retry-After"] == "2"
            else:
                assert status == 200
                with pytest.raises(ValueError):
                    json.loads(raw)
        assert server.stats()["faults"] == {kind: 1}


def test_faults_deterministic_by_seed_and_capped():
    bodies = [{"messages": [{"role": "user", "content": f"q{i}"}]} for i in range(60)]

    def statuses(seed, cap=None):
        with FakeOpenAIServer(fault_rate=0.5, faults=("500", "429"), seed=seed,
                              max_faults_per_request=cap) as server:
            first = [_post(server, b)[0] for b in bodies]
            second = [_post(server, b)[0] for b in bodies]
            return first, second

    a, b = statuses(1), statuses(1)
    assert a == b
    assert statuses(2) != a
    assert 10 < sum(s != 200 for s in a[0]) < 50
    first, second = statuses(1, cap=1)
    assert all(s2 == 200 for s1, s2 in zip(first, second) if s1 != 200)


def test_unknown_fault_kind_rejected():
    with pytest.raises(ValueError, match="unknown fault"):
        FakeOpenAIServer(faults=("explode",))


def test_subprocess_mode():
    with FakeOpenAIServer(in_process=False, responder="tests.test_fake_server:upper_responder") as server:
        assert server.pid is not None
        status, _, raw = _post(server, BODY)
        assert status == 200
        assert json.loads(raw)["choices"][0]["message"]["content"] == "HELLO"
        assert server.request_count == 1
        assert server.received == [BODY]
        assert server.requests(completed_only=True)[0]["completed"] is True
        server.fault_rate = 1.0
        server.faults = ("500",)
        assert _post(server, BODY)[0] == 500
        server.reset()
        assert server.stats()["requests"] == 0


def test_subprocess_responder_is_fixed_at_start():
    with FakeOpenAIServer(in_process=False, responder="tests.test_fake_server:upper_responder") as server:
        with pytest.raises(ValueError, match="chosen when it starts"):
            server.responder = "tests.test_fake_server:upper_responder"
        assert json.loads(_post(server, BODY)[2])["choices"][0]["message"]["content"] == "HELLO"


def test_runtime_options_are_checked(fake_server):
    for key, value in (("latency", -1), ("latency", "slow"), ("fault_rate", 2), ("record", "yes"),
                       ("seed", 1.5), ("max_faults_per_request", -1), ("faults", ["explode"])):
        with pytest.raises(ValueError):
            fake_server.configure(**{key: value})
    fake_server.configure(latency=0.01, fault_rate=0.5, seed=3, record=False, max_faults_per_request=None)
    assert fake_server.latency == 0.01 and fake_server.record is False


def test_subprocess_rejects_unimportable_responder():
    with pytest.raises(ValueError, match="module:function"):
        FakeOpenAIServer(in_process=False, responder=lambda m, s: "x")


def upper_responder(messages, json_schema):
    return messages[-1]["content"].upper()


def test_cli_prints_a_control_token_that_the_control_endpoint_requires():
    import os
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-c", "from dataflow.cli.main import main; main()", "fake-server",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        url = proc.stdout.readline().split("listening: ")[1].split()[0]
        token = proc.stdout.readline().split("control token: ")[1].strip()
        base = url.split("/v1/")[0]

        def config(headers):
            req = urllib.request.Request(f"{base}/_config", data=b'{"latency": 0.01}', method="POST",
                                         headers={"Content-Type": "application/json", **headers})
            try:
                return urllib.request.urlopen(req, timeout=5).status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert config({}) == 401
        assert config({"X-Fake-Server-Token": token}) == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_test_kit_has_one_import_path():
    """The fakes are public from ``dataflow.serving`` only: their modules are private, and the old
    public module ``dataflow.serving.fake_server`` (a second path and a second command line) is gone."""
    import importlib

    import dataflow.serving as serving

    for name in ("FakeOpenAIServer", "FakeFault", "FakeLLMServing"):
        obj = getattr(serving, name)
        assert name in serving.__all__
        assert any(part.startswith("_") for part in obj.__module__.split(".")[2:]), obj.__module__
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("dataflow.serving.fake_server")
