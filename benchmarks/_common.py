"""Helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHAT_DATA = ROOT / "example_data" / "FuncCallPipeline" / "chat_data.jsonl"
PIPELINE_SCRIPT = ROOT / "api_pipelines" / "func_call_synthesis.py"
RESPONDER = "dataflow.serving.fake_responders:button_responder"


def make_chat_input(path: Path, rows: int) -> Path:
    """``rows`` distinct chat rows (the example chats, cycled, each tagged with its number so
    every prompt differs and no response is shared)."""
    seeds = [json.loads(line) for line in CHAT_DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            row = dict(seeds[i % len(seeds)])
            row["chat"] = row["chat"].replace("USER: ", f"USER: (case {i}) ", 1)
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def load_pipeline_module():
    """``api_pipelines/func_call_synthesis.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("func_call_synthesis", PIPELINE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def current_rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def emit(result: dict, json_path: str | None) -> None:
    """Write ``result`` as JSON to ``json_path`` (the runner reads it) when given."""
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2), encoding="utf-8")
