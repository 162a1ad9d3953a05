"""Import time of the library, each measured in a fresh interpreter (best of N): the time of the
``import`` statements only, not the interpreter's own start-up.

    python benchmarks/bench_imports.py --repeat 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emit  # noqa: E402

CASES = {
    "dataflow, dataflow.serving": ("import dataflow, dataflow.serving", 0.3),
    "+ dataflow.utils.storage, dataflow.operators.conversations": (
        "import dataflow, dataflow.serving, dataflow.utils.storage, dataflow.operators.conversations", 1.0),
}

_PROBE = (
    "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
)


def measure(stmt: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _PROBE.format(stmt=stmt)], cwd=str(ROOT),
                             capture_output=True, text=True, check=True).stdout
        best = min(best, float(out.strip().splitlines()[-1]))
    return best


def run(repeat: int) -> list[dict]:
    return [{"case": name, "statement": stmt, "seconds": measure(stmt, repeat), "target_s": target}
            for name, (stmt, target) in CASES.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = run(args.repeat)
    for r in results:
        print(f"import {r['case']:<62} {r['seconds']:6.3f}s (target < {r['target_s']}s)")
    emit({"repeat": args.repeat, "cases": results}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
