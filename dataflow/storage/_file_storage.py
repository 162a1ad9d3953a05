"""``FileStorage``: the step-by-step table store a pipeline reads from and writes to.

Step 0 reads the user's ``first_entry_file_name``; the operator run at step k reads the file step
k wrote before it and writes ``{cache_path}/{prefix}_step{k+1}.{cache_type}`` (``{prefix}{k+1}`` when
the prefix already ends in "step", as the seed's ``dataflow_cache_step`` does; a cache written
with the older doubled name, ``dataflow_cache_step_step1.jsonl``, is still read and resumed).
Each manifest names the pipeline script that wrote it; a step file written by another pipeline
is never replaced: ``write`` raises ``ConfigError`` saying whose it is. Under a pre-flight check
(``dataflow.core.preflight``) a step file the check only recorded has the columns the check says,
and reading its rows raises ``CheckComplete``. Every write is
atomic and leaves a manifest beside the data (see ``manifest.py``), which ``find_reusable`` uses
to skip a step that already finished with the same operator, settings and input.

Usage (as in the seed pipelines)::

    storage = FileStorage("data.jsonl", cache_path="./cache", cache_type="jsonl")
    op.run(storage.step(), input_chat_key="chat")   # reads data.jsonl, writes step1
    op2.run(storage.step(), input_x_key="x")        # reads step1, writes step2
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import Any, Literal

from . import formats, jsonio
from .atomic import atomic_writer, sha256_file
from .manifest import (
    data_matches, identity_matches, load_manifest, manifest_path, rejected_path, write_manifest,
)

__all__ = ["FileStorage"]

log = logging.getLogger("dataflow.storage")

# sha256 of file contents, keyed by (absolute path, inode, size, mtime_ns, ctime_ns)
_FINGERPRINTS: dict[tuple, str] = {}
# input files already reported as not matching their manifest (warn once each)
_WARNED: set[str] = set()


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _remember_fingerprint(path: Path, digest: str) -> None:
    if len(_FINGERPRINTS) > 4096:
        _FINGERPRINTS.clear()
    _FINGERPRINTS[_stat_key(path)] = digest


class FileStorage:
    """A folder of step files; ``step()`` hands each operator its own view.

    Args:
        first_entry_file_name: the input table (``.jsonl``, ``.json``, ``.csv`` or ``.parquet``).
        cache_path: folder for step files, manifests, rejected rows and the LLM response cache.
        file_name_prefix: step files are ``{prefix}_step{k}.{cache_type}`` (``{prefix}{k}`` for a
            prefix ending in "step").
        cache_type: format of step files: ``jsonl``, ``json``, ``csv`` or ``parquet``.
        pipeline: the name of the pipeline writing here (default: the file name of the script
            run as ``__main__``); recorded in each manifest, and a step file another pipeline
            wrote is not replaced.
    """

    def __init__(
        self,
        first_entry_file_name: str,
        cache_path: str = "./cache",
        file_name_prefix: str = "dataflow_cache_step",
        cache_type: str = "jsonl",
        pipeline: str | None = None,
    ):
        from ..core.errors import ConfigError

        if cache_type not in formats.FORMATS:
            raise ConfigError(
                f"FileStorage: cache_type={cache_type!r} is not supported — use one of: {', '.join(formats.FORMATS)}"
            )
        first_format = formats.format_of(first_entry_file_name)
        if first_format is None:
            raise ConfigError(
                f"first_entry_file_name={str(first_entry_file_name)!r} has an unknown extension; "
                f"use one of: {', '.join(formats.EXTENSIONS)}"
            )
        if not file_name_prefix or os.sep in file_name_prefix or "/" in file_name_prefix:
            raise ConfigError(f"file_name_prefix={file_name_prefix!r} must be a plain file name prefix")
        self.first_entry_file_name = str(first_entry_file_name)
        self.cache_path = str(cache_path)
        self.file_name_prefix = file_name_prefix
        self.cache_type = cache_type
        self.pipeline = pipeline if pipeline is not None else _main_script()
        self.operator_step = -1
        #: RunReports of every operator run on this storage (shared by all ``step()`` views)
        self.reports: list = []
        self._first_format = first_format
        self._loaded: tuple[tuple, formats.Table] | None = None

    def __repr__(self) -> str:
        return (
            f"FileStorage({self.first_entry_file_name!r}, cache_path={self.cache_path!r}, "
            f"cache_type={self.cache_type!r}, operator_step={self.operator_step})"
        )

    # -- steps -----------------------------------------------------------------------------
    def step(self) -> "FileStorage":
        """Advance to the next step and return a view of this storage at that step."""
        self.operator_step += 1
        view = copy.copy(self)
        view._loaded = None
        return view

    def _step_file(self, k: int) -> str:
        legacy = os.path.join(self.cache_path, f"{self.file_name_prefix}_step{k}.{self.cache_type}")
        if not self.file_name_prefix.endswith("step"):
            return legacy
        path = os.path.join(self.cache_path, f"{self.file_name_prefix}{k}.{self.cache_type}")
        if not os.path.exists(path) and os.path.exists(legacy):
            return legacy  # a cache written before the names lost their second "step"
        return path

    def _require_step(self) -> None:
        if self.operator_step < 0:
            from ..core.errors import ConfigError

            raise ConfigError("call storage.step() before reading or writing (each operator gets storage.step())")

    def input_path(self) -> str:
        """The file this step reads: the first entry at step 0, else the previous step's file."""
        self._require_step()
        if self.operator_step == 0:
            return self.first_entry_file_name
        return self._step_file(self.operator_step)

    def output_path(self) -> str:
        """The file this step writes."""
        self._require_step()
        return self._step_file(self.operator_step + 1)

    # -- reading ---------------------------------------------------------------------------
    def _input_format(self) -> str:
        return self._first_format if self.operator_step == 0 else self.cache_type

    def _missing_input(self, path: Path) -> Exception:
        from ..core.errors import InputFileError

        if self.operator_step == 0:
            return InputFileError(
                str(path), "input file not found",
                hint=f"check first_entry_file_name; relative paths start from {os.getcwd()}",
            )
        return InputFileError(
            str(path), f"step {self.operator_step} output not found",
            hint="run the pipeline's earlier steps first; each operator must get its own storage.step()",
        )

    def _input_manifest(self) -> dict[str, Any] | None:
        """The manifest of this step's input file when it matches the file's bytes."""
        if self.operator_step == 0:
            return None
        previous = load_manifest(manifest_path(self.input_path()))
        if previous is None:
            return None
        fingerprint = self.input_fingerprint()
        if previous.get("sha256") != fingerprint:
            if fingerprint not in _WARNED:
                _WARNED.add(fingerprint)
                log.warning("%s does not match its manifest (edited by hand?); reading it without it", self.input_path())
            return None
        return previous

    def _load(self) -> formats.Table:
        """Read this step's whole input (cached until the file changes or ``read()`` takes it)."""
        path = Path(self.input_path())
        if _checked_columns(path) is not None:
            from ..core.preflight import CheckComplete

            raise CheckComplete(f"{path} is a step the pre-flight check only recorded: it has no rows")
        if not path.is_file():
            raise self._missing_input(path)
        key = _stat_key(path)
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1]
        manifest = self._input_manifest()
        table = formats.read_table(path, self._input_format(), (manifest or {}).get("column_types"))
        if manifest is not None:  # the manifest's columns first (a zero-row table keeps them)
            table.columns = list(dict.fromkeys([*(manifest.get("columns") or []), *table.columns]))
        if self.operator_step == 0 and not table.rows:
            from ..core.errors import InputFileError

            raise InputFileError(
                str(path), "has no rows", hint="the first entry file must hold at least one record"
            )
        self._loaded = (key, table)
        return table

    def read_columns(self) -> list[str]:
        """Column names of this step's input (from the manifest when it has one; under a
        pre-flight check, those the check says an earlier recorded step writes)."""
        checked = _checked_columns(self.input_path())
        if checked is not None:
            return checked
        if self.operator_step > 0:
            path = Path(self.input_path())
            if not path.is_file():
                raise self._missing_input(path)
            manifest = self._input_manifest()
            if manifest is not None and isinstance(manifest.get("columns"), list):
                return list(manifest["columns"])
        return list(self._load().columns)

    def read(self, output_type: Literal["dataframe", "dict"] = "dataframe") -> Any:
        """This step's input as a pandas DataFrame or a ``list[dict]`` of JSON-native rows
        (each row as in the file: nested lists/dicts kept, no NaN for absent keys)."""
        if output_type not in ("dataframe", "dict"):
            from ..core.errors import ConfigError

            raise ConfigError(f"output_type={output_type!r} is not supported; use 'dataframe' or 'dict'")
        table = self._load()
        self._loaded = None  # the caller owns the rows now
        if output_type == "dict":
            return table.rows
        import pandas as pd

        return pd.DataFrame([[row.get(c) for c in table.columns] for row in table.rows], columns=table.columns)

    def read_output(self, output_type: Literal["dataframe", "dict"] = "dataframe") -> Any:
        """The table this step wrote (on a pipeline's storage: its last step's output), read as
        ``read`` reads, without advancing the storage."""
        self._require_step()
        written = copy.copy(self)
        written.operator_step += 1
        written._loaded = None
        return written.read(output_type)

    def input_fingerprint(self) -> str:
        """sha256 of this step's input file bytes (cached while the file is unchanged)."""
        path = Path(self.input_path())
        if not path.is_file():
            raise self._missing_input(path)
        key = _stat_key(path)
        digest = _FINGERPRINTS.get(key)
        if digest is None:
            digest = sha256_file(path)
            _remember_fingerprint(path, digest)
        return digest

    # -- writing ---------------------------------------------------------------------------
    def write(
        self,
        data: Any,
        *,
        columns: list[str] | None = None,
        manifest: dict[str, Any] | None = None,
        rejected: list[dict] | None = None,
    ) -> str:
        """Write this step's output atomically, then its rejected rows, then its manifest.

        ``data`` is a DataFrame or a ``list[dict]``; ``columns`` fixes the column list (so a
        zero-row table still has columns). Returns the path written.
        """
        from ..version import __version__

        rows, columns = _to_rows(data, columns)
        out = Path(self.output_path())
        out.parent.mkdir(parents=True, exist_ok=True)
        mpath = manifest_path(out)
        self._refuse_another_pipelines_file(out, mpath)
        try:  # the old manifest must not describe the new file, even if we crash midway
            mpath.unlink()
        except FileNotFoundError:
            pass
        with atomic_writer(out) as writer:
            details = formats.write_table(writer, rows, columns, self.cache_type)
        _remember_fingerprint(out, writer.hexdigest())

        rpath = rejected_path(out)
        if rejected:
            with atomic_writer(rpath) as rwriter:
                formats.write_table(rwriter, list(rejected), formats.union_columns(rejected), "jsonl")
        else:
            try:
                rpath.unlink()
            except FileNotFoundError:
                pass

        full: dict[str, Any] = {
            "operator": None, "parameters": None, "model": None, "prompt_hash": None,
            "input_fingerprint": None,
        }
        full.update(manifest or {})
        full.setdefault("counts", {"rows_out": len(rows)})
        if self.pipeline:
            full["pipeline"] = self.pipeline
        full.update(
            {
                "dataflow_version": __version__,
                "step": self.operator_step + 1,
                "input_file": self.input_path(),
                "file": out.name,
                "format": self.cache_type,
                "columns": columns,
                "column_types": details.get("column_types"),
                "rows": len(rows),
                "size": writer.size,
                "sha256": writer.hexdigest(),
                "rejected_file": rpath.name if rejected else None,
                "rejected_rows": len(rejected or []),
            }
        )
        write_manifest(mpath, full)
        return str(out)

    def _refuse_another_pipelines_file(self, out: Path, mpath: Path) -> None:
        """``ConfigError`` when ``out`` exists and its manifest says another pipeline wrote it."""
        if not self.pipeline or not out.exists():
            return
        previous = load_manifest(mpath)
        owner = previous.get("pipeline") if previous else None
        if isinstance(owner, str) and owner and owner != self.pipeline:
            from ..core.errors import ConfigError

            raise ConfigError(
                f"{out} holds step {self.operator_step + 1} of pipeline {owner!r}; {self.pipeline!r} would replace "
                f"it. Give each pipeline its own cache folder (cache_path=..., or --cache-dir), or delete that "
                f"pipeline's step files if you no longer need them"
            )

    def find_reusable(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """The previous manifest of this step's output if that output can be reused as is.

        Reusable means: the output file and its manifest exist, the file's size and sha256
        match the manifest (so a half-written or replaced file never counts), the manifest was
        made by the same operator, parameters, model, prompt and input with this dataflow
        version, and no row failed.
        """
        from ..version import __version__

        out = Path(self.output_path())
        previous = load_manifest(manifest_path(out))
        if previous is None:
            return None
        if previous.get("dataflow_version") != __version__ or previous.get("format") != self.cache_type:
            return None
        if not identity_matches(previous, manifest):
            return None
        if (previous.get("counts") or {}).get("failed", 0):
            return None
        if not data_matches(previous, out):
            return None
        return previous


def _to_rows(data: Any, columns: list[str] | None) -> tuple[list[dict], list[str]]:
    """Rows (JSON-native, NaN-free at the top level) and their column list from ``data``."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        names = [str(c) for c in data.columns]
        records = data.to_dict(orient="records")
        rows = [{str(k): _clean(v) for k, v in rec.items()} for rec in records]
        cols = list(columns) if columns is not None else names
        return rows, formats.union_columns(rows, cols)
    if data is None:
        data = []
    if not isinstance(data, list):
        data = list(data)
    for index, row in enumerate(data):
        if not isinstance(row, dict):
            raise TypeError(f"write() expects a DataFrame or a list of dicts; item {index} is {type(row).__name__}")
    rows = [_clean_row(r) for r in data]
    return rows, formats.union_columns(rows, columns or [])


_PLAIN = (str, int, bool, list, dict, type(None))


def _clean_row(row: dict) -> dict:
    """``row`` itself when every top-level value is plain JSON, else a cleaned copy."""
    for value in row.values():
        kind = type(value)
        if kind is float:
            if value != value:
                break
        elif kind not in _PLAIN:
            break
    else:
        return row
    return {str(k): _clean(v) for k, v in row.items()}


def _clean(value: Any) -> Any:
    """A JSON-native version of one cell (NaN/NA -> None, numpy -> Python, arrays -> lists)."""
    if value is None or type(value) in (str, int, bool):
        return value
    return jsonio.to_native(value)


def _checked_columns(path: str | Path) -> list[str] | None:
    """The columns of ``path`` when the active pre-flight check records the step that writes it."""
    from ..core.preflight import active_check

    check = active_check()
    return check.columns_of(str(path)) if check is not None else None


def _main_script() -> str | None:
    """The file name of the script running as ``__main__`` (``python x.py``, ``dataflow run x.py``),
    or None (an interactive session)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return os.path.basename(path) if isinstance(path, str) and path else None
