"""Table storage for pipelines: ``FileStorage`` and its formats (jsonl, json, csv, parquet).

Import ``FileStorage`` as the seed pipelines do, ``from dataflow.utils.storage import FileStorage``
(its documented path); it is defined in the private ``_file_storage`` module."""

from ._file_storage import FileStorage
from .formats import FORMATS

__all__ = ["FileStorage", "FORMATS"]
