"""The pre-flight check: every step of a pipeline and its columns, checked before any LLM call.

Inside ``with PipelineCheck() as check: pipeline.run()`` an operator's ``run`` does not run its
step. ``OperatorABC._run_step`` records it instead (operator, the columns its ``input_*``
arguments name, the columns it writes) and hands the next step the columns it would have read:
this step's input columns plus the ones it writes. No LLM call is made and no step file is
written. The first step's columns are read from the pipeline's input file through its storage; a
later step's come from the steps before it. So a wrong key in step 8 is reported before steps 1-7
spend their calls, and every missing column of every step is reported at once (a real run stops
at the first, with ``MissingColumnError``). The same idea as distilabel's check of its whole graph
before it runs.

Entry points: ``dataflow run --check SCRIPT`` runs a pipeline script this way (the seed's
pipeline class as written: ``pipeline.run()`` calls each ``op.run(storage.step(), ...)``), and
``check_pipeline(forward)`` is the helper the example scripts' ``--check`` calls. A script that
reads a checked step's rows after its steps (to export them, say) stops there: the read raises
``CheckComplete``, which the two entry points catch, since a check has no rows to give.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

__all__ = ["CheckComplete", "CheckedStep", "PipelineCheck", "active_check", "check_pipeline", "column_names",
           "missing_columns"]


class CheckComplete(BaseException):
    """Raised when code reads the rows of a step a ``PipelineCheck`` only recorded. A
    ``BaseException`` (like ``SystemExit``) so that a script's ``except Exception`` does not turn
    the end of a check into an error; ``dataflow run --check`` and ``check_pipeline`` catch it."""


def column_names(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """The column(s) one ``input_*`` / ``output_*`` argument names: a name, a list, or ``None``
    (an optional input that is absent) -> ``[]``."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def missing_columns(inputs: dict[str, Any], columns: list[str]) -> list[tuple[str, str]]:
    """``(argument, column)`` for every column an ``input_*`` argument names that ``columns``
    lacks, in argument order."""
    return [(key, column) for key, value in inputs.items() for column in column_names(value) if column not in columns]


@dataclass
class CheckedStep:
    """One step as the check saw it: what it reads, what it writes, and the input columns it
    names that its input would lack (``(argument, column)`` pairs)."""

    step: int
    operator: str
    inputs: dict[str, list[str]]
    written: list[str]
    available: list[str]
    missing: list[tuple[str, str]] = field(default_factory=list)


class PipelineCheck:
    """Records the steps run inside ``with PipelineCheck():`` instead of running them (see the
    module docstring). ``steps`` lists them in order, ``ok`` says whether no column is missing,
    ``table()`` prints them."""

    def __init__(self) -> None:
        self.steps: list[CheckedStep] = []
        #: absolute path of each step file a recorded step would write -> the columns it would hold
        self._columns: dict[str, list[str]] = {}

    # -- activation (a stack, like dataflow.core.runner's, so other threads see it too) ----------
    def __enter__(self) -> "PipelineCheck":
        with _lock:
            _stack.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        with _lock:
            for i in range(len(_stack) - 1, -1, -1):
                if _stack[i] is self:
                    del _stack[i]
                    break

    # -- what storage and operators ask --------------------------------------------------------
    def columns_of(self, path: str) -> list[str] | None:
        """The columns the step file ``path`` would hold, when a recorded step writes it."""
        columns = self._columns.get(os.path.abspath(path))
        return list(columns) if columns is not None else None

    def record(self, *, step: int, operator: str, inputs: dict[str, Any], written: list[str],
               columns: list[str], output_path: str) -> CheckedStep:
        """Record one step that reads a table with ``columns`` and adds ``written``."""
        named = {key: column_names(value) for key, value in inputs.items()}
        checked = CheckedStep(step, operator, named, list(written), list(columns), missing_columns(inputs, columns))
        self.steps.append(checked)
        self._columns[os.path.abspath(output_path)] = list(dict.fromkeys([*columns, *written]))
        return checked

    # -- the verdict ---------------------------------------------------------------------------
    @property
    def missing(self) -> list[tuple[CheckedStep, str, str]]:
        """Every missing column: ``(step, argument, column)``, in step order."""
        return [(s, key, column) for s in self.steps for key, column in s.missing]

    @property
    def ok(self) -> bool:
        """True when steps were recorded and no column any of them reads is missing."""
        return bool(self.steps) and not self.missing

    def table(self) -> str:
        """The steps, what each reads and writes and what it lacks, then one line per missing
        column saying which columns that step's input has."""
        header = ("step", "operator", "reads", "writes", "missing")
        rows = [(str(s.step), s.operator, ", ".join(c for names in s.inputs.values() for c in names) or "-",
                 ", ".join(s.written) or "-", ", ".join(f"{k}={c!r}" for k, c in s.missing) or "-")
                for s in self.steps]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        lines = [f"pre-flight check: {len(self.steps)} steps, {len(self.missing)} missing columns, 0 LLM calls"]
        for row in [header, *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
        for s, key, column in self.missing:
            lines.append(f"step {s.step} {s.operator}: {key}={column!r} is not a column of its input "
                         f"(it has: {', '.join(s.available) or '(none)'})")
        if not self.steps:
            lines.append("no operator step ran: does the script run its pipeline (under "
                         "if __name__ == '__main__':)?")
        elif self.ok:
            lines.append("ok: every column a step reads exists")
        else:
            lines.append("fix the keys above (or the step that should write them), then run again")
        return "\n".join(lines)


_stack: list[PipelineCheck] = []
_lock = threading.Lock()


def active_check() -> PipelineCheck | None:
    """The innermost active ``PipelineCheck``, or ``None`` (steps run for real)."""
    return _stack[-1] if _stack else None


def check_pipeline(forward: Callable[[], Any], out: TextIO | None = None) -> int:
    """Run ``forward`` (a pipeline's steps, e.g. ``pipeline.run``) under a ``PipelineCheck``,
    print its table to ``out`` (stdout) and return the exit status: 0 when every column exists,
    1 when any is missing. Under ``dataflow run --check`` (a check already active) the steps are
    recorded in that check, which ``dataflow run`` prints, and this returns 0."""
    outer = active_check()
    with nullcontext(outer) if outer is not None else PipelineCheck() as check:  # dataflow run --check: its own
        try:
            forward()
        except CheckComplete:
            pass
    if outer is not None:
        return 0
    print(check.table(), file=out or sys.stdout, flush=True)
    return 0 if check.ok else 1
