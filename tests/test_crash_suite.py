"""Crash suite: SIGKILL an example pipeline at five points, rerun it, and compare with an
uninterrupted run (deterministic fake responders, so outputs must be byte-identical).

Kill points (``pipeline_harness.py`` pauses the process exactly there; the test kills it):

- mid-request batch: the response cache has committed some replies of step 1, others are in flight;
- mid-write: step 3's temp file is written and fsynced, the rename has not happened;
- between steps: step 4 and its manifest are written, step 5 has not started;
- during the multi-turn loop: at the second tool-agent round of the conversation step;
- during the execution checker (APIGen): after 15 sandboxed calls, the worker alive.

After each kill: the rerun finishes; its outputs (step files, rejected files, exports) equal the
uninterrupted run's; no request whose reply was committed before the kill is sent again, and the
requests of both runs add up to the uninterrupted run's plus only the replies that were in flight
at the kill; no temp file or half-written step file is ever taken as a finished step.

The fake server runs in its own process, so it survives the kills and counts across runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline_kit import (
    APIGEN, FAST_CLIENT, FUNC_CALL, body_key, cached_keys, chat_rows, output_files, pipeline_cmd,
    pipeline_env, read_jsonl, run_pipeline, start_fake_server, step_files, tool_rows, write_jsonl,
)

N_CHAT = 120
N_TOOLS = 60
PIPELINES = {
    "func_call": dict(script=FUNC_CALL, responder="dataflow.serving.fake_responders:button_responder",
                      rows=lambda: chat_rows(N_CHAT)),
    "apigen": dict(script=APIGEN, responder="dataflow.operators.apigen.testing:apigen_responder",
                   rows=lambda: tool_rows(N_TOOLS)),
}
SCENARIOS = [
    ("func_call", "mid_request:50"),
    ("func_call", "mid_write:3"),
    ("func_call", "between_steps:4"),
    ("func_call", "multi_turn:2"),
    ("apigen", "execution:15"),
    ("apigen", "mid_write:2"),
]


class Reference:
    """An uninterrupted run: its cache folder, and the request bodies its server completed."""

    def __init__(self, cache: Path, completed: list[dict]):
        self.cache = cache
        self.completed = completed
        self.files = output_files(cache)


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    """Per pipeline: a subprocess fake server, the input file, and the uninterrupted run."""
    base = tmp_path_factory.mktemp("crash")
    out = {}
    try:
        for name, spec in PIPELINES.items():
            server = start_fake_server(responder=spec["responder"])
            input_file = write_jsonl(base / name / "input.jsonl", spec["rows"]())
            cache = base / name / "reference"
            run_pipeline(spec["script"], input_file, cache, server.url)
            reference = Reference(cache, [r["body"] for r in server.requests(completed_only=True)])
            assert len(reference.completed) == server.stats()["requests"] > 0
            out[name] = (server, input_file, reference)
        yield out
    finally:
        for server, _, _ in out.values():
            server.stop()


def _kill_at(point: str, script: Path, input_file: Path, cache: Path, url: str) -> dict:
    """Run the pipeline until it pauses at ``point``, SIGKILL it there; the pause details."""
    marker = cache.parent / f"{cache.name}.{point.replace(':', '_')}.marker"
    cache.mkdir(parents=True, exist_ok=True)
    env = pipeline_env(url, DF_TEST_PAUSE=point, DF_TEST_PAUSE_MARKER=str(marker))
    with open(cache.parent / f"{cache.name}.killed.stderr", "w") as err:
        proc = subprocess.Popen(pipeline_cmd(script, input_file, cache), env=env, stdout=subprocess.DEVNULL,
                                stderr=err, cwd=str(cache.parent))
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, (
                f"the pipeline ended (rc={proc.returncode}) before reaching {point}:\n"
                + (cache.parent / f"{cache.name}.killed.stderr").read_text()[-3000:])
            assert time.monotonic() < deadline, f"the pipeline never reached {point}"
            time.sleep(0.02)
        details = json.loads(marker.read_text())
        assert details["pid"] == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return details


def _temp_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob(".*.tmp")]


def _wait_gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # our grandchild may linger as a zombie until init reaps it
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,point", SCENARIOS, ids=[f"{n}-{p.split(':')[0]}" for n, p in SCENARIOS])
def test_kill_then_rerun_equals_an_uninterrupted_run(setups, tmp_path, name, point):
    server, input_file, reference = setups[name]
    script = PIPELINES[name]["script"]
    cache = tmp_path / "cache"

    server.reset()
    details = _kill_at(point, script, input_file, cache, server.url)
    first = server.requests()
    first_completed = [r["body"] for r in first if r["completed"]]
    committed = cached_keys(cache)  # the replies the killed run had finished (committed) before dying
    assert committed, "nothing was committed before the kill"
    assert committed <= {body_key(b) for b in first_completed}

    kind = point.split(":")[0]
    if kind == "mid_write":
        # the temp file of the step being written is complete but was never renamed: no step file,
        # no manifest; the step is not finished
        temp = Path(details["temp"])
        target = Path(details["target"])
        assert temp.exists() and temp.stat().st_size > 0
        assert not target.exists() and not Path(str(target) + ".manifest.json").exists()
    if kind == "execution":
        # the sandbox worker notices its parent is gone (stdin closes) and exits, cleaning up
        assert details["worker_pid"] and _wait_gone(details["worker_pid"]), "the sandbox worker outlived the pipeline"
        deadline = time.monotonic() + 10
        while Path(details["workdir"]).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(details["workdir"]).exists(), "the sandbox's temporary folder was left behind"

    server.reset()
    _, stderr = run_pipeline(script, input_file, cache, server.url)
    second = server.requests()

    # 1. the same outputs as the uninterrupted run, byte for byte
    files = output_files(cache)
    assert sorted(files) == sorted(reference.files)
    for rel, data in reference.files.items():
        assert files[rel] == data, f"{rel} differs from the uninterrupted run's after a kill at {point}"
    assert not _temp_files(cache), f"temp files left: {_temp_files(cache)}"

    # 2. no finished request was sent twice: nothing committed before the kill is asked again, and
    # both runs together completed the uninterrupted run's requests plus only those in flight at
    # the kill (delivered by the server, never received by the killed client)
    resent = [r for r in second if body_key(r["body"]) in committed]
    assert not resent, f"{len(resent)} request(s) committed before the kill were sent again"
    lost = [b for b in first_completed if body_key(b) not in committed]
    second_completed = [r["body"] for r in second if r["completed"]]
    assert len(first_completed) + len(second_completed) == len(reference.completed) + len(lost)
    assert len(second) == len(second_completed)  # no fault injected: every request completed once
    if kind == "mid_request":
        assert len(lost) <= FAST_CLIENT["max_workers"]
    else:  # killed between batches: every delivered reply had been committed
        assert not lost, f"{len(lost)} replies delivered before the kill were not in the cache"
    all_keys = [body_key(b) for b in first_completed if body_key(b) in committed] + \
               [body_key(b) for b in second_completed]
    assert len(all_keys) == len(set(all_keys)), "a request finished twice"

    # 3. steps finished before the kill were reused, not recomputed
    # (a step with failed rows is always retried on a rerun, so it is never "reused")
    if kind in ("between_steps", "mid_write"):
        done = int(point.split(":")[1]) - (kind == "mid_write")
        clean = [json.loads(Path(str(p) + ".manifest.json").read_text())["counts"]["failed"] == 0
                 for p in step_files(reference.cache)[:done]]
        assert stderr.count("reused finished step") == sum(clean), stderr


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_half_written_or_stray_files_are_never_taken_as_finished_steps(setups, tmp_path, name):
    """A finished run's step 3 truncated in place (its manifest still there), a step file with no
    manifest, and a stray temp file beside the next step: the rerun recomputes the damaged steps
    from the response cache (zero requests) and ends with the uninterrupted run's outputs."""
    server, input_file, reference = setups[name]
    script = PIPELINES[name]["script"]
    cache = tmp_path / "cache"
    shutil.copytree(reference.cache, cache)
    steps = step_files(cache)

    damaged = steps[2]
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # half a file: ends mid-line, same manifest
    no_manifest = steps[1]
    Path(str(no_manifest) + ".manifest.json").unlink()  # a data file without a manifest
    stray = damaged.parent / f".{damaged.name}.{_dead_pid()}.deadbeef.tmp"
    stray.write_bytes(data[: len(data) // 3])  # a killed writer's temp file

    server.reset()
    _, stderr = run_pipeline(script, input_file, cache, server.url)
    assert server.stats()["requests"] == 0  # every reply came from the response cache
    lines = [line for line in stderr.splitlines() if line.startswith("[step ")]
    assert "reused" in lines[0]
    assert "reused" not in lines[1] and "reused" not in lines[2]  # recomputed, not trusted
    # identical bytes again: the later steps are reused (except one with failed rows, which a rerun
    # always retries - here from the cache)
    for line, path in zip(lines[3:], step_files(reference.cache)[3:]):
        had_failures = json.loads(Path(str(path) + ".manifest.json").read_text())["counts"]["failed"]
        assert ("reused" in line) == (not had_failures), stderr
    files = output_files(cache)
    for rel, data in reference.files.items():
        assert files[rel] == data, f"{rel} differs from the uninterrupted run's"
    assert not stray.exists() and not _temp_files(cache)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
