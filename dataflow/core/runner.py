"""The hook through which a runner executes an operator's batch function over a step's rows.

``OperatorABC._run_step`` reads the step's rows, then hands ``batch_fn`` and the rows to the
active runner (``runner.run_batches(operator, batch_fn, rows) -> list[RowOutcome]``, one outcome
per row, in input order); without one it calls ``batch_fn(rows)`` itself. Checking input
columns, reusing finished steps, counting and the atomic write with its manifest stay in
``_run_step``, so every runner reads and writes the same step files.

Runners live in ``dataflow.runners`` (``LocalRunner``, ``RayRunner``) and are activated with
``with runner: pipeline.run()``; this module only keeps the stack of active runners so that
``dataflow.core`` never imports them.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from .operator import OperatorABC, RowOutcome

__all__ = ["BatchRunner", "active_runner", "using_runner"]


class BatchRunner(Protocol):
    def run_batches(
        self, operator: "OperatorABC", batch_fn: Callable[[list[dict]], list["RowOutcome"]], rows: list[dict]
    ) -> list["RowOutcome"]:
        """One ``RowOutcome`` per row of ``rows``, in order. A runner that runs ``batch_fn``
        elsewhere adds the LLM statistics it spent there to ``operator.llm_serving.stats``, and
        the counters its copies of the operator recorded there to the operator's
        (``operator.stat_update(name, count)``), so ``RunReport.counters`` holds the whole step's."""


_stack: list[Any] = []
_lock = threading.Lock()


def active_runner() -> BatchRunner | None:
    """The innermost active runner, or ``None`` (run the batch function in this process)."""
    return _stack[-1] if _stack else None


@contextlib.contextmanager
def using_runner(runner: BatchRunner) -> Iterator[BatchRunner]:
    """Make ``runner`` execute every operator step run inside the block."""
    with _lock:
        _stack.append(runner)
    try:
        yield runner
    finally:
        with _lock:
            for i in range(len(_stack) - 1, -1, -1):
                if _stack[i] is runner:
                    del _stack[i]
                    break
