"""``dataflow report``: one self-contained HTML file showing what a run produced.

Reads an export folder (``run_summary.json`` and the OpenAI file the pipeline wrote beside it)
and draws, with plotly (its JavaScript inlined once, so the file opens offline): the funnel per
step with rejection reasons, calls per conversation and per assistant turn, user / assistant
turns per conversation, tools and argument types used, message lengths, the share of rows each
quality check (``dataflow.quality``) flagged, and a few example conversations as text.

Needs the ``report`` extra (``pip install "dataflow-fc[report]"``); plotly is imported only here.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..tools.calls import json_type, read_calls
from .card import read_run_summary, reasons_text
from .finetune import read_record

__all__ = ["REPORT_FILE", "QUALITY_CHECKS", "report_data", "build_report", "write_report"]

REPORT_FILE = "report.html"

#: the deterministic checks of ``dataflow.quality.conversation_problems``, by reason code
QUALITY_CHECKS = (
    "ungrounded_argument", "result_echoes_arguments", "degenerate_text", "instruction_leak", "spec_leak",
    "user_asks_own_facts", "user_states_answer", "user_role_reversal", "repeated_user_turn",
    "answer_ignores_results", "answer_copies_result", "missing_final_answer", "unused_tool",
    "near_duplicate_tools", "invalid_call",
)
#: codes that do not apply to call-only examples (a query and its calls, APIGen's form): they end
#: at the calls, and list tools the query does not need
_CALL_ONLY_EXEMPT = {"missing_final_answer", "unused_tool"}


def _openai_files(folder: Path, summary: dict) -> list[Path]:
    value = (summary.get("files") or {}).get("openai")
    if value is None:
        return []
    paths = list(value.values()) if isinstance(value, dict) else [value]
    return [folder / p for p in paths]


def report_data(folder: str | Path) -> dict:
    """Everything the report draws, as plain data: ``summary`` (the run summary), ``records``
    (canonical records of the OpenAI file(s)), counts per conversation and turn, tool and
    argument-type counts, message lengths by role, and ``flags`` (``{check code: share of rows
    flagged}``) with ``flag_base`` (what the share is of). Raises ``InputFileError`` when the
    folder has no run summary."""
    from ..quality import conversation_problems

    folder = Path(folder)
    summary = read_run_summary(folder)
    records: list[dict] = []
    for path in _openai_files(folder, summary):
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    records.append(read_record(json.loads(line), "openai"))
    calls_per_conversation, calls_per_turn, users, assistants = [], [], [], []
    tools: Counter[str] = Counter()
    argument_types: Counter[str] = Counter()
    lengths: dict[str, list[int]] = {"system": [], "user": [], "assistant": [], "tool": []}
    for record in records:
        n_calls = 0
        for message in record["messages"]:
            role = message["role"]
            lengths.setdefault(role, []).append(len(message.get("content") or ""))
            if role == "assistant" and message.get("tool_calls"):
                calls = read_calls(message["tool_calls"])
                calls_per_turn.append(len(calls))
                n_calls += len(calls)
                for call in calls:
                    tools[call["name"]] += 1
                    for value in call["arguments"].values():
                        argument_types[json_type(value)] += 1
        calls_per_conversation.append(n_calls)
        users.append(sum(m["role"] == "user" for m in record["messages"]))
        assistants.append(sum(m["role"] == "assistant" for m in record["messages"]))
    flags = dict(summary.get("quality_flags") or {})
    base = int(summary.get("considered") or 0)
    flag_base = f"{base} rows offered for export"
    if summary.get("quality_flags") is None:  # no exporter counts (APIGen): run the checks over the exported examples
        base = len(records)
        flag_base = f"{base} exported examples"
        for record in records:
            call_only = not any(m["role"] == "tool" for m in record["messages"])  # a query and its calls
            codes = {p.split(":", 1)[0] for p in conversation_problems(record["messages"], record["tools"])}
            for code in codes - (_CALL_ONLY_EXEMPT if call_only else set()):
                flags[code] = flags.get(code, 0) + 1
    shares = {code: (flags.get(code, 0) / base if base else 0.0) for code in (*QUALITY_CHECKS, *flags)}
    return {
        "summary": summary, "records": records, "calls_per_conversation": calls_per_conversation,
        "calls_per_turn": calls_per_turn, "user_turns": users, "assistant_turns": assistants,
        "tools": dict(tools.most_common()), "argument_types": dict(argument_types.most_common()),
        "lengths": lengths, "flags": shares, "flag_counts": flags, "flag_base": flag_base,
    }


def _figures(data: dict) -> list[tuple[str, Any]]:
    import plotly.graph_objects as go

    def layout(fig: Any, title: str, **kw: Any) -> Any:
        fig.update_layout(title=title, height=360, margin={"l": 60, "r": 20, "t": 50, "b": 60},
                          template="plotly_white", **kw)
        return fig

    figures = []
    funnel = data["summary"].get("funnel") or []
    labels = [f"{e['step']}. {e['operator']}" for e in funnel]
    fig = go.Figure(go.Bar(name="kept", x=labels, y=[e["kept"] for e in funnel], marker_color="#2e7d32"))
    reasons = sorted({r for e in funnel for r in (*e["failed_by_reason"], *e["filtered_by_reason"])})
    for reason in reasons:
        fig.add_bar(name=reason, x=labels,
                    y=[e["failed_by_reason"].get(reason, 0) + e["filtered_by_reason"].get(reason, 0) for e in funnel])
    figures.append(("funnel", layout(fig, "Funnel: rows kept and rejected (by reason) at each step", barmode="stack",
                                     yaxis_title="rows")))

    def histogram(values: list[int], name: str) -> Any:
        counts = Counter(values)
        keys = sorted(counts)
        return go.Bar(name=name, x=keys, y=[counts[k] for k in keys])

    fig = go.Figure([histogram(data["calls_per_conversation"], "calls per conversation"),
                     histogram(data["calls_per_turn"], "calls per assistant turn")])
    figures.append(("calls", layout(fig, "Calls per conversation and per assistant turn", barmode="group",
                                    xaxis_title="calls", yaxis_title="count", xaxis_dtick=1)))
    fig = go.Figure([histogram(data["user_turns"], "user turns"),
                     histogram(data["assistant_turns"], "assistant turns")])
    figures.append(("turns", layout(fig, "User and assistant turns per conversation", barmode="group",
                                    xaxis_title="turns", yaxis_title="conversations",
                                    xaxis_dtick=1)))
    top_tools = list(data["tools"].items())[:25]
    fig = go.Figure(go.Bar(x=[n for n, _ in top_tools], y=[c for _, c in top_tools], name="calls"))
    figures.append(("tools", layout(fig, "Tools called (top 25)", yaxis_title="calls")))
    fig = go.Figure(go.Bar(x=list(data["argument_types"]), y=list(data["argument_types"].values()),
                           name="arguments", marker_color="#6a1b9a"))
    figures.append(("argument_types", layout(fig, "Argument value types", yaxis_title="arguments")))
    fig = go.Figure([go.Box(y=values, name=role, boxpoints="outliers") for role, values in data["lengths"].items() if values])
    figures.append(("lengths", layout(fig, "Message length by role (characters)", yaxis_title="characters")))
    flags = data["flags"]
    fig = go.Figure(go.Bar(x=[100 * v for v in flags.values()], y=list(flags), orientation="h",
                           marker_color="#c62828", text=[f"{100 * v:.0f}%" for v in flags.values()],
                           textposition="outside"))
    layout(fig, f"Share flagged by each quality check (of {data['flag_base']})", xaxis_title="% flagged",
           xaxis_range=[0, 105])
    fig.update_layout(height=max(360, 26 * len(flags) + 100), margin={"l": 200, "r": 20, "t": 50, "b": 50})
    figures.append(("quality", fig))
    return figures


_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; } .wide { grid-column: 1 / 3; }
.conv { border: 1px solid #ccc; border-radius: 6px; padding: 8px 12px; margin: 12px 0; background: #fafafa; }
.msg { margin: 6px 0; white-space: pre-wrap; word-break: break-word; }
.role { font-weight: bold; display: inline-block; min-width: 110px; }
.system .role { color: #555; } .user .role { color: #1565c0; } .assistant .role { color: #2e7d32; }
.tool .role { color: #ef6c00; } code { background: #eee; padding: 1px 3px; }
"""


def _conversation_html(record: dict) -> str:
    parts = []
    for message in record["messages"]:
        role = message["role"]
        if role == "assistant" and message.get("tool_calls"):
            if message.get("content"):
                parts.append(_msg("assistant", "ASSISTANT", message["content"]))
            for call in read_calls(message["tool_calls"]):
                text = f"{call['name']}({json.dumps(call['arguments'], ensure_ascii=False)})"
                parts.append(_msg("assistant", "CALL", text))
        elif role == "tool":
            parts.append(_msg("tool", f"RESULT {message.get('name', '')}", message.get("content") or ""))
        else:
            parts.append(_msg(role, role.upper(), message.get("content") or ""))
    names = ", ".join(t["function"]["name"] for t in record["tools"])
    return f'<div class="conv"><div class="msg"><span class="role">TOOLS</span>{html.escape(names)}</div>{"".join(parts)}</div>'


def _msg(css: str, label: str, text: str, limit: int = 1500) -> str:
    shown = text if len(text) <= limit else text[:limit] + " ..."
    return f'<div class="msg {css}"><span class="role">{html.escape(label)}</span>{html.escape(shown)}</div>'


def build_report(folder: str | Path, examples: int = 3) -> str:
    """The report of export ``folder`` as one HTML document (plotly's JavaScript inlined, no
    network needed), with ``examples`` example conversations. Raises ``InputFileError`` when the
    folder has no run summary; ``ImportError`` naming the ``report`` extra without plotly."""
    try:
        import plotly.io as pio
        from plotly.offline import get_plotlyjs
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError('dataflow report draws with plotly: pip install "dataflow-fc[report]"') from exc

    data = report_data(folder)
    summary = data["summary"]
    title = f"dataflow report: {summary.get('pipeline', '?')}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{len(data['records'])} exported examples; model <code>{html.escape(str(summary.get('model')))}</code>; "
            f"made {html.escape(str(summary.get('created_at', '?')))}; folder <code>{html.escape(str(Path(folder).resolve()))}</code></p>"]
    rows = "".join(f"<tr><td>{e['step']}</td><td>{html.escape(e['operator'])}</td><td>{e['rows_in']}</td><td>{e['kept']}</td>"
                   f"<td>{e['failed']}</td><td>{e['filtered']}</td><td>{html.escape(reasons_text(e))}</td></tr>"
                   for e in summary.get("funnel") or [])
    body.append("<h2>Funnel</h2><table id='funnel-table'><tr><th>step</th><th>operator</th><th>rows in</th><th>kept</th>"
                f"<th>failed</th><th>filtered</th><th>reasons</th></tr>{rows}</table>")
    body.append("<h2>Plots</h2><div class='grid'>")
    for name, fig in _figures(data):
        wide = " wide" if name in ("funnel", "quality") else ""
        div = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"plot-{name}",
                          config={"displayModeBar": False, "responsive": True})
        body.append(f"<div class='plot{wide}' data-plot='{name}'>{div}</div>")
    body.append("</div>")
    checks = "".join(f"<li>{html.escape(c)}</li>" for c in summary.get("checks") or [])
    body.append(f"<h2>Checks every example passed</h2><ul>{checks or '<li>(none recorded)</li>'}</ul>")
    body.append("<h2>Example conversations</h2>")
    shown = data["records"][:examples]
    body.extend(_conversation_html(r) for r in shown)
    if not shown:
        body.append("<p>No example was exported.</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>")


def write_report(folder: str | Path, out: str | Path | None = None, examples: int = 3) -> str:
    """Write ``build_report(folder)`` to ``out`` (default ``<folder>/report.html``), atomically;
    returns the path."""
    from ..storage.atomic import atomic_write_text

    path = Path(out) if out is not None else Path(folder) / REPORT_FILE
    atomic_write_text(path, build_report(folder, examples))
    return str(path)
