"""``dataflow report FOLDER``: one self-contained HTML report of an export folder."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["report"]


@click.command("report", short_help="Write an offline HTML report of an export folder.")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write it (default: FOLDER/report.html).")
@click.option("--examples", type=int, default=3, show_default=True, help="Example conversations shown.")
def report(folder: Path, out: Path | None, examples: int) -> None:
    """Write FOLDER/report.html: the funnel per step with rejection reasons, calls, turns, tools,
    argument types, message lengths, quality-check flags and example conversations. FOLDER is
    an export folder a pipeline wrote (it holds run_summary.json). Opens offline."""
    try:
        from ..exports.html_report import write_report
        path = write_report(folder, out, examples)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"report: {path}")
