"""``dataflow.storage.formats`` on real files: every unreadable input is an ``InputFileError``
whose text names the file, the line where there is one, what is wrong and what to do (pinned
word for word: it is what a user reads); CSV cells are written and read back per column kind;
Parquet files written by other programs are read with their own types."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest

from dataflow.core.errors import InputFileError
from dataflow.storage import formats, jsonio

#: (file name, bytes, the error text after "<path>", the line it names)
BAD_FILES = [
    ("rows.json", b'{"data": [{"a": 1}]}',
     ": holds a JSON object, expected an array of row objects — put the rows in a top-level [...] array"
     " (the rows seem to be inside one of the object's keys)", None),
    ("rows.json", b'{"a": 1}',
     ": holds a JSON object, expected an array of row objects — put the rows in a top-level [...] array", None),
    ("rows.json", b"3", ": holds a number, expected an array of row objects", None),
    ("rows.json", b"null", ": holds null, expected an array of row objects", None),
    ("rows.json", b'"x"', ": holds a string, expected an array of row objects", None),
    ("rows.json", b"true", ": holds a boolean, expected an array of row objects", None),
    ("rows.json", b'[{"a": 1}, "x"]', ": item 1 of the array is a string, expected an object"
     " — each item must be one row object whose keys are the columns", None),
    ("rows.json", b'[{"a": 1}, {"b": 2}, [1]]', ": item 2 of the array is an array, expected an object"
     " — each item must be one row object whose keys are the columns", None),
    ("rows.json", b"[1.5]", ": item 0 of the array is a number, expected an object"
     " — each item must be one row object whose keys are the columns", None),
    ("rows.json", b'[\n  {"a": }\n]', ":2: invalid JSON: Expecting value (column 9)"
     " — a .json file must hold one array of row objects", 2),
    ("rows.json", b'{"a": 1}\n{"a": 2}\n[1]\n', ":3: expected a JSON object, found an array"
     " — each line must be one JSON object whose keys are the columns", 3),  # JSON Lines saved as .json
    ("rows.json", b"[" * 100_000 + b"]" * 100_000,
     ": invalid JSON: nested too deeply (more levels of arrays and objects than the JSON reader allows)"
     " — rows must be JSON objects of ordinary depth", None),
    ("rows.json", b'[{"a": "\xff"}]', ":1: is not valid UTF-8 (byte offset 8, byte 0xff)"
     " — save the file with UTF-8 encoding", 1),
    ("rows.jsonl", b'{"a": 1}\n{"a": tru}\n{"a": 2}\n', ":2: invalid JSON: invalid literal, expected 'true'"
     " (column 7) — each line must be one complete JSON object", 2),
    ("rows.jsonl", b'{"a": 1}\n{"a": 2', ":2: invalid JSON: unexpected end of data (column 8)"
     " — the last line looks truncated (was the file still being written?)", 2),
    ("rows.jsonl", b'{"a": 1}\n\n2\n', ":3: expected a JSON object, found a number"
     " — each line must be one JSON object whose keys are the columns", 3),
    ("rows.jsonl", b'{"a": 1}\nnull\n', ":2: expected a JSON object, found null"
     " — each line must be one JSON object whose keys are the columns", 2),
    ("rows.jsonl", b'{"a": 1}\nfalse\n', ":2: expected a JSON object, found a boolean"
     " — each line must be one JSON object whose keys are the columns", 2),
    ("rows.jsonl", b'{"a": 1}\n"s"\n', ":2: expected a JSON object, found a string"
     " — each line must be one JSON object whose keys are the columns", 2),
    ("rows.jsonl", b'{"a": 1}\n{"a": "\xc3\x28"}\n', ":2: is not valid UTF-8 (byte offset 16, byte 0xc3)"
     " — save the file with UTF-8 encoding", 2),
    ("rows.jsonl", b"\n\n\xff\n", ":3: is not valid UTF-8 (byte offset 2, byte 0xff) — save the file with UTF-8 encoding", 3),
    ("rows.csv", b"a,b,a,b,c\n1,2,3,4,5\n", ":1: the header repeats column(s) ['a', 'b']", 1),
    ("rows.csv", b"a,b\n1,2\n\n3,4,5\n", ":4: has 3 fields but the header has 2"
     " — quote fields that contain commas or line breaks", 4),
    ("rows.csv", b'a\n"' + b"x" * 200_000 + b'"\n', ":2: is not valid CSV: field larger than field limit (131072)", 2),
    ("rows.csv", b"a\n\xe9\n", ":2: is not valid UTF-8 (byte offset 2, byte 0xe9) — save the file with UTF-8 encoding", 2),
]


@pytest.mark.parametrize("name,data,problem,line", BAD_FILES, ids=[f"{n}:{p[:40]}" for n, _, p, _ in BAD_FILES])
def test_an_unreadable_file_is_an_input_error_naming_file_line_and_fix(tmp_path, name, data, problem, line):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputFileError) as info:
        formats.read_table(path, formats.format_of(path))
    assert str(info.value) == f"{path}{problem}"
    assert (info.value.path, info.value.line) == (str(path), line)


def test_the_standard_library_reader_names_the_same_column(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonio, "_orjson", None)
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": tru}\n')
    with pytest.raises(InputFileError) as info:
        formats.read_table(path, "jsonl")
    assert str(info.value) == f"{path}:2: invalid JSON: Expecting value (column 7) — each line must be one complete JSON object"


def test_missing_file_folder_and_unknown_format(tmp_path):
    for fmt in ("jsonl", "csv", "parquet"):
        with pytest.raises(InputFileError) as info:
            formats.read_table(tmp_path / "nope", fmt)
        assert str(info.value) == f"{tmp_path / 'nope'}: file not found"
    with pytest.raises(InputFileError) as info:
        formats.read_table(tmp_path, "json")
    assert str(info.value) == f"{tmp_path}: is a folder, expected a data file"
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        formats.read_table(tmp_path / "x.xml", "xml")


def test_a_byte_order_mark_and_blank_lines_are_not_rows(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n  \n\n{"b": 2}\n')
    table = formats.read_table(path, "jsonl")
    assert table.rows == [{"a": 1}, {"b": 2}]
    assert table.columns == ["a", "b"]


# -- csv ---------------------------------------------------------------------------------------
ROWS = [
    {"s": "a", "sn": "x", "i": 1, "f": 0.1, "b": True, "n": None, "j": {"k": [1, "é"]}},
    {"s": "", "sn": None, "i": None, "f": None, "b": False, "n": None, "j": None},
    {"s": "line\nbreak, comma", "sn": "y", "i": -3, "f": 1e20, "b": None, "n": None, "j": [1, 2]},
]
KINDS = {"s": "str", "sn": "str|null", "i": "int", "f": "float", "b": "bool", "n": "null", "j": "json"}


def test_csv_cells_are_written_per_column_kind_and_read_back_exactly(tmp_path):
    out = io.BytesIO()
    assert formats.write_table(out, ROWS, list(ROWS[0]), "csv") == {"column_types": KINDS}
    assert out.getvalue() == (
        's,sn,i,f,b,n,j\n'
        'a,x,1,0.1,true,,"{""k"":[1,""é""]}"\n'
        ',,,,false,,\n'
        '"line\nbreak, comma",y,-3,1e+20,,,"[1,2]"\n'
    ).encode("utf-8")
    path = tmp_path / "rows.csv"
    path.write_bytes(out.getvalue())
    table = formats.read_table(path, "csv", KINDS)
    assert table.rows == ROWS and table.columns == list(KINDS)


def test_csv_cells_decode_by_the_kind_the_manifest_gives(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("s,sn,i,f,b,n,j\n,,,,,,\nv,w,7,2.5,TRUE,kept,\"{\"\"a\"\":1}\"\nv,w,-7,-1,1,,null\n"
                    "v,w,0,0,no,,\"\"\"t\"\"\"\n")
    assert formats.read_table(path, "csv", KINDS).rows == [
        {"s": "", "sn": None, "i": None, "f": None, "b": None, "n": None, "j": None},
        {"s": "v", "sn": "w", "i": 7, "f": 2.5, "b": True, "n": "kept", "j": {"a": 1}},
        {"s": "v", "sn": "w", "i": -7, "f": -1.0, "b": True, "n": None, "j": None},
        {"s": "v", "sn": "w", "i": 0, "f": 0.0, "b": False, "n": None, "j": "t"},
    ]
    with pytest.raises(ValueError, match="^unknown column kind 'weird'$"):
        formats.read_table(path, "csv", {"s": "weird"})


def test_a_cell_that_does_not_match_its_kind_names_the_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("n,s\n1,a\n\nx,b\n")
    with pytest.raises(InputFileError) as info:
        formats.read_table(path, "csv", {"n": "int"})
    assert str(info.value) == (f"{path}:4: a cell does not match its column type: invalid literal for int()"
                               " with base 10: 'x' — the file's manifest describes other column types; was it edited?")
    assert info.value.line == 4


def test_a_users_csv_gets_numbers_inferred_and_keeps_everything_else_as_text(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b'i,f,s,e,b\r\n1,1.5,x,,true\r\n\r\n,-2,"a\r\nb",,false\r\n-0,.5,3,,\r\n7,1e3,,,\r\n')
    table = formats.read_table(path, "csv")
    assert table.columns == ["i", "f", "s", "e", "b"]
    assert table.rows == [  # rows after the blank line are read; a quoted CRLF stays in its cell
        {"i": 1, "f": 1.5, "s": "x", "e": "", "b": "true"},
        {"i": None, "f": -2.0, "s": "a\r\nb", "e": "", "b": "false"},
        {"i": 0, "f": 0.5, "s": "3", "e": "", "b": ""},
        {"i": 7, "f": 1000.0, "s": "", "e": "", "b": ""},
    ]
    assert type(table.rows[0]["i"]) is int and type(table.rows[0]["f"]) is float


def test_a_users_csv_keeps_codes_written_with_leading_zeros(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"order,zip,amount\n007,02134,0.5\n12,10001,3\n")
    table = formats.read_table(path, "csv")
    assert table.rows == [{"order": "007", "zip": "02134", "amount": 0.5}, {"order": "12", "zip": "10001", "amount": 3.0}]


def test_an_empty_csv_is_an_empty_table(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_bytes(b"")
    table = formats.read_table(path, "csv")
    assert table.rows == [] and table.columns == []
    path.write_bytes(b"a,b\n")
    table = formats.read_table(path, "csv")
    assert table.rows == [] and table.columns == ["a", "b"]


# -- parquet -----------------------------------------------------------------------------------
def test_parquet_written_here_is_read_back_with_its_kinds_without_a_manifest(tmp_path):
    path = tmp_path / "rows.parquet"
    with path.open("wb") as out:
        assert formats.write_table(out, ROWS, list(ROWS[0]), "parquet") == {"column_types": KINDS}
    table = formats.read_table(path, "parquet")  # the kinds come from the file's own metadata
    assert table.rows == ROWS and table.columns == list(KINDS)


def test_parquet_from_another_program_keeps_its_types(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({
        "t": [dt.datetime(2026, 1, 2, 3, 4), None],
        "f": [1.5, float("nan")],
        "l": [[1, 2], None],
        "s": ["a", None],
        "i": [1, 2],
        "j": ['{"a": 1}', None],
    }), path)
    assert formats.read_table(path, "parquet").rows == [
        {"t": "2026-01-02T03:04:00", "f": 1.5, "l": [1, 2], "s": "a", "i": 1, "j": '{"a": 1}'},
        {"t": None, "f": None, "l": None, "s": None, "i": 2, "j": None},
    ]
    # the manifest's kinds (a step file) decide over the file: "j" holds JSON text
    assert formats.read_table(path, "parquet", {"j": "json"}).rows[0]["j"] == {"a": 1}


def test_unreadable_parquet_is_an_input_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(InputFileError) as info:
        formats.read_table(path, "parquet")
    assert str(info.value).startswith(f"{path}: is not a readable Parquet file: ")
    assert "magic bytes" in str(info.value)
    for metadata in (b"[1]", b"{bad"):
        pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({formats.PARQUET_TYPES_KEY: metadata}), path)
        with pytest.raises(InputFileError) as info:
            formats.read_table(path, "parquet")
        assert str(info.value) == (f"{path}: its dataflow.column_types metadata is not a JSON object"
                                   " — was the file written by another program? remove that metadata key")
    pq.write_table(pa.table({"j": ['{"a": 1}', None, "{bad"]}).replace_schema_metadata(
        {formats.PARQUET_TYPES_KEY: json.dumps({"j": "json"}).encode()}), path)
    with pytest.raises(InputFileError) as info:
        formats.read_table(path, "parquet")
    assert str(info.value) == (f"{path}: column 'j' holds invalid JSON: unexpected character, expected a string key"
                               " (column 2) — the file's metadata says the column holds JSON text")


def test_a_json_column_of_numbers_is_an_input_error(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"j": [1, 2]}).replace_schema_metadata(
        {formats.PARQUET_TYPES_KEY: json.dumps({"j": "json"}).encode()}), path)
    monkeypatch.setattr(jsonio, "_orjson", None)  # the standard library's error has no column
    with pytest.raises(InputFileError) as info:
        formats.read_table(path, "parquet")
    assert str(info.value) == (f"{path}: column 'j' holds invalid JSON: the JSON object must be str, bytes or bytearray,"
                               " not int — the file's metadata says the column holds JSON text")


def test_json_writer_writes_one_row_per_line_inside_the_array(tmp_path):
    out = io.BytesIO()
    assert formats.write_table(out, [{"a": 1}, {"b": "é"}], ["a", "b"], "json") == {}
    assert out.getvalue() == '[\n{"a":1},\n{"b":"é"}\n]\n'.encode()
    out = io.BytesIO()
    formats.write_table(out, [], [], "json")
    assert out.getvalue() == b"[]\n"
    out = io.BytesIO()
    assert formats.write_table(out, [{"a": i} for i in range(5000)], ["a"], "jsonl") == {}
    assert out.getvalue() == b"".join(b'{"a":%d}\n' % i for i in range(5000))


def test_path_column_helpers():
    assert formats.format_of(Path("x/ROWS.NDJSON")) == "jsonl"
    assert formats.format_of("a.pq") == "parquet"
    assert formats.format_of("a.txt") is None
    assert formats.union_columns([{"b": 1}, {"a": 1, "b": 2}, {"c": 3}], start=["z"]) == ["z", "b", "a", "c"]


def test_column_kinds_keep_empty_text_apart_from_null_and_big_integers_exact(tmp_path):
    assert formats.column_kind(["a", None]) == "str|null"
    assert formats.column_kind(["", None, "a"]) == "json"  # CSV could not tell "" from null otherwise
    assert formats.column_kind(["", "a"]) == "str"
    assert formats.column_kind([2**63 - 1, -(2**63)]) == "int"
    assert formats.column_kind([2**63]) == "json" and formats.column_kind([-(2**63) - 1]) == "json"
    assert formats.column_kind([1, 1.5]) == "json" and formats.column_kind([True, 1]) == "json"
    assert formats.column_kind([None]) == "null" and formats.column_kind([]) == "null"
    assert formats.column_kind([1.5, None]) == "float" and formats.column_kind([(1,)]) == "json"
    rows = [{"s": ""}, {"s": None}, {"s": "a"}]
    for fmt in ("csv", "parquet"):
        path = tmp_path / f"rows.{fmt}"
        with path.open("wb") as out:
            kinds = formats.write_table(out, rows, ["s"], fmt)["column_types"]
        assert formats.read_table(path, fmt, kinds).rows == rows
