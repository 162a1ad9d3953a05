"""How often the APIGen format check rejects answers people wrote and checked: the ground truth of
the Berkeley Function Calling Leaderboard (BFCL), which is right by construction, run through
``FormatChecker`` (schema validation, grounding of every value in the query, repeated calls).
Every rejection here is a candidate false rejection to read: a check that rejects right data is
a bug like one that passes wrong data.

    python benchmarks/bench_grounding_real.py --bfcl-dir PATH [--answers minimal|every-value]
                                              [--show N] [--rejected-out FILE]

PATH is BFCL's data folder (``berkeley-function-call-leaderboard/bfcl_eval/data`` of a checkout
of github.com/ShishirPatil/gorilla): ``BFCL_v4_<category>.json`` (questions and functions) and
``possible_answer/BFCL_v4_<category>.json`` (the accepted values of each argument). The data is
not shipped with dataflow; this script reads a copy you have.

An answer is built from BFCL's accepted values: an argument BFCL lets you leave out ("" among its
values) is left out unless the function requires it or leaving it out would make two calls of a
parallel answer the same; otherwise its first accepted value is used (nested objects alike).
``--answers every-value`` gives every argument its first accepted value instead, optional ones at
the defaults their descriptions state included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import _common  # noqa: F401 - puts the repository on sys.path

CATEGORIES = ("simple_python", "parallel", "multiple", "parallel_multiple")


def accepted_arguments(values: dict, keep: set[str]) -> dict:
    """One answer's arguments from BFCL's ``{argument: [accepted values]}``; ``keep`` names the
    arguments that may not be left out."""
    out = {}
    for name, options in values.items():
        if not options or ("" in options and name not in keep):
            continue
        first = next((o for o in options if o != ""), None)
        if first is None:
            continue
        if isinstance(first, dict):
            first = accepted_arguments(first, set(first))
        elif isinstance(first, list):
            first = [accepted_arguments(x, set(x)) if isinstance(x, dict) else x for x in first]
        out[name] = first
    return out


def bfcl_rows(folder: Path, category: str, every_value: bool = False) -> list[dict]:
    """APIGen rows ``{"id", "query", "tools", "answers"}`` of one BFCL category; ``every_value``
    fills every argument BFCL gives a value for (optional ones with their stated defaults too)."""
    questions = [json.loads(line) for line in (folder / f"BFCL_v4_{category}.json").read_text().splitlines() if line]
    answers = {a["id"]: a for a in (json.loads(line) for line in
                                    (folder / "possible_answer" / f"BFCL_v4_{category}.json").read_text().splitlines()
                                    if line)}
    rows = []
    for question in questions:
        minimal, full = [], []
        for truth in answers[question["id"]]["ground_truth"]:
            (name, values), = truth.items()
            spec = next((f for f in question["function"] if f["name"] == name), {})
            required = set(spec.get("parameters", {}).get("required", []))
            minimal.append({"name": name, "arguments": accepted_arguments(values, required)})
            full.append({"name": name, "arguments": accepted_arguments(values, set(values))})
        keys = [json.dumps(call, sort_keys=True) for call in minimal]
        calls = full if every_value else [m if keys.count(k) == 1 else f for m, f, k in zip(minimal, full, keys)]
        rows.append({"id": question["id"], "query": question["question"][0][-1]["content"],
                     "tools": question["function"], "answers": calls})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bfcl-dir", required=True, type=Path)
    parser.add_argument("--categories", default=",".join(CATEGORIES))
    parser.add_argument("--answers", choices=("minimal", "every-value"), default="minimal",
                        help="minimal: leave out what BFCL lets you leave out; every-value: give every "
                             "argument BFCL has a value for (optional ones at their defaults too)")
    parser.add_argument("--show", type=int, default=0, help="print this many rejected rows")
    parser.add_argument("--rejected-out", type=Path, default=None, help="write every rejected row here (JSON)")
    args = parser.parse_args()
    if not (args.bfcl_dir / "possible_answer").is_dir():
        sys.exit(f"error: {args.bfcl_dir} has no possible_answer/ folder: give BFCL's bfcl_eval/data folder")

    from dataflow.operators.apigen.checkers import FormatChecker

    rows = [row for category in args.categories.split(",")
            for row in bfcl_rows(args.bfcl_dir, category, every_value=args.answers == "every-value")]
    started = time.process_time()
    outcomes = FormatChecker().process_batch(rows)
    seconds = time.process_time() - started
    counts: Counter = Counter()
    rejected = []
    for row, outcome in zip(rows, outcomes):
        code = "accepted" if outcome.status == "ok" else outcome.reason.split(":", 1)[0]
        counts[code] += 1
        if outcome.status != "ok":
            rejected.append({"id": row["id"], "reason": outcome.reason, "query": row["query"], "answers": row["answers"]})
    print(f"BFCL v4 ground truth ({args.categories}; {args.answers} answers): {len(rows)} human-written answers, "
          f"{counts['accepted']} accepted ({100 * counts['accepted'] / len(rows):.1f}%), "
          f"{len(rows) - counts['accepted']} rejected; {seconds:.2f} CPU s")
    for code, count in counts.most_common():
        if code != "accepted":
            print(f"  {code}: {count}")
    for entry in rejected[: args.show]:
        print(f"{entry['id']}: {entry['query'][:100]!r}\n    {entry['reason'][:200]}")
    if args.rejected_out:
        args.rejected_out.write_text(json.dumps(rejected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
