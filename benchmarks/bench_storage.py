"""FileStorage write and read of N rows (a few scalar columns and one nested list column) in
jsonl and parquet: time and peak memory, each case in its own subprocess.

    python benchmarks/bench_storage.py --rows 1000000
    python benchmarks/bench_storage.py --rows 1000000 --formats parquet

Each case first writes and reads 10 rows elsewhere, so one-off imports are not timed. Peak
memory is the subprocess's peak RSS (``getrusage(RUSAGE_CHILDREN)`` seen by the parent);
"before" is its RSS just before the timed operation (interpreter, libraries and, for a write,
the rows to write), so peak - before is what the operation itself needed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, current_rss_mb, emit, peak_rss_mb  # noqa: E402

sys.path.insert(0, str(ROOT))


def make_rows(n: int) -> list[dict]:
    """Rows like a pipeline step's: ids, short texts, a number, a flag and a nested list."""
    return [
        {
            "id": i,
            "query": f"What is the weather in city number {i} for the next {i % 7 + 1} days?",
            "score": (i % 1000) / 7.0,
            "ok": i % 3 != 0,
            "answers": [{"name": "get_weather", "arguments": {"city": f"c{i}", "days": i % 7 + 1}}],
        }
        for i in range(n)
    ]


def child(op: str, fmt: str, rows: int, folder: str) -> dict:
    """One case, in this process: build the data (write) and time the FileStorage call."""
    from dataflow.utils.storage import FileStorage

    # warm-up on 10 rows elsewhere: imports (pyarrow pulls in pandas) are not part of the timing
    warm = FileStorage(str(Path(folder) / "unused.jsonl"), cache_path=str(Path(folder) / "warm-up"), cache_type=fmt)
    warm.step().write(make_rows(10))
    warm.step().read(output_type="dict")
    storage = FileStorage(str(Path(folder) / "unused_first_entry.jsonl"), cache_path=folder, cache_type=fmt)
    if op == "write":
        data = make_rows(rows)
        view = storage.step()  # step 0 writes step 1
        before = current_rss_mb()
        started, cpu0 = time.perf_counter(), time.process_time()
        path = view.write(data)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
        size = Path(path).stat().st_size
        count = len(data)
    else:
        storage.step()
        view = storage.step()  # step 1 reads step 1's file
        before = current_rss_mb()
        started, cpu0 = time.perf_counter(), time.process_time()
        data = view.read(output_type="dict")
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
        size = Path(view.input_path()).stat().st_size
        count = len(data)
        assert count == rows and isinstance(data[-1]["answers"], list), "read back the wrong rows"
    return {"op": op, "format": fmt, "rows": count, "seconds": seconds, "cpu_s": cpu, "rss_before_mb": before,
            "peak_rss_mb": peak_rss_mb(), "file_mb": size / 2**20}


def run_case(op: str, fmt: str, rows: int, folder: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", op, fmt, str(rows), folder],
        capture_output=True, text=True, cwd=str(ROOT),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"storage case {op} {fmt} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the parent's view of the child's peak (the largest child so far; cases run one at a time
    # and grow, so it is printed for reference only - the child's own figure is used)
    result["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result["op_peak_mb"] = result["peak_rss_mb"] - result["rss_before_mb"]
    result["rows_per_s"] = result["rows"] / result["seconds"] if result["seconds"] else 0.0
    return result


def run(rows: int, formats: list[str]) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="dataflow-bench-storage-") as tmp:
        for fmt in formats:
            folder = str(Path(tmp) / fmt)
            for op in ("write", "read"):
                results.append(run_case(op, fmt, rows, folder))
    return results


def print_results(results: list[dict]) -> None:
    print(f"{'format':<8} {'op':<6} {'rows':>9} {'seconds':>8} {'cpu s':>6} {'rows/s':>10} {'peak MB':>8} {'op MB':>8} {'file MB':>8}")
    for r in results:
        print(f"{r['format']:<8} {r['op']:<6} {r['rows']:>9} {r['seconds']:>8.2f} {r['cpu_s']:>6.2f} {r['rows_per_s']:>10,.0f} "
              f"{r['peak_rss_mb']:>8.0f} {r['op_peak_mb']:>8.0f} {r['file_mb']:>8.1f}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        op, fmt, rows, folder = argv[1], argv[2], int(argv[3]), argv[4]
        print(json.dumps(child(op, fmt, rows, folder)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", default=["jsonl", "parquet"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = run(args.rows, args.formats)
    print_results(results)
    emit({"rows": args.rows, "cases": results}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
