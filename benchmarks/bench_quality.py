"""What the example pipelines export, measured: yield, rejections by reason, turns per
conversation, and the share of exported examples a deterministic check flags (target 0).

Runs the main job (``func_call_synthesis.py``, multi-turn) and the APIGen example
(``apigen_synthesis.py``) in a fresh ``dataflow init`` folder, on the embedded model (``--model``
picks a known model by name) or on ``DF_API_URL``, then reads the step manifests and exported
files back:

    python benchmarks/bench_quality.py --rows 4                     # the README's main job
    python benchmarks/bench_quality.py --rows 24 --apigen-rows 10 --model qwen2.5-coder-1.5b-instruct

Prints one table per pipeline and writes ``--json`` (default ``benchmarks/quality_results.json``,
appended by model). The exported files stay in ``--work`` for an audit against
``RUBRIC.md``; the audit itself is done by a reader, not by this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {proc.returncode}")
    return seconds, proc.stdout


def step_reports(cache: Path) -> list[dict]:
    """The counts of every finished step in ``cache``, in step order."""
    reports = []
    for manifest in sorted(cache.glob("*.manifest.json"), key=lambda p: _step_number(p.name)):
        data = json.loads(manifest.read_text())
        reports.append({"operator": data.get("operator"), **(data.get("counts") or {})})
    return reports


def _step_number(name: str) -> int:
    digits = "".join(ch if ch.isdigit() else " " for ch in name.split(".")[0]).split()
    return int(digits[-1]) if digits else 0


def reasons_of(reports: list[dict]) -> Counter:
    reasons: Counter = Counter()
    for report in reports:
        for key in ("failed_by_reason", "filtered_by_reason"):
            for reason, n in (report.get(key) or {}).items():
                reasons[f"{report['operator']}: {reason}"] += n
    return reasons


def conversation_figures(path: Path) -> dict:
    """Turn counts and quality flags of an exported OpenAI JSONL file."""
    from dataflow.quality import conversation_problems

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    users = [sum(m["role"] == "user" for m in r["messages"]) for r in records]
    call_turns = [sum(bool(m.get("tool_calls")) for m in r["messages"] if m["role"] == "assistant") for r in records]
    flagged = Counter()
    for r in records:
        for problem in conversation_problems(r["messages"], r.get("tools") or []):
            flagged[problem.split(":", 1)[0]] += 1
    n = len(records) or 1
    return {
        "exported": len(records),
        "user_turns_mean": round(sum(users) / n, 2),
        "tool_call_turns_mean": round(sum(call_turns) / n, 2),
        "share_2plus_user_and_call_turns": round(sum(u >= 2 and c >= 2 for u, c in zip(users, call_turns)) / n, 2),
        "flagged": dict(flagged),
        "flagged_share": round(sum(bool(conversation_problems(r["messages"], r.get("tools") or [])) for r in records) / n, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4, help="multi-turn input rows (default 4, the README's main job)")
    parser.add_argument("--input", type=Path, default=None, help="chat data for the main job (default: the example's)")
    parser.add_argument("--apigen-rows", type=int, default=0, help="APIGen tool rows (0: skip the APIGen example)")
    parser.add_argument("--model", default=None, help="embedded model by name (sets DF_LOCAL_MODEL)")
    parser.add_argument("--work", type=Path, default=Path("bench_quality_work"), help="work folder (kept for audits)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "quality_results.json")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    if args.model:
        env["DF_LOCAL_MODEL"] = args.model
    model = env.get("DF_MODEL") if env.get("DF_API_URL") else env.get("DF_LOCAL_MODEL", "default embedded model")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "dataflow.cli.main", "init"], work, env)
    results: dict = {"model": model, "date": time.strftime("%Y-%m-%d")}

    cache = work / "cache_multi_turn"
    out = work / "export_multi_turn"
    cmd = [sys.executable, "api_pipelines/func_call_synthesis.py", "--rows", str(args.rows),
           "--cache-dir", str(cache), "--out-dir", str(out)]
    if args.input:
        cmd += ["--input", str(args.input.resolve())]
    seconds, _ = _run(cmd, work, env)
    reports = step_reports(cache)
    rows_in = reports[0].get("rows_in", 0) if reports else 0
    figures = conversation_figures(out / "func_call_conversations.openai.jsonl")
    results["multi_turn"] = {
        "rows_in": rows_in, **figures, "yield": round(figures["exported"] / max(rows_in, 1), 2),
        "seconds": round(seconds, 1), "rejections": dict(reasons_of(reports).most_common()),
        "steps": [(r["operator"], r.get("rows_in"), r.get("rows_out")) for r in reports],
    }
    _print("Multi-turn (main job)", results["multi_turn"])

    if args.apigen_rows:
        cache = work / "cache_apigen"
        out = work / "export_apigen"
        seconds, _ = _run([sys.executable, "api_pipelines/apigen_synthesis.py", "--rows", str(args.apigen_rows),
                           "--cache-dir", str(cache), "--out-dir", str(out)], work, env)
        reports = step_reports(cache)
        exported = sum(1 for f in out.glob("*openai*.jsonl") for line in f.read_text().splitlines() if line.strip())
        results["apigen"] = {
            "tool_rows_in": args.apigen_rows, "exported_pairs": exported, "seconds": round(seconds, 1),
            "rejections": dict(reasons_of(reports).most_common()),
            "steps": [(r["operator"], r.get("rows_in"), r.get("rows_out")) for r in reports],
        }
        _print("APIGen example", results["apigen"])

    previous = json.loads(args.json.read_text()) if args.json.exists() else {}
    previous[model] = results
    args.json.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"\nExported files kept in {work} (audit them against RUBRIC.md); figures in {args.json}")
    return 0


def _print(title: str, figures: dict) -> None:
    print(f"\n{title}")
    print("| figure | value |\n|---|---|")
    for key, value in figures.items():
        if key in ("rejections", "steps", "flagged"):
            continue
        print(f"| {key} | {value} |")
    if figures.get("flagged"):
        print("flagged by check: " + ", ".join(f"{k}: {v}" for k, v in figures["flagged"].items()))
    print("steps (rows in -> out): " + "; ".join(f"{op} {a}->{b}" for op, a, b in figures.get("steps", [])))
    if figures.get("rejections"):
        print("rejections: " + "; ".join(f"{k} x{v}" for k, v in figures["rejections"].items()))


if __name__ == "__main__":
    sys.exit(main())
