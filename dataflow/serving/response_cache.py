"""Content-addressed cache of LLM responses: request hash -> reply text and token usage.

The key is the sha256 of the canonical JSON of what determines a reply (model, messages,
temperature, extra body parameters, JSON schema) and nothing else: no URL, no API key. Canonical
means sorted keys, except the order of a JSON schema's ``properties``, which the model follows
when it writes the reply (so a reordered schema is a new request). Only successful replies are
stored, with their ``finish_reason`` (a reply cut at max_tokens stays known as cut). Each reply is committed as it arrives (SQLite in WAL mode,
``synchronous=NORMAL``: a killed process loses nothing committed), so a crash mid-batch loses no
finished request and a rerun of unchanged requests makes no HTTP call.

The cache file is never opened through a link: a symbolic link (dangling or not) or a hard link at
its name, or a link at one of SQLite's side files (``-wal``, ``-shm``, ``-journal``), is refused,
as is a database with tables that are not ours. A file that is not a usable SQLite database is a
``ConfigError`` naming it (delete it: it only holds cached replies), never a ``DatabaseError``.

(``# pragma: no mutate`` marks the lines that hold SQL, whose keywords are case-insensitive: a
mutation tester's case changes there cannot change behaviour.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

CACHE_FILE_NAME = "llm_responses.sqlite"
_SCHEMA_VERSION = 1
_COLUMNS = ("key", "model", "response", "created")
_SIDE_FILES = ("-wal", "-shm", "-journal")


def request_key(
    model: str,
    messages: Sequence[dict],
    temperature: float | None,
    extra_body: dict | None = None,
    json_schema: dict | None = None,
) -> str:
    """The content address of one request (hex sha256). Dict keys are sorted, but the property
    order of ``json_schema`` (at every level) is kept: it is part of what the model sees."""
    canonical = json.dumps(
        {"v": _SCHEMA_VERSION, "model": model, "messages": messages, "temperature": temperature,
         "extra_body": extra_body or {}, "json_schema": _ordered_properties(json_schema)},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _ordered_properties(node: Any) -> Any:
    """``node`` with every schema ``properties`` mapping turned into a list of ``[name, schema]``
    pairs, so that sorting keys for the hash cannot erase the property order."""
    if isinstance(node, dict):
        return {key: ([[name, _ordered_properties(sub)] for name, sub in value.items()]
                      if key == "properties" and isinstance(value, dict) else _ordered_properties(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [_ordered_properties(value) for value in node]
    return node


@dataclass(frozen=True)
class CachedResponse:
    """A stored reply."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


class ResponseCache:
    """SQLite-backed ``key -> CachedResponse`` store, safe to use from several threads.

    ``put`` commits immediately; ``put_many`` commits a group in one transaction (what the HTTP
    client does once per event-loop turn, so replies that arrive together share one commit).
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, CACHE_FILE_NAME)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            os.makedirs(self.directory, exist_ok=True)
            fd, identity = self._open_regular_file()
            # close our descriptor before SQLite opens the file: closing any descriptor of a file
            # drops every POSIX lock this process holds on it, SQLite's included, and other
            # processes writing the same WAL database would then corrupt it
            os.close(fd)
            conn = None
            try:
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                if _identity(os.lstat(self.path)) != identity:  # replaced between our check and SQLite's open
                    raise self._unusable("it was replaced while being opened")
                tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}  # pragma: no mutate
                if tables - {"responses"}:
                    raise self._unusable(f"it holds other tables ({', '.join(sorted(tables - {'responses'}))[:200]}),"
                                         " so it belongs to another program")
                if "responses" in tables:
                    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(responses)"))  # pragma: no mutate
                    if columns != _COLUMNS:
                        raise self._unusable("its responses table is not the one dataflow writes")
                conn.execute("PRAGMA journal_mode=WAL")  # pragma: no mutate
                conn.execute("PRAGMA synchronous=NORMAL")  # pragma: no mutate
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS responses ("  # pragma: no mutate
                    " key TEXT PRIMARY KEY, model TEXT, response TEXT NOT NULL, created REAL)"  # pragma: no mutate
                )
            except BaseException as exc:
                if conn is not None:
                    conn.close()
                if isinstance(exc, sqlite3.DatabaseError):
                    raise self._unusable(str(exc)) from None
                raise
            self._conn = conn
        return self._conn

    def _open_regular_file(self) -> tuple[int, tuple[int, int]]:
        """Create or open the cache file without following a link (``O_NOFOLLOW``); refuse
        anything but a regular file with one name, and links at SQLite's side files. Returns
        the open descriptor (the caller closes it before SQLite opens the file by name, then checks
        the identity again) and the file's identity."""
        for suffix in _SIDE_FILES:
            side = self.path + suffix
            if os.path.islink(side):
                raise self._unusable(f"{side} is a symbolic link; remove it", link=True)
        if os.path.islink(self.path):  # also where O_NOFOLLOW does not exist
            raise self._unusable("it is a symbolic link" + _link_target(self.path), link=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._unusable("it is a symbolic link" + _link_target(self.path), link=True) from None
            raise self._unusable(exc.strerror or str(exc)) from None
        info = os.fstat(fd)
        problem = ("it is not a regular file" if not stat.S_ISREG(info.st_mode)
                   else f"it is a hard link ({info.st_nlink} names for one file)" if info.st_nlink > 1 else "")
        if problem:
            os.close(fd)
            raise self._unusable(problem, link=True)
        return fd, _identity(info)

    def _unusable(self, reason: str, link: bool = False) -> Exception:
        from ..core.errors import ConfigError

        hint = ("remove the link; the response cache is only ever a regular file of the cache folder"
                if link else "if the file is damaged or not dataflow's, delete or move it (it only holds "
                "cached LLM replies) and rerun")
        return ConfigError(f"cannot use the LLM response cache {self.path}: {reason} — {hint}")

    @contextlib.contextmanager
    def _database(self):
        """The connection, under the lock; a database error names the file (``ConfigError``)."""
        with self._lock:
            conn = self._connect()
            try:
                yield conn
            except sqlite3.DatabaseError as exc:
                raise self._unusable(str(exc)) from None

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        """The cached replies among ``keys``."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedResponse] = {}
        if not wanted:
            return found
        with self._database() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for key, raw in conn.execute(
                    f"SELECT key, response FROM responses WHERE key IN ({marks})", chunk  # pragma: no mutate
                ):
                    try:
                        found[key] = _decode(raw)
                    except (ValueError, TypeError, KeyError):
                        continue  # an unreadable entry is simply a miss
        return found

    def get(self, key: str) -> CachedResponse | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, response: CachedResponse, model: str = "") -> None:
        self.put_many([(key, response, model)])

    def put_many(self, items: Sequence[tuple[str, CachedResponse, str]]) -> None:
        """Store successful replies, committed before returning."""
        if not items:
            return
        now = time.time()
        rows = [(key, model, _encode(resp), now) for key, resp, model in items]
        with self._database() as conn:
            conn.execute("BEGIN")  # pragma: no mutate
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO responses (key, model, response, created) VALUES (?, ?, ?, ?)",  # pragma: no mutate
                    rows,
                )
            except BaseException:
                conn.execute("ROLLBACK")  # pragma: no mutate
                raise
            conn.execute("COMMIT")  # pragma: no mutate

    def __len__(self) -> int:
        with self._database() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])  # pragma: no mutate

    def clear(self) -> None:
        with self._database() as conn:
            conn.execute("DELETE FROM responses")  # pragma: no mutate

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __getstate__(self) -> dict:
        # a connection and a lock cannot cross processes: a copy (e.g. on a Ray actor) reconnects
        return {"directory": self.directory, "path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.directory = state["directory"]
        self.path = state["path"]
        self._lock = threading.Lock()
        self._conn = None

    def __repr__(self) -> str:
        return f"ResponseCache({self.path!r})"


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _link_target(path: str) -> str:
    try:
        return f" (to {os.readlink(path)})"
    except OSError:
        return ""


def _encode(resp: CachedResponse) -> str:
    data: dict[str, Any] = {"text": resp.text, "prompt_tokens": resp.prompt_tokens,
                            "completion_tokens": resp.completion_tokens}
    if resp.finish_reason:
        data["finish_reason"] = resp.finish_reason
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _decode(raw: str) -> CachedResponse:
    data = json.loads(raw)
    if not isinstance(data.get("text"), str):
        raise ValueError("cached entry without text")
    return CachedResponse(
        text=data["text"], prompt_tokens=int(data.get("prompt_tokens", 0)),
        completion_tokens=int(data.get("completion_tokens", 0)), finish_reason=data.get("finish_reason"),
    )
