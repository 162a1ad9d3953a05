"""Copy the shipped example pipelines and data into a user's folder (what ``dataflow init`` does).

Offline and idempotent. A record of what was copied (``.dataflow-init.json``: path -> sha256)
tells a file the user edited (kept, unless ``force``) from an old copy of ours that a newer
release may update. Files are written atomically. Nothing is written through or over a symbolic
link below the destination folder (``api_pipelines -> elsewhere``): such a link is a
``ConfigError`` naming it, raised before any file is written. The destination itself may be a link.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..storage.atomic import atomic_write_bytes

__all__ = ["SCAFFOLD_FOLDERS", "RECORD_FILE", "InitResult", "scaffold_source", "copy_scaffold"]

SCAFFOLD_FOLDERS: tuple[str, ...] = ("api_pipelines", "example_data")
RECORD_FILE = ".dataflow-init.json"
_SKIP_DIRS = frozenset({"__pycache__", "cache", "output", ".ipynb_checkpoints", ".pytest_cache"})  # run artefacts
_SKIP_SUFFIXES = (".pyc", ".pyo")
_SKIP_FILES = frozenset({".DS_Store", "Thumbs.db"})


@dataclass
class InitResult:
    """What ``copy_scaffold`` did, by relative path."""

    copied: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)


def scaffold_source(folder: str) -> Path:
    """Where the shipped copy of ``folder`` lives: inside the installed package
    (``dataflow/_scaffold/<folder>``), else the repository top level (source checkout)."""
    from ..core.errors import ConfigError

    package_dir = Path(__file__).resolve().parent.parent  # .../dataflow
    candidates = [package_dir / "_scaffold" / folder]
    try:  # an editable install may map the package elsewhere
        spec = importlib.util.find_spec(f"dataflow._scaffold.{folder}")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) for p in spec.submodule_search_locations)
    candidates.append(package_dir.parent / folder)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"the packaged {folder}/ folder is missing (looked in {', '.join(map(str, candidates))}); "
        "reinstall dataflow-fc"
    )


def _iter_files(root: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(_SKIP_SUFFIXES) or name in _SKIP_FILES:
                continue
            yield Path(current) / name


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_record(path: Path) -> dict[str, str]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _links_on_the_way(dest: Path, rels: list[str]) -> list[tuple[str, str]]:
    """Every symbolic link among the folders and files below ``dest`` that writing ``rels``
    would go through or replace, as ``(relative path, link target)``."""
    seen: dict[str, str] = {}
    for rel in rels:
        parts = Path(rel).parts
        for depth in range(1, len(parts) + 1):
            partial = Path(*parts[:depth]).as_posix()
            if partial in seen:
                break
            path = dest / partial
            if path.is_symlink():
                try:
                    seen[partial] = os.readlink(path)
                except OSError:
                    seen[partial] = "?"
                break
            if not path.is_dir():
                break
    return [(rel, target) for rel, target in seen.items()]


def copy_scaffold(dest: str | os.PathLike[str], force: bool = False) -> InitResult:
    """Copy ``api_pipelines/`` and ``example_data/`` into ``dest``.

    A missing file is copied; an identical one is skipped; one that differs is replaced only if
    it is an unedited earlier copy of ours or ``force`` is set, else it is kept.
    """
    from ..core.errors import ConfigError

    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {dest}: {exc.strerror or exc}") from None
    record_path = dest / RECORD_FILE
    plan = [(source, (Path(folder) / source.relative_to(root)).as_posix())
            for folder in SCAFFOLD_FOLDERS for root in [scaffold_source(folder)] for source in _iter_files(root)]
    links = _links_on_the_way(dest, [RECORD_FILE, *(rel for _, rel in plan)])
    if links:
        shown = ", ".join(f"{rel} -> {target}" for rel, target in links[:5]) + (" ..." if len(links) > 5 else "")
        raise ConfigError(
            f"dataflow init will not write through symbolic links in {dest.absolute()} ({shown}) — remove the link(s), "
            "or run dataflow init in the folder the link points to"
        )
    record = _load_record(record_path)
    result = InitResult()
    for source, rel in plan:
        target = dest / rel
        data = source.read_bytes()
        digest = _sha(data)
        if target.is_file():
            current = _sha(target.read_bytes())
            if current == digest:
                result.identical.append(rel)
                record[rel] = digest
                continue
            if force:
                result.overwritten.append(rel)
            elif record.get(rel) == current:  # our earlier copy, not edited: update it
                result.updated.append(rel)
            else:
                result.kept.append(rel)
                continue
        elif target.exists():  # e.g. a folder where a file should go
            result.kept.append(rel)
            continue
        else:
            result.copied.append(rel)
        atomic_write_bytes(target, data)
        os.chmod(target, (source.stat().st_mode & 0o777) | 0o200)
        record[rel] = digest
    atomic_write_bytes(record_path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return result
