"""Single-turn function-calling data synthesis and verification (APIGen).

tools + seed QA -> DataSampler (few-shot examples for other tools, related tools) -> APIGenGenerator
(query/answer pairs, structured output; a copied example or an invented argument is re-asked once)
-> NoveltyFilter (drops queries that copy a few-shot example or seed row, or repeat a query)
-> FormatChecker (every call against its JSON Schema; every argument value grounded in the query)
-> ExecutionChecker (real functions of example_data/APIGen/tools.py, in a sandboxed worker)
-> SemanticChecker (LLM judge) -> stage table -> stratified train/validation split -> fine-tuning
files (OpenAI, TRL chat_template, LLaMA-Factory sharegpt, ShareGPT/Hermes, xLAM, seed-000
chat-message), a dataset card (README.md) and report.html in the output folder.

Backend: an OpenAI-compatible endpoint when ``DF_API_URL`` is set (``DF_MODEL``, ``DF_API_KEY``),
otherwise the embedded local model. Run from this folder (``python apigen_synthesis.py``) or from
the folder above (``python api_pipelines/apigen_synthesis.py``); paths are resolved relative to
this file. Rerunning reuses every finished step and cached LLM response. ``--check`` checks
every step's columns first, without a model (``dataflow.core.preflight``).
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
from dataflow.core.preflight import active_check, check_pipeline
from dataflow.exports import convert_row, single_turn_chat, stratified_split
from dataflow.exports.card import license_of, run_summary, write_export_docs
from dataflow.exports.finetune import canonical_record, parse_formats, write_records
from dataflow.storage.head import first_rows_file
from dataflow.serving import serving_from_env
from dataflow.storage.atomic import atomic_write_jsonl, atomic_write_text
from dataflow.tools.calls import CallError, read_call_list
from dataflow.utils.storage import FileStorage

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "example_data" / "APIGen"
DEFAULT_CACHE = HERE / "cache" / "apigen"  # this pipeline's own step files and LLM cache
DEFAULT_OUT = HERE / "output"  # exports, apart from the cache: clearing the cache keeps them
EXPORT_FORMATS = ("openai", "trl", "llamafactory", "hermes", "xlam", "chat_message")
CHECKS = (
    "NoveltyFilter: the query copies no few-shot example or seed row and repeats no other query",
    "FormatChecker: every call names a listed tool and its arguments fit the tool's JSON Schema (jsonschema-rs); "
    "every argument value is grounded in the query; no call only when no listed tool fits",
    "ExecutionChecker: every call ran without error on the real function (example_data/APIGen/tools.py), in a "
    "sandboxed worker",
)


class APIGenPipeline:
    def __init__(self, cache_path: str | Path = DEFAULT_CACHE, data_dir: str | Path = DATA,
                 input_file: str | Path | None = None, out_dir: str | Path | None = None, semantic: bool = True,
                 formats: tuple[str, ...] = EXPORT_FORMATS, parameters: dict | None = None):
        data = Path(data_dir)
        self.cache_path = Path(cache_path)
        self.out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT / "apigen"
        self.formats = formats
        self.parameters = dict(parameters or {}, semantic=semantic)
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
        """The steps, then the stage table and the export; returns the stage table."""
        self.forward()
        table = stage_table(self.storage.reports)
        print(format_stage_table(table), flush=True)
        write_stage_table(table, self.cache_path / "apigen_stage_table.json")

        verified = self.storage.read_output(output_type="dict")
        self.export(verified)
        return table

    def forward(self) -> None:
        """The operator steps only (what ``--check`` checks)."""
        self.sampler.run(self.storage.step(), input_tools_key="function")
        self.generator.run(self.storage.step(), input_tools_key="tools", input_examples_key="examples")
        self.novelty_filter.run(self.storage.step(), input_query_key="query", input_examples_key="examples")
        self.format_checker.run(self.storage.step(), input_answers_key="answers", input_tools_key="tools",
                                input_query_key="query")
        self.execution_checker.run(self.storage.step(), input_answers_key="answers")
        if self.semantic_checker is not None:
            self.semantic_checker.run(self.storage.step(), input_query_key="query", input_answers_key="answers",
                                      input_tools_key="tools", input_results_key="execution_results")

    def checks(self) -> tuple[str, ...]:
        if self.semantic_checker is None:
            return CHECKS
        return CHECKS + ("SemanticChecker: an LLM judge reads the query and the calls (advisory, not enforced, while "
                         "it is not calibrated on the model: see the funnel's advisory counts)",)

    def export(self, rows: list[dict]) -> None:
        """Split by call signature and write ``<split>.<format>.jsonl`` for each format, the
        dataset card, run summary and report to ``out_dir``. Each example is the query and the
        verified calls (xLAM/APIGen style): the execution results verified the calls but are not
        part of the example, which would otherwise need a final assistant answer after them."""
        out_dir = self.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [_calls_read(row) for row in rows]  # each call read once; the split and every format take it as read
        result = stratified_split(rows, test_size=0.2, seed=0)
        print(result.summary(), flush=True)
        atomic_write_text(out_dir / "split_report.json", json.dumps(result.report(), indent=2) + "\n")
        files: dict[str, dict[str, str]] = {}
        skipped: dict[str, int] = {}
        written = 0
        record_formats = [f for f in self.formats if f != "chat_message"]
        for part, part_rows in (("train", result.train), ("validation", result.validation)):
            records = [canonical_record(single_turn_chat(row["query"], row["answers"], row.get("tools", [])))
                       for row in part_rows]
            done = write_records(records, out_dir, part, record_formats, dataset_name=f"apigen_{part}")
            written += done.rows
            for code, count in done.skipped.items():
                skipped[code] = skipped.get(code, 0) + count
            for fmt, path in done.paths.items():
                if fmt != "dataset_info" and done.rows:  # the card lists the splits that have rows
                    files.setdefault(fmt, {})[part] = path
            if "chat_message" in self.formats:  # the seed's format, with its system prompt
                path = out_dir / f"{part}.chat_message.jsonl"
                atomic_write_jsonl(path, (convert_row(row, "chat_message", system_prompt=self.system_prompt)
                                          for row in part_rows))
                if part_rows:
                    files.setdefault("chat_message", {})[part] = str(path)
        summary = run_summary(pipeline="apigen_synthesis", reports=self.storage.reports, serving=self.llm_serving,
                              files=files, rows=written, export_skipped=skipped, checks=self.checks(),
                              parameters=self.parameters, license=license_of(self.llm_serving))
        docs = write_export_docs(out_dir, summary, default=self.formats[0])
        print(f"fine-tuning files in {out_dir} ({', '.join(files)}); dataset card {docs['card']}; "
              f"report {docs.get('report') or docs.get('report_missing')}", flush=True)


def _calls_read(row: dict) -> dict:
    """``row`` with its ``answers`` read (``dataflow.tools.Call`` objects); an unreadable value
    stays as it is, for the split and the writers to report as they always have."""
    try:
        return {**row, "answers": read_call_list(row.get("answers"))}
    except CallError:
        return row


def _formats(text: str) -> tuple[str, ...]:
    try:
        return parse_formats(text, EXPORT_FORMATS)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def first_rows(source: Path, n: int, cache_dir: Path) -> Path:
    """``source`` itself, or (n > 0) its first ``n`` rows as JSON Lines in the cache folder,
    rewritten only when their content changes (so a rerun sees the same input fingerprint).
    A bad input is reported against ``source`` and its line."""
    return first_rows_file(source, n, cache_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", "--cache", dest="cache", default=str(DEFAULT_CACHE),
                        help="folder for step files and the LLM cache")
    parser.add_argument("--input", type=Path, default=DATA / "function_definitions.json",
                        help="tool definitions (JSON list or JSONL, one tool per row)")
    parser.add_argument("--rows", type=int, default=0, help="use the first N input rows (0: all, the default)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="fine-tuning files, dataset card and report (default: output/apigen_<N>rows, "
                             "one folder per --rows and --no-semantic)")
    parser.add_argument("--formats", type=_formats, default=EXPORT_FORMATS,
                        help=f"fine-tuning formats to write, comma-separated (default: {','.join(EXPORT_FORMATS)})")
    parser.add_argument("--no-semantic", dest="semantic", action="store_false",
                        help="skip the LLM judge (it only marks rows while it is not calibrated on the model)")
    parser.add_argument("--check", action="store_true",
                        help="pre-flight check: list every step and each column it reads that would not exist, "
                             "without calling a model or writing a step file (exit status 1 if one is missing)")
    args = parser.parse_args(argv)
    cache = Path(args.cache).resolve()
    first_entry = first_rows(args.input.resolve(), args.rows, cache)
    out_dir = args.out_dir or DEFAULT_OUT / f"apigen_{args.rows or 'all'}rows{'' if args.semantic else '_nosemantic'}"
    pipeline = APIGenPipeline(cache_path=cache, input_file=first_entry, out_dir=out_dir.resolve(),
                              semantic=args.semantic, formats=args.formats,
                              parameters={"rows": args.rows, "input": args.input.name})
    try:
        if args.check or active_check() is not None:
            return check_pipeline(pipeline.forward)
        pipeline.run()
    finally:
        pipeline.llm_serving.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_pipeline_main(main))  # a user error: one "error: ..." line, exit status 2
