"""TaskBlueprintGenerator: an LLM proposes a task on a stateful environment, and the task is
checked by running it before any conversation is built on it (APIGen-MT's blueprint stage).

A blueprint is the person's ``intent`` (first person, with the values they know), the
ground-truth ``calls`` that fulfil it (each expected to succeed, or to be refused by the
environment), and the ``facts`` the final answer must state. A proposal is kept only when:

1. every call fits its tool's spec (``dataflow.tools.validate_calls``, the canonical validator);
   else ``invalid_call``;
2. run in order on a fresh copy of the environment, each call succeeds or fails exactly as the
   blueprint says (``execution_mismatch``); a call that hangs or kills its worker is
   ``environment_error``;
3. every argument value of call *i* stands in the intent or in the results of calls before *i*
   (``dataflow.quality.ungrounded_arguments``): the person states what only they can know
   (``ungrounded_argument``);
4. every fact stands in a result (``ungrounded_fact``), and the intent names no tool
   (``tool_name_in_intent``).

A rejected proposal is asked again with the reason (``max_reasks`` times); each rejection is
recorded in the kept row's ``blueprint_rejections`` and the final one is the failed row's reason,
so the run report counts rejected proposals by reason. Output columns: ``intent``,
``blueprint_calls`` (``{"name", "arguments", "expect"}``), ``expected_facts``,
``expected_results`` (one ``{"ok", "result" | "error"}`` per call), ``expected_state`` (the
environment's data after the calls) and ``environment`` (its name).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...core import RowOutcome, RunReport, merge_row
from ...core.errors import Reask
from ...core.rounds import Text
from ..llm import StructuredLLMOperator
from ..conversations.functions import tools_text
from ..conversations.multi_turn import assistant_reply_schema
from .environment import run_calls

MAX_BLUEPRINT_CALLS = 6
MAX_FACTS = 5
DATA_CHARS = 6000


class BlueprintCall(BaseModel):
    """One ground-truth call and whether the environment should accept it."""

    model_config = ConfigDict(extra="forbid")
    name: Text(64, 1)
    arguments: dict[str, Any]
    expect: Literal["success", "error"] = "success"

    @field_validator("arguments", mode="before")
    @classmethod
    def _one_reading(cls, value: Any) -> dict:  # read as every call is read (dataflow.tools.calls)
        from ...tools.calls import arguments_or_raise

        return arguments_or_raise(value)


class BlueprintReply(BaseModel):
    """A proposed task: the person's intent, the calls that fulfil it, the facts to state."""

    model_config = ConfigDict(extra="forbid")
    intent: Text(600, 10)
    calls: list[BlueprintCall] = Field(min_length=1, max_length=MAX_BLUEPRINT_CALLS)
    facts: list[Text(80, 1)] = Field(default_factory=list, max_length=MAX_FACTS)


def blueprint_schema(tools: list[dict]) -> dict:
    """The reply schema sent for a blueprint: ``calls`` items are one of the environment's tools
    (name constant, arguments under that tool's parameters, as the multi-turn assistant's calls)
    plus ``expect``."""
    variants = assistant_reply_schema(tools, n_calls=1)["properties"]["tool_calls"]["items"]["anyOf"]
    for variant in variants:
        variant["properties"]["expect"] = {"type": "string", "enum": ["success", "error"]}
        variant["required"].append("expect")
    return {
        "title": BlueprintReply.__name__,
        "type": "object",
        "properties": {
            "intent": {"type": "string", "minLength": 10, "maxLength": 600},
            "calls": {"type": "array", "minItems": 1, "maxItems": MAX_BLUEPRINT_CALLS, "items": {"anyOf": variants}},
            "facts": {"type": "array", "maxItems": MAX_FACTS,
                      "items": {"type": "string", "minLength": 1, "maxLength": 80}},
        },
        "required": ["intent", "calls", "facts"],
        "additionalProperties": False,
    }


def blueprint_problem(reply: BlueprintReply, tools: list[dict], environment: Any) -> tuple[str | None, dict]:
    """``(problem, columns)``: the first reason the blueprint is unusable (``None`` when it is
    valid) and, when valid, the columns it adds (``blueprint_calls``, ``expected_results``,
    ``expected_state``). Runs the calls on a fresh copy of ``environment``."""
    from ...quality import ungrounded_arguments
    from ...tools import Call, validate_calls

    calls = [{"name": c.name, "arguments": c.arguments} for c in reply.calls]
    errors = validate_calls([Call(c.name, c.arguments) for c in reply.calls], tools)  # read by the reply model
    if errors:
        return f"invalid_call: {'; '.join(errors[:2])}", {}
    names = {t["function"]["name"] for t in tools}
    named = sorted(n for n in names if n in reply.intent)
    if named:
        return f"tool_name_in_intent: the intent names the tool {named[0]}; say what the person wants instead", {}
    outcomes, state, lost = run_calls(environment, calls)
    if lost:
        return f"environment_error: {lost}", {}
    for index, (call, outcome) in enumerate(zip(reply.calls, outcomes)):
        if outcome.ok != (call.expect == "success"):
            happened = "succeeded" if outcome.ok else f"failed ({outcome.error})"
            return (f"execution_mismatch: call {index + 1} ({call.name}) was expected to "
                    f"{'succeed' if call.expect == 'success' else 'be refused'} but {happened}"), {}
    by_name = {t["function"]["name"]: t for t in tools}
    context = [reply.intent]
    for index, (call, outcome) in enumerate(zip(calls, outcomes)):
        missing = ungrounded_arguments(call["arguments"], by_name[call["name"]], context)
        if missing:
            return (f"{missing[0]} (call {index + 1}, {call['name']}: the intent must state every value the calls "
                    "use that does not come from an earlier call's result)"), {}
        context.append(outcome.content())
    results = [o.content() for o in outcomes]
    for fact in reply.facts:
        if ungrounded_arguments({"fact": fact}, None, results):
            return f"ungrounded_fact: the fact {fact!r} is in no result of the calls", {}
    columns = {
        "blueprint_calls": [{"name": c.name, "arguments": c.arguments, "expect": c.expect} for c in reply.calls],
        "expected_results": [{"ok": True, "result": o.result} if o.ok else {"ok": False, "error": o.error}
                             for o in outcomes],
        "expected_state": state,
    }
    return None, columns


class TaskBlueprintGenerator(StructuredLLMOperator):
    """Environment tools and data -> validated task blueprints (APIGen-MT).

    ``environment``: a ``PythonEnvironment`` or ``McpEnvironment``. Each input row asks for one
    blueprint; its ``input_focus_key`` column (optional) says what the task should be about
    (e.g. "a customer who wants to cancel an order that already shipped"). ``max_reasks``: how
    often a rejected proposal is asked again with its reason. Raises ``ConfigError`` at ``run``
    when the environment cannot start.
    """

    prompt_names = ("env_blueprint",)
    extra_output_columns = ("blueprint_calls", "expected_results", "expected_state", "expected_facts",
                            "environment", "blueprint_rejections")  # beside the intent column

    def __init__(self, llm_serving: Any = None, environment: Any = None, max_reasks: int = 2,
                 data_chars: int = DATA_CHARS, prompt_template: Any = None):
        super().__init__(llm_serving, prompt_template)
        if environment is None:
            from ...core.errors import ConfigError

            raise ConfigError("TaskBlueprintGenerator needs environment=PythonEnvironment(...) or McpEnvironment(...)")
        self.environment = environment
        self.max_reasks = max_reasks
        self.data_chars = data_chars

    def run(self, storage: Any, input_focus_key: str | None = "focus", output_intent_key: str = "intent") -> RunReport:
        keys = {"input_focus_key": input_focus_key, "output_intent_key": output_intent_key}
        if input_focus_key is not None and input_focus_key not in storage.read_columns():
            keys["input_focus_key"] = None  # the focus column is optional
        return self._run_keys(storage, keys, params={"environment": self.environment.fingerprint(),
                                                     "max_reasks": self.max_reasks, "data_chars": self.data_chars})

    def process_batch(self, rows: list[dict], input_focus_key: str | None = "focus",
                      output_intent_key: str = "intent") -> list[RowOutcome]:
        from .environment import StateUnavailable

        tools = self.environment.tool_specs()
        try:
            data = json.dumps(_initial_state(self.environment), ensure_ascii=False)
        except StateUnavailable:
            data = "(not shown)"
        if len(data) > self.data_chars:
            data = data[: self.data_chars] + " ..."
        shown = tools_text(tools, descriptions=True)
        rejections: dict[int, list[str]] = {}

        def variables(row: dict) -> dict:
            focus = row.get(input_focus_key) if input_focus_key else None
            return {"environment": self.environment.name, "tools_text": shown, "data": data,
                    "focus": str(focus).strip() if focus else ""}

        def finish(row: dict, reply: BlueprintReply) -> RowOutcome:
            problem, columns = blueprint_problem(reply, tools, self.environment)
            rejected = rejections.setdefault(id(row), [])
            if problem:
                rejected.append(problem)
                raise Reask(problem, RowOutcome.fail(problem))
            return RowOutcome.keep(merge_row(
                row, **{output_intent_key: reply.intent}, **columns, expected_facts=list(reply.facts),
                environment=self.environment.name, blueprint_rejections=list(rejected)))

        schema = blueprint_schema(tools)
        return self.structured_round(rows, variables, BlueprintReply, finish, row_schema=lambda row: schema,
                                     max_reasks=self.max_reasks)


def _initial_state(environment: Any) -> dict:
    session = environment.open()
    try:
        return session.state()
    finally:
        session.close()
