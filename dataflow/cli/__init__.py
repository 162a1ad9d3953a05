"""Command line interface (``dataflow ...``); see ``dataflow.cli.main``.

``run_pipeline_main(main)`` (from ``dataflow.cli.entry``) is the entry point of pipeline scripts:
user errors end the run with one ``error: ...`` line instead of a traceback.
"""

from .entry import run_pipeline_main

__all__ = ["run_pipeline_main"]
