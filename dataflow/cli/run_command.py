"""``dataflow run SCRIPT [--runner local|ray] [-- script args]``: run a pipeline script, optionally
with every operator step executed on Ray.

The script runs as ``__main__`` (as ``python SCRIPT`` would) inside the chosen runner's context,
so the very same pipeline class runs locally or on a cluster.
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
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
def run(script: str, runner: str, ray_address: str | None, num_actors: int, cpus_per_actor: float,
        batch_size: int, script_args: tuple[str, ...]) -> None:
    """Run a pipeline SCRIPT (e.g. api_pipelines/func_call_synthesis.py) with SCRIPT_ARGS."""
    from ..runners import LocalRunner

    if runner == "ray":
        from ..runners import RayRunner

        chosen = RayRunner(address=ray_address, num_actors=num_actors,
                           cpus_per_actor=cpus_per_actor, batch_size=batch_size)
    else:
        chosen = LocalRunner()
    path = os.path.abspath(script)
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [path, *script_args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        with chosen:
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
