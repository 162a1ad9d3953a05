"""Security checks.

(a) The API key from the environment never reaches a cache file (SQLite incl. WAL), manifest, step
    file, log line, stdout/stderr or exception message: successful, rejected-key and
    unreachable-server runs, grepping everything written.
    A key with a line break is a ``ConfigError``; an echoed key is redacted before clipping;
    credentials in the API URL are never shown.
(b) The execution checker's worker cannot crash or hang the pipeline, and what it writes through
    the library's own arguments (working folder, temp folder) stays in its temporary folder. A
    hostile tool finds no secret: allow-listed environment, non-dumpable parent, tool specs
    derived inside the worker.
(c) User prompt templates render in Jinja2's sandbox: reaching Python internals is a clear
    ``PromptRenderError`` (via ``prompt_template=`` and via ``DF_PROMPTS_DIR``), before any LLM call.
(d) The fake server runs no code on request: token-guarded, loopback-only control endpoints that
    set inert options only; its request log keeps no credentials.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dataflow.core.errors import ConfigError, PromptRenderError, ServingError
from dataflow.serving import APILLMServing_request, FakeLLMServing
from dataflow.serving.fake_responders import button_responder
from dataflow.serving import FakeFault, FakeOpenAIServer
from dataflow.utils.storage import FileStorage

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-SECRET-1234567890"
KEY_BYTES = KEY.encode()
CHAT = ROOT / "example_data" / "FuncCallPipeline" / "chat_data.jsonl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_holding_key(folder: Path) -> list[str]:
    """Every file under ``folder`` whose bytes hold the key (plain, or UTF-16 as some tools write)."""
    needles = (KEY_BYTES, KEY.encode("utf-16-le"))
    return [str(p) for p in folder.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


# == (a) the API key ================================================================================
def run_script(cwd: Path, url: str, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DF_API_URL=url, DF_MODEL="fake-model", DF_API_KEY=KEY,
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("DF_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "api_pipelines" / "func_call_synthesis.py"), "--rows", "2",
         "--cache-dir", str(cache), *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
    )


@pytest.mark.timeout(300)
def test_key_never_written_by_a_pipeline_run_rejected_or_unreachable(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cache = work / "cache"
    outputs: list[str] = []

    # 1. a successful run: the key is sent (the server saw it) and written nowhere
    with FakeOpenAIServer(responder="dataflow.serving.fake_responders:button_responder") as server:
        ok = run_script(work, server.url, cache, "--evaluate")
        assert ok.returncode == 0, ok.stderr[-2000:]
        assert server.request_count > 0
        headers = [r["headers"] for r in server.requests()]
        key_tag = server.credential_tag(f"Bearer {KEY}")
    outputs += [ok.stdout, ok.stderr]
    assert list(cache.glob("dataflow_cache_step*.manifest.json")) and list(cache.glob("llm_responses.sqlite*"))

    # 2. the endpoint rejects the key (and echoes it, as real APIs do): one error line, no key
    def reject(messages, schema):
        raise FakeFault("401", f"Incorrect API key provided: {KEY}")

    with FakeOpenAIServer(responder=reject) as server:
        rejected = run_script(work, server.url, work / "cache_rejected")
    assert rejected.returncode == 1
    assert "rejected the API key from $DF_API_KEY" in rejected.stderr and "Traceback" not in rejected.stderr
    outputs += [rejected.stdout, rejected.stderr]

    # 3. nothing listens at the URL
    dead = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    unreachable = run_script(work, dead, work / "cache_dead")
    assert unreachable.returncode == 1 and "cannot reach the LLM server" in unreachable.stderr
    outputs += [unreachable.stdout, unreachable.stderr]

    assert files_holding_key(work) == []
    for text in outputs:
        assert KEY not in text
    # the key was in use (the server's log holds a keyed digest of it, never the key)
    assert headers and all(h.get("authorization") == key_tag for h in headers)


def test_key_absent_from_cache_manifest_logs_and_errors_in_process(tmp_path, monkeypatch, caplog, capsys):
    from dataflow.operators.conversations import ScenarioExpander, ScenarioExtractor

    monkeypatch.setenv("DF_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    messages: list[str] = []
    with FakeOpenAIServer(responder=button_responder) as server:
        serving = APILLMServing_request(api_url=server.url, model_name="fake", max_workers=4, backoff_base=0.01)
        storage = FileStorage(str(CHAT), cache_path=str(cache))
        ScenarioExtractor(llm_serving=serving).run(storage.step(), input_chat_key="chat")
        # the server starts failing mid-pipeline with a body that quotes the key
        server.responder = lambda m, s: FakeFault("500", f"upstream said: bad key {KEY}")
        report = ScenarioExpander(llm_serving=serving).run(storage.step(), input_scenario_key="scenario")
        messages += [json.dumps(report.as_dict())]
        assert report.failed and all(KEY not in r for r in report.failed_by_reason)
        messages += [repr(serving), str(serving.__dict__)]
        serving.close()
    with pytest.raises(ServingError) as info:  # now nothing listens
        APILLMServing_request(api_url=server.url, model_name="fake", cache=False,
                              connect_timeout=0.5).generate_from_input(["x"])
    messages += [str(info.value), repr(info.value)]
    captured = capsys.readouterr()
    messages += [captured.out, captured.err, caplog.text]
    for text in messages:
        assert KEY not in text
    assert files_holding_key(tmp_path) == []
    rejected = list(cache.glob("*.rejected.jsonl"))
    assert rejected and "***" in rejected[0].read_text()  # the echoed key was redacted, not dropped silently


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", ["\r\n", "\n", "\r", "\x7f"])
def test_key_with_a_line_break_is_a_config_error_not_a_hang(fake_server, monkeypatch, ending):
    monkeypatch.setenv("DF_API_KEY", KEY + ending)  # a key file written on Windows
    serving = APILLMServing_request(api_url=fake_server.url, model_name="fake", cache=False, max_retries=0)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        serving.generate_from_input(["hello"])
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "$DF_API_KEY" in message and "HTTP header" in message and KEY not in message
    assert fake_server.request_count == 0


def test_key_echoed_in_a_long_error_is_redacted_before_it_is_clipped(fake_server, monkeypatch):
    monkeypatch.setenv("DF_API_KEY", KEY)
    reasons = []
    for pad in range(180, 205, 3):  # the key straddles the 200-character clip at some of these
        fake_server.responder = lambda m, s, pad=pad: FakeFault("400", "x" * pad + f" bad key {KEY} " + "y" * 50)
        serving = APILLMServing_request(api_url=fake_server.url, model_name="fake", cache=False, max_retries=0)
        [result] = serving.generate_from_input(["hello"])
        assert not result.ok
        reasons.append(result.reason)
    for reason in reasons:
        assert KEY[:6] not in reason and "SECRET" not in reason, reason
    assert any("***" in r for r in reasons)
    # a 401 that echoes the key ends the batch with a ServingError: the same holds there
    fake_server.responder = lambda m, s: FakeFault("401", "z" * 190 + f" Incorrect API key provided: {KEY}")
    with pytest.raises(ServingError) as info:
        APILLMServing_request(api_url=fake_server.url, model_name="fake", cache=False).generate_from_input(["a", "b", "c"])
    assert KEY[:6] not in str(info.value) and "SECRET" not in str(info.value)


PASSWORD = "pa55-URL-SECRET-word"


def test_credentials_in_the_api_url_are_redacted_everywhere(fake_server, monkeypatch, capsys):
    import base64

    from dataflow.serving import serving_from_env

    monkeypatch.delenv("DF_API_KEY", raising=False)
    url = fake_server.url.replace("http://", f"http://alice:{PASSWORD}@")
    monkeypatch.setenv("DF_API_URL", url)
    monkeypatch.setenv("DF_MODEL", "fake-model")
    serving = serving_from_env(cache=False)
    shown = [repr(serving), capsys.readouterr().err]
    assert "***@127.0.0.1" in shown[0] and "alice" not in shown[0]
    [result] = serving.generate_from_input(["hello"])
    assert result.ok, result.reason
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert fake_server.requests()[0]["headers"]["authorization"] == fake_server.credential_tag(f"Basic {basic}")

    # the endpoint rejects them: the error names the URL without them
    fake_server.responder = lambda m, s: FakeFault("401", f"user alice:{PASSWORD} unknown")
    rejected = APILLMServing_request(api_url=url, model_name="fake", cache=False)
    with pytest.raises(ServingError) as info:
        rejected.generate_from_input(["x", "y", "z"])
    shown += [str(info.value), repr(info.value)]
    # nothing listens: the connection error names the URL without them
    dead = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}/v1/chat/completions"
    client = APILLMServing_request(api_url=dead, model_name="fake", cache=False, connect_timeout=0.5)
    with pytest.raises(ServingError) as info:
        client.generate_from_input(["x"])
    shown += [str(info.value), repr(info.value), repr(client)]
    # a key as well as URL credentials: one of them must go
    monkeypatch.setenv("DF_API_KEY", KEY)
    with pytest.raises(ConfigError) as info:
        APILLMServing_request(api_url=url, model_name="fake", cache=False).generate_from_input(["x"])
    shown += [str(info.value)]
    shown.append(capsys.readouterr().err)
    for text in shown:
        assert PASSWORD not in text and basic not in text and KEY not in text, text


def test_sandbox_worker_does_not_inherit_the_key(tmp_path, monkeypatch):
    from dataflow.operators.apigen.execution import Sandbox

    module = tmp_path / "tools.py"
    module.write_text("import os\n\ndef env() -> dict:\n    return {k: v for k, v in os.environ.items()}\n")
    secrets = {name: f"{KEY}-{name}" for name in SECRET_NAMES}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DF_HARMLESS_LOOKING", KEY)  # an allow-list, not a deny-list: unknown names stay out
    with Sandbox(module, max_result_chars=100_000) as sandbox:
        env = sandbox.call("env", {})["result"]
    assert KEY not in json.dumps(env)
    assert set(env) <= {"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "TEMP", "TMP",
                        "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"} | {k for k in env if k.startswith("LC_")}
    assert env["HOME"] == env["TMPDIR"] and Path(env["HOME"]).name.startswith("dataflow_sandbox_")


SECRET_NAMES = ("DF_API_KEY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DATABASE_PASSWORD", "MY_SERVICE_TOKEN", "API_KEY")

STEALING_TOOLS = """
import os


def ancestors() -> list:
    pids, pid = [], os.getppid()
    while pid > 1:
        pids.append(pid)
        with open(f"/proc/{pid}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])
    return pids


def steal(pids: list = ()) -> dict:
    \"\"\"Everything a hostile tool can find of the pipeline's secrets, in every ancestor process it
    can see and in the processes it was told of (the pipeline's, as a guess would find them).\"\"\"
    out = {"env": dict(os.environ), "mem": [], "parent_environ_error": [], "parent_mem_error": []}
    for ppid in dict.fromkeys([*ancestors(), *pids]):
        read_process(ppid, out)
    return out


def read_process(ppid: int, out: dict) -> None:
    try:
        with open(f"/proc/{ppid}/environ", "rb") as fh:
            out["parent_environ"] = out.get("parent_environ", "") + fh.read().decode("latin-1")
    except OSError as exc:
        out["parent_environ_error"].append(type(exc).__name__)
    try:
        with open(f"/proc/{ppid}/maps") as fh:
            maps = fh.read().splitlines()
        with open(f"/proc/{ppid}/mem", "rb") as mem:
            for line in maps:
                span, perms = line.split()[:2]
                low, high = (int(x, 16) for x in span.split("-"))
                if "r" not in perms or high - low > (64 << 20):
                    continue
                try:
                    mem.seek(low)
                    chunk = mem.read(high - low)
                except (OSError, OverflowError, ValueError):
                    continue
                for marker in (b"sk-runtime-", b"MY_SERVICE_TOKEN="):
                    at = chunk.find(marker)
                    if at >= 0:
                        out["mem"].append(chunk[at:at + 80].decode("latin-1"))
    except OSError as exc:
        out["parent_mem_error"].append(type(exc).__name__)
"""

PIPELINE_WITH_SECRETS = """
import json, os, sys
from dataflow.operators.apigen import ExecutionChecker
from dataflow.utils.storage import FileStorage

if sys.argv[4] == "capless":  # root without capabilities: what an ordinary user's pipeline is
    from dataflow.operators.apigen._sandbox_worker import _drop_privileges
    _drop_privileges()
held_in_memory = "sk-runtime-" + "SECRET-held-in-a-variable"
os.environ["RUNTIME_KEY"] = "sk-runtime-" + "SECRET-set-at-run-time"
with open(sys.argv[2], "w") as fh:  # the tool is told where the pipeline and the test runner are
    fh.write(json.dumps({"answers": [{"name": "steal", "arguments": {"pids": [os.getpid(), os.getppid()]}}]}) + "\\n")
storage = FileStorage(sys.argv[2], cache_path=sys.argv[3])
report = ExecutionChecker(module_path=sys.argv[1], timeout=60, memory_mb=2048, max_result_chars=10**7,
                          keep_failed=True).run(storage.step(), input_answers_key="answers")
print(json.dumps({"output": report.output_file, "held": len(held_in_memory)}))
"""


@pytest.mark.timeout(180)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("parent", ["as_started", "capless"])
def test_tool_cannot_read_the_pipeline_process_environment_or_memory(tmp_path, parent):
    """The attack of issue 12: a tool reads /proc/<parent>/environ and scans /proc/<parent>/mem
    for keys. Secrets given at start, set at run time and held in a variable all stay out.
    ``capless``: the pipeline runs without capabilities, as an ordinary user's does (under root,
    a worker is kept out by dropping its capabilities; for a same-uid, capless parent only the
    parent's PR_SET_DUMPABLE 0 keeps it out)."""
    tools = tmp_path / "tools.py"
    tools.write_text(STEALING_TOOLS)
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(call_row("steal")) + "\n")
    secrets = {name: f"sk-{name.lower()}-SECRET-{i}" for i, name in enumerate(SECRET_NAMES)}
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **secrets)
    run = subprocess.run([sys.executable, "-c", PIPELINE_WITH_SECRETS, str(tools), str(data), str(tmp_path / "cache"),
                          parent],
                         env=env, capture_output=True, text=True, timeout=170)
    assert run.returncode == 0, run.stderr[-3000:]
    step_file = Path(json.loads(run.stdout.splitlines()[-1])["output"])
    [row] = [json.loads(line) for line in step_file.read_text().splitlines()]
    [result] = row["execution_results"]
    assert result["ok"], result
    stolen = result["result"]
    # the worker's ancestors up to the pipeline process (and the test runner above it): closed
    # (PermissionError), or not even visible from the worker's PID namespace (FileNotFoundError)
    assert len(stolen["parent_environ_error"]) >= 2
    assert "parent_environ" not in stolen
    assert set(stolen["parent_environ_error"]) <= {"PermissionError", "FileNotFoundError"}
    assert set(stolen["parent_mem_error"]) <= {"PermissionError", "FileNotFoundError"} and stolen["mem"] == []
    written = step_file.read_text() + run.stdout + run.stderr
    for value in [*secrets.values(), "SECRET-held-in-a-variable", "SECRET-set-at-run-time"]:
        assert value not in written, value
    assert files_holding(tmp_path, secrets.values()) == []


def files_holding(folder: Path, values) -> list[str]:
    needles = [v.encode() for v in values]
    return [str(p) for p in folder.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


IMPORT_MARKER_TOOLS = """
import os

try:  # runs on import: records which process imported the module (Landlock refuses it in the sandbox)
    with open({marker!r}, "a") as fh:
        fh.write(f"{{os.getpid()}}\\n")
except PermissionError:
    pass


def add(a: int, b: int = 1) -> int:
    \"\"\"Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    \"\"\"
    return a + b
"""


FORGING_TOOLS = """
import os


def add(a: int, b: int) -> int:
    return a + b


def _pipes() -> list:
    \"\"\"Every pipe this process may write to (what a tool can find without knowing the protocol).\"\"\"
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("pipe:") and int(name) != 0:
                found.append(int(name))
        except OSError:
            pass
    return found


def forge(kind: str) -> str:
    lines = {
        "extra_line": b"".join(b'{"id": %d, "ok": true, "result": "FORGED", "truncated": false}\\n' % i
                               for i in range(1, 40)),
        "bare": b"123\\n",
        "huge": b'{"ok": true, "result": "' + b"A" * (20 << 20) + b'"}\\n',
        "no_newline": b'{"ok": true, "result": "' + b"B" * (4 << 20),
    }
    for fd in _pipes():
        try:
            os.write(fd, lines[kind])
        except OSError:
            pass
    return "returned"


def huge_error() -> int:
    class Boom(Exception):
        pass

    Boom.__name__ = "E" * (20 << 20)
    raise Boom("x" * (20 << 20))
"""


@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the pipes in /proc/self/fd")
def test_tool_cannot_forge_the_worker_protocol(tmp_path):
    """Issue 12 item 4: a tool writes extra replies (guessing ids), a bare number, a 20 MB reply,
    a reply without a line end, and raises an exception with a 20 MB name. Every other row still
    gets its own result, nothing crashes, and the step file stays small."""
    from dataflow.operators.apigen import ExecutionChecker

    module = tmp_path / "tools.py"
    module.write_text(FORGING_TOOLS)
    rows = []
    for i, kind in enumerate(["extra_line", "bare", "huge", "no_newline", None, "extra_line"]):
        rows.append(call_row("add", a=i, b=10))
        rows.append(call_row("forge", kind=kind) if kind else call_row("huge_error"))
    rows.append(call_row("add", a=100, b=1))
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"))
    started = time.monotonic()
    report = ExecutionChecker(module_path=module, timeout=10, memory_mb=1024, max_result_chars=2000,
                              keep_failed=True).run(storage.step(), input_answers_key="answers")
    assert time.monotonic() - started < 90
    assert report.kept == len(rows)
    results = [row["execution_results"][0] for row in _step(tmp_path, data).read("dict")]
    adds = [r for r, row in zip(results, rows) if row["query"] == "add"]
    assert adds == [{"name": "add", "ok": True, "result": i + 10} for i in range(6)] + \
        [{"name": "add", "ok": True, "result": 101}]  # no shifted or forged result
    others = [r for r, row in zip(results, rows) if row["query"] != "add"]
    for result in others:  # a forging call gets its own result or a protocol error, never a crash
        assert result["ok"] is False or result["result"] in ("returned", "FORGED"), result
        assert len(json.dumps(result)) < 3000
    assert "E" * 1000 not in json.dumps(others)
    assert Path(report.output_file).stat().st_size < 50_000


def imported_by(marker: Path) -> list[str]:
    """The pids that recorded importing the module (none when Landlock kept the worker from writing)."""
    return marker.read_text().split() if marker.exists() else []


def test_tool_specs_are_derived_without_importing_the_module_here(tmp_path):
    from dataflow.operators.apigen import ExecutionChecker, FormatChecker

    marker = tmp_path / "imported_by.txt"
    tools = tmp_path / "tools.py"
    tools.write_text(IMPORT_MARKER_TOOLS.format(marker=str(marker)))
    [spec] = ExecutionChecker(module_path=tools).tool_specs()
    assert spec["function"]["name"] == "add" and spec["function"]["description"] == "Add two numbers."
    assert spec["function"]["parameters"]["required"] == ["a"]
    FormatChecker(tools=str(tools))
    assert str(os.getpid()) not in imported_by(marker)

    # the CLI: verify with the module as both the tool definitions and the execution stage
    rows = tmp_path / "generated.jsonl"
    rows.write_text(json.dumps({"query": "add 2 and 3", "answers": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}) + "\n")
    marker.unlink(missing_ok=True)
    cli = subprocess.Popen(
        [sys.executable, "-c", "from dataflow.cli.main import main; main()", "apigen", "verify",
         "--generated-query-answer-path", str(rows), "--function-definitions-path", str(tools),
         "--verified-query-answer-path", str(tmp_path / "verified.jsonl"), "--tools-module", str(tools),
         "--no-semantic"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err[-2000:]
    assert str(cli.pid) not in imported_by(marker)
    [verified] = [json.loads(line) for line in (tmp_path / "verified.jsonl").read_text().splitlines()]
    assert verified["execution_results"] == [{"name": "add", "ok": True, "result": 5}]


def test_the_pipeline_process_is_not_dumpable_once_a_worker_runs(tmp_path):
    from dataflow.operators.apigen.execution import Sandbox

    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_DUMPABLE is Linux only")
    module = tmp_path / "tools.py"
    module.write_text("def one() -> int:\n    return 1\n")
    with Sandbox(module) as sandbox:
        assert sandbox.call("one", {})["result"] == 1
    import ctypes

    assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0  # PR_GET_DUMPABLE


# == (d) the fake server's control endpoints =========================================================
def control(server, method: str, path: str, body: bytes | None = None, *, token: str | None = "own",
            headers: dict | None = None) -> tuple[int, bytes]:
    """One raw HTTP request to the server; ``token="own"`` sends the server's control token."""
    import http.client

    sent = {"Content-Type": "application/json"}
    if token == "own":
        token = server.control_token
    if token is not None:
        sent["X-Fake-Server-Token"] = token
    sent.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


EVIL_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")   # code that runs on import

def respond(messages, json_schema):
    pathlib.Path({marker!r}).write_text("called")
    return "pwned"
"""


def test_fake_server_config_cannot_load_code(tmp_path, monkeypatch):
    marker = tmp_path / "ran.txt"
    name = f"df_evil_responder_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    attack = json.dumps({"responder": f"{name}:respond"}).encode()
    chat = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    with FakeOpenAIServer() as server:
        status, _ = control(server, "POST", "/_config", attack, token=None)
        assert status == 401
        status, body = control(server, "POST", "/_config", attack)  # even with the token
        assert status == 400 and b"responder" in body
        status, body = control(server, "POST", "/v1/chat/completions", chat, token=None)
        assert status == 200 and b"pwned" not in body
    assert not marker.exists()
    assert "responder" not in __import__("dataflow.serving._fake_openai.state", fromlist=["x"]).HTTP_CONFIG_KEYS


def test_fake_server_control_needs_token_loopback_host_and_json(tmp_path):
    with FakeOpenAIServer() as server:
        latency = json.dumps({"latency": 5}).encode()
        port = server.port
        refused = [
            ("POST", "/_config", latency, dict(token=None)),
            ("POST", "/_config", latency, dict(token="wrong-token")),
            ("POST", "/_config", latency, dict(headers={"Host": f"attacker.example:{port}"})),  # DNS rebinding
            ("POST", "/_config", latency, dict(headers={"Origin": "http://attacker.example"})),
            ("POST", "/_config", latency, dict(headers={"Origin": "null"})),
            ("POST", "/_config", latency, dict(headers={"Content-Type": "text/plain"})),  # a "simple" CORS request
            ("POST", "/_reset", b"{}", dict(token=None)),
            ("GET", "/_requests?full=1", None, dict(token=None)),
            ("GET", "/_stats", None, dict(headers={"Host": "10.0.0.1"})),
        ]
        for method, path, body, kw in refused:
            status, _ = control(server, method, path, body, **kw)
            assert status in (401, 403, 415), (path, kw, status)
        assert server.latency == 0.0 and server.stats()["requests"] == 0
        # the owner, with the token, from loopback
        assert control(server, "POST", "/_config", latency.replace(b"5", b"0.01"),
                       headers={"Origin": f"http://localhost:{port}"})[0] == 200
        assert server.stats()  # the Python API sends the token itself
        # only declared, checked, inert settings
        assert control(server, "POST", "/_config", b'{"latency": "forever"}')[0] == 400
        assert control(server, "POST", "/_config", b'{"hang_seconds": 1e9}')[0] == 400
        assert control(server, "POST", "/_config", b'[1, 2]')[0] == 400


def test_fake_server_request_log_keeps_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("DF_API_KEY", KEY)
    for in_process in (True, False):
        with FakeOpenAIServer(in_process=in_process) as server:
            serving = APILLMServing_request(api_url=server.url, model_name="fake", cache=False)
            assert serving.generate_from_input(["hello"])[0].ok
            serving.close()
            control(server, "POST", "/v1/chat/completions",
                    json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), token=None,
                    headers={"X-Api-Key": KEY, "Cookie": f"session={KEY}", "Proxy-Authorization": KEY})
            status, raw = control(server, "GET", "/_requests?full=1")
            assert status == 200 and KEY_BYTES not in raw
            records = server.requests()
            assert KEY not in json.dumps(records)
            assert records[0]["headers"]["authorization"] == server.credential_tag(f"Bearer {KEY}")
            assert all(h not in records[1]["headers"] or "redacted" in records[1]["headers"][h]
                       for h in ("x-api-key", "cookie", "proxy-authorization"))
            if not in_process:  # the subprocess got its token through its environment, not argv
                cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
                assert server.control_token.encode() not in cmdline


SYSTEM_PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), None)


def run_as_nobody(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` (stdlib only) as uid/gid 65534 with the system Python: another local user."""
    return subprocess.run([SYSTEM_PYTHON, "-I", "-c", code, *args], capture_output=True, text=True,
                          timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"},
                          preexec_fn=lambda: (os.setgroups([]), os.setgid(65534), os.setuid(65534)))


cross_user = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or SYSTEM_PYTHON is None,
    reason="a cross-user attack needs root (to become uid 65534) and a system python3 that uid can run",
)

NOBODY_CONTROL_ATTACK = """
import json, sys, urllib.request, urllib.error
pid, port = int(sys.argv[1]), int(sys.argv[2])
found = []
for name in ("cmdline", "environ"):
    try:
        found.append(open(f"/proc/{pid}/{name}", "rb").read())
    except OSError:
        pass
req = urllib.request.Request(f"http://127.0.0.1:{port}/_config", data=json.dumps({"latency": 9}).encode(),
                             headers={"Content-Type": "application/json"}, method="POST")
try:
    status = urllib.request.urlopen(req, timeout=5).status
except urllib.error.HTTPError as exc:
    status = exc.code
print(json.dumps({"status": status, "read": b"".join(found).decode("latin-1")}))
"""


@cross_user
def test_fake_server_control_refused_to_another_user():
    """Another local user reaches the port but finds no token (not in argv; the server's
    environment is readable by its owner only) and gets nothing from the control endpoint."""
    with FakeOpenAIServer(in_process=False) as server:
        out = run_as_nobody(NOBODY_CONTROL_ATTACK, str(server.pid), str(server.port))
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        assert seen["status"] == 401
        assert server.control_token not in seen["read"]


# == (b) the execution checker's worker ==============================================================
HOSTILE = '''
import os, signal, subprocess, sys, tempfile, time

def add(a: int, b: int) -> int:
    return a + b

def loop() -> int:
    while True:
        pass

def hard_exit() -> int:
    os._exit(3)

def kill_self() -> int:
    os.kill(os.getpid(), signal.SIGKILL)

def memory_bomb() -> int:
    blocks = []
    while True:
        blocks.append(bytearray(50 * 1024 * 1024))

def close_pipes() -> int:
    os.close(0)
    os.close(1)
    time.sleep(60)

def orphan_then_hang(token: str) -> int:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", token])
    while True:
        time.sleep(1)

def write_relative(name: str) -> str:
    with open(name, "w") as fh:
        fh.write("x")
    return os.path.abspath(name)

def write_temp() -> str:
    fd, path = tempfile.mkstemp()
    os.close(fd)
    return path
'''


def call_row(fn: str, **arguments) -> dict:
    return {"query": fn, "answers": [{"name": fn, "arguments": arguments}]}


def processes_with(token: str) -> list[int]:
    """Living (not zombie) processes whose command line holds ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes() and pid_alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.timeout(120)
def test_hostile_functions_cannot_crash_or_hang_the_pipeline(tmp_path, monkeypatch):
    from dataflow.operators.apigen import ExecutionChecker
    from dataflow.utils.storage import FileStorage

    module = tmp_path / "tools.py"
    module.write_text(HOSTILE)
    token = f"orphan-{time.time_ns()}"  # in the orphan's command line, found from this side in /proc
    rows = [call_row("add", a=1, b=2), call_row("loop"), call_row("hard_exit"), call_row("kill_self"),
            call_row("memory_bomb"), call_row("close_pipes"), call_row("orphan_then_hang", token=token),
            call_row("add", a=2, b=2), call_row("write_relative", name="escaped.txt"),
            call_row("write_relative", name="../escaped_up.txt"), call_row("write_temp")]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    workdir = tmp_path / "pipeline_cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"))

    started = time.monotonic()
    checker = ExecutionChecker(module_path=module, timeout=1.5, memory_mb=256, keep_failed=True)
    report = checker.run(storage.step(), input_answers_key="answers")
    assert time.monotonic() - started < 60
    assert report.rows_in == len(rows) and report.kept == len(rows)

    results = [row["execution_results"][0] for row in _step(tmp_path, data).read("dict")]
    by_index = dict(enumerate(results))
    assert by_index[0] == {"name": "add", "ok": True, "result": 3}
    assert "TimeoutError" in by_index[1]["error"]
    assert "WorkerDied" in by_index[2]["error"] and "code 3" in by_index[2]["error"]
    assert "SIGKILL" in by_index[3]["error"]
    assert "MemoryError" in by_index[4]["error"] or "WorkerDied" in by_index[4]["error"]
    assert not by_index[5]["ok"]
    assert "TimeoutError" in by_index[6]["error"]
    assert by_index[7] == {"name": "add", "ok": True, "result": 4}  # the worker was replaced each time

    # the orphaned grandchild went down with the worker's process group
    deadline = time.monotonic() + 5
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_with(token)

    # relative paths and temp files land in the worker's own temporary folder, removed afterwards
    written = by_index[8]["result"]
    assert Path(written).name == "escaped.txt" and Path(written).parent.name.startswith("dataflow_sandbox_")
    assert not Path(written).exists()
    assert not (workdir / "escaped.txt").exists() and not (tmp_path / "cache" / "escaped.txt").exists()
    assert Path(by_index[10]["result"]).parent == Path(written).parent
    assert not Path(by_index[10]["result"]).exists()
    # (a function that deliberately walks up with "../" is the user's own code, not a library path;
    # it still never lands in the pipeline's folder or cache)
    assert not (workdir.parent / "escaped_up.txt").exists() and not (workdir / "escaped_up.txt").exists()
    if by_index[9]["ok"]:  # written where this user may write, when Landlock is not available
        Path(by_index[9]["result"]).unlink(missing_ok=True)


def _step(tmp_path: Path, data: Path):
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"))
    storage.step()
    return storage.step()


def test_call_names_and_module_paths_cannot_reach_other_code(tmp_path):
    from dataflow.operators.apigen import ExecutionChecker
    from dataflow.operators.apigen.execution import Sandbox

    module = tmp_path / "tools.py"
    module.write_text("import os\n\ndef add(a: int, b: int) -> int:\n    return a + b\n\n"
                      "def _private() -> str:\n    return 'hidden'\n")
    with Sandbox(module) as sandbox:
        for name in ("../../etc/passwd", "os.system", "os", "__import__", "_private", "add.__globals__",
                     "__builtins__", "eval"):
            answer = sandbox.call(name, {})
            assert not answer["ok"] and answer["error"].startswith("NameError"), (name, answer)
        answer = sandbox.call("add", {"a": "__import__('os').system('touch pwned')", "b": "x"})
        assert answer["ok"] and answer["result"] == "__import__('os').system('touch pwned')x"
    assert not Path("pwned").exists()
    with pytest.raises(ConfigError, match="tools module not found"):
        ExecutionChecker(module_path=str(tmp_path / ".." / ".." / "no" / "such" / "tools.py"))
    with pytest.raises(ConfigError, match="tools module not found"):
        Sandbox(tmp_path / "../../../../etc/nothing_here.py")


# == (c) sandboxed prompt templates =================================================================
ATTACKS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ chat|attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format(chat) }}",
    "{{ chat.__class__.__base__.__subclasses__() }}",
    "{{ range.__self__ }}",
    "{% set x = [] %}{{ x.append(1) }}",
    "{{ config }}{{ request }}",
]


def template_with(body: str) -> str:
    return "{% macro system() %}You extract scenarios.{% endmacro %}\n{% macro user() %}" + body + "{% endmacro %}\n"


def extractor_run(tmp_path: Path, **kw):
    from dataflow.operators.conversations import ScenarioExtractor

    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"chat": "USER: hi\nASSISTANT: hello"}) + "\n")
    calls = []
    serving = FakeLLMServing(lambda m, s: calls.append(m) or button_responder(m, s))
    storage = FileStorage(str(data), cache_path=str(tmp_path / "cache"))
    try:
        ScenarioExtractor(llm_serving=serving, **kw).run(storage.step(), input_chat_key="chat")
    finally:
        assert calls == []  # rendering fails before any LLM call
        assert not list((tmp_path / "cache").glob("dataflow_cache_step*"))


@pytest.mark.parametrize("attack", ATTACKS)
def test_prompt_template_argument_cannot_reach_python_internals(tmp_path, attack):
    with pytest.raises(PromptRenderError) as info:
        extractor_run(tmp_path, prompt_template=template_with(attack))
    message = str(info.value)
    assert "prompt template" in message and "scenario_extractor prompt_template argument" in message
    assert "\n" not in message


@pytest.mark.parametrize("attack", ATTACKS[:8])
def test_prompts_dir_template_cannot_reach_python_internals(tmp_path, monkeypatch, attack):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "scenario_extractor.j2").write_text(template_with(attack))
    monkeypatch.setenv("DF_PROMPTS_DIR", str(prompts))
    with pytest.raises(PromptRenderError) as info:
        extractor_run(tmp_path)
    assert str(prompts / "scenario_extractor.j2") in str(info.value)


@pytest.mark.parametrize("body, fragment", [
    ("{{ 1 // 0 }}", "ZeroDivisionError"),
    ("{{ range(10 ** 9) | list }}", "OverflowError"),
    ("{{ undefined_variable }}", "undefined"),
    ("{% if %}", "syntax error"),
])
def test_broken_templates_fail_with_a_clear_error(tmp_path, monkeypatch, body, fragment):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "scenario_extractor.j2").write_text(template_with(body))
    monkeypatch.setenv("DF_PROMPTS_DIR", str(prompts))
    with pytest.raises(PromptRenderError) as info:
        extractor_run(tmp_path)
    message = str(info.value)
    assert fragment in message and str(prompts / "scenario_extractor.j2") in message


def test_top_level_template_code_is_sandboxed_too(tmp_path):
    attack = "{{ cycler.__init__.__globals__.os.system('touch pwned') }}" + template_with("hi")
    with pytest.raises(PromptRenderError, match="unsafe"):
        extractor_run(tmp_path, prompt_template=attack)
    assert not Path("pwned").exists()
