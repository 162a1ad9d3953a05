"""Step manifests: the small JSON file beside each step file that says how it was made.

``<data file>.manifest.json`` holds what produced the step (operator, parameters, model, prompt
hash, input fingerprint, dataflow version), what is in it (columns, column kinds, counts, the
operator's own counters) and the data file's size and sha256. It is written atomically *after*
the data file, so a data file without a manifest, or whose bytes do not match it, is never
reused as a finished step.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, sha256_file

__all__ = [
    "IDENTITY_KEYS", "manifest_path", "rejected_path", "load_manifest", "write_manifest",
    "identity_matches", "data_matches", "well_formed",
]

#: keys that must be equal for a finished step to be reused
IDENTITY_KEYS: tuple[str, ...] = ("operator", "parameters", "model", "prompt_hash", "input_fingerprint")
#: keys of a wanted manifest that describe a result rather than what produced it
_RESULT_KEYS = frozenset({"counts", "llm", "created_at", "rows", "size", "sha256", "columns"})


def manifest_path(data_path: str | Path) -> Path:
    """``step3.jsonl`` -> ``step3.jsonl.manifest.json``."""
    data_path = Path(data_path)
    return data_path.with_name(data_path.name + ".manifest.json")


def rejected_path(data_path: str | Path) -> Path:
    """``step3.jsonl`` -> ``step3.rejected.jsonl`` (failed and filtered rows, always JSON Lines)."""
    data_path = Path(data_path)
    return data_path.with_name(data_path.stem + ".rejected.jsonl")


def load_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest at ``path`` (a manifest file), or None when it is missing, unreadable, nested
    too deeply for the JSON reader, or not shaped like a manifest (see ``well_formed``). None
    means "no manifest": the step file is read without it and never reused as a finished step."""
    try:
        value = json.loads(Path(path).read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    return value if well_formed(value) else None


_COUNT_KEYS = ("rows_in", "rows_out", "kept", "failed", "filtered")
#: ``{name: count}`` objects in ``counts`` (``counters``: what the operator counted with ``stat_update``)
_REASON_KEYS = ("failed_by_reason", "filtered_by_reason", "advisory_by_reason", "counters")
_COLUMN_KINDS = frozenset({"str", "str|null", "int", "float", "bool", "null", "json"})


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def well_formed(value: Any) -> bool:
    """Whether ``value`` has the types every reader of a manifest relies on: a JSON object whose
    ``counts`` (when present) holds non-negative integer counts and ``{reason: count}`` objects
    (also its ``counters``),
    ``size`` an integer, ``sha256`` a string, ``columns`` a list of strings and ``column_types``
    an object of known column kinds. Anything else (hand edits, another program's file, a hostile
    file) is treated as no manifest rather than trusted."""
    if not isinstance(value, dict):
        return False
    counts = value.get("counts")
    if counts is not None:
        if not isinstance(counts, dict):
            return False
        if not all(_count(counts[k]) for k in _COUNT_KEYS if k in counts):
            return False
        for key in _REASON_KEYS:
            by_reason = counts.get(key)
            if by_reason is not None and not (
                    isinstance(by_reason, dict) and all(_count(n) for n in by_reason.values())):
                return False
    if "size" in value and not _count(value["size"]):
        return False
    if "sha256" in value and not isinstance(value["sha256"], str):
        return False
    columns = value.get("columns")
    if columns is not None and not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
        return False
    kinds = value.get("column_types")
    if kinds is not None and not (
            isinstance(kinds, dict) and all(isinstance(k, str) and k in _COLUMN_KINDS for k in kinds.values())):
        return False
    return True


def normalize(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys sorted, odd values repr'd)."""
    return json.loads(json.dumps(value, default=repr, sort_keys=True))


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` atomically, stamping ``created_at`` (UTC) if absent."""
    manifest.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    data = json.dumps(manifest, indent=2, ensure_ascii=False, default=repr, sort_keys=False)
    atomic_write_bytes(path, (data + "\n").encode("utf-8"))


def identity_matches(previous: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """True when every identity entry of ``wanted`` equals the one in ``previous``."""
    try:
        for key in set(IDENTITY_KEYS) | (set(wanted) - _RESULT_KEYS):
            if normalize(wanted.get(key)) != previous.get(key):
                return False
    except RecursionError:  # a manifest value nested too deeply to compare: not ours
        return False
    return True


def data_matches(previous: dict[str, Any], data_path: str | Path) -> bool:
    """True when the data file exists and its size and sha256 are those the manifest recorded."""
    try:
        size = Path(data_path).stat().st_size
    except OSError:
        return False
    if size != previous.get("size"):
        return False
    return sha256_file(data_path) == previous.get("sha256")
