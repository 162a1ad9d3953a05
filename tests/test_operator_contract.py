"""The operator contract (``dataflow.core.operator``) pinned exactly: outcomes, reason codes, the
run report and its summary line, what a step writes (kept rows, columns, rejected rows, manifest)
and what a reused step reports, template overrides and the runner hook."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dataflow.core import OperatorABC, RowOutcome, RunReport, merge_row
from dataflow.core.errors import ConfigError, MissingColumnError
from dataflow.core.operator import reason_code
from dataflow.core.runner import using_runner
from dataflow.serving import FakeLLMServing
from dataflow.utils.storage import FileStorage


class Tag(OperatorABC):
    """Keeps ``ok`` rows (tagged), fails ``bad`` rows, drops ``skip`` rows, doubles ``two`` rows,
    and marks ``meh`` rows as kept against an advisory rejection; one LLM call per row."""

    prompt_names = ("scenario_extractor",)

    def __init__(self, llm_serving=None, label: str = "x", prompt_template=None):
        super().__init__(llm_serving, prompt_template)
        self.label = label

    def run(self, storage, input_text_key="text", input_extra_keys=None, output_key="tag"):
        return self._run_keys(storage, {"input_text_key": input_text_key, "input_extra_keys": input_extra_keys,
                                        "output_key": output_key}, params={"label": self.label})

    def process_batch(self, rows, input_text_key="text", input_extra_keys=None, output_key="tag"):
        if self.llm_serving is not None:
            self.llm_serving.generate_from_input([r[input_text_key] for r in rows])
        outcomes = []
        for row in rows:
            text = row[input_text_key]
            if text == "bad":
                outcomes.append(RowOutcome.fail("llm_error: HTTP 500: boom"))
            elif text == "skip":
                outcomes.append(RowOutcome.drop("too short"))
            elif text == "two":
                outcomes.append(RowOutcome.keep_many([merge_row(row, **{output_key: 1}),
                                                      merge_row(row, **{output_key: 2}, extra="e")]))
            elif text == "meh":
                outcomes.append(RowOutcome.keep_advisory(merge_row(row, **{output_key: 0}), "failed_semantic: judge says no"))
            else:
                outcomes.append(RowOutcome.keep(merge_row(row, **{output_key: self.label})))
        return outcomes


def _input(tmp_path: Path, texts: list[str]) -> FileStorage:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    return FileStorage(str(path), cache_path=str(tmp_path / "cache"))


def test_outcomes():
    assert RowOutcome.keep({"a": 1}, {"a": 2}) == RowOutcome("ok", [{"a": 1}, {"a": 2}], None, None)
    assert RowOutcome.keep_many(iter([{"a": 1}])) == RowOutcome("ok", [{"a": 1}])
    assert RowOutcome.keep_advisory({"a": 1}, "failed_x: y") == RowOutcome("ok", [{"a": 1}], None, "failed_x: y")
    assert RowOutcome.fail("llm_error: x") == RowOutcome("failed", [], "llm_error: x")
    assert RowOutcome.drop("dup: x") == RowOutcome("filtered", [], "dup: x")
    for make, message in ((RowOutcome.fail, "a failed row needs a reason"),
                          (RowOutcome.drop, "a filtered row needs a reason"),
                          (lambda r: RowOutcome.keep_advisory({}, r), "an advisory rejection needs a reason")):
        with pytest.raises(ValueError, match=f"^{message}$"):
            make("")


@pytest.mark.parametrize("reason, code", [
    ("llm_error: HTTP 500: x", "llm_error"), ("invalid_reply:x", "invalid_reply"), ("no code here", "no code here"),
    ("two words: detail", "two words: detail"), (": empty head", ": empty head"), ("plain", "plain"),
    ("  spaced : x", "spaced")])
def test_reason_code(reason, code):
    assert reason_code(reason) == code


def test_merge_row_copies():
    row = {"a": 1}
    merged = merge_row(row, b=2, a=3)
    assert merged == {"a": 3, "b": 2} and row == {"a": 1}


def test_summary_line():
    report = RunReport("Op", 3, "out.jsonl", rows_in=5, rows_out=2, kept=2, failed=2, filtered=1,
                       failed_by_reason={"llm_error": 1, "invalid_reply": 1}, filtered_by_reason={"dup": 1},
                       advisory_by_reason={"failed_semantic": 2}, llm={"requests_sent": 5, "cached": 1, "failed": 2},
                       seconds=1.26)
    assert report.summary_line() == (
        "[step 3] Op: 5 in -> 2 out; 2 failed (llm_error: 1, invalid_reply: 1); 1 filtered (dup: 1); "
        "2 kept despite an advisory judge's rejection (failed_semantic: 2); LLM: 5 sent, 1 cached, 2 failed; 1.3s")
    counts = RunReport("Op", 1, "f", rows_in=3, failed=3, failed_by_reason={"a": 1, "b": 2})
    assert counts.summary_line() == "[step 1] Op: 3 in -> 0 out; 3 failed (b: 2, a: 1); 0.0s"
    reused = RunReport("Op", 1, "f", llm={"requests_sent": 9}, reused=True)
    assert reused.summary_line() == "[step 1] Op: 0 in -> 0 out; reused finished step, 0 LLM calls; 0.0s"
    assert RunReport("Op", 1, "f", llm={}).summary_line() == "[step 1] Op: 0 in -> 0 out; 0.0s"
    assert RunReport("Op", 1, "f", llm={"succeeded": 1}).summary_line() == \
        "[step 1] Op: 0 in -> 0 out; LLM: 0 sent, 0 cached, 0 failed; 0.0s"
    assert report.as_dict()["failed_by_reason"] == {"llm_error": 1, "invalid_reply": 1}
    assert set(report.as_dict()) == {"operator", "step", "output_file", "rows_in", "rows_out", "kept", "failed",
                                     "filtered", "failed_by_reason", "filtered_by_reason", "advisory_by_reason",
                                     "counters", "llm", "reused", "seconds"}
    counted = RunReport("Op", 1, "f", rows_in=2, rows_out=2, counters={"reasked": 1, "duplicates_dropped": 3})
    assert counted.summary_line() == "[step 1] Op: 2 in -> 2 out; counted duplicates_dropped: 3, reasked: 1; 0.0s"


def test_a_step_writes_kept_rows_rejected_rows_counts_and_manifest(tmp_path, capsys):
    storage = _input(tmp_path, ["ok", "bad", "skip", "two", "meh", "meh"])
    cache_dirs = []

    class Serving(FakeLLMServing):
        def use_cache_dir(self, cache_dir):
            cache_dirs.append(cache_dir)

    serving = Serving(lambda m, s: "fine")
    op = Tag(serving, label="L")
    assert op.last_report is None
    report = op.run(storage.step())
    assert cache_dirs == [str(tmp_path / "cache")]
    assert report.operator == "Tag" and 0 <= report.seconds < 60
    assert (report.rows_in, report.rows_out, report.kept, report.failed, report.filtered) == (6, 5, 4, 1, 1)
    assert report.failed_by_reason == {"llm_error": 1} and report.filtered_by_reason == {"too short": 1}
    assert report.advisory_by_reason == {"failed_semantic": 2}
    assert report.llm["requests_sent"] == 6 and report.llm["succeeded"] == 6 and not report.reused
    assert report.step == 1 and report.output_file == str(tmp_path / "cache" / "dataflow_cache_step1.jsonl")
    assert op.last_report is report and storage.reports == [report]
    assert capsys.readouterr().err.strip().splitlines()[-1] == report.summary_line()

    rows = storage.step().read("dict")
    assert rows == [{"text": "ok", "n": 0, "tag": "L"}, {"text": "two", "n": 3, "tag": 1},
                    {"text": "two", "n": 3, "tag": 2, "extra": "e"}, {"text": "meh", "n": 4, "tag": 0},
                    {"text": "meh", "n": 5, "tag": 0}]
    manifest = json.loads(Path(report.output_file + ".manifest.json").read_text())
    assert manifest["columns"] == ["text", "n", "tag", "extra"]
    assert manifest["operator"] == "Tag" and manifest["operator_module"] == __name__
    assert manifest["parameters"] == {"input_text_key": "text", "input_extra_keys": None, "output_key": "tag",
                                      "label": "L"}
    assert manifest["model"] == "fake-model" and manifest["prompt_hash"] == op.prompt_hash
    assert manifest["input_fingerprint"] == hashlib.sha256((tmp_path / "in.jsonl").read_bytes()).hexdigest()
    assert manifest["counts"] == {"rows_in": 6, "rows_out": 5, "kept": 4, "failed": 1, "filtered": 1,
                                  "failed_by_reason": {"llm_error": 1}, "filtered_by_reason": {"too short": 1},
                                  "advisory_by_reason": {"failed_semantic": 2}, "counters": {}}
    assert manifest["llm"]["requests_sent"] == 6
    rejected = [json.loads(line) for line in
                (tmp_path / "cache" / "dataflow_cache_step1.rejected.jsonl").read_text().splitlines()]
    assert rejected == [
        {"text": "bad", "n": 1, "_operator": "Tag", "_input_row": 1, "_status": "failed",
         "_reason": "llm_error: HTTP 500: boom"},
        {"text": "skip", "n": 2, "_operator": "Tag", "_input_row": 2, "_status": "filtered", "_reason": "too short"}]


def test_a_reused_step_reports_the_counts_it_had(tmp_path, capsys):
    storage = _input(tmp_path, ["ok", "skip", "two", "meh"])
    first = Tag(FakeLLMServing(lambda m, s: "fine")).run(storage.step())
    again_storage = FileStorage(storage.first_entry_file_name, cache_path=storage.cache_path)
    serving = FakeLLMServing(lambda m, s: "fine")
    again = Tag(serving).run(again_storage.step())
    assert again.reused and serving.calls == [] and again.llm == {}
    assert again.operator == "Tag" and 0 <= again.seconds < 60
    for name in ("rows_in", "rows_out", "kept", "failed", "filtered", "failed_by_reason", "filtered_by_reason",
                 "advisory_by_reason", "counters", "step", "output_file"):
        assert getattr(again, name) == getattr(first, name), name
    assert (again.rows_in, again.rows_out, again.filtered, again.advisory_by_reason) == (4, 4, 1, {"failed_semantic": 1})
    assert again_storage.reports == [again]
    assert capsys.readouterr().err.strip().splitlines()[-1] == again.summary_line()


def test_input_columns_are_checked_before_any_call_also_in_a_list(tmp_path):
    storage = _input(tmp_path, ["ok"])
    serving = FakeLLMServing(lambda m, s: "fine")
    with pytest.raises(MissingColumnError, match=r"Tag: input_extra_keys='missing'") as info:
        Tag(serving).run(storage.step(), input_extra_keys=["n", "missing"])
    assert f"does not exist in {tmp_path / 'in.jsonl'} (columns are: text, n)" in str(info.value)
    assert serving.calls == []
    report = Tag(serving).run(_input(tmp_path, ["ok"]).step(), input_extra_keys=["n", "text"])
    assert report.rows_out == 1


def test_a_step_after_one_that_rejected_every_row_runs_on_nothing(tmp_path, capsys):
    """Every row failed upstream: the next step's input has no row and not the columns rows would
    have had; it says '0 rows in' instead of naming a missing column."""
    storage = _input(tmp_path, ["bad", "bad"])
    serving = FakeLLMServing(lambda m, s: "fine")
    assert Tag(serving).run(storage.step()).rows_out == 0
    report = Tag(serving).run(storage.step(), input_text_key="tag_of_a_row_that_never_was")
    assert (report.rows_in, report.rows_out, report.failed) == (0, 0, 0)
    assert "step 2 Tag: 0 rows in" in capsys.readouterr().err


def test_a_new_operator_version_runs_its_step_again_and_the_same_version_reuses_it(tmp_path):
    storage = _input(tmp_path, ["ok"])
    serving = FakeLLMServing(lambda m, s: "fine")
    first = Tag(serving).run(storage.step())
    assert "operator_version" not in json.loads(Path(first.output_file + ".manifest.json").read_text())

    class Tag2(Tag):
        version = 2

    Tag2.__name__ = "Tag"  # the same operator, its code changed
    assert not Tag2(serving).run(_input(tmp_path, ["ok"]).step()).reused
    assert json.loads(Path(first.output_file + ".manifest.json").read_text())["operator_version"] == 2
    assert Tag2(serving).run(_input(tmp_path, ["ok"]).step()).reused
    assert len(serving.calls) == 2  # each run that was not reused asked (the fake backend keeps no cache)


def test_an_operator_without_serving_writes_a_manifest_without_model(tmp_path):
    storage = _input(tmp_path, ["ok"])
    report = Tag().run(storage.step())
    assert report.llm == {} and report.rows_out == 1
    manifest = json.loads(Path(report.output_file + ".manifest.json").read_text())
    assert manifest["model"] is None and manifest["llm"] == {}


def test_a_wrong_number_of_outcomes_is_an_error(tmp_path):
    class Short(Tag):
        def process_batch(self, rows, **keys):
            return super().process_batch(rows, **keys)[:-1]

    with pytest.raises(RuntimeError, match=r"^Short.process_batch returned 1 outcomes for 2 rows$"):
        Short().run(_input(tmp_path, ["ok", "ok"]).step())


def test_the_active_runner_runs_the_batch_function(tmp_path):
    class Recorder:
        def __init__(self):
            self.seen = []

        def run_batches(self, operator, batch_fn, rows):
            self.seen.append((type(operator).__name__, [r["text"] for r in rows]))
            return batch_fn(rows)

    runner = Recorder()
    with using_runner(runner):
        report = Tag(label="R").run(_input(tmp_path, ["ok", "skip"]).step())
    assert runner.seen == [("Tag", ["ok", "skip"])] and report.rows_out == 1 and report.filtered == 1


def test_require_llm_and_prompt_templates(tmp_path):
    with pytest.raises(ConfigError, match=r"^Tag needs llm_serving=\.\.\.; none was given$"):
        Tag().require_llm()
    serving = FakeLLMServing(lambda m, s: "x")
    assert Tag(serving).require_llm() is serving

    packaged = Tag()
    assert packaged.template().name == "scenario_extractor" and packaged.template() is packaged.template()
    assert len(packaged.prompt_hash) == 16
    text = "{% macro system() %}S {{ v }}{% endmacro %}{% macro user() %}U {{ v }}{% endmacro %}"
    custom = Tag(prompt_template=text)
    assert custom.render(v=1) == ("S 1", "U 1") and custom.prompt_hash != packaged.prompt_hash
    by_name = Tag(prompt_template={"scenario_extractor": text})
    assert by_name.render(v=2) == ("S 2", "U 2") and by_name.prompt_hash == custom.prompt_hash
    other = Tag(prompt_template={"something_else": text})
    assert other.prompt_hash == packaged.prompt_hash
    # an override of the first template does not replace a second one
    assert custom.template("atom_task_generator").source == packaged.template("atom_task_generator").source

    class NoPrompt(Tag):
        prompt_names = ()

    assert NoPrompt().prompt_hash == ""

    class TwoPrompts(Tag):
        prompt_names = ("scenario_extractor", "atom_task_generator")

    two = TwoPrompts()
    assert two.prompt_hash != packaged.prompt_hash
    assert TwoPrompts(prompt_template={"atom_task_generator": text}).prompt_hash != two.prompt_hash


class StepSeen(OperatorABC):
    """Records the step label a backend would see while its rows are processed."""

    seen: list = []

    def run(self, storage, input_text_key="text"):
        return self._run_keys(storage, {"input_text_key": input_text_key})

    def process_batch(self, rows, input_text_key="text"):
        from dataflow.core.llm import CURRENT_STEP

        StepSeen.seen.append(CURRENT_STEP.get())
        return [RowOutcome.keep(row) for row in rows]


def test_a_running_step_says_so_and_names_itself_to_the_backend(tmp_path, capsys):
    from dataflow.core.llm import CURRENT_STEP

    StepSeen.seen = []
    storage = _input(tmp_path, ["a", "b"])
    StepSeen().run(storage.step())
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "step 1 StepSeen: 2 rows in" and StepSeen.seen == ["step 1 StepSeen"]
    assert CURRENT_STEP.get() is None
    again = FileStorage(str(tmp_path / "in.jsonl"), cache_path=str(tmp_path / "cache"))
    StepSeen().run(again.step())  # reused: no start line, nothing processed
    assert "rows in" not in capsys.readouterr().err and StepSeen.seen == ["step 1 StepSeen"]


PROGRESS_SCRIPT = r'''
import json, sys
from pathlib import Path
from dataflow.core import OperatorABC, RowOutcome
from dataflow.serving import APILLMServing_request
from dataflow.serving import FakeOpenAIServer
from dataflow.utils.storage import FileStorage

class Ask(OperatorABC):
    def run(self, storage, input_text_key="text"):
        return self._run_keys(storage, {"input_text_key": input_text_key})
    def process_batch(self, rows, input_text_key="text"):
        self.llm_serving.generate_from_input([r[input_text_key] for r in rows])
        return [RowOutcome.keep(r) for r in rows]

work = Path(sys.argv[1])
(work / "in.jsonl").write_text("".join(json.dumps({"text": f"q{i}"}) + "\n" for i in range(6)))
with FakeOpenAIServer(latency=0.2) as server:
    llm = APILLMServing_request(api_url=server.url, model_name="m", max_workers=2)
    Ask(llm).run(FileStorage(str(work / "in.jsonl"), cache_path=str(work / "cache")).step())
'''


def test_the_progress_bar_on_a_terminal_is_named_after_the_step(tmp_path):
    """tqdm draws only on a terminal: the script runs with stderr on a pseudo-terminal."""
    import os
    import pty
    import subprocess
    import sys

    import fcntl
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a new pty is 0 x 0
    proc = subprocess.Popen([sys.executable, "-c", PROGRESS_SCRIPT, str(tmp_path)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "step 1 Ask: 6 rows in" in text
    assert "step 1 Ask:" in text.replace("step 1 Ask: 6 rows in", "") and "req" in text, text[-2000:]


def test_a_reused_step_whose_manifest_lacks_counts_reports_zero(tmp_path):
    storage = _input(tmp_path, ["ok"])
    report = Tag().run(storage.step())
    path = Path(report.output_file + ".manifest.json")
    manifest = json.loads(path.read_text())
    manifest["counts"] = {"rows_out": 1}
    path.write_text(json.dumps(manifest))
    again = Tag().run(_input(tmp_path, ["ok"]).step())
    assert again.reused and (again.rows_in, again.rows_out, again.kept, again.failed, again.filtered) == (0, 1, 0, 0, 0)
    assert again.failed_by_reason == again.filtered_by_reason == again.advisory_by_reason == {}


def test_an_outcome_without_a_reason_counts_as_unknown_and_parameters_are_json(tmp_path):
    class Odd(Tag):
        def process_batch(self, rows, **keys):
            return [RowOutcome("failed"), RowOutcome("filtered")]

    op = Odd(label=Path("/some/where"))  # not JSON: recorded as its repr
    report = op.run(_input(tmp_path, ["a", "b"]).step())
    assert report.failed_by_reason == {"unknown": 1} and report.filtered_by_reason == {"unknown": 1}
    manifest = json.loads(Path(report.output_file + ".manifest.json").read_text())
    assert manifest["parameters"]["label"] == repr(Path("/some/where"))
    assert list(manifest["parameters"]) == sorted(manifest["parameters"])
