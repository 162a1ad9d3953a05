"""Table storage for pipelines: ``FileStorage`` and its formats (jsonl, json, csv, parquet)."""

from .file_storage import FileStorage
from .formats import FORMATS

__all__ = ["FileStorage", "FORMATS"]
