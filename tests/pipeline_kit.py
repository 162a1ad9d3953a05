"""Helpers shared by the fault and crash suites: input tables built from the example data, a
runner for the example pipelines (through ``pipeline_harness.py``, as a subprocess against a
fake server), and readers for step files, manifests and the response cache."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
HARNESS = TESTS / "pipeline_harness.py"
FUNC_CALL = ROOT / "api_pipelines" / "func_call_synthesis.py"
APIGEN = ROOT / "api_pipelines" / "apigen_synthesis.py"
CHAT_DATA = ROOT / "example_data" / "FuncCallPipeline" / "chat_data.jsonl"
TOOL_DATA = ROOT / "example_data" / "APIGen" / "function_definitions.json"

#: client settings for the suites: small timeouts and backoff so injected faults cost little time
#: (the per-attempt timeout stays generous: a busy CI machine must not turn slow replies into
#: retries; the fake server's "timeout" fault hangs for less, then drops the connection)
FAST_CLIENT = {"max_workers": 32, "timeout": 20.0, "connect_timeout": 5.0, "backoff_base": 0.02,
               "backoff_max": 0.2, "max_retry_after": 0.2, "max_retries": 6, "progress": False}


def chat_rows(n: int, tags: dict[int, str] | None = None) -> list[dict]:
    """``n`` chat rows cycling through the example chats, each made distinct by a ticket tag in its
    first user turn (``tags[i]`` adds a word to row ``i``'s tag, e.g. ``PERM400``)."""
    base = [json.loads(line) for line in CHAT_DATA.read_text().splitlines() if line.strip()]
    rows = []
    for i in range(n):
        row = dict(base[i % len(base)])
        tag = f"[ticket {i:04d}{' ' + tags[i] if tags and i in tags else ''}]"
        assert "USER: " in row["chat"]
        row["chat"] = row["chat"].replace("USER: ", f"USER: {tag} ", 1)
        rows.append(row)
    return rows


def tool_rows(n: int, tags: dict[int, str] | None = None) -> list[dict]:
    """``n`` tool rows cycling through the example tools (all executable by ``tools.py``), each
    made distinct by a catalogue number in its description."""
    base = json.loads(TOOL_DATA.read_text())
    rows = []
    for i in range(n):
        spec = json.loads(json.dumps(base[i % len(base)]))
        extra = f" {tags[i]}" if tags and i in tags else ""
        spec["function"]["description"] += f" (catalogue entry {i:04d}{extra})"
        rows.append(spec)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def pipeline_env(server_url: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(DF_API_URL=server_url, DF_MODEL="fake-model", DF_TEST_SERVING=json.dumps(FAST_CLIENT))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("DF_API_KEY", None)
    env.pop("DF_TEST_PAUSE", None)
    env.update(extra)
    return env


def pipeline_cmd(script: Path, input_file: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, str(HARNESS), str(script), "--rows", "0", "--input", str(input_file),
            "--cache-dir", str(cache), "--out-dir", str(cache / "export"), *extra]


def start_pipeline(script: Path, input_file: Path, cache: Path, server_url: str, **env_extra: str) -> subprocess.Popen:
    """Start ``script`` (through the harness) as a subprocess; its output goes to files in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    out = open(cache.parent / f"{cache.name}.stdout", "w")
    err = open(cache.parent / f"{cache.name}.stderr", "w")
    proc = subprocess.Popen(pipeline_cmd(script, input_file, cache), env=pipeline_env(server_url, **env_extra),
                            stdout=out, stderr=err, cwd=str(cache.parent))
    out.close()
    err.close()
    proc.cache = cache  # type: ignore[attr-defined]
    return proc


def finish_pipeline(proc: subprocess.Popen, timeout: float = 400) -> tuple[str, str]:
    """Wait for a pipeline started by ``start_pipeline``; its (stdout, stderr), asserting exit 0."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    cache = proc.cache  # type: ignore[attr-defined]
    stdout = (cache.parent / f"{cache.name}.stdout").read_text()
    stderr = (cache.parent / f"{cache.name}.stderr").read_text()
    assert proc.returncode == 0, f"pipeline failed (rc={proc.returncode}):\n{stderr[-4000:]}"
    return stdout, stderr


def run_pipeline(script: Path, input_file: Path, cache: Path, server_url: str, timeout: float = 400,
                 **env_extra: str) -> tuple[str, str]:
    """Run ``script`` to the end; (stdout, stderr), failing the test when it does not exit 0."""
    return finish_pipeline(start_pipeline(script, input_file, cache, server_url, **env_extra), timeout)


def step_files(cache: Path) -> list[Path]:
    """The step data files of a cache folder, in step order."""
    files = [p for p in cache.glob("dataflow_cache_step*.jsonl") if ".rejected." not in p.name]
    return sorted(files, key=lambda p: int(p.name.split("_step")[-1].split(".")[0]))


def manifest_of(step_file: Path) -> dict:
    return json.loads(step_file.with_name(step_file.name + ".manifest.json").read_text())


def rejected_of(step_file: Path) -> Path:
    return step_file.with_name(step_file.stem + ".rejected.jsonl")


def output_files(cache: Path) -> dict[str, bytes]:
    """Every data file a run leaves (step files, rejected files, exports), by relative path; not
    the descriptions of one run (stage table, run summary with its timings)."""
    out = {}
    for path in sorted(cache.rglob("*")):
        if path.is_file() and path.suffix in (".jsonl", ".json") and not path.name.endswith(".manifest.json") \
                and path.name not in ("apigen_stage_table.json", "run_summary.json") \
                and not path.name.startswith("input_first_"):
            out[str(path.relative_to(cache))] = path.read_bytes()
    return out


def cached_keys(cache: Path) -> set[str]:
    """Request keys committed to the response cache of ``cache``."""
    db = cache / "llm_responses.sqlite"
    if not db.exists():
        return set()
    conn = sqlite3.connect(str(db))
    try:
        return {row[0] for row in conn.execute("SELECT key FROM responses")}
    finally:
        conn.close()


def body_key(body: dict) -> str:
    """The response-cache key of a request body the fake server recorded."""
    from dataflow.serving.response_cache import request_key

    schema = None
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
    extra = {k: v for k, v in body.items() if k not in ("model", "messages", "temperature", "response_format")}
    return request_key(body["model"], body["messages"], body.get("temperature"), extra, schema)


def start_fake_server(**options):
    """A started subprocess ``FakeOpenAIServer`` that can import the responders of
    ``pipeline_harness`` (``tests/`` on its ``PYTHONPATH``)."""
    from dataflow.serving import FakeOpenAIServer

    server = FakeOpenAIServer(in_process=False, **options)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS)] + ([saved] if saved else []))
    try:
        server.start()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return server
