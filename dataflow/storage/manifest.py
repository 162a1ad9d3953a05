"""Step manifests: the small JSON file beside each step file that says how it was made.

``<data file>.manifest.json`` holds what produced the step (operator, parameters, model, prompt
hash, input fingerprint, dataflow version), what is in it (columns, column kinds, counts) and the
data file's size and sha256. It is written atomically *after* the data file, so a data file
without a manifest, or whose bytes do not match it, is never reused as a finished step.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, sha256_file

__all__ = [
    "IDENTITY_KEYS", "manifest_path", "rejected_path", "load_manifest", "write_manifest",
    "identity_matches", "data_matches",
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
    """The manifest at ``path`` (a manifest file), or None when missing or unreadable."""
    try:
        value = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


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
    for key in set(IDENTITY_KEYS) | (set(wanted) - _RESULT_KEYS):
        if normalize(wanted.get(key)) != previous.get(key):
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
