"""``python -m dataflow.cli`` runs the ``dataflow`` command."""

from .main import main

main(prog_name="dataflow")
