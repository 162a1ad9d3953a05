"""The dataset card and the HTML report of both example pipelines, on the loopback fake server:

- the export folder's ``README.md`` is a Hugging Face dataset card (YAML front matter with
  license, task_categories, language, size_categories and configs pointing at the files) and
  ``datasets.load_dataset(folder)`` loads it as written, each config too;
- ``dataflow report`` writes one HTML file that draws its plots in headless Chromium with the
  network cut off (a proxy that refuses every connection), checked in the rendered DOM and kept
  as a screenshot (in ``$DF_TEST_ARTIFACTS`` when set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
PIPELINES = {
    "func_call": ("api_pipelines/func_call_synthesis.py", "dataflow.serving.fake_responders:button_responder",
                  ["--rows", "3"]),
    "apigen": ("api_pipelines/apigen_synthesis.py", "dataflow.operators.apigen.testing:apigen_responder",
               ["--rows", "8", "--no-semantic"]),
}


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def export(request, tmp_path_factory) -> tuple[str, Path]:
    """``(pipeline, export folder)`` of one example pipeline run against the fake server."""
    from dataflow.serving import FakeOpenAIServer

    name = request.param
    script, responder, extra = PIPELINES[name]
    work = tmp_path_factory.mktemp(name)
    with FakeOpenAIServer(responder=responder) as server:
        env = dict(os.environ, DF_API_URL=server.url, DF_MODEL="fake-model", PYTHONPATH=str(ROOT))
        env.pop("DF_API_KEY", None)
        done = subprocess.run([sys.executable, str(ROOT / script), *extra, "--cache-dir", str(work / "cache"),
                               "--out-dir", str(work / "out")], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return name, work / "out"


def _front_matter(card: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def test_dataset_card_has_the_hub_fields_and_the_funnel(export):
    name, folder = export
    card = (folder / "README.md").read_text(encoding="utf-8")
    front = _front_matter(card)
    assert front["license"] == "other"  # an endpoint's model: its terms are not known here
    assert front["task_categories"] == ["text-generation"] and front["language"] == ["en"]
    assert front["size_categories"] == ["n<1K"]
    configs = {c["config_name"]: c for c in front["configs"]}
    assert configs["openai"].get("default") is True
    assert {"openai", "trl", "llamafactory", "hermes"} <= set(configs)
    for config in configs.values():
        for entry in config["data_files"]:
            assert (folder / entry["path"]).is_file(), entry
    summary = json.loads((folder / "run_summary.json").read_text())
    assert summary["model"] == "fake-model" and summary["rows"] > 0
    operators = [e["operator"] for e in summary["funnel"]]
    assert operators[-1] == "export"
    for entry in summary["funnel"]:  # every row is kept, failed or filtered, with reasons that add up
        assert entry["rows_in"] >= 0 and entry["failed"] == sum(entry["failed_by_reason"].values())
        assert entry["filtered"] == sum(entry["filtered_by_reason"].values())
        assert f"| {entry['step']} | {entry['operator']} | {entry['rows_in']} | {entry['kept']} |" in card
    assert "## Checks every example passed" in card and summary["checks"]
    assert "temperature" in card  # generation parameters
    if name == "apigen":
        assert "FormatChecker" in operators and "xlam" in configs
        assert any(r for e in summary["funnel"] for r in e["filtered_by_reason"])  # the fake copies now and then


def test_load_dataset_works_on_the_folder_as_written(export):
    datasets = pytest.importorskip("datasets")
    _, folder = export
    summary = json.loads((folder / "run_summary.json").read_text())
    default = datasets.load_dataset(str(folder))
    assert sum(split.num_rows for split in default.values()) == summary["rows"]
    openai_rows = [json.loads(line) for p in sorted(folder.glob("*openai.jsonl"))
                   for line in p.read_text().splitlines() if line.strip()]
    loaded = [row for split in sorted(default) for row in default[split].to_list()]
    assert sorted(map(json.dumps, loaded)) == sorted(map(json.dumps, openai_rows))  # nothing null-filled or lost
    front = _front_matter((folder / "README.md").read_text())
    for config in front["configs"]:
        data = datasets.load_dataset(str(folder), config["config_name"])
        assert sum(split.num_rows for split in data.values()) == summary["rows"], config["config_name"]


def test_the_card_of_an_empty_export_says_there_is_nothing_to_load():
    """The newcomer run exported 0 rows: load_dataset raises on the empty files, so the card must
    not tell the reader to call it."""
    from dataflow.exports.card import dataset_card

    summary = {"pipeline": "func_call_synthesis", "rows": 0, "model": "m",
               "files": {"openai": "x.openai.jsonl", "trl": "x.trl.jsonl"}}
    card = dataset_card(summary, default="openai")
    assert "This run exported no example" in card and "load_dataset(" not in card
    assert "load_dataset(" in dataset_card({**summary, "rows": 3}, default="openai")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_draws_offline_in_headless_chromium(export, tmp_path):
    pytest.importorskip("plotly")
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: scripts/test installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    name, folder = export
    out = tmp_path / "report.html"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "dataflow.cli", "report", str(folder), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?:""", page)  # nothing to fetch
    shown = json.loads((folder / "run_summary.json").read_text())
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    plots = ("funnel", "calls", "turns", "tools", "argument_types", "lengths", "quality")
    for plot in plots:  # plotly drew each one: its SVG and at least one mark
        start = html.index(f'id="plot-{plot}"')
        end = min([html.index(f'id="plot-{p}"') for p in plots if html.index(f'id="plot-{p}"') > start] or [len(html)])
        part = html[start:end]
        assert 'class="main-svg"' in part, plot
        assert re.search(r'class="(point|box)', part), plot
    funnel = html[html.index('id="plot-funnel"'):]
    for entry in shown["funnel"]:
        assert f"{entry['step']}. {entry['operator']}" in funnel  # an axis label per step
    for reason in {r for e in shown["funnel"] for r in (*e["failed_by_reason"], *e["filtered_by_reason"])}:
        assert reason in funnel  # a legend entry per rejection reason
    assert html.count('class="conv"') == min(3, shown["rows"])  # example conversations, as text
    assert "CALL" in html and "USER" in html
    shot = tmp_path / f"report_{name}.png"
    done = subprocess.run([browser, *flags, "--window-size=1200,3600", f"--screenshot={shot}", out.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    artefacts = os.environ.get("DF_TEST_ARTIFACTS")
    if artefacts:
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artefacts) / shot.name)
        shutil.copy(out, Path(artefacts) / f"report_{name}.html")


def test_report_of_a_folder_without_a_run_summary_is_one_line_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dataflow.cli", "report", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 2 and "run_summary.json" in done.stderr and "Traceback" not in done.stderr
