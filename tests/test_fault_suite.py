"""Fault suite: both example pipelines, 1,000 input rows each, against the loopback fake server
injecting 20% mixed faults (429 with Retry-After, 500, 503, connection resets, timeouts, malformed
and truncated bodies), compared with a fault-free run of the same pipeline on the same input.

The responders are deterministic, and some requests fail permanently on purpose (see
``pipeline_harness.permanent_faults``): prompts that mention ``PERM400`` get a 400, ``PERM500`` a
500 on every attempt, and a few later-stage prompts a 500 or 422. So:

- transient faults: the faulted run's outputs equal the fault-free run's, row for row;
- permanent faults: exactly the chosen rows fail, with the server's reason;
- per step, the manifest's counts reconcile with the files: rows in = kept + failed + filtered,
  rows out = lines of the step file, failed + filtered = lines of the rejected file;
- nothing that stands for a failure (None/null, an empty string, an error message) is ever sent to
  the server as prompt text or written as data.

Each pipeline runs twice as a subprocess (``pipeline_harness.py`` gives the client small timeouts
and backoff); the fake server runs in its own process.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from pipeline_kit import (
    APIGEN, FUNC_CALL, chat_rows, finish_pipeline, output_files, manifest_of, read_jsonl, rejected_of,
    start_fake_server, start_pipeline, step_files, tool_rows, write_jsonl,
)

N_ROWS = 1000
FAULT_RATE = 0.2
# transient faults per distinct request are capped below the client's retries (6), so every
# transient fault is recoverable; the permanent ones come from the responder
MAX_FAULTS = 3
CHAT_TAGS = {13: "PERM400", 404: "PERM400", 777: "PERM400", 250: "PERM500", 901: "PERM500"}
TOOL_TAGS = {21: "PERM400", 555: "PERM400", 333: "PERM500"}

PIPELINES = {
    "func_call": dict(script=FUNC_CALL, responder="pipeline_harness:faulty_button_responder",
                      rows=lambda: chat_rows(N_ROWS, CHAT_TAGS)),
    "apigen": dict(script=APIGEN, responder="pipeline_harness:faulty_apigen_responder",
                   rows=lambda: tool_rows(N_ROWS, TOOL_TAGS)),
}

# text that must never appear in a prompt or in data: a failure turned into text
FAILURE_MARKERS = [
    "HTTP 4", "HTTP 5", "Traceback", "error:", "Error:", "None", "timeout after", "timed out",
    "malformed response", "connection error", "injected fault", "(permanent)", "<failed:",
    "empty reply", "llm_error", "invalid_reply", "Retry-After", "Bad Gateway", "ServerDisconnected",
    "ClientOSError", "ClientPayloadError",
]


class Run:
    def __init__(self, cache: Path, stdout: str, stderr: str, stats: dict, bodies: list[dict]):
        self.cache, self.stdout, self.stderr, self.stats, self.bodies = cache, stdout, stderr, stats, bodies


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def runs(request, tmp_path_factory):
    """The fault-free and the faulted run of one pipeline (side by side: the faulted run spends
    much of its time waiting for retries)."""
    name = request.param
    spec = PIPELINES[name]
    base = tmp_path_factory.mktemp(f"fault_{name}")
    input_file = write_jsonl(base / "input.jsonl", spec["rows"]())
    servers, procs, runs = {}, {}, {}
    try:
        for label, rate in (("clean", 0.0), ("faulty", FAULT_RATE)):
            servers[label] = start_fake_server(responder=spec["responder"], fault_rate=rate, seed=7,
                                               max_faults_per_request=MAX_FAULTS, retry_after=0.05,
                                               hang_seconds=0.5)
            procs[label] = start_pipeline(spec["script"], input_file, base / label, servers[label].url)
        for label, proc in procs.items():
            stdout, stderr = finish_pipeline(proc)
            server = servers[label]
            runs[label] = Run(base / label, stdout, stderr, server.stats(), server.requests())
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for server in servers.values():
            server.stop()
    return name, input_file, runs["clean"], runs["faulty"]


@pytest.mark.timeout(600)
def test_every_transient_fault_is_recovered(runs):
    name, _, clean, faulty = runs
    faults = faulty.stats["faults"]
    # the fault-free run saw only the responder's permanent faults (statuses 400, 422 and 500)
    assert set(clean.stats["faults"]) <= {"400", "422", "500"}, clean.stats
    permanent = sum(n for kind, n in faults.items() if kind in ("400", "422"))
    injected = sum(faults.values()) - permanent
    # every kind was injected, about 20% of the requests were faulted, and none reached the data
    assert {"429", "500", "503", "reset", "timeout", "malformed", "truncated"} <= set(faults), faults
    assert injected >= 0.15 * faulty.stats["requests"], faulty.stats
    # the same requests succeeded in both runs, each once (a reply is delivered twice only when
    # the client gave up on it, after its 20 s attempt timeout: never on a healthy machine)
    assert _completed(faulty) == _completed(clean)
    assert faulty.stats["completed"] == clean.stats["completed"] == len(_completed(clean))

    clean_files, faulty_files = output_files(clean.cache), output_files(faulty.cache)
    assert sorted(clean_files) == sorted(faulty_files)
    for rel, data in clean_files.items():
        if ".rejected." in rel:
            continue  # compared below: a permanent 5xx's last reason may be a transient fault's
        assert faulty_files[rel] == data, f"{name}: {rel} differs between the fault-free and the faulted run"
    for rel in clean_files:
        if ".rejected." not in rel:
            continue
        a, b = read_jsonl(clean.cache / rel), read_jsonl(faulty.cache / rel)
        assert [_without_reason(r) for r in a] == [_without_reason(r) for r in b], rel
        for ra, rb in zip(a, b):
            if "HTTP 5" in ra["_reason"]:  # retried to the end: the last attempt's reason
                assert rb["_reason"].startswith("llm_error: "), rb["_reason"]
            else:
                assert ra["_reason"] == rb["_reason"], rel


def _completed(run: Run) -> set[str]:
    return {json.dumps(r["body"], sort_keys=True) for r in run.bodies if r["completed"]}


def _without_reason(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "_reason"}


@pytest.mark.timeout(600)
def test_permanent_faults_end_as_failed_rows_with_their_reason(runs):
    name, input_file, clean, faulty = runs
    for run in (clean, faulty):
        failed = [r for f in step_files(run.cache) if rejected_of(f).exists()
                  for r in read_jsonl(rejected_of(f)) if r["_status"] == "failed"]
        assert failed, "the permanent faults failed no row"
        for row in failed:
            assert row["_reason"].startswith(("llm_error: ", "invalid_")), row["_reason"]
        first = step_files(run.cache)[0] if name == "func_call" else step_files(run.cache)[1]
        at_first = {(r.get("chat") or json.dumps(r.get("function"))): r["_reason"]
                    for r in read_jsonl(rejected_of(first)) if r["_status"] == "failed"}
        tagged400 = {k: v for k, v in at_first.items() if "PERM400" in k}
        tagged500 = {k: v for k, v in at_first.items() if "PERM500" in k}
        if name == "func_call":
            assert len(tagged400) == 3 and len(tagged500) == 2
            assert len(at_first) == 5  # only the chosen rows fail at step 1
        else:  # a chosen tool is also sampled into other rows as an extra tool
            assert len(tagged400) >= 2 and len(tagged500) >= 1
            assert set(at_first) == set(tagged400) | set(tagged500)
        for reason in tagged400.values():
            assert reason == "llm_error: HTTP 400: request rejected by policy (permanent)"
        for reason in tagged500.values():
            assert reason.startswith("llm_error: ")
            if run is clean:
                assert reason == "llm_error: HTTP 500: model backend crashed on this prompt (permanent)"
        later = Counter(r["_reason"].split(":")[0] + ":" + r["_reason"].split(":")[1]
                        for f in step_files(run.cache)[2:] if rejected_of(f).exists()
                        for r in read_jsonl(rejected_of(f)) if r["_status"] == "failed")
        assert later, "no later-stage permanent fault"
        if run is clean:
            text = "\n".join(r["_reason"] for f in step_files(run.cache) if rejected_of(f).exists()
                             for r in read_jsonl(rejected_of(f)))
            assert "HTTP 422: unprocessable prompt (permanent)" in text
            if name == "func_call":
                assert "HTTP 500: tool simulator crashed on this prompt (permanent) (tool agent)" in text


@pytest.mark.timeout(600)
def test_counts_reconcile_per_step(runs):
    name, input_file, clean, faulty = runs
    for run in (clean, faulty):
        previous_rows = len(read_jsonl(input_file))
        for path in step_files(run.cache):
            m = manifest_of(path)
            c = m["counts"]
            where = f"{name} {path.name}"
            assert c["rows_in"] == previous_rows, where
            assert c["rows_in"] == c["kept"] + c["failed"] + c["filtered"], where
            assert sum(c["failed_by_reason"].values()) == c["failed"], where
            assert sum(c["filtered_by_reason"].values()) == c["filtered"], where
            rows = read_jsonl(path)
            assert len(rows) == c["rows_out"] == m["rows"], where
            assert c["kept"] <= c["rows_out"], where
            rejected = read_jsonl(rejected_of(path)) if rejected_of(path).exists() else []
            assert len(rejected) == c["failed"] + c["filtered"] == m["rejected_rows"], where
            assert Counter(r["_status"] for r in rejected) == Counter(
                {k: v for k, v in (("failed", c["failed"]), ("filtered", c["filtered"])) if v}), where
            by_reason = Counter(r["_reason"].split(":", 1)[0] for r in rejected if r["_status"] == "failed")
            assert by_reason == Counter(c["failed_by_reason"]), where
            assert sorted({r["_input_row"] for r in rejected}) == sorted(r["_input_row"] for r in rejected), where
            previous_rows = c["rows_out"]
        # the run summary printed on stderr says the same
        for path in step_files(run.cache):
            c = manifest_of(path)["counts"]
            assert f"{c['rows_in']} in -> {c['rows_out']} out" in run.stderr


_SUSPECT_TOKENS = FAILURE_MARKERS + ["null", '""']
_BLANK_STRING = re.compile(r'"(?:\s|\\[nrt])+"')  # a JSON string of only whitespace
_PY_NONE = re.compile(r"\bNone\b(?! of\b)")  # Python's None as text ("None of the tools ..." is English)


def _markers_in(text: str) -> list[str]:
    found = [m for m in FAILURE_MARKERS if m in text and m != "None"]
    if _PY_NONE.search(text) or text.strip() in ("null", "None"):
        found.append("None")
    return found


@pytest.mark.timeout(600)
def test_no_failure_is_sent_as_prompt_text(runs):
    name, _, clean, faulty = runs
    for run in (clean, faulty):
        assert len(run.bodies) == run.stats["requests"]
        problems = []
        for record in run.bodies:
            for message in record["body"]["messages"]:
                content = message.get("content")
                if not isinstance(content, str) or not content.strip():
                    problems.append(f"{message.get('role')} message with content {content!r}")
                    continue
                found = _markers_in(content)
                if found:
                    where = content.find(found[0])
                    problems.append(f"{found}: ...{content[max(0, where - 120): where + 80]}...")
        assert not problems, f"{name}: {len(problems)} bad prompt(s), e.g. {problems[:3]}"


# columns that hold a reason text: empty when the verdict passed (not data standing for a failure)
_REASON_COLUMNS = re.compile(r"^\.(format_reason|execution_reason)$")


@pytest.mark.timeout(600)
def test_no_failure_is_written_as_data(runs):
    name, _, clean, faulty = runs
    for run in (clean, faulty):
        problems = []
        for rel in output_files(run.cache):
            path = run.cache / rel
            text = path.read_text()
            tokens = [tok for tok in _SUSPECT_TOKENS if tok in text]
            if _BLANK_STRING.search(text):
                tokens.append('"')
            if not tokens:
                continue  # fast path: no marker, null or empty string anywhere in the file
            markers = [tok for tok in tokens if tok in FAILURE_MARKERS]
            for index, line in enumerate(text.splitlines() if path.suffix == ".jsonl" else [text]):
                if not any(tok in line for tok in tokens):
                    continue
                row = json.loads(line)
                if ".rejected." in rel:  # rejected rows: the reason is the one place an error belongs
                    assert row["_reason"] and row["_status"] in ("failed", "filtered")
                    row = {k: v for k, v in row.items() if not k.startswith("_")}
                found: list = []
                _suspect_values(row, (), markers, found)
                for where, value in found:
                    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where)
                    if value is None:
                        if not _null_allowed(rel, where):
                            problems.append(f"{rel}:{index + 1} {where} is null")
                    elif not value.strip():
                        if not _empty_allowed(rel, where, row):
                            problems.append(f"{rel}:{index + 1} {where} is an empty string")
                    elif _markers_in(value) and not _marker_allowed(rel, where, row):
                        problems.append(f"{rel}:{index + 1} {where}: {_markers_in(value)} in {value[:160]!r}")
        assert not problems, f"{name}: {len(problems)} bad value(s), e.g. {problems[:5]}"


def _suspect_values(value, where: tuple, markers: list[str], out: list) -> None:
    """Collect (path, value) for each null, blank string or string holding one of ``markers``
    (an assistant message's ``content: null`` next to its ``tool_calls`` is the OpenAI format)."""
    kind = type(value)
    if kind is str:
        if not value.strip() or any(m in value for m in markers):
            out.append((where, value))
    elif kind is dict:
        for k, v in value.items():
            if v is None and k == "content" and value.get("role") == "assistant" and value.get("tool_calls"):
                continue
            _suspect_values(v, where + (k,), markers, out)
    elif kind is list:
        for i, v in enumerate(value):
            _suspect_values(v, where + (i,), markers, out)
    elif value is None:
        out.append((where, None))


def _null_allowed(rel: str, where: str) -> bool:
    return False


def _empty_allowed(rel: str, where: str, row: dict) -> bool:
    if _REASON_COLUMNS.match(where):  # "" = no problem found, next to a True verdict
        verdict = {".format_reason": "format_valid", ".execution_reason": "execution_ok"}[where]
        return row.get(verdict) is True
    return False


def _marker_allowed(rel: str, where: str, row: dict) -> bool:
    return False
