"""Rerun of a finished pipeline: ``api_pipelines/func_call_synthesis.py`` (with ``--evaluate``)
on N rows against the fake server in its own process (deterministic BUTTON responder, zero
latency), run twice as a user would. Prints the wall time and the requests the server received
for each run; the second run should reuse every step and send 0 requests.

    python benchmarks/bench_rerun.py --rows 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PIPELINE_SCRIPT, RESPONDER, ROOT, emit, make_chat_input  # noqa: E402

sys.path.insert(0, str(ROOT))


def run(rows: int, workdir: Path) -> dict:
    from dataflow.serving import FakeOpenAIServer

    source = make_chat_input(workdir / "input.jsonl", rows)
    cache = workdir / "cache"
    runs = []
    with FakeOpenAIServer(responder=RESPONDER, in_process=False, record=False) as server:
        env = dict(os.environ, DF_API_URL=server.url, DF_MODEL="fake-model", PYTHONPATH=str(ROOT))
        env.pop("DF_API_KEY", None)
        for attempt in ("first run", "rerun"):
            before = server.request_count
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(PIPELINE_SCRIPT), "--rows", "0", "--input", str(source),
                 "--cache-dir", str(cache), "--evaluate"],
                cwd=str(workdir), env=env, capture_output=True, text=True,
            )
            seconds = time.perf_counter() - started
            if proc.returncode != 0:
                raise RuntimeError(f"pipeline {attempt} failed:\n{proc.stderr[-3000:]}")
            runs.append({"run": attempt, "seconds": seconds, "llm_calls": server.request_count - before})
    return {"rows": rows, "runs": runs, "rerun_seconds": runs[1]["seconds"], "rerun_llm_calls": runs[1]["llm_calls"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dataflow-bench-rerun-") as tmp:
        result = run(args.rows, Path(tmp))
    for r in result["runs"]:
        print(f"{r['run']:<10} {args.rows} rows: {r['seconds']:6.2f}s wall, {r['llm_calls']} LLM requests")
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
