"""Throughput of ``dataflow.validate_calls``, beside a plain ``jsonschema`` loop in the same run.

Run: ``python benchmarks/bench_validate_calls.py [--rows 20000]``. Prints calls per second (wall
clock, and per CPU second, which a busy machine disturbs less) for:

- repeated tools: the 10 example APIGen tools (enums, bounds, patterns, formats, nested arrays,
  dependentRequired, if/then) shared by every row, rows of 1-3 calls, ~15% invalid; also with the
  tool list as a JSON string per row (xLAM rows) and with invalid calls only (message writing);
- new tools per row (BFCL-like): every row brings its own 1-3 tools, never seen before (BFCL's
  dialect: ``dict``/``float`` types, dotted names, enums, defaults, nested arrays), and 1-2 calls
  to them. This is APIGen sampling and generated functions: nothing can be cached, so the spec
  checks (normalisation and the Draft 2020-12 metaschema check of every tool) are in the figure;
- the same rows through a plain ``jsonschema`` loop: ``Draft202012Validator(parameters)`` per call
  on the raw schema, without and with ``check_schema`` of every tool (no dialect reading, no
  closed objects, no strict integers: a lower bound on the work, not the same checks).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataflow import validate_calls  # noqa: E402

VALID = [
    {"name": "get_weather_forecast", "arguments": {"city": "Lisbon", "days": 3, "unit": "celsius"}},
    {"name": "convert_currency", "arguments": {"amount": 120.5, "from_currency": "EUR", "to_currency": "JPY"}},
    {"name": "calculate_loan_payment", "arguments": {"principal": 250000, "annual_rate_percent": 3.9, "years": 25}},
    {"name": "search_recipes", "arguments": {"ingredients": ["tomato", "basil"], "diet": "vegan", "max_results": 2}},
    {"name": "book_flight", "arguments": {"origin": "LIS", "destination": "JFK", "departure_date": "2025-06-01",
                                          "trip_type": "round_trip", "return_date": "2025-06-15", "passengers": 2}},
    {"name": "calculate_bmi", "arguments": {"weight_kg": 72.5, "height_m": 1.78}},
    {"name": "count_words", "arguments": {"text": "the cat and the hat", "top_n": 2}},
    {"name": "schedule_meeting", "arguments": {"title": "Roadmap review", "attendees": ["ana@example.com", "li@example.org"],
                                               "start_time": "2025-03-14T09:30:00Z", "duration_minutes": 45,
                                               "recurrence": "weekly", "occurrences": 4}},
    {"name": "prime_factors", "arguments": {"n": 360}},
    {"name": "convert_length", "arguments": {"value": 5.2, "from_unit": "mi", "to_unit": "km"}},
]
INVALID = [
    {"name": "get_weather_forecast", "arguments": {"city": "Lisbon", "days": 1.5}},
    {"name": "convert_currency", "arguments": {"amount": -3, "from_currency": "EUR", "to_currency": "XYZ"}},
    {"name": "book_flight", "arguments": {"origin": "LIS", "destination": "JFK", "departure_date": "2025-06-01",
                                          "trip_type": "round_trip"}},
    {"name": "schedule_meeting", "arguments": {"title": "x", "attendees": [], "start_time": "soon", "occurrences": 3}},
    {"name": "calculate_bmi", "arguments": {"weight_kg": True, "height_m": "1.8", "age": 30}},
    {"name": "delete_everything", "arguments": {}},
]


def make_rows(n: int, invalid_share: float, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append([
            rng.choice(INVALID) if rng.random() < invalid_share else rng.choice(VALID)
            for _ in range(rng.randint(1, 3))
        ])
    return rows


# -- BFCL-like rows: every row its own, never-seen tools ---------------------------------------
_WORDS = ["area", "speed", "city", "year", "rate", "shape", "mass", "price", "name", "limit", "depth", "color"]
_KINDS = [
    ({"type": "integer"}, lambda r: r.randint(1, 500)),
    ({"type": "float"}, lambda r: round(r.uniform(0, 90), 2)),
    ({"type": "string"}, lambda r: r.choice(["Paris", "blue", "2021", "circle"])),
    ({"type": "boolean"}, lambda r: r.random() < 0.5),
    ({"type": "array", "items": {"type": "integer"}}, lambda r: [r.randint(0, 9) for _ in range(r.randint(1, 4))]),
    ({"type": "string", "enum": ["metric", "imperial"]}, lambda r: r.choice(["metric", "imperial"])),
    ({"type": "dict", "properties": {"lat": {"type": "float"}, "lon": {"type": "float"}}, "required": ["lat", "lon"]},
     lambda r: {"lat": round(r.uniform(-90, 90), 3), "lon": round(r.uniform(-180, 180), 3)}),
]


def make_bfcl_rows(n: int, seed: int = 1) -> list[tuple[list[dict], list[dict]]]:
    """``(tools, calls)`` per row; tool and argument names carry the row number (no two rows
    share a tool); ~5% of the calls carry a wrong type."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        tools, makers = [], []
        for t in range(rng.choice([1, 1, 1, 2, 3])):
            props, required, gen = {}, [], {}
            for a in range(rng.randint(1, 4)):
                name = f"{rng.choice(_WORDS)}_{a}_{i}"
                schema, value = rng.choice(_KINDS)
                props[name] = {**copy.deepcopy(schema), "description": f"The {name.split('_')[0]} to use."}
                if rng.random() < 0.7:
                    required.append(name)
                else:
                    props[name]["default"] = None if rng.random() < 0.5 else value(rng)
                gen[name] = value
            fname = f"{rng.choice(['math', 'geo', 'finance'])}.{rng.choice(_WORDS)}_{t}_{i}"
            tools.append({"name": fname, "description": f"Computes the {fname}.",
                          "parameters": {"type": "dict", "properties": props, "required": required}})
            makers.append((fname, gen, required))
        calls = []
        for _ in range(rng.choice([1, 1, 1, 2])):
            fname, gen, required = rng.choice(makers)
            args = {k: gen[k](rng) for k in gen if k in required or rng.random() < 0.3}
            if args and rng.random() < 0.05:
                args[next(iter(args))] = "wrong"
            calls.append({"name": fname, "arguments": args})
        rows.append((tools, calls))
    return rows


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _report(label: str, calls: int, started: tuple[float, float], errors: int) -> dict:
    wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
    rate, cpu_rate = calls / wall, (calls / cpu if cpu else 0.0)
    print(f"{label:<56} {calls:>7} calls  {wall:6.2f}s  {rate:>9,.0f} calls/s  "
          f"({cpu_rate:,.0f} per CPU second; {errors} rows with errors)")
    return {"calls_per_s": rate, "calls_per_cpu_s": cpu_rate}


def measure(label: str, rows: list, tools_for_row) -> dict:
    validate_calls(rows[0], tools_for_row(0))  # compile outside the timing
    calls = sum(len(r) for r in rows)
    started = _clock()
    errors = 0
    for i, row in enumerate(rows):
        errors += bool(validate_calls(row, tools_for_row(i)))
    return _report(label, calls, started, errors)


def measure_new_tools(label: str, rows: list) -> dict:
    import jsonschema  # noqa: F401 - imported once per process (for 3.0-as-integer messages): not in the figure
    import jsonschema_rs  # noqa: F401

    calls = sum(len(c) for _, c in rows)
    started = _clock()
    errors = 0
    for tools, row_calls in rows:
        errors += bool(validate_calls(row_calls, tools))
    return _report(label, calls, started, errors)


def _plain_rows(rows: list) -> list:
    """``(tools by name, calls)`` per row on the raw schemas, BFCL's ``dict``/``float`` mapped to JSON
    Schema names first so that they are legal (no other dialect reading, no closed objects)."""
    def plain(schema):
        text = json.dumps(schema).replace('"dict"', '"object"').replace('"float"', '"number"')
        return json.loads(text)

    return [({t["name"]: plain(t["parameters"]) for t in tools}, calls) for tools, calls in rows]


def _naive_loop(label: str, rows: list, check_tool, is_valid) -> dict:
    """A naive loop over ``rows``: ``check_tool(schema)`` of every tool (when given), then
    ``is_valid(schema, arguments)`` per call; a row with an unknown function counts as an error."""
    prepared = _plain_rows(rows)
    calls_n = sum(len(c) for _, c in rows)
    started = _clock()
    errors = 0
    for by_name, calls in prepared:
        if check_tool is not None:
            for schema in by_name.values():
                check_tool(schema)
        bad = False
        for call in calls:
            schema = by_name.get(call["name"])
            if schema is None or not is_valid(schema, call["arguments"]):
                bad = True
        errors += bad
    return _report(label, calls_n, started, errors)


def measure_plain_jsonschema(label: str, rows: list, check_schema: bool) -> dict:
    """The naive loop on ``jsonschema``: a ``Draft202012Validator`` per call on the raw schema,
    with ``check_schema`` of every tool when asked."""
    from jsonschema import Draft202012Validator

    return _naive_loop(label, rows, Draft202012Validator.check_schema if check_schema else None,
                       lambda schema, arguments: not any(True for _ in Draft202012Validator(schema).iter_errors(arguments)))


def measure_plain_rs(label: str, rows: list) -> dict:
    """The naive loop on jsonschema-rs (the issue's reference): ``meta.is_valid`` of every tool,
    then ``validator_for(parameters).is_valid(arguments)`` per call."""
    import jsonschema_rs

    return _naive_loop(label, rows, jsonschema_rs.meta.is_valid,
                       lambda schema, arguments: jsonschema_rs.validator_for(schema).is_valid(arguments))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--json", default=None, help="also write the rates as JSON here")
    args = parser.parse_args()
    tools = json.loads((ROOT / "example_data/APIGen/function_definitions.json").read_text())
    tools_text = json.dumps(tools)
    mixed = make_rows(args.rows, 0.15)
    print("repeated tools (10 APIGen tools shared by every row):")
    shared = measure("  dataflow validate_calls, 15% invalid", mixed, lambda i: tools)
    per_row = measure("  dataflow, tools as a JSON string per row (xLAM)", mixed, lambda i: tools_text)
    invalid = measure("  dataflow, invalid calls only (message writing)", make_rows(max(args.rows // 4, 1), 1.0),
                      lambda i: tools)
    print("new tools per row (BFCL-like, spec checks included):")
    bfcl = make_bfcl_rows(args.rows)
    new = measure_new_tools("  dataflow validate_calls", bfcl)
    plain = measure_plain_jsonschema("  plain jsonschema loop (no spec check)", bfcl, check_schema=False)
    plain_rs = measure_plain_rs("  plain jsonschema-rs loop + meta check of every tool", bfcl)
    plain_checked = measure_plain_jsonschema("  plain jsonschema loop + check_schema of every tool (2,000 rows)",
                                             bfcl[:2000], check_schema=True)
    print(f"validate_calls: {shared['calls_per_s']:,.0f} calls/s with repeated tools, "
          f"{new['calls_per_s']:,.0f} calls/s with new tools per row (target >= 60,000); "
          f"plain jsonschema: {plain['calls_per_s']:,.0f} / {plain_checked['calls_per_s']:,.0f} with check_schema; "
          f"plain jsonschema-rs with meta check: {plain_rs['calls_per_s']:,.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": args.rows,
            "shared_tools_calls_per_s": shared["calls_per_s"],
            "shared_tools_calls_per_cpu_s": shared["calls_per_cpu_s"],
            "json_tools_per_row_calls_per_s": per_row["calls_per_s"],
            "invalid_only_calls_per_s": invalid["calls_per_s"],
            "new_tools_per_row_calls_per_s": new["calls_per_s"],
            "new_tools_per_row_calls_per_cpu_s": new["calls_per_cpu_s"],
            "plain_jsonschema_calls_per_s": plain["calls_per_s"],
            "plain_jsonschema_check_schema_calls_per_s": plain_checked["calls_per_s"],
            "plain_jsonschema_calls_per_cpu_s": plain["calls_per_cpu_s"],
            "plain_jsonschema_rs_calls_per_s": plain_rs["calls_per_s"],
            "plain_jsonschema_rs_calls_per_cpu_s": plain_rs["calls_per_cpu_s"],
        }, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
