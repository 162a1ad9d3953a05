"""The pre-flight check (``dataflow run --check``, ``check_pipeline``, ``PipelineCheck``): every
step's columns are checked before any LLM call, and every missing column of every step is
reported in one run; the example pipelines and the seed's pipeline class pass it without a model;
the columns each operator declares it writes are the columns its step file really has."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.core.preflight import PipelineCheck
from dataflow.serving import FakeLLMServing, FakeOpenAIServer
from dataflow.serving.fake_responders import button_responder
from dataflow.storage.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
BUTTON = "dataflow.serving.fake_responders:button_responder"
CHAT_DATA = ROOT / "example_data" / "FuncCallPipeline" / "chat_data.jsonl"

# a pipeline in the seed's shape: op.run(self.storage.step(), ...) per step, then the last table read
SCRIPT = '''
import os
from dataflow.utils.storage import FileStorage
from dataflow.serving import APILLMServing_request
from dataflow.operators.conversations import (
    ScenarioExtractor, AtomTaskGenerator, SequentialTaskGenerator, CompositionTaskFilter)


class FourSteps:
    def __init__(self):
        self.storage = FileStorage(first_entry_file_name="chat.jsonl", cache_path="./cache",
                                   file_name_prefix="dataflow_cache_step", cache_type="jsonl")
        self.llm_serving = APILLMServing_request(api_url=os.environ["FAKE_URL"], model_name="fake-model",
                                                 max_workers=8)
        self.scenario_extractor = ScenarioExtractor(llm_serving=self.llm_serving)
        self.atom_task_generator = AtomTaskGenerator(llm_serving=self.llm_serving)
        self.sequential_task_generator = SequentialTaskGenerator(llm_serving=self.llm_serving)
        self.composition_task_filter = CompositionTaskFilter(llm_serving=self.llm_serving)

    def run(self):
        self.scenario_extractor.run(self.storage.step(), input_chat_key="chat")
        self.atom_task_generator.run(self.storage.step(), input_scenario_key="scenario")
        self.sequential_task_generator.run(self.storage.step(), input_task_key="{task_key}")
        self.composition_task_filter.run(self.storage.step(), input_composition_task_key="{composition_key}",
                                         input_sub_tasks_keys=["atom_task", "subsequent_task"])


if __name__ == "__main__":
    pipeline = FourSteps()
    pipeline.run()
    print(len(pipeline.storage.read_output(output_type="dict")), "rows in the last step")
'''


def _folder(tmp: Path, task_key: str, composition_key: str) -> Path:
    (tmp / "chat.jsonl").write_text("".join(CHAT_DATA.read_text().splitlines(keepends=True)[:3]))
    script = tmp / "four_steps.py"
    script.write_text(SCRIPT.replace("{task_key}", task_key).replace("{composition_key}", composition_key))
    return script


def _dataflow(*args: str, cwd: Path, url: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), FAKE_URL=url, DF_LOCAL_MODEL="/nonexistent/no-model.gguf")
    for name in ("DF_API_URL", "DF_MODEL", "DF_API_KEY"):
        env.pop(name, None)  # no model: the embedded one is configured (and absent) but never started
    return subprocess.run([sys.executable, "-m", "dataflow.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=240)


def _step_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("dataflow_cache_step*")) if cache.is_dir() else []


@pytest.mark.timeout(240)
def test_wrong_keys_at_steps_3_and_4_are_reported_at_once_with_zero_llm_requests(tmp_path):
    script = _folder(tmp_path, task_key="atom_tsk", composition_key="composition")
    with FakeOpenAIServer(responder=BUTTON) as server:
        checked = _dataflow("run", "--check", str(script), cwd=tmp_path, url=server.url)
        assert checked.returncode == 1, checked.stderr[-2000:]
        assert server.request_count == 0
        assert _step_files(tmp_path / "cache") == []
        out = checked.stdout
        assert "pre-flight check: 4 steps, 2 missing columns, 0 LLM calls" in out
        assert ("step 3 SequentialTaskGenerator: input_task_key='atom_tsk' is not a column of its input "
                "(it has: system, chat, scenario, atom_task)") in out
        # step 3's outputs are still assumed, so step 4 is checked on its own merits
        assert ("step 4 CompositionTaskFilter: input_composition_task_key='composition' is not a column of its "
                "input (it has: system, chat, scenario, atom_task, subsequent_task, composition_task)") in out
        assert "Traceback" not in checked.stderr

        # what the check saves: a real run spends steps 1-2's calls, then stops at the first wrong key
        ran = _dataflow("run", str(script), cwd=tmp_path, url=server.url)
        assert ran.returncode == 2 and "input_task_key='atom_tsk'" in ran.stderr
        assert "'composition'" not in ran.stderr
        assert server.request_count > 0


@pytest.mark.timeout(240)
def test_a_correct_pipeline_passes_and_a_read_after_its_steps_ends_the_check(tmp_path):
    script = _folder(tmp_path, task_key="atom_task", composition_key="composition_task")
    with FakeOpenAIServer(responder=BUTTON) as server:
        checked = _dataflow("run", str(script), "--check", cwd=tmp_path, url=server.url)  # option after SCRIPT
        assert checked.returncode == 0, checked.stderr[-2000:]
        assert server.request_count == 0
    assert "pre-flight check: 4 steps, 0 missing columns, 0 LLM calls" in checked.stdout
    assert "ok: every column a step reads exists" in checked.stdout
    assert "rows in the last step" not in checked.stdout  # read_output ended the script: no rows to read
    assert _step_files(tmp_path / "cache") == [] and "Traceback" not in checked.stderr


@pytest.mark.timeout(240)
@pytest.mark.parametrize("script", ["func_call_synthesis.py", "apigen_synthesis.py", "environment_synthesis.py"])
def test_example_pipelines_pass_the_check_without_a_model(tmp_path, script):
    cache = tmp_path / "cache"
    done = _dataflow("run", "--check", str(ROOT / "api_pipelines" / script), "--", "--cache-dir", str(cache),
                     cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert " 0 missing columns, 0 LLM calls" in done.stdout and "Traceback" not in done.stderr
    assert _step_files(cache) == []  # nothing ran (the --rows head copy of the input is all it writes)


@pytest.mark.timeout(120)
def test_a_scripts_own_check_flag_prints_the_table_and_fails_on_a_missing_column(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DF_LOCAL_MODEL="/nonexistent/no-model.gguf")
    env.pop("DF_API_URL", None)
    bad = tmp_path / "tasks.jsonl"
    bad.write_text(json.dumps({"topic": "orders"}) + "\n")  # not a tool table
    done = subprocess.run([sys.executable, str(ROOT / "api_pipelines" / "apigen_synthesis.py"), "--check",
                           "--cache-dir", str(tmp_path / "cache"), "--input", str(bad)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 1
    assert "step 1 DataSampler: input_tools_key='function' is not a column of its input (it has: topic)" in done.stdout
    assert _step_files(tmp_path / "cache") == []


def test_the_seed_pipeline_class_as_written_passes_the_check(tmp_path, monkeypatch, fake_server):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        import test_seed_pipeline as seed
    finally:
        sys.path.remove(str(Path(__file__).parent))
    import shutil

    shutil.copytree(ROOT / "example_data", tmp_path / "example_data")
    (tmp_path / "api_pipelines").mkdir()
    monkeypatch.chdir(tmp_path / "api_pipelines")
    monkeypatch.setattr(seed, "FAKE_URL", fake_server.url)
    with PipelineCheck() as check:
        pipeline = seed.FuncCallPipeline()
        pipeline.run()
    assert check.ok and [s.operator for s in check.steps] == [
        "ScenarioExtractor", "AtomTaskGenerator", "SequentialTaskGenerator", "CompositionTaskFilter",
        "FunctionGenerator", "MultiTurnConversationGenerator"]
    assert fake_server.request_count == 0 and pipeline.storage.reports == []
    assert not (tmp_path / "api_pipelines" / "cache").exists()


# -- declared columns are the columns written -------------------------------------------------------
def _assert_declared_columns_written(check: PipelineCheck, cache: Path) -> int:
    """Each checked step's columns (its input's plus those it declares) equal the columns of the
    step file the real run wrote; returns how many steps were compared (steps that kept rows)."""
    compared = 0
    for step in check.steps:
        manifest = load_manifest(cache / f"dataflow_cache_step{step.step}.jsonl.manifest.json")
        assert manifest is not None and manifest["operator"] == step.operator
        if manifest["rows"]:
            assert set(manifest["columns"]) == set(step.available) | set(step.written), step.operator
            compared += 1
    return compared


@pytest.fixture
def pipelines(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "api_pipelines"))
    monkeypatch.delenv("DF_API_KEY", raising=False)
    import apigen_synthesis
    import environment_synthesis
    import func_call_synthesis

    return func_call_synthesis, apigen_synthesis, environment_synthesis


@pytest.mark.timeout(300)
def test_every_operator_of_the_example_pipelines_declares_the_columns_it_writes(tmp_path, pipelines, monkeypatch):
    fc, ag, env = pipelines
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(CHAT_DATA.read_text().splitlines(keepends=True)[:2]))

    def button(cache: Path):
        return fc.FuncCallPipeline(str(chat), str(cache), FakeLLMServing(button_responder, model_name="fake-model"),
                                   evaluate=True, expand=True, parallel=True)

    button(tmp_path / "fc").run()
    with PipelineCheck() as check:
        button(tmp_path / "fc").run()
    assert len(check.steps) == 9 and check.ok
    assert _assert_declared_columns_written(check, tmp_path / "fc") == 9

    from dataflow.serving.fake_environment import shop_responder

    tasks = fc.first_rows(env.DEFAULT_INPUT, 1, tmp_path / "env")
    environment = env.shop_environment()
    try:
        def shop(cache: Path):
            return env.EnvironmentPipeline(str(tasks), str(cache), FakeLLMServing(shop_responder, model_name="fake"),
                                           environment, attempts=1)

        shop(tmp_path / "env").run()
        with PipelineCheck() as check:
            shop(tmp_path / "env").run()
    finally:
        environment.close()
    assert check.ok and _assert_declared_columns_written(check, tmp_path / "env") == 2

    with FakeOpenAIServer(responder="dataflow.operators.apigen.testing:apigen_responder") as server:
        monkeypatch.setenv("DF_API_URL", server.url)
        monkeypatch.setenv("DF_MODEL", "fake-model")
        pipeline = ag.APIGenPipeline(cache_path=tmp_path / "ag", out_dir=tmp_path / "ag" / "export")
        try:
            pipeline.run()
        finally:
            pipeline.llm_serving.close()
        sent = server.request_count
        pipeline = ag.APIGenPipeline(cache_path=tmp_path / "ag", out_dir=tmp_path / "ag" / "export")
        with PipelineCheck() as check:
            pipeline.forward()
        pipeline.llm_serving.close()
        assert server.request_count == sent
    assert check.ok and _assert_declared_columns_written(check, tmp_path / "ag") == 6


def test_a_script_that_runs_no_step_fails_the_check(tmp_path):
    script = tmp_path / "nothing.py"
    script.write_text("print('built the pipeline, forgot to run it')\n")
    done = _dataflow("run", "--check", str(script), cwd=tmp_path)
    assert done.returncode == 1 and "no operator step ran" in done.stdout
