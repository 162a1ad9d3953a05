"""EnvironmentConversationGenerator: conversations against a real environment, kept only when
the environment ends where the task's blueprint says (APIGen-MT's trajectory stage; tau-bench
scores agents the same way).

Per blueprint row and attempt, on a fresh copy of the environment (``environment.open()``):

- a **user agent** (``env_user_agent``) knows only the intent; it writes the person's messages
  and says ``done`` when it is served (its messages pass ``user_turn_problems`` and the prompt
  echo check, or are asked again);
- an **assistant agent** (``env_assistant_agent``) sees the tools and the conversation, and either
  calls tools (checked with ``validate_calls`` and for grounding, as the multi-turn generator's
  calls are; a call that fails a check is asked again) or talks to the user. Its calls run on the
  environment; the real result, or the tool's error (``{"error": "ValueError: ..."}``), is the
  tool message, and the conversation goes on.

A finished conversation is kept only when the environment's final state equals the blueprint's
``expected_state`` (else ``state_mismatch: orders[O1002].status "processing" != expected
"cancelled"``), its answers state every expected fact (``missing_fact``) and a tool result of the
conversation shows it (``unsupported_fact``: a read-only or refused task leaves the state as
expected whatever is said, so an answer that guesses the fact without a call would pass), and it passes
``check_conversation`` and ``dataflow.quality.conversation_problems`` (``unused_tool`` aside: an
environment offers more tools than one task uses). A tool that hangs or kills its worker fails
that conversation (``environment_error``), never the step.

``attempts`` > 1 runs that many independent conversations per blueprint (sampled with
``temperature`` and a seed per attempt) and records ``trajectory_passes`` and pass^k, the
chance that k attempts all pass, estimated as C(c, k) / C(n, k) for c passes of n (tau-bench).
The first passing attempt is kept; a blueprint with none fails with its first attempt's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Any

from pydantic import BaseModel, ConfigDict

from ...core import RowOutcome, RunReport, merge_row, parse_reply
from ...core.llm import prompt_messages
from ...core.rounds import Text
from ..llm import StructuredLLMOperator
from ..conversations.functions import tools_text
from ..conversations.multi_turn import ANSWER_CHARS, MAX_CALLS_PER_TURN, AssistantTurnReply, assistant_reply_schema
from ..conversations.structure import check_conversation
from ..conversations.transcript import chat_to_transcript
from .environment import StateUnavailable, state_difference

#: the system message of every generated environment conversation (training data)
CONVERSATION_SYSTEM_PROMPT = ("You are a customer-service assistant. Use the tools to look things up and to make "
                              "changes.")
TRANSCRIPT_CHARS = 12000
USER_CHARS = 400
USER, ASSISTANT, DONE, FAILED = "user", "assistant", "done", "failed"
IGNORED_PROBLEMS = ("unused_tool",)


class UserReply(BaseModel):
    """The simulated person's next message, or ``done`` when they have what they wanted."""

    model_config = ConfigDict(extra="forbid")
    message: Text(USER_CHARS, 1)
    done: bool


def pass_hat_k(passes: int, attempts: int) -> dict[str, float]:
    """pass^k for k = 1..attempts: the chance that k attempts drawn from these all pass,
    C(passes, k) / C(attempts, k) (tau-bench's estimator). Keys are ``"1"``, ``"2"``, ..."""
    return {str(k): comb(passes, k) / comb(attempts, k) for k in range(1, attempts + 1)}


def assistant_schema(tools: list[dict]) -> dict:
    """The assistant's reply schema: 0 to ``MAX_CALLS_PER_TURN`` calls of the environment's
    tools (as the multi-turn generator's calls), or an answer in ``content``."""
    schema = assistant_reply_schema(tools, n_calls=1)
    schema["properties"]["tool_calls"].update(minItems=0, maxItems=MAX_CALLS_PER_TURN)
    schema["properties"]["content"].update(minLength=0, maxLength=ANSWER_CHARS)
    return schema


@dataclass
class _Attempt:
    """One conversation with its own copy of the environment."""

    row: int
    number: int
    intent: str
    session: Any
    messages: list[dict]
    reasks_left: int
    phase: str = USER
    feedback: str = ""
    user_turns: int = 0
    assistant_turns: int = 0
    calls_made: int = 0
    reason: str | None = None
    final_state: dict | None = None

    def fail(self, reason: str) -> None:
        self.phase, self.reason = FAILED, reason

    def reask_or_fail(self, reason: str) -> None:
        if self.reasks_left <= 0:
            self.fail(reason)
        else:
            self.reasks_left -= 1
            self.feedback = reason

    def context(self) -> list[str]:
        return [m.get("content") or "" for m in self.messages if m.get("role") in ("user", "tool")]


class EnvironmentConversationGenerator(StructuredLLMOperator):
    """Blueprints -> conversations run against the real environment, state-checked (see the
    module docstring). Output columns: ``conversations`` (OpenAI messages), ``tools``,
    ``environment``, ``state_check`` (``"passed"``), ``trajectory_attempts``,
    ``trajectory_passes``, ``pass_hat_k`` (``{"1": p, ...}``), ``attempt_reasons`` (the
    failed attempts' reasons).

    ``environment``: the ``PythonEnvironment`` or ``McpEnvironment`` the blueprints were made on.
    ``attempts``: conversations per blueprint (APIGen-MT uses up to 3; pass^k is recorded).
    ``max_user_turns`` / ``max_assistant_turns``: bounds of one conversation (the person's
    messages; assistant replies, calling or talking). ``max_reasks``: re-asks per conversation
    after a failed check. ``max_live_sessions``: conversations (each a worker process) run at
    once. ``temperature``: sampling of every attempt when ``attempts`` > 1. Raises
    ``ConfigError`` without an environment."""

    prompt_names = ("env_user_agent", "env_assistant_agent")
    extra_output_columns = ("environment", "state_check", "trajectory_attempts", "trajectory_passes", "pass_hat_k",
                            "attempt_reasons")  # beside the conversations and tools columns

    def __init__(self, llm_serving: Any = None, environment: Any = None, attempts: int = 1,
                 max_user_turns: int = 4, max_assistant_turns: int = 10, max_reasks: int = 3,
                 max_live_sessions: int = 8, temperature: float = 0.7, system_prompt: str = CONVERSATION_SYSTEM_PROMPT,
                 prompt_template: Any = None):
        super().__init__(llm_serving, prompt_template)
        if environment is None:
            from ...core.errors import ConfigError

            raise ConfigError("EnvironmentConversationGenerator needs environment=PythonEnvironment(...) "
                              "or McpEnvironment(...)")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.environment = environment
        self.attempts = attempts
        self.max_user_turns = max_user_turns
        self.max_assistant_turns = max_assistant_turns
        self.max_reasks = max_reasks
        self.max_live_sessions = max(1, max_live_sessions)
        self.temperature = temperature
        self.system_prompt = system_prompt

    def run(self, storage: Any, input_intent_key: str = "intent", input_state_key: str = "expected_state",
            input_facts_key: str = "expected_facts", output_key: str = "conversations",
            output_tools_key: str = "tools") -> RunReport:
        keys = dict(input_intent_key=input_intent_key, input_state_key=input_state_key,
                    input_facts_key=input_facts_key, output_key=output_key, output_tools_key=output_tools_key)
        return self._run_keys(storage, keys, params={
            "environment": self.environment.fingerprint(), "attempts": self.attempts,
            "max_user_turns": self.max_user_turns, "max_assistant_turns": self.max_assistant_turns,
            "max_reasks": self.max_reasks, "temperature": self.temperature, "system_prompt": self.system_prompt})

    # -- row logic ----------------------------------------------------------------------------
    def process_batch(self, rows: list[dict], input_intent_key: str = "intent",
                      input_state_key: str = "expected_state", input_facts_key: str = "expected_facts",
                      output_key: str = "conversations", output_tools_key: str = "tools") -> list[RowOutcome]:
        self.require_llm()
        tools = self.environment.tool_specs()
        jobs = [(i, n) for i in range(len(rows)) for n in range(self.attempts)]
        verdicts: dict[tuple[int, int], tuple[str | None, list[dict]]] = {}
        invalid: dict[int, str] = {}
        for i, row in enumerate(rows):
            intent = row.get(input_intent_key)
            if not isinstance(intent, str) or not intent.strip():
                invalid[i] = f"invalid_input: column {input_intent_key!r} is empty"
            elif not isinstance(row.get(input_state_key), dict):
                invalid[i] = f"invalid_input: column {input_state_key!r} holds no state (run TaskBlueprintGenerator)"
        jobs = [job for job in jobs if job[0] not in invalid]
        for start in range(0, len(jobs), self.max_live_sessions):
            chunk = jobs[start:start + self.max_live_sessions]
            attempts = [self._open(rows[i], i, n, input_intent_key) for i, n in chunk]
            try:
                self._converse([a for a in attempts if a.phase != FAILED], tools)
                for a in attempts:
                    verdicts[(a.row, a.number)] = (self._verdict(a, rows[a.row], tools, input_state_key,
                                                                 input_facts_key), a.messages)
            finally:
                for a in attempts:
                    if a.session is not None:
                        a.session.close()
        outcomes = []
        for i, row in enumerate(rows):
            if i in invalid:
                outcomes.append(RowOutcome.fail(invalid[i]))
                continue
            results = [verdicts[(i, n)] for n in range(self.attempts)]
            passed = [messages for reason, messages in results if reason is None]
            reasons = [reason for reason, _ in results if reason is not None]
            if not passed:
                note = f" (0 of {self.attempts} attempts passed)" if self.attempts > 1 else ""
                outcomes.append(RowOutcome.fail(reasons[0] + note))
                continue
            outcomes.append(RowOutcome.keep(merge_row(row, **{
                output_key: passed[0], output_tools_key: tools, "environment": self.environment.name,
                "state_check": "passed", "trajectory_attempts": self.attempts, "trajectory_passes": len(passed),
                "pass_hat_k": pass_hat_k(len(passed), self.attempts), "attempt_reasons": reasons})))
        return outcomes

    def _open(self, row: dict, index: int, number: int, intent_key: str) -> _Attempt:
        messages = [{"role": "system", "content": self.system_prompt}]
        try:
            session = self.environment.open()
        except Exception as exc:  # noqa: BLE001 - an environment that cannot start fails this conversation
            attempt = _Attempt(index, number, row[intent_key].strip(), None, messages, self.max_reasks)
            attempt.fail(f"environment_error: {type(exc).__name__}: {exc}")
            return attempt
        return _Attempt(index, number, row[intent_key].strip(), session, messages, self.max_reasks)

    def _options(self, attempts: list[_Attempt]) -> list[dict | None] | None:
        if self.attempts == 1:
            return None
        return [{"temperature": self.temperature, "seed": a.number} for a in attempts]

    def _converse(self, attempts: list[_Attempt], tools: list[dict]) -> None:
        while any(a.phase in (USER, ASSISTANT) for a in attempts):
            self._user_round([a for a in attempts if a.phase == USER])
            self._assistant_round([a for a in attempts if a.phase == ASSISTANT], tools)

    # -- user agent ---------------------------------------------------------------------------
    def _user_round(self, attempts: list[_Attempt]) -> None:
        from ...quality import prompt_echo, user_turn_problems

        asked = []
        for a in attempts:
            if a.user_turns >= self.max_user_turns:
                a.phase = DONE  # the person has said all they will
            else:
                asked.append(a)
        if not asked:
            return
        prompts = []
        for a in asked:
            system, user = self.render("env_user_agent", intent=a.intent, opening=a.user_turns == 0,
                                       transcript=chat_to_transcript(a.messages[1:], max_chars=TRANSCRIPT_CHARS))
            if a.feedback:
                user += f"\n\nYour previous message was rejected: {a.feedback} Write it again."
            prompts.append((system, user))
        results = self.llm_serving.generate_from_conversations(
            [prompt_messages(s, u) for s, u in prompts], json_schema=_user_schema(), options=self._options(asked))
        for a, (system, _), result in zip(asked, prompts, results):
            parsed = parse_reply(result, UserReply)
            if not parsed.ok:
                (a.fail if parsed.reason.startswith("llm_error") else a.reask_or_fail)(f"{parsed.reason} (user agent)")
                continue
            reply = parsed.value
            if reply.done and a.user_turns > 0:
                a.phase = DONE
                continue
            earlier = [m["content"] for m in a.messages if m.get("role") == "user"]
            # the person restates their intent in their own message; only the rest of the instructions may not leak
            problem = (next(iter(user_turn_problems(reply.message, earlier)), None)
                       or prompt_echo(reply.message, system.replace(a.intent, " ")))
            if problem:
                a.reask_or_fail(f"{problem} (user agent)")
                continue
            a.feedback = ""
            a.user_turns += 1
            a.messages.append({"role": "user", "content": reply.message})
            a.phase = ASSISTANT

    # -- assistant agent ----------------------------------------------------------------------
    def _assistant_round(self, attempts: list[_Attempt], tools: list[dict]) -> None:
        asked = []
        for a in attempts:
            if a.assistant_turns >= self.max_assistant_turns:
                a.fail(f"no_final_answer: no answer within {self.max_assistant_turns} assistant replies")
            else:
                asked.append(a)
        if not asked:
            return
        shown = tools_text(tools, descriptions=True)
        prompts = []
        for a in asked:
            system, user = self.render("env_assistant_agent", system_prompt=self.system_prompt, tools_text=shown,
                                       transcript=chat_to_transcript(a.messages[1:], max_chars=TRANSCRIPT_CHARS))
            if a.feedback:
                user += f"\n\nYour previous reply was rejected: {a.feedback}\nFix it."
            prompts.append((system, user))
        results = self.llm_serving.generate_from_conversations(
            [prompt_messages(s, u) for s, u in prompts], json_schema=assistant_schema(tools),
            options=self._options(asked))
        for a, result in zip(asked, results):
            a.assistant_turns += 1
            parsed = parse_reply(result, AssistantTurnReply)
            if not parsed.ok:
                (a.fail if parsed.reason.startswith("llm_error") else a.reask_or_fail)(
                    f"{parsed.reason} (assistant agent)")
            elif parsed.value.tool_calls:
                self._take_calls(a, parsed.value, tools)
            else:
                self._take_answer(a, parsed.value)

    def _take_calls(self, a: _Attempt, reply: AssistantTurnReply, tools: list[dict]) -> None:
        from ...quality import ungrounded_arguments
        from ...tools import validate_calls

        calls = [c.read() for c in reply.tool_calls]  # read once, by the reply model
        errors = validate_calls(calls, tools)
        if errors:
            a.reask_or_fail(f"invalid_call: {'; '.join(errors[:3])}")
            return
        by_name = {t["function"]["name"]: t for t in tools}
        context = a.context()
        for call in calls:
            missing = ungrounded_arguments(call.arguments, by_name[call.name], context)
            if missing:
                a.reask_or_fail(f"{missing[0]}; take every argument value from the user's messages or earlier "
                                "tool results, or ask the user for it")
                return
        a.feedback = ""
        ids = [f"call_{a.calls_made + k + 1}" for k in range(len(calls))]
        a.calls_made += len(calls)
        a.messages.append({"role": "assistant", "tool_calls": [c.to_openai(call_id) for call_id, c in zip(ids, calls)]})
        for call_id, call in zip(ids, calls):
            outcome = a.session.call(call.name, call.arguments)
            if outcome.lost:
                a.fail(f"environment_error: {a.session.lost}")
                return
            a.messages.append({"role": "tool", "tool_call_id": call_id, "content": outcome.content()})
        # the assistant speaks next: more calls, or what the results say

    def _take_answer(self, a: _Attempt, reply: AssistantTurnReply) -> None:
        from ...quality import degenerate_text

        content = reply.content.strip()
        if not content:
            a.reask_or_fail("missing_final_answer: reply with tool calls, or say something to the user")
            return
        problem = degenerate_text(content)
        if problem:
            a.reask_or_fail(problem)
            return
        a.feedback = ""
        a.messages.append({"role": "assistant", "content": content})
        a.phase = USER

    # -- the checks ---------------------------------------------------------------------------
    def _verdict(self, a: _Attempt, row: dict, tools: list[dict], state_key: str, facts_key: str) -> str | None:
        """None when the attempt passes, else the reason it fails."""
        from ...quality import conversation_problems, ungrounded_arguments

        if a.phase == FAILED:
            return a.reason or "failed: unknown"
        if a.messages[-1].get("role") != "assistant" or a.messages[-1].get("tool_calls"):
            return "missing_final_answer: the conversation does not end with an assistant answer"
        try:
            final = a.session.state()
        except StateUnavailable as exc:
            if getattr(self.environment, "state_uri", True) is not None:
                return f"environment_error: {exc}"
            final = None  # an MCP server without a state resource: answers are checked only
        if final is not None:
            difference = state_difference(row[state_key], final)
            if difference:
                return f"state_mismatch: {'; '.join(difference)}"
        answers = [m["content"] for m in a.messages if m.get("role") == "assistant" and m.get("content")]
        results = [m.get("content") or "" for m in a.messages if m.get("role") == "tool"]
        for fact in row.get(facts_key) or []:
            if ungrounded_arguments({"fact": fact}, None, answers):
                return f"missing_fact: no answer states {fact!r}"
            if ungrounded_arguments({"fact": fact}, None, results):  # stated, but never looked up: a guess
                return f"unsupported_fact: no tool result of the conversation shows {fact!r}"
        problems = check_conversation(a.messages, tools, calls_validated=True)  # each call validated when made
        if problems:
            return f"invalid_conversation: {problems[0]}"
        problems = [p for p in conversation_problems(a.messages, tools) if not p.startswith(IGNORED_PROBLEMS)]
        return problems[0] if problems else None


def _user_schema() -> dict:
    return {
        "title": UserReply.__name__,
        "type": "object",
        "properties": {"message": {"type": "string", "minLength": 1, "maxLength": USER_CHARS},
                       "done": {"type": "boolean"}},
        "required": ["message", "done"],
        "additionalProperties": False,
    }
