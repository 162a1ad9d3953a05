"""``dataflow run [OPTIONS] SCRIPT [OPTIONS] [-- SCRIPT_ARGS]``: run a pipeline script, optionally
with every operator step executed on Ray.

The script runs as ``__main__`` (as ``python SCRIPT`` would) inside the chosen runner's context,
so the very same pipeline class runs locally or on a cluster. ``dataflow run``'s own options
(``--runner``, ``--num-actors`` ...) may stand before or after SCRIPT; everything after ``--`` goes
to the script. Without ``--``, the arguments after SCRIPT that are not ``dataflow run`` options go to
the script. On Ray, one line on stderr says which steps ran there.

``--check`` is the pre-flight check (``dataflow.core.preflight``): the script runs with every
operator step recorded instead of run (no LLM call, no step file), then a table of the steps and
every column a step reads that would not exist is printed; the exit status is 1 when any is
missing. Reading a recorded step's rows ends the script there (a check has no rows).
"""

from __future__ import annotations

import os
import runpy
import sys

import click


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.option("--runner", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where each step's rows are processed.")
@click.option("--ray-address", default=None,
              help="Existing Ray cluster ('auto' or 'ray://HOST:10001'); default: start a local Ray.")
@click.option("--num-actors", type=int, default=2, show_default=True, help="Ray actors per step.")
@click.option("--cpus-per-actor", type=float, default=0.25, show_default=True,
              help="CPUs each (I/O-bound) LLM actor reserves.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Rows per Ray batch.")
@click.option("--check", is_flag=True, default=False,
              help="Pre-flight check: record every step instead of running it (no LLM call, no step file), "
                   "print each step's missing columns, exit 1 if any.")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def run(script: str, runner: str, ray_address: str | None, num_actors: int, cpus_per_actor: float,
        batch_size: int, check: bool, script_args: tuple[str, ...]) -> None:
    """Run a pipeline SCRIPT (e.g. api_pipelines/func_call_synthesis.py) with SCRIPT_ARGS.

    Options may go before or after SCRIPT; arguments after `--` go to the script:
    dataflow run api_pipelines/func_call_synthesis.py --runner ray --num-actors 4 -- --rows 100

    Check every step's columns first, without a model: dataflow run --check SCRIPT"""
    from ..runners import LocalRunner

    ctx = click.get_current_context()
    given, script_args = _runner_options_after_script(ctx, script_args)
    runner = given.get("runner", runner)
    ray_address = given.get("ray_address", ray_address)
    num_actors = given.get("num_actors", num_actors)
    cpus_per_actor = given.get("cpus_per_actor", cpus_per_actor)
    batch_size = given.get("batch_size", batch_size)
    if given.get("check", check):
        _check(script, script_args)
        return

    if runner == "ray":
        from ..runners import RayRunner

        chosen = RayRunner(address=ray_address, num_actors=num_actors,
                           cpus_per_actor=cpus_per_actor, batch_size=batch_size)
    else:
        chosen = LocalRunner()
    try:
        with chosen:
            _run_script(script, script_args)
    finally:
        runs = getattr(chosen, "runs", None)
        if runs is not None:
            steps = ", ".join(f"{r['operator']} ({r['rows']} rows, {r['batches']} batches, {r['actors']} actors)"
                              for r in runs)
            click.echo(f"dataflow run: {len(runs)} steps ran on Ray" + (f": {steps}" if steps else
                       " (every step was reused from the cache)"), err=True)


def _check(script: str, script_args: list[str]) -> None:
    """Run ``script`` under a pre-flight check (``check_pipeline``), print its table; exit 1 when
    a column is missing."""
    from ..core.preflight import check_pipeline

    if check_pipeline(lambda: _run_script(script, script_args)):
        raise click.exceptions.Exit(1)


def _run_script(script: str, script_args: list[str]) -> None:
    """Run ``script`` as ``__main__`` with ``script_args``; a ``SystemExit`` with status 0 is a
    normal end."""
    path = os.path.abspath(script)
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [path, *script_args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    finally:
        sys.argv, sys.path[:] = old_argv, old_path


def _runner_options_after_script(ctx: click.Context, args: tuple[str, ...]) -> tuple[dict, list[str]]:
    """``({parameter: value}, script args)``: ``dataflow run``'s options found after SCRIPT (up to
    ``--``, which is dropped) taken out of ``args``. An unknown option before a ``--`` is a usage
    error; an option given both before and after SCRIPT too."""
    options = {opt: param for param in ctx.command.params if isinstance(param, click.Option) for opt in param.opts}
    if "--" in args:
        cut = args.index("--")
        head, tail = list(args[:cut]), list(args[cut + 1:])
    else:
        head, tail = list(args), []
    given: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(head):
        token = head[i]
        name, _, inline = token.partition("=")
        param = options.get(name) if token.startswith("--") else None
        if param is None:
            if "--" in args and token.startswith("-"):
                raise click.UsageError(f"no such option {token!r} for dataflow run; the script's own options go "
                                       "after '--'", ctx=ctx)
            rest.append(token)
            i += 1
            continue
        if param.is_flag:
            value = True
            i += 1
        elif inline or "=" in token:
            value = inline
            i += 1
        elif i + 1 < len(head):
            value = head[i + 1]
            i += 2
        else:
            raise click.UsageError(f"option {name} needs a value", ctx=ctx)
        if ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{name} is given both before and after SCRIPT", ctx=ctx)
        given[param.name] = value if param.is_flag else param.type.convert(value, param, ctx)
    return given, rest + tail
