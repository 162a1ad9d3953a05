"""The response cache as a store: the exact key format (a change would silently invalidate every
user's cache, or worse, make two different requests share one), what an entry holds, batches,
atomicity, and use across threads and processes."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
import sqlite3
import threading
import time

import pytest

from dataflow.core.errors import ConfigError
from dataflow.serving.response_cache import CACHE_FILE_NAME, CachedResponse, ResponseCache, request_key

SCHEMA = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "array", "items": {"type": "integer"}}},
          "required": ["b", "a"], "anyOf": [{"required": ["b"]}]}


def test_the_key_is_the_sha256_of_this_canonical_json():
    """Pinned: sorted keys except the schema's property order, compact separators, UTF-8 text."""
    key = request_key("m", [{"role": "user", "content": "héllo"}], 0.0, {"top_p": 1}, SCHEMA)
    canonical = ('{"extra_body":{"top_p":1},"json_schema":{"anyOf":[{"required":["b"]}],'
                 '"properties":[["b",{"type":"string"}],["a",{"items":{"type":"integer"},"type":"array"}]],'
                 '"required":["b","a"],"type":"object"},"messages":[{"content":"héllo","role":"user"}],'
                 '"model":"m","temperature":0.0,"v":1}')
    assert key == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_the_key_keeps_property_order_and_nothing_else_of_key_order():
    reordered = {"required": ["b", "a"], "anyOf": [{"required": ["b"]}], "type": "object",
                 "properties": SCHEMA["properties"]}
    assert request_key("m", [], None, None, reordered) == request_key("m", [], None, {}, SCHEMA)
    swapped = dict(SCHEMA, properties=dict(reversed(list(SCHEMA["properties"].items()))))
    assert request_key("m", [], None, None, swapped) != request_key("m", [], None, None, SCHEMA)


def test_a_value_json_cannot_write_is_keyed_by_its_text():
    day = dt.date(2026, 1, 2)
    assert request_key("m", [], None, {"on": day}) == request_key("m", [], None, {"on": "2026-01-02"})


def test_an_entry_keeps_text_tokens_and_finish_reason(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k", CachedResponse("cut reply", 7, 9, finish_reason="length"))
    cache.put("plain", CachedResponse("whole reply"))
    cache.close()
    again = ResponseCache(tmp_path)
    assert again.get("k") == CachedResponse("cut reply", 7, 9, "length")
    assert again.get("plain") == CachedResponse("whole reply", 0, 0, None)
    assert again.get("absent") is None
    raw = dict(sqlite3.connect(again.path).execute("SELECT key, response FROM responses").fetchall())
    assert raw["plain"] == '{"text":"whole reply","prompt_tokens":0,"completion_tokens":0}'
    again.close()


def test_model_and_time_are_recorded(tmp_path):
    cache = ResponseCache(tmp_path)
    before = time.time()
    cache.put("k1", CachedResponse("one"))
    cache.put_many([("k2", CachedResponse("two"), "model-b")])
    rows = dict((k, (m, c)) for k, m, c in sqlite3.connect(cache.path).execute(
        "SELECT key, model, created FROM responses"))
    assert rows["k1"][0] == "" and rows["k2"][0] == "model-b"
    assert all(before - 1 <= created <= time.time() + 1 for _, created in rows.values())
    cache.close()


def test_an_unreadable_entry_is_a_miss_and_the_others_are_still_found(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put_many([("b", CachedResponse("fine"), ""), ("d", CachedResponse("also fine"), "")])
    conn = sqlite3.connect(cache.path)
    conn.executemany("INSERT INTO responses VALUES (?, '', ?, 0)",
                     [("a", "not json"), ("c", '{"prompt_tokens": 1}'), ("e", '{"text": 5}')])
    conn.commit()
    conn.close()
    assert cache.get_many(["a", "b", "c", "d", "e"]) == {"b": CachedResponse("fine"), "d": CachedResponse("also fine")}
    cache.close()


def test_many_keys_are_read_in_chunks_and_duplicates_once(tmp_path):
    cache = ResponseCache(tmp_path)
    keys = [f"k{i:04d}" for i in range(1234)]
    cache.put_many([(k, CachedResponse(k), "") for k in keys])
    found = cache.get_many(keys + keys[:10] + ["missing"])
    assert len(found) == 1234 and all(found[k].text == k for k in keys)
    assert cache.get_many([]) == {}
    assert len(cache) == 1234
    cache.close()


def test_a_failed_batch_stores_nothing_and_the_cache_stays_usable(tmp_path):
    cache = ResponseCache(tmp_path)
    with pytest.raises(ConfigError):  # a key SQLite cannot bind
        cache.put_many([("good", CachedResponse("x"), ""), (object(), CachedResponse("y"), "")])
    assert cache.get("good") is None  # rolled back as a whole
    cache.put("after", CachedResponse("z"))
    assert cache.get("after") == CachedResponse("z") and len(cache) == 1
    cache.put_many([])
    assert len(cache) == 1
    cache.close()


def test_clear_close_and_reopen(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k", CachedResponse("x"))
    cache.close()
    cache.close()  # twice is fine
    assert len(cache) == 1  # reconnects
    cache.clear()
    assert len(cache) == 0 and cache.get("k") is None
    cache.close()
    assert repr(cache) == f"ResponseCache({str(tmp_path / CACHE_FILE_NAME)!r})"


def test_a_cache_is_used_from_other_threads_and_survives_pickling(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k", CachedResponse("x"))  # connects in this thread
    seen = []
    thread = threading.Thread(target=lambda: seen.append(cache.get("k")))
    thread.start()
    thread.join(10)
    assert seen == [CachedResponse("x")]
    copy = pickle.loads(pickle.dumps(cache))  # e.g. to a Ray actor: no connection or lock travels
    assert copy.path == cache.path and copy.directory == cache.directory
    assert copy.get("k") == CachedResponse("x")
    copy.put("k2", CachedResponse("y"))
    assert cache.get("k2") == CachedResponse("y")
    copy.close()
    cache.close()


# -- what the cache refuses, and the exact message ----------------------------------------------
LINK_HINT = "remove the link; the response cache is only ever a regular file of the cache folder"
FILE_HINT = ("if the file is damaged or not dataflow's, delete or move it (it only holds cached LLM replies) "
             "and rerun")


def _refusal(tmp_path) -> str:
    with pytest.raises(ConfigError) as info:
        ResponseCache(tmp_path).get("k")
    return str(info.value)


def test_text_is_stored_as_written_and_missing_counts_read_as_zero(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k", CachedResponse("Zürich ☀"))
    raw = sqlite3.connect(cache.path).execute("SELECT response FROM responses").fetchone()[0]
    assert raw == '{"text":"Zürich ☀","prompt_tokens":0,"completion_tokens":0}'
    conn = sqlite3.connect(cache.path)
    conn.execute("INSERT INTO responses VALUES ('bare', '', '{\"text\": \"x\"}', 0)")
    conn.commit()
    conn.close()
    assert cache.get("bare") == CachedResponse("x", 0, 0, None)
    cache.close()


def test_closing_ends_the_connection(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k", CachedResponse("x"))
    assert (tmp_path / (CACHE_FILE_NAME + "-wal")).exists()
    cache.close()
    assert not (tmp_path / (CACHE_FILE_NAME + "-wal")).exists()  # the last connection checkpointed and closed


def test_the_file_is_created_private(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put("k", CachedResponse("x"))
    assert (tmp_path / CACHE_FILE_NAME).stat().st_mode & 0o777 == 0o600
    cache.close()


def test_refusals_name_the_file_the_problem_and_what_to_do(tmp_path):
    import os

    path = tmp_path / CACHE_FILE_NAME
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", str(path) + "-wal")
    assert _refusal(tmp_path) == f"cannot use the LLM response cache {path}: {path}-wal is a symbolic link; remove it — {LINK_HINT}"
    os.unlink(str(path) + "-wal")

    os.symlink(tmp_path / "elsewhere", path)
    assert _refusal(tmp_path) == (f"cannot use the LLM response cache {path}: it is a symbolic link "
                                  f"(to {tmp_path / 'elsewhere'}) — {LINK_HINT}")
    os.unlink(path)

    os.link(tmp_path / "elsewhere", path)
    assert _refusal(tmp_path) == f"cannot use the LLM response cache {path}: it is a hard link (2 names for one file) — {LINK_HINT}"
    os.unlink(path)

    os.mkfifo(path)
    assert _refusal(tmp_path) == f"cannot use the LLM response cache {path}: it is not a regular file — {LINK_HINT}"
    os.unlink(path)

    path.mkdir()
    assert _refusal(tmp_path) == f"cannot use the LLM response cache {path}: Is a directory — {FILE_HINT}"
    path.rmdir()

    path.write_bytes(b"not a database at all" * 100)
    assert _refusal(tmp_path) == f"cannot use the LLM response cache {path}: file is not a database — {FILE_HINT}"
    path.unlink()

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE zeta (a)")
    conn.execute("CREATE TABLE accounts (a)")
    conn.close()
    assert _refusal(tmp_path) == (f"cannot use the LLM response cache {path}: it holds other tables (accounts, zeta), "
                                  f"so it belongs to another program — {FILE_HINT}")
    path.unlink()

    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE responses (key, value)")
    conn.close()
    assert _refusal(tmp_path) == (f"cannot use the LLM response cache {path}: its responses table is not the one "
                                  f"dataflow writes — {FILE_HINT}")


def test_a_link_made_between_the_check_and_the_open_is_refused(tmp_path, monkeypatch):
    """O_NOFOLLOW: if a symbolic link appears after the islink check, opening it still fails."""
    import os

    path = tmp_path / CACHE_FILE_NAME
    os.symlink(tmp_path / "elsewhere", path)
    monkeypatch.setattr(os.path, "islink", lambda p: False)
    message = _refusal(tmp_path)
    assert message == (f"cannot use the LLM response cache {path}: it is a symbolic link (to {tmp_path / 'elsewhere'}) "
                       f"— {LINK_HINT}")
    assert not (tmp_path / "elsewhere").exists()


def test_a_file_replaced_while_it_is_opened_is_refused(tmp_path, monkeypatch):
    from dataflow.serving import response_cache

    identities = iter([(1, 1), (1, 2)])
    monkeypatch.setattr(response_cache, "_identity", lambda info: next(identities))
    assert _refusal(tmp_path) == (f"cannot use the LLM response cache {tmp_path / CACHE_FILE_NAME}: it was replaced "
                                  f"while being opened — {FILE_HINT}")


def test_a_database_with_our_table_and_others_names_only_the_others(tmp_path):
    path = tmp_path / CACHE_FILE_NAME
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT, response TEXT NOT NULL, created REAL)")
    conn.execute("CREATE TABLE accounts (a)")
    conn.close()
    assert _refusal(tmp_path) == (f"cannot use the LLM response cache {path}: it holds other tables (accounts), "
                                  f"so it belongs to another program — {FILE_HINT}")
