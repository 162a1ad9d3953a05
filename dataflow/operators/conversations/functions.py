"""FunctionGenerator: composed task + sub-tasks -> parsed OpenAI tool specs with response shapes.

The LLM does not write JSON Schema itself: it fills a tight structure (function name, one-line
description, typed parameters, typed return fields, and which sub-task the function serves), and
this module builds the specs from it. That keeps small models on track under constrained decoding
and makes every produced schema valid by construction (still checked with ``jsonschema``).

Output column (default ``functions``): a list of tools, each::

    {"type": "function",
     "function": {"name": ..., "description": ...,
                  "parameters": {"type": "object", "properties": {...}, "required": [...],
                                 "additionalProperties": false}},
     "x-response": {"type": "object", "properties": {...}, "required": [...],
                    "additionalProperties": false}}

``x-response`` is the declared JSON Schema of the function's result; the multi-turn generator's
tool agent answers in that shape. ``openai_tools()`` strips ``x-`` keys for fine-tuning files.
A later sub-task's function is asked to take an earlier function's return field as a parameter
(same name), so one call's output can feed the next.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ...core import RowOutcome, RunReport, merge_row
from ._base import InvalidInput, StructuredLLMOperator, Text, as_key_list, sub_tasks_of, text_value

MAX_SUB_TASKS = 8
RESPONSE_KEY = "x-response"

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_]{0,39}$")]
FunctionName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_]{2,47}$")]
JsonType = Literal["string", "integer", "number", "boolean"]


class FieldReply(BaseModel):
    """One typed return field of a function."""

    model_config = ConfigDict(extra="forbid")
    name: Identifier
    type: JsonType
    description: Text(100, 2)


class ParameterReply(BaseModel):
    """One typed parameter; ``enum`` lists allowed string values (empty: any value)."""

    model_config = ConfigDict(extra="forbid")
    name: Identifier
    type: JsonType
    description: Text(100, 2)
    required: bool
    enum: list[Text(40, 1)] = Field(max_length=6)


class FunctionReply(BaseModel):
    """One function, serving sub-task number ``sub_task`` (1-based)."""

    model_config = ConfigDict(extra="forbid")
    sub_task: int = Field(ge=1, le=MAX_SUB_TASKS)
    name: FunctionName
    description: Text(150, 5)
    parameters: list[ParameterReply] = Field(min_length=1, max_length=5)
    returns: list[FieldReply] = Field(min_length=1, max_length=5)


class FunctionSetReply(BaseModel):
    """The functions for all sub-tasks of one composed task."""

    model_config = ConfigDict(extra="forbid")
    functions: list[FunctionReply] = Field(min_length=1, max_length=MAX_SUB_TASKS * 2)


def openai_tools(functions: Sequence[dict]) -> list[dict]:
    """The tool specs without this library's ``x-`` extension keys (what OpenAI's API takes)."""
    return [{k: v for k, v in spec.items() if not k.startswith("x-")} for spec in functions]


def response_schema(spec: dict) -> dict:
    """The declared result schema of a generated tool (any object when none was declared)."""
    return spec.get(RESPONSE_KEY) or {"type": "object"}


def tools_text(tools: list[dict]) -> str:
    """One line per tool: ``name(arg: type, opt?: type one of [..]) - description``."""
    lines = []
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        params = fn.get("parameters") or {}
        required = set(params.get("required") or [])
        args = []
        for name, prop in (params.get("properties") or {}).items():
            text = f"{name}{'' if name in required else '?'}: {prop.get('type', 'any')}"
            if prop.get("enum"):
                text += f" one of {json.dumps(prop['enum'], ensure_ascii=False)}"
            args.append(text)
        lines.append(f"- {fn.get('name')}({', '.join(args)}): {fn.get('description', '')}")
    return "\n".join(lines)


def build_specs(reply: FunctionSetReply, n_sub_tasks: int) -> list[dict]:
    """Tool specs from a validated reply; raises ``InvalidInput`` (reason ``invalid_functions``)."""
    specs: list[dict] = []
    seen: set[str] = set()
    covered: set[int] = set()
    for fn in reply.functions:
        if fn.sub_task > n_sub_tasks:
            raise InvalidInput(f"invalid_functions: {fn.name} names sub-task {fn.sub_task} of {n_sub_tasks}")
        if fn.name in seen:
            raise InvalidInput(f"invalid_functions: duplicate function name {fn.name!r}")
        seen.add(fn.name)
        covered.add(fn.sub_task)
        specs.append(
            {
                "type": "function",
                "function": {
                    "name": fn.name,
                    "description": fn.description,
                    "parameters": _object_schema(fn.name, fn.parameters, all_required=False),
                },
                RESPONSE_KEY: _object_schema(fn.name, fn.returns, all_required=True),
            }
        )
    missing = sorted(set(range(1, n_sub_tasks + 1)) - covered)
    if missing:
        raise InvalidInput(f"invalid_functions: no function for sub-task {missing[0]}")
    _check_schemas(specs)
    return specs


def _object_schema(function: str, fields: Sequence[FieldReply | ParameterReply], all_required: bool) -> dict:
    properties: dict[str, dict] = {}
    required: list[str] = []
    for f in fields:
        if f.name in properties:
            raise InvalidInput(f"invalid_functions: {function} declares {f.name!r} twice")
        prop: dict[str, Any] = {"type": f.type, "description": f.description}
        enum = getattr(f, "enum", None)
        if enum and f.type == "string":  # an enum only constrains string parameters; others ignore it
            prop["enum"] = list(dict.fromkeys(enum))
        properties[f.name] = prop
        if all_required or getattr(f, "required", True):
            required.append(f.name)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _check_schemas(specs: list[dict]) -> None:
    """Legal names and valid JSON Schemas, by the shared tool-spec rules (``dataflow.tools``)."""
    from ...core.errors import ToolSpecError
    from ...tools import normalize_tools
    from ...tools.spec import check_json_schema

    try:
        normalize_tools(openai_tools(specs))
        for spec in specs:
            check_json_schema(spec["function"]["name"], spec[RESPONSE_KEY])
    except ToolSpecError as exc:
        raise InvalidInput(f"invalid_functions: {exc}") from None


class FunctionGenerator(StructuredLLMOperator):
    """Composed task + sub-tasks -> the tool specs (with response shapes) that can do them."""

    prompt_names = ("function_generator",)

    def run(
        self,
        storage: Any,
        input_composition_task_key: str = "composition_task",
        input_sub_tasks_keys: Sequence[str] = ("atom_task", "subsequent_task"),
        output_key: str = "functions",
    ) -> RunReport:
        keys = dict(
            input_composition_task_key=input_composition_task_key,
            input_sub_tasks_keys=as_key_list(input_sub_tasks_keys),
            output_key=output_key,
        )
        return self._run_step(
            storage,
            inputs={k: v for k, v in keys.items() if k.startswith("input_")},
            outputs={"output_key": output_key},
            batch_fn=lambda rows: self.process_batch(rows, **keys),
        )

    def process_batch(
        self,
        rows: list[dict],
        input_composition_task_key: str = "composition_task",
        input_sub_tasks_keys: Sequence[str] = ("atom_task", "subsequent_task"),
        output_key: str = "functions",
    ) -> list[RowOutcome]:
        columns = as_key_list(input_sub_tasks_keys)

        def variables(row: dict) -> dict:
            sub_tasks = sub_tasks_of(row, columns)
            if len(sub_tasks) > MAX_SUB_TASKS:
                raise InvalidInput(f"invalid_input: {len(sub_tasks)} sub-tasks (at most {MAX_SUB_TASKS})")
            return {"composition_task": text_value(row, input_composition_task_key), "sub_tasks": sub_tasks}

        def finish(row: dict, reply: FunctionSetReply) -> RowOutcome:
            specs = build_specs(reply, len(sub_tasks_of(row, columns)))
            return RowOutcome.keep(merge_row(row, **{output_key: specs}))

        return self.structured_round(rows, variables, FunctionSetReply, finish)
