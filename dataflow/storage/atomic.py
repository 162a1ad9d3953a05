"""Atomic file writes: write a temp file in the target's folder, fsync it, then ``os.replace``.

A reader therefore sees either the old file or the complete new one, never a half-written file.
Temp files are named ``.<name>.<pid>.<random>.tmp`` so they are never mistaken for data; ones left
behind by a killed process are removed on the next write of the same target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

__all__ = ["HashingWriter", "atomic_writer", "atomic_write_bytes", "sha256_file", "is_temp_file"]

_TMP_SUFFIX = ".tmp"


class HashingWriter:
    """A binary file wrapper that counts and sha256-hashes every byte written through it."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._sha.update(data)
        self.size += len(data)
        return self._raw.write(data)

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return self._raw.closed

    def close(self) -> None:  # the atomic writer owns the real file; closing is a flush
        self._raw.flush()

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def is_temp_file(path: str | os.PathLike[str]) -> bool:
    """True for a temp file this module writes (never valid data)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


def _remove_stale_temps(target: Path) -> None:
    """Delete temp files for ``target`` whose writing process no longer exists."""
    prefix = f".{target.name}."
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_TMP_SUFFIX)):
            continue
        pid_text = name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":  # cannot tell cheaply: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: exists but is someone else's
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[HashingWriter]:
    """Yield a binary writer whose content replaces ``path`` atomically on success.

    On an exception the temp file is removed and ``path`` is left untouched. After the block,
    ``writer.size`` and ``writer.hexdigest()`` describe the bytes now at ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
    raw = open(tmp, "xb")
    try:
        writer = HashingWriter(raw)
        yield writer
        raw.flush()
        os.fsync(raw.fileno())
        raw.close()
        os.replace(tmp, target)
    except BaseException:
        raw.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; return its sha256."""
    with atomic_writer(path) as out:
        out.write(data)
    return out.hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, streamed."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            sha.update(block)
    return sha.hexdigest()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically; return its sha256."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    """Write one JSON value per line to ``path`` atomically; return the number of lines."""
    from .jsonio import dumps

    n = 0
    with atomic_writer(path) as out:
        for row in rows:
            out.write(dumps(row) + b"\n")
            n += 1
    return n
