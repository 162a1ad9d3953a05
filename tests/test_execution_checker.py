"""The execution sandbox: real functions, keyword arguments, and survival of hostile ones."""

from __future__ import annotations

import json

import textwrap
from pathlib import Path
from typing import Annotated, Literal, Optional

import pytest

from dataflow.operators.apigen import ExecutionChecker, Sandbox
from dataflow.tools.from_python import function_to_tool, parse_google_docstring, tool_specs_from_module

HOSTILE = '''
import os, signal

def add(a: int, b: int = 1) -> int:
    """Add two integers.

    Args:
        a: First.
        b: Second.
    """
    print("printing must not break the protocol")
    return a + b

def forever() -> None:
    """Loop forever."""
    while True:
        pass

def memory_bomb() -> int:
    """Allocate far more than the limit."""
    return len(bytearray(16 * 1024 ** 3))

def kill_self() -> None:
    """SIGKILL its own process."""
    os.kill(os.getpid(), signal.SIGKILL)

def hard_exit() -> None:
    """os._exit."""
    os._exit(7)

def echo(text: str) -> str:
    """Return the text unchanged.

    Args:
        text: Anything.
    """
    return text

def where() -> str:
    """The working directory."""
    open("scratch.txt", "w").write("x")
    return os.getcwd()

def big() -> list:
    """A large result."""
    return list(range(10000))

def long_text(n: int) -> str:
    """A text of n characters with quotes, newlines and non-ASCII.

    Args:
        n: Length.
    """
    return (('say "hé"' + chr(10)) * n)[:n]
'''


@pytest.fixture
def module(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.py"
    path.write_text(HOSTILE)
    return path


def row(name: str, **arguments) -> dict:
    return {"query": name, "answers": [{"name": name, "arguments": arguments}]}


def test_sandbox_survives_loop_memory_bomb_and_self_kill_while_other_rows_pass(module):
    rows = [row("add", a=1, b=2), row("forever"), row("add", a=2), row("memory_bomb"), row("add", a=3, b=3),
            row("kill_self"), row("hard_exit"), row("add", a=10, b=-1)]
    outcomes = ExecutionChecker(module, timeout=1.5, memory_mb=256).process_batch(rows)
    status = [o.status for o in outcomes]
    assert status == ["ok", "filtered", "ok", "filtered", "ok", "filtered", "filtered", "ok"]
    assert [o.rows[0]["execution_results"][0]["result"] for o in outcomes if o.status == "ok"] == [3, 3, 6, 9]
    reasons = [o.reason for o in outcomes if o.status != "ok"]
    assert "TimeoutError" in reasons[0] and reasons[0].startswith("failed_execution: call 0 (forever)")
    assert "MemoryError" in reasons[1]
    assert "SIGKILL" in reasons[2]
    assert "exited with code 7" in reasons[3]


def test_arguments_are_never_evaluated(module, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    with Sandbox(module) as sandbox:
        answer = sandbox.call("echo", {"text": payload})
    assert answer == {"ok": True, "result": payload, "truncated": False}
    assert not marker.exists()


def test_keyword_arguments_and_errors(module):
    with Sandbox(module) as sandbox:
        assert sandbox.call("add", {"b": 5, "a": 1})["result"] == 6
        assert "unexpected keyword argument 'c'" in sandbox.call("add", {"a": 1, "c": 2})["error"]
        assert "NameError" in sandbox.call("nope", {})["error"]


def test_worker_runs_in_a_temporary_folder_and_results_are_truncated(module, tmp_path):
    with Sandbox(module, max_result_chars=100) as sandbox:
        cwd = sandbox.call("where", {})["result"]
        big = sandbox.call("big", {})
    assert cwd != str(tmp_path) and "dataflow_sandbox_" in cwd
    assert not Path(cwd).exists()  # removed with the worker
    assert big["truncated"] is True and "[truncated" in big["result"]


def test_a_long_result_is_cut_as_written_and_the_cut_is_counted(module):
    with Sandbox(module, max_result_chars=100) as sandbox:
        text = sandbox.call("long_text", {"n": 250})
        exact = sandbox.call("long_text", {"n": 100})
        listed = sandbox.call("big", {})
    full = (('say "hé"' + chr(10)) * 250)[:250]
    assert text["truncated"] is True
    assert text["result"] == full[:100] + "... [truncated 150 chars]"  # no JSON escapes, 150 = 250 - 100
    assert exact == {"ok": True, "result": full[:100], "truncated": False}
    json_text = json.dumps(list(range(10000)))
    assert listed["result"] == json_text[:100] + f"... [truncated {len(json_text) - 100} chars of JSON]"


def test_worker_is_replaced_after_a_crash(module):
    with Sandbox(module, timeout=1.0) as sandbox:
        sandbox.call("kill_self", {})
        assert sandbox.call("add", {"a": 1})["result"] == 2
        assert sandbox.restarts == 1


def test_keep_failed_keeps_rows_with_verdict(module):
    outcomes = ExecutionChecker(module, keep_failed=True).process_batch([row("add", a="x")])
    out = outcomes[0].rows[0]
    assert out["execution_ok"] is False and "TypeError" in out["execution_reason"]


def test_irrelevance_row_executes_nothing(module):
    outcome = ExecutionChecker(module).process_batch([{"query": "q", "answers": []}])[0]
    assert outcome.rows[0]["execution_ok"] is True and outcome.rows[0]["execution_results"] == []


def test_import_error_is_reported(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    from dataflow.core.errors import ConfigError

    with pytest.raises(ConfigError, match="boom"):
        ExecutionChecker(bad).process_batch([row("x")])


# -- specs from the same module ----------------------------------------------------------------
def test_specs_from_type_hints_and_docstrings(module):
    specs = {s["function"]["name"]: s["function"] for s in tool_specs_from_module(module)}
    add = specs["add"]
    assert add["description"] == "Add two integers."
    assert add["parameters"] == {"type": "object", "properties": {
        "a": {"type": "integer", "description": "First."},
        "b": {"type": "integer", "description": "Second.", "default": 1}}, "required": ["a"]}


def _documented(unit: Literal["c", "f"], n: Annotated[int, {"minimum": 1}], note: Optional[str] = None,
                tags: Optional[list[str]] = None) -> None:
    """Do it.

    Args:
        unit: The unit,
            on two lines.
        n: Count.
    """


_documented.tool_schema_extra = {"dependentRequired": {"note": ["tags"]}}


def test_literal_optional_annotated_and_extra():
    f = _documented
    spec = function_to_tool(f)["function"]
    props = spec["parameters"]["properties"]
    assert props["unit"] == {"type": "string", "enum": ["c", "f"], "description": "The unit, on two lines."}
    assert props["n"] == {"type": "integer", "minimum": 1, "description": "Count."}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert spec["parameters"]["required"] == ["unit", "n"]
    assert spec["parameters"]["dependentRequired"] == {"note": ["tags"]}


def test_google_docstring_parser():
    doc = textwrap.dedent("""\
        Summary line
        continues.

        Args:
            x (int): The x.
            y: The y.

        Returns:
            Something.
    """)
    assert parse_google_docstring(doc) == ("Summary line continues.", {"x": "The x.", "y": "The y."})
