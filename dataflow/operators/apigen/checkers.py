"""APIGen's verification stages 1 and 3: ``FormatChecker`` and ``SemanticChecker``
(stage 2, ``ExecutionChecker``, lives in ``execution.py``).

Each checker adds a verdict column and a reason column. A row that fails is dropped with a reason
whose code names the stage (``failed_format: ...``, ``failed_grounding: ...``, ``failed_semantic: ...``), so the base class
writes it to the step's rejected file; ``keep_failed=True`` keeps it (verdict ``False``) instead.
An LLM request that fails is a failed row (``llm_error: ...``), not a verdict.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ...core import OperatorABC, RowOutcome, RunReport, merge_row, schema_for
from ...core.errors import ToolSpecError
from ...core.rounds import Text
from ..judges import LLMJudge, Tally, with_tally
from ..llm import StructuredLLMOperator


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
    from ...tools.calls import read_call_list

    specs = {t["function"]["name"]: t for t in normalize_tools(tools, allow_dots=True)} if tools else {}
    problems = []
    for index, call in enumerate(read_call_list(calls)):  # ``Call`` objects pass as they are
        for problem in ungrounded_arguments(call.arguments, specs.get(call.name), [query], missing_from="the query"):
            problems.append(f"call {index} ({call.name}): {problem}")
    return problems


_GENERIC_NAME_WORDS = frozenset("get set calculate compute find search check list create make do run send look up by of to "
                                "for the a an and or in on from with info data value".split())


def servable_query(query: str, tools: Any) -> str | None:
    """For a pair with no call: ``"a listed tool serves it: ..."`` when ``query`` names what one of
    ``tools`` does (a word of its name other than generic verbs, or a string enum member of one of
    its parameters, e.g. "weather" for ``get_weather_forecast``, "USD" for ``convert_currency``);
    ``None`` when the query names no listed tool. A check that errs towards rejecting."""
    from ...quality.similarity import normalize_text
    from ...tools.spec import normalize_tools

    words = set(normalize_text(query).split())
    for tool in normalize_tools(tools, allow_dots=True) if tools else []:
        function = tool["function"]
        named = {w for w in normalize_text(function["name"].replace("_", " ")).split()
                 if w not in _GENERIC_NAME_WORDS and len(w) > 2} & words
        enums = {str(v).lower() for p in (function.get("parameters") or {}).get("properties", {}).values()
                 if isinstance(p, dict) for v in p.get("enum") or [] if isinstance(v, str) and len(v) > 2}
        hits = sorted(named | (enums & words))
        if hits:
            return f"a listed tool serves it: the query names {', '.join(hits)} of {function['name']}"
    return None


class FormatChecker(OperatorABC):
    """Stage 1: every call must name a listed function with valid arguments
    (``dataflow.validate_calls``), and (``check_grounding``, on by default) every argument value
    must come from the query or the tool's spec (enum, default, boolean): a row with an invented
    value is dropped as ``failed_grounding: ...``, and a row with no call whose query names what a
    listed tool does (``servable_query``) as ``failed_irrelevance: ...``. A row that makes the same
    call twice (``repeated_calls``) is dropped as ``failed_repeated_call: ...``, grounding or not. Tools come from the row (``input_tools_key``):
    a row's own tools win, as in ``SemanticChecker``; ``tools=`` (a list, a JSON file path, or a
    Python module path) serves the rows that carry none."""

    version = 2  # 2: failed_repeated_call

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
        from ...tools.calls import CallError, read_call_list, repeated_calls

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
            try:  # read once; every check below takes the read calls
                calls = read_call_list(answers) if answers is not None else None
            except CallError:
                calls = None  # validate names every unreadable call
            errors = toolset.validate(calls if calls is not None else answers)
            repeats = [] if errors else repeated_calls(calls)
            if repeats:  # one request, one call: the same call twice is never the answer
                outcomes.append(self._verdict(row, repeats, output_key, output_reason_key, code="failed_repeated_call"))
                continue
            if errors or not self.check_grounding:
                outcomes.append(self._verdict(row, errors, output_key, output_reason_key))
                continue
            tools = own if own or self.tools is None else self.tools
            query = str(row.get(input_query_key) or "")
            if not calls:  # "no tool fits" is only right when no listed tool does what is asked
                served = servable_query(query, tools)
                outcomes.append(self._verdict(row, [served] if served else [], output_key, output_reason_key,
                                              code="failed_irrelevance"))
                continue
            ungrounded = ungrounded_calls(query, calls, tools)
            outcomes.append(self._verdict(row, ungrounded, output_key, output_reason_key, code="failed_grounding"))
        return outcomes

    def _verdict(self, row: dict, errors: list[str], key: str, reason_key: str,
                 code: str = "failed_format") -> RowOutcome:
        reason = "; ".join(errors)
        if errors and not self.keep_failed:
            return RowOutcome.drop(f"{code}: {reason}")
        return RowOutcome.keep(merge_row(row, **{key: not errors, reason_key: f"{code}: {reason}" if errors else ""}))


# The judge's reply is evidence, in writing order, from which the verdict is computed: what the
# query asks; how many separate requests it makes; which of the row's functions gives it (the row's
# schema narrows this to their names and "none"); and, for each call, the value the query gives for
# each of its arguments (null: none). The judge is told which functions were called but not the
# values, so this is an independent reading of the query that the calls must agree with
# (``semantic_problems``). (A docstring here would be sent to the model as the schema description.)
class SemanticVerdict(BaseModel):
    """What the question asks, and the values it gives for each call."""

    model_config = ConfigDict(extra="forbid")
    asked: Text(100, 2)
    requests: int = Field(ge=0, le=20)
    best_function: str
    question_values: dict[str, dict[str, Any]]


def semantic_problems(reply: SemanticVerdict, calls: list[dict]) -> list[str]:
    """Where ``calls`` disagree with the judge's reading: another best function, another number of
    requests, or an argument value that is not the one the query gives (the same value however
    written: ``dataflow.quality``'s reading of numbers and words; enum members and defaults get
    no pass here). ``[]``: the calls agree."""
    from ...quality import ungrounded_arguments

    names = [call["name"] for call in calls]
    if not calls:
        return [] if reply.best_function == "none" else [f"best function is {reply.best_function}, but no call was made"]
    problems = []
    if reply.best_function not in names:
        problems.append(f"best function is {reply.best_function}, not {', '.join(dict.fromkeys(names))}")
    if reply.requests != len(calls):
        problems.append(f"the query makes {reply.requests} request(s), {len(calls)} call(s) were made")
    readings = [reply.question_values.get(f"call_{i + 1}") or {} for i in range(len(calls))]
    unused = set(range(len(calls)))
    for index, call in enumerate(calls):
        arguments = call.get("arguments") or {}

        def disagreements(reading: dict) -> list[str]:
            return [problem for arg, value in arguments.items()
                    for problem in ungrounded_arguments({arg: value}, None, [_as_text(reading.get(arg))])]

        # the judge may list same-function calls in another order (Paris and Rome)
        candidates = [j for j in [index, *sorted(unused)] if j in unused and calls[j]["name"] == call["name"]]
        found = {j: disagreements(readings[j]) for j in dict.fromkeys(candidates or [index])}
        best = min(found, key=lambda j: len(found[j]))
        if found[best]:
            problems.append(f"call {index + 1} {call['name']}: " + "; ".join(
                p.split(" appears in")[0].replace("ungrounded_argument: ", "") + " is not what the query gives"
                for p in found[best]))
        unused.discard(best)
    return problems


def _as_text(value: Any) -> str:
    import json

    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _thought(reply: SemanticVerdict, problems: list[str]) -> str:
    """The judge's reading and the verdict as one line, for the ``semantic_thought`` column."""
    verdict = f"fails: {'; '.join(problems)}" if problems else "passes"
    return f"asked: {reply.asked}; best function: {reply.best_function}; {verdict}"


def verdict_schema(tools: list[dict], calls: list[dict]) -> dict:
    """``SemanticVerdict``'s schema narrowed to one row: ``best_function`` one of the row's
    function names (sorted, so the called one is not singled out) or ``"none"``;
    ``question_values`` one object per call (``call_1``...) with exactly that call's argument
    names, each one of the parameter's enum members, a scalar, or null (any JSON value for an array
    or object parameter)."""
    functions = {t["function"]["name"]: t["function"] for t in tools}
    schema = schema_for(SemanticVerdict)
    schema["properties"]["best_function"] = {"type": "string", "enum": sorted(functions) + ["none"]}
    per_call = {}
    for index, call in enumerate(calls):
        parameters = ((functions.get(call["name"]) or {}).get("parameters") or {}).get("properties") or {}
        names = list(call.get("arguments") or {})
        per_call[f"call_{index + 1}"] = {
            "type": "object", "properties": {n: _argument_schema(parameters.get(n)) for n in names},
            "required": names, "additionalProperties": False,
        }
    schema["properties"]["question_values"] = {"type": "object", "properties": per_call,
                                               "required": list(per_call), "additionalProperties": False}
    return schema


def _argument_schema(parameter: Any) -> dict:
    if isinstance(parameter, dict) and isinstance(parameter.get("enum"), list):
        return {"enum": [*parameter["enum"], None]}
    if isinstance(parameter, dict) and parameter.get("type") in _SCALARS:
        return {"type": ["string", "number", "boolean", "null"]}
    return {}


_SCALARS = ("string", "number", "integer", "boolean")


class SemanticChecker(LLMJudge, StructuredLLMOperator):
    """Stage 3: does each row's call answer its query? An LLM judge reads the query, the available
    functions and which of them were called (not the values they were called with), and writes
    ``SemanticVerdict``: what the query asks, how many requests it makes, the best function for
    it, and the value the query gives for each argument. The row passes when its calls agree with
    that reading (``semantic_problems``): the best function called, one call per request, every
    argument value the one the query gives. Rows whose execution failed (``input_execution_ok_key``
    is ``False``, or a result with ``ok: false``) are not judged, and dropped as
    ``failed_execution``, unless ``check_failed_execution=True``.

    ``n_votes``: independent judge samples per row, kept on a strict majority (see
    ``dataflow.operators.judges``); ``judge_mode``: ``"auto"`` keeps rows the judge rejects, with
    ``semantic_valid=False``, when the judge is not calibrated on the model; ``"enforce"`` drops
    them. Output: ``semantic_valid`` (bool) and ``semantic_thought`` (the judge's reading, what
    disagrees, the vote count, and ``advisory:`` when the rejection was not enforced)."""

    prompt_names = ("apigen_semantic_checker",)

    def __init__(self, llm_serving: Any = None, keep_failed: bool = False, check_failed_execution: bool = False,
                 prompt_template: Any = None, *, n_votes: int = 1, judge_mode: str = "auto"):
        super().__init__(llm_serving, prompt_template)
        self.keep_failed = keep_failed
        self.check_failed_execution = check_failed_execution
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
                    **self.judge_params()},
            batch_fn=lambda rows: self.process_batch(rows, input_query_key, input_answers_key, input_tools_key,
                                                     results_key, ok_key, output_key, output_thought_key),
        )

    def process_batch(self, rows: list[dict], input_query_key: str = "query", input_answers_key: str = "answers",
                      input_tools_key: str = "tools", input_results_key: str | None = "execution_results",
                      input_execution_ok_key: str | None = "execution_ok", output_key: str = "semantic_valid",
                      output_thought_key: str = "semantic_thought") -> list[RowOutcome]:
        from ...tools.spec import normalize_tools
        from ...core.errors import InvalidInput
        from ...tools.calls import read_calls

        read: dict[int, tuple[list[dict], list[dict]]] = {}  # id(row) -> its tools and calls, read once

        def parsed(row: dict) -> tuple[list[dict], list[dict]]:
            if id(row) not in read:
                try:
                    read[id(row)] = (normalize_tools(row.get(input_tools_key), allow_dots=True),
                                     read_calls(row.get(input_answers_key)))
                except Exception as exc:
                    raise InvalidInput(f"invalid_row: {exc}") from None
            return read[id(row)]

        def variables(row: dict) -> dict:
            tools, calls = parsed(row)
            return _prompt_variables(row.get(input_query_key, ""), tools, calls)

        def verdict(row: dict, reply: SemanticVerdict) -> list[str]:
            return semantic_problems(reply, parsed(row)[1])

        def on_accept(row: dict, counted: Tally, yes: list) -> RowOutcome:
            thought = with_tally(_thought(yes[0], []), counted)
            return RowOutcome.keep(merge_row(row, **{output_key: True, output_thought_key: thought}))

        def on_reject(row: dict, counted: Tally, no: list, enforced: bool) -> RowOutcome:
            thought = with_tally(_thought(no[0], verdict(row, no[0])), counted)
            if self.keep_failed:
                return RowOutcome.keep(merge_row(row, **{output_key: False, output_thought_key: thought}))
            kept = merge_row(row, **{output_key: False, output_thought_key: f"advisory: {thought}"})
            return self.reject(kept, f"failed_semantic: {thought}", enforced)

        outcomes: list[RowOutcome | None] = [None] * len(rows)
        judged = []
        for i, row in enumerate(rows):
            failed = _execution_failure(row, input_execution_ok_key, input_results_key)
            if failed and not self.check_failed_execution:
                outcomes[i] = RowOutcome.drop(f"failed_execution: not judged ({failed})")
            else:
                judged.append(i)
        verdicts = self.judge_round([rows[i] for i in judged], variables, SemanticVerdict,
                                    lambda row, reply: not verdict(row, reply), on_accept, on_reject,
                                    lambda row: verdict_schema(*parsed(row)))
        for i, outcome in zip(judged, verdicts):
            outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]


def _execution_failure(row: dict, ok_key: str | None, results_key: str | None) -> str | None:
    """Why the row's execution failed (its ok column is False, or a result is an error), or None."""
    if ok_key and row.get(ok_key) is False:
        return str(row.get("execution_reason", "") or "execution failed")
    results = row.get(results_key) if results_key else None
    for result in results if isinstance(results, list) else []:
        if isinstance(result, dict) and result.get("ok") is False:
            return f"{result.get('name', 'a call')}: {result.get('error', 'error')}"
    return None


def _prompt_variables(query: Any, tools: list[dict], calls: list[dict]) -> dict:
    """The template's variables: every listed function with its description, by name (so the
    called one is not singled out), and each call's function with its argument names only."""
    listed = [{"name": t["function"]["name"], "description": t["function"].get("description", "")}
              for t in sorted(tools, key=lambda t: t["function"]["name"])]
    shown = [{"name": call["name"], "argument_names": list(call.get("arguments") or {})} for call in calls]
    return {"query": query, "tools": listed, "calls": shown}
