"""The runner base class and the local runner."""

from __future__ import annotations

from typing import Any, Callable

from ..core.operator import OperatorABC, RowOutcome
from ..core.runner import using_runner


class Runner:
    """Base of runners. ``with runner: pipeline.run()`` makes every operator step inside the
    block execute its batch function through ``runner.run_batches``."""

    def run_batches(
        self, operator: OperatorABC, batch_fn: Callable[[list[dict]], list[RowOutcome]], rows: list[dict]
    ) -> list[RowOutcome]:
        raise NotImplementedError

    def start(self) -> "Runner":
        return self

    def shutdown(self) -> None:
        """Release what ``start`` acquired."""

    def __enter__(self) -> "Runner":
        self.start()
        self._ctx = using_runner(self)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._ctx.__exit__(*exc)
        finally:
            self.shutdown()


class LocalRunner(Runner):
    """Runs the batch function in this process over all rows at once (what ``_run_step`` does
    when no runner is active)."""

    def run_batches(self, operator, batch_fn, rows):
        return batch_fn(rows)

    def __repr__(self) -> str:
        return "LocalRunner()"
