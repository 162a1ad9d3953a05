"""FunctionGenerator: composed task + sub-tasks -> parsed OpenAI tool specs with response shapes.

The LLM does not write JSON Schema itself: it fills a tight structure, exactly one function per
sub-task in order (name, one-line description, typed parameters, typed return fields), and this
module builds the specs from it. The structure is small enough for a 0.5B model under
constrained decoding: types are an enum, lengths are bounded, and the schema sent for a row asks
for exactly as many functions as the row has sub-tasks. Names are not left to the model's
spelling: function, parameter and return-field names are made snake_case deterministically
(``Get Weather!`` -> ``get_weather``) and duplicates are resolved (the same function asked for
twice with the same parameters becomes one tool; otherwise the later one is renamed
``name_2``), so a sloppy name is repaired instead of failing the row. Every produced schema is
still checked (legal names, valid JSON Schema) by the shared tool-spec rules.

Output column (default ``functions``): a list of tools, each::

    {"type": "function",
     "function": {"name": ..., "description": ...,
                  "parameters": {"type": "object", "properties": {...}, "required": [...],
                                 "additionalProperties": false}},
     "x-response": {"type": "object", "properties": {...}, "required": [...],
                    "additionalProperties": false}}

``x-response`` is the declared JSON Schema of the function's result (string fields bounded to
``RESULT_STRING_CHARS``); the multi-turn generator's tool agent answers in that shape.
``openai_tools()`` strips ``x-`` keys for fine-tuning files. A later sub-task's function is asked
to take an earlier function's return field as a parameter (same name), so one call's output can
feed the next.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ...core import RowOutcome, RunReport, merge_row, schema_for
from ...core.errors import InvalidInput, Reask
from ...core.rounds import Text, text_value
from ..llm import StructuredLLMOperator
from ._base import as_key_list, sub_tasks_of

MAX_SUB_TASKS = 8
MAX_NAME = 48
RESPONSE_KEY = "x-response"
SUB_TASKS_KEY = "x-sub-tasks"
RESULT_STRING_CHARS = 120

JsonType = Literal["string", "integer", "number", "boolean"]


class FieldReply(BaseModel):
    """One typed return field of a function."""

    model_config = ConfigDict(extra="forbid")
    name: Text(40, 1)
    type: JsonType


class ParameterReply(BaseModel):
    """One typed parameter; ``enum`` lists allowed string values (empty or absent: any value)."""

    model_config = ConfigDict(extra="forbid")
    name: Text(40, 1)
    type: JsonType
    description: Text(80, 2)
    required: bool
    enum: list[Text(40, 1)] = Field(default_factory=list, max_length=5)


class FunctionReply(BaseModel):
    """One function; the i-th function of a reply serves the i-th sub-task."""

    model_config = ConfigDict(extra="forbid")
    name: Text(MAX_NAME, 1)
    description: Text(120, 5)
    parameters: list[ParameterReply] = Field(min_length=1, max_length=4)
    returns: list[FieldReply] = Field(min_length=1, max_length=4)


class FunctionSetReply(BaseModel):
    """The functions for all sub-tasks of one composed task: one per sub-task, in order."""

    model_config = ConfigDict(extra="forbid")
    functions: list[FunctionReply] = Field(min_length=1, max_length=MAX_SUB_TASKS)


def function_set_schema(n_sub_tasks: int) -> dict:
    """``FunctionSetReply``'s JSON schema, asking for exactly ``n_sub_tasks`` functions."""
    schema = schema_for(FunctionSetReply)
    schema["properties"]["functions"]["minItems"] = n_sub_tasks
    schema["properties"]["functions"]["maxItems"] = n_sub_tasks
    return schema


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def snake_name(text: str, max_length: int = MAX_NAME, fallback: str = "value") -> str:
    """``text`` as a snake_case identifier starting with a letter: ``getWeather`` and
    ``Get Weather!`` -> ``get_weather``, ``3d view`` -> ``n_3d_view``; ``fallback`` when nothing
    usable is left."""
    name = _NOT_WORD.sub("_", _CAMEL.sub("_", str(text).strip()).lower()).strip("_")
    if name and not name[0].isalpha():
        name = f"n_{name}"
    name = name[:max_length].rstrip("_")
    return name or fallback


def openai_tools(functions: Sequence[dict]) -> list[dict]:
    """The tool specs without this library's ``x-`` extension keys (what OpenAI's API takes)."""
    return [{k: v for k, v in spec.items() if not k.startswith("x-")} for spec in functions]


def response_schema(spec: dict) -> dict:
    """The declared result schema of a generated tool (any object when none was declared)."""
    return spec.get(RESPONSE_KEY) or {"type": "object"}


def tools_text(tools: list[dict], descriptions: bool = False) -> str:
    """One line per tool: ``name(arg: type, opt?: type one of [..]) - description``; with
    ``descriptions``, each argument also carries its description in parentheses."""
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
            if descriptions and prop.get("description"):
                text += f" ({prop['description']})"
            args.append(text)
        lines.append(f"- {fn.get('name')}({', '.join(args)}): {fn.get('description', '')}")
    return "\n".join(lines)


def build_specs(reply: FunctionSetReply, n_sub_tasks: int) -> list[dict]:
    """Tool specs from a validated reply: the i-th function serves sub-task i (listed in its
    ``x-sub-tasks``), with snake_case names. The same function asked for by two sub-tasks (same
    name, same parameters) becomes one tool serving both. Raises ``InvalidInput`` with reason
    ``invalid_functions`` when a sub-task has no function or a schema is invalid, and
    ``near_duplicate_tools`` when two different functions share a name or nearly so
    (``search_recipes`` / ``search_recipe``): renaming one ``_2`` would export two tools that do
    the same thing."""
    from ...quality import near_duplicate_pairs

    if len(reply.functions) < n_sub_tasks:
        raise InvalidInput(f"invalid_functions: {len(reply.functions)} function(s) for {n_sub_tasks} sub-tasks")
    specs: list[dict] = []
    by_name: dict[str, dict] = {}
    for i, fn in enumerate(reply.functions[:n_sub_tasks]):
        name = snake_name(fn.name, MAX_NAME, f"do_sub_task_{i + 1}")
        parameters = _object_schema(fn.parameters, result=False)
        earlier = by_name.get(name)
        if earlier is not None and earlier["function"]["parameters"] == parameters:
            earlier[SUB_TASKS_KEY].append(i)  # the same function serves another sub-task
            continue
        if earlier is not None:
            raise InvalidInput(f"near_duplicate_tools: two different functions are both named {name!r}")
        spec = {
            "type": "function",
            "function": {"name": name, "description": fn.description, "parameters": parameters},
            RESPONSE_KEY: _object_schema(fn.returns, result=True),
            SUB_TASKS_KEY: [i],
        }
        by_name[name] = spec
        specs.append(spec)
    names = [s["function"]["name"].replace("_", " ") for s in specs]
    for a, b, _ in near_duplicate_pairs(names, threshold=90):
        raise InvalidInput(
            f"near_duplicate_tools: {specs[a]['function']['name']!r} and {specs[b]['function']['name']!r}"
        )
    _check_schemas(specs)
    return specs


def _object_schema(fields: Sequence[FieldReply | ParameterReply], result: bool) -> dict:
    """A closed object schema; names made snake_case (a repeated name keeps its first use). All
    result fields are required and their strings bounded; parameters say themselves."""
    properties: dict[str, dict] = {}
    required: list[str] = []
    for i, f in enumerate(fields, start=1):
        name = snake_name(f.name, 40, f"field_{i}")
        if name in properties:
            continue
        prop: dict[str, Any] = {"type": f.type}
        if result and f.type == "string":
            prop["maxLength"] = RESULT_STRING_CHARS
        description = getattr(f, "description", None)
        if description:
            prop["description"] = description
        enum = getattr(f, "enum", None)
        if enum and f.type == "string":  # an enum only constrains string parameters; others ignore it
            prop["enum"] = list(dict.fromkeys(enum))
        properties[name] = prop
        if result or getattr(f, "required", True):
            required.append(name)
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
    echo_check = False  # its prompt's example tool may rightly be resembled; names are checked by spec_leak

    def __init__(self, llm_serving: Any = None, max_reasks: int = 1, prompt_template: Any = None):
        super().__init__(llm_serving=llm_serving, prompt_template=prompt_template)
        self.max_reasks = max_reasks

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
        return self._run_keys(storage, keys, params={"max_reasks": self.max_reasks})

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
            try:
                specs = build_specs(reply, len(sub_tasks_of(row, columns)))
                leak = _leaking_text(specs)
                if leak:
                    raise InvalidInput(leak)
            except InvalidInput as exc:
                if str(exc).startswith("invalid_input"):
                    raise
                raise Reask(f"{exc}. Give each sub-task its own function with a distinct name, "
                            "and describe what the function does, not the instructions.",
                            RowOutcome.fail(str(exc))) from None
            return RowOutcome.keep(merge_row(row, **{output_key: specs}))

        return self.structured_round(
            rows,
            variables,
            FunctionSetReply,
            finish,
            row_schema=lambda row: function_set_schema(len(sub_tasks_of(row, columns))),
            max_reasks=self.max_reasks,
        )


def _leaking_text(specs: list[dict]) -> str | None:
    """The first tool name, description or parameter that carries words of the generation
    instructions (``keep_concrete``, "sub-task 1", "Task A's result"), as an ``instruction_leak``
    reason."""
    from ...quality import spec_leak

    for spec in specs:
        fn = spec["function"]
        texts = [fn["name"].replace("_", " "), fn.get("description", "")]
        for name, prop in (fn.get("parameters") or {}).get("properties", {}).items():
            texts += [name.replace("_", " "), prop.get("description", "")]
        for text in texts:
            problem = spec_leak(text)
            if problem:
                return f"{problem} (in tool {fn['name']})"
    return None
