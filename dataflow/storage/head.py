"""``first_rows_file``: a pipeline's "use only the first N rows" option, with the input's errors.

The copy lives in the cache folder and is rewritten only when its bytes change, so a rerun sees
the same input fingerprint. Errors name the *original* file and line (never the copy).
"""

from __future__ import annotations

from pathlib import Path

from . import formats, jsonio
from .atomic import atomic_write_bytes

__all__ = ["first_rows_file"]


def first_rows_file(source: str | Path, n: int, cache_dir: str | Path) -> Path:
    """``source`` itself when ``n <= 0``; else a JSON Lines copy of its first ``n`` rows in
    ``cache_dir`` (for a ``.jsonl`` source, the first ``n`` non-blank lines byte for byte).
    Raises ``InputFileError`` (missing, not UTF-8, bad JSON at line k, no rows)."""
    from ..core.errors import InputFileError

    source = Path(source)
    if n <= 0:
        return source
    if not source.is_file():
        raise InputFileError(str(source), "input file not found" if not source.exists() else "is not a file",
                             hint="check the input path")
    fmt = formats.format_of(source)
    cache_dir = Path(cache_dir)
    if fmt == "jsonl":
        lines: list[bytes] = []
        numbers: list[int] = []
        with source.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    lines.append(line if line.endswith(b"\n") else line + b"\n")
                    numbers.append(number)
                    if len(lines) >= n:
                        break
        for number, line in zip(numbers, lines):  # same checks (and messages) as FileStorage
            _check_line(source, line, number)
        data = b"".join(lines)
        suffix = source.suffix
    else:
        rows = formats.read_table(source, fmt or "jsonl").rows[:n]
        data = b"".join(jsonio.dumps(row) + b"\n" for row in rows)
        suffix = ".jsonl"
    if not data:
        raise InputFileError(str(source), "has no rows", hint="the input file must hold at least one record")
    target = cache_dir / f"input_first_{n}_{source.stem}{suffix}"
    if not target.exists() or target.read_bytes() != data:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)
    return target


def _check_line(source: Path, line: bytes, number: int) -> None:
    """Raise the storage's ``InputFileError`` for one JSON Lines line, numbered as in ``source``."""
    from ..core.errors import InputFileError

    try:
        formats._read_jsonl(source, line)
    except InputFileError as exc:
        raise InputFileError(exc.path, exc.problem, line=number,
                             hint=str(exc).partition(" — ")[2]) from None
