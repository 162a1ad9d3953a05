"""`dataflow --version` and `dataflow init`, run as real subprocesses; the scaffold copier and the
CLI's lazy commands and error handling in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import dataflow
from dataflow.cli import scaffold
from dataflow.cli.main import LazyGroup, main
from dataflow.cli.scaffold import RECORD_FILE, copy_scaffold, scaffold_source

REPO = Path(dataflow.__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "dataflow.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def shipped_files() -> dict[str, bytes]:
    files = {}
    for folder in scaffold.SCAFFOLD_FOLDERS:
        root = scaffold_source(folder)
        for path in scaffold._iter_files(root):
            files[(Path(folder) / path.relative_to(root)).as_posix()] = path.read_bytes()
    return files


def test_version():
    result = run_cli("--version", cwd=REPO)
    assert result.returncode == 0
    assert result.stdout.strip() == f"dataflow {dataflow.__version__}"


def test_help_lists_init():
    result = run_cli("--help", cwd=REPO)
    assert result.returncode == 0 and "init" in result.stdout


def test_init_copies_everything_into_an_empty_folder(tmp_path):
    result = run_cli("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = shipped_files()
    assert any(p.startswith("api_pipelines/") for p in expected)
    assert any(p.startswith("example_data/") for p in expected)
    for rel, data in expected.items():
        assert (tmp_path / rel).read_bytes() == data
        assert f"copied      {rel}" in result.stdout
    assert f"{len(expected)} copied" in result.stdout
    copied = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert copied == set(expected) | {RECORD_FILE}
    assert not any("__pycache__" in p or "/cache/" in p for p in copied)


def test_init_ends_with_the_next_commands_unless_told_not_to(tmp_path):
    result = run_cli("init", cwd=tmp_path)
    assert result.stdout.strip().splitlines()[-1].startswith("Next: cd api_pipelines && python func_call_synthesis.py")
    (tmp_path / "b").mkdir()
    quiet = run_cli("init", "--no-next", cwd=tmp_path / "b")  # scripts/run-example runs the pipeline itself
    assert quiet.returncode == 0 and "Next" not in quiet.stdout
    assert "copied" in quiet.stdout.strip().splitlines()[-1]


def test_init_skips_run_outputs_of_the_source_checkout(tmp_path, fake_source):
    (fake_source / "api_pipelines" / "output" / "run").mkdir(parents=True)
    (fake_source / "api_pipelines" / "output" / "run" / "report.html").write_text("<html></html>")
    copy_scaffold(tmp_path / "dest")
    assert (tmp_path / "dest" / "api_pipelines" / "pipe.py").exists()
    assert not (tmp_path / "dest" / "api_pipelines" / "output").exists()


def test_init_is_idempotent_and_keeps_user_edits(tmp_path):
    assert run_cli("init", cwd=tmp_path).returncode == 0
    expected = shipped_files()

    again = run_cli("init", cwd=tmp_path)
    assert again.returncode == 0
    assert f"0 copied, 0 updated, 0 overwritten, {len(expected)} skipped as identical, 0 kept" in again.stdout

    edited = tmp_path / "api_pipelines" / "README.md"
    edited.write_text("my notes\n")
    (tmp_path / "example_data" / "README.md").unlink()
    third = run_cli("init", cwd=tmp_path)
    assert third.returncode == 0
    assert edited.read_text() == "my notes\n"
    assert "kept        api_pipelines/README.md" in third.stdout and "--force" in third.stdout
    assert "copied      example_data/README.md" in third.stdout
    assert "1 kept because modified by you" in third.stdout

    forced = run_cli("init", "--force", cwd=tmp_path)
    assert forced.returncode == 0
    assert "overwritten api_pipelines/README.md" in forced.stdout
    assert edited.read_bytes() == expected["api_pipelines/README.md"]


def test_init_into_dir_option(tmp_path):
    result = run_cli("init", "--dir", "new/place", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new" / "place" / "api_pipelines" / "README.md").is_file()
    assert not (tmp_path / "api_pipelines").exists()


def test_init_user_error_is_one_line_exit_2(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run_cli("init", "--dir", "afile/sub", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot create the folder")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- the copier, in process ----------------------------------------------------------------------
@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A scaffold source tree with junk that must not be copied."""
    src = tmp_path / "src"
    (src / "api_pipelines" / "__pycache__").mkdir(parents=True)
    (src / "api_pipelines" / "__pycache__" / "p.cpython-311.pyc").write_bytes(b"\0")
    (src / "api_pipelines" / "cache").mkdir()
    (src / "api_pipelines" / "cache" / "dataflow_cache_step_step1.jsonl").write_text("{}\n")
    (src / "api_pipelines" / "pipe.py").write_text("print('v1')\n")
    (src / "example_data" / "sub").mkdir(parents=True)
    (src / "example_data" / "sub" / "data.jsonl").write_text('{"a": 1}\n')
    monkeypatch.setattr(scaffold, "scaffold_source", lambda folder: src / folder)
    return src


def test_copier_skips_caches_and_updates_unedited_copies(tmp_path, fake_source):
    dest = tmp_path / "dest"
    first = copy_scaffold(dest)
    assert sorted(first.copied) == ["api_pipelines/pipe.py", "example_data/sub/data.jsonl"]
    assert not (dest / "api_pipelines" / "cache").exists()
    assert not (dest / "api_pipelines" / "__pycache__").exists()

    # a new release changes a file the user never touched: it is updated, not kept
    (fake_source / "api_pipelines" / "pipe.py").write_text("print('v2')\n")
    second = copy_scaffold(dest)
    assert second.updated == ["api_pipelines/pipe.py"] and second.kept == []
    assert (dest / "api_pipelines" / "pipe.py").read_text() == "print('v2')\n"

    # once the user edits it, a newer release leaves it alone
    (dest / "api_pipelines" / "pipe.py").write_text("print('mine')\n")
    (fake_source / "api_pipelines" / "pipe.py").write_text("print('v3')\n")
    third = copy_scaffold(dest)
    assert third.kept == ["api_pipelines/pipe.py"]
    assert (dest / "api_pipelines" / "pipe.py").read_text() == "print('mine')\n"
    record = json.loads((dest / RECORD_FILE).read_text())
    assert set(record) == {"api_pipelines/pipe.py", "example_data/sub/data.jsonl"}


def test_source_checkout_falls_back_to_repo_folders():
    for folder in scaffold.SCAFFOLD_FOLDERS:
        source = scaffold_source(folder)
        assert source.is_dir()
        assert source.resolve() in {(REPO / folder).resolve(), (REPO / "dataflow" / "_scaffold" / folder).resolve()} or (
            "site-packages" in str(source)
        )


# -- lazy commands and errors ---------------------------------------------------------------------
def _group_with(commands: dict[str, str]) -> click.Group:
    @click.group(cls=LazyGroup, lazy_commands=commands)
    def cli() -> None:
        pass

    return cli


def test_lazy_commands_skip_missing_modules_and_map_user_errors(tmp_path, monkeypatch):
    module = tmp_path / "df_test_cmds.py"
    module.write_text(
        "import click\n"
        "from dataflow.core.errors import InputFileError, ServingError\n"
        "@click.command()\n"
        "def bad():\n"
        "    raise InputFileError('x.jsonl', 'invalid JSON', line=3)\n"
        "@click.command()\n"
        "def down():\n"
        "    raise ServingError('nothing listens at http://127.0.0.1:9')\n"
        "COMMANDS = {'hello': click.Command('hello', callback=lambda: click.echo('hi'))}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cli = _group_with({
        "bad": "df_test_cmds:bad", "down": "df_test_cmds:down", "hello": "df_test_cmds",
        "ghost": "df_no_such_module_xyz:cmd",
    })
    runner = CliRunner()
    listing = runner.invoke(cli, ["--help"])
    assert "bad" in listing.output and "hello" in listing.output and "ghost" not in listing.output
    assert runner.invoke(cli, ["hello"]).output == "hi\n"

    bad = runner.invoke(cli, ["bad"])
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: x.jsonl:3: invalid JSON"

    down = runner.invoke(cli, ["down"])
    assert down.exit_code == 1 and down.output.startswith("error: nothing listens")

    assert runner.invoke(cli, ["ghost"]).exit_code == 2  # unknown command, click's usage error


def test_main_registers_the_planned_subcommands():
    from dataflow.cli.main import LAZY_COMMANDS

    assert LAZY_COMMANDS["apigen"].startswith("dataflow.cli.apigen_commands:")
    assert LAZY_COMMANDS["fake-server"].startswith("dataflow.cli.fake_server_command:")
    assert "init" in main.list_commands(click.Context(main))


def test_lazy_command_found_by_name_and_broken_module_does_not_break_help(tmp_path, monkeypatch):
    (tmp_path / "df_named_cmds.py").write_text(
        "import click\n"
        "@click.command('do-it')\n"
        "def whatever():\n"
        "    click.echo('done')\n"
    )
    (tmp_path / "df_broken_cmds.py").write_text("raise ImportError('missing optional dependency foo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cli = _group_with({"do-it": "df_named_cmds:wrong_name", "broken": "df_broken_cmds:cmd"})
    runner = CliRunner()
    assert runner.invoke(cli, ["do-it"]).output == "done\n"
    listing = runner.invoke(cli, ["--help"])
    assert listing.exit_code == 0
    assert "do-it" in listing.output and "cannot load" in listing.output


def test_cli_import_is_light():
    code = "import sys, dataflow.cli.main; print(sorted(m for m in ('pandas', 'pyarrow', 'aiohttp') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"
