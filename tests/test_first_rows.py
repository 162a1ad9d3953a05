"""``first_rows_file``: a pipeline's "use only the first N rows" option. The copy holds exactly
the first N rows, lives in the cache folder, is rewritten only when its bytes change (so a rerun
sees the same input fingerprint and reuses its steps), and every error names the user's
*original* file and line, never the copy."""

from __future__ import annotations

import json
import os

import pytest

from dataflow.core.errors import InputFileError
from dataflow.storage.head import first_rows_file


def test_zero_or_fewer_rows_means_the_whole_file_itself(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text('{"a": 1}\n')
    assert first_rows_file(src, 0, tmp_path / "cache") == src
    assert first_rows_file(str(src), -3, tmp_path / "cache") == src
    assert first_rows_file(tmp_path / "absent.jsonl", 0, tmp_path / "cache") == tmp_path / "absent.jsonl"
    assert not (tmp_path / "cache").exists()


def test_jsonl_copy_is_the_first_non_blank_lines_byte_for_byte(tmp_path):
    src = tmp_path / "chat.ndjson"
    src.write_bytes(b'\n{"b": 1,  "a": "\\u00e9"}\r\n   \n{"b": 2}\n{"b": 3}\n{broken\n')
    copy = first_rows_file(src, 2, tmp_path / "cache")
    assert copy == tmp_path / "cache" / "input_first_2_chat.ndjson"
    # kept as written (key order, spacing, escapes, line ending); line 6 is never read
    assert copy.read_bytes() == b'{"b": 1,  "a": "\\u00e9"}\r\n{"b": 2}\n'


def test_a_last_line_without_newline_gets_one(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_bytes(b'{"a": 1}\n{"a": 2}')
    copy = first_rows_file(src, 5, tmp_path / "cache")
    assert copy.name == "input_first_5_rows.jsonl"
    assert copy.read_bytes() == b'{"a": 1}\n{"a": 2}\n'


def test_the_copy_is_rewritten_only_when_its_bytes_change(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n')
    cache = tmp_path / "deep" / "cache"
    copy = first_rows_file(src, 2, cache)
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))
    src.write_text('{"a": 1}\n{"a": 2}\n{"a": 99}\n')  # a change beyond the first rows
    assert first_rows_file(src, 2, cache) == copy
    assert copy.stat().st_mtime_ns == 1_000_000_000  # untouched
    src.write_text('{"a": 1}\n{"a": 5}\n')
    assert first_rows_file(src, 2, cache).read_text() == '{"a": 1}\n{"a": 5}\n'
    assert copy.stat().st_mtime_ns != 1_000_000_000
    assert sorted(p.name for p in cache.iterdir()) == ["input_first_2_rows.jsonl"]  # no temp file left


@pytest.mark.parametrize("name", ["rows.csv", "rows.json", "rows.parquet", "rows.txt"])
def test_other_formats_become_a_jsonl_copy_of_their_first_rows(tmp_path, name):
    rows = [{"q": "x,y", "n": 1}, {"q": "z", "n": 2}, {"q": "w", "n": 3}]
    src = tmp_path / name
    if name.endswith(".csv"):
        src.write_text('q,n\n"x,y",1\nz,2\nw,3\n')
    elif name.endswith(".json"):
        src.write_text(json.dumps(rows))
    elif name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), src)
    else:  # an unknown extension is read as JSON Lines
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    copy = first_rows_file(src, 2, tmp_path / "cache")
    assert copy == tmp_path / "cache" / "input_first_2_rows.jsonl"
    expected = rows[:2] if not name.endswith(".txt") else None
    if expected is None:
        assert copy.read_text() == '{"q":"x,y","n":1}\n{"q":"z","n":2}\n'
    else:
        assert [json.loads(line) for line in copy.read_text().splitlines()] == expected


def test_errors_name_the_original_file_and_line(tmp_path):
    src = tmp_path / "chat.jsonl"
    src.write_bytes(b'{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(InputFileError) as info:
        first_rows_file(src, 5, tmp_path / "cache")
    error = info.value
    assert (error.path, error.line) == (str(src), 3)
    assert str(error) == (f"{src}:3: expected a JSON object, found an array"
                          " — each line must be one JSON object whose keys are the columns")
    src.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(InputFileError) as info:
        first_rows_file(src, 5, tmp_path / "cache")
    assert str(info.value).startswith(f"{src}:2: is not valid UTF-8")
    assert str(info.value).endswith(" — save the file with UTF-8 encoding")
    assert not (tmp_path / "cache").exists()  # nothing is written for a bad input


def test_a_missing_input_a_folder_and_an_empty_file_are_input_errors(tmp_path):
    with pytest.raises(InputFileError) as info:
        first_rows_file(tmp_path / "nope.jsonl", 2, tmp_path / "cache")
    assert str(info.value) == f"{tmp_path / 'nope.jsonl'}: input file not found — check the input path"
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(InputFileError) as info:
        first_rows_file(tmp_path / "folder.jsonl", 2, tmp_path / "cache")
    assert str(info.value) == f"{tmp_path / 'folder.jsonl'}: is not a file — check the input path"
    for name, content in (("blank.jsonl", "\n  \n"), ("empty.json", "[]"), ("header.csv", "a,b\n")):
        (tmp_path / name).write_text(content)
        with pytest.raises(InputFileError) as info:
            first_rows_file(tmp_path / name, 2, tmp_path / "cache")
        assert str(info.value) == (f"{tmp_path / name}: has no rows"
                                   " — the input file must hold at least one record")
    assert not (tmp_path / "cache").exists()


def test_one_row_is_a_copy_of_the_first_row(tmp_path):
    src = tmp_path / "rows.jsonl"
    src.write_text('{"a": 1}\n{"a": 2}\n')
    copy = first_rows_file(src, 1, tmp_path / "cache")
    assert copy == tmp_path / "cache" / "input_first_1_rows.jsonl"
    assert copy.read_text() == '{"a": 1}\n'
