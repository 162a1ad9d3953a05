"""``dataflow.storage.atomic``: a reader sees the old file or the whole new one, never a part;
the size and sha256 the storage puts in manifests are those of the bytes written; temp files
left by a killed writer are removed on the next write of the same target, and nothing else is
(not another target's, not a live writer's, not a file that is not a temp file)."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys

import pytest

from dataflow.storage.atomic import (
    HashingWriter, atomic_write_bytes, atomic_write_jsonl, atomic_write_text, atomic_writer, is_temp_file, sha256_file,
)


def test_the_hashing_writer_counts_and_hashes_every_byte():
    raw = io.BytesIO()
    writer = HashingWriter(raw)
    assert writer.write(b"abc") == 3 and writer.write(bytearray(b"de")) == 2 and writer.write(memoryview(b"f")) == 1
    assert writer.size == 6 and writer.tell() == 6
    assert writer.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    assert raw.getvalue() == b"abcdef"
    assert writer.writable() and not writer.readable() and not writer.seekable()
    writer.close()  # the atomic writer owns the file: closing only flushes
    assert not writer.closed and not raw.closed
    raw.close()
    assert writer.closed


def test_a_write_replaces_the_file_and_reports_its_size_and_hash(tmp_path):
    target = tmp_path / "sub" / "rows.jsonl"
    with atomic_writer(target) as out:
        out.write(b"one\n")
        out.write(b"two\n")
        (temp,) = [p for p in target.parent.iterdir()]
        assert is_temp_file(temp) and temp.name.startswith(f".rows.jsonl.{os.getpid()}.")
        assert not target.exists()  # nothing at the target until the block ends
    assert target.read_bytes() == b"one\ntwo\n"
    assert out.size == 8 and out.hexdigest() == hashlib.sha256(b"one\ntwo\n").hexdigest() == sha256_file(target)
    assert [p.name for p in target.parent.iterdir()] == ["rows.jsonl"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "rows.jsonl"
    target.write_bytes(b"old\n")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as out:
            out.write(b"half")
            raise RuntimeError("stop")
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_text_jsonl_and_bytes_helpers(tmp_path):
    assert atomic_write_text(tmp_path / "a.txt", "é\n") == hashlib.sha256("é\n".encode()).hexdigest()
    assert (tmp_path / "a.txt").read_bytes() == "é\n".encode()
    assert atomic_write_jsonl(tmp_path / "b.jsonl", iter([{"a": 1}, [2], "x"])) == 3
    assert (tmp_path / "b.jsonl").read_bytes() == b'{"a":1}\n[2]\n"x"\n'
    assert atomic_write_jsonl(tmp_path / "c.jsonl", []) == 0 and (tmp_path / "c.jsonl").read_bytes() == b""
    data = os.urandom(5000)
    assert atomic_write_bytes(tmp_path / "d.bin", data) == hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "d.bin", chunk=7) == hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "c.jsonl") == hashlib.sha256(b"").hexdigest()


def test_what_counts_as_a_temp_file():
    assert is_temp_file(".rows.jsonl.123.ab12cd34.tmp")
    assert is_temp_file("/some/folder/.x.tmp")
    assert not is_temp_file("rows.tmp")  # not hidden
    assert not is_temp_file(".rows.jsonl")  # hidden but not .tmp
    assert not is_temp_file("/some/.folder.tmp/rows.jsonl")


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_temp_files_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = [f".rows.jsonl.{dead}.{i:08x}.tmp" for i in range(20)]
        kept = (
            [f".rows.jsonl.{dead}.{i:08x}.data" for i in range(10)]  # not a temp file
            + [f".other.jsonl.{dead}.{i:08x}.tmp" for i in range(10)]  # another target's
            + [f".rows.jsonl.{os.getpid()}.{i:08x}.tmp" for i in range(5)]  # this process is writing
            + [f".rows.jsonl.{live.pid}.{i:08x}.tmp" for i in range(5)]  # a live writer
            + [f".rows.jsonl.x{dead}.{i:08x}.tmp" for i in range(5)]  # no pid in the name
        )
        for name in stale + kept:
            (tmp_path / name).write_bytes(b"partial")
        (tmp_path / f".rows.jsonl.{dead}.folder.tmp").mkdir()  # cannot be unlinked: left, no error
        atomic_write_bytes(tmp_path / "rows.jsonl", b"new\n")
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {*kept, "rows.jsonl", f".rows.jsonl.{dead}.folder.tmp"}
        assert live.poll() is None  # the live writer was only asked whether it exists
    finally:
        live.kill()
        live.wait()
