"""Judge calibration: each LLM judge over its labelled set (``dataflow/quality/calibration``), on
one backend, for ``n_votes`` 1 and 3. Prints per judge and vote count the share of good items
accepted, of bad items rejected, failures and wall time, and records them in
``dataflow/quality/calibration/results.json`` under the model's name (what the judges read at run
time to decide whether their verdicts are enforced or advisory).

Backend, as the example pipelines choose it: ``DF_API_URL`` (+ ``DF_MODEL``, key in
``DF_API_KEY``) for an OpenAI-compatible endpoint, else the embedded llama.cpp model named by
``--model`` (or ``DF_LOCAL_MODEL``, else the default; see ``dataflow.serving.model_files``).

    python benchmarks/bench_judges.py                                   # embedded default model
    python benchmarks/bench_judges.py --model qwen2.5-coder-1.5b-instruct --judges semantic
    python benchmarks/bench_judges.py --limit 4 --no-write              # a quick look

Votes: vote 0 of ``n_votes=3`` is the very request ``n_votes=1`` sends, so the 3-vote run reuses
those replies from the response cache and sends only votes 1 and 2. ``seconds`` is the measured
wall time of a run; ``seconds_cold`` estimates a run from a cold cache: the measured seconds per
request sent times the requests a cold run sends (the items the LLM judges x ``n_votes``), so a
run resumed with ``--cache`` after an interruption still gets a comparable figure. Items are judged
with ``judge_mode="enforce"``; a failed item (request failed, reply invalid or cut) counts as
neither accepted nor rejected. For the composition filter, items its deterministic near-duplicate
check rejects before any LLM call are reported apart (``llm_only`` holds the figures of the items
the LLM judged, which is what the run-time gate reads).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataflow.core.operator import FAILED, FILTERED, OK  # noqa: E402
from dataflow.quality.calibration import RESULTS_FILE, TARGET, load_items, load_results, settings_key  # noqa: E402

JUDGES = {"semantic": "SemanticChecker", "composition": "CompositionTaskFilter", "quality": "ConversationQualityEvaluator"}
QUALITY_MIN_SCORE = 4  # the threshold the quality evaluator is calibrated at
CHUNK = 6  # items per batch, so progress shows while a slow model works
EXPLANATIONS = ("semantic_thought", "composition_reason", "quality_explanation")  # why a judge accepted


def make_judge(name: str, serving, n_votes: int):
    """``(operator, process_batch keyword arguments, item -> input row)`` for one judge."""
    if name == "SemanticChecker":
        from dataflow.operators.apigen import SemanticChecker

        def row(item: dict) -> dict:
            return {"query": item["query"], "tools": item["tools"], "answers": item["answers"],
                    "execution_results": item["execution_results"], "execution_ok": True}

        return SemanticChecker(serving, n_votes=n_votes, judge_mode="enforce"), {}, row
    if name == "CompositionTaskFilter":
        from dataflow.operators.conversations import CompositionTaskFilter

        def row(item: dict) -> dict:
            return {"composition_task": item["composition_task"], "sub_tasks": item["sub_tasks"]}

        return (CompositionTaskFilter(serving, n_votes=n_votes, judge_mode="enforce"),
                {"input_sub_tasks_keys": ["sub_tasks"]}, row)
    if name == "ConversationQualityEvaluator":
        from dataflow.operators.conversations import ConversationQualityEvaluator

        def row(item: dict) -> dict:
            return {"conversations": item["messages"], "tools": item["tools"]}

        return ConversationQualityEvaluator(serving, min_score=QUALITY_MIN_SCORE, n_votes=n_votes,
                                            judge_mode="enforce"), {}, row
    raise KeyError(name)


def decided_without_llm(name: str, item: dict) -> bool:
    """Whether the operator's deterministic check settles ``item`` before asking the LLM."""
    if name != "CompositionTaskFilter":
        return False
    from dataflow.operators.conversations.composition_filter import repeated_sub_task

    return repeated_sub_task({"composition_task": item["composition_task"], "sub_tasks": item["sub_tasks"]},
                             "composition_task", ["sub_tasks"]) is not None


def rates(verdicts: list[tuple[dict, str]]) -> dict:
    """accept_good / reject_bad (fractions) and counts over ``(item, "accept"|"reject"|"failed")``."""
    good = [v for item, v in verdicts if item["label"] == "good"]
    bad = [v for item, v in verdicts if item["label"] == "bad"]
    return {
        "accept_good": round(good.count("accept") / len(good), 4) if good else 0.0,
        "reject_bad": round(bad.count("reject") / len(bad), 4) if bad else 0.0,
        "n_good": len(good),
        "n_bad": len(bad),
    }


def run_judge(name: str, serving, items: list[dict], n_votes: int) -> tuple[dict, list]:
    operator, kwargs, to_row = make_judge(name, serving, n_votes)
    verdicts: list[tuple[dict, str]] = []
    reasons: dict[str, str] = {}
    before = serving.stats.as_dict()
    started = time.perf_counter()
    for start in range(0, len(items), CHUNK):
        chunk = items[start:start + CHUNK]
        for item, outcome in zip(chunk, operator.process_batch([to_row(i) for i in chunk], **kwargs)):
            verdict = {OK: "accept", FILTERED: "reject", FAILED: "failed"}[outcome.status]
            verdicts.append((item, verdict))
            if (verdict == "accept") != (item["label"] == "good"):
                why = outcome.reason or next((outcome.rows[0].get(c) for c in EXPLANATIONS if outcome.rows
                                              and c in outcome.rows[0]), "")
                reasons[item["id"]] = f"{verdict}: {why}"[:300]
        print(f"  {name} n_votes={n_votes}: {len(verdicts)}/{len(items)} items, "
              f"{time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    after = serving.stats.as_dict()
    entry = rates(verdicts)
    sent = after["requests_sent"] - before["requests_sent"]
    asked = sum(1 for item, _ in verdicts if not decided_without_llm(name, item))
    entry.update({
        "failed": sum(1 for _, v in verdicts if v == "failed"),
        "seconds": round(seconds, 1),
        "seconds_cold": round(seconds / sent * asked * n_votes, 1) if sent else None,
        "requests_sent": after["requests_sent"] - before["requests_sent"],
        "cached": after["cached"] - before["cached"],
        "completion_tokens": after["completion_tokens"] - before["completion_tokens"],
        "prompt_hash": operator.prompt_hash,
        "settings": operator.calibration_settings(),
        "wrong": reasons,
    })
    llm_judged = [(item, v) for item, v in verdicts if not decided_without_llm(name, item)]
    if len(llm_judged) != len(verdicts):
        entry["llm_only"] = rates(llm_judged)
        entry["decided_without_llm"] = len(verdicts) - len(llm_judged)
    return entry, verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="embedded model: a known name or a GGUF path (default: DF_LOCAL_MODEL / default)")
    parser.add_argument("--judges", default="semantic,composition,quality", help="comma list of " + ", ".join(JUDGES))
    parser.add_argument("--votes", default="1,3", help="comma list of n_votes values (default 1,3)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N good and N bad items of each set")
    parser.add_argument("--results", default=str(RESULTS_FILE), help="JSON file to record the figures in")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--cache", help="response cache folder (default: a fresh temporary one)")
    parser.add_argument("--threads", type=int, help="embedded model: CPU threads (default: all cores)")
    args = parser.parse_args(argv)

    from dataflow.serving.from_env import serving_from_env

    overrides: dict = {"model_path": args.model} if args.model else {}
    if args.threads:
        overrides["n_threads"] = args.threads
    cache_dir = args.cache or tempfile.mkdtemp(prefix="bench_judges_")
    serving = serving_from_env(cache_dir=cache_dir, progress=False, **overrides)
    model = serving.model_name
    votes = sorted({int(v) for v in args.votes.split(",")})
    summary = []
    try:
        for key in args.judges.split(","):
            name = JUDGES[key.strip()]
            items = load_items(name)
            if args.limit:
                items = ([i for i in items if i["label"] == "good"][: args.limit]
                         + [i for i in items if i["label"] == "bad"][: args.limit])
            for n_votes in votes:
                entry, _ = run_judge(name, serving, items, n_votes)
                entry["measured"] = datetime.date.today().isoformat()
                entry["backend"] = type(serving).__name__
                line = (f"{name} on {model}, n_votes={n_votes}: accept good {entry['accept_good']:.0%} "
                        f"({entry['n_good']}), reject bad {entry['reject_bad']:.0%} ({entry['n_bad']}), "
                        f"failed {entry['failed']}, {entry['seconds']:.0f}s "
                        f"({entry['requests_sent']} requests sent, {entry['cached']} from the cache; "
                        f"cold-cache estimate {entry['seconds_cold'] or 0:.0f}s)")
                if "llm_only" in entry:
                    llm = entry["llm_only"]
                    line += (f"; LLM-judged items only: accept good {llm['accept_good']:.0%}, "
                             f"reject bad {llm['reject_bad']:.0%} ({entry['decided_without_llm']} decided "
                             "by the near-duplicate check)")
                print(line, flush=True)
                summary.append((name, n_votes, entry))
                if not args.no_write and not args.limit:
                    record(Path(args.results), model, name, entry)
    finally:
        serving.close()
    meets = [f"{n} n_votes={v}" for n, v, e in summary
             if min(e.get("llm_only", e)["accept_good"], e.get("llm_only", e)["reject_bad"]) >= TARGET]
    print(f"at or above {TARGET:.0%}/{TARGET:.0%} on {model}: {', '.join(meets) or 'none'}", flush=True)
    return 0


def record(path: Path, model: str, judge: str, entry: dict) -> None:
    """Put ``entry`` into ``path`` under model / judge / settings key (atomic rewrite, under a
    lock so that benchmarks of two models running at once both land)."""
    import fcntl

    from dataflow.storage.atomic import atomic_write_text

    with open(Path(tempfile.gettempdir()) / "dataflow_bench_judges.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load_results(path)
        runs = data.setdefault(model, {}).setdefault(judge, {})
        old = runs.get(settings_key(entry["settings"]))
        if not entry["requests_sent"] and old and old.get("prompt_hash") == entry["prompt_hash"]:
            entry = {**entry, **{k: old[k] for k in ("seconds", "seconds_cold", "measured") if k in old}}
        runs[settings_key(entry["settings"])] = entry
        atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
