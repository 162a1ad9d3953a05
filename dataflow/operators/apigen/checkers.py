"""APIGen's verification stages 1 and 3: ``FormatChecker`` and ``SemanticChecker``
(stage 2, ``ExecutionChecker``, lives in ``execution.py``).

Each checker adds a verdict column and a reason column. A row that fails is dropped with a reason
whose code names the stage (``failed_format: ...``, ``failed_grounding: ...``, ``failed_semantic: ...``), so the base class
writes it to the step's rejected file; ``keep_failed=True`` keeps it (verdict ``False``) instead.
An LLM request that fails is a failed row (``llm_error: ...``), not a verdict.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool

from ...core import OperatorABC, RowOutcome, RunReport, merge_row, schema_for
from ...core.errors import ToolSpecError
from ..conversations._base import Text
from ..judges import LLMJudge, Tally, with_tally


def _fixed_tools(tools: Any) -> Any:
    """A tool list given to a checker: specs, a JSON file path, or a module (``.py``) path."""
    if tools is None or not isinstance(tools, str) or tools.lstrip().startswith("["):
        return tools
    from pathlib import Path

    path = Path(tools)
    if path.suffix == ".py" or path.is_dir():  # derived in the sandbox: the module's code never runs here
        from .execution import sandboxed_tool_specs

        return sandboxed_tool_specs(path)
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def ungrounded_calls(query: str, calls: Any, tools: Any) -> list[str]:
    """Each argument value of ``calls`` that neither ``query`` states nor its tool's spec allows
    (enum member, default, boolean), as ``"call N (name): ungrounded_argument: ..."``
    (``dataflow.quality.grounding``)."""
    from ...quality.grounding import ungrounded_arguments
    from ...tools.spec import normalize_tools
    from ..formats.convert import calls_of

    specs = {t["function"]["name"]: t for t in normalize_tools(tools, allow_dots=True)} if tools else {}
    problems = []
    for index, call in enumerate(calls_of(calls)):
        for problem in ungrounded_arguments(call["arguments"], specs.get(call["name"]), [query]):
            problem = problem.replace("appears in no earlier user turn or tool result", "is not in the query")
            problems.append(f"call {index} ({call['name']}): {problem}")
    return problems


class FormatChecker(OperatorABC):
    """Stage 1: every call must name a listed function with valid arguments
    (``dataflow.validate_calls``), and (``check_grounding``, on by default) every argument value
    must come from the query or the tool's spec (enum, default, boolean): a row with an invented
    value is dropped as ``failed_grounding: ...``. Tools come from the row (``input_tools_key``):
    a row's own tools win, as in ``SemanticChecker``; ``tools=`` (a list, a JSON file path, or a
    Python module path) serves the rows that carry none."""

    def __init__(self, tools: Any = None, keep_failed: bool = False, allow_dots: bool = True,
                 check_grounding: bool = True):
        super().__init__()
        self.tools = _fixed_tools(tools)
        self.keep_failed = keep_failed
        self.allow_dots = allow_dots
        self.check_grounding = check_grounding

    def run(self, storage: Any, input_answers_key: str = "answers", input_tools_key: str | None = "tools",
            output_key: str = "format_valid", output_reason_key: str = "format_reason",
            input_query_key: str = "query") -> RunReport:
        tools_key = input_tools_key if self.tools is None else None
        query_key = input_query_key if self.check_grounding else None
        return self._run_step(
            storage, inputs={"input_answers_key": input_answers_key, "input_tools_key": tools_key,
                             "input_query_key": query_key},
            outputs={"output_key": output_key, "output_reason_key": output_reason_key},
            params={"tools": self.tools, "keep_failed": self.keep_failed, "allow_dots": self.allow_dots,
                    "check_grounding": self.check_grounding},
            batch_fn=lambda rows: self.process_batch(rows, input_answers_key, input_tools_key, output_key,
                                                     output_reason_key, input_query_key),
        )

    def process_batch(self, rows: list[dict], input_answers_key: str = "answers", input_tools_key: str | None = "tools",
                      output_key: str = "format_valid", output_reason_key: str = "format_reason",
                      input_query_key: str = "query") -> list[RowOutcome]:
        from ...tools.validation import compile_tools

        fixed = compile_tools(self.tools, allow_dots=self.allow_dots) if self.tools is not None else None
        outcomes = []
        for row in rows:
            own = row.get(input_tools_key) if input_tools_key else None  # a row's own tools win
            try:
                toolset = compile_tools(own, allow_dots=self.allow_dots) if own or fixed is None else fixed
            except ToolSpecError as exc:
                outcomes.append(self._verdict(row, [f"invalid tool spec: {exc}"], output_key, output_reason_key))
                continue
            answers = row.get(input_answers_key, row.get("function_calls"))
            errors = toolset.validate(answers)
            if errors or not self.check_grounding:
                outcomes.append(self._verdict(row, errors, output_key, output_reason_key))
                continue
            tools = own if own or self.tools is None else self.tools
            ungrounded = ungrounded_calls(str(row.get(input_query_key) or ""), answers, tools)
            outcomes.append(self._verdict(row, ungrounded, output_key, output_reason_key, code="failed_grounding"))
        return outcomes

    def _verdict(self, row: dict, errors: list[str], key: str, reason_key: str,
                 code: str = "failed_format") -> RowOutcome:
        reason = "; ".join(errors)
        if errors and not self.keep_failed:
            return RowOutcome.drop(f"{code}: {reason}")
        return RowOutcome.keep(merge_row(row, **{key: not errors, reason_key: f"{code}: {reason}" if errors else ""}))


class SemanticVerdict(BaseModel):
    """The judge's reply: checks a small model can do, each written before the verdict that
    depends on it (the schema keeps this order). ``best_function`` is the judge's own choice among
    the row's functions (the row's schema narrows it to their names and ``"none"``), compared with
    the calls made, rather than a yes/no on the calls it is shown."""

    model_config = ConfigDict(extra="forbid")
    asked: Text(100, 2)  # what the query asks for
    best_function: str  # the listed function that gives what was asked, or "none"
    values: Text(200, 1)  # each argument value, and whether the query states it
    values_in_question: StrictBool  # "yes" is not a verdict
    passes: StrictBool  # the calls and their results answer the query

    def failed_checks(self, called: list[str]) -> list[str]:
        """The checks this reply fails for a row whose calls name ``called``."""
        failed = []
        if (self.best_function not in called) if called else (self.best_function != "none"):
            failed.append(f"best function is {self.best_function}, not {', '.join(called) or 'no call'}")
        failed += [name for name in ("values_in_question", "passes") if not getattr(self, name)]
        return failed

    def thought(self, called: list[str]) -> str:
        """The checks as one line, for the ``semantic_thought`` column."""
        failed = self.failed_checks(called)
        verdict = f"fails: {'; '.join(failed)}" if failed else "passes"
        return f"asked: {self.asked}; best function: {self.best_function}; values: {self.values}; {verdict}"


class SemanticChecker(LLMJudge, OperatorABC):
    """Stage 3: an LLM judge reads the query, each call (with its function's description and its
    execution result) and the other available functions, and answers the checks of
    ``SemanticVerdict`` (what the query asks; which listed function gives it, compared with the
    function called; does the query state every argument value), then its verdict. Rows whose execution failed
    (``input_execution_ok_key`` is ``False``) are not judged, and dropped as ``failed_execution``,
    unless ``check_failed_execution=True``.

    ``n_votes``: independent judge samples per row, kept on a strict majority (see
    ``dataflow.operators.judges``); ``judge_mode``: ``"auto"`` keeps rows the judge rejects, with
    ``semantic_valid=False``, when the judge is not calibrated on the model; ``"enforce"`` drops
    them. Output: ``semantic_valid`` (bool) and ``semantic_thought`` (the checks, the vote count,
    and ``advisory:`` when the rejection was not enforced)."""

    prompt_names = ("apigen_semantic_checker",)

    def __init__(self, llm_serving: Any = None, keep_failed: bool = False, check_failed_execution: bool = False,
                 max_result_chars: int = 1500, prompt_template: Any = None, *, n_votes: int = 1,
                 judge_mode: str = "auto"):
        super().__init__(llm_serving, prompt_template)
        self.keep_failed = keep_failed
        self.check_failed_execution = check_failed_execution
        self.max_result_chars = max_result_chars
        self._init_judge(n_votes, judge_mode)

    def run(self, storage: Any, input_query_key: str = "query", input_answers_key: str = "answers",
            input_tools_key: str = "tools", input_results_key: str | None = "execution_results",
            input_execution_ok_key: str | None = "execution_ok", output_key: str = "semantic_valid",
            output_thought_key: str = "semantic_thought") -> RunReport:
        columns = storage.read_columns()
        results_key = input_results_key if input_results_key in columns else None
        ok_key = input_execution_ok_key if input_execution_ok_key in columns else None
        if not self.keep_failed:
            self.announce_calibration()
        return self._run_step(
            storage,
            inputs={"input_query_key": input_query_key, "input_answers_key": input_answers_key,
                    "input_tools_key": input_tools_key, "input_results_key": results_key,
                    "input_execution_ok_key": ok_key},
            outputs={"output_key": output_key, "output_thought_key": output_thought_key},
            params={"keep_failed": self.keep_failed, "check_failed_execution": self.check_failed_execution,
                    "max_result_chars": self.max_result_chars, **self.judge_params()},
            batch_fn=lambda rows: self.process_batch(rows, input_query_key, input_answers_key, input_tools_key,
                                                     results_key, ok_key, output_key, output_thought_key),
        )

    def process_batch(self, rows: list[dict], input_query_key: str = "query", input_answers_key: str = "answers",
                      input_tools_key: str = "tools", input_results_key: str | None = "execution_results",
                      input_execution_ok_key: str | None = "execution_ok", output_key: str = "semantic_valid",
                      output_thought_key: str = "semantic_thought") -> list[RowOutcome]:
        from ...tools.spec import normalize_tools
        from ..conversations._base import InvalidInput
        from ..formats.convert import calls_of

        def prompt(row: dict) -> tuple[str, str]:
            try:
                tools = normalize_tools(row.get(input_tools_key), allow_dots=True)
                calls = calls_of(row.get(input_answers_key))
            except Exception as exc:
                raise InvalidInput(f"invalid_row: {exc}") from None
            results = row.get(input_results_key) if input_results_key else None
            return self.render(**_prompt_variables(row.get(input_query_key, ""), tools, calls, results,
                                                   self.max_result_chars))

        def called(row: dict) -> list[str]:
            return [call["name"] for call in calls_of(row.get(input_answers_key))]

        def row_schema(row: dict) -> dict:
            names = sorted(t["function"]["name"] for t in normalize_tools(row.get(input_tools_key), allow_dots=True))
            schema = schema_for(SemanticVerdict)
            schema["properties"]["best_function"] = {"type": "string", "enum": names + ["none"]}
            return schema

        def on_accept(row: dict, counted: Tally, yes: list) -> RowOutcome:
            thought = with_tally(yes[0].thought(called(row)), counted)
            return RowOutcome.keep(merge_row(row, **{output_key: True, output_thought_key: thought}))

        def on_reject(row: dict, counted: Tally, no: list, enforced: bool) -> RowOutcome:
            thought = with_tally(no[0].thought(called(row)), counted)
            if self.keep_failed:
                return RowOutcome.keep(merge_row(row, **{output_key: False, output_thought_key: thought}))
            kept = merge_row(row, **{output_key: False, output_thought_key: f"advisory: {thought}"})
            return self.reject(kept, f"failed_semantic: {thought}", enforced)

        outcomes: list[RowOutcome | None] = [None] * len(rows)
        judged = []
        for i, row in enumerate(rows):
            if input_execution_ok_key and row.get(input_execution_ok_key) is False and not self.check_failed_execution:
                outcomes[i] = RowOutcome.drop(f"failed_execution: not judged ({row.get('execution_reason', '')})")
            else:
                judged.append(i)
        verdicts = self.judge_round([rows[i] for i in judged], prompt, SemanticVerdict,
                                    lambda row, verdict: not verdict.failed_checks(called(row)),
                                    on_accept, on_reject, row_schema)
        for i, outcome in zip(judged, verdicts):
            outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]


def _prompt_variables(query: Any, tools: list[dict], calls: list[dict], results: Any, max_chars: int) -> dict:
    """The template's variables: each call with its result (the function's output, or its error:
    never the harness fields), and every listed function with its description, by name (so the
    called one is not singled out)."""
    import json

    described = {t["function"]["name"]: t["function"].get("description", "") for t in tools}
    results = results if isinstance(results, list) and len(results) == len(calls) else None
    shown = []
    for index, call in enumerate(calls):
        entry: dict[str, Any] = {"name": call["name"], "arguments": call.get("arguments") or {},
                                 "description": described.get(call["name"], "(not a listed function)")}
        if results is not None:
            result = results[index]
            if isinstance(result, dict) and "ok" in result:
                result = result.get("result") if result.get("ok") else {"error": result.get("error")}
            text = json.dumps(result, ensure_ascii=False, default=str)
            entry["result"] = result if len(text) <= max_chars else text[:max_chars] + "... (cut)"
        shown.append(entry)
    listed = [{"name": name, "description": described[name]} for name in sorted(described)]
    return {"query": query, "calls": shown, "tools": listed}
