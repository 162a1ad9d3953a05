"""What the three LLM judges share (``SemanticChecker``, ``CompositionTaskFilter``,
``ConversationQualityEvaluator``): independent votes, and a gate that makes a judge's verdict
advisory on a model where it has not been shown to tell good items from bad ones.

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

from ..core import RowOutcome, parse_reply
from ..core.errors import ConfigError
from ..core.structured import Parsed

VOTE_TEMPERATURE = 0.7
JUDGE_MODES = ("auto", "enforce")


def vote_options(n_votes: int) -> list[dict | None]:
    """Per-vote request fields: none for vote 0, a sampling temperature and seed for the others."""
    return [None] + [{"temperature": VOTE_TEMPERATURE, "seed": k} for k in range(1, n_votes)]


def ask_votes(
    serving: Any,
    conversations: Sequence[list[dict]],
    reply_model: type,
    n_votes: int,
    json_schema: dict | Sequence[dict] | None = None,
) -> list[list[Parsed]]:
    """Ask every conversation ``n_votes`` times in ONE batch; per conversation, its votes in
    order, each validated against ``reply_model``. ``json_schema``: one schema, or one per
    conversation (default: ``reply_model``'s)."""
    from ..core import schema_for

    if not conversations:
        return []
    if json_schema is None or isinstance(json_schema, dict):
        schemas = [json_schema or schema_for(reply_model)] * len(conversations)
    else:
        schemas = list(json_schema)
    options = vote_options(n_votes)
    flat = [c for c in conversations for _ in range(n_votes)]
    results = serving.generate_from_conversations(
        flat,
        json_schema=[s for s in schemas for _ in range(n_votes)],
        options=options * len(conversations) if n_votes > 1 else None,
    )
    parsed = [parse_reply(result, reply_model) for result in results]
    return [parsed[i * n_votes:(i + 1) * n_votes] for i in range(len(conversations))]


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
    """Mixin for an ``OperatorABC`` whose verdicts come from an LLM: ``n_votes``,
    ``judge_mode`` and the calibration gate. Call ``_init_judge`` in ``__init__``."""

    n_votes: int = 1
    judge_mode: str = "auto"

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
        prompt: Callable[[dict], tuple[str, str]],
        reply_model: type,
        accepts: Callable[[dict, Any], bool],
        on_accept: Callable[[dict, Tally, list], RowOutcome],
        on_reject: Callable[[dict, Tally, list, bool], RowOutcome],
        row_schema: Callable[[dict], dict] | None = None,
    ) -> list[RowOutcome]:
        """One judging round over ``rows``: ``prompt(row)`` gives ``(system, user)`` (or raises
        ``InvalidInput``: the row fails with its reason) and ``row_schema(row)``, when given, the
        reply schema for that row (a narrowed ``reply_model`` schema); every row is asked
        ``n_votes`` times in one batch; ``accepts(row, reply)`` reads one vote. A row a majority
        accepts ends as ``on_accept(row, tally, accepting replies)``; a rejected one as
        ``on_reject(row, tally, rejecting replies, enforced)``; an undecided one fails with the
        first vote's failure."""
        from ..core.errors import InvalidInput
        from ..core.llm import prompt_messages

        serving = self.require_llm()  # type: ignore[attr-defined]
        outcomes: list[RowOutcome | None] = [None] * len(rows)
        asked: list[int] = []
        conversations = []
        schemas: list[dict] = []
        for i, row in enumerate(rows):
            try:
                messages = prompt_messages(*prompt(row))
                schema = row_schema(row) if row_schema is not None else None
            except InvalidInput as exc:
                outcomes[i] = RowOutcome.fail(str(exc))
                continue
            conversations.append(messages)
            if schema is not None:
                schemas.append(schema)
            asked.append(i)
        enforced = self.enforced() if asked else True
        votes_of = ask_votes(serving, conversations, reply_model, self.n_votes, schemas if row_schema else None)
        for i, votes in zip(asked, votes_of):
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
