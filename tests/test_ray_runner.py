"""The Ray runner: the example pipelines give the same rows as the local runner, the two runners
reuse and resume each other's steps, the CPU budget is checked, the shared SQLite response cache
takes concurrent writers, and a worker node dying mid-step neither loses the step nor pays twice
for a finished request. Skipped when ``ray`` is not installed (``pip install ".[ray]"``)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='Ray runner tests need ray: pip install ".[ray]" (ray[data])')
pytest.importorskip("ray.data", reason='Ray runner tests need Ray Data: pip install ".[ray]" (ray[data])')

from dataflow.core.errors import ConfigError  # noqa: E402
from dataflow.runners import RayRunner  # noqa: E402
from dataflow.serving import APILLMServing_request  # noqa: E402
from dataflow.serving import FakeOpenAIServer  # noqa: E402
from dataflow.serving.response_cache import ResponseCache, request_key  # noqa: E402
from dataflow.utils.storage import FileStorage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUTTON = "dataflow.serving.fake_responders:button_responder"
APIGEN = "dataflow.operators.apigen.testing:apigen_responder"
SMALL_RAY = dict(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False, log_to_driver=False)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs, 200 MB object store) for the tests of this module."""
    runner = RayRunner(num_actors=2, ray_init_kwargs=SMALL_RAY)
    if ray.is_initialized():
        ray.shutdown()
    runner.start()
    yield runner
    ray.shutdown()


@pytest.fixture
def pipelines(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "api_pipelines"))
    monkeypatch.delenv("DF_API_KEY", raising=False)
    import apigen_synthesis
    import func_call_synthesis

    return func_call_synthesis, apigen_synthesis


def _serving(server: FakeOpenAIServer, **kw) -> APILLMServing_request:
    kw.setdefault("max_workers", 8)
    return APILLMServing_request(api_url=server.url, model_name="fake-model", progress=False, **kw)


def _canon(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _step_files(cache: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(cache.glob("dataflow_cache_step*.jsonl"))}


@pytest.mark.timeout(240)
def test_multi_turn_pipeline_same_rows_as_local_and_runners_resume_each_other(tmp_path, local_ray, pipelines):
    fc, _ = pipelines
    source = ROOT / "example_data" / "FuncCallPipeline" / "chat_data.jsonl"
    data = tmp_path / "chat_data_24.jsonl"  # the first 24 rows: three batches of 8
    data.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:24]), encoding="utf-8")
    with FakeOpenAIServer(responder=BUTTON) as server:
        def run(cache: Path, runner=None):
            serving = _serving(server)
            pipeline = fc.FuncCallPipeline(str(data), str(cache), serving)
            if runner is None:
                pipeline.run()
            else:
                with runner:
                    pipeline.run()
            return pipeline, serving

        local, _ = run(tmp_path / "local")
        sent_local = server.request_count
        runner = RayRunner(num_actors=2, batch_size=8)
        on_ray, serving = run(tmp_path / "ray", runner)
        assert server.request_count == 2 * sent_local  # the same requests, each sent once
        assert serving.stats.requests_sent == sent_local  # actors' counts reach the driver's report
        assert runner.last_run == {"operator": "MultiTurnConversationGenerator", "rows": 24, "batches": 3,
                                   "actors": 2}
        rows, local_rows = on_ray.final_rows(), local.final_rows()
        assert len(rows) == 24 and _canon(rows) == _canon(local_rows)
        assert rows == local_rows  # input order is kept, too
        # same step files byte for byte, and the same counts in the reports
        assert _step_files(tmp_path / "ray") == _step_files(tmp_path / "local")
        assert [(r.rows_in, r.rows_out, r.failed, r.llm.get("requests_sent")) for r in on_ray.storage.reports] == \
               [(r.rows_in, r.rows_out, r.failed, r.llm.get("requests_sent")) for r in local.storage.reports]

        # each runner reuses the other's finished steps: no request, no Ray job
        before = server.request_count
        again, _ = run(tmp_path / "local", RayRunner(num_actors=2, batch_size=8))
        assert all(r.reused for r in again.storage.reports) and server.request_count == before
        again, _ = run(tmp_path / "ray")
        assert all(r.reused for r in again.storage.reports) and server.request_count == before

        # the local runner resumes an unfinished Ray step from the shared response cache
        last = tmp_path / "ray" / "dataflow_cache_step6.jsonl"  # the multi-turn step
        for path in (last, last.with_name(last.name + ".manifest.json")):
            path.unlink()
        resumed, serving = run(tmp_path / "ray")
        assert server.request_count == before and serving.stats.cached > 0
        assert resumed.final_rows() == local_rows


@pytest.mark.timeout(180)
def test_apigen_pipeline_same_rows_and_stage_table_as_local(tmp_path, local_ray, pipelines, monkeypatch):
    _, ag = pipelines
    with FakeOpenAIServer(responder=APIGEN) as server:
        monkeypatch.setenv("DF_API_URL", server.url)
        monkeypatch.setenv("DF_MODEL", "fake-model")

        def run(cache: Path, runner=None):
            pipeline = ag.APIGenPipeline(cache_path=cache, out_dir=cache / "export")
            try:
                if runner is None:
                    table = pipeline.run()
                else:
                    with runner:
                        table = pipeline.run()
            finally:
                pipeline.llm_serving.close()
            return pipeline, table

        local, table_local = run(tmp_path / "local")
        sent = server.request_count
        runner = RayRunner(num_actors=2, batch_size=4)
        on_ray, table_ray = run(tmp_path / "ray", runner)
        assert server.request_count == 2 * sent
        assert table_ray == table_local and table_ray["verified"] > 0
        assert _step_files(tmp_path / "ray") == _step_files(tmp_path / "local")
        for name in ("train.openai.jsonl", "validation.hermes.jsonl"):
            assert (tmp_path / "ray" / "export" / name).read_bytes() == \
                   (tmp_path / "local" / "export" / name).read_bytes()
        # DataSampler and APIGenGenerator look across rows: they ran in the driver, whole-table
        assert not type(on_ray.sampler).rows_independent and not type(on_ray.generator).rows_independent
        assert on_ray.storage.reports[1].counters == local.storage.reports[1].counters  # the generator's
        assert runner.last_run["operator"] == "SemanticChecker" and runner.last_run["actors"] == 2


@pytest.mark.timeout(60)
def test_cpu_budget_is_checked(local_ray):
    # 2 CPUs, 1 kept free for Ray Data's reads and writes: at most 4 actors of 0.25 CPU
    with pytest.raises(ConfigError, match=r"5 actors x 0.25 CPU = 1.25 CPU.*2 CPU.*num_actors <= 4"):
        RayRunner(num_actors=5).start()
    with pytest.raises(ConfigError, match="cpus_per_actor"):
        RayRunner(num_actors=2, cpus_per_actor=1).start()
    RayRunner(num_actors=4).start()  # fits
    with pytest.raises(ConfigError, match="cpus_per_actor must be > 0"):
        RayRunner(cpus_per_actor=0)


@pytest.mark.timeout(60)
def test_shared_response_cache_takes_concurrent_writers_from_actors(tmp_path, local_ray):
    from dataflow.serving.response_cache import CachedResponse

    ResponseCache(tmp_path).put("seed", CachedResponse("x"))  # created (WAL) by the driver, as the runner does

    @ray.remote(num_cpus=0.25)
    def writer(directory: str, worker: int, n: int) -> int:
        cache = ResponseCache(directory)
        for start in range(0, n, 10):  # small transactions, interleaved with the other writers
            cache.put_many([(f"{worker}-{i}", CachedResponse(f"reply {worker} {i}"), "m")
                            for i in range(start, start + 10)])
            cache.get_many([f"{(worker + 1) % 4}-{start}"])
        cache.close()
        return n

    assert sum(ray.get([writer.remote(str(tmp_path), w, 300) for w in range(4)], timeout=50)) == 1200
    cache = ResponseCache(tmp_path)
    assert len(cache) == 1201
    assert cache.get("3-299").text == "reply 3 299"
    assert cache._connect().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- a worker node dies mid-step ----------------------------------------------------------------
def _actor_pids_under(parent_pid: int) -> list[int]:
    """Ray Data map actors (process title ``ray::MapWorker...``) started by that raylet."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent_pid and "MapWorker" in cmdline:
            pids.append(int(entry))
    return pids


def _key_of(body: dict) -> str:
    """The response-cache key of a request the fake server received."""
    extra = {k: v for k, v in body.items() if k not in ("model", "messages", "temperature", "response_format")}
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    return request_key(body["model"], body["messages"], body.get("temperature"), extra, schema)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds actor processes through /proc")
@pytest.mark.timeout(180)
def test_two_node_cluster_worker_node_dies_mid_step(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    from dataflow.operators.conversations import ScenarioExtractor

    if ray.is_initialized():
        ray.shutdown()  # the module's local instance: this test brings its own cluster
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    n = 96
    source = tmp_path / "chats.jsonl"
    source.write_text("".join(json.dumps({"chat": [{"role": "user", "content": f"Please book table {i} for "
                                                    f"{i % 7 + 2} people at restaurant number {i * 13 % 97}."}]}) + "\n"
                              for i in range(n)))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": 150 * 1024 * 1024,
                                                            "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1, object_store_memory=100 * 1024 * 1024)
    try:
        cluster.wait_for_nodes()
        with FakeOpenAIServer(responder=BUTTON, latency=0.3) as server:
            runner = RayRunner(address=cluster.address, num_actors=2, batch_size=8)
            storage = FileStorage(str(source), cache_path=str(tmp_path / "cache"))
            op = ScenarioExtractor(llm_serving=_serving(server, max_workers=4))
            killed: dict = {}

            def kill_worker_node() -> None:
                deadline = time.monotonic() + 90
                while server.request_count < n // 4 and time.monotonic() < deadline:
                    time.sleep(0.02)
                raylet = worker.all_processes["raylet"][0].process.pid
                killed["actors_on_node"] = _actor_pids_under(raylet)
                killed["received"] = server.request_count
                killed["cached"] = {k for (k,) in ResponseCache(tmp_path / "cache")._connect().execute(
                    "SELECT key FROM responses")}
                cluster.remove_node(worker, allow_graceful=False)
                killed["at"] = time.monotonic()

            killer = threading.Thread(target=kill_worker_node, daemon=True)
            killer.start()
            with runner:
                report = op.run(storage.step(), input_chat_key="chat")
            killer.join(10)
            assert "at" in killed, "the worker node was never removed"
            assert killed["actors_on_node"], "no actor ran on the worker node (nothing was killed)"

            # the step completed: every row, none failed, in input order
            assert report.rows_in == n and report.kept == n and report.failed == 0
            rows = storage.step().read(output_type="dict")
            assert [r["chat"] for r in rows] == [json.loads(line)["chat"] for line in source.read_text().splitlines()]

            bodies = server.received
            keys = [_key_of(b) for b in bodies]
            assert len(set(keys)) == n
            # no request whose reply was committed before the kill was sent after it ...
            resent = [k for k in keys[killed["received"]:] if k in killed["cached"]]
            assert resent == []
            # ... so at most the requests in flight on the killed actors were sent twice
            duplicates = len(keys) - len(set(keys))
            assert duplicates <= 4 * len(killed["actors_on_node"])  # max_workers of each killed actor
            # the report counts the batches that finished: each row's request once, sent or cached (what
            # the killed actors sent is not counted; the server's count above covers it)
            assert report.llm["requests_sent"] + report.llm["cached"] == n
    finally:
        ray.shutdown()
        cluster.shutdown()
