"""Run every benchmark and print the results as a Markdown table (also written as JSON).

    python benchmarks/run_all.py            # full sizes (several minutes)
    python benchmarks/run_all.py --quick    # tiny sizes: a smoke check, figures mean little

Each benchmark runs as its own script in a subprocess (see the ``bench_*.py`` files for what
each measures and how to run one alone):

- ``bench_client.py``: ``APILLMServing_request`` throughput / ideal against the fake server in its
  own process, concurrency 16 / 64 / 256, latency 50 / 200 ms;
- ``bench_pipeline.py``: framework overhead of the whole multi-turn pipeline against the
  in-process zero-latency ``FakeLLMServing(button_responder)``, CPU time per row per step;
- ``bench_validate_calls.py``: ``validate_calls`` calls per second;
- ``bench_storage.py``: FileStorage write / read in jsonl and parquet, time and peak memory;
- ``bench_rerun.py``: the multi-turn example against the fake server, run twice (LLM calls of the rerun);
- ``bench_imports.py``: import time of the package.

Timings depend on the machine and on what else runs on it: the table records the CPU count and
load average so a reader can judge.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = {
    "client": ["-n", "5000", "-c", "16", "64", "256", "-l", "0.05", "0.2"],
    "pipeline": ["--rows", "1000"],
    "validate": ["--rows", "20000"],
    "storage": ["--rows", "1000000"],
    "rerun": ["--rows", "1000"],
    "imports": ["--repeat", "5"],
}
QUICK = {
    "client": ["-n", "200", "-c", "16", "64", "-l", "0.05", "--max-ideal-seconds", "0.3"],
    "pipeline": ["--rows", "20"],
    "validate": ["--rows", "300"],
    "storage": ["--rows", "5000"],
    "rerun": ["--rows", "5"],
    "imports": ["--repeat", "1"],
}
SCRIPTS = {
    "client": "bench_client.py",
    "pipeline": "bench_pipeline.py",
    "validate": "bench_validate_calls.py",
    "storage": "bench_storage.py",
    "rerun": "bench_rerun.py",
    "imports": "bench_imports.py",
}


def run_section(name: str, args: list[str], tmp: Path) -> dict:
    """Run one benchmark script; its stdout is shown as it goes, its JSON result returned."""
    out = tmp / f"{name}.json"
    print(f"\n## {name}: {SCRIPTS[name]} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / SCRIPTS[name]), *args, "--json", str(out)],
        cwd=str(ROOT), stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    if proc.returncode != 0 or not out.is_file():
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"benchmark {name} failed (exit status {proc.returncode})")
    result = json.loads(out.read_text(encoding="utf-8"))
    result["_seconds"] = time.perf_counter() - started
    return result


def _status(ok: bool) -> str:
    return "ok" if ok else "**below target**"


def table_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(benchmark, setting, result, target) rows of the summary table."""
    rows: list[tuple[str, str, str, str]] = []
    client = results.get("client")
    if client:
        for c in client["cells"]:
            target = ""
            if c["concurrency"] >= 256 and c["latency"] >= 0.2:
                target = f">= 0.9 ({_status(c['fraction'] >= 0.9)})"
            rows.append((
                "LLM client throughput / ideal",
                f"latency {c['latency'] * 1000:.0f} ms, concurrency {c['concurrency']}, {c['n']} requests",
                f"{c['fraction']:.2f} ({c['rps']:,.0f} req/s, {c['failed']} failed)",
                target,
            ))
    pipe = results.get("pipeline")
    if pipe:
        rows.append((
            "Framework overhead (multi-turn pipeline)",
            f"{pipe['rows']} rows, {pipe['llm_calls']:,} LLM calls, zero-latency in-process fake",
            f"{pipe['framework_ms_per_row']:.1f} ms CPU per row ({pipe['framework_us_per_llm_call']:.0f} us per LLM call; "
            f"{pipe['wall_s']:.1f} s wall)",
            "",
        ))
    val = results.get("validate")
    if val:
        rate = val["shared_tools_calls_per_s"]
        rows.append((
            "`validate_calls`, repeated tools",
            "10 APIGen tools, 1-3 calls per row, 15% invalid",
            f"{rate:,.0f} calls/s (tools as JSON text per row: {val['json_tools_per_row_calls_per_s']:,.0f})",
            f">= 20,000 ({_status(rate >= 20000)})",
        ))
        if "new_tools_per_row_calls_per_s" in val:
            new = val["new_tools_per_row_calls_per_s"]
            rows.append((
                "`validate_calls`, new tools per row",
                "BFCL-like: 1-3 never-seen tools per row, spec checks included; beside a plain jsonschema loop",
                f"{new:,.0f} calls/s ({val['new_tools_per_row_calls_per_cpu_s']:,.0f} per CPU second); plain "
                f"jsonschema: {val['plain_jsonschema_calls_per_s']:,.0f} without spec checks, "
                f"{val['plain_jsonschema_check_schema_calls_per_s']:,.0f} with check_schema",
                f">= 60,000 ({_status(new >= 60000)})",
            ))
    storage = results.get("storage")
    if storage:
        for c in storage["cases"]:
            rows.append((
                f"Storage {c['op']} ({c['format']})",
                f"{c['rows']:,} rows (4 scalar columns + 1 nested list), FileStorage",
                f"{c['seconds']:.1f} s ({c['cpu_s']:.1f} s CPU), peak RSS {c['peak_rss_mb']:,.0f} MB "
                f"(+{c['op_peak_mb']:,.0f} MB for the {c['op']}), file {c['file_mb']:.0f} MB",
                "",
            ))
    rerun = results.get("rerun")
    if rerun:
        first, second = rerun["runs"]
        rows.append((
            "Rerun of a finished pipeline",
            f"multi-turn example, {rerun['rows']} rows, fake server (first run: {first['seconds']:.1f} s, "
            f"{first['llm_calls']:,} LLM calls)",
            f"{second['seconds']:.1f} s wall, {second['llm_calls']} LLM calls",
            f"0 calls ({_status(second['llm_calls'] == 0)})",
        ))
    imports = results.get("imports")
    if imports:
        for c in imports["cases"]:
            rows.append((
                "Import time",
                f"`import {c['case']}` (best of {imports['repeat']})",
                f"{c['seconds']:.3f} s",
                f"< {c['target_s']} s ({_status(c['seconds'] < c['target_s'])})",
            ))
    return rows


def markdown(results: dict, meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['cpus']} CPUs, Python {meta['python']}, load average "
        f"{meta['load_before']} before / {meta['load_after']} after"
        + (" (--quick: tiny sizes, figures are not meaningful)" if meta["quick"] else "") + ".",
        "",
        "| Benchmark | Setting | Result | Target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table_rows(results)]
    pipe = results.get("pipeline")
    if pipe:
        lines += [
            "",
            f"Framework CPU time per row per step (multi-turn pipeline, {pipe['rows']} rows; "
            "the fake responder's own time excluded):",
            "",
            "| Step | Operator | Rows in | LLM calls | CPU ms / row |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {s['step']} | {s['operator']} | {s['rows_in']} | {s['llm_calls']:,} | {s['framework_ms_per_row']:.2f} |"
            for s in pipe["steps"]
        ]
    return "\n".join(lines)


def _load() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on this platform
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke check)")
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), help="run only these benchmarks")
    parser.add_argument("--results", type=Path, default=HERE / "results.json",
                        help="where to write the results as JSON (default benchmarks/results.json)")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    meta = {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(), "quick": args.quick,
        "load_before": _load(),
    }
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="dataflow-bench-") as tmp:
        for name in args.only or list(SCRIPTS):
            results[name] = run_section(name, sizes[name], Path(tmp))
    meta["load_after"] = _load()
    args.results.write_text(json.dumps({"meta": meta, "results": results}, indent=2), encoding="utf-8")
    print("\n" + markdown(results, meta))
    print(f"\n(results written to {args.results})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
