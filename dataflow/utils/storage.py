"""Seed-compatible import path: ``from dataflow.utils.storage import FileStorage``."""

from ..storage import FileStorage

__all__ = ["FileStorage"]
