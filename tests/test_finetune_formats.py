"""Fine-tuning formats checked by the tools people train with, not only by our own reader:

- every format is written from one canonical record and read back equal;
- each file loads with Hugging Face ``datasets`` (``load_dataset("json", ...)``) with no key
  null-filled or lost, and every loaded row reads back to the record written;
- OpenAI and TRL records render through the embedded model's own chat template (read from the
  GGUF file's ``tokenizer.chat_template``, rendered with Jinja2 the way transformers renders it)
  and the text holds every call and every result, in order;
- LLaMA-Factory rows follow that format's alternation rules.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest

from dataflow.exports import RowError
from dataflow.exports.finetune import (
    EXPORT_FORMATS, canonical_record, llamafactory_problems, read_record, to_llamafactory_record, to_openai_record,
    to_trl_record, write_record, write_records,
)
from dataflow.tools.calls import read_arguments, read_calls


def _tool(name: str, properties: dict, required: list | None = None, description: str | None = None) -> dict:
    function = {"name": name, "parameters": {"type": "object", "properties": properties}}
    if description:
        function["description"] = description
    if required is not None:
        function["parameters"]["required"] = required
    return {"type": "function", "function": function}


WEATHER = _tool("get_weather", {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, ["city"],
                "Weather forecast for a city")
TIME = _tool("local_time", {"timezone": {"type": "string", "enum": ["UTC", "Europe/Lisbon"]}})
ROUTE = _tool("plan_route", {"stops": {"type": "array", "items": {"type": "string"}},
                             "options": {"type": "object", "properties": {"avoid_tolls": {"type": "boolean"}}}},
              ["stops"], "Route through several stops")


def _call(cid: str, name: str, arguments: dict) -> dict:
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


#: canonical-to-be records: multi-turn with a parallel turn, nested arguments, JSON and text
#: results, non-ASCII text; a record without a system prompt; single-turn call-only records
MULTI_TURN = {
    "messages": [
        {"role": "system", "content": "You are a travel assistant."},
        {"role": "user", "content": "Weather in Lisbon for 3 days, and the local time there?"},
        {"role": "assistant", "tool_calls": [_call("a", "get_weather", {"city": "Lisbon", "days": 3}),
                                             _call("b", "local_time", {"timezone": "Europe/Lisbon"})]},
        {"role": "tool", "tool_call_id": "b", "content": '{"time":"14:05"}'},
        {"role": "tool", "tool_call_id": "a", "content": '{"forecast": ["sun", "sun", "rain"]}'},
        {"role": "assistant", "content": "Sun, sun, then rain in Lisbon; it is 14:05 there."},
        {"role": "user", "content": "Plan a route Lisboa → Évora → Beja, no tolls."},
        {"role": "assistant", "content": None,
         "tool_calls": [_call("c", "plan_route", {"stops": ["Lisboa", "Évora", "Beja"], "options": {"avoid_tolls": True}})]},
        {"role": "tool", "tool_call_id": "c", "content": "Route: 190 km, 2 h 10 min."},
        {"role": "assistant", "content": "The route is 190 km and takes 2 h 10 min without tolls."},
    ],
    "tools": [WEATHER, TIME, ROUTE],
}
NO_SYSTEM = {
    "messages": [
        {"role": "user", "content": "What time is it in UTC?"},
        {"role": "assistant", "tool_calls": [_call("x", "local_time", {"timezone": "UTC"})]},
        {"role": "tool", "tool_call_id": "x", "content": "09:00"},
        {"role": "assistant", "content": "It is 09:00 UTC."},
    ],
    "tools": [TIME],
}
SINGLE_TURN = {
    "messages": [{"role": "user", "content": "Forecast for Porto, 2 days"},
                 {"role": "assistant", "tool_calls": [_call("call_0", "get_weather", {"city": "Porto", "days": 2})]}],
    "tools": [WEATHER, TIME],
}
SINGLE_PARALLEL = {
    "messages": [{"role": "user", "content": "Weather in Faro and the time in UTC"},
                 {"role": "assistant", "tool_calls": [_call("call_0", "get_weather", {"city": "Faro"}),
                                                      _call("call_1", "local_time", {"timezone": "UTC"})]}],
    "tools": [WEATHER, TIME],
}
CONVERSATIONS = [MULTI_TURN, NO_SYSTEM]
SINGLE = [SINGLE_TURN, SINGLE_PARALLEL]


def _formats_for(record: dict) -> tuple[str, ...]:
    return EXPORT_FORMATS if record in SINGLE else tuple(f for f in EXPORT_FORMATS if f != "xlam")


@pytest.mark.parametrize("record", CONVERSATIONS + SINGLE, ids=["multi_turn", "no_system", "single", "single_parallel"])
def test_every_format_reads_back_equal(record):
    canonical = canonical_record(record)
    assert [c["id"] for m in canonical["messages"] for c in m.get("tool_calls") or []] == \
        [f"call_{i}" for i in range(sum(len(m.get("tool_calls") or []) for m in record["messages"]))]
    for fmt in _formats_for(record):
        row = json.loads(json.dumps(write_record(canonical, fmt)))  # through JSON text, as in a file
        assert read_record(row, fmt) == canonical, fmt


def test_results_answer_their_calls_by_id_not_by_position():
    canonical = canonical_record(MULTI_TURN)
    results = [(m["name"], m["tool_call_id"], m["content"]) for m in canonical["messages"] if m["role"] == "tool"]
    # the time result came first in the input; it answers the second call (call_1), and the
    # canonical record puts the results of a turn in the order of its calls
    assert results[:2] == [("get_weather", "call_0", '{"forecast": ["sun", "sun", "rain"]}'),
                           ("local_time", "call_1", '{"time": "14:05"}')]


def test_openai_rows_carry_ids_json_text_arguments_and_parallel_flag():
    row = to_openai_record(canonical_record(MULTI_TURN))
    assert row["parallel_tool_calls"] is True
    calls = [c for m in row["messages"] for c in m.get("tool_calls") or []]
    assert all(isinstance(c["function"]["arguments"], str) and c["id"] for c in calls)
    assert all(set(m) == {"role", "tool_call_id", "content"} for m in row["messages"] if m["role"] == "tool")
    assert "parallel_tool_calls" not in to_openai_record(canonical_record(NO_SYSTEM))


def test_openai_renames_dotted_tool_names_and_hands_back_the_mapping():
    record = {"messages": [{"role": "user", "content": "5!"},
                           {"role": "assistant", "tool_calls": [_call("k", "math.factorial", {"n": 5})]}],
              "tools": [_tool("math.factorial", {"n": {"type": "integer"}}, ["n"])]}
    names: dict = {}
    row = to_openai_record(canonical_record(record), names)
    assert names == {"math_factorial": "math.factorial"}
    assert row["tools"][0]["function"]["name"] == "math_factorial"
    assert row["messages"][1]["tool_calls"][0]["function"]["name"] == "math_factorial"


def test_trl_rows_have_object_arguments_and_named_results():
    row = to_trl_record(canonical_record(MULTI_TURN))
    calls = [c for m in row["messages"] for c in m.get("tool_calls") or []]
    assert calls[2]["function"]["arguments"] == {"stops": ["Lisboa", "Évora", "Beja"], "options": {"avoid_tolls": True}}
    assert [m["name"] for m in row["messages"] if m["role"] == "tool"] == ["get_weather", "local_time", "plan_route"]


# -- LLaMA-Factory ---------------------------------------------------------------------------------
def test_llamafactory_rows_follow_the_alternation_rules():
    for record in CONVERSATIONS + SINGLE:
        row = to_llamafactory_record(canonical_record(record))
        assert llamafactory_problems(row) == []
        speakers = [t["from"] for t in row["conversations"]]
        assert all(s in ("human", "observation") for s in speakers[0::2])
        assert all(s in ("gpt", "function_call") for s in speakers[1::2])
    row = to_llamafactory_record(canonical_record(MULTI_TURN))
    assert row["system"] == "You are a travel assistant." and isinstance(row["tools"], str)
    parallel = json.loads(row["conversations"][1]["value"])
    assert [c["name"] for c in parallel] == ["get_weather", "local_time"]
    # one observation holding the results in the order of the calls (LLaMA-Factory has no ids)
    assert json.loads(row["conversations"][2]["value"]) == [{"forecast": ["sun", "sun", "rain"]}, {"time": "14:05"}]


def test_llamafactory_refuses_what_it_cannot_hold():
    two_users = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                              {"role": "assistant", "content": "c"}], "tools": []}
    with pytest.raises(RowError, match="turn 2"):
        to_llamafactory_record(canonical_record(two_users))
    text_and_call = {"messages": [{"role": "user", "content": "time?"},
                                  {"role": "assistant", "content": "Let me check.",
                                   "tool_calls": [_call("t", "local_time", {})]}], "tools": [TIME]}
    with pytest.raises(RowError, match="assistant text beside tool calls"):
        to_llamafactory_record(canonical_record(text_and_call))
    assert llamafactory_problems({"conversations": [{"from": "gpt", "value": "hi"}], "tools": "[]"}) == [
        "turn 1: 'gpt' where human or observation must be", "1 turns: a conversation must end with gpt or function_call"]


# -- files, read by Hugging Face datasets ---------------------------------------------------------------
def _load_json(path: str) -> list[dict]:
    datasets = pytest.importorskip("datasets")
    return datasets.load_dataset("json", data_files=path, split="train").to_list()


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_each_file_loads_with_datasets_unchanged(tmp_path, fmt):
    records = [canonical_record(r) for r in (SINGLE if fmt == "xlam" else CONVERSATIONS + SINGLE)]
    done = write_records(records, tmp_path, "data", [fmt])
    assert done.rows == len(records) and not done.skipped
    written = [json.loads(line) for line in Path(done.paths[fmt]).read_text(encoding="utf-8").splitlines()]
    loaded = _load_json(done.paths[fmt])
    # equal as JSON: a key Arrow filled with null, or a key it lost, makes the rows differ
    assert loaded == written
    assert [read_record(row, fmt) for row in loaded] == records
    if fmt == "llamafactory":
        info = json.loads((tmp_path / "dataset_info.json").read_text())
        assert info["data"]["file_name"] == "data.llamafactory.jsonl"
        assert info["data"]["formatting"] == "sharegpt" and info["data"]["tags"]["function_tag"] == "function_call"
        assert all(row["system"] == "" for row in written[1:])  # on every row, empty where there is none
    if fmt == "openai":
        assert all(row["parallel_tool_calls"] is True for row in written)


def test_a_record_one_format_cannot_hold_is_left_out_of_every_file(tmp_path):
    done = write_records([canonical_record(r) for r in (MULTI_TURN, SINGLE_TURN)], tmp_path, "d", ["openai", "xlam"])
    assert done.rows == 1 and done.skipped == {"unsupported_xlam": 1}
    for path in (done.paths["openai"], done.paths["xlam"]):
        assert len(Path(path).read_text().splitlines()) == 1


# -- the embedded model's chat template -------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_template() -> str:
    """``tokenizer.chat_template`` from the embedded model's GGUF metadata (the file is joined
    from the installed packages when needed; the model is never started)."""
    gguf = pytest.importorskip("gguf")
    from dataflow.core.errors import ConfigError
    from dataflow.serving.model_files import DEFAULT_MODEL, ensure_known_model

    try:
        path = ensure_known_model(DEFAULT_MODEL)
    except ConfigError as exc:
        pytest.skip(f"embedded model not installed: {exc}")
    field = gguf.GGUFReader(str(path)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def render_like_transformers(template: str, row: dict) -> str:
    """Render ``row`` (``messages`` + ``tools``) as transformers' ``apply_chat_template`` does:
    a sandboxed Jinja2 environment with trim_blocks, lstrip_blocks and loop controls, its
    ``tojson`` (non-ASCII kept), ``raise_exception`` and ``strftime_now``."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env.from_string(template).render(messages=row["messages"], tools=row["tools"], add_generation_prompt=False)


@pytest.mark.parametrize("writer", [to_openai_record, to_trl_record], ids=["openai", "trl"])
@pytest.mark.parametrize("record", CONVERSATIONS + SINGLE, ids=["multi_turn", "no_system", "single", "single_parallel"])
def test_records_render_through_the_embedded_models_chat_template(chat_template, writer, record):
    canonical = canonical_record(record)
    text = render_like_transformers(chat_template, json.loads(json.dumps(writer(canonical))))
    assert "<tool_call>" in chat_template and "<tool_response>" in chat_template  # Qwen2.5's tags
    for tool in canonical["tools"]:
        assert json.dumps(tool["function"]["name"]) in text
    # every call, in order, read back from the rendered text by the one reader
    blocks = re.findall(r"<tool_call>\s*(.*?)\s*</tool_call>", text, re.DOTALL)
    blocks = [b for b in blocks if b and not b.startswith("{\"name\": <function-name>")]  # the system prompt's own
    expected = [c for m in canonical["messages"] for c in read_calls(m.get("tool_calls") or [])]
    rendered = [read_calls(b)[0] for b in blocks]
    assert rendered == expected
    if writer is to_openai_record:  # OpenAI's JSON-text arguments reach the template as text
        assert all(isinstance(json.loads(b)["arguments"], str) for b in blocks)
    else:  # TRL's are objects: the text shows the JSON object itself
        assert all(read_arguments(json.loads(b)["arguments"])[0] == json.loads(b)["arguments"] for b in blocks)
    results = re.findall(r"<tool_response>\n(.*?)\n</tool_response>", text, re.DOTALL)
    assert results == [m["content"] for m in canonical["messages"] if m["role"] == "tool"]
    # and in the order of the conversation: each call before its result, each result before the next user turn
    positions = [text.index(m["content"]) for m in canonical["messages"] if m["role"] in ("user", "tool")]
    assert positions == sorted(positions)


# -- dataflow convert --------------------------------------------------------------------------------
def _convert(*args: str) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "dataflow.cli", "convert", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(root)))
    assert done.returncode == 0, done.stderr


def test_convert_writes_and_reads_trl_and_llamafactory(tmp_path):
    source = tmp_path / "in.openai.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in CONVERSATIONS))
    _convert("--input-path", str(source), "--input-format", "openai", "--format", "llamafactory",
             "--output-path", str(tmp_path / "conv.llamafactory.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "conv.llamafactory.jsonl").read_text().splitlines()]
    assert all(llamafactory_problems(row) == [] for row in rows)
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["conv"]["file_name"] == "conv.llamafactory.jsonl"
    _convert("--input-path", str(tmp_path / "conv.llamafactory.jsonl"), "--input-format", "llamafactory",
             "--format", "trl", "--output-path", str(tmp_path / "conv.trl.jsonl"))
    back = [read_record(json.loads(line), "trl") for line in (tmp_path / "conv.trl.jsonl").read_text().splitlines()]
    assert back == [canonical_record(r) for r in CONVERSATIONS]
    single = tmp_path / "rows.jsonl"  # query/answers rows (APIGen's) to TRL
    single.write_text(json.dumps({"query": "Forecast for Porto, 2 days", "tools": [WEATHER, TIME],
                                  "answers": [{"name": "get_weather", "arguments": {"city": "Porto", "days": 2}}]}) + "\n")
    _convert("--input-path", str(single), "--format", "trl", "--output-path", str(tmp_path / "single.trl.jsonl"))
    (row,) = [json.loads(line) for line in (tmp_path / "single.trl.jsonl").read_text().splitlines()]
    assert read_record(row, "trl") == canonical_record(SINGLE_TURN)


# -- awkward but legal records (found in review) ------------------------------------------------------
def _parallel_record(results: list[tuple[str, str]], names: tuple[str, ...] = ("get_weather", "local_time")) -> dict:
    calls = [_call(f"c{i}", name, {"city": "Faro"} if name == "get_weather" else {}) for i, name in enumerate(names)]
    return {"messages": [{"role": "user", "content": "Weather in Faro and the time?"},
                         {"role": "assistant", "tool_calls": calls},
                         *[{"role": "tool", "tool_call_id": cid, "content": text} for cid, text in results],
                         {"role": "assistant", "content": "Done."}],
            "tools": [WEATHER, TIME]}


def test_a_result_with_an_out_of_range_number_is_text_in_every_format(tmp_path):
    # 1e400 is JSON text Python reads as inf: not a JSON number, so the result stays text (no crash)
    record = canonical_record(_parallel_record([("c0", '{"v": 1e400}'), ("c1", "09:00")]))
    done = write_records([record], tmp_path, "big", ["openai", "trl", "llamafactory", "hermes"])
    assert done.rows == 1 and not done.skipped
    for fmt, path in done.paths.items():
        if fmt != "dataset_info":
            (row,) = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
            assert read_record(row, fmt) == record, fmt


def test_a_turn_that_answers_some_of_its_calls_is_refused():
    # three calls, one result: formats without ids would pair it with the wrong call (or, in
    # LLaMA-Factory, read its JSON list as the results of all three)
    record = _parallel_record([("c1", "[1, 2, 3]")], names=("local_time", "local_time", "local_time"))
    with pytest.raises(RowError, match="unanswered_call"):
        canonical_record(record)
    # calls with no results at all (a single-turn record) stay fine
    assert canonical_record(SINGLE_PARALLEL)["messages"][-1]["tool_calls"]


def test_a_system_message_after_the_start_is_refused_by_hermes():
    record = canonical_record({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "be brief"},
                                            {"role": "assistant", "content": "ok"}], "tools": []})
    assert read_record(write_record(record, "openai"), "openai") == record
    with pytest.raises(RowError, match="system"):
        write_record(record, "hermes")  # Hermes has one system turn, first: it would move the prompt


def test_blank_system_prompts_and_edge_whitespace_read_back_equal():
    record = canonical_record({"messages": [
        {"role": "system", "content": " "}, {"role": "system", "content": "\n  You are terse.\n"},
        {"role": "user", "content": "time?"}, {"role": "assistant", "tool_calls": [_call("t", "local_time", {})]},
        {"role": "tool", "tool_call_id": "t", "content": "09:00"}, {"role": "assistant", "content": "It is 09:00.\n"}],
        "tools": [TIME]})
    assert [m["content"] for m in record["messages"] if m["role"] in ("system", "assistant")] == [
        "You are terse.", None, "It is 09:00."]
    for fmt in ("openai", "trl", "llamafactory", "hermes"):
        assert read_record(json.loads(json.dumps(write_record(record, fmt))), fmt) == record, fmt


def test_convert_writes_every_conversation_format_from_the_canonical_record(tmp_path):
    """``dataflow convert`` has one writer per format: conversations and query/answers rows alike
    go through ``canonical_record``; only OpenAI's writer renames tools it refuses (the mapping
    beside the file), the other formats keep the declared names."""
    source = tmp_path / "in.openai.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in CONVERSATIONS))
    for fmt in ("openai", "hermes"):
        _convert("--input-path", str(source), "--input-format", "openai", "--format", fmt,
                 "--output-path", str(tmp_path / f"conv.{fmt}.jsonl"))
        rows = [json.loads(line) for line in (tmp_path / f"conv.{fmt}.jsonl").read_text().splitlines()]
        expected = [write_record(canonical_record(r), fmt) for r in CONVERSATIONS]
        if fmt == "openai" and any("parallel_tool_calls" in row for row in expected):
            for row in expected:  # a file's rows share their keys (Arrow would fill a missing one with null)
                row.setdefault("parallel_tool_calls", True)
        assert rows == json.loads(json.dumps(expected))
    dotted = _tool("math.factorial", {"n": {"type": "integer"}}, ["n"])
    single = tmp_path / "rows.jsonl"
    single.write_text(json.dumps({"query": "What is 5!?", "tools": [dotted],
                                  "answers": [{"name": "math.factorial", "arguments": {"n": 5}}]}) + "\n")
    for fmt in ("trl", "hermes", "openai"):
        _convert("--input-path", str(single), "--format", fmt, "--output-path", str(tmp_path / f"single.{fmt}.jsonl"))
    (trl,) = [json.loads(line) for line in (tmp_path / "single.trl.jsonl").read_text().splitlines()]
    assert [c["function"]["name"] for c in trl["messages"][1]["tool_calls"]] == ["math.factorial"]
    assert "math.factorial" in (tmp_path / "single.hermes.jsonl").read_text()
    (openai,) = [json.loads(line) for line in (tmp_path / "single.openai.jsonl").read_text().splitlines()]
    assert openai["tools"][0]["function"]["name"] == "math_factorial"
    assert json.loads((tmp_path / "single.openai.tool_names.json").read_text()) == {"math_factorial": "math.factorial"}
