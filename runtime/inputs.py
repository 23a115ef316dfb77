"""Files of texts to classify: ``.txt`` (one text a line), ``.jsonl``, ``.csv`` and ``.parquet``, read as a stream.

The predict command reads them chunk by chunk, so a file of any size runs in
constant memory, and writes one output line per input text, in order:

- ``.txt``: every line is a text, an empty line included (it is classified as the empty text).
  Lines end at ``\\n`` only; a trailing ``\\r`` is dropped, a lone ``\\r`` inside a line is kept.
- ``.jsonl`` / ``.ndjson``: every line is a JSON object holding ``text_column`` as a string, or a bare
  JSON string. A blank line, invalid JSON, a missing or non-string field is an error naming the line.
- ``.csv``: a header row, then one text per row from ``text_column``; fully blank lines are skipped
  (they are no rows), a row too short to have the column is an error naming the line.
- ``.parquet``: ``text_column`` of every row, read a record batch at a time (pyarrow, which the base install does
  not carry: ``pip install pyarrow``); a null or non-string value is an error naming the row.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from edgedistill.runtime.errors import InputFileError

FORMATS = {".txt": "txt", ".text": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
DEFAULT_TEXT_COLUMN = "text"
DEFAULT_ENCODING = "utf-8-sig"  # reads plain UTF-8 too, and drops the byte-order mark spreadsheets write
CHUNK_SIZE = 1024  # texts read, classified and written at a time
NEWLINE = {"txt": "\n", "jsonl": "\n", "csv": ""}  # how to open each format (csv handles its own newlines)


def input_format(path: Path | str) -> str:
    """``txt``, ``jsonl`` or ``csv`` from the file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputFileError(path, f"unknown file type {suffix or '(no suffix)'!r}; use one of "
                             f"{', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def iter_texts(f: TextIO, fmt: str, path: Path | str, text_column: str = DEFAULT_TEXT_COLUMN) -> Iterator[str]:
    """The texts of an open file (opened with ``newline=NEWLINE[fmt]``), one per output line."""
    if fmt == "txt":
        for line in f:
            yield line[:-1].removesuffix("\r") if line.endswith("\n") else line
    elif fmt == "jsonl":
        for n, line in enumerate(f, 1):
            yield _json_text(line, n, path, text_column)
    elif fmt == "csv":
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a long review is one field
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise InputFileError(path, "is empty; a CSV needs a header row", line=1)
        if text_column not in header:
            raise InputFileError(path, f"has no column {text_column!r} (columns: {', '.join(header)}); "
                                 "name the text column with --text-column", line=1)
        col = header.index(text_column)
        for row in reader:
            if not row:
                continue
            if len(row) <= col:
                raise InputFileError(path, f"row has {len(row)} fields, no {text_column!r} column",
                                     line=reader.line_num)
            yield row[col]
    else:
        raise ValueError(f"fmt={fmt!r}: expected one of {sorted(set(FORMATS.values()))}")


def _json_text(line: str, n: int, path: Path | str, text_column: str) -> str:
    if not line.strip():
        raise InputFileError(path, "is blank; JSON Lines needs one JSON value a line", line=n)
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputFileError(path, f"is not valid JSON ({e.msg} at column {e.colno})", line=n) from None
    if isinstance(value, dict):
        if text_column not in value:
            raise InputFileError(path, f"has no field {text_column!r} (fields: {', '.join(map(str, value))}); "
                                 "name the text field with --text-column", line=n)
        value = value[text_column]
    if not isinstance(value, str):
        raise InputFileError(path, f"text is {'null' if value is None else type(value).__name__}, not a string",
                             line=n)
    return value


def _pyarrow_parquet(path: Path | str):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputFileError(path, "reading or writing Parquet needs pyarrow: pip install pyarrow") from None
    return pq


def parquet_rows(path: Path | str) -> int:
    """Rows of a Parquet file, from its footer (no data read)."""
    try:
        return _pyarrow_parquet(path).ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as e:  # pyarrow: ArrowIOError, ArrowInvalid (not Parquet, or torn)
        raise InputFileError(path, f"is not a readable Parquet file ({e})") from None


def iter_parquet(path: Path | str, text_column: str = DEFAULT_TEXT_COLUMN, batch_rows: int = CHUNK_SIZE
                 ) -> Iterator[str]:
    """The texts of ``text_column``, one record batch at a time (constant memory whatever the file's size)."""
    pq = _pyarrow_parquet(path)
    try:
        f = pq.ParquetFile(path)
    except (OSError, ValueError) as e:
        raise InputFileError(path, f"is not a readable Parquet file ({e})") from None
    names = f.schema_arrow.names
    if text_column not in names:
        raise InputFileError(path, f"has no column {text_column!r} (columns: {', '.join(names)}); name the text "
                             "column with --text-column")
    row = 0
    for batch in f.iter_batches(batch_size=batch_rows, columns=[text_column]):
        for value in batch.column(0).to_pylist():
            row += 1
            if not isinstance(value, str):
                raise InputFileError(path, f"row {row}: text is {'null' if value is None else type(value).__name__}"
                                     ", not a string")
            yield value


def write_parquet(jsonl: Path | str, output: Path | str, rows_per_group: int = 65536) -> int:
    """The predictions of a JSON Lines file (one object a line) as a Parquet file, a row group at a time:
    columns ``label``, ``score`` (and ``top_k``, a list of ``{label, score}``, where it was asked for)."""
    pq = _pyarrow_parquet(output)
    import pyarrow as pa

    writer, n = None, 0
    try:
        with open(jsonl, encoding="utf-8") as f:
            for group in chunks((json.loads(line) for line in f), rows_per_group):
                table = _typed(pa, pa.Table.from_pylist(group))
                if writer is None:
                    writer = pq.ParquetWriter(output, table.schema)
                writer.write_table(table.cast(writer.schema))
                n += len(group)
        if writer is None:  # no rows: an empty file of the plain columns
            pq.write_table(pa.table({"label": pa.array([], pa.string()), "score": pa.array([], pa.float64())}),
                           output)
    finally:
        if writer is not None:
            writer.close()
    return n


LIST_TYPES = {"labels": "string", "scores": "float64"}
"""A multi-label prediction's list columns: typed whatever a group holds (a group of empty lists has no type)."""


def prediction_records(clf: Any, preds: list[Any]) -> list[dict[str, Any]]:
    """The output rows of ``clf.predict``'s answers: the best label and score, plus the ranked list (``top_k``) when
    top_k > 1; a multi-label package's: ``labels`` and ``scores``, lists of the labels that reach their thresholds
    (at most top_k of them when top_k > 1) and their probabilities, best first, empty where none does."""
    if clf.multi_label:
        return [{"labels": [r["label"] for r in p], "scores": [r["score"] for r in p]} for p in preds]
    return [p if isinstance(p, dict) else {"label": p[0]["label"], "score": p[0]["score"], "top_k": p} for p in preds]


def prediction_table(clf: Any, preds: list[Any], ranked: bool = False):
    """:func:`prediction_records` as a pyarrow Table of fixed column types, the ones :func:`write_parquet` writes
    (no rows included); ``ranked``: ``clf.predict`` was asked for top_k > 1 (a ``top_k`` column)."""
    import pyarrow as pa

    if clf.multi_label:
        schema = pa.schema([(name, pa.list_(getattr(pa, item)())) for name, item in LIST_TYPES.items()])
    else:
        ranks = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
        schema = pa.schema([("label", pa.string()), ("score", pa.float64()), *([("top_k", ranks)] if ranked else [])])
    return pa.Table.from_pylist(prediction_records(clf, preds), schema=schema)


def _typed(pa, table):
    for name, item in LIST_TYPES.items():
        if name in table.column_names:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).cast(pa.list_(getattr(pa, item)())))
    return table


def chunks(texts: Iterable[str], size: int = CHUNK_SIZE) -> Iterator[list[str]]:
    """Lists of up to ``size`` texts."""
    if size < 1:
        raise ValueError(f"size={size!r}: must be >= 1")
    chunk: list[str] = []
    for t in texts:
        chunk.append(t)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
