"""MultiTurnConversationGenerator: three simulated agents write a tool-use conversation that
follows the BUTTON composition turn by turn, and every turn is checked before the next.

The composition is a plan. Its sub-tasks are split over ``1 + max_follow_ups`` user turns
(``plan_turns``): with sub-tasks ``[A, P, B]`` and one follow-up the user first asks for A and P
(independent, called in parallel), then follows up asking for B, whose function takes A's or P's
result. Each sub-task is served by one function (``x-sub-tasks`` from ``FunctionGenerator``); a
parameter named like an earlier function's return field is *chained* (its value comes from that
result), every other parameter is a value the user must give.

- **user agent** (``mt_user_agent``): first chooses a concrete value for each parameter it must
  give (the reply schema lists them, typed from the tool), then writes the message. The message
  must contain every chosen value (``dataflow.quality.ungrounded_arguments``) and pass the user
  turn checks (no instruction words, no question about the user's own facts, no repeat);
  otherwise it is re-asked with the reason.
- **assistant agent** (``mt_assistant_agent``): after a user turn it must call exactly the
  functions of the turn's next *wave* (the sub-tasks whose chained inputs are available), under a
  schema narrowed to those tools; every call is checked with ``validate_calls`` and for
  grounding: each argument value comes from a user turn or an earlier tool result
  (``ungrounded_argument`` otherwise). When the turn's calls are answered it writes the answer,
  which must state values from the results (``answer_problems``).
- **tool agent** (``mt_tool_agent``): the result of one call, under the function's declared
  response shape (``x-response``), checked against it, for echoing its arguments and for
  degenerate text.

A failed check spends one of ``max_reasks`` re-asks per conversation (the feedback names the
problem, so the new request is a new cache entry); when none is left the row fails with the
check's reason code. Rows advance together: each loop runs one user round, one assistant round
and one tool round, each a single batch over every row in that phase. A finished conversation is
checked once more as a whole (``check_conversation`` for structure, ``conversation_problems`` for
quality) before it is kept. Output: ``conversations`` (OpenAI chat messages) and ``tools`` (the
OpenAI tool list, without ``x-`` keys).

Design sources: BUTTON (Chen et al., 2024) composes tasks bottom-up and simulates user, assistant
and tool agents; APIGen (Liu et al., 2024) keeps only data that passes staged checks.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...core import RowOutcome, RunReport, ToolSpecError, merge_row, parse_reply, schema_for
from ...tools import Call, call_key, normalize_tools, validate_calls
from ...core.errors import InvalidInput
from ...core.llm import prompt_messages
from ...core.rounds import Text, ask_structured, text_value
from ..llm import StructuredLLMOperator
from ._base import as_key_list, sub_tasks_of
from .functions import SUB_TASKS_KEY, openai_tools, response_schema, tools_text
from .structure import check_conversation
from .transcript import chat_to_transcript

#: the system message of every generated conversation (training data, not a prompt of this library)
CONVERSATION_SYSTEM_PROMPT = "You are a helpful assistant that can call the provided tools to complete the user's request."
TRANSCRIPT_CHARS = 12000
MAX_CALLS_PER_TURN = 4
ANSWER_CHARS = 600
USER_CHARS = 320
ARGUMENT_STRING_CHARS = 100  # bound on string arguments in the decoding schema (not in the tools)
USER, CALL, TOOL, ANSWER, DONE, FAILED = "user", "call", "tool", "answer", "done", "failed"


class UserTurnReply(BaseModel):
    """The simulated user's next message, after the values it must contain (``values``: function
    name -> parameter -> value; the schema sent for a row lists exactly the parameters the user
    gives in this turn)."""

    model_config = ConfigDict(extra="forbid")
    values: dict[str, dict[str, Any]]
    message: Text(USER_CHARS, 2)


class CallReply(BaseModel):
    """One tool call as the assistant agent writes it."""

    model_config = ConfigDict(extra="forbid")
    name: Text(64, 1)
    arguments: dict[str, Any]

    @field_validator("arguments", mode="before")
    @classmethod
    def _one_reading(cls, value: Any) -> dict:  # a JSON string, "" or null read as everywhere else
        from ...tools.calls import arguments_or_raise

        return arguments_or_raise(value)

    def read(self) -> Call:
        """This call as ``dataflow.tools.Call`` (its arguments were read by the validator above)."""
        return Call(self.name, self.arguments)


class AssistantTurnReply(BaseModel):
    """Tool calls (parallel allowed), or a final answer in ``content`` when there are none."""

    model_config = ConfigDict(extra="forbid")
    tool_calls: list[CallReply] = Field(max_length=MAX_CALLS_PER_TURN)
    content: str = Field(max_length=ANSWER_CHARS)


class ToolResultReply(BaseModel):
    """The result of one call (its shape is checked against the function's ``x-response``)."""

    model_config = ConfigDict(extra="forbid")
    result: dict[str, Any]


def plan_turns(n_sub_tasks: int, n_user_turns: int) -> list[list[int]]:
    """Sub-task indices per user turn: the last ``n_user_turns - 1`` sub-tasks get a follow-up
    turn each, the first turn asks for the rest (``plan_turns(3, 2) == [[0, 1], [2]]``)."""
    n = max(1, min(n_user_turns, n_sub_tasks))
    head = n_sub_tasks - (n - 1)
    return [list(range(head))] + [[i] for i in range(head, n_sub_tasks)]


def sub_task_functions(functions: Sequence[dict], n_sub_tasks: int) -> list[int]:
    """For each sub-task, the index of the function that serves it: from the functions'
    ``x-sub-tasks`` lists when present, else the i-th function for the i-th sub-task. Raises
    ``InvalidInput`` when a sub-task has no function."""
    served: dict[int, int] = {}
    for f_index, spec in enumerate(functions):
        for s in spec.get(SUB_TASKS_KEY) or []:
            if isinstance(s, int) and 0 <= s < n_sub_tasks:
                served.setdefault(s, f_index)
    if not served and len(functions) >= n_sub_tasks:
        served = {i: i for i in range(n_sub_tasks)}
    missing = [i + 1 for i in range(n_sub_tasks) if i not in served]
    if missing:
        raise InvalidInput(
            f"invalid_input: no function serves sub-task(s) {missing}; give one function per sub-task "
            f"in order, or list each function's sub-tasks in {SUB_TASKS_KEY!r}"
        )
    return [served[i] for i in range(n_sub_tasks)]


@dataclass
class _Dialogue:
    """The state of one row's conversation while the agents take turns."""

    task: str
    sub_tasks: list[str]
    functions: list[dict]
    tools: list[dict]
    fn_of: list[int]  # sub-task -> function index
    plan: list[list[int]]  # user turn -> sub-task indices
    messages: list[dict]
    reasks_left: int
    max_reasks: int
    phase: str = USER
    turn: int = -1  # index into plan of the current user turn
    done: set = field(default_factory=set)  # sub-tasks whose call is answered
    assistant_turns: int = 0
    calls_made: int = 0
    answered_calls: set = field(default_factory=set)  # call_key of each call already answered
    feedback: str = ""
    pending: list[dict] = field(default_factory=list)  # {"id", "name", "arguments", "sub_task"}
    results: dict[str, Any] = field(default_factory=dict)
    turn_results: list = field(default_factory=list)  # results of the current user turn's calls
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
        note = f"{reason} (re-ask {self.max_reasks - self.reasks_left})"
        if call_id is None:
            self.feedback = note
        else:
            self.call_feedback[call_id] = note

    def spec(self, sub_task: int) -> dict:
        return self.functions[self.fn_of[sub_task]]

    def tool_named(self, name: str) -> dict | None:
        return next((t for t in self.tools if t["function"]["name"] == name), None)

    def chained(self, sub_task: int) -> dict[str, int]:
        """Parameters of the sub-task's function fed by an earlier sub-task's result: parameter
        name -> the earlier sub-task (the latest one whose function returns that field)."""
        params = (self.spec(sub_task)["function"].get("parameters") or {}).get("properties") or {}
        fed: dict[str, int] = {}
        for earlier in range(sub_task):
            if self.fn_of[earlier] == self.fn_of[sub_task]:
                continue
            returns = (response_schema(self.spec(earlier)).get("properties") or {}).keys()
            for name in params:
                if name in returns:
                    fed[name] = earlier
        return fed

    def user_parameters(self, sub_task: int) -> dict[str, dict]:
        """The required parameters the user must give a value for in the sub-task's turn."""
        parameters = self.spec(sub_task)["function"].get("parameters") or {}
        chained = self.chained(sub_task)
        return {
            name: prop
            for name, prop in (parameters.get("properties") or {}).items()
            if name in (parameters.get("required") or []) and name not in chained
        }

    def wave(self) -> list[int]:
        """The current turn's sub-tasks that can be called now (not done; every chained input
        from a sub-task of this turn already answered)."""
        group = self.plan[self.turn]
        return [
            s for s in group
            if s not in self.done and all(e in self.done or e not in group for e in self.chained(s).values())
        ]

    def context(self) -> list[str]:
        """The texts an argument value may come from: user turns and tool results so far."""
        return [m.get("content") or "" for m in self.messages if m.get("role") in ("user", "tool")]


class MultiTurnConversationGenerator(StructuredLLMOperator):
    """Composed task + sub-tasks + functions -> a checked multi-turn tool-use conversation."""

    prompt_names = ("mt_user_agent", "mt_assistant_agent", "mt_tool_agent")

    def __init__(
        self,
        llm_serving: Any = None,
        max_follow_ups: int = 1,
        max_turns: int = 8,
        max_reasks: int = 3,
        system_prompt: str = CONVERSATION_SYSTEM_PROMPT,
        prompt_template: Any = None,
    ):
        super().__init__(llm_serving, prompt_template)
        self.max_follow_ups = max_follow_ups
        self.max_turns = max_turns
        self.max_reasks = max_reasks
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
        from ...quality import conversation_problems

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
            self._assistant_round([d for d in live if d.phase in (CALL, ANSWER)])
            self._tool_round([d for d in live if d.phase == TOOL])
        for i, (row, d) in enumerate(zip(rows, dialogues)):
            if d is None:
                continue
            if d.phase == FAILED:
                outcomes[i] = RowOutcome.fail(d.reason or "failed: unknown")
                continue
            problems = check_conversation(d.messages, d.tools, calls_validated=True)  # validated when made
            if problems:
                outcomes[i] = RowOutcome.fail(f"invalid_conversation: {problems[0]}")
                continue
            problems = conversation_problems(d.messages, d.tools)
            if problems:
                outcomes[i] = RowOutcome.fail(problems[0])
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
        sub_tasks = sub_tasks_of(row, sub_task_columns)
        return _Dialogue(
            task=text_value(row, task_key),
            sub_tasks=sub_tasks,
            functions=functions,
            tools=openai_tools(functions),
            fn_of=sub_task_functions(functions, len(sub_tasks)),
            plan=plan_turns(len(sub_tasks), 1 + self.max_follow_ups),
            messages=[{"role": "system", "content": self.system_prompt}],
            reasks_left=self.max_reasks,
            max_reasks=self.max_reasks,
        )

    # -- user agent ---------------------------------------------------------------------------
    def _user_round(self, dialogues: list[_Dialogue]) -> None:
        if not dialogues:
            return
        prompts, schemas, asks_of = [], [], []
        for d in dialogues:
            group = d.plan[d.turn + 1]
            asks = {}
            for s in group:
                name = d.spec(s)["function"]["name"]
                asks.setdefault(name, {}).update(d.user_parameters(s))
            asks_of.append(asks)
            earlier = [s for turn in d.plan[: d.turn + 1] for s in turn]
            prompts.append(
                self.render(
                    "mt_user_agent",
                    requests=[d.sub_tasks[s] for s in group],
                    details=[
                        {"function": fn, "name": p, "description": prop.get("description", ""), "type": prop.get("type", "")}
                        for fn, props in asks.items() for p, prop in props.items()
                    ],
                    refers_to_results=any(d.chained(s) for s in group),
                    earlier_requests=[d.sub_tasks[s] for s in earlier],
                    opening=d.turn < 0,
                    transcript=chat_to_transcript(d.messages[1:], max_chars=TRANSCRIPT_CHARS),
                    feedback=d.feedback,
                )
            )
            schemas.append(user_reply_schema(asks))
        replies = ask_structured(self.llm_serving, prompts, UserTurnReply, schemas)
        for d, asks, (system, _), parsed in zip(dialogues, asks_of, prompts, replies):
            if not parsed.ok:
                if parsed.reason.startswith("llm_error"):
                    d.fail(f"{parsed.reason} (user agent)")
                else:
                    d.reask_or_fail(f"{parsed.reason} (user agent)")
                continue
            problem = self._user_problem(d, asks, parsed.value, system)
            if problem:
                d.reask_or_fail(problem)
                continue
            d.feedback = ""
            d.turn += 1
            d.messages.append({"role": "user", "content": parsed.value.message})
            d.turn_results = []
            d.phase = CALL

    @staticmethod
    def _user_problem(d: _Dialogue, asks: dict[str, dict], reply: UserTurnReply, system: str) -> str | None:
        from ...quality import prompt_echo, ungrounded_arguments, user_turn_problems

        earlier = [m["content"] for m in d.messages if m.get("role") == "user"]
        problems = user_turn_problems(reply.message, earlier)
        if problems:
            return problems[0]
        echo = prompt_echo(reply.message, system)
        if echo:
            return echo
        for name in asks:
            values = reply.values.get(name) or {}
            missing = ungrounded_arguments(values, d.tool_named(name), [reply.message])
            if missing:
                return f"{missing[0]} (the message must state every value you chose)"
        return None

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
        prompts, schemas = [], []
        for d in asked:
            calling = d.phase == CALL
            wave_names = [d.spec(s)["function"]["name"] for s in d.wave()] if calling else []
            prompts.append(
                self.render(
                    "mt_assistant_agent",
                    tools=d.tools,
                    tools_text=tools_text(d.tools, descriptions=True),
                    transcript=chat_to_transcript(d.messages[1:], max_chars=TRANSCRIPT_CHARS),
                    feedback=d.feedback,
                    calling=calling,
                    call_names=wave_names,
                )
            )
            if calling:
                wave_tools = [t for t in d.tools if t["function"]["name"] in wave_names]
                schemas.append(assistant_reply_schema(wave_tools, n_calls=len(wave_names)))
            else:
                schemas.append(assistant_reply_schema([], n_calls=0))
        for d, parsed in zip(asked, ask_structured(self.llm_serving, prompts, AssistantTurnReply, schemas)):
            d.assistant_turns += 1
            if not parsed.ok:
                if parsed.reason.startswith("llm_error"):
                    d.fail(f"{parsed.reason} (assistant agent)")
                else:
                    d.reask_or_fail(parsed.reason)
            elif d.phase == CALL:
                self._take_calls(d, parsed.value)
            else:
                self._take_answer(d, parsed.value)

    def _take_calls(self, d: _Dialogue, reply: AssistantTurnReply) -> None:
        from ...quality import ungrounded_arguments

        wave = d.wave()
        calls = [c.read() for c in reply.tool_calls]  # read once, by the reply model
        if not calls:
            d.reask_or_fail("no_tool_call: answered without calling the tools the request needs")
            return
        wanted = sorted(d.spec(s)["function"]["name"] for s in wave)
        if sorted(c.name for c in calls) != wanted:
            d.reask_or_fail(f"wrong_tools: the request needs {', '.join(wanted)}, one call each")
            return
        errors = validate_calls(calls, d.tools)
        if errors:
            d.reask_or_fail(f"invalid_call: {'; '.join(errors[:3])}")
            return
        context = d.context()
        for call in calls:
            ungrounded = ungrounded_arguments(call.arguments, d.tool_named(call.name), context)
            if ungrounded:
                d.reask_or_fail(
                    f"{ungrounded[0]}; take every argument value from the user's messages or earlier tool results"
                )
                return
        keys = [call_key(c) for c in calls]
        repeats = [c.name for i, c in enumerate(calls) if keys[i] in d.answered_calls or keys[i] in keys[:i]]
        if repeats:
            d.reask_or_fail(f"repeated_call: {repeats[0]} was already called with these arguments; use its result")
            return
        d.feedback = ""
        d.pending = []
        unassigned = list(wave)
        made = []
        for call, key in zip(calls, keys):
            sub_task = next(s for s in unassigned if d.spec(s)["function"]["name"] == call.name)
            unassigned.remove(sub_task)
            d.calls_made += 1
            d.answered_calls.add(key)
            made.append(call.to_openai(f"call_{d.calls_made}"))  # carries the read call to the checks after
            d.pending.append({"id": f"call_{d.calls_made}", "sub_task": sub_task, **call.as_dict()})
        d.messages.append({"role": "assistant", "tool_calls": made})
        d.results = {}
        d.phase = TOOL

    def _take_answer(self, d: _Dialogue, reply: AssistantTurnReply) -> None:
        from ...quality import answer_problems, degenerate_text

        content = reply.content.strip()
        if reply.tool_calls:
            d.reask_or_fail("unexpected_call: the results are in; answer the user without calling tools")
            return
        problem = answer_problems(content, d.turn_results) or degenerate_text(content)
        if problem:
            d.reask_or_fail(problem)
            return
        d.feedback = ""
        d.messages.append({"role": "assistant", "content": content})
        d.phase = USER if d.turn + 1 < len(d.plan) else DONE

    # -- tool agent ---------------------------------------------------------------------------
    def _tool_round(self, dialogues: list[_Dialogue]) -> None:
        from ...quality import degenerate_text, result_echoes_arguments

        jobs: list[tuple[_Dialogue, dict]] = [
            (d, call) for d in dialogues for call in d.pending if call["id"] not in d.results
        ]
        if not jobs:
            return
        prompts, schemas = [], []
        for d, call in jobs:
            spec = d.spec(call["sub_task"])
            request = next(m["content"] for m in reversed(d.messages) if m.get("role") == "user")
            prompts.append(
                self.render(
                    "mt_tool_agent",
                    function_name=call["name"],
                    description=spec["function"].get("description", ""),
                    arguments=call["arguments"],
                    response_schema=response_schema(spec),
                    request=request,
                    feedback=d.call_feedback.get(call["id"], ""),
                )
            )
            schemas.append(_tool_reply_schema(response_schema(spec)))
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
            value = parsed.value.result
            problem = _shape_problem(value, response_schema(d.spec(call["sub_task"])))
            if problem:
                d.reask_or_fail(f"invalid_tool_result: {call['name']}: {problem}", call["id"])
                continue
            problem = result_echoes_arguments(call["arguments"], value) or degenerate_text(
                json.dumps(value, ensure_ascii=False)
            )
            if problem:
                d.reask_or_fail(f"{problem} (result of {call['name']})", call["id"])
                continue
            d.results[call["id"]] = value
        for d in dialogues:
            if d.phase == TOOL and all(c["id"] in d.results for c in d.pending):
                for c in d.pending:
                    d.messages.append(
                        {"role": "tool", "tool_call_id": c["id"], "content": json.dumps(d.results[c["id"]], ensure_ascii=False)}
                    )
                    d.turn_results.append(d.results[c["id"]])
                    d.done.add(c["sub_task"])
                d.pending, d.results, d.call_feedback = [], {}, {}
                d.phase = CALL if d.wave() else ANSWER


def user_reply_schema(asks: dict[str, dict[str, dict]]) -> dict:
    """The JSON schema of one user-agent reply: ``values`` (function name -> the parameters the
    user gives, each typed as in the tool, strings bounded), then ``message``. The values come
    first so that the message is written after them."""
    values: dict[str, Any] = {}
    for name, params in asks.items():
        props = {}
        for p, prop in params.items():
            props[p] = {k: v for k, v in prop.items() if k in ("type", "enum", "description", "minimum", "maximum")}
        _bound_strings(props)
        values[name] = {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    return {
        "title": UserTurnReply.__name__,
        "type": "object",
        "properties": {
            "values": {"type": "object", "properties": values, "required": list(values), "additionalProperties": False},
            "message": {"type": "string", "minLength": 2, "maxLength": USER_CHARS},
        },
        "required": ["values", "message"],
        "additionalProperties": False,
    }


def assistant_reply_schema(tools: list[dict], n_calls: int = 0) -> dict:
    """The JSON schema of one assistant-agent reply. ``n_calls > 0``: exactly that many calls,
    each ``{"name": <const>, "arguments": <that tool's parameters>}`` for one of ``tools``
    (string arguments bounded for decoding), and an empty ``content``; ``n_calls == 0``: no call
    and a non-empty answer. ``AssistantTurnReply`` still validates the reply, and
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
    calls: dict[str, Any] = {"type": "array", "minItems": n_calls, "maxItems": n_calls}
    calls["items"] = {"anyOf": variants} if variants else {"type": "object"}
    return {
        "title": AssistantTurnReply.__name__,
        "type": "object",
        "properties": {
            "tool_calls": calls,
            # a calling turn has nothing to say yet (a small model otherwise "answers" before calling)
            "content": {"type": "string", "minLength": 0 if n_calls else 10, "maxLength": 0 if n_calls else ANSWER_CHARS},
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
