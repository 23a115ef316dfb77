"""Property-based fuzzing (hypothesis) of the two places that take untrusted input: the runtime's
``predict``/``predict_proba`` and the data loader.

Runtime: any ``str`` (surrogates, control characters, right-to-left marks, emoji sequences, up to ~100,000
characters), in lists of any length and any batch size, gives exactly one probability row per text, finite and
summing to one; a lone surrogate is a ``ValueError`` naming the index (documented in ``runtime/classifier.py``);
anything that is not a string (``None``, bytes, numbers, nested lists) is a ``TypeError`` raised before
onnxruntime is called. Every call runs under an alarm, so a hang fails the test instead of stalling the run.

Data loader: arbitrary bytes under every supported file suffix, and structured-but-malformed CSV / JSONL rows,
give either rows of strings (or a valid ``LabelledData``) or a ``DataError``: never another exception type.

The number of inputs each fuzzer tried is written to pytest's terminal output (``[fuzz] ...`` lines).
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgedistill.compress.data import DataConfig, load_data
from edgedistill.compress.readers import read_file
from edgedistill.compress.errors import DataError
from edgedistill.runtime import TextClassifier
from tests.helpers import report_line

TRIED: Counter[str] = Counter()  # inputs tried per fuzzer in this run


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    for name, n in sorted(TRIED.items()):
        report_line(request, f"[fuzz] {name}: {n} inputs tried")
    report_line(request, f"[fuzz] total: {sum(TRIED.values())} inputs tried")


@contextmanager
def no_hang(seconds: int = 60):
    """Fail (TimeoutError) instead of hanging if the block runs longer than ``seconds``."""
    def alarm(signum, frame):
        raise TimeoutError(f"no answer after {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])

# ---------------------------------------------------------------------- strategies: texts

AWKWARD = (
    [chr(c) for c in range(0x00, 0x20)] + ["\x7f", "\x85", "\xa0", "\u2028", "\u2029", "\ufeff", "\ufffd", "\uffff",
                                          "\U0010ffff", "\U000e0001"]
    + ["\u200e", "\u200f", "\u202a", "\u202b", "\u202d", "\u202e", "\u2066", "\u2067", "\u2069"]  # bidi controls
    + ["שלום", "مرحبا", "ﷺ", "\u0627\u0644\u0644\u0647"]  # right-to-left scripts and a ligature
    # emoji, zero-width joiner sequences, flags, variation selectors, combining marks
    + ["😀", "👍🏽", "👩‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "\u200d", "\ufe0f", "e\u0301", "Z\u0351\u0335\u0322\u0336"]
    # CJK, compatibility forms
    + ["漢字", "ｆｕｌｌｗｉｄｔｈ", "ﬁ", "ǅ", "İ", "ß", "\u0130\u0307", "Ⅻ", "①", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]
    + ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "##", "good", "bad", " ", "\t", "\r\n"]  # tokenizer specials
)
valid_char = st.characters(exclude_categories=["Cs"])  # any code point but a lone surrogate


def pieces(extra: list[str] = AWKWARD, min_size: int = 0, max_size: int = 300) -> st.SearchStrategy[str]:
    """Texts made of random code points mixed with the awkward pieces above (which may be several characters)."""
    return st.lists(st.one_of(valid_char, st.sampled_from(extra)), min_size=min_size, max_size=max_size).map("".join)


valid_text = pieces()


@st.composite
def long_text(draw) -> str:
    """A text of up to ~100,000 characters: a random unit repeated (generating 100k random characters is slow)."""
    unit = draw(pieces(min_size=1, max_size=40))
    n = draw(st.integers(1, 100_000))
    return (unit * (n // len(unit) + 1))[:n]


any_valid_text = st.one_of(valid_text, valid_text, long_text())
surrogate = st.characters(categories=["Cs"])
bad_item = st.one_of(st.none(), st.binary(max_size=20), st.integers(), st.floats(allow_nan=True), st.booleans(),
                     st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                max_size=2),
                     st.builds(bytearray, st.binary(min_size=1, max_size=5)))


@pytest.fixture(scope="module")
def clf(tiny_package) -> TextClassifier:
    return TextClassifier.load(tiny_package)


def check_rows(probs: np.ndarray, n: int, labels: int) -> None:
    assert probs.shape == (n, labels) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------- runtime fuzzers

@settings(FUZZ, max_examples=150)  # up to 40 texts of up to 100k characters each: the slow one
@given(texts=st.lists(any_valid_text, max_size=40), batch_size=st.integers(1, 64))
def test_fuzz_any_unicode_list_gives_one_row_per_text(clf, texts, batch_size):
    TRIED["runtime: lists of any valid Unicode (up to 100k chars)"] += 1
    with no_hang():
        probs = clf.predict_proba(texts, batch_size=batch_size)
        preds = clf.predict(texts, batch_size=batch_size, top_k=None)
    check_rows(probs, len(texts), clf.num_labels)
    assert len(preds) == len(texts)
    for row, ranked in zip(probs, preds):
        assert [p["label"] for p in ranked] and {p["label"] for p in ranked} == set(clf.labels)
        assert ranked[0]["score"] == pytest.approx(float(row.max()), abs=1e-6)


@FUZZ
@given(text=any_valid_text)
def test_fuzz_one_string_gives_one_prediction(clf, text):
    TRIED["runtime: single strings"] += 1
    with no_hang():
        pred = clf.predict(text)
    assert set(pred) == {"label", "score"} and pred["label"] in clf.labels
    assert 0.0 <= pred["score"] <= 1.0 and math.isfinite(pred["score"])


@FUZZ
@given(texts=st.lists(valid_text, min_size=1, max_size=10), at=st.integers(0, 10), bad=surrogate,
       prefix=valid_text)
def test_fuzz_a_lone_surrogate_is_a_value_error_naming_the_index(clf, texts, at, bad, prefix):
    TRIED["runtime: lists with a lone surrogate"] += 1
    at = min(at, len(texts))
    texts = texts[:at] + [prefix + bad] + texts[at:]
    with no_hang(), pytest.raises(ValueError, match=rf"texts\[{at}\] is not valid Unicode"):
        clf.predict_proba(texts)


@FUZZ
@given(texts=st.lists(valid_text, max_size=10), at=st.integers(0, 10), bad=bad_item)
def test_fuzz_a_non_string_item_is_a_type_error_naming_the_index(clf, texts, at, bad):
    TRIED["runtime: lists with a non-string item"] += 1
    at = min(at, len(texts))
    texts = texts[:at] + [bad] + texts[at:]
    for call, what in ((clf.predict_proba, "texts"), (clf.predict, "text_or_texts")):
        with no_hang(), pytest.raises(TypeError, match=rf"{what}\[{at}\] is .*; expected str"):
            call(texts)


@FUZZ
@given(bad=st.one_of(st.none(), st.binary(max_size=50), st.integers(), st.floats(), st.booleans(),
                     st.builds(bytearray, st.binary(max_size=5)), st.builds(memoryview, st.binary(max_size=5))))
def test_fuzz_a_non_string_argument_is_a_type_error(clf, bad):
    TRIED["runtime: non-string arguments"] += 1
    for call in (clf.predict_proba, clf.predict):
        with no_hang(), pytest.raises(TypeError):
            call(bad)


# ---------------------------------------------------------------------- data loader fuzzers

SUFFIXES = [".csv", ".tsv", ".jsonl", ".json", ".txt"]


def read_or_data_error(path: Path, **kwargs) -> list[tuple[str, str]] | None:
    """``read_file`` gives rows of two strings, or raises DataError (returns None then)."""
    try:
        with no_hang():
            rows = read_file(path, **kwargs)
    except DataError as e:
        assert str(path) in str(e)  # the error names the file
        return None
    assert isinstance(rows, list) and rows
    assert all(isinstance(t, str) and isinstance(lab, str) for t, lab in rows)
    return rows


def read_then_load_or_data_error(path: Path, raw: bytes) -> None:
    """``raw`` written to ``path``: ``read_file`` gives rows or a DataError, and when it gives rows ``load_data``
    gives consistent splits or a DataError."""
    path.write_bytes(raw)
    if read_or_data_error(path) is None:
        return
    try:
        with no_hang():
            data = load_data(DataConfig(source=str(path), test_size=0.2, validation_size=0.1))
    except DataError:
        return
    assert len(data.label_names) >= 2 and len(set(data.label_names)) == len(data.label_names)
    seen: set[str] = set()
    for split in (data.train, data.validation, data.test):
        assert len(split.texts) == len(split.labels)
        assert all(isinstance(t, str) and t and t == t.strip() for t in split.texts)
        # one label id a text, or (a list value read as multi-label) a non-empty sorted tuple of distinct ids
        ids = [(y,) if isinstance(y, int) else y for y in split.labels]
        assert all(isinstance(y, int) for y in split.labels) or data.multi_label
        assert all(ys and list(ys) == sorted(set(ys)) and all(0 <= k < data.num_labels for k in ys) for ys in ids)
        assert not seen & set(split.texts)  # splits are disjoint
        seen |= set(split.texts)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=2000),
                     st.text(max_size=500).map(lambda s: s.encode("utf-8", "surrogatepass"))),
       suffix=st.sampled_from(SUFFIXES), labelled=st.booleans())
def test_fuzz_arbitrary_bytes_are_rows_or_a_data_error(tmp_path, raw, suffix, labelled):
    TRIED["data: arbitrary bytes as csv/tsv/jsonl/json/txt"] += 1
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(raw)
    read_or_data_error(path, label_column="label" if labelled else None)


cell = st.one_of(pieces(AWKWARD + ['"', ",", "\n", "\r", "\t", "\0"], max_size=30),
                 st.sampled_from(["", " ", '"', '""', "pos", "neg", "1", "0", "1.0", "nan", "None", "null"]))


@st.composite
def csv_file(draw) -> bytes:
    """A CSV with a header (maybe missing a column, maybe with a BOM) and ragged, quoted, odd rows."""
    header = draw(st.sampled_from([["text", "label"], ["label", "text"], ["text"], ["txt", "label"],
                                   ["text", "label", "extra"], ["text", "text", "label"]]))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=4), max_size=30))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    buf = io.StringIO(newline="")
    w = csv.writer(buf, quoting=quoting)
    w.writerow(header)
    w.writerows(rows)
    text = buf.getvalue()
    if draw(st.booleans()):  # hand-made damage: an unclosed quote, a stray quote, a cut file
        i = draw(st.integers(0, max(len(text) - 1, 0)))
        text = text[:i] + draw(st.sampled_from(['"', '"x"y', "\n", "", "\r"])) + text[i:]
    bom = "\ufeff" if draw(st.booleans()) and draw(st.booleans()) else ""
    return (bom + text).encode("utf-8")


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=10)


@st.composite
def jsonl_file(draw) -> bytes:
    """JSON lines: mostly objects with text/label (of any JSON type), some other values, broken or blank lines."""
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["record", "record", "record", "value", "broken", "blank"]))
        if kind == "record":
            rec = {}
            if draw(st.integers(0, 9)):
                rec["text"] = draw(st.one_of(cell, json_value))
            if draw(st.integers(0, 9)):
                rec["label"] = draw(st.one_of(st.sampled_from(["pos", "neg", "neutral"]), json_value))
            lines.append(json.dumps(rec, allow_nan=True))
        elif kind == "value":
            lines.append(json.dumps(draw(json_value)))
        elif kind == "broken":
            lines.append(draw(st.sampled_from(['{"text": "a", "label": ', "{'text': 'single quotes'}", "[1, 2",
                                               '{"text": "x", "label": ' + "9" * 5000 + "}",
                                               "[" * 2000 + "]" * 2000, '{"text": "\\ud800", "label": "pos"}',
                                               '{"text": NaN, "label": Infinity}'])))
        else:
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
    return "\n".join(lines).encode("utf-8")


@FUZZ
@given(raw=csv_file())
def test_fuzz_malformed_csv_rows_are_valid_data_or_a_data_error(tmp_path, raw):
    TRIED["data: malformed CSV rows"] += 1
    read_then_load_or_data_error(tmp_path / "fuzz.csv", raw)


@FUZZ
@given(raw=jsonl_file())
def test_fuzz_malformed_jsonl_rows_are_valid_data_or_a_data_error(tmp_path, raw):
    TRIED["data: malformed JSONL rows"] += 1
    read_then_load_or_data_error(tmp_path / "fuzz.jsonl", raw)


@FUZZ
@given(rows=st.lists(st.tuples(pieces(min_size=1, max_size=40),
                               st.sampled_from(["pos", "neg", " neutral ", "1", "2"])), min_size=1, max_size=40),
       fmt=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_fuzz_well_formed_rows_read_back_exactly(tmp_path, rows, fmt):
    """What a CSV/TSV/JSONL writer wrote, any text at all, is read back unchanged (labels stripped)."""
    TRIED["data: well-formed rows, round trip"] += 1
    path = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")
    else:
        buf = io.StringIO(newline="")
        w = csv.writer(buf, delimiter="\t" if fmt == "tsv" else ",")
        w.writerow(["text", "label"])
        w.writerows(rows)
        path.write_bytes(buf.getvalue().encode("utf-8"))
    assert read_file(path) == [(t, lab.strip()) for t, lab in rows]
