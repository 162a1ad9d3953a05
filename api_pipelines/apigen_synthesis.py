"""Single-turn function-calling data synthesis and verification (APIGen).

tools + seed QA -> DataSampler (few-shot examples for other tools, related tools) -> APIGenGenerator
(query/answer pairs, structured output; a copied example or an invented argument is re-asked once)
-> NoveltyFilter (drops queries that copy a few-shot example or seed row, or repeat a query)
-> FormatChecker (every call against its JSON Schema; every argument value grounded in the query)
-> ExecutionChecker (real functions of example_data/APIGen/tools.py, in a sandboxed worker)
-> SemanticChecker (LLM judge) -> stage table -> stratified train/validation split -> OpenAI chat
(user, then assistant with tool_calls), ShareGPT/Hermes and seed-000 chat-message JSONL.

Backend: an OpenAI-compatible endpoint when ``DF_API_URL`` is set (``DF_MODEL``, ``DF_API_KEY``),
otherwise the embedded local model. Run from this folder (``python apigen_synthesis.py``) or from
the folder above (``python api_pipelines/apigen_synthesis.py``); paths are resolved relative to
this file. Rerunning reuses every finished step and cached LLM response.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dataflow.operators.apigen import (
    APIGenGenerator,
    DataSampler,
    ExecutionChecker,
    FormatChecker,
    NoveltyFilter,
    SemanticChecker,
    format_stage_table,
    load_generator_config,
    stage_table,
    write_stage_table,
)
from dataflow.cli import run_pipeline_main
from dataflow.operators.formats import convert_row, stratified_split
from dataflow.storage.head import first_rows_file
from dataflow.serving import serving_from_env
from dataflow.storage.atomic import atomic_write_jsonl, atomic_write_text
from dataflow.utils.storage import FileStorage

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "example_data" / "APIGen"
DEFAULT_CACHE = HERE / "cache"


class APIGenPipeline:
    def __init__(self, cache_path: str | Path = DEFAULT_CACHE, data_dir: str | Path = DATA,
                 input_file: str | Path | None = None, out_dir: str | Path | None = None, semantic: bool = True):
        data = Path(data_dir)
        self.cache_path = Path(cache_path)
        self.out_dir = Path(out_dir) if out_dir is not None else self.cache_path / "apigen_export"
        self.storage = FileStorage(
            first_entry_file_name=str(input_file or data / "function_definitions.json"),
            cache_path=str(self.cache_path),
            file_name_prefix="dataflow_cache_step",
            cache_type="jsonl",
        )
        self.llm_serving = serving_from_env()
        config = load_generator_config(data / "generator_config.yaml")
        self.system_prompt = (data / "system_prompt.txt").read_text(encoding="utf-8").strip()

        self.sampler = DataSampler(seed_examples=data / "seed_qa.jsonl", example_tools="other",
                                   num_examples=int(config.get("examples_per_prompt", 3)),
                                   extra_tools=int(config.get("extra_tools", 1)))
        seeds = data / "seed_qa.jsonl"
        self.generator = APIGenGenerator(llm_serving=self.llm_serving, config=config, seed_examples=seeds)
        self.novelty_filter = NoveltyFilter(seed_examples=seeds)
        self.format_checker = FormatChecker()
        self.execution_checker = ExecutionChecker(module_path=data / "tools.py", timeout=5.0, memory_mb=512)
        self.semantic_checker = SemanticChecker(llm_serving=self.llm_serving) if semantic else None

    def run(self) -> dict:
        self.sampler.run(self.storage.step(), input_tools_key="function")
        self.generator.run(self.storage.step(), input_tools_key="tools", input_examples_key="examples")
        self.novelty_filter.run(self.storage.step(), input_query_key="query", input_examples_key="examples")
        self.format_checker.run(self.storage.step(), input_answers_key="answers", input_tools_key="tools",
                                input_query_key="query")
        self.execution_checker.run(self.storage.step(), input_answers_key="answers")
        if self.semantic_checker is not None:
            self.semantic_checker.run(self.storage.step(), input_query_key="query", input_answers_key="answers",
                                      input_tools_key="tools", input_results_key="execution_results")

        table = stage_table(self.storage.reports, duplicates_dropped=self.generator.duplicates_dropped,
                            reasked=self.generator.reasked)
        print(format_stage_table(table), flush=True)
        write_stage_table(table, self.cache_path / "apigen_stage_table.json")

        verified = self.storage.step().read(output_type="dict")
        self.export(verified)
        return table

    def export(self, rows: list[dict]) -> None:
        """Split by call signature and write the fine-tuning files to ``out_dir``
        (default ``<cache>/apigen_export``). Each example is the query and the verified calls
        (xLAM/APIGen style): the execution results verified the calls but are not part of the
        example, which would otherwise need a final assistant answer after them."""
        out_dir = self.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        result = stratified_split(rows, test_size=0.2, seed=0)
        print(result.summary(), flush=True)
        atomic_write_text(out_dir / "split_report.json", json.dumps(result.report(), indent=2) + "\n")
        for part, part_rows in (("train", result.train), ("validation", result.validation)):
            for fmt, options in (("openai", {}), ("hermes", {}),
                                 ("chat_message", {"system_prompt": self.system_prompt})):
                atomic_write_jsonl(out_dir / f"{part}_{fmt}.jsonl",
                                   (convert_row(row, fmt, **options) for row in part_rows))
        print(f"fine-tuning files in {out_dir}", flush=True)


def first_rows(source: Path, n: int, cache_dir: Path) -> Path:
    """``source`` itself, or (n > 0) its first ``n`` rows as JSON Lines in the cache folder,
    rewritten only when their content changes (so a rerun sees the same input fingerprint).
    A bad input is reported against ``source`` and its line."""
    return first_rows_file(source, n, cache_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", "--cache", dest="cache", default=str(DEFAULT_CACHE),
                        help="folder for step files and the LLM cache")
    parser.add_argument("--input", type=Path, default=DATA / "function_definitions.json",
                        help="tool definitions (JSON list or JSONL, one tool per row)")
    parser.add_argument("--rows", type=int, default=0, help="use the first N input rows (0: all, the default)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="fine-tuning files (default: <cache-dir>/apigen_export)")
    parser.add_argument("--no-semantic", dest="semantic", action="store_false",
                        help="skip the LLM judge (it only marks rows while it is not calibrated on the model)")
    args = parser.parse_args(argv)
    cache = Path(args.cache).resolve()
    first_entry = first_rows(args.input.resolve(), args.rows, cache)
    pipeline = APIGenPipeline(cache_path=cache, input_file=first_entry,
                              out_dir=args.out_dir.resolve() if args.out_dir else None, semantic=args.semantic)
    try:
        pipeline.run()
    finally:
        pipeline.llm_serving.close()


if __name__ == "__main__":
    sys.exit(run_pipeline_main(main))  # a user error: one "error: ..." line, exit status 2
