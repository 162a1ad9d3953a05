"""Test-only wrapper that runs an example pipeline script, for the fault and crash suites.

    python tests/pipeline_harness.py api_pipelines/func_call_synthesis.py --rows 0 --input ...

It runs the script unchanged (``runpy``, as ``__main__``) after two optional patches, both set
through the environment so the product code carries no test hooks:

- ``DF_TEST_SERVING``: JSON keyword arguments added to every ``serving_from_env()`` call (small
  timeouts and retry backoff, so the fault suite does not sleep for seconds);
- ``DF_TEST_PAUSE`` = ``<point>:<n>`` and ``DF_TEST_PAUSE_MARKER`` = a file path: at that point
  the process writes the marker file (JSON with its pid and details) and then sleeps, so the test
  can ``SIGKILL`` it exactly there. Points:

  - ``mid_request:<n>``: after the response cache committed its ``n``-th reply (a batch of
    requests is in flight, the event loop is blocked, replies still arriving are not cached);
  - ``mid_write:<k>``: inside the atomic write of step file ``k``: the temp file is fully written
    and fsynced, the rename has not happened;
  - ``between_steps:<k>``: right after step ``k``'s file and manifest were written;
  - ``execution:<n>``: inside ``ExecutionChecker``, after ``n`` sandboxed calls (worker alive);
  - ``multi_turn:<n>``: at the start of the ``n``-th tool-agent round of the multi-turn loop.

The module also holds the responders the suites give the (subprocess) fake server, importable as
``pipeline_harness:<name>`` when ``tests/`` is on ``PYTHONPATH``.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- responders (run inside the fake server process) ------------------------------------------------
def _last_user(messages: list) -> str:
    return next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")


def _title(json_schema: dict | None) -> str:
    if not json_schema:
        return ""
    inner = json_schema.get("schema", json_schema) if "properties" not in json_schema else json_schema
    return inner.get("title", "")


def _bucket(text: str, mod: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % mod


def permanent_faults(messages: list, json_schema: dict | None):
    """Permanent failures for chosen requests, the same on every attempt: a ``400`` for prompts
    that mention ``PERM400``, a ``500`` for ``PERM500``, and later in the pipelines a ``500`` for
    one tool-agent prompt in 40 and a ``422`` for one function-generator / semantic-judge prompt in
    60. ``None`` when the request should be answered."""
    from dataflow.serving import FakeFault

    user = _last_user(messages)
    title = _title(json_schema)
    if "PERM400" in user:
        return FakeFault("400", "request rejected by policy (permanent)")
    if "PERM500" in user:
        return FakeFault("500", "model backend crashed on this prompt (permanent)")
    if title == "ToolResultReply" and _bucket(user, 40) == 0:
        return FakeFault("500", "tool simulator crashed on this prompt (permanent)")
    if title in ("FunctionSetReply", "SemanticVerdict") and _bucket(user, 60) == 0:
        return FakeFault("422", "unprocessable prompt (permanent)")
    return None


def faulty_button_responder(messages: list, json_schema: dict | None):
    """``button_responder`` with the permanent failures of ``permanent_faults``."""
    from dataflow.serving.fake_responders import button_responder

    return permanent_faults(messages, json_schema) or button_responder(messages, json_schema)


def faulty_apigen_responder(messages: list, json_schema: dict | None):
    """``apigen_responder`` with the permanent failures of ``permanent_faults``."""
    from dataflow.operators.apigen.testing import apigen_responder

    return permanent_faults(messages, json_schema) or apigen_responder(messages, json_schema)


# -- pause points -----------------------------------------------------------------------------------
def _pause(marker: str, **details) -> None:
    """Tell the test where we are, then wait to be killed."""
    tmp = marker + ".part"
    with open(tmp, "w") as fh:
        json.dump({"pid": os.getpid(), **details}, fh)
    os.replace(tmp, marker)
    while True:
        time.sleep(3600)


def _install_pause(spec: str, marker: str) -> None:
    point, _, arg = spec.partition(":")
    n = int(arg or 1)

    if point == "mid_request":
        from dataflow.serving.response_cache import ResponseCache

        put_many = ResponseCache.put_many
        committed = [0]

        def patched_put_many(self, items):
            put_many(self, items)
            committed[0] += len(items)
            if committed[0] >= n:
                _pause(marker, point=point, committed=committed[0])

        ResponseCache.put_many = patched_put_many

    elif point == "mid_write":
        replace = os.replace
        target = f"_step{n}."

        def patched_replace(src, dst, *args, **kwargs):
            name = os.path.basename(os.fspath(dst))
            if target in name and not name.endswith(".json") and ".rejected." not in name:
                _pause(marker, point=point, temp=os.fspath(src), target=os.fspath(dst))
            return replace(src, dst, *args, **kwargs)

        os.replace = patched_replace

    elif point == "between_steps":
        from dataflow.storage import FileStorage

        write = FileStorage.write

        def patched_write(self, *args, **kwargs):
            out = write(self, *args, **kwargs)
            if self.operator_step + 1 == n:
                _pause(marker, point=point, written=out)
            return out

        FileStorage.write = patched_write

    elif point == "execution":
        from dataflow.operators.apigen.execution import Sandbox

        call = Sandbox.call
        calls = [0]

        def patched_call(self, name, arguments):
            answer = call(self, name, arguments)
            calls[0] += 1
            if calls[0] >= n:
                worker = self._proc.pid if self._proc is not None else None
                _pause(marker, point=point, calls=calls[0], worker_pid=worker, workdir=self._workdir)
            return answer

        Sandbox.call = patched_call

    elif point == "multi_turn":
        from dataflow.operators.conversations.multi_turn import MultiTurnConversationGenerator

        tool_round = MultiTurnConversationGenerator._tool_round
        rounds = [0]

        def patched_tool_round(self, dialogues):
            if dialogues:
                rounds[0] += 1
                if rounds[0] >= n:
                    done = sum(len(d.messages) for d in dialogues)
                    _pause(marker, point=point, round=rounds[0], dialogues=len(dialogues), messages=done)
            return tool_round(self, dialogues)

        MultiTurnConversationGenerator._tool_round = patched_tool_round

    else:
        raise SystemExit(f"pipeline_harness: unknown pause point {spec!r}")


def _install_serving_overrides(overrides: dict) -> None:
    import dataflow.serving as serving_pkg
    from dataflow.serving import from_env

    original = from_env.serving_from_env

    def serving_from_env(*args, **kwargs):
        return original(*args, **{**overrides, **kwargs})

    from_env.serving_from_env = serving_from_env
    serving_pkg.serving_from_env = serving_from_env


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: pipeline_harness.py SCRIPT [ARGS...]")
    script = sys.argv[1]
    overrides = os.environ.get("DF_TEST_SERVING")
    if overrides:
        _install_serving_overrides(json.loads(overrides))
    pause = os.environ.get("DF_TEST_PAUSE")
    if pause:
        _install_pause(pause, os.environ["DF_TEST_PAUSE_MARKER"])
    sys.argv = [script, *sys.argv[2:]]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
