"""Runners: where an operator's row logic executes. The same pipelines and operators run under
any of them; step files, manifests and the LLM response cache are shared, so one runner resumes
another's work.

- ``LocalRunner`` (the default, also without any runner): the batch function runs in this process.
- ``RayRunner`` (``pip install "dataflow-fc[ray]"``): the batch function runs on a pool of Ray
  actors over the step's rows with Ray Data; this process still reads and writes the step files.

    from dataflow.runners import RayRunner

    with RayRunner(num_actors=4):
        pipeline.run()

``ray`` is imported only when a ``RayRunner`` starts.
"""

from __future__ import annotations

from .base import LocalRunner, Runner

__all__ = ["Runner", "LocalRunner", "RayRunner"]


def __getattr__(name: str):
    if name == "RayRunner":
        from .ray_runner import RayRunner

        return RayRunner
    raise AttributeError(f"module 'dataflow.runners' has no attribute {name!r}")
