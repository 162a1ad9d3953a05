"""MultiTurnConversationGenerator: three simulated agents write a tool-use conversation.

- **user agent** (``mt_user_agent`` prompt): the opening request for the composed task, then up to
  ``max_follow_ups`` follow-up turns (it may end the conversation earlier);
- **assistant agent** (``mt_assistant_agent``): replies ``{"tool_calls": [...], "content": ...}``:
  one or more (parallel) calls, or a final answer when ``tool_calls`` is empty. The reply schema
  is built from the row's tools (``assistant_reply_schema``: each call is one of
  ``{"name": <const tool name>, "arguments": <that tool's parameters>}``), so a model under
  constrained decoding can only write well-formed calls. Every call is still checked with
  ``validate_calls`` against the row's tools *before* the tool agent answers; an invalid call,
  or a repeat of a call already answered, is re-asked with the errors (at most ``max_reasks``
  re-asks per conversation), then the row fails with reason ``invalid_call: ...`` (or
  ``repeated_call: ...``);
- **tool agent** (``mt_tool_agent``): the result of one call, under a JSON schema built from the
  function's declared response shape (``x-response``, see ``functions.py``), checked against it.

Rows advance together: each loop iteration runs one user round, one assistant round and one tool
round, each a single batch call over every row in that phase. ``max_turns`` bounds the assistant
replies per conversation; a conversation that reaches it without a final answer fails with
``no_final_answer``. Output: ``conversations`` (OpenAI chat messages: system, user, assistant
with ``tool_calls`` carrying ids and JSON-string arguments, tool with ``tool_call_id``, final
assistant answer) and ``tools`` (the OpenAI tool list, without ``x-`` keys).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ...core import RowOutcome, ToolSpecError, RunReport, merge_row, parse_reply, schema_for
from ._base import InvalidInput, StructuredLLMOperator, Text, as_key_list, ask_structured, prompt_messages, sub_tasks_of, text_value
from .functions import openai_tools, response_schema, tools_text
from ...tools import normalize_tools, validate_calls
from .structure import check_conversation
from .transcript import chat_to_transcript

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant that can call the provided tools to complete the user's request."
TRANSCRIPT_CHARS = 12000
MAX_CALLS_PER_TURN = 4
ANSWER_CHARS = 600
ARGUMENT_STRING_CHARS = 100  # bound on string arguments in the decoding schema (not in the tools)
USER, ASSISTANT, TOOL, DONE, FAILED = "user", "assistant", "tool", "done", "failed"


class UserTurnReply(BaseModel):
    """The simulated user's next message, or the end of the conversation."""

    model_config = ConfigDict(extra="forbid")
    end_conversation: bool
    message: Text(240, 2)


class CallReply(BaseModel):
    """One tool call as the assistant agent writes it."""

    model_config = ConfigDict(extra="forbid")
    name: Text(64, 1)
    arguments: dict[str, Any]


class AssistantTurnReply(BaseModel):
    """Tool calls (parallel allowed), or a final answer in ``content`` when there are none."""

    model_config = ConfigDict(extra="forbid")
    tool_calls: list[CallReply] = Field(max_length=MAX_CALLS_PER_TURN)
    content: str = Field(max_length=ANSWER_CHARS)


class ToolResultReply(BaseModel):
    """The result of one call (its shape is checked against the function's ``x-response``)."""

    model_config = ConfigDict(extra="forbid")
    result: dict[str, Any]


@dataclass
class _Dialogue:
    """The state of one row's conversation while the agents take turns."""

    task: str
    sub_tasks: list[str]
    functions: list[dict]
    tools: list[dict]
    messages: list[dict]
    follow_ups_left: int
    reasks_left: int
    max_reasks: int
    phase: str = USER
    assistant_turns: int = 0
    calls_made: int = 0
    answered_calls: set = field(default_factory=set)  # (name, canonical arguments) already answered
    feedback: str = ""
    pending: list[dict] = field(default_factory=list)  # {"id", "name", "arguments"}
    results: dict[str, Any] = field(default_factory=dict)
    call_feedback: dict[str, str] = field(default_factory=dict)
    reason: str | None = None

    def fail(self, reason: str) -> None:
        self.phase, self.reason = FAILED, reason

    def reask_or_fail(self, reason: str, call_id: str | None = None) -> None:
        """Spend one re-ask (the feedback changes the next prompt, so a cached reply is not
        simply repeated), or fail the row with ``reason`` when none is left."""
        if self.reasks_left <= 0:
            self.fail(reason)
            return
        self.reasks_left -= 1
        note = f"{reason} (re-ask {self.reasks_used})"
        if call_id is None:
            self.feedback = note
        else:
            self.call_feedback[call_id] = note

    @property
    def reasks_used(self) -> int:
        return self.max_reasks - self.reasks_left

    def function(self, name: str) -> dict:
        return next(f for f in self.functions if f["function"]["name"] == name)

    def called_names(self) -> set[str]:
        return {name for name, _ in self.answered_calls}


class MultiTurnConversationGenerator(StructuredLLMOperator):
    """Composed task + sub-tasks + functions -> a validated multi-turn tool-use conversation."""

    prompt_names = ("mt_user_agent", "mt_assistant_agent", "mt_tool_agent")

    def __init__(
        self,
        llm_serving: Any = None,
        max_follow_ups: int = 1,
        max_turns: int = 8,
        max_reasks: int = 2,
        require_tool_call: bool = True,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        prompt_template: Any = None,
    ):
        super().__init__(llm_serving, prompt_template)
        self.max_follow_ups = max_follow_ups
        self.max_turns = max_turns
        self.max_reasks = max_reasks
        self.require_tool_call = require_tool_call
        self.system_prompt = system_prompt

    def run(
        self,
        storage: Any,
        input_task_key: str = "composition_task",
        input_sub_tasks_keys: Sequence[str] = ("atom_task", "subsequent_task"),
        input_functions_key: str = "functions",
        output_key: str = "conversations",
        output_tools_key: str = "tools",
    ) -> RunReport:
        keys = dict(
            input_task_key=input_task_key,
            input_sub_tasks_keys=as_key_list(input_sub_tasks_keys),
            input_functions_key=input_functions_key,
            output_key=output_key,
            output_tools_key=output_tools_key,
        )
        return self._run_keys(
            storage,
            keys,
            params={
                "max_follow_ups": self.max_follow_ups,
                "max_turns": self.max_turns,
                "max_reasks": self.max_reasks,
                "require_tool_call": self.require_tool_call,
                "system_prompt": self.system_prompt,
            },
        )

    # -- row logic ----------------------------------------------------------------------------
    def process_batch(
        self,
        rows: list[dict],
        input_task_key: str = "composition_task",
        input_sub_tasks_keys: Sequence[str] = ("atom_task", "subsequent_task"),
        input_functions_key: str = "functions",
        output_key: str = "conversations",
        output_tools_key: str = "tools",
    ) -> list[RowOutcome]:
        self.require_llm()
        columns = as_key_list(input_sub_tasks_keys)
        dialogues: list[_Dialogue | None] = []
        outcomes: list[RowOutcome | None] = []
        for row in rows:
            try:
                dialogues.append(self._start(row, input_task_key, columns, input_functions_key))
                outcomes.append(None)
            except InvalidInput as exc:
                dialogues.append(None)
                outcomes.append(RowOutcome.fail(str(exc)))
        live = [d for d in dialogues if d is not None]
        while any(d.phase not in (DONE, FAILED) for d in live):
            self._user_round([d for d in live if d.phase == USER])
            self._assistant_round([d for d in live if d.phase == ASSISTANT])
            self._tool_round([d for d in live if d.phase == TOOL])
        for i, (row, d) in enumerate(zip(rows, dialogues)):
            if d is None:
                continue
            if d.phase == FAILED:
                outcomes[i] = RowOutcome.fail(d.reason or "failed: unknown")
                continue
            problems = check_conversation(d.messages, d.tools)
            if problems:
                outcomes[i] = RowOutcome.fail(f"invalid_conversation: {problems[0]}")
            else:
                outcomes[i] = RowOutcome.keep(merge_row(row, **{output_key: d.messages, output_tools_key: d.tools}))
        return outcomes  # type: ignore[return-value]

    def _start(self, row: dict, task_key: str, sub_task_columns: list[str], functions_key: str) -> _Dialogue:
        functions = row.get(functions_key)
        if isinstance(functions, str):
            try:
                functions = json.loads(functions)
            except json.JSONDecodeError:
                raise InvalidInput(f"invalid_input: column {functions_key!r} is not JSON") from None
        if not isinstance(functions, list) or not functions or not all(
            isinstance(f, dict) and isinstance(f.get("function"), dict) for f in functions
        ):
            raise InvalidInput(f"invalid_input: column {functions_key!r} holds no tool specs")
        try:
            normalize_tools(openai_tools(functions))
        except ToolSpecError as exc:
            raise InvalidInput(f"invalid_input: {functions_key!r}: {exc}") from None
        return _Dialogue(
            task=text_value(row, task_key),
            sub_tasks=sub_tasks_of(row, sub_task_columns),
            functions=functions,
            tools=openai_tools(functions),
            messages=[{"role": "system", "content": self.system_prompt}],
            follow_ups_left=self.max_follow_ups,
            reasks_left=self.max_reasks,
            max_reasks=self.max_reasks,
        )

    # -- user agent ---------------------------------------------------------------------------
    def _user_round(self, dialogues: list[_Dialogue]) -> None:
        if not dialogues:
            return
        prompts = []
        for d in dialogues:
            opening = len(d.messages) == 1
            prompts.append(
                self.render(
                    "mt_user_agent",
                    task=d.task,
                    sub_tasks=d.sub_tasks,
                    opening=opening,
                    transcript=chat_to_transcript(d.messages[1:], max_chars=TRANSCRIPT_CHARS),
                )
            )
        for d, parsed in zip(dialogues, ask_structured(self.llm_serving, prompts, UserTurnReply)):
            opening = len(d.messages) == 1
            if not parsed.ok:
                d.fail(f"{parsed.reason} (user agent)")
            elif parsed.value.end_conversation and not opening:
                d.phase = DONE
            else:
                if not opening:
                    d.follow_ups_left -= 1
                d.messages.append({"role": "user", "content": parsed.value.message})
                d.phase = ASSISTANT

    # -- assistant agent ----------------------------------------------------------------------
    def _assistant_round(self, dialogues: list[_Dialogue]) -> None:
        asked = []
        for d in dialogues:
            if d.assistant_turns >= self.max_turns:
                d.fail(f"no_final_answer: no final answer within {self.max_turns} assistant turns")
            else:
                asked.append(d)
        if not asked:
            return
        prompts = [
            self.render(
                "mt_assistant_agent",
                tools=d.tools,
                tools_text=tools_text(d.tools, descriptions=True),
                transcript=chat_to_transcript(d.messages[1:], max_chars=TRANSCRIPT_CHARS),
                feedback=d.feedback,
                not_called=[t["function"]["name"] for t in d.tools if t["function"]["name"] not in d.called_names()],
            )
            for d in asked
        ]
        # before the first call (when a call is required) the reply must call a tool: the decoder is
        # held to what would be accepted anyway, instead of re-asking a small model that answers
        schemas = [assistant_reply_schema(d.tools, must_call=self.require_tool_call and d.calls_made == 0) for d in asked]
        for d, parsed in zip(asked, ask_structured(self.llm_serving, prompts, AssistantTurnReply, schemas)):
            d.assistant_turns += 1
            if not parsed.ok:
                if parsed.reason.startswith("llm_error"):
                    d.fail(f"{parsed.reason} (assistant agent)")
                else:
                    d.reask_or_fail(parsed.reason)
                continue
            self._take_assistant_reply(d, parsed.value)

    def _take_assistant_reply(self, d: _Dialogue, reply: AssistantTurnReply) -> None:
        content = reply.content.strip()
        if reply.tool_calls:
            calls = [{"name": c.name, "arguments": c.arguments} for c in reply.tool_calls]
            errors = validate_calls(calls, d.tools)
            if errors:
                d.reask_or_fail(f"invalid_call: {'; '.join(errors[:3])}")
                return
            keys = [_call_key(c) for c in calls]
            repeats = [c["name"] for i, c in enumerate(calls) if keys[i] in d.answered_calls or keys[i] in keys[:i]]
            if repeats:
                d.reask_or_fail(
                    f"repeated_call: {repeats[0]} was already called with these arguments; use its result "
                    "or call another tool"
                )
                return
            d.feedback = ""
            d.pending = []
            for call in calls:
                d.calls_made += 1
                d.answered_calls.add(_call_key(call))
                d.pending.append({"id": f"call_{d.calls_made}", **call})
            message: dict[str, Any] = {"role": "assistant"}
            if content:
                message["content"] = content
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)},
                }
                for c in d.pending
            ]
            d.messages.append(message)
            d.results = {}
            d.phase = TOOL
        elif not content:
            d.reask_or_fail("invalid_reply: the assistant gave neither tool calls nor an answer")
        elif self.require_tool_call and d.calls_made == 0:
            d.reask_or_fail("no_tool_call: answered without calling any tool; call the tools the task needs")
        else:
            d.feedback = ""
            d.messages.append({"role": "assistant", "content": content})
            d.phase = USER if d.follow_ups_left > 0 else DONE

    # -- tool agent ---------------------------------------------------------------------------
    def _tool_round(self, dialogues: list[_Dialogue]) -> None:
        jobs: list[tuple[_Dialogue, dict]] = [
            (d, call) for d in dialogues for call in d.pending if call["id"] not in d.results
        ]
        if not jobs:
            return
        prompts = []
        for d, call in jobs:
            spec = d.function(call["name"])["function"]
            prompts.append(
                self.render(
                    "mt_tool_agent",
                    function_name=call["name"],
                    description=spec.get("description", ""),
                    arguments=call["arguments"],
                    response_schema=response_schema(d.function(call["name"])),
                    task=d.task,
                    feedback=d.call_feedback.get(call["id"], ""),
                )
            )
        schemas = [_tool_reply_schema(response_schema(d.function(call["name"]))) for d, call in jobs]
        results = self.llm_serving.generate_from_conversations(
            [prompt_messages(s, u) for s, u in prompts], json_schema=schemas
        )
        for (d, call), result in zip(jobs, results):
            if d.phase == FAILED:
                continue
            parsed = parse_reply(result, ToolResultReply)
            if not parsed.ok:
                if parsed.reason.startswith("llm_error"):
                    d.fail(f"{parsed.reason} (tool agent)")
                else:
                    d.reask_or_fail(f"invalid_tool_result: {call['name']}: {parsed.reason}", call["id"])
                continue
            problem = _shape_problem(parsed.value.result, response_schema(d.function(call["name"])))
            if problem:
                d.reask_or_fail(f"invalid_tool_result: {call['name']}: {problem}", call["id"])
                continue
            d.results[call["id"]] = parsed.value.result
        for d in dialogues:
            if d.phase == TOOL and all(c["id"] in d.results for c in d.pending):
                for c in d.pending:
                    d.messages.append(
                        {"role": "tool", "tool_call_id": c["id"], "content": json.dumps(d.results[c["id"]], ensure_ascii=False)}
                    )
                d.pending, d.results, d.call_feedback = [], {}, {}
                d.phase = ASSISTANT


def _call_key(call: dict) -> tuple[str, str]:
    return call["name"], json.dumps(call["arguments"], sort_keys=True, ensure_ascii=False)


def assistant_reply_schema(tools: list[dict], must_call: bool = False) -> dict:
    """The JSON schema of one assistant-agent reply for this row's ``tools``: ``tool_calls`` is a
    list whose items are each ``{"name": <const>, "arguments": <that tool's parameters>}`` for
    one of the tools (string arguments bounded for decoding), ``content`` a bounded string;
    ``must_call``: at least one call and empty ``content``. ``AssistantTurnReply`` still validates the reply, and
    ``validate_calls`` every call."""
    variants = []
    for tool in tools:
        fn = tool["function"]
        parameters = copy.deepcopy(fn.get("parameters") or {"type": "object", "properties": {}})
        _bound_strings(parameters)
        parameters.setdefault("additionalProperties", False)
        variants.append(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "const": fn["name"]}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return {
        "title": AssistantTurnReply.__name__,
        "type": "object",
        "properties": {
            "tool_calls": {
                "type": "array",
                "items": {"anyOf": variants},
                "minItems": 1 if must_call else 0,
                "maxItems": MAX_CALLS_PER_TURN,
            },
            # a must-call turn has nothing to say yet (a 0.5B model otherwise "answers" before calling)
            "content": {"type": "string", "maxLength": 0 if must_call else ANSWER_CHARS},
        },
        "required": ["tool_calls", "content"],
        "additionalProperties": False,
    }


def _bound_strings(node: Any) -> None:
    """Give every string schema without a length bound ``maxLength`` (decoding schema only)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "maxLength" not in node and "enum" not in node:
            node["maxLength"] = ARGUMENT_STRING_CHARS
        for value in node.values():
            _bound_strings(value)
    elif isinstance(node, list):
        for value in node:
            _bound_strings(value)


def _tool_reply_schema(shape: dict) -> dict:
    """The JSON schema of one tool agent reply: ``{"result": <the function's declared response>}``
    (each result is also checked against its shape after the reply)."""
    schema = schema_for(ToolResultReply)
    schema["properties"]["result"] = shape
    return schema


def _shape_problem(value: Any, schema: dict) -> str | None:
    from jsonschema import Draft202012Validator

    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path) or "(result)"
    return f"{where}: {error.message}"
