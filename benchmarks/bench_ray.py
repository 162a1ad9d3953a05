"""Throughput of one LLM operator step under ``RayRunner`` as the number of actors grows.

A fake OpenAI-compatible server in its own process answers every request after ``--latency``
seconds. The step is ``ScenarioExtractor`` (one request per row) over ``--rows`` distinct rows;
each actor's serving client runs ``--max-workers`` requests at a time, so the ideal throughput is
``actors x max_workers / latency`` rows/s. Every run uses a fresh cache folder (no reuse).

Each step also pays a fixed cost (starting the actor pool: new processes importing dataflow, and
Ray Data's scheduling). ``steady rows/s`` leaves it out: it counts replies over the time between
the first and the last reply committed to the response cache (each entry has its commit time).

    python benchmarks/bench_ray.py                           # 1, 2, 4 actors; 100 ms latency
    python benchmarks/bench_ray.py --rows 2000 --actors 1 2 4 --latency 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataflow.operators.conversations import ScenarioExtractor  # noqa: E402
from dataflow.runners import RayRunner  # noqa: E402
from dataflow.serving import APILLMServing_request  # noqa: E402
from dataflow.serving import FakeOpenAIServer  # noqa: E402
from dataflow.utils.storage import FileStorage  # noqa: E402

RESPONDER = "dataflow.serving.fake_responders:button_responder"


def write_rows(path: str, n: int, tag: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            chat = [{"role": "user", "content": f"[{tag}] Please book table {i} for {i % 7 + 2} people tonight."}]
            fh.write(json.dumps({"chat": chat}) + "\n")


def run_step(url: str, workdir: str, n: int, tag: str, runner: RayRunner, max_workers: int) -> tuple[float, float, dict]:
    folder = os.path.join(workdir, tag)
    os.makedirs(folder)
    source = os.path.join(folder, "chats.jsonl")
    write_rows(source, n, tag)
    serving = APILLMServing_request(api_url=url, model_name="bench", max_workers=max_workers, progress=False)
    op = ScenarioExtractor(llm_serving=serving)
    started = time.perf_counter()
    report = op.run(FileStorage(source, cache_path=os.path.join(folder, "cache")).step(), input_chat_key="chat")
    seconds = time.perf_counter() - started
    if report.kept != n:
        raise SystemExit(f"step lost rows: {report.summary_line()}")
    first, last = serving.cache._connect().execute("SELECT MIN(created), MAX(created) FROM responses").fetchone()
    serving.close()
    return seconds, last - first, report.llm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=960)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--max-workers", type=int, default=8, help="concurrent requests per actor")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cpus-per-actor", type=float, default=0.25)
    parser.add_argument("--address", default=None, help="Ray address (default: start a local Ray)")
    args = parser.parse_args(argv)

    import ray

    workdir = tempfile.mkdtemp(prefix="dataflow-bench-ray-")
    init = dict(include_dashboard=False, log_to_driver=False)
    if args.address is None:
        init.update(num_cpus=os.cpu_count() or 2, object_store_memory=256 * 1024 * 1024)
    results = []
    try:
        with FakeOpenAIServer(responder=RESPONDER, latency=args.latency, in_process=False, record=False) as server:
            first = RayRunner(address=args.address, num_actors=1, ray_init_kwargs=init)
            first.start()
            try:
                for actors in args.actors:
                    runner = RayRunner(address=args.address, num_actors=actors, batch_size=args.batch_size,
                                       cpus_per_actor=args.cpus_per_actor)
                    with runner:
                        seconds, window, llm = run_step(server.url, workdir, args.rows, f"run-{actors}", runner,
                                                        args.max_workers)
                    ideal = actors * args.max_workers / args.latency
                    steady = (args.rows - 1) / max(1e-9, window)
                    results.append((actors, seconds, seconds - window, args.rows / seconds, steady, ideal,
                                    llm.get("requests_sent", 0)))
                    print(f"  {actors} actor(s): {seconds:.1f}s", file=sys.stderr, flush=True)
            finally:
                first.shutdown()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    base = results[0][4] if results else 1.0
    print(f"\nRayRunner, ScenarioExtractor over {args.rows} rows; fake server latency {args.latency * 1000:.0f} ms; "
          f"{args.max_workers} requests in flight per actor; batch_size {args.batch_size}; "
          f"{args.cpus_per_actor:g} CPU per actor; {os.cpu_count()} CPUs here")
    print(f"{'actors':>6} {'seconds':>8} {'startup':>8} {'rows/s':>8} {'steady rows/s':>14} {'ideal':>7} "
          f"{'of ideal':>9} {'speedup':>8} {'sent':>6}")
    for actors, seconds, fixed, rps, net, ideal, sent in results:
        print(f"{actors:>6} {seconds:>8.1f} {fixed:>8.1f} {rps:>8.0f} {net:>14.0f} {ideal:>7.0f} "
              f"{net / ideal:>9.2f} {net / base:>7.2f}x {sent:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
