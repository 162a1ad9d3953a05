"""Seed 000's four scripts as subcommands, with the same arguments:

    dataflow apigen generate --config-path --qa-jsonl-path --function-definitions-path --output-path
    dataflow apigen verify   --generated-query-answer-path --function-definitions-path --verified-query-answer-path
    dataflow split   --input-file-path --train-output-path --val-output-path [--test-output-path] --test-size
    dataflow convert --input-path --output-path [--format chat_message|openai|trl|llamafactory|hermes|xlam]
                     [--input-format rows|xlam|chat_message|glaive|sharegpt|llamafactory|hermes|openai|trl]

The LLM backend comes from the environment (``DF_API_URL``/``DF_MODEL``/``DF_API_KEY``, else the
embedded model), or from ``--api-url``/``--model``. ``register(main_group)`` adds them to a group.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

#: the system message `dataflow convert --format chat_message` writes without --system-prompt-path
CHAT_MESSAGE_SYSTEM_PROMPT = (
    "You are a helpful assistant with access to tools. Reply with a JSON list of function calls, "
    'each {"function_name": ..., "arguments": {...}}, or [] when no tool fits the request.'
)


# -- small file helpers -------------------------------------------------------------------------
def read_rows(path: str | Path, *, allow_empty: bool = False) -> list[dict]:
    """Rows of a JSONL / JSON / CSV / Parquet file; errors name the file and line
    (``InputFileError``), and a file without rows is an error unless ``allow_empty``."""
    from ..core.errors import InputFileError
    from ..storage import formats

    p = Path(path)
    if not p.is_file():
        raise InputFileError(str(p), "file not found" if not p.exists() else "is a folder, expected a data file",
                             hint="check the path")
    table = formats.read_table(p, formats.format_of(p) or "jsonl")
    if not table.rows and not allow_empty:
        raise InputFileError(str(p), "has no rows", hint="the file must hold at least one JSON object")
    return table.rows


def write_rows(path: str | Path, rows: list[dict]) -> None:
    """Write JSONL atomically (temp file + rename)."""
    from ..storage.atomic import atomic_write_jsonl

    atomic_write_jsonl(path, rows)


def make_serving(api_url: str | None = None, model: str | None = None, max_workers: int | None = None) -> Any:
    """``--api-url`` when given, else ``serving_from_env()`` (falls back to ``DF_API_URL``)."""
    overrides: dict[str, Any] = {}
    if max_workers:
        overrides["max_workers"] = max_workers
    if api_url:
        from ..serving import APILLMServing_request

        return APILLMServing_request(api_url=api_url, model_name=model or os.environ.get("DF_MODEL") or "gpt-4o",
                                     **overrides)
    if model:
        os.environ.setdefault("DF_MODEL", model)
    try:
        from ..serving import serving_from_env
    except ImportError:
        serving_from_env = None
    if serving_from_env is not None:
        return serving_from_env(**overrides)
    from ..serving import APILLMServing_request

    url = os.environ.get("DF_API_URL")
    if not url:
        raise click.ClickException("set DF_API_URL (and DF_MODEL) or pass --api-url")
    return APILLMServing_request(api_url=url, model_name=os.environ.get("DF_MODEL", "gpt-4o"), **overrides)


def _backend_options(fn: Any) -> Any:
    fn = click.option("--max-workers", type=int, default=None, help="Concurrent LLM requests.")(fn)
    fn = click.option("--model", default=None, help="Model name (default: $DF_MODEL).")(fn)
    fn = click.option("--api-url", default=None, help="OpenAI-compatible chat-completions URL (default: $DF_API_URL).")(fn)
    return fn


def _outcome_summary(name: str, outcomes: list) -> None:
    from collections import Counter

    from ..core.operator import reason_code

    bad = Counter(reason_code(o.reason) for o in outcomes if o.status != "ok")
    kept = sum(1 for o in outcomes if o.status == "ok")
    detail = ", ".join(f"{k}: {v}" for k, v in bad.most_common())
    advisory = Counter(reason_code(o.advisory) for o in outcomes if o.status == "ok" and o.advisory)
    advised = ", ".join(f"{k}: {v}" for k, v in advisory.most_common())
    click.echo(f"{name}: {len(outcomes)} in, {kept} kept" + (f", rejected ({detail})" if detail else "")
               + (f", kept despite an advisory judge's rejection ({advised})" if advised else ""), err=True)


def _run(op: Any, rows: list[dict], rejected: list[dict], **kwargs: Any) -> list[dict]:
    """``op.process_batch`` over ``rows``; rejected rows collected with their stage and reason."""
    outcomes = op.process_batch(rows, **kwargs)
    _outcome_summary(type(op).__name__, outcomes)
    kept = []
    for row, outcome in zip(rows, outcomes):
        if outcome.status == "ok":
            kept.extend(outcome.rows)
        else:
            rejected.append({**row, "_operator": type(op).__name__, "_status": outcome.status, "_reason": outcome.reason})
    return kept


# -- apigen group -------------------------------------------------------------------------------
@click.group("apigen")
def apigen() -> None:
    """Single-turn function-calling data (APIGen): generate and verify query/answer pairs."""


@apigen.command("generate")
@click.option("--config-path", required=True, type=click.Path(exists=True, dir_okay=False), help="Generator config (YAML or JSON).")
@click.option("--qa-jsonl-path", required=True, type=click.Path(exists=True, dir_okay=False), help="Seed QA JSONL (query + function_calls, or xLAM rows).")
@click.option("--function-definitions-path", required=True, type=click.Path(exists=True), help="OpenAI function specs (JSON), or a Python module of tools.")
@click.option("--output-path", required=True, type=click.Path(dir_okay=False), help="Generated query/answer JSONL.")
@click.option("--seed", type=int, default=0, show_default=True)
@_backend_options
def generate(config_path: str, qa_jsonl_path: str, function_definitions_path: str, output_path: str, seed: int,
             api_url: str | None, model: str | None, max_workers: int | None) -> None:
    """Generate query/answer pairs for every function, imitating the seed QA examples."""
    from ..operators.apigen import APIGenGenerator, DataSampler, load_generator_config

    config = load_generator_config(config_path)
    tools = _load_tools(function_definitions_path)
    rows = [{"tools": [t]} for t in tools]
    sampler = DataSampler(qa_jsonl_path, num_examples=int(config.get("examples_per_prompt", 3)),
                          extra_tools=int(config.get("extra_tools", 1)), seed=seed)
    serving = make_serving(api_url, model, max_workers)
    try:
        generator = APIGenGenerator(serving, config=config, seed=seed)
        rejected: list[dict] = []
        rows = _run(sampler, rows, rejected, input_tools_key="tools")
        rows = _run(generator, rows, rejected)
    finally:
        serving.close()
    out = [{k: r[k] for k in ("query", "answers", "tools", "style", "persona") if k in r} for r in rows]
    write_rows(output_path, out)
    if rejected:
        write_rows(_rejected_path(output_path), rejected)
    dropped = generator.take_counters().get("duplicates_dropped", 0)
    click.echo(f"wrote {len(out)} query/answer pairs to {output_path} ({dropped} duplicate queries dropped)")


@apigen.command("verify")
@click.option("--generated-query-answer-path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--function-definitions-path", required=True, type=click.Path(exists=True), help="OpenAI function specs (JSON), or a Python module of tools.")
@click.option("--verified-query-answer-path", required=True, type=click.Path(dir_okay=False))
@click.option("--tools-module", type=click.Path(exists=True), default=None, help="Python module/folder of the real functions: enables the execution stage.")
@click.option("--semantic/--no-semantic", default=True, show_default=True, help="Run the LLM semantic checker.")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Per-call execution timeout (s).")
@click.option("--memory-mb", type=int, default=512, show_default=True, help="Execution worker memory limit.")
@_backend_options
def verify(generated_query_answer_path: str, function_definitions_path: str, verified_query_answer_path: str,
           tools_module: str | None, semantic: bool, timeout: float, memory_mb: int, api_url: str | None,
           model: str | None, max_workers: int | None) -> None:
    """Format check (every call, full JSON Schema), optional execution, semantic check; prints
    the stage table and writes the verified rows, the rejected rows and the table (JSON)."""
    from ..core.operator import RunReport
    from ..operators.apigen import ExecutionChecker, FormatChecker, SemanticChecker
    from ..operators.apigen.report import format_stage_table, stage_table, write_stage_table

    from ..core.errors import InputFileError

    tools = _load_tools(function_definitions_path)
    rows = read_rows(generated_query_answer_path)
    for number, row in enumerate(rows, 1):
        missing = [k for k in ("query",) if not isinstance(row.get(k), str)]
        if "answers" not in row and "function_calls" not in row:
            missing.append("answers")
        if missing:
            raise InputFileError(generated_query_answer_path, f"row {number} has no {' or '.join(map(repr, missing))}",
                                 hint="each row needs a 'query' and its 'answers' (or 'function_calls')")
        row.setdefault("tools", tools)  # a row's own tools win, in every stage
        if "answers" not in row and "function_calls" in row:
            row["answers"] = row["function_calls"]
    rejected: list[dict] = []
    reports = [RunReport("APIGenGenerator", 0, generated_query_answer_path, rows_in=len(rows), rows_out=len(rows), kept=len(rows))]

    def stage(op: Any, current: list[dict]) -> list[dict]:
        before = len(rejected)
        kept = _run(op, current, rejected)
        report = RunReport(type(op).__name__, len(reports), "", rows_in=len(current), rows_out=len(kept))
        for r in rejected[before:]:
            from ..core.operator import reason_code

            bucket = report.failed_by_reason if r["_status"] == "failed" else report.filtered_by_reason
            code = reason_code(r["_reason"])
            bucket[code] = bucket.get(code, 0) + 1
        report.failed = sum(report.failed_by_reason.values())
        report.filtered = sum(report.filtered_by_reason.values())
        reports.append(report)
        return kept

    rows = stage(FormatChecker(allow_dots=True), rows)
    if tools_module:
        rows = stage(ExecutionChecker(tools_module, timeout=timeout, memory_mb=memory_mb), rows)
    if semantic:
        serving = make_serving(api_url, model, max_workers)
        try:
            checker = SemanticChecker(serving)
            checker.announce_calibration()  # one line when its verdicts are only advisory on this model
            rows = stage(checker, rows)
        finally:
            serving.close()
    write_rows(verified_query_answer_path, rows)
    write_rows(_rejected_path(verified_query_answer_path), rejected)
    table = stage_table(reports)
    write_stage_table(table, Path(verified_query_answer_path).with_suffix(".stages.json"))
    click.echo(format_stage_table(table))


# -- split / convert ----------------------------------------------------------------------------
@click.command("split")
@click.option("--input-file-path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--train-output-path", required=True, type=click.Path(dir_okay=False))
@click.option("--val-output-path", required=True, type=click.Path(dir_okay=False))
@click.option("--test-output-path", default=None, type=click.Path(dir_okay=False), help="Also write a test split (the held-out share is divided between validation and test).")
@click.option("--test-size", type=float, default=0.2, show_default=True, help="Share of each call signature held out.")
@click.option("--seed", type=int, default=0, show_default=True)
def split(input_file_path: str, train_output_path: str, val_output_path: str, test_output_path: str | None,
          test_size: float, seed: int) -> None:
    """Stratified train/validation(/test) split by call signature (rare signatures stay in train)."""
    from ..exports import stratified_split

    if not 0 < test_size < 1:
        raise click.BadParameter("must be between 0 and 1", param_hint="--test-size")
    rows = read_rows(input_file_path)
    result = stratified_split(rows, test_size, with_test=test_output_path is not None, seed=seed)
    write_rows(train_output_path, result.train)
    write_rows(val_output_path, result.validation)
    if test_output_path:
        write_rows(test_output_path, result.test)
    report = result.report()
    from ..storage.atomic import atomic_write_text

    atomic_write_text(Path(train_output_path).with_suffix(".split_report.json"), json.dumps(report, indent=2) + "\n")
    click.echo(result.summary())
    for signature, counts in sorted(result.class_counts.items(), key=lambda kv: -sum(kv[1].values()))[:20]:
        click.echo(f"  {signature}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v or k != "test"), err=True)


INPUT_FORMATS = ("rows", "xlam", "chat_message", "glaive", "sharegpt", "llamafactory", "hermes", "openai", "trl")
#: output formats written from the canonical record (dataflow.exports.finetune)
RECORD_FORMATS = ("openai", "trl", "llamafactory", "hermes")
MAX_ERROR_LINES = 20


@click.command("convert")
@click.option("--input-path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--output-path", required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["chat_message", "openai", "trl", "llamafactory", "hermes", "xlam"]),
              default="chat_message", show_default=True,
              help="Target fine-tuning format (llamafactory also writes dataset_info.json beside the output).")
@click.option("--system-prompt-path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="System prompt file (chat_message / openai / hermes).")
@click.option("--function-definitions-path", type=click.Path(exists=True), default=None,
              help="Tools for rows that carry none.")
@click.option("--input-format", type=click.Choice(INPUT_FORMATS), default="rows", show_default=True,
              help="rows: query + answers/function_calls (+ tools); xlam / chat_message: those single-turn rows; "
                   "glaive, sharegpt / llamafactory (function_call/observation), hermes, openai, trl: conversations.")
def convert(input_path: str, output_path: str, fmt: str, system_prompt_path: str | None,
            function_definitions_path: str | None, input_format: str) -> None:
    """Convert rows to a fine-tuning format. A row that cannot be read or written is a row error
    (file and line on stderr, the row in <output>.rejected.jsonl); the other rows are written."""
    from ..core.errors import InputFileError, ToolSpecError
    from ..exports import CONVERSATION_READERS, READERS, RowError, convert_row
    from ..exports.convert import BY_ORDER_NOTE, single_turn_chat
    from ..exports.finetune import canonical_record, to_openai_record, write_record
    from ..tools import pair_results

    system_prompt = Path(system_prompt_path).read_text(encoding="utf-8").strip() if system_prompt_path else None
    tools = _load_tools(function_definitions_path) if function_definitions_path else None

    conversation_input = input_format in CONVERSATION_READERS
    if conversation_input and fmt not in RECORD_FORMATS:
        raise click.BadParameter(f"{input_format} conversations convert to {', '.join(RECORD_FORMATS)}",
                                 param_hint="--format")
    if fmt == "chat_message" and system_prompt is None:
        system_prompt = CHAT_MESSAGE_SYSTEM_PROMPT
    rows = read_rows(input_path)
    lines = _row_lines(input_path, len(rows))
    out, rejected, names, by_order = [], [], {}, 0
    for row, line in zip(rows, lines):
        notes: list[str] = []
        try:
            if input_format == "rows" and (not isinstance(row.get("query"), str)
                                           or ("answers" not in row and "function_calls" not in row)):
                raise RowError("expected a row with a 'query' text and 'answers' (or 'function_calls')")
            single = None if conversation_input else row if input_format == "rows" else READERS[input_format](row)
            if fmt in RECORD_FORMATS:  # one canonical record, then the writer of the format
                if conversation_input:
                    chat = READERS[input_format](row)
                    if tools and not chat["tools"]:
                        chat["tools"] = tools
                    if system_prompt and not any(m.get("role") == "system" for m in chat["messages"]):
                        chat["messages"].insert(0, {"role": "system", "content": system_prompt})
                    if pair_results(chat["messages"]).by_order:
                        notes.append(BY_ORDER_NOTE)
                else:
                    chat = single_turn_chat(single["query"], single.get("answers", single.get("function_calls")),
                                            single.get("tools") or tools or [], system_prompt)
                record = canonical_record(chat)
                out.append(to_openai_record(record, names) if fmt == "openai" else write_record(record, fmt))
            else:  # chat_message, xlam: single-turn rows
                out.append(convert_row(single, fmt, system_prompt=system_prompt,
                                       tools=tools if not single.get("tools") else None, names=names, notes=notes))
        except (ValueError, ToolSpecError, TypeError, KeyError) as exc:
            reason = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
            rejected.append({**row, "_line": line, "_reason": reason})
            continue
        by_order += bool(notes)
    for entry in rejected[:MAX_ERROR_LINES]:
        click.echo(f"{input_path}:{entry['_line']}: row error: {entry['_reason']}", err=True)
    if len(rejected) > MAX_ERROR_LINES:
        click.echo(f"... {len(rejected) - MAX_ERROR_LINES} more row errors", err=True)
    if not out:
        first = rejected[0] if rejected else {"_line": "?", "_reason": "no rows"}
        raise InputFileError(input_path, f"no row could be converted ({len(rejected)} row errors; first: "
                                         f"{first['_reason']})", line=first["_line"] if isinstance(first["_line"], int) else None,
                             hint=f"check --input-format (one of {', '.join(INPUT_FORMATS)})")
    # the same keys on every row (Arrow would fill the missing ones with null): an empty system is
    # none (LLaMA-Factory), parallel_tool_calls true is OpenAI's default
    key, default = {"llamafactory": ("system", ""), "openai": ("parallel_tool_calls", True)}.get(fmt, (None, None))
    if key is not None and any(key in r for r in out):
        for r in out:
            r.setdefault(key, default)
    write_rows(output_path, out)
    if rejected:
        write_rows(_rejected_path(output_path), rejected)
    if fmt == "llamafactory":
        _write_dataset_info(Path(output_path))
    if names:
        from ..storage.atomic import atomic_write_text

        names_path = Path(output_path).with_suffix(".tool_names.json")
        atomic_write_text(names_path, json.dumps(names, indent=2, ensure_ascii=False) + "\n")
        click.echo(f"renamed {len(names)} tool names OpenAI refuses ('.' and other characters -> '_'); "
                   f"mapping in {names_path}", err=True)
    if by_order:
        click.echo(f"{by_order} rows: tool results without tool_call_id were paired with the calls by order", err=True)
    errors = f" ({len(rejected)} row errors in {_rejected_path(output_path)})" if rejected else ""
    click.echo(f"wrote {len(out)} rows in {fmt} format to {output_path}{errors}")


def _write_dataset_info(output: Path) -> None:
    """Add (or update) the entry for ``output`` in ``dataset_info.json`` beside it."""
    from ..exports.finetune import llamafactory_dataset_info
    from ..storage.atomic import atomic_write_text

    info_path = output.with_name("dataset_info.json")
    info = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError:
            info = {}
    info.update(llamafactory_dataset_info(output.name.split(".")[0], output.name))
    atomic_write_text(info_path, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    click.echo(f"LLaMA-Factory entry {output.name.split('.')[0]!r} in {info_path}", err=True)


def _row_lines(path: str | Path, count: int) -> list[int]:
    """The line of each row in a JSONL file (blank lines skipped), else its row number."""
    p = Path(path)
    from ..storage.formats import format_of

    if (format_of(p) or "jsonl") == "jsonl":
        numbers = [n for n, line in enumerate(p.read_bytes().split(b"\n"), 1) if line.strip()]
        if len(numbers) == count:
            return numbers
    return list(range(1, count + 1))


def _load_tools(path: str) -> list[dict]:
    from ..tools import normalize_tools

    from ..core.errors import InputFileError, ToolSpecError
    from ..storage.formats import _decode_text

    p = Path(path)
    if p.suffix == ".py" or p.is_dir():  # derived in the sandbox: the module's code never runs here
        from ..operators.apigen.execution import sandboxed_tool_specs

        return sandboxed_tool_specs(p)
    if not p.is_file():
        raise InputFileError(str(p), "tool definitions file not found", hint="check the path")
    text = _decode_text(p, p.read_bytes())
    try:
        specs = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise InputFileError(str(p), f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno,
                                 hint="tool definitions are a JSON list of function specs (or JSONL)") from None
        specs = read_rows(p)  # JSON Lines, one tool per line
    if not specs:
        raise InputFileError(str(p), "defines no tool", hint="list at least one function spec")
    try:
        return normalize_tools(specs)
    except ToolSpecError as exc:
        raise ToolSpecError(exc.tool, exc.problem, where=str(p), hint="fix the tool definition") from None


def _rejected_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(f"{p.stem}.rejected.jsonl")


COMMANDS = {"apigen": apigen, "split": split, "convert": convert}


def register(main_group: click.Group) -> None:
    """Add ``apigen``, ``split`` and ``convert`` to ``main_group``."""
    for command in COMMANDS.values():
        main_group.add_command(command)
