"""Operator counters (``OperatorABC.stat_update``, datatrove's name): what an operator counted lands
in ``RunReport.counters``, its summary line, the step manifest, the run summary and the HTML
report; a reused step reports the same counters from its manifest; a second run of the same
operator instance starts from zero; counts made on Ray actors travel back with the batch results.
APIGenGenerator's duplicate and re-ask counts are such counters."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from dataflow.core import OperatorABC, RowOutcome, RunReport, merge_row
from dataflow.operators.apigen import APIGenGenerator, format_stage_table, stage_table
from dataflow.serving import FakeLLMServing
from dataflow.storage.manifest import load_manifest, manifest_path, well_formed
from dataflow.utils.storage import FileStorage

ROOT = Path(__file__).resolve().parents[1]
TOOLS = json.loads((ROOT / "example_data" / "APIGen" / "function_definitions.json").read_text())


class ParityCounter(OperatorABC):
    """Keeps every row; counts the even and odd values it saw (rows are independent)."""

    def run(self, storage: Any, input_number_key: str = "n", output_key: str = "parity") -> RunReport:
        return self._run_keys(storage, {"input_number_key": input_number_key, "output_key": output_key})

    def process_batch(self, rows: list[dict], input_number_key: str = "n",
                      output_key: str = "parity") -> list[RowOutcome]:
        outcomes = []
        for row in rows:
            parity = "even" if row[input_number_key] % 2 == 0 else "odd"
            self.stat_update(parity)
            outcomes.append(RowOutcome.keep(merge_row(row, **{output_key: parity})))
        self.stat_update("batches")
        return outcomes


def _table(path: Path, numbers: list[int]) -> Path:
    path.write_text("".join(json.dumps({"n": n}) + "\n" for n in numbers))
    return path


def test_counters_land_in_the_report_summary_and_manifest_and_a_reused_step_reports_them(tmp_path):
    source = _table(tmp_path / "in.jsonl", [1, 2, 3, 4, 5])
    op = ParityCounter()
    report = op.run(FileStorage(str(source), cache_path=str(tmp_path / "cache")).step())
    assert report.counters == {"batches": 1, "even": 2, "odd": 3}
    assert "counted odd: 3, even: 2, batches: 1" in report.summary_line()
    manifest = load_manifest(manifest_path(report.output_file))
    assert manifest["counts"]["counters"] == {"batches": 1, "even": 2, "odd": 3}

    again = ParityCounter().run(FileStorage(str(source), cache_path=str(tmp_path / "cache")).step())
    assert again.reused and again.counters == report.counters
    assert "counted odd: 3" in again.summary_line()


def test_a_second_run_of_the_same_instance_counts_from_zero(tmp_path):
    op = ParityCounter()
    first = op.run(FileStorage(str(_table(tmp_path / "a.jsonl", [1, 2])), cache_path=str(tmp_path / "a")).step())
    second = op.run(FileStorage(str(_table(tmp_path / "b.jsonl", [1, 3, 5])), cache_path=str(tmp_path / "b")).step())
    assert first.counters == {"batches": 1, "even": 1, "odd": 1}
    assert second.counters == {"batches": 1, "odd": 3}
    assert op.take_counters() == {}  # nothing left over between runs


def test_a_step_that_counts_nothing_has_no_counters(tmp_path):
    class Quiet(ParityCounter):
        def process_batch(self, rows, input_number_key="n", output_key="parity"):
            return [RowOutcome.keep(r) for r in rows]

    report = Quiet().run(FileStorage(str(_table(tmp_path / "in.jsonl", [1])), cache_path=str(tmp_path / "c")).step())
    assert report.counters == {} and "counted" not in report.summary_line()


@pytest.mark.parametrize("value", [-1, 1.5, "2", True])
def test_stat_update_refuses_a_value_that_is_not_a_count(value):
    with pytest.raises(ValueError, match="non-negative int"):
        ParityCounter().stat_update("x", value)


def test_a_manifest_whose_counters_are_not_counts_is_not_trusted(tmp_path):
    source = _table(tmp_path / "in.jsonl", [1, 2])
    report = ParityCounter().run(FileStorage(str(source), cache_path=str(tmp_path / "cache")).step())
    path = manifest_path(report.output_file)
    manifest = json.loads(path.read_text())
    for bad in ({"odd": -1}, {"odd": "1"}, ["odd"]):
        assert not well_formed({**manifest, "counts": {**manifest["counts"], "counters": bad}})
    path.write_text(json.dumps({**manifest, "counts": {**manifest["counts"], "counters": {"odd": -5}}}))
    rerun = ParityCounter().run(FileStorage(str(source), cache_path=str(tmp_path / "cache")).step())
    assert not rerun.reused and rerun.counters == {"batches": 1, "even": 1, "odd": 1}


# -- APIGenGenerator ---------------------------------------------------------------------------------
def _generator_reply(messages, schema):
    """Two pairs with one query for every row: the second row's queries repeat the first's."""
    return {"pairs": [{"query": "What is the weather like in Paris today?", "answers": []},
                      {"query": "What is the weather like in Paris today?", "answers": []}]}


def test_apigen_generator_counts_duplicates_and_a_reused_step_keeps_them_in_the_stage_table(tmp_path):
    rows = [{"tools": [TOOLS[0]]}, {"tools": [TOOLS[1]]}]
    source = tmp_path / "tools.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def run() -> RunReport:
        serving = FakeLLMServing(_generator_reply, model_name="fake-model")
        gen = APIGenGenerator(serving, num_pairs=2, max_reasks=0, irrelevance_rate=1.0)
        return gen.run(FileStorage(str(source), cache_path=str(tmp_path / "cache")).step())

    first = run()
    # row 1 keeps one pair and drops its twin; row 2's two pairs repeat it
    assert first.counters == {"duplicates_dropped": 3}
    assert first.filtered_by_reason == {"duplicate_query": 1}
    second = run()
    assert second.reused and second.counters == {"duplicates_dropped": 3}
    table = stage_table([second])
    assert table["duplicates_dropped"] == 3 and table["reasked"] == 0
    assert re.search(r"duplicate queries dropped +3\n", format_stage_table(table))


def test_stage_table_reads_the_generators_counters():
    reports = [RunReport("APIGenGenerator", 2, "", rows_in=5, rows_out=10, counters={"duplicates_dropped": 2,
                                                                                    "reasked": 4})]
    table = stage_table(reports)
    assert (table["duplicates_dropped"], table["reasked"]) == (2, 4)
    assert stage_table([RunReport("APIGenGenerator", 2, "", rows_out=1)])["reasked"] == 0


# -- run summary, dataset card, HTML report ----------------------------------------------------------
def test_counters_are_in_the_run_summary_card_and_html_report(tmp_path):
    from dataflow.exports.card import dataset_card, run_summary

    source = _table(tmp_path / "in.jsonl", [1, 2, 3])
    report = ParityCounter().run(FileStorage(str(source), cache_path=str(tmp_path / "cache")).step())
    summary = run_summary(pipeline="parity", reports=[report], files={}, rows=3)
    assert summary["funnel"][0]["counters"] == {"batches": 1, "even": 1, "odd": 2}
    card = dataset_card(summary)
    assert "| 1 | ParityCounter | 3 | 3 | 0 | 0 | counted: odd: 2, batches: 1, even: 1 |" in card

    pytest.importorskip("plotly")
    from dataflow.exports.card import write_run_summary
    from dataflow.exports.html_report import build_report

    write_run_summary(tmp_path / "out", summary)
    assert "counted: odd: 2, batches: 1, even: 1" in build_report(tmp_path / "out")


# -- Ray: counts made on actors travel back with the batch results ------------------------------------
@pytest.mark.timeout(180)
def test_counters_made_on_ray_actors_are_summed_into_the_report(tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    import ray.cloudpickle as cloudpickle

    from dataflow.runners import RayRunner

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import this test module
    numbers = list(range(1, 12))  # 6 odd, 5 even
    source = _table(tmp_path / "in.jsonl", numbers)
    if ray.is_initialized():
        ray.shutdown()
    runner = RayRunner(num_actors=2, batch_size=3, ray_init_kwargs=dict(
        num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False, log_to_driver=False))
    try:
        op = ParityCounter()
        with runner:
            report = op.run(FileStorage(str(source), cache_path=str(tmp_path / "cache")).step())
            # the same instance again: the actors' copies start from zero too
            other = _table(tmp_path / "b.jsonl", [2, 4])
            again = op.run(FileStorage(str(other), cache_path=str(tmp_path / "b")).step())
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()
    assert runner.runs[0]["batches"] == 4 and runner.runs[0]["actors"] == 2  # it did run on actors
    assert report.counters == {"batches": 4, "even": 5, "odd": 6}
    assert load_manifest(manifest_path(report.output_file))["counts"]["counters"] == report.counters
    assert again.counters == {"batches": 1, "even": 2}


def test_execution_checker_counts_the_workers_it_replaced(tmp_path):
    from dataflow.operators.apigen import ExecutionChecker

    module = tmp_path / "tools.py"
    module.write_text("import os, signal\n\n"
                      "def add(a: int) -> int:\n    return a + 1\n\n"
                      "def kill_self() -> None:\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    kill, add = {"name": "kill_self", "arguments": {}}, {"name": "add", "arguments": {"a": 1}}
    rows = [{"answers": [kill]}, {"answers": [add]}, {"answers": [kill]}, {"answers": [add]}]  # replaced twice
    source = tmp_path / "calls.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = ExecutionChecker(module, timeout=5.0).run(FileStorage(str(source), cache_path=str(tmp_path / "c")).step())
    assert report.counters == {"worker_restarts": 2} and report.rows_out == 2
