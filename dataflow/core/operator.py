"""The operator contract: read a table from storage, run row logic over a batch, write a table.

Subclasses define ``run(storage, input_*_key=..., output_*_key=...)`` with explicit keyword
arguments (so a typo in a key name is a ``TypeError``) and a ``process_batch(rows, ...)`` that
maps input rows to one ``RowOutcome`` each. ``process_batch`` never touches storage, so any runner
(local, or distributed later) can call it on any slice of rows.

``_run_step`` does the rest: checks declared input columns before any LLM call, reuses a finished
step whose manifest matches, writes kept rows atomically and failed/filtered rows to the step's
rejected file, and reports counts by reason, plus the operator's own counters
(``self.stat_update("duplicates_dropped")``, datatrove's name). Under a ``PipelineCheck``
(``dataflow.core.preflight``) it records the step and its columns instead of running it.
"""

from __future__ import annotations

import abc
import hashlib
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable

from .errors import ConfigError, MissingColumnError
from .llm import CURRENT_STEP
from .preflight import active_check, column_names, missing_columns
from .runner import active_runner


if TYPE_CHECKING:  # pragma: no cover
    from ..prompts import PromptTemplate
    from .llm import LLMServingABC

OK, FAILED, FILTERED = "ok", "failed", "filtered"
#: the ``RunReport`` counts a step's manifest keeps (and a reused step reports again)
COUNT_FIELDS = ("rows_in", "rows_out", "kept", "failed", "filtered", "failed_by_reason", "filtered_by_reason",
                "advisory_by_reason", "counters")
#: guards ``stat_update`` (finish functions may run on several threads); module-level, because an
#: operator is pickled to Ray actors and a lock cannot be
_COUNTER_LOCK = threading.Lock()


@dataclass
class RowOutcome:
    """What became of one input row: kept (as zero or more output rows), failed, or filtered."""

    status: str
    rows: list[dict] = field(default_factory=list)
    reason: str | None = None
    #: a kept row's reason an LLM judge would have dropped it for, when that judge's verdict is
    #: only advisory (not calibrated on the model); counted in ``RunReport.advisory_by_reason``
    advisory: str | None = None

    @classmethod
    def keep(cls, *rows: dict) -> "RowOutcome":
        return cls(OK, list(rows))

    @classmethod
    def keep_advisory(cls, row: dict, reason: str) -> "RowOutcome":
        """Kept although a judge rejected it (``reason``), because the judge is only advisory."""
        if not reason:
            raise ValueError("an advisory rejection needs a reason")
        return cls(OK, [row], advisory=reason)

    @classmethod
    def keep_many(cls, rows: Iterable[dict]) -> "RowOutcome":
        return cls(OK, list(rows))

    @classmethod
    def fail(cls, reason: str) -> "RowOutcome":
        if not reason:
            raise ValueError("a failed row needs a reason")
        return cls(FAILED, [], reason)

    @classmethod
    def drop(cls, reason: str) -> "RowOutcome":
        if not reason:
            raise ValueError("a filtered row needs a reason")
        return cls(FILTERED, [], reason)


@dataclass
class RunReport:
    """Counts of one operator run; ``rows_in == sum of input rows``, and every input row is
    exactly one of kept, failed or filtered."""

    operator: str
    step: int
    output_file: str
    rows_in: int = 0
    rows_out: int = 0
    kept: int = 0
    failed: int = 0
    filtered: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    filtered_by_reason: dict[str, int] = field(default_factory=dict)
    #: kept rows an advisory judge rejected, by reason code (they are also counted in ``kept``)
    advisory_by_reason: dict[str, int] = field(default_factory=dict)
    #: what the operator counted with ``stat_update`` during this run (summed over batches and
    #: Ray actors), e.g. ``{"duplicates_dropped": 3}``; a reused step reports its manifest's
    counters: dict[str, int] = field(default_factory=dict)
    llm: dict[str, int] = field(default_factory=dict)
    reused: bool = False
    seconds: float = 0.0

    def summary_line(self) -> str:
        parts = [f"[step {self.step}] {self.operator}: {self.rows_in} in -> {self.rows_out} out"]
        if self.failed:
            parts.append(f"{self.failed} failed ({_fmt_counts(self.failed_by_reason)})")
        if self.filtered:
            parts.append(f"{self.filtered} filtered ({_fmt_counts(self.filtered_by_reason)})")
        if self.advisory_by_reason:
            parts.append(f"{sum(self.advisory_by_reason.values())} kept despite an advisory judge's "
                         f"rejection ({_fmt_counts(self.advisory_by_reason)})")
        if self.counters:
            parts.append(f"counted {_fmt_counts(self.counters)}")
        if self.reused:
            parts.append("reused finished step, 0 LLM calls")
        elif self.llm:
            parts.append(
                "LLM: {sent} sent, {cached} cached, {failed} failed".format(
                    sent=self.llm.get("requests_sent", 0),
                    cached=self.llm.get("cached", 0),
                    failed=self.llm.get("failed", 0),
                )
            )
        parts.append(f"{self.seconds:.1f}s")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def reason_code(reason: str) -> str:
    """The short code at the start of a failure reason (``llm_error: HTTP 500`` -> ``llm_error``)."""
    head, sep, _ = reason.partition(":")
    return head.strip() if sep and head and " " not in head.strip() else reason


def merge_row(row: dict, **new: Any) -> dict:
    """A copy of ``row`` with new columns set."""
    out = dict(row)
    out.update(new)
    return out


class OperatorABC(abc.ABC):
    """Base of every operator. Construction is cheap: no network, no model load."""

    #: name of the packaged prompt template(s) this operator renders (None: no LLM prompt)
    prompt_names: ClassVar[tuple[str, ...]] = ()
    #: True when ``process_batch`` gives each row the same outcome whatever other rows share its
    #: batch, so a runner may split a step into batches (e.g. over Ray actors). Operators whose
    #: row logic looks across the table (sampling from other rows, de-duplicating, row indexes)
    #: set False and always get the whole step in one call.
    rows_independent: ClassVar[bool] = True
    #: the version of what this operator's code keeps and writes, when it has one: bump it when a
    #: change to the code (a new check, say) changes the result, and steps made by an older
    #: version run again instead of being reused (their LLM replies come from the response cache).
    #: ``None`` (the default) leaves it out of the manifest.
    version: ClassVar[int | None] = None
    #: columns every kept row gets besides the ``output_*`` ones, under fixed names (e.g.
    #: APIGenGenerator's ``style`` and ``persona``): the pre-flight check counts them among the
    #: columns later steps can read. Override ``written_columns`` when a setting decides them.
    extra_output_columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, llm_serving: "LLMServingABC | None" = None, prompt_template: Any = None):
        self.llm_serving = llm_serving
        self.prompt_template = prompt_template
        self._templates: dict[str, "PromptTemplate"] = {}
        self.last_report: RunReport | None = None

    # -- prompts ------------------------------------------------------------------------------
    def template(self, name: str | None = None) -> "PromptTemplate":
        """The loaded template ``name`` (default: this operator's first), honouring overrides.
        ``prompt_template`` may be a path/text (for the first template) or a dict name -> path/text."""
        from ..prompts import load_template

        name = name or self.prompt_names[0]
        if name not in self._templates:
            override = self.prompt_template
            if isinstance(override, dict):
                override = override.get(name)
            elif name != self.prompt_names[0]:
                override = None
            self._templates[name] = load_template(name, override)
        return self._templates[name]

    def render(self, name: str | None = None, **variables: Any) -> tuple[str, str]:
        return self.template(name).render(**variables)

    @property
    def prompt_hash(self) -> str:
        if not self.prompt_names:
            return ""
        joined = "|".join(self.template(n).hash for n in self.prompt_names)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def require_llm(self) -> "LLMServingABC":
        if self.llm_serving is None:
            raise ConfigError(f"{type(self).__name__} needs llm_serving=...; none was given")
        return self.llm_serving

    # -- counters -----------------------------------------------------------------------------
    def stat_update(self, name: str, value: int = 1) -> None:
        """Count ``value`` more of ``name`` (a short code, like a reason: ``"duplicates_dropped"``)
        in this run's ``RunReport.counters``. Call it from ``process_batch`` or a finish function:
        each run starts from zero, counts are summed over batches and Ray actors, and they go
        into the step's manifest, so a reused step reports the same counters.
        Raises ``ValueError`` for a negative or non-integer ``value``."""
        if type(value) is not int or value < 0:
            raise ValueError(f"stat_update({name!r}, {value!r}): a count is a non-negative int")
        with _COUNTER_LOCK:
            counters = self.__dict__.setdefault("_counters", Counter())
            counters[name] += value

    def take_counters(self) -> dict[str, int]:
        """The counts ``stat_update`` recorded since the last call, which starts a new tally.
        A step's run takes them into its ``RunReport``; code that calls ``process_batch`` itself
        (``dataflow apigen generate``) reads them here."""
        with _COUNTER_LOCK:
            counters = self.__dict__.pop("_counters", None) or {}
        return {k: v for k, v in counters.items() if v}

    # -- contract -----------------------------------------------------------------------------
    @abc.abstractmethod
    def run(self, storage: Any, **keys: Any) -> RunReport:
        """Read ``storage``, process every row, write the result; return the counts."""

    @abc.abstractmethod
    def process_batch(self, rows: list[dict], **params: Any) -> list[RowOutcome]:
        """One ``RowOutcome`` per input row, in order. Must not touch storage."""

    def written_columns(self, outputs: dict[str, Any]) -> list[str]:
        """The columns this step writes into each kept row: its ``output_*`` columns (``outputs``
        maps argument -> column(s)), then ``extra_output_columns``."""
        return list(dict.fromkeys([*(c for value in outputs.values() for c in column_names(value)),
                                   *self.extra_output_columns]))

    # -- the shared step machinery ------------------------------------------------------------
    def _run_keys(self, storage: Any, keys: dict[str, Any], params: dict[str, Any] | None = None) -> RunReport:
        """``_run_step`` for the common ``run()``: ``keys`` maps each ``input_*`` / ``output_*``
        argument of ``run`` to its column(s); inputs are checked before any LLM call, and every
        key is passed on to ``process_batch``."""
        return self._run_step(
            storage,
            inputs={k: v for k, v in keys.items() if k.startswith("input_")},
            outputs={k: v for k, v in keys.items() if k.startswith("output_")},
            params=params,
            batch_fn=lambda rows: self.process_batch(rows, **keys),
        )

    def _run_step(
        self,
        storage: Any,
        *,
        inputs: dict[str, str | list[str] | None],
        outputs: dict[str, str],
        params: dict[str, Any] | None = None,
        batch_fn: Callable[[list[dict]], list[RowOutcome]] | None = None,
    ) -> RunReport:
        """Run this operator as one step of ``storage``.

        ``inputs`` maps each ``input_*_key`` argument name to the column(s) it names (``None``
        for an optional input that is absent); ``outputs`` maps each ``output_*_key`` argument
        to the column it writes; ``params`` are the other settings that change the result.
        """
        name = type(self).__name__
        started = time.perf_counter()
        columns = storage.read_columns()
        check = active_check()
        if check is not None:  # a pre-flight check: record the step and its columns, run nothing
            check.record(step=storage.operator_step + 1, operator=name, inputs=inputs,
                         written=self.written_columns(outputs), columns=columns,
                         output_path=storage.output_path())
            return RunReport(operator=name, step=storage.operator_step + 1, output_file=storage.output_path())
        missing = missing_columns(inputs, columns)
        # an empty table (every row rejected upstream) may lack columns its rows would have: the
        # step runs on nothing and says "0 rows in"
        if missing and storage.read(output_type="dict"):
            key, column = missing[0]
            raise MissingColumnError(name, key, column, columns, storage.input_path())

        serving = self.llm_serving
        if serving is not None:
            serving.use_cache_dir(storage.cache_path)
        manifest = {
            "operator": name,
            "operator_module": type(self).__module__,
            "parameters": _jsonable(
                {**{k: v for k, v in inputs.items()}, **outputs, **(params or {})}
            ),
            "model": serving.model_name if serving is not None else None,
            "prompt_hash": self.prompt_hash,
            "input_fingerprint": storage.input_fingerprint(),
        }
        if self.version is not None:
            manifest["operator_version"] = self.version
        previous = storage.find_reusable(manifest)
        if previous is not None:  # the counts it had (a count the manifest lacks is 0)
            counts = previous.get("counts") or {}
            report = RunReport(operator=name, step=storage.operator_step + 1, output_file=storage.output_path(),
                               reused=True, **{k: counts[k] for k in COUNT_FIELDS if k in counts})
            report.seconds = time.perf_counter() - started
            return self._finish(storage, report)

        rows = storage.read(output_type="dict")
        before = serving.stats.as_dict() if serving is not None else {}
        fn = batch_fn or self.process_batch
        runner = active_runner()
        label = f"step {storage.operator_step + 1} {name}"
        print(f"{label}: {len(rows)} rows in", file=sys.stderr, flush=True)
        token = CURRENT_STEP.set(label)
        self.take_counters()  # this run counts from zero (a runner adds its actors' counts here)
        try:
            outcomes = runner.run_batches(self, fn, rows) if runner is not None else fn(rows)
        finally:
            CURRENT_STEP.reset(token)
        counters = self.take_counters()
        if len(outcomes) != len(rows):
            raise RuntimeError(f"{name}.process_batch returned {len(outcomes)} outcomes for {len(rows)} rows")

        kept_rows: list[dict] = []
        rejected: list[dict] = []
        failed_by: Counter[str] = Counter()
        filtered_by: Counter[str] = Counter()
        advisory_by: Counter[str] = Counter()
        kept = 0
        for index, (row, outcome) in enumerate(zip(rows, outcomes)):
            if outcome.status == OK:
                kept += 1
                kept_rows.extend(outcome.rows)
                if outcome.advisory:
                    advisory_by[reason_code(outcome.advisory)] += 1
                continue
            code = reason_code(outcome.reason or "unknown")
            (failed_by if outcome.status == FAILED else filtered_by)[code] += 1
            rejected.append(
                {**row, "_operator": name, "_input_row": index, "_status": outcome.status, "_reason": outcome.reason}
            )
        out_columns = list(columns)  # then the declared outputs; storage adds any other column of the rows
        for column in outputs.values():
            if column not in out_columns:
                out_columns.append(column)

        after = serving.stats.as_dict() if serving is not None else {}
        llm_delta = {k: after[k] - before[k] for k in after}
        report = RunReport(
            operator=name,
            step=storage.operator_step + 1,
            output_file=storage.output_path(),
            rows_in=len(rows),
            rows_out=len(kept_rows),
            kept=kept,
            failed=sum(failed_by.values()),
            filtered=sum(filtered_by.values()),
            failed_by_reason=dict(failed_by),
            filtered_by_reason=dict(filtered_by),
            advisory_by_reason=dict(advisory_by),
            counters=dict(sorted(counters.items())),
            llm=llm_delta,
        )
        manifest["counts"] = {k: getattr(report, k) for k in COUNT_FIELDS}
        manifest["llm"] = llm_delta
        storage.write(kept_rows, columns=out_columns, manifest=manifest, rejected=rejected)
        report.seconds = time.perf_counter() - started
        return self._finish(storage, report)

    def _finish(self, storage: Any, report: RunReport) -> RunReport:
        self.last_report = report
        reports = getattr(storage, "reports", None)
        if reports is not None:
            reports.append(report)
        print(report.summary_line(), file=sys.stderr, flush=True)
        return report


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr, sort_keys=True))
