"""What a changed prompt, parameter, model or input re-runs, through the public pipeline path.

The seed's pipeline class (``api_pipelines/func_call_synthesis.py``) runs on a ``FileStorage``
with the fake backend; a second run with one thing changed must re-run exactly the steps that
change touches (the step whose prompt, parameter or model changed, and any later step whose
input bytes changed) and reuse every other finished step with zero LLM requests.

Default steps: 1 ScenarioExtractor, 2 AtomTaskGenerator, 3 SequentialTaskGenerator,
4 CompositionTaskFilter, 5 FunctionGenerator, 6 MultiTurnConversationGenerator.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataflow.prompts import load_template
from dataflow.serving import FakeLLMServing
from dataflow.serving.fake_responders import button_responder

ROOT = Path(__file__).resolve().parents[1]
CHAT_DATA = ROOT / "example_data" / "FuncCallPipeline" / "chat_data.jsonl"
ROWS = 3
STEPS = 6


@pytest.fixture
def pipeline_module(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "api_pipelines"))
    import func_call_synthesis

    return func_call_synthesis


@pytest.fixture
def chat_file(tmp_path) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(CHAT_DATA.read_text(encoding="utf-8").splitlines(keepends=True)[:ROWS]),
                    encoding="utf-8")
    return path


def _run(module, chat_file: Path, cache: Path, model: str = "fake-model", change=None):
    """Run the pipeline once; ``change(pipeline, serving)`` edits it before it runs. Returns
    ``[(reused, requests_sent)]`` per step and the serving."""
    serving = FakeLLMServing(button_responder, model_name=model)
    pipeline = module.FuncCallPipeline(str(chat_file), str(cache), serving)
    if change is not None:
        change(pipeline, serving)
    pipeline.run()
    reports = pipeline.storage.reports
    assert len(reports) == STEPS
    return [(r.reused, r.llm.get("requests_sent", 0)) for r in reports], serving


def _rerun_all(requests_per_step: list[int]) -> list[tuple[bool, int]]:
    return [(False, n) for n in requests_per_step]


@pytest.fixture
def first_run(pipeline_module, chat_file, tmp_path):
    """The pipeline run once from scratch; its per-step request counts."""
    cache = tmp_path / "cache"
    steps, serving = _run(pipeline_module, chat_file, cache)
    assert not any(reused for reused, _ in steps)
    counts = [n for _, n in steps]
    assert all(n >= ROWS for n in counts)  # every step asked the model about every row
    assert sum(counts) == serving.stats.requests_sent
    return cache, counts


def test_unchanged_rerun_reuses_every_step_and_sends_nothing(pipeline_module, chat_file, first_run):
    cache, _ = first_run
    steps, serving = _run(pipeline_module, chat_file, cache)
    assert steps == [(True, 0)] * STEPS
    assert serving.stats.requests_sent == 0 and serving.calls == []


def test_changed_prompt_template_reruns_its_step_only(pipeline_module, chat_file, first_run):
    cache, counts = first_run
    source = load_template("atom_task_generator").source
    changed = source.replace("in one short sentence", "in one short, polite sentence")
    assert changed != source

    def change(pipeline, serving):
        pipeline.atom_task_generator.prompt_template = changed

    steps, serving = _run(pipeline_module, chat_file, cache, change=change)
    # step 2 re-ran with the new prompt; its replies did not depend on the changed sentence, so
    # its output bytes are the same and every later step is reused
    assert steps == [(True, 0), (False, counts[1]), (True, 0), (True, 0), (True, 0), (True, 0)]
    assert all("polite" in messages[0]["content"] for messages, _ in serving.calls)


def test_changed_prompt_that_changes_the_output_reruns_every_later_step(pipeline_module, chat_file, first_run):
    cache, counts = first_run
    source = load_template("sequential_task_generator").source
    changed = source.replace("{% macro user() %}\n", "{% macro user() %}\nRequest: (urgent)\n", 1)
    assert changed != source  # the fake reads the first "Request:" line, so the tasks change

    def change(pipeline, serving):
        pipeline.sequential_task_generator.prompt_template = changed

    steps, _ = _run(pipeline_module, chat_file, cache, change=change)
    assert steps[:2] == [(True, 0), (True, 0)]
    assert steps[2:] == _rerun_all(counts[2:])


def test_changed_parameter_reruns_its_step_only(pipeline_module, chat_file, first_run):
    cache, counts = first_run

    def change(pipeline, serving):
        pipeline.function_generator.max_reasks = 3

    steps, _ = _run(pipeline_module, chat_file, cache, change=change)
    assert steps == [(True, 0)] * 4 + [(False, counts[4]), (True, 0)]
    manifest = json.loads((cache / "dataflow_cache_step5.jsonl.manifest.json").read_text())
    assert manifest["parameters"]["max_reasks"] == 3


def test_changed_model_reruns_every_step(pipeline_module, chat_file, first_run):
    cache, counts = first_run
    steps, _ = _run(pipeline_module, chat_file, cache, model="another-fake-model")
    assert steps == _rerun_all(counts)


def test_changed_input_reruns_every_step(pipeline_module, chat_file, first_run):
    cache, counts = first_run
    lines = chat_file.read_text(encoding="utf-8").splitlines(keepends=True)
    row = json.loads(lines[0])
    row["chat"] = row["chat"].replace("USER: ", "USER: [second run] ", 1)
    lines[0] = json.dumps(row, ensure_ascii=False) + "\n"
    chat_file.write_text("".join(lines), encoding="utf-8")
    steps, _ = _run(pipeline_module, chat_file, cache)
    assert steps == _rerun_all(counts)


def test_rerun_after_a_change_is_reused_again(pipeline_module, chat_file, first_run):
    """The re-run step's new manifest is the one the next run matches."""
    cache, _ = first_run

    def change(pipeline, serving):
        pipeline.function_generator.max_reasks = 3

    _run(pipeline_module, chat_file, cache, change=change)
    steps, _ = _run(pipeline_module, chat_file, cache, change=change)
    assert steps == [(True, 0)] * STEPS


def test_final_rows_reads_the_last_step_without_advancing(pipeline_module, chat_file, tmp_path):
    serving = FakeLLMServing(button_responder)
    pipeline = pipeline_module.FuncCallPipeline(str(chat_file), str(tmp_path / "cache"), serving)
    pipeline.run()
    step = pipeline.storage.operator_step
    rows = pipeline.final_rows()
    assert len(rows) == ROWS and all(row["conversations"] for row in rows)
    assert pipeline.final_rows() == rows and pipeline.storage.operator_step == step
