"""What the three LLM judges share (``SemanticChecker``, ``CompositionTaskFilter``,
``ConversationQualityEvaluator``): independent votes, and a gate that makes a judge's verdict
advisory on a model where it has not been shown to tell good items from bad ones.

A judge is an ``LLMJudge`` ``StructuredLLMOperator``: a reply model, a template, what one vote
says (``accepts(row, reply)``) and what a decided row becomes (``on_accept`` / ``on_reject``), on
the shared structured round (``judge_round``: each vote is a request of that round).

Votes (``n_votes=N``, default 1), after APIGen-MT's review committee: each row is asked N times
in the same batch. Vote 0 is exactly the request ``n_votes=1`` sends (so raising N reuses cached
first votes); vote k > 0 adds ``{"temperature": VOTE_TEMPERATURE, "seed": k}`` to its request, so
it is a distinct request, a distinct response-cache entry and an independent sample on backends
that sample. A row is accepted only when a strict majority of the N votes accept it; it is
rejected when the accepting votes cannot reach a majority even if every failed vote had accepted;
otherwise (failed or cut votes leave it open) the row fails with the first vote's failure reason.

Gate: ``dataflow/quality/calibration/results.json`` holds each judge's accept-good and reject-bad
rates per model (``benchmarks/bench_judges.py``). With ``judge_mode="auto"`` (default) a judge
whose figures for this model, settings and prompt are below 90%/90%, or absent, only advises: a
row it rejects is kept, its verdict columns say so, and the run report counts it
(``advisory_by_reason``); ``judge_mode="enforce"`` always drops. Either way a judge that is not
calibrated on the model says so in one line on stderr when it runs. Deterministic checks in these
operators are always enforced.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..core import RowOutcome
from ..core.errors import ConfigError
from ..core.structured import Parsed

VOTE_TEMPERATURE = 0.7
JUDGE_MODES = ("auto", "enforce")


def vote_options(n_votes: int) -> list[dict | None]:
    """Per-vote request fields: none for vote 0, a sampling temperature and seed for the others."""
    return [None] + [{"temperature": VOTE_TEMPERATURE, "seed": k} for k in range(1, n_votes)]


@dataclass(frozen=True)
class Tally:
    """How the votes on one row came out: ``accepted`` / ``rejected`` replies, ``failed`` votes
    (request failed, reply invalid or cut) and the first failure's reason."""

    accepted: int
    rejected: int
    failed: int
    failure: str | None = None

    @property
    def n(self) -> int:
        return self.accepted + self.rejected + self.failed

    @property
    def decision(self) -> str | None:
        """``"accept"`` on a strict majority, ``"reject"`` when no majority can accept, else None."""
        if 2 * self.accepted > self.n:
            return "accept"
        if 2 * (self.accepted + self.failed) <= self.n:
            return "reject"
        return None

    def failure_reason(self) -> str:
        """The reason an undecided row fails: the first vote's failure (its code first), with
        the count for several votes."""
        reason = self.failure or "invalid_reply: no vote"
        return f"{reason} ({self.describe()})" if self.n > 1 else reason

    def describe(self) -> str:
        """``"votes 2/3 accept"`` (with failures named), or ``""`` for a single vote."""
        if self.n == 1:
            return ""
        text = f"votes {self.accepted}/{self.n} accept"
        return text + (f", {self.failed} failed" if self.failed else "")


def tally(votes: Sequence[Parsed], accepts: Callable[[Any], bool]) -> tuple[Tally, list[Any], list[Any]]:
    """``(tally, accepting replies, rejecting replies)`` of one row's votes."""
    yes = [p.value for p in votes if p.ok and accepts(p.value)]
    no = [p.value for p in votes if p.ok and not accepts(p.value)]
    failures = [p.reason for p in votes if not p.ok]
    return Tally(len(yes), len(no), len(failures), failures[0] if failures else None), yes, no


def with_tally(text: str, counted: Tally) -> str:
    """``text`` with the vote count in front (unchanged for a single vote)."""
    described = counted.describe()
    return f"{described}: {text}" if described else text


class LLMJudge:
    """Mixin for a ``StructuredLLMOperator`` whose verdicts come from an LLM: ``n_votes``,
    ``judge_mode``, the calibration gate and ``judge_round``. Call ``_init_judge`` in
    ``__init__``. A judge's reply is a verdict, never re-asked (``echo_check`` off: a reason may
    rightly quote its instructions)."""

    n_votes: int = 1
    judge_mode: str = "auto"
    echo_check: bool = False

    def _init_judge(self, n_votes: int, judge_mode: str) -> None:
        if not isinstance(n_votes, int) or isinstance(n_votes, bool) or n_votes < 1:
            raise ConfigError(f"{type(self).__name__}: n_votes must be an integer >= 1, got {n_votes!r}")
        if judge_mode not in JUDGE_MODES:
            raise ConfigError(f"{type(self).__name__}: judge_mode must be one of {JUDGE_MODES}, got {judge_mode!r}")
        self.n_votes = n_votes
        self.judge_mode = judge_mode

    # -- calibration -----------------------------------------------------------------------------
    def calibration_settings(self) -> dict[str, Any]:
        """The settings a calibration entry must have been measured with."""
        return {"n_votes": self.n_votes}

    def calibration(self) -> dict | None:
        """This judge's calibration entry for the serving's model (None: not measured)."""
        from ..quality.calibration import lookup

        model = getattr(self.llm_serving, "model_name", None)  # type: ignore[attr-defined]
        return lookup(type(self).__name__, model, self.calibration_settings(), self.prompt_hash)  # type: ignore[attr-defined]

    def calibrated(self) -> bool:
        """The judge reached the target on its labelled set with this model, settings and prompt."""
        from ..quality.calibration import meets_target

        return meets_target(self.calibration())

    def enforced(self) -> bool:
        """Whether a rejection drops the row (else it is kept and counted as advisory)."""
        return self.judge_mode == "enforce" or self.calibrated()

    def judge_params(self) -> dict[str, Any]:
        """Manifest parameters: a change in any of them re-runs the step."""
        return {"n_votes": self.n_votes, "judge_mode": self.judge_mode, "judge_enforced": self.enforced()}

    def announce_calibration(self) -> str | None:
        """Print (stderr) and return the one line saying the judge is not calibrated on this
        model, or return None when it is."""
        from ..quality.calibration import TARGET, figures, meets_target

        entry = self.calibration()
        if meets_target(entry):
            return None
        name = type(self).__name__
        model = getattr(self.llm_serving, "model_name", None)  # type: ignore[attr-defined]
        settings = ", ".join(f"{k}={v}" for k, v in self.calibration_settings().items())
        if entry is None:
            measured = f"has no calibration for this prompt and {settings}"
        else:
            rates = figures(entry)
            measured = (f"accepted {rates['accept_good']:.0%} of good and rejected {rates['reject_bad']:.0%} "
                        f"of bad calibration items ({settings})")
        if self.judge_mode == "enforce":
            consequence = "its rejections are enforced anyway (judge_mode='enforce')"
        else:
            consequence = ("its verdicts are advisory: rows it rejects are kept, marked and counted "
                           "(judge_mode='enforce' drops them)")
        line = (f"dataflow: {name} on model {model} {measured}, below the {TARGET:.0%}/{TARGET:.0%} target; "
                f"{consequence}. Measure with benchmarks/bench_judges.py, or use votes or a stronger model.")
        print(line, file=sys.stderr, flush=True)
        return line

    def judge_round(
        self,
        rows: list[dict],
        variables: Callable[[dict], dict],
        reply_model: type,
        accepts: Callable[[dict, Any], bool],
        on_accept: Callable[[dict, Tally, list], RowOutcome],
        on_reject: Callable[[dict, Tally, list, bool], RowOutcome],
        row_schema: Callable[[dict], dict] | None = None,
    ) -> list[RowOutcome]:
        """One judging round over ``rows`` on the shared structured round
        (``StructuredLLMOperator.structured_round``): ``variables(row)`` gives the template's
        variables (or raises ``InvalidInput``: the row fails with its reason) and ``row_schema(row)``,
        when given, the reply schema for that row (a narrowed ``reply_model`` schema). Each row
        is asked ``n_votes`` times in one batch (vote k with ``vote_options(n_votes)[k]``);
        ``accepts(row, reply)`` reads one vote. A row a majority accepts ends as
        ``on_accept(row, tally, accepting replies)``; a rejected one as ``on_reject(row, tally,
        rejecting replies, enforced)``; an undecided one fails with the first vote's failure."""
        from ..core.errors import InvalidInput

        outcomes: list[RowOutcome | None] = [None] * len(rows)
        asked: dict[int, tuple[dict, dict | None]] = {}  # row index -> (template variables, schema)
        for i, row in enumerate(rows):
            try:
                asked[i] = (variables(row), row_schema(row) if row_schema is not None else None)
            except InvalidInput as exc:
                outcomes[i] = RowOutcome.fail(str(exc))
        enforced = self.enforced() if asked else True
        options = vote_options(self.n_votes)
        ballots = [(i, k) for i in asked for k in range(self.n_votes)]  # one request per vote, row by row
        replies: dict[tuple[int, int], Any] = {}

        def finish(ballot: tuple[int, int], reply: Any) -> RowOutcome:
            replies[ballot] = reply
            return RowOutcome.keep(rows[ballot[0]])

        voted = self.structured_round(  # type: ignore[attr-defined]
            ballots, lambda ballot: asked[ballot[0]][0], reply_model, finish,
            row_schema=(lambda ballot: asked[ballot[0]][1]) if row_schema is not None else None,
            options=lambda ballot: options[ballot[1]],
        )
        votes_of: dict[int, list[Parsed]] = {i: [] for i in asked}
        for ballot, outcome in zip(ballots, voted):
            ok = outcome.status == "ok"
            votes_of[ballot[0]].append(Parsed(replies[ballot], None) if ok else Parsed(None, outcome.reason))
        for i, votes in votes_of.items():
            counted, yes, no = tally(votes, lambda reply: accepts(rows[i], reply))
            if counted.decision == "accept":
                outcomes[i] = on_accept(rows[i], counted, yes)
            elif counted.decision == "reject":
                outcomes[i] = on_reject(rows[i], counted, no, enforced)
            else:
                outcomes[i] = RowOutcome.fail(counted.failure_reason())
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def reject(row: dict, reason: str, enforced: bool) -> RowOutcome:
        """The outcome of a row the judge rejected: dropped when ``enforced`` (``self.enforced()``,
        read once per batch), else kept, with its verdict columns already set in ``row``, and the
        rejection counted as advisory."""
        return RowOutcome.drop(reason) if enforced else RowOutcome.keep_advisory(row, reason)
