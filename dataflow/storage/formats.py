"""Table formats: read and write rows (``list[dict]``) as jsonl, json, csv or parquet.

Rows keep JSON-native values. Formats without nested values (csv, parquet) store each column with
a *kind* (``str``, ``int``, ``float``, ``bool``, ``null`` or ``json``); a ``json`` column holds
JSON text that is decoded on read. The kinds are returned by ``write_table`` (the storage puts
them in the step manifest) and, for parquet, also kept in the file's schema metadata.

Read errors are ``InputFileError`` naming the file and, where it makes sense, the line.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

from . import jsonio

__all__ = [
    "FORMATS", "EXTENSIONS", "Table", "format_of", "read_table", "write_table", "column_kind",
    "union_columns",
]

FORMATS: tuple[str, ...] = ("jsonl", "json", "csv", "parquet")
EXTENSIONS: dict[str, str] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}
PARQUET_TYPES_KEY = b"dataflow.column_types"


@dataclass
class Table:
    """Rows plus the ordered column names (the union of the rows' keys, or the file header)."""

    rows: list[dict]
    columns: list[str] = field(default_factory=list)


def format_of(path: str | Path) -> str | None:
    """The format a file extension names, or None."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def _input_error(path: str | Path, problem: str, line: int | None = None, hint: str = "") -> Exception:
    from ..core.errors import InputFileError

    return InputFileError(str(path), problem, line=line, hint=hint)


def union_columns(rows: Iterable[dict], start: Iterable[str] = ()) -> list[str]:
    """Column names in order of first appearance: ``start`` first, then the rows' keys."""
    seen = dict.fromkeys(start)
    known = seen.keys()
    for row in rows:
        if not known >= row.keys():
            for key in row:
                if key not in seen:
                    seen[key] = None
    return list(seen)


# -- decoding ----------------------------------------------------------------------------------
def _decode_text(path: Path, data: bytes) -> str:
    """UTF-8 text of ``data`` (BOM stripped), or an error naming the line and byte."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _input_error(
            path,
            f"is not valid UTF-8 (byte offset {exc.start}, byte 0x{data[exc.start]:02x})",
            line=line,
            hint="save the file with UTF-8 encoding",
        ) from None


# -- jsonl -------------------------------------------------------------------------------------
def _read_jsonl(path: Path, data: bytes) -> Table:
    text = _decode_text(path, data)
    lines = text.split("\n")
    loads = jsonio.fast_loads()
    try:  # fast path; on any problem, the careful loop below finds and names the line
        rows = [loads(line) for line in lines if line and not line.isspace()]
        if all(type(row) is dict for row in rows):
            return Table(rows, union_columns(rows))
    except ValueError:
        pass
    last = len(lines)
    for number, line in enumerate(lines, 1):
        if not line or line.isspace():
            continue
        try:
            row = loads(line)
        except ValueError as exc:
            truncated = number == last and not text.endswith("\n")
            hint = (
                "the last line looks truncated (was the file still being written?)"
                if truncated
                else "each line must be one complete JSON object"
            )
            raise _input_error(path, f"invalid JSON: {_json_msg(exc)}", line=number, hint=hint) from None
        if not isinstance(row, dict):
            raise _input_error(
                path, f"expected a JSON object, found {_json_type(row)}", line=number,
                hint="each line must be one JSON object whose keys are the columns",
            )
    raise AssertionError("unreachable: the fast path failed but no line is wrong")  # pragma: no cover  # pragma: no mutate (unreachable)


def _too_deep(path: Path, line: int | None = None) -> Exception:
    return _input_error(path, f"invalid JSON: {jsonio.TOO_DEEP}", line=line,
                        hint="rows must be JSON objects of ordinary depth")


def _json_msg(exc: ValueError) -> str:
    msg = getattr(exc, "msg", None) or str(exc)
    col = getattr(exc, "colno", None)
    return f"{msg} (column {col})" if col else msg


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _write_jsonl(out: BinaryIO, rows: list[dict], columns: list[str]) -> dict:
    dumps = jsonio.dumps
    buffer: list[bytes] = []
    for row in rows:
        buffer.append(dumps(row))
        buffer.append(b"\n")
        if len(buffer) >= 2048:
            out.write(b"".join(buffer))
            buffer.clear()
    if buffer:
        out.write(b"".join(buffer))
    return {}


# -- json --------------------------------------------------------------------------------------
def _read_json(path: Path, data: bytes) -> Table:
    import json

    text = _decode_text(path, data)
    try:
        value = jsonio.loads(text)
    except ValueError:
        try:  # the standard library's reader names the line and column
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # JSON Lines saved as .json: read it as such
                return _read_jsonl(path, data)
            raise _input_error(
                path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno,
                hint="a .json file must hold one array of row objects",
            ) from None
        except RecursionError:
            raise _too_deep(path) from None
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        raise _input_error(
            path, "holds a JSON object, expected an array of row objects",
            hint="put the rows in a top-level [...] array"
            + (" (the rows seem to be inside one of the object's keys)" if lists else ""),
        )
    if not isinstance(value, list):
        raise _input_error(path, f"holds {_json_type(value)}, expected an array of row objects")
    for index, row in enumerate(value):
        if not isinstance(row, dict):
            raise _input_error(
                path, f"item {index} of the array is {_json_type(row)}, expected an object",
                hint="each item must be one row object whose keys are the columns",
            )
    return Table(value, union_columns(value))


def _write_json(out: BinaryIO, rows: list[dict], columns: list[str]) -> dict:
    if not rows:
        out.write(b"[]\n")
        return {}
    out.write(b"[\n")
    dumps = jsonio.dumps
    for index, row in enumerate(rows):
        out.write(dumps(row))
        out.write(b",\n" if index < len(rows) - 1 else b"\n")
    out.write(b"]\n")
    return {}


# -- column kinds (csv, parquet) ---------------------------------------------------------------
_INT64 = (-(2**63), 2**63 - 1)


def column_kind(values: Iterable[Any]) -> str:
    """The narrowest kind that stores ``values`` exactly: str, str|null, int, float, bool,
    null, or json (nested values, mixed types, or anything else)."""
    kinds: set[str] = set()
    has_none = has_empty = False
    for value in values:
        kind = type(value)
        if value is None:
            has_none = True
        elif kind is str:
            kinds.add("str")
            has_empty = has_empty or value == ""
        elif kind is bool:
            kinds.add("bool")
        elif kind is int:
            if not _INT64[0] <= value <= _INT64[1]:
                return "json"
            kinds.add("int")
        elif kind is float:
            kinds.add("float")
        else:
            return "json"
        if len(kinds) > 1:
            return "json"
    if not kinds:
        return "null"
    (only,) = kinds
    if only == "str" and has_none:
        return "json" if has_empty else "str|null"
    return only


def _cell_encoder(kind: str) -> Callable[[Any], str]:
    if kind == "json":
        return lambda v: "" if v is None else jsonio.dumps_str(v)
    if kind == "bool":
        return lambda v: "" if v is None else ("true" if v else "false")
    if kind == "float":
        return lambda v: "" if v is None else repr(v)
    return lambda v: "" if v is None else str(v)


def _cell_decoder(kind: str) -> Callable[[str], Any]:
    if kind == "str":
        return lambda c: c
    if kind == "str|null":
        return lambda c: c if c != "" else None
    if kind == "int":
        return lambda c: int(c) if c != "" else None
    if kind == "float":
        return lambda c: float(c) if c != "" else None
    if kind == "bool":
        return lambda c: None if c == "" else c.lower() in ("true", "1")
    if kind == "null":
        return lambda c: None if c == "" else c
    if kind == "json":
        return lambda c: jsonio.loads(c) if c != "" else None
    raise ValueError(f"unknown column kind {kind!r}")


_INT_RE = re.compile(r"-?(0|[1-9][0-9]*)\Z")
#: no leading zero before a digit: "007", "02134" (codes, postcodes) stay text
_FLOAT_RE = re.compile(r"-?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?\Z")


def _infer_csv_kind(cells: list[str]) -> str:
    """Kind of a column of a csv file written by someone else: numbers become numbers, and a
    column with a number written with a leading zero (``007``) stays text, zeros kept."""
    filled = [c for c in cells if c != ""]
    if not filled:
        return "str"
    if all(_INT_RE.match(c) for c in filled):
        return "int"
    if all(_FLOAT_RE.match(c) for c in filled):
        return "float"
    return "str"


# -- csv ---------------------------------------------------------------------------------------
def _read_csv(path: Path, data: bytes, column_types: dict[str, str] | None) -> Table:
    text = _decode_text(path, data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return Table([], [])
        if len(set(header)) != len(header):
            dupes = sorted({h for h in header if header.count(h) > 1})
            raise _input_error(path, f"the header repeats column(s) {dupes}", line=1)
        raw: list[list[str]] = []
        line_numbers: list[int] = []
        width = len(header)
        for record in reader:
            if not record:
                continue
            if len(record) != width:
                raise _input_error(
                    path, f"has {len(record)} fields but the header has {width}", line=reader.line_num,
                    hint="quote fields that contain commas or line breaks",
                )
            raw.append(record)
            line_numbers.append(reader.line_num)
    except csv.Error as exc:
        raise _input_error(path, f"is not valid CSV: {exc}", line=reader.line_num) from None
    decoders = []
    for index, name in enumerate(header):
        kind = (column_types or {}).get(name) or _infer_csv_kind([r[index] for r in raw])
        decoders.append((name, _cell_decoder(kind)))
    rows = []
    for line, record in zip(line_numbers, raw):
        try:
            rows.append({name: dec(cell) for (name, dec), cell in zip(decoders, record)})
        except ValueError as exc:
            raise _input_error(
                path, f"a cell does not match its column type: {exc}", line=line,
                hint="the file's manifest describes other column types; was it edited?",
            ) from None
    return Table(rows, list(header))


def _write_csv(out: BinaryIO, rows: list[dict], columns: list[str]) -> dict:
    kinds = {c: column_kind(row.get(c) for row in rows) for c in columns}
    encoders = [(_cell_encoder(kinds[c]), c) for c in columns]
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)  # type: ignore[arg-type]
    try:
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([enc(row.get(c)) for enc, c in encoders] for row in rows)
        text.flush()
    finally:
        text.detach()
    return {"column_types": kinds}


# -- parquet -----------------------------------------------------------------------------------
def _read_parquet(path: Path, column_types: dict[str, str] | None) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise _input_error(path, "file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise _input_error(path, f"is not a readable Parquet file: {exc}") from None
    meta = table.schema.metadata or {}
    kinds = dict(column_types or {})
    if not kinds and PARQUET_TYPES_KEY in meta:
        try:
            kinds = jsonio.loads(meta[PARQUET_TYPES_KEY])
        except ValueError:
            kinds = None
        if not isinstance(kinds, dict):
            raise _input_error(path, f"its {PARQUET_TYPES_KEY.decode()} metadata is not a JSON object",
                               hint="was the file written by another program? remove that metadata key")
    columns = [str(n) for n in table.column_names]
    simple = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_boolean, pa.types.is_null)
    loads = jsonio.fast_loads()
    values: list[list] = []
    for index, (name, arrow_field) in enumerate(zip(columns, table.schema)):
        column = table.column(index).to_pylist()
        if kinds.get(name) == "json":
            try:
                column = [loads(v) if v is not None else None for v in column]
            except (ValueError, TypeError) as exc:
                raise _input_error(path, f"column {name!r} holds invalid JSON: {_json_msg(exc)}",
                                   hint="the file's metadata says the column holds JSON text") from None
        elif pa.types.is_floating(arrow_field.type):
            column = [v if v == v else None for v in column]  # NaN -> None
        elif not any(check(arrow_field.type) for check in simple):
            column = [jsonio.to_native(v) for v in column]
        values.append(column)
    rows = [dict(zip(columns, cells)) for cells in zip(*values)] if columns else [{} for _ in range(table.num_rows)]
    return Table(rows, columns)


PARQUET_ROW_GROUP = 65536

_ARROW_TYPES = {"str": "string", "str|null": "string", "int": "int64", "float": "float64", "bool": "bool_", "null": "null"}


def _write_parquet(out: BinaryIO, rows: list[dict], columns: list[str]) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kinds = {name: column_kind(row.get(name) for row in rows) for name in columns}
    types = {name: pa.string() if kind == "json" else getattr(pa, _ARROW_TYPES[kind])() for name, kind in kinds.items()}
    schema = pa.schema([pa.field(n, types[n]) for n in columns], metadata={PARQUET_TYPES_KEY: jsonio.dumps(kinds)})
    dumps_str = jsonio.dumps_str
    # row groups of PARQUET_ROW_GROUP rows, each converted and written before the next is built,
    # so memory beyond the rows themselves stays small whatever the table size
    with pq.ParquetWriter(out, schema) as writer:
        for start in range(0, max(len(rows), 1), PARQUET_ROW_GROUP):
            chunk = rows[start:start + PARQUET_ROW_GROUP]
            arrays = []
            for name in columns:
                values = [row.get(name) for row in chunk]
                if kinds[name] == "json":
                    values = [None if v is None else dumps_str(v) for v in values]
                arrays.append(pa.array(values, type=types[name]))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    return {"column_types": kinds}


# -- entry points ------------------------------------------------------------------------------
def read_table(path: str | Path, fmt: str, column_types: dict[str, str] | None = None) -> Table:
    """Read a whole table. ``column_types`` (from a manifest) tells csv/parquet how to decode."""
    path = Path(path)
    if fmt == "parquet":
        return _read_parquet(path, column_types)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _input_error(path, "file not found") from None
    except IsADirectoryError:
        raise _input_error(path, "is a folder, expected a data file") from None
    if fmt == "jsonl":
        return _read_jsonl(path, data)
    if fmt == "json":
        return _read_json(path, data)
    if fmt == "csv":
        return _read_csv(path, data, column_types)
    raise ValueError(f"unknown format {fmt!r}")


_WRITERS: dict[str, Callable[[BinaryIO, list[dict], list[str]], dict]] = {
    "jsonl": _write_jsonl, "json": _write_json, "csv": _write_csv, "parquet": _write_parquet,
}


def write_table(out: BinaryIO, rows: list[dict], columns: list[str], fmt: str) -> dict:
    """Write ``rows`` to the binary stream ``out``; return format details for the manifest
    (``{"column_types": {...}}`` for csv and parquet)."""
    return _WRITERS[fmt](out, rows, columns)
