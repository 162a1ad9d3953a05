"""Framework overhead: the whole multi-turn pipeline (every operator of
``api_pipelines/func_call_synthesis.py``, with the quality evaluator and the export) on N rows
against the in-process zero-latency ``FakeLLMServing(button_responder)``.

For each step it prints the wall time, the process CPU time, the part of that CPU time spent
inside the fake responder (standing in for the LLM, not framework work) and the framework CPU
time per input row = (CPU - responder) / rows in.

    python benchmarks/bench_pipeline.py --rows 1000
    python benchmarks/bench_pipeline.py --rows 1000 --profile profile.html   # pyinstrument
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, make_chat_input, load_pipeline_module  # noqa: E402


class TimedResponder:
    """Wraps the responder and totals the CPU time spent in it.

    The deterministic responder gives every row the same parameter schemas; a real model writes
    different ones per row, and schema checks are cached by content. So each generated
    parameter's description gets the row's digest, to measure the realistic (uncached) cost."""

    def __init__(self, responder):
        self.responder = responder
        self.cpu = 0.0
        self.calls = 0

    def __call__(self, messages, json_schema):
        started = time.process_time()
        try:
            reply = self.responder(messages, json_schema)
            if isinstance(reply, dict) and "functions" in reply:
                tag = hashlib.sha1(json.dumps(messages).encode()).hexdigest()[:8]
                for function in reply["functions"]:
                    for param in function["parameters"]:
                        param["description"] = f"{param['description']} ({tag})"
            return reply
        finally:
            self.cpu += time.process_time() - started
            self.calls += 1


def run(rows: int, workdir: Path, profile: str | None = None) -> dict:
    from dataflow.core import OperatorABC
    from dataflow.operators.conversations.export import export_conversations
    from dataflow.serving import FakeLLMServing
    from dataflow.serving.fake_responders import button_responder

    module = load_pipeline_module()
    source = make_chat_input(workdir / "input.jsonl", rows)
    responder = TimedResponder(button_responder)
    serving = FakeLLMServing(responder)
    pipeline = module.FuncCallPipeline(str(source), str(workdir / "cache"), serving, evaluate=True, expand=True,
                                       parallel=True)  # every operator of the family

    steps: list[dict] = []

    def timed(op, run_method):
        @functools.wraps(run_method)
        def wrapper(storage, **keys):
            cpu0, wall0, fake0, calls0 = time.process_time(), time.perf_counter(), responder.cpu, responder.calls
            report = run_method(storage, **keys)
            cpu = time.process_time() - cpu0
            fake = responder.cpu - fake0
            steps.append({
                "step": report.step, "operator": type(op).__name__, "rows_in": report.rows_in,
                "rows_out": report.rows_out, "llm_calls": responder.calls - calls0,
                "wall_s": time.perf_counter() - wall0, "cpu_s": cpu, "responder_cpu_s": fake,
                "framework_ms_per_row": 1000 * (cpu - fake) / max(report.rows_in, 1),
            })
            return report
        return wrapper

    for value in vars(pipeline).values():
        if isinstance(value, OperatorABC):
            value.run = timed(value, value.run)

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    pipeline.run()
    final = pipeline.final_rows()
    cpu1, wall1 = time.process_time(), time.perf_counter()
    export = export_conversations(final, workdir / "export")
    export_cpu, export_wall = time.process_time() - cpu1, time.perf_counter() - wall1
    steps.append({"step": len(steps) + 1, "operator": "export_conversations", "rows_in": len(final),
                  "rows_out": export.written, "llm_calls": 0, "wall_s": export_wall, "cpu_s": export_cpu,
                  "responder_cpu_s": 0.0, "framework_ms_per_row": 1000 * export_cpu / max(len(final), 1)})
    cpu_total, wall_total = time.process_time() - cpu0, time.perf_counter() - wall0
    if profiler is not None:
        profiler.stop()
        Path(profile).write_text(profiler.output_html(), encoding="utf-8")
        print(profiler.output_text(unicode=True, color=False, show_all=False)[:20000])
    framework_cpu = cpu_total - responder.cpu
    return {
        "rows": rows, "conversations": len(final), "llm_calls": responder.calls,
        "wall_s": wall_total, "cpu_s": cpu_total, "responder_cpu_s": responder.cpu,
        "framework_cpu_s": framework_cpu, "framework_ms_per_row": 1000 * framework_cpu / rows,
        "framework_us_per_llm_call": 1e6 * framework_cpu / max(responder.calls, 1),
        "steps": steps,
    }


def print_result(result: dict) -> None:
    print(f"{'step':>4} {'operator':<32} {'in':>6} {'out':>6} {'calls':>7} {'wall s':>7} {'cpu s':>7} "
          f"{'fake s':>7} {'ms/row':>7}")
    for s in result["steps"]:
        print(f"{s['step']:>4} {s['operator']:<32} {s['rows_in']:>6} {s['rows_out']:>6} {s['llm_calls']:>7} "
              f"{s['wall_s']:>7.2f} {s['cpu_s']:>7.2f} {s['responder_cpu_s']:>7.2f} {s['framework_ms_per_row']:>7.2f}")
    print(f"total: {result['rows']} rows -> {result['conversations']} conversations, {result['llm_calls']} LLM calls, "
          f"{result['wall_s']:.1f}s wall, {result['cpu_s']:.1f}s CPU ({result['responder_cpu_s']:.1f}s in the fake "
          f"responder); framework {result['framework_ms_per_row']:.1f} ms CPU per row, "
          f"{result['framework_us_per_llm_call']:.0f} us per LLM call")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--profile", default=None, help="write a pyinstrument HTML profile here")
    parser.add_argument("--json", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dataflow-bench-pipeline-") as tmp:
        result = run(args.rows, Path(tmp), args.profile)
    print_result(result)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
