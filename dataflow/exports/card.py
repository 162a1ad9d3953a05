"""What a run produced, said once: ``run_summary.json`` and a Hugging Face dataset card.

``run_summary(...)`` gathers the pipeline, the model and its generation parameters, the funnel
(rows in, kept, failed / filtered by reason, per step, from the ``RunReport``s a ``FileStorage``
collects) and the checks every exported example passed. ``write_run_summary`` puts it beside the
exported files, where ``dataflow report`` reads it, and ``write_dataset_card`` writes the folder's
``README.md`` in the Hub's form: YAML front matter (license, task_categories, language,
size_categories, ``configs`` pointing at the files, one config per format) and the same facts in
prose, so ``datasets.load_dataset(folder)`` loads the default format as written.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Iterable

__all__ = [
    "SUMMARY_FILE", "CARD_FILE", "funnel_of", "serving_parameters", "run_summary", "write_run_summary",
    "read_run_summary", "license_of", "size_category", "dataset_card", "write_dataset_card", "write_export_docs",
]

SUMMARY_FILE = "run_summary.json"
CARD_FILE = "README.md"

#: what each format is for, in the card
FORMAT_NOTES = {
    "openai": "OpenAI fine-tuning JSONL (`messages` + `tools`; `tool_calls` with ids, arguments as JSON text)",
    "trl": "TRL / axolotl `chat_template` (`messages` + `tools`; arguments as objects, tool results with `name`)",
    "llamafactory": "LLaMA-Factory `sharegpt` (`conversations` of human / gpt / function_call / observation; "
                    "entry in `dataset_info.json`)",
    "hermes": "ShareGPT / Hermes (`<tools>`, `<tool_call>`, `<tool_response>`)",
    "xlam": "xLAM rows (`query`, `tools`, `answers` as JSON text)",
    "chat_message": "seed chat-message rows (assistant content is a JSON list of calls)",
}


def funnel_of(reports: Iterable[Any], export_skipped: dict[str, int] | None = None,
              exported: int | None = None) -> list[dict]:
    """One entry per step ``{"step", "operator", "rows_in", "kept", "failed", "filtered",
    "failed_by_reason", "filtered_by_reason", "advisory_by_reason", "counters", "reused",
    "seconds"}`` from
    ``RunReport`` objects (or their dicts), the latest run of each step; with ``exported``, a last
    ``export`` entry whose filtered rows are ``export_skipped``."""
    latest: dict[int, dict] = {}
    for report in reports:
        data = report if isinstance(report, dict) else report.as_dict()
        latest[int(data.get("step", len(latest) + 1))] = data
    funnel = []
    for step in sorted(latest):
        data = latest[step]
        funnel.append({
            "step": step, "operator": data.get("operator", "?"), "rows_in": int(data.get("rows_in", 0)),
            "kept": int(data.get("rows_out", data.get("kept", 0))), "failed": int(data.get("failed", 0)),
            "filtered": int(data.get("filtered", 0)),
            "failed_by_reason": dict(data.get("failed_by_reason") or {}),
            "filtered_by_reason": dict(data.get("filtered_by_reason") or {}),
            "advisory_by_reason": dict(data.get("advisory_by_reason") or {}),
            "counters": dict(data.get("counters") or {}),
            "reused": bool(data.get("reused", False)), "seconds": round(float(data.get("seconds", 0.0)), 2),
        })
    if exported is not None:
        skipped = dict(export_skipped or {})
        funnel.append({
            "step": (funnel[-1]["step"] + 1) if funnel else 1, "operator": "export",
            "rows_in": exported + sum(skipped.values()), "kept": exported, "failed": 0,
            "filtered": sum(skipped.values()), "failed_by_reason": {}, "filtered_by_reason": skipped,
            "advisory_by_reason": {}, "counters": {}, "reused": False, "seconds": 0.0,
        })
    return funnel


def reasons_text(entry: dict) -> str:
    """A funnel entry's rejections by reason, then the rows an advisory judge kept and what the
    operator counted (``stat_update``), as the card's and the HTML report's "reasons" cell."""
    def counts(by: dict) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))

    parts = [counts({**entry.get("failed_by_reason", {}), **entry.get("filtered_by_reason", {})})]
    if entry.get("advisory_by_reason"):
        parts.append("kept, advisory judge: " + counts(entry["advisory_by_reason"]))
    if entry.get("counters"):
        parts.append("counted: " + counts(entry["counters"]))
    return "; ".join(p for p in parts if p) or "-"


def serving_parameters(serving: Any) -> dict:
    """The model name and the generation parameters a serving object sends (temperature, extra
    request fields such as ``max_tokens``, concurrency); ``{}`` for what it does not have."""
    params: dict[str, Any] = {}
    for attribute in ("model_name", "temperature", "max_workers", "max_retries", "timeout"):
        value = getattr(serving, attribute, None)
        if isinstance(value, (str, int, float, bool)):
            params[attribute] = value
    extra = getattr(serving, "extra_body", None)
    if isinstance(extra, dict):
        params.update({k: v for k, v in extra.items() if isinstance(v, (str, int, float, bool))})
    backend = type(serving).__name__
    params["backend"] = backend
    return params


def license_of(serving: Any) -> str:
    """The card's ``license`` for data made by ``serving``: ``apache-2.0`` for the embedded
    Qwen2.5-Coder models (Apache-2.0), ``other`` for an endpoint, whose model's terms are not
    known here."""
    return "apache-2.0" if type(serving).__name__ == "LocalModelLLMServing" else "other"


def run_summary(*, pipeline: str, reports: Iterable[Any], files: dict[str, Any], rows: int,
                export_skipped: dict[str, int] | None = None, serving: Any = None,
                parameters: dict | None = None, checks: Iterable[str] = (), quality_flags: dict | None = None,
                considered: int | None = None, license: str = "other", extra: dict | None = None) -> dict:
    """The summary ``write_run_summary`` writes (JSON-native). ``files``: ``{format: path or
    {split: path}}``; ``rows``: examples in each file (or all splits); ``quality_flags``: rows
    flagged by each quality check code out of ``considered`` rows (``None``: not checked at export;
    ``dataflow report`` then checks the exported examples)."""
    generation = serving_parameters(serving) if serving is not None else {}
    return {
        "pipeline": pipeline,
        "created_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "model": generation.get("model_name", "unknown"),
        "generation": generation,
        "parameters": dict(parameters or {}),
        "funnel": funnel_of(reports, export_skipped, rows),
        "rows": rows,
        "files": files,
        "checks": list(checks),
        "quality_flags": dict(quality_flags) if quality_flags is not None else None,
        "considered": considered if considered is not None else rows + sum((export_skipped or {}).values()),
        "license": license,
        **(extra or {}),
    }


def write_run_summary(out_dir: str | Path, summary: dict) -> str:
    """Write ``run_summary.json`` into ``out_dir`` (atomically); file paths inside are made
    relative to the folder. Returns its path."""
    from ..storage.atomic import atomic_write_text

    out = Path(out_dir)
    summary = {**summary, "files": _relative_files(summary.get("files") or {}, out)}
    path = out / SUMMARY_FILE
    atomic_write_text(path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return str(path)


def read_run_summary(folder: str | Path) -> dict:
    """``run_summary.json`` of an export folder. Raises ``InputFileError`` when it is missing
    or not JSON."""
    from ..core.errors import InputFileError

    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        raise InputFileError(str(path), "not found", hint="give an export folder written by a dataflow pipeline")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputFileError(str(path), f"not JSON: {exc}") from None


def _relative_files(files: dict, out: Path) -> dict:
    def rel(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: rel(v) for k, v in value.items()}
        path = Path(value)
        try:
            return str(path.resolve().relative_to(out.resolve()))
        except ValueError:
            return str(value)

    return {fmt: rel(value) for fmt, value in files.items()}


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` label for ``n`` examples (``n<1K``, ``1K<n<10K``, ...)."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if n < bound), "n>1T")


def dataset_card(summary: dict, default: str | None = None, title: str | None = None) -> str:
    """The ``README.md`` text for an export folder from its run summary: YAML front matter with a
    config per format (``default`` first and marked default), then the pipeline, model,
    generation parameters, funnel and checks."""
    import yaml

    files = summary.get("files") or {}
    formats = [f for f in files if f in FORMAT_NOTES]
    if default in formats:
        formats.remove(default)
        formats.insert(0, default)
    configs = []
    for index, fmt in enumerate(formats):
        value = files[fmt]
        splits = value if isinstance(value, dict) else {"train": value}
        config: dict[str, Any] = {"config_name": fmt,
                                  "data_files": [{"split": s, "path": p} for s, p in splits.items()]}
        if index == 0:
            config["default"] = True
        configs.append(config)
    front = {
        "license": summary.get("license", "other"),
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": ["function-calling", "tool-use", "synthetic", "dataflow"],
        "size_categories": [size_category(int(summary.get("rows", 0)))],
        "pretty_name": title or f"{summary.get('pipeline', 'dataflow')} function-calling data",
        "configs": configs,
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {front['pretty_name']}", "",
              f"{summary.get('rows', 0)} function-calling examples made by the dataflow pipeline "
              f"`{summary.get('pipeline')}` on {summary.get('created_at', '?')}, each verified before export.", ""]
    lines += ["## Files", "", "| config | split | file | format |", "|---|---|---|---|"]
    for config in configs:
        for entry in config["data_files"]:
            lines.append(f"| `{config['config_name']}` | {entry['split']} | `{entry['path']}` | "
                         f"{FORMAT_NOTES[config['config_name']]} |")
    if int(summary.get("rows", 0)) == 0:  # datasets cannot read a table out of empty files
        lines += ["", "**This run exported no example**: the files are empty, so there is nothing for "
                  "`datasets.load_dataset` to load. The funnel below says why each row was rejected; the "
                  "rejected rows and their reasons are in the step files' `*.rejected.jsonl`.", ""]
    else:
        lines += ["", "```python", "from datasets import load_dataset",
                  f"data = load_dataset(\"path/to/this/folder\")  # the `{formats[0] if formats else 'default'}` config"]
        if len(formats) > 1:
            lines.append(f"data = load_dataset(\"path/to/this/folder\", \"{formats[1]}\")")
        lines += ["```", ""]
    if "llamafactory" in formats:
        lines += ["LLaMA-Factory: `dataset_info.json` in this folder has the entry; point `dataset_dir` here.", ""]
    lines += ["## How it was made", "", f"- pipeline: `{summary.get('pipeline')}`", f"- model: `{summary.get('model')}`"]
    for key, value in (summary.get("generation") or {}).items():
        if key != "model_name":
            lines.append(f"- {key}: `{value}`")
    for key, value in (summary.get("parameters") or {}).items():
        lines.append(f"- {key}: `{value}`")
    lines += ["", "## Funnel", "", "| step | operator | rows in | kept | failed | filtered | reasons |",
              "|---|---|---|---|---|---|---|"]
    for entry in summary.get("funnel") or []:
        lines.append(f"| {entry['step']} | {entry['operator']} | {entry['rows_in']} | {entry['kept']} | "
                     f"{entry['failed']} | {entry['filtered']} | {reasons_text(entry)} |")
    lines += ["", "## Checks every example passed", ""]
    lines += [f"- {check}" for check in summary.get("checks") or []] or ["- (none recorded)"]
    flags = summary.get("quality_flags")
    if flags is not None:
        considered = summary.get("considered") or 0
        lines += ["", f"Quality checks over the {considered} rows offered for export (rows flagged, left out):", ""]
        lines += [f"- `{code}`: {count}" for code, count in sorted(flags.items(), key=lambda kv: -kv[1])] or ["- none flagged"]
    lines += ["", "A visual report of this folder: `dataflow report <this folder>` (writes `report.html`).", ""]
    return "\n".join(lines)


def write_dataset_card(out_dir: str | Path, summary: dict, default: str | None = None,
                       title: str | None = None) -> str:
    """Write ``README.md`` (the dataset card) into ``out_dir`` atomically; returns its path.
    ``summary`` as ``run_summary`` makes it (paths are made relative to ``out_dir``)."""
    from ..storage.atomic import atomic_write_text

    out = Path(out_dir)
    summary = {**summary, "files": _relative_files(summary.get("files") or {}, out)}
    path = out / CARD_FILE
    atomic_write_text(path, dataset_card(summary, default, title))
    return str(path)


def write_export_docs(out_dir: str | Path, summary: dict, default: str | None = "openai",
                      title: str | None = None) -> dict[str, str]:
    """``run_summary.json``, the ``README.md`` card and (with plotly installed) ``report.html``
    in ``out_dir``: ``{"summary", "card", "report"}`` paths; ``"report"`` is absent, and
    ``"report_missing"`` says how to get it, when plotly is not installed."""
    paths = {"summary": write_run_summary(out_dir, summary), "card": write_dataset_card(out_dir, summary, default, title)}
    try:
        import plotly  # noqa: F401
    except ImportError:
        paths["report_missing"] = 'pip install "dataflow-fc[report]" for report.html'
        return paths
    from .html_report import write_report

    paths["report"] = write_report(out_dir)
    return paths
