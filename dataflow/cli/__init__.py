"""Command line interface (``dataflow ...``); see ``dataflow.cli.main``."""
