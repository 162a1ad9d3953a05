"""Bad input: each case ends with ONE clear error line naming what and where, before any LLM call,
and leaves the files already in the cache folder untouched.

Three surfaces: the library (exception type and message), the example pipeline scripts run as
subprocesses (``error: ...`` on stderr, non-zero exit, no traceback) and the CLI subcommands.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.core.errors import ConfigError, InputFileError, MissingColumnError, ToolSpecError, UserInputError
from dataflow.serving import FakeLLMServing
from dataflow.utils.storage import FileStorage

ROOT = Path(__file__).resolve().parents[1]
APIGEN_DATA = ROOT / "example_data" / "APIGen"

pytestmark = pytest.mark.usefixtures("no_api_key")

GOOD_TOOL = {"type": "function", "function": {"name": "get_time", "description": "Current time in a city.",
                                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                             "required": ["city"]}}}
BAD_SCHEMA_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                                    "parameters": {"type": "object",
                                                                   "properties": {"city": {"type": "strin"}}}}}
BAD_NAME_TOOL = {"type": "function", "function": {"name": "get weather!", "description": "Weather.",
                                                 "parameters": {"type": "object", "properties": {}}}}


# -- helpers --------------------------------------------------------------------------------------
def folder_hash(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def seed_cache(cache: Path) -> dict[str, str]:
    """A cache folder holding a finished run's kind of files; returns its hash."""
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "dataflow_cache_step1.jsonl").write_text('{"chat": "x", "scenario": "s"}\n')
    (cache / "dataflow_cache_step1.jsonl.manifest.json").write_text('{"operator": "ScenarioExtractor"}\n')
    (cache / "dataflow_cache_step1.rejected.jsonl").write_text('{"_reason": "llm_error: x"}\n')
    (cache / "llm_responses.sqlite").write_bytes(b"SQLite format 3\x00 pretend")
    return folder_hash(cache)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message


class Counting:
    """A FakeLLMServing that records every request (there must be none)."""

    def __init__(self):
        self.calls = 0
        self.serving = FakeLLMServing(self.respond)

    def respond(self, messages, schema):
        self.calls += 1
        raise AssertionError("no LLM call may happen on bad input")


# -- bad files: one fixture per case --------------------------------------------------------------
def make_input(tmp_path: Path, case: str) -> tuple[Path, str]:
    """(input file, fragment the error must contain) for a bad chat-data input."""
    if case == "malformed_jsonl":
        path = tmp_path / "chat.jsonl"
        path.write_text('{"chat": "USER: a"}\n{"chat": "USER: b"}\n{"chat": "USER: c"\n{"chat": "USER: d"}\n')
        return path, f"{path}:3: invalid JSON"
    if case == "not_utf8":
        path = tmp_path / "chat.jsonl"
        path.write_bytes('{"chat": "USER: hi"}\n{"chat": "USER: caf\xe9"}\n'.encode("latin-1"))
        return path, f"{path}:2: is not valid UTF-8"
    if case == "empty":
        path = tmp_path / "chat.jsonl"
        path.write_text("")
        return path, f"{path}: has no rows"
    if case == "missing_file":
        path = tmp_path / "no_such_chat.jsonl"
        return path, f"{path}: input file not found"
    if case == "missing_column":
        path = write_jsonl(tmp_path / "chat.jsonl", [{"conversation": "USER: hi"}])
        return path, "input_chat_key='chat' names a column that does not exist"
    raise AssertionError(case)


INPUT_CASES = ["malformed_jsonl", "not_utf8", "empty", "missing_file", "missing_column"]


# == library API ===================================================================================
@pytest.mark.parametrize("case", INPUT_CASES)
def test_library_bad_chat_input(tmp_path, case):
    from dataflow.operators.conversations import ScenarioExtractor

    path, fragment = make_input(tmp_path, case)
    cache = tmp_path / "cache"
    before = seed_cache(cache)
    llm = Counting()
    storage = FileStorage(str(path), cache_path=str(cache))
    expected = MissingColumnError if case == "missing_column" else InputFileError
    with pytest.raises(expected) as info:
        ScenarioExtractor(llm_serving=llm.serving).run(storage.step(), input_chat_key="chat")
    message = str(info.value)
    assert fragment in message, message
    assert " — " in message  # ... and what to do
    assert_one_line(message)
    assert llm.calls == 0 and llm.serving.stats.requests_sent == 0
    assert folder_hash(cache) == before


def test_library_missing_column_names_operator_file_and_columns(tmp_path):
    from dataflow.operators.conversations import ScenarioExtractor

    path = write_jsonl(tmp_path / "chat.jsonl", [{"conversation": "USER: hi", "id": 1}])
    with pytest.raises(MissingColumnError) as info:
        ScenarioExtractor(llm_serving=Counting().serving).run(FileStorage(str(path), cache_path=str(tmp_path / "c")).step())
    message = str(info.value)
    assert "ScenarioExtractor" in message and str(path) in message and "conversation, id" in message


def test_library_bad_input_at_a_later_step_leaves_earlier_steps_untouched(tmp_path):
    """Step 2 asks for a column step 1 did not write: the step-1 files stay byte for byte."""
    from dataflow.operators.conversations import ScenarioExpander, ScenarioExtractor
    from dataflow.serving.fake_responders import button_responder

    path = write_jsonl(tmp_path / "chat.jsonl", [{"chat": "USER: book me a table for two\nASSISTANT: sure"}])
    cache = tmp_path / "cache"
    serving = FakeLLMServing(button_responder)
    storage = FileStorage(str(path), cache_path=str(cache))
    ScenarioExtractor(llm_serving=serving).run(storage.step(), input_chat_key="chat")
    before, sent = folder_hash(cache), serving.stats.requests_sent
    with pytest.raises(MissingColumnError, match="input_scenario_key='scenery'"):
        ScenarioExpander(llm_serving=serving).run(storage.step(), input_scenario_key="scenery")
    assert serving.stats.requests_sent == sent
    assert folder_hash(cache) == before


@pytest.mark.parametrize("tool, fragment", [
    (BAD_SCHEMA_TOOL, "tool 'get_weather': argument 'parameters.city': unknown type 'strin'"),
    (BAD_NAME_TOOL, "tool 'get weather!': a tool name must be"),
])
def test_library_invalid_tool_spec_stops_the_apigen_pipeline_before_the_generator(tmp_path, tool, fragment):
    from dataflow.operators.apigen import APIGenGenerator, DataSampler

    tools = tmp_path / "function_definitions.json"
    tools.write_text(json.dumps([GOOD_TOOL, tool]))
    cache = tmp_path / "cache"
    before = seed_cache(cache)
    llm = Counting()
    storage = FileStorage(str(tools), cache_path=str(cache))
    sampler = DataSampler(APIGEN_DATA / "seed_qa.jsonl")
    generator = APIGenGenerator(llm_serving=llm.serving, config=APIGEN_DATA / "generator_config.yaml")
    with pytest.raises(ToolSpecError) as info:
        sampler.run(storage.step(), input_tools_key="function")
        generator.run(storage.step())
    message = str(info.value)
    assert fragment in message and f"({tools}, row 2)" in message, message
    assert_one_line(message)
    assert llm.calls == 0
    assert folder_hash(cache) == before


def test_library_invalid_tool_can_be_skipped_on_request(tmp_path):
    from dataflow.operators.apigen import DataSampler

    outcomes = DataSampler(APIGEN_DATA / "seed_qa.jsonl", skip_invalid_tools=True).process_batch(
        [{"tools": [GOOD_TOOL]}, {"tools": [BAD_NAME_TOOL]}], input_tools_key="tools")
    assert outcomes[0].status == "ok" and outcomes[1].status == "filtered"
    assert outcomes[1].reason.startswith("invalid_tool:")


@pytest.mark.parametrize("content, fragment", [
    ('{"query": "q1", "function_calls": []}\n\n{"function_calls": [{"function_name": "f", "arguments": {}}]}\n',
     ":3: seed example has no 'query'"),
    ('{"query": "", "function_calls": []}\n', ":1: seed example 'query' is empty or not a string"),
    ('{"query": "q", "function_calls": []}\n[1, 2]\n', ":2: a seed example must be a JSON object"),
    ('{"query": "q", "function_calls": []}\n{"query": \n', ":2: invalid JSON"),
    ('{"query": "caf\xe9", "function_calls": []}\n', ":1: is not valid UTF-8"),
])
def test_library_bad_seed_qa(tmp_path, content, fragment):
    from dataflow.operators.apigen import DataSampler

    seed = tmp_path / "seed_qa.jsonl"
    seed.write_bytes(content.encode("latin-1"))
    with pytest.raises(InputFileError) as info:
        DataSampler(seed)
    message = str(info.value)
    assert f"{seed}{fragment}" in message, message
    assert_one_line(message)


def test_library_seed_rows_given_as_a_list_name_the_example():
    from dataflow.operators.apigen import DataSampler

    with pytest.raises(InputFileError, match="example 1: seed example has no 'query'"):
        DataSampler([{"query": "q", "function_calls": []}, {"function_calls": []}])


def test_library_unknown_cache_type(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"chat": "x"}])
    with pytest.raises(ConfigError) as info:
        FileStorage(str(path), cache_path=str(tmp_path / "cache"), cache_type="yaml")
    message = str(info.value)
    assert "cache_type='yaml'" in message and "jsonl, json, csv, parquet" in message
    assert_one_line(message)
    assert not (tmp_path / "cache").exists()


def test_library_missing_tools_module_is_reported_at_construction(tmp_path):
    from dataflow.operators.apigen import ExecutionChecker

    with pytest.raises(ConfigError, match="tools module not found") as info:
        ExecutionChecker(module_path=tmp_path / "no_tools.py")
    assert str(tmp_path / "no_tools.py") in str(info.value)


def test_first_rows_copy_reports_the_original_file_and_line(tmp_path):
    from dataflow.storage.head import first_rows_file

    src = tmp_path / "chat.jsonl"
    src.write_text('{"chat": "a"}\n\n\n{"chat": oops}\n')
    with pytest.raises(InputFileError) as info:
        first_rows_file(src, 4, tmp_path / "cache")
    assert f"{src}:4: invalid JSON" in str(info.value)
    assert not (tmp_path / "cache").exists()
    src.write_text('{"chat": "a"}\n\n{"chat": "b"}\n{"chat": "c"}\n')
    copy = first_rows_file(src, 2, tmp_path / "cache")
    assert copy.read_text() == '{"chat": "a"}\n{"chat": "b"}\n'
    with pytest.raises(InputFileError, match="input file not found"):
        first_rows_file(tmp_path / "nope.jsonl", 2, tmp_path / "cache")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(InputFileError, match="has no rows"):
        first_rows_file(tmp_path / "blank.jsonl", 2, tmp_path / "cache")


# == pipeline scripts (subprocesses) ===============================================================
def script_env(server) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DF_API_KEY", None)
    env.pop("DF_DEBUG", None)
    env["DF_API_URL"] = server.url
    env["DF_MODEL"] = "fake-model"
    return env


def assert_single_error_line(run: subprocess.CompletedProcess, fragment: str) -> str:
    assert run.returncode not in (0, None), run.stderr
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    assert run.stderr.rstrip().splitlines()[-1] == errors[0]  # the last thing the user reads
    assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("case", INPUT_CASES)
@pytest.mark.parametrize("rows", ["0", "4"])
def test_func_call_script_bad_input(tmp_path, fake_server, case, rows):
    path, fragment = make_input(tmp_path, case)
    cache = tmp_path / "cache"
    before = seed_cache(cache)
    run = subprocess.run(
        [sys.executable, str(ROOT / "api_pipelines" / "func_call_synthesis.py"), "--input", str(path),
         "--cache-dir", str(cache), "--rows", rows],
        capture_output=True, text=True, env=script_env(fake_server), cwd=tmp_path, timeout=120)
    if case == "missing_column" and rows != "0":
        fragment = "input_chat_key='chat' names a column that does not exist"
    assert_single_error_line(run, fragment)
    assert run.returncode == 2
    assert fake_server.request_count == 0
    after = folder_hash(cache)
    if case == "missing_column" and rows != "0":  # the valid first rows were copied; nothing else changed
        after = {k: v for k, v in after.items() if not k.startswith("input_first_")}
    assert after == before


@pytest.fixture
def apigen_layout(tmp_path):
    """api_pipelines/apigen_synthesis.py + example_data/APIGen copied, as `dataflow init` lays them out."""
    (tmp_path / "api_pipelines").mkdir()
    shutil.copy(ROOT / "api_pipelines" / "apigen_synthesis.py", tmp_path / "api_pipelines")
    shutil.copytree(APIGEN_DATA, tmp_path / "example_data" / "APIGen")
    return tmp_path


def run_apigen(layout: Path, server) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "api_pipelines/apigen_synthesis.py", "--cache", str(layout / "cache")],
        capture_output=True, text=True, env=script_env(server), cwd=layout, timeout=120)


@pytest.mark.parametrize("case", ["bad_schema", "bad_name", "seed_no_query", "seed_not_utf8",
                                  "missing_tools_file", "malformed_tools", "missing_tools_module"])
def test_apigen_script_bad_input(apigen_layout, fake_server, case):
    data = apigen_layout / "example_data" / "APIGen"
    tools_file = data / "function_definitions.json"
    tools = json.loads(tools_file.read_text())
    if case == "bad_schema":
        tools.append(BAD_SCHEMA_TOOL)
        tools_file.write_text(json.dumps(tools))
        fragment = f"tool 'get_weather': argument 'parameters.city': unknown type 'strin' ({tools_file}, row {len(tools)})"
    elif case == "bad_name":
        tools.insert(1, BAD_NAME_TOOL)
        tools_file.write_text(json.dumps(tools))
        fragment = f"tool 'get weather!': a tool name must be"
    elif case == "seed_no_query":
        seed = data / "seed_qa.jsonl"
        lines = seed.read_text().splitlines()
        lines[2] = json.dumps({"function_calls": [{"function_name": "get_weather_forecast", "arguments": {}}]})
        seed.write_text("\n".join(lines) + "\n")
        fragment = f"{seed}:3: seed example has no 'query'"
    elif case == "seed_not_utf8":
        seed = data / "seed_qa.jsonl"
        bad_line = len(seed.read_bytes().splitlines()) + 1
        seed.write_bytes(seed.read_bytes() + '{"query": "caf\xe9", "function_calls": []}\n'.encode("latin-1"))
        fragment = f"{seed}:{bad_line}: is not valid UTF-8"
    elif case == "missing_tools_file":
        tools_file.unlink()
        fragment = f"{tools_file}: input file not found"
    elif case == "malformed_tools":
        tools_file.write_text(tools_file.read_text()[:-40])
        fragment = f"{tools_file}:"
    else:
        (data / "tools.py").unlink()
        fragment = f"tools module not found ({data / 'tools.py'})"
    cache = apigen_layout / "cache"
    before = seed_cache(cache)
    run = run_apigen(apigen_layout, fake_server)
    line = assert_single_error_line(run, fragment)
    assert " — " in line
    assert run.returncode == 2
    assert fake_server.request_count == 0
    assert folder_hash(cache) == before


def test_apigen_script_missing_side_file_is_one_line(apigen_layout, fake_server):
    prompt = apigen_layout / "example_data" / "APIGen" / "system_prompt.txt"
    prompt.unlink()
    run = run_apigen(apigen_layout, fake_server)
    assert_single_error_line(run, f"file not found ({prompt})")
    assert fake_server.request_count == 0


def test_pipeline_main_keeps_tracebacks_for_bugs_and_with_df_debug(monkeypatch, capsys):
    from dataflow.cli import run_pipeline_main

    def user_error():
        raise InputFileError("data.jsonl", "has no rows", hint="add rows")

    assert run_pipeline_main(user_error) == 2
    assert capsys.readouterr().err == "error: data.jsonl: has no rows — add rows\n"
    assert run_pipeline_main(lambda: 0) == 0 and run_pipeline_main(lambda: None) == 0
    with pytest.raises(ZeroDivisionError):
        run_pipeline_main(lambda: 1 / 0)
    monkeypatch.setenv("DF_DEBUG", "1")
    with pytest.raises(InputFileError):
        run_pipeline_main(user_error)


# == CLI subcommands ===============================================================================
def cli(*args: str, server=None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DF_API_KEY", None)
    if server is not None:
        env["DF_API_URL"] = server.url
        env["DF_MODEL"] = "fake-model"
    return subprocess.run([sys.executable, "-m", "dataflow.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT, timeout=120)


GOOD_ROW = {"query": "time in Oslo?", "answers": [{"name": "get_time", "arguments": {"city": "Oslo"}}]}


def make_generated(tmp_path: Path, case: str) -> tuple[Path, Path, str]:
    """(generated QA file, tool definitions, error fragment) for `apigen verify`."""
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([GOOD_TOOL]))
    gen = tmp_path / "generated.jsonl"
    if case == "malformed_jsonl":
        gen.write_text(json.dumps(GOOD_ROW) + "\n" + json.dumps(GOOD_ROW)[:-5] + "\n")
        return gen, tools, f"{gen}:2: invalid JSON"
    if case == "not_utf8":
        gen.write_bytes((json.dumps(GOOD_ROW) + "\n").encode() + b'{"query": "caf\xe9"}\n')
        return gen, tools, f"{gen}:2: is not valid UTF-8"
    if case == "empty":
        gen.write_text("")
        return gen, tools, f"{gen}: has no rows"
    if case == "missing_query":
        write_jsonl(gen, [GOOD_ROW, {"answers": []}])
        return gen, tools, f"{gen}: row 2 has no 'query'"
    write_jsonl(gen, [GOOD_ROW])
    if case == "bad_schema_tool":
        tools.write_text(json.dumps([GOOD_TOOL, BAD_SCHEMA_TOOL]))
        return gen, tools, f"tool 'get_weather': argument 'parameters.city': unknown type 'strin' ({tools})"
    if case == "bad_name_tool":
        tools.write_text(json.dumps([BAD_NAME_TOOL]))
        return gen, tools, f"tool 'get weather!': a tool name must be"
    if case == "malformed_tools":
        tools.write_text('[{"type": "function", ')
        return gen, tools, f"{tools}:1: invalid JSON"
    if case == "tools_not_utf8":
        tools.write_bytes(b'[{"name": "caf\xe9"}]')
        return gen, tools, f"{tools}:1: is not valid UTF-8"
    if case == "missing_file":
        return tmp_path / "nope.jsonl", tools, "nope.jsonl' does not exist"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["malformed_jsonl", "not_utf8", "empty", "missing_query", "bad_schema_tool",
                                  "bad_name_tool", "malformed_tools", "tools_not_utf8", "missing_file"])
def test_cli_apigen_verify_bad_input(tmp_path, fake_server, case):
    gen, tools, fragment = make_generated(tmp_path, case)
    out = tmp_path / "verified.jsonl"
    run = cli("apigen", "verify", "--generated-query-answer-path", str(gen), "--function-definitions-path",
              str(tools), "--verified-query-answer-path", str(out), server=fake_server)
    assert_single_error_line(run, fragment)
    assert run.returncode == 2
    assert fake_server.request_count == 0
    assert not out.exists() and not (tmp_path / "verified.rejected.jsonl").exists()


@pytest.mark.parametrize("case", ["malformed_jsonl", "not_utf8", "empty", "missing_file"])
def test_cli_split_bad_input(tmp_path, case):
    gen, _, fragment = make_generated(tmp_path, case)
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    run = cli("split", "--input-file-path", str(gen), "--train-output-path", str(train),
              "--val-output-path", str(val))
    assert_single_error_line(run, fragment)
    assert run.returncode == 2
    assert not train.exists() and not val.exists()


@pytest.mark.parametrize("case", ["malformed_jsonl", "not_utf8", "empty", "missing_file", "bad_name_tool"])
def test_cli_convert_bad_input(tmp_path, case):
    gen, tools, fragment = make_generated(tmp_path, case)
    out = tmp_path / "ft.jsonl"
    args = ["convert", "--input-path", str(gen), "--output-path", str(out)]
    if case == "bad_name_tool":
        args += ["--function-definitions-path", str(tools)]
    run = cli(*args)
    assert_single_error_line(run, fragment)
    assert run.returncode == 2
    assert not out.exists()


def test_cli_apigen_generate_seed_without_query(tmp_path, fake_server):
    seed = write_jsonl(tmp_path / "seed.jsonl", [{"query": "q", "function_calls": []}, {"function_calls": []}])
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([GOOD_TOOL]))
    out = tmp_path / "generated.jsonl"
    run = cli("apigen", "generate", "--config-path", str(APIGEN_DATA / "generator_config.yaml"), "--qa-jsonl-path",
              str(seed), "--function-definitions-path", str(tools), "--output-path", str(out), server=fake_server)
    assert_single_error_line(run, f"{seed}:2: seed example has no 'query'")
    assert fake_server.request_count == 0 and not out.exists()


def test_user_errors_are_user_input_errors():
    """Every bad-input error above is a UserInputError, so every surface shows it the same way."""
    for cls in (InputFileError, MissingColumnError, ToolSpecError, ConfigError):
        assert issubclass(cls, UserInputError)
