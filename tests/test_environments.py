"""Stateful environments (issue 15): fresh state per row and per conversation in the sandbox,
task blueprints validated by running them, conversations kept only when the environment ends in
the blueprint's state, pass^k, MCP tools, reruns that execute nothing, and the Ray runner.
Everything runs on the fake LLM backend against real sandbox workers."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from dataflow.operators.apigen import ExecutionChecker, Sandbox
from dataflow.operators.environments import (
    EnvironmentConversationGenerator, PythonEnvironment, TaskBlueprintGenerator, pass_hat_k, run_calls,
    state_difference,
)
from dataflow.serving import FakeLLMServing
from dataflow.serving.fake_environment import shop_blueprint, shop_responder
from dataflow.utils.storage import FileStorage

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "example_data" / "ShopEnvironment"

COUNTER = '''
import os, signal, time
COUNT = {"n": 0}

def bump() -> int:
    """Add one to the counter."""
    COUNT["n"] += 1
    return COUNT["n"]

def forever() -> None:
    """Never return."""
    while True:
        time.sleep(0.05)

def die() -> None:
    """Kill its own process."""
    os.kill(os.getpid(), signal.SIGKILL)

def note() -> str:
    """Write a file in the worker's folder, or say it is already there."""
    if os.path.exists("note.txt"):
        return "seen"
    open("note.txt", "w").write("x")
    return "written"
'''


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    path = tmp_path / "counter.py"
    path.write_text(COUNTER)
    return path


def shop() -> PythonEnvironment:
    return PythonEnvironment(SHOP / "shop.py", "Shop", SHOP / "shop_data.json", name="shop", timeout=2.0)


def calls_row(*names: str) -> dict:
    return {"query": "q", "answers": [{"name": n, "arguments": {}} for n in names]}


# -- ExecutionChecker: fresh state per row, a restart reported ------------------------------------------
def test_execution_checker_gives_each_row_fresh_module_state(counter):
    rows = [calls_row("bump", "bump"), calls_row("bump"), calls_row("note"), calls_row("note")]
    outcomes = ExecutionChecker(counter).process_batch(rows)
    results = [[r["result"] for r in o.rows[0]["execution_results"]] for o in outcomes]
    assert results == [[1, 2], [1], ["written"], ["written"]]  # files of earlier rows are gone too


def test_a_timeout_mid_row_is_reported_and_later_calls_do_not_run_on_reset_state(counter):
    rows = [calls_row("bump", "bump", "forever", "bump"), calls_row("bump")]
    outcomes = ExecutionChecker(counter, timeout=1.0, keep_failed=True).process_batch(rows)
    first = outcomes[0].rows[0]["execution_results"]
    assert [r.get("result") for r in first[:2]] == [1, 2]
    assert "TimeoutError" in first[2]["error"]
    assert first[3]["error"].startswith("StateLost: not run: the worker was restarted after call 2 (forever)")
    assert "StateLost" in outcomes[0].rows[0]["execution_reason"]
    assert outcomes[1].rows[0]["execution_results"][0]["result"] == 1  # never the silent 1, 2, timeout, 1


def test_sandbox_reset_and_state_of_a_class_environment():
    with Sandbox(SHOP / "shop.py", environment={"class": "Shop", "data": str(SHOP / "shop_data.json")}) as box:
        assert box.call("cancel_order", {"order_id": "O1002"})["ok"]
        assert box.state()["orders"]["O1002"]["status"] == "cancelled"
        box.reset()
        assert box.state()["orders"]["O1002"]["status"] == "processing"
        assert "ValueError: order O1001 is delivered" in box.call("cancel_order", {"order_id": "O1001"})["error"]


# -- the example shop ---------------------------------------------------------------------------------------
def test_shop_tools_read_change_and_refuse():
    env = shop()
    names = [s["function"]["name"] for s in env.tool_specs()]
    assert 8 <= len(names) <= 12 and {"cancel_order", "place_order", "get_order"} <= set(names)
    outcomes, state, lost = run_calls(env, [
        {"name": "cancel_order", "arguments": {"order_id": "O1001"}},  # delivered: refused
        {"name": "place_order", "arguments": {"customer_id": "C002", "product_id": "P01"}},  # 89 > 35.5: refused
        {"name": "place_order", "arguments": {"customer_id": "C003", "product_id": "P05", "quantity": 2}},
    ])
    assert not lost and [o.ok for o in outcomes] == [False, False, True]
    assert "delivered" in outcomes[0].error and "balance" in outcomes[1].error
    assert state["customers"]["C003"]["balance"] == 326.0 and state["products"]["P05"]["stock"] == 4
    assert state["orders"]["O1007"]["status"] == "processing"
    env.close()


def test_state_difference_names_the_paths():
    expected = {"orders": {"O1": {"status": "cancelled", "total": 5}}, "log": [1, 2]}
    actual = {"orders": {"O1": {"status": "delivered", "total": 5.0}}, "log": [1, 2]}
    assert state_difference(expected, actual) == ['orders[O1].status "delivered" != expected "cancelled"']
    assert state_difference(expected, expected) == []


def test_pass_hat_k_is_the_unbiased_estimate():
    assert pass_hat_k(3, 3) == {"1": 1.0, "2": 1.0, "3": 1.0}
    estimate = pass_hat_k(2, 3)
    assert estimate["1"] == pytest.approx(2 / 3) and estimate["2"] == pytest.approx(1 / 3) and estimate["3"] == 0.0


# -- blueprints ---------------------------------------------------------------------------------------------
def _blueprint_rows(responder, rows, env=None, **kw):
    llm = FakeLLMServing(responder)
    outcomes = TaskBlueprintGenerator(llm, env or shop(), **kw).process_batch(rows)
    return outcomes, llm


def test_valid_blueprint_is_run_and_its_state_recorded():
    outcomes, _ = _blueprint_rows(shop_responder, [{"focus": "cancel"}, {"focus": "delivered"}])
    kept = [o.rows[0] for o in outcomes]
    assert kept[0]["expected_state"]["orders"]["O1002"]["status"] == "cancelled"
    assert kept[0]["expected_results"][1]["result"]["refunded"] == 38.0
    assert kept[1]["blueprint_calls"][0]["expect"] == "error" and not kept[1]["expected_results"][0]["ok"]
    assert kept[1]["expected_state"]["orders"]["O1001"]["status"] == "delivered"
    assert kept[0]["environment"] == "shop" and kept[0]["blueprint_rejections"] == []


BAD_BLUEPRINTS = {
    "invalid_call": {"intent": "I want to cancel my order O1002.",
                     "calls": [{"name": "cancel_order", "arguments": {"order_id": 1002}, "expect": "success"}],
                     "facts": []},
    "execution_mismatch": {"intent": "I want to cancel my order O1001.",
                           "calls": [{"name": "cancel_order", "arguments": {"order_id": "O1001"}, "expect": "success"}],
                           "facts": []},
    "ungrounded_argument": {"intent": "I want to cancel my most recent order.",
                            "calls": [{"name": "cancel_order", "arguments": {"order_id": "O1002"},
                                       "expect": "success"}], "facts": []},
    "ungrounded_fact": {"intent": "I want to cancel my order O1002.",
                        "calls": [{"name": "cancel_order", "arguments": {"order_id": "O1002"}, "expect": "success"}],
                        "facts": ["99.95"]},
}


@pytest.mark.parametrize("code", sorted(BAD_BLUEPRINTS))
def test_bad_blueprints_are_reasked_with_the_reason_then_counted(code):
    def responder(messages, schema):
        user = messages[-1]["content"]
        if "was rejected" in user:  # the re-ask carries the reason; the second proposal is valid
            assert code in user
            return shop_blueprint("Data:\n" + (SHOP / "shop_data.json").read_text())
        return BAD_BLUEPRINTS[code]

    outcomes, llm = _blueprint_rows(responder, [{"focus": "x"}], max_reasks=1)
    assert outcomes[0].status == "ok" and len(llm.calls) == 2
    assert outcomes[0].rows[0]["blueprint_rejections"][0].startswith(code)
    failed, _ = _blueprint_rows(lambda m, s: BAD_BLUEPRINTS[code], [{"focus": "x"}], max_reasks=1)
    assert failed[0].status == "failed" and failed[0].reason.startswith(code)


# -- trajectories -------------------------------------------------------------------------------------------
def _blueprints(*foci: str) -> list[dict]:
    outcomes, _ = _blueprint_rows(shop_responder, [{"focus": f} for f in foci])
    return [o.rows[0] for o in outcomes]


def _assistant_scripted(replace: dict | None = None, answer_only: bool = False):
    """shop_responder, with the assistant's calls' arguments rewritten (``replace``: value ->
    value), or answering at once without calls."""
    def responder(messages, schema):
        reply = shop_responder(messages, schema)
        if schema.get("title") == "AssistantTurnReply":
            if answer_only:
                return {"tool_calls": [], "content": "Your order O1002 is cancelled and 38.0 was refunded."}
            text = json.dumps(reply)
            for old, new in (replace or {}).items():
                text = text.replace(old, new)
            reply = json.loads(text)
        if schema.get("title") == "UserReply" and replace and not reply["done"]:
            text = reply["message"]
            for old, new in replace.items():
                text = text.replace(old, new)
            reply = {"message": text, "done": False}
        return reply
    return responder


def _converse(responder, rows, env=None, **kw):
    llm = FakeLLMServing(responder)
    generator = EnvironmentConversationGenerator(llm, env or shop(), **kw)
    return generator.process_batch(rows), llm


def test_right_calls_pass_and_a_refusal_is_a_tool_message_the_conversation_goes_on_with():
    outcomes, _ = _converse(shop_responder, _blueprints("cancel", "delivered", "balance"))
    assert [o.status for o in outcomes] == ["ok", "ok", "ok"]
    cancel = outcomes[0].rows[0]["conversations"]
    assert [m["role"] for m in cancel] == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    refused = outcomes[1].rows[0]["conversations"]
    assert json.loads(refused[3]["content"]) == {"error": "ValueError: order O1001 is delivered and cannot be "
                                                          "cancelled"}
    assert refused[-1]["role"] == "assistant" and "delivered" in refused[-1]["content"]
    row = outcomes[0].rows[0]
    assert row["state_check"] == "passed" and row["environment"] == "shop" and row["pass_hat_k"] == {"1": 1.0}


def test_a_wrong_but_valid_order_id_fails_with_state_mismatch():
    (outcome,), _ = _converse(_assistant_scripted({"O1002": "O1004"}), _blueprints("cancel"))
    assert outcome.status == "failed"
    assert outcome.reason.startswith("state_mismatch: ")
    assert 'orders[O1002].status "processing" != expected "cancelled"' in outcome.reason
    assert 'orders[O1004].status "cancelled" != expected "processing"' in outcome.reason


def test_answering_without_calling_fails():
    (outcome,), llm = _converse(_assistant_scripted(answer_only=True), _blueprints("cancel"))
    assert outcome.status == "failed" and outcome.reason.startswith("state_mismatch: ")


def test_a_read_only_task_answered_without_calling_misses_its_fact():
    def responder(messages, schema):
        if schema.get("title") == "AssistantTurnReply":
            return {"tool_calls": [], "content": "I am sure your parcel is on its way to you."}
        return shop_responder(messages, schema)

    (outcome,), _ = _converse(responder, _blueprints("status"))
    assert outcome.status == "failed" and outcome.reason.startswith("missing_fact: no answer states 'shipped'")


HANGING = '''
import os, signal, time

class Desk:
    """A desk with a ledger."""

    def __init__(self, data: dict):
        self.ledger = data["ledger"]

    def record(self, item: str) -> dict:
        """Record an item.

        Args:
            item: The item.
        """
        self.ledger.append(item)
        return {"recorded": item, "count": len(self.ledger)}

    def stall(self, item: str) -> dict:
        """Never finish.

        Args:
            item: The item.
        """
        while True:
            time.sleep(0.05)

    def crash(self, item: str) -> dict:
        """Kill the process.

        Args:
            item: The item.
        """
        os.kill(os.getpid(), signal.SIGKILL)
'''


def test_a_hanging_or_crashing_tool_fails_only_its_conversation(tmp_path):
    (tmp_path / "desk.py").write_text(HANGING)
    (tmp_path / "desk.json").write_text('{"ledger": []}')
    env = PythonEnvironment(tmp_path / "desk.py", "Desk", tmp_path / "desk.json", timeout=1.0)
    rows = [{"intent": f"I want the item {item} recorded.", "expected_state": {"ledger": [item]},
             "expected_facts": [item]} for item in ("apples", "pears", "plums")]
    tool_of = {"apples": "stall", "pears": "record", "plums": "crash"}

    def responder(messages, schema):
        user = messages[-1]["content"]
        if schema.get("title") == "UserReply":
            if "Start the conversation." in user:
                return {"message": re.search(r"I want the item \w+ recorded\.", messages[0]["content"]).group(0),
                        "done": False}
            return {"message": "Thanks.", "done": True}
        item = re.search(r"the item (\w+) recorded", user).group(1)
        if "TOOL RESULT" in user:
            return {"tool_calls": [], "content": f"The item {item} is recorded."}
        return {"tool_calls": [{"name": tool_of[item], "arguments": {"item": item}}], "content": ""}

    outcomes, _ = _converse(responder, rows, env=env)
    assert [o.status for o in outcomes] == ["failed", "ok", "failed"]
    assert outcomes[0].reason.startswith("environment_error: ") and "TimeoutError" in outcomes[0].reason
    assert outcomes[2].reason.startswith("environment_error: ") and "SIGKILL" in outcomes[2].reason
    assert outcomes[1].rows[0]["conversations"][3]["content"] == '{"recorded": "pears", "count": 1}'
    env.close()


def test_two_conversations_never_see_each_others_state():
    rows = _blueprints("cancel", "cancel")  # both cancel O1002: only a fresh copy each lets both succeed
    outcomes, _ = _converse(shop_responder, rows, max_live_sessions=2)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    for outcome in outcomes:
        assert '"status": "cancelled"' in outcome.rows[0]["conversations"][5]["content"]


def test_attempts_record_pass_hat_k():
    openings = {"n": 0}

    def responder(messages, schema):
        reply = shop_responder(messages, schema)
        if schema.get("title") == "UserReply" and not reply["done"]:
            openings["n"] += 1
            if openings["n"] == 2:  # the second attempt's person names the wrong order
                reply["message"] = reply["message"].replace("O1002", "O1004")
        return reply

    (outcome,), llm = _converse(responder, _blueprints("cancel"), attempts=3)
    row = outcome.rows[0]
    assert row["trajectory_passes"] == 2 and row["trajectory_attempts"] == 3
    assert row["pass_hat_k"]["1"] == pytest.approx(2 / 3) and row["pass_hat_k"]["3"] == 0.0
    assert row["attempt_reasons"][0].startswith("state_mismatch")
    assert {o["seed"] for o in llm.call_options if o} == {0, 1, 2}  # independent samples


# -- a rerun makes zero LLM calls and executes nothing ---------------------------------------------------
class _Untouchable(PythonEnvironment):
    def open(self):
        raise AssertionError("a rerun must not execute anything")

    def tool_specs(self):
        raise AssertionError("a rerun must not start the environment")


def test_rerun_makes_no_llm_calls_and_executes_nothing(tmp_path):
    source = tmp_path / "tasks.jsonl"
    source.write_text('{"focus": "cancel"}\n{"focus": "delivered"}\n')

    def run(env):
        llm = FakeLLMServing(shop_responder)
        storage = FileStorage(str(source), cache_path=str(tmp_path / "cache"))
        TaskBlueprintGenerator(llm, env).run(storage.step())
        EnvironmentConversationGenerator(llm, env, attempts=2).run(storage.step())
        return llm, storage.step().read(output_type="dict")

    first, rows = run(shop())
    assert len(first.calls) > 0 and len(rows) == 2
    again, rows_again = run(_Untouchable(SHOP / "shop.py", "Shop", SHOP / "shop_data.json", name="shop",
                                         timeout=2.0))
    assert again.calls == [] and rows_again == rows


# -- MCP ----------------------------------------------------------------------------------------------------
def test_mcp_server_tools_and_a_conversation_through_them(tmp_path):
    pytest.importorskip("mcp", reason='MCP tests need the mcp SDK: pip install ".[mcp]"')
    from dataflow.operators.environments.mcp import McpEnvironment

    for name in ("shop.py", "shop_mcp_server.py", "shop_data.json"):
        shutil.copy(SHOP / name, tmp_path / name)
    env = McpEnvironment([str(tmp_path / "shop_mcp_server.py")], name="shop-mcp")
    specs = env.tool_specs()
    assert {"cancel_order", "place_order", "get_order"} <= {s["function"]["name"] for s in specs}
    assert specs[0]["function"]["parameters"]["type"] == "object"
    blueprints = [o.rows[0] for o in TaskBlueprintGenerator(FakeLLMServing(shop_responder), env).process_batch(
        [{"focus": "cancel"}, {"focus": "delivered"}])]
    assert blueprints[0]["expected_state"]["orders"]["O1002"]["status"] == "cancelled"
    outcomes = EnvironmentConversationGenerator(FakeLLMServing(shop_responder), env).process_batch(blueprints)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    messages = outcomes[1].rows[0]["conversations"]
    assert "order O1001 is delivered and cannot be cancelled" in messages[3]["content"]
    wrong = EnvironmentConversationGenerator(
        FakeLLMServing(_assistant_scripted({"O1002": "O1004"})), env).process_batch(blueprints[:1])
    assert wrong[0].reason.startswith("state_mismatch: ")


# -- Ray ----------------------------------------------------------------------------------------------------
def test_environment_operators_under_the_ray_runner(tmp_path):
    ray = pytest.importorskip("ray", reason='needs ray: pip install ".[ray]"')
    pytest.importorskip("ray.data")
    from dataflow.runners import RayRunner
    from dataflow.serving import APILLMServing_request
    from dataflow.serving import FakeOpenAIServer

    source = tmp_path / "tasks.jsonl"
    source.write_text("".join(json.dumps({"focus": f}) + "\n" for f in ("cancel", "delivered", "balance", "status")))
    if ray.is_initialized():
        ray.shutdown()
    small = dict(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
    with FakeOpenAIServer(responder="dataflow.serving.fake_environment:shop_responder") as server:
        llm = APILLMServing_request(api_url=server.url, model_name="fake-model", progress=False, max_workers=4)
        storage = FileStorage(str(source), cache_path=str(tmp_path / "cache"))
        env = shop()
        with RayRunner(num_actors=2, batch_size=2, ray_init_kwargs=small):
            TaskBlueprintGenerator(llm, env).run(storage.step())
            report = EnvironmentConversationGenerator(llm, env).run(storage.step())
        rows = storage.step().read(output_type="dict")
    assert report.kept == 4 and len(rows) == 4
    assert all(r["state_check"] == "passed" for r in rows)


@pytest.mark.parametrize("focus, guess", [
    ("status", "Your order {order} has shipped."),  # read-only: the state matches whatever is said
    ("delivered", "Sorry, order {order} is delivered and cannot be cancelled."),  # refused: the state never changes
])
def test_an_answer_that_guesses_the_facts_without_calling_fails(focus, guess):
    # the state is the expected one by accident (nothing was to change) and the answer holds the
    # fact, but no tool result in the conversation shows it: a guess, not data to train on
    (blueprint,) = _blueprints(focus)
    order = blueprint["blueprint_calls"][0]["arguments"]["order_id"]

    def responder(messages, schema):
        if schema.get("title") == "AssistantTurnReply":
            return {"tool_calls": [], "content": guess.format(order=order)}
        return shop_responder(messages, schema)

    (outcome,), _ = _converse(responder, [blueprint])
    assert outcome.status == "failed" and outcome.reason.startswith("unsupported_fact: ")
