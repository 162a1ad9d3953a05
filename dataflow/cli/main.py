"""The ``dataflow`` command line: ``dataflow --version``, ``dataflow init`` and the subcommands
other modules register.

Adding a subcommand: list it in ``LAZY_COMMANDS`` as ``name -> "module:attribute"``. The module
is imported only when that command runs (or ``--help`` lists it), and a module that does not exist
yet is skipped, so ``dataflow --version`` stays fast. A module may instead export a
``COMMANDS: dict[str, click.Command]``, or just define a click command whose ``name`` is the
subcommand's; then the attribute part may be omitted (``"module"``).

Errors a user can fix (``UserInputError``, a bad path argument, a file that cannot be opened)
print one line ``error: ...`` and exit with status 2; other deliberate dataflow errors
(``ServingError`` ...) print ``error: ...`` and exit 1 (see ``dataflow.cli.entry``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from ..version import __version__

__all__ = ["main", "LAZY_COMMANDS"]

#: subcommand name -> "module:attribute" (or "module" whose COMMANDS dict holds the name)
LAZY_COMMANDS: dict[str, str] = {
    "init": "dataflow.cli.init_command:init",
    "apigen": "dataflow.cli.apigen_commands:apigen",
    "split": "dataflow.cli.apigen_commands:split",
    "convert": "dataflow.cli.apigen_commands:convert",
    "fake-server": "dataflow.cli.fake_server_command:command",
    "run": "dataflow.cli.run_command:run",
    "report": "dataflow.cli.report_command:report",
}


class DataflowCLIError(click.ClickException):
    """A dataflow error shown as one ``error: ...`` line, without a traceback."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _find_command(module: Any, cmd_name: str, attribute: str) -> click.Command | None:
    """The command ``attribute`` of ``module``; else ``COMMANDS[cmd_name]``; else the module's
    click command whose name is ``cmd_name``."""
    command = getattr(module, attribute, None) if attribute else None
    if isinstance(command, click.Command):
        return command
    command = (getattr(module, "COMMANDS", None) or {}).get(cmd_name)
    if isinstance(command, click.Command):
        return command
    for value in vars(module).values():
        if isinstance(value, click.Command) and value.name == cmd_name:
            return value
    return None


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(n for n, target in self.lazy_commands.items() if _module_exists(target.split(":")[0]))
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy_commands:
            return command
        module_name, _, attribute = self.lazy_commands[cmd_name].partition(":")
        if not _module_exists(module_name):
            return None
        command = _find_command(importlib.import_module(module_name), cmd_name, attribute)
        if command is None:
            raise click.ClickException(f"{module_name} does not define the click command {cmd_name!r}")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but a subcommand that fails to load is listed as broken, not fatal."""
        rows = []
        for name in self.list_commands(ctx):
            try:
                command = self.get_command(ctx, name)
            except Exception as exc:  # noqa: BLE001 - help must still render
                rows.append((name, f"(cannot load: {exc})"))
                continue
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.BadParameter as exc:  # e.g. a path that does not exist: one line, not usage + error
            where = f" — see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
            raise DataflowCLIError(f"{exc.format_message()}{where}", exit_code=exc.exit_code) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from .entry import describe_error

            described = describe_error(exc)  # dataflow errors, and files that cannot be opened
            if described is None:
                raise
            raise DataflowCLIError(described[0], exit_code=described[1]) from exc


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="dataflow", message="%(prog)s %(version)s")
def main() -> None:
    """dataflow: synthesize and verify function-calling training data for LLMs."""


if __name__ == "__main__":  # pragma: no cover - `python -m dataflow.cli.main`
    sys.exit(main())
