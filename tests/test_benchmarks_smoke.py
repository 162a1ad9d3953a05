"""Smoke test of the benchmark runner: ``benchmarks/run_all.py --quick`` (tiny sizes) exits 0 and
prints the Markdown results table. No timing is asserted: the figures depend on the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
def test_run_all_quick_prints_the_table(tmp_path):
    results = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DF_API_URL", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--results", str(results)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "| Benchmark | Setting | Result | Target |" in out
    for label in ("LLM client throughput / ideal", "Framework overhead", "`validate_calls`",
                  "Storage write (jsonl)", "Storage read (parquet)", "Rerun of a finished pipeline", "Import time"):
        assert label in out, label
    assert "| 8 | MultiTurnConversationGenerator |" in out
    data = json.loads(results.read_text())
    assert data["meta"]["quick"] is True
    assert data["results"]["rerun"]["rerun_llm_calls"] == 0
