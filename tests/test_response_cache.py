"""The content-addressed response cache: persistence, reruns, invalidation, crash safety."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dataflow.serving import APILLMServing_request
from dataflow.serving import FakeFault, FakeOpenAIServer
from dataflow.serving.response_cache import CACHE_FILE_NAME, CachedResponse, ResponseCache, request_key

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("no_api_key")


def client(url, **kw) -> APILLMServing_request:
    kw.setdefault("model_name", "cache-model")
    kw.setdefault("max_workers", 8)
    kw.setdefault("backoff_base", 0.02)
    kw.setdefault("timeout", 5)
    return APILLMServing_request(api_url=url, **kw)


MSG = [{"role": "user", "content": "hi"}]


def test_request_key_covers_what_changes_a_reply():
    base = request_key("m", MSG, 0.0, {"top_p": 1}, {"type": "object"})
    assert base == request_key("m", [dict(MSG[0])], 0.0, {"top_p": 1}, {"type": "object"})
    assert len({
        base,
        request_key("m2", MSG, 0.0, {"top_p": 1}, {"type": "object"}),
        request_key("m", [{"role": "user", "content": "hi!"}], 0.0, {"top_p": 1}, {"type": "object"}),
        request_key("m", MSG, 0.5, {"top_p": 1}, {"type": "object"}),
        request_key("m", MSG, 0.0, {"top_p": 0.9}, {"type": "object"}),
        request_key("m", MSG, 0.0, {"top_p": 1}, None),
    }) == 6


def test_store_roundtrip_and_wal(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k1", CachedResponse("text one", 3, 4))
    cache.put_many([("k2", CachedResponse("two", finish_reason="length"), "m")])
    cache.close()
    again = ResponseCache(tmp_path)
    assert again.get("k1") == CachedResponse("text one", 3, 4)
    assert again.get_many(["k2", "nope"]) == {"k2": CachedResponse("two", finish_reason="length")}
    assert len(again) == 2
    mode = sqlite3.connect(again.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again.close()


def test_rerun_makes_zero_requests(fake_server, tmp_path):
    prompts = [f"q{i}" for i in range(25)]
    first = client(fake_server.url, cache_dir=tmp_path).generate_from_input(prompts)
    assert fake_server.request_count == 25 and not any(r.cached for r in first)
    assert (tmp_path / CACHE_FILE_NAME).exists()
    serving = client(fake_server.url, cache_dir=tmp_path)
    second = serving.generate_from_input(prompts)
    assert fake_server.request_count == 25  # nothing new sent
    assert all(r.cached and r.ok for r in second)
    assert [r.text for r in second] == [r.text for r in first]
    assert serving.stats.cached == 25 and serving.stats.requests_sent == 0


def test_changed_prompt_or_parameter_reasks_only_that(fake_server, tmp_path):
    prompts = ["a", "b", "c"]
    client(fake_server.url, cache_dir=tmp_path).generate_from_input(prompts)
    fake_server.reset()
    client(fake_server.url, cache_dir=tmp_path).generate_from_input(["a", "B", "c"])
    assert [b["messages"][-1]["content"] for b in fake_server.received] == ["B"]
    fake_server.reset()
    client(fake_server.url, cache_dir=tmp_path, temperature=0.7).generate_from_input(prompts)
    assert fake_server.request_count == 3
    fake_server.reset()
    client(fake_server.url, cache_dir=tmp_path).generate_from_input(prompts, system_prompt="other")
    assert fake_server.request_count == 3


def test_failures_are_not_cached(fake_server, tmp_path):
    fake_server.responder = lambda m, s: FakeFault("500") if m[-1]["content"] == "bad" else "fine"
    results = client(fake_server.url, cache_dir=tmp_path, max_retries=0).generate_from_input(["ok", "bad"])
    assert [r.ok for r in results] == [True, False]
    fake_server.reset()
    fake_server.responder = None
    again = client(fake_server.url, cache_dir=tmp_path).generate_from_input(["ok", "bad"])
    assert [r.cached for r in again] == [True, False] and again[1].ok
    assert fake_server.request_count == 1


def test_duplicates_in_a_batch_are_asked_once(fake_server, tmp_path):
    results = client(fake_server.url, cache_dir=tmp_path).generate_from_input(["same"] * 5 + ["other"])
    assert fake_server.request_count == 2
    assert len({r.text for r in results[:5]}) == 1 and all(r.ok for r in results)


def test_cache_off(fake_server, tmp_path):
    serving = client(fake_server.url, cache=False, cache_dir=tmp_path)
    serving.use_cache_dir(str(tmp_path / "op"))
    serving.generate_from_input(["a"])
    serving.generate_from_input(["a"])
    assert fake_server.request_count == 2
    assert serving.cache is None
    assert not list(tmp_path.rglob(CACHE_FILE_NAME))


def test_use_cache_dir_and_explicit_cache_dir(fake_server, tmp_path):
    serving = client(fake_server.url)
    assert serving.cache is None  # no folder known yet: nothing cached
    serving.use_cache_dir(str(tmp_path / "step_cache"))
    serving.generate_from_input(["a"])
    assert (tmp_path / "step_cache" / CACHE_FILE_NAME).exists()
    pinned = client(fake_server.url, cache_dir=tmp_path / "mine")
    pinned.use_cache_dir(str(tmp_path / "ignored"))
    pinned.generate_from_input(["a"])
    assert (tmp_path / "mine" / CACHE_FILE_NAME).exists()
    assert not (tmp_path / "ignored").exists()
    serving.close()
    pinned.close()


def test_api_key_not_in_cache_files(fake_server, tmp_path, monkeypatch):
    key = "sk-test-CACHECHECK-4242"
    monkeypatch.setenv("DF_API_KEY", key)
    serving = client(fake_server.url, cache_dir=tmp_path)
    serving.generate_from_input([f"q{i}" for i in range(10)])
    assert fake_server.requests()[0]["headers"]["authorization"] == fake_server.credential_tag(f"Bearer {key}")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]  # includes -wal / -shm while open
    assert files
    for path in files:
        assert key.encode() not in path.read_bytes(), path
    serving.close()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


SCRIPT = textwrap.dedent("""
    import json, sys
    from dataflow.serving import APILLMServing_request
    url, cache_dir, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    serving = APILLMServing_request(api_url=url, model_name="kill-model", max_workers=4,
                                    cache_dir=cache_dir, progress=False)
    results = serving.generate_from_input([f"question {i}" for i in range(n)])
    with open(out, "w") as f:
        json.dump([[r.text, r.reason] for r in results], f)
""")


def _cache_rows(cache_dir: Path) -> int:
    path = cache_dir / CACHE_FILE_NAME
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def _run_script(script: Path, url: str, cache_dir: Path, out: Path, n: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, str(script), url, str(cache_dir), str(out), str(n)], env=env)


def test_sigkill_mid_batch_then_rerun(tmp_path):
    n, latency = 24, 0.3
    script = tmp_path / "batch.py"
    script.write_text(SCRIPT)
    cache_dir = tmp_path / "cache"
    with FakeOpenAIServer(in_process=False, latency=latency) as server:
        proc = _run_script(script, server.url, cache_dir, tmp_path / "killed.json", n)
        deadline = time.monotonic() + 60
        while _cache_rows(cache_dir) < 8:  # two waves of 4 finished; the third is in flight
            assert proc.poll() is None, "batch finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert not (tmp_path / "killed.json").exists()
        finished_before = _cache_rows(cache_dir)
        assert 8 <= finished_before < n
        time.sleep(latency + 0.3)  # let the server notice the in-flight requests were abandoned
        completed_before = {json.dumps(r["body"], sort_keys=True) for r in server.requests(completed_only=True)}
        assert len(completed_before) == server.completed_count == finished_before
        arrived_before = len(server.requests())

        rerun = _run_script(script, server.url, cache_dir, tmp_path / "resumed.json", n)
        assert rerun.wait(60) == 0
        stats = server.stats()
        assert stats["completed"] == n  # every request finished exactly once across both runs
        completed = [json.dumps(r["body"], sort_keys=True) for r in server.requests(completed_only=True)]
        assert len(completed) == len(set(completed)) == n
        sent_again = [json.dumps(r["body"], sort_keys=True) for r in server.requests()[arrived_before:]]
        assert len(sent_again) == n - finished_before
        assert not completed_before & set(sent_again)  # no finished request was sent again

        server.reset()
        clean = _run_script(script, server.url, tmp_path / "clean_cache", tmp_path / "clean.json", n)
        assert clean.wait(60) == 0
        assert server.completed_count == n
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed == json.loads((tmp_path / "clean.json").read_text())
    assert all(text and reason is None for text, reason in resumed)
