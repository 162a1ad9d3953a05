"""The seed's example pipeline class (seeds/001, section 4), pasted as written; only ``api_url``
and ``model_name`` point at the loopback fake server. It runs from an ``api_pipelines``-like
folder next to ``example_data``, as ``dataflow init`` lays them out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dataflow.operators.conversations import check_conversation
from dataflow.serving.fake_responders import button_responder

ROOT = Path(__file__).resolve().parents[1]
FAKE_URL = "set by the test"
FAKE_MODEL = "fake-model"

# ---- pasted from the seed; only api_url / model_name changed --------------------------------
from dataflow.utils.storage import FileStorage
from dataflow.serving import APILLMServing_request
from dataflow.operators.conversations import (
    ScenarioExtractor,
    ScenarioExpander,
    AtomTaskGenerator,
    SequentialTaskGenerator,
    ParaSeqTaskGenerator,
    CompositionTaskFilter,
    FunctionGenerator,
    MultiTurnConversationGenerator
)

class FuncCallPipeline:
    def __init__(self):

        self.storage = FileStorage(
            first_entry_file_name="../example_data/FuncCallPipeline/chat_data.jsonl",
            cache_path="./cache",
            file_name_prefix="dataflow_cache_step",
            cache_type="jsonl",
        )
      
        self.llm_serving = APILLMServing_request(
                api_url=FAKE_URL,
                model_name=FAKE_MODEL,
                max_workers=128
        )
        
        self.scenario_extractor = ScenarioExtractor(llm_serving=self.llm_serving)
        self.scenario_expander = ScenarioExpander(llm_serving=self.llm_serving)
        self.atom_task_generator = AtomTaskGenerator(llm_serving=self.llm_serving)
        self.sequential_task_generator = SequentialTaskGenerator(llm_serving=self.llm_serving)
        self.parallel_sequential_stak_generator = ParaSeqTaskGenerator(llm_serving=self.llm_serving)
        self.composition_task_filter = CompositionTaskFilter(llm_serving=self.llm_serving)
        self.function_generator = FunctionGenerator(llm_serving=self.llm_serving)
        self.multi_turn_conversations_generator = MultiTurnConversationGenerator(llm_serving=self.llm_serving)

    def run(self):
       self.scenario_extractor.run(
           self.storage.step(),
           input_chat_key="chat"
       )
       self.atom_task_generator.run(
           self.storage.step(),
           input_scenario_key="scenario"
       )
       self.sequential_task_generator.run(
           self.storage.step(),
           input_task_key="atom_task"
       )
       self.composition_task_filter.run(
           self.storage.step(),
           input_composition_task_key="composition_task",
           input_sub_tasks_keys=["atom_task", "subsequent_task"]
       )
       self.function_generator.run(
           self.storage.step(),
           input_composition_task_key="composition_task",
           input_sub_tasks_keys=["atom_task", "subsequent_task"]
       )
       self.multi_turn_conversations_generator.run(
           self.storage.step(),
           input_task_key="composition_task",
           input_sub_tasks_keys=["atom_task", "subsequent_task"],
           input_functions_key="functions",
        )
# ---- end of the pasted seed -------------------------------------------------------------------


def test_seed_pipeline_runs_as_written(tmp_path, monkeypatch, fake_server):
    global FAKE_URL
    shutil.copytree(ROOT / "example_data", tmp_path / "example_data")
    (tmp_path / "api_pipelines").mkdir()
    monkeypatch.chdir(tmp_path / "api_pipelines")
    fake_server.responder = button_responder
    FAKE_URL = fake_server.url

    pipeline = FuncCallPipeline()
    pipeline.run()

    reports = pipeline.storage.reports
    assert [r.operator for r in reports] == [
        "ScenarioExtractor", "AtomTaskGenerator", "SequentialTaskGenerator", "CompositionTaskFilter",
        "FunctionGenerator", "MultiTurnConversationGenerator",
    ]
    n_input = sum(1 for line in (tmp_path / "example_data/FuncCallPipeline/chat_data.jsonl").open() if line.strip())
    assert reports[0].rows_in == n_input and reports[-1].rows_out == n_input
    final = Path(reports[-1].output_file).resolve()
    assert final.parent == (tmp_path / "api_pipelines" / "cache").resolve()
    rows = [json.loads(line) for line in final.open()]
    for row in rows:
        assert check_conversation(row["conversations"], row["tools"]) == []
    assert fake_server.request_count > 0
