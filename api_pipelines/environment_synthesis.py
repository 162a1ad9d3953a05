"""Multi-turn function-calling data verified by execution (APIGen-MT): a stateful environment,
task blueprints validated by running them, conversations kept only when the environment ends in
the blueprint's state.

task focus rows -> TaskBlueprintGenerator (intent + ground-truth calls + facts, each blueprint run
on a fresh copy of the shop) -> EnvironmentConversationGenerator (a user agent who knows only the
intent, an assistant calling the real tools; state and facts checked; --attempts per blueprint,
pass^k) -> fine-tuning files.

The environment is ``example_data/ShopEnvironment/shop.py`` (class ``Shop``, data
``shop_data.json``), run in the execution sandbox; ``--mcp`` reaches the same shop through its MCP
server instead (``pip install ".[mcp]"``). Backend: ``DF_API_URL`` (+ ``DF_MODEL``, ``DF_API_KEY``)
or the embedded local model. Rerunning reuses every finished step and cached LLM response.

    python environment_synthesis.py --blueprints 4 --attempts 3
    python environment_synthesis.py --check         # every step's columns checked, no model needed
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from dataflow.cli import run_pipeline_main
from dataflow.core.preflight import active_check, check_pipeline
from dataflow.operators.conversations import chat_to_transcript
from dataflow.operators.conversations.export import export_conversations
from dataflow.operators.environments import EnvironmentConversationGenerator, PythonEnvironment, TaskBlueprintGenerator
from dataflow.exports.card import run_summary, write_export_docs
from dataflow.serving import serving_from_env
from dataflow.storage.head import first_rows_file
from dataflow.utils.storage import FileStorage

HERE = Path(__file__).resolve().parent
SHOP = HERE.parent / "example_data" / "ShopEnvironment"
DEFAULT_INPUT = SHOP / "tasks.jsonl"
DEFAULT_CACHE = HERE / "cache" / "environment"
DEFAULT_OUT = HERE / "output"
CHECKS = (
    "blueprints: calls fit the tools' JSON Schemas (validate_calls), run on a fresh copy of the environment each "
    "succeeds or is refused as the blueprint says, every argument value stands in the intent or an earlier result, "
    "every expected fact stands in a result",
    "state check: the environment's final state after the conversation equals the state the blueprint's calls reach "
    "(state_mismatch names the differing paths)",
    "facts: the assistant's answers state every expected fact (missing_fact)",
    "structure (check_conversation) and dataflow.quality.conversation_problems (grounded arguments, user turns, "
    "answers that state the results), unused_tool aside: the tool list is the whole environment",
)


def shop_environment(mcp: bool = False, timeout: float = 5.0):
    """The example shop: in the sandbox (``PythonEnvironment``), or through its MCP server."""
    if mcp:
        from dataflow.operators.environments.mcp import McpEnvironment

        return McpEnvironment([str(SHOP / "shop_mcp_server.py")], name="shop (MCP)")
    return PythonEnvironment(SHOP / "shop.py", "Shop", SHOP / "shop_data.json", name="shop", timeout=timeout)


class EnvironmentPipeline:
    """Blueprints, then state-checked conversations, on one environment."""

    def __init__(self, first_entry_file_name: str, cache_path: str, llm_serving, environment, attempts: int = 3):
        self.storage = FileStorage(first_entry_file_name=first_entry_file_name, cache_path=cache_path,
                                   file_name_prefix="dataflow_cache_step", cache_type="jsonl")
        self.llm_serving = llm_serving
        self.environment = environment
        self.blueprint_generator = TaskBlueprintGenerator(llm_serving=llm_serving, environment=environment)
        self.conversation_generator = EnvironmentConversationGenerator(llm_serving=llm_serving,
                                                                       environment=environment, attempts=attempts)

    def run(self) -> None:
        self.blueprint_generator.run(self.storage.step(), input_focus_key="focus")
        self.conversation_generator.run(self.storage.step(), input_intent_key="intent")

    def final_rows(self) -> list[dict]:
        """The last step's output table (the storage does not advance)."""
        return self.storage.read_output(output_type="dict")


def funnel(reports: list, rows: list[dict], attempts: int) -> dict:
    """The pipeline's figures: blueprint and trajectory pass rates, pass^k over the blueprints
    that reached the conversation step (a blueprint with no passing attempt counts 0), and the
    rejections of each stage by reason (every rejected blueprint proposal, re-asked or final)."""
    blueprints, trajectories = reports[0], reports[1]
    proposals: Counter[str] = Counter()
    for row in trajectories_input(blueprints):
        for reason in row.get("blueprint_rejections") or []:
            proposals[reason.split(":", 1)[0]] += 1
    proposals.update(blueprints.failed_by_reason)
    n = trajectories.rows_in
    pass_k = {str(k): (sum(r.get("pass_hat_k", {}).get(str(k), 0.0) for r in rows) / n if n else 0.0)
              for k in range(1, attempts + 1)}
    return {
        "blueprints": f"{blueprints.kept} of {blueprints.rows_in}",
        "blueprint_pass_rate": blueprints.kept / blueprints.rows_in if blueprints.rows_in else 0.0,
        "rejected_blueprint_proposals": dict(proposals.most_common()),
        "trajectories": f"{trajectories.kept} of {trajectories.rows_in}",
        "trajectory_pass_rate": trajectories.kept / n if n else 0.0,
        "pass_hat_k": pass_k,
        "trajectory_failures": dict(Counter(trajectories.failed_by_reason).most_common()),
    }


def trajectories_input(report) -> list[dict]:
    """The kept blueprint rows (the blueprint step's output file)."""
    path = Path(report.output_file)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if path.is_file() else []


def print_summary(pipeline: EnvironmentPipeline, rows: list[dict], out_dir: Path, attempts: int, seconds: float) -> dict:
    reports = pipeline.storage.reports
    print("\n=== Summary ===")
    for report in reports:
        print(report.summary_line())
    stats = pipeline.llm_serving.stats
    print(f"LLM calls: {stats.requests_sent} sent, {stats.cached} cached, {stats.failed} failed")
    figures = funnel(reports, rows, attempts)
    figures["environment"] = pipeline.environment.name
    figures["wall_seconds"] = round(seconds, 1)
    print(f"Environment: {figures['environment']}")
    print(f"Blueprints validated: {figures['blueprints']} ({figures['blueprint_pass_rate']:.0%})")
    if figures["rejected_blueprint_proposals"]:
        print("  rejected proposals by reason: "
              + ", ".join(f"{k}: {v}" for k, v in figures["rejected_blueprint_proposals"].items()))
    print(f"Trajectories kept (final state and facts checked): {figures['trajectories']} "
          f"({figures['trajectory_pass_rate']:.0%})")
    print("  pass^k: " + ", ".join(f"k={k}: {v:.2f}" for k, v in figures["pass_hat_k"].items()))
    if figures["trajectory_failures"]:
        print("  failed by reason: " + ", ".join(f"{k}: {v}" for k, v in figures["trajectory_failures"].items()))
    result = export_conversations(rows, out_dir, stem="environment_conversations", ignored_codes=("unused_tool",))
    figures["exported"] = result.written
    summary = run_summary(pipeline="environment_synthesis", reports=reports, serving=pipeline.llm_serving,
                          files={f: p for f, p in result.paths.items() if f != "dataset_info"}, rows=result.written,
                          export_skipped=result.skipped, checks=CHECKS, quality_flags=result.flags,
                          considered=result.considered, parameters={"attempts": attempts},
                          extra={"environment": figures})
    docs = write_export_docs(out_dir, summary, default="openai")
    print(f"Exported {result.written} conversations:")
    for fmt, path in result.paths.items():
        print(f"  {fmt}: {path}")
    if result.skipped:
        print("  skipped (flagged): " + ", ".join(f"{k}: {v}" for k, v in result.skipped.items()))
    (out_dir / "environment_funnel.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"  funnel: {out_dir / 'environment_funnel.json'}")
    print(f"  dataset card: {docs['card']}")
    print(f"  report: {docs.get('report') or docs.get('report_missing')}")
    if rows:
        print("\n--- Example conversation ---")
        print(chat_to_transcript(rows[0].get("conversations"), max_chars=3000))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blueprints", type=int, default=4, help="task rows to use (0: all); default 4")
    parser.add_argument("--attempts", type=int, default=3, help="conversations per blueprint (pass^k); default 3")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="task focus rows (JSONL with 'focus')")
    parser.add_argument("--mcp", action="store_true", help="reach the shop through its MCP server")
    parser.add_argument("--cache-dir", type=Path, default=None, help="step files and LLM cache")
    parser.add_argument("--out-dir", type=Path, default=None, help="exported files")
    parser.add_argument("--check", action="store_true",
                        help="pre-flight check: list every step and each column it reads that would not exist, "
                             "without calling a model or writing a step file (exit status 1 if one is missing)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    name = "environment_mcp" if args.mcp else "environment"
    cache_dir = (args.cache_dir or HERE / "cache" / name).resolve()
    first_entry = first_rows_file(args.input.resolve(), args.blueprints, cache_dir)
    environment = shop_environment(mcp=args.mcp)
    serving = serving_from_env()
    try:
        pipeline = EnvironmentPipeline(str(first_entry), str(cache_dir), serving, environment, args.attempts)
        if args.check or active_check() is not None:
            return check_pipeline(pipeline.run)
        pipeline.run()
        out_dir = (args.out_dir or DEFAULT_OUT / f"{name}_{args.blueprints or 'all'}").resolve()
        out_dir.mkdir(parents=True, exist_ok=True)
        print_summary(pipeline, pipeline.final_rows(), out_dir, args.attempts, time.perf_counter() - started)
    finally:
        serving.close()
        environment.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_pipeline_main(main))
