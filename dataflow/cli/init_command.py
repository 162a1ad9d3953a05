"""``dataflow init``: copy the example pipelines and data into the current folder."""

from __future__ import annotations

from pathlib import Path

import click

from .scaffold import SCAFFOLD_FOLDERS, copy_scaffold

__all__ = ["init"]


@click.command(short_help="Copy example pipelines and data into the current folder.")
@click.option("--force", is_flag=True, help="Overwrite files you have edited with the shipped versions.")
@click.option("--next/--no-next", "show_next", default=True, show_default=True,
              help="End with the commands that run a pipeline (--no-next when a script runs one itself).")
@click.option(
    "--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
    show_default=True, help="Folder to copy into.",
)
def init(force: bool, show_next: bool, directory: Path) -> None:
    """Copy api_pipelines/ and example_data/ into the current folder (offline, safe to rerun)."""
    result = copy_scaffold(directory, force=force)
    lines = (
        [("copied", p) for p in result.copied]
        + [("updated", p) for p in result.updated]
        + [("overwritten", p) for p in result.overwritten]
        + [("skipped", p) for p in result.identical]
        + [("kept", p) for p in result.kept]
    )
    notes = {"kept": "  (you modified it; --force replaces it)", "skipped": "  (identical)"}
    for action, path in lines:
        note = notes.get(action, "")
        click.echo(f"{action:<12}{path}{note}")
    where = directory.resolve()
    click.echo(
        f"{len(result.copied)} copied, {len(result.updated)} updated, "
        f"{len(result.overwritten)} overwritten, {len(result.identical)} skipped as identical, "
        f"{len(result.kept)} kept because modified by you -> {where}"
    )
    if show_next and (result.copied or result.updated or result.overwritten):
        folder = directory / SCAFFOLD_FOLDERS[0]
        click.echo(f"Next: cd {folder} && python func_call_synthesis.py (or apigen_synthesis.py); "
                   "outputs go to output/, each with a dataset card and report.html")
