"""The data layer: readers, cleaning, deterministic stratified splits, and every bad-data error."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from edgedistill.compress.data import SUBSET_FLOOR, DataConfig, load_data, save_label_map, subset_sizes, tokenize
from edgedistill.compress.errors import ConfigError, DataError
from edgedistill.compress.readers import read_texts
from tests.helpers import make_sentences


def write_csv(path: Path, rows, header=("text", "label")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_splits_are_deterministic_disjoint_and_stratified(tiny_csv):
    a = load_data(DataConfig(source=str(tiny_csv), seed=7))
    b = load_data(DataConfig(source=str(tiny_csv), seed=7))
    c = load_data(DataConfig(source=str(tiny_csv), seed=8))
    assert a.train == b.train and a.validation == b.validation and a.test == b.test
    assert a.test != c.test
    tr, va, te = set(a.train.texts), set(a.validation.texts), set(a.test.texts)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr) + len(va) + len(te) == 240
    assert a.label_names == ["negative", "positive"]
    # 120 per class: 20% test = 24 each, 10% validation = 12 each
    assert Counter(a.test.labels) == {0: 24, 1: 24}
    assert Counter(a.validation.labels) == {0: 12, 1: 12}
    assert a.name == "tiny"


def test_custom_columns_jsonl_and_parquet(tmp_path):
    rows = make_sentences(40)
    jl = tmp_path / "d.jsonl"
    jl.write_text("\n".join(json.dumps({"body": t, "y": lab, "extra": 1}) for t, lab in rows) + "\n")
    d1 = load_data(DataConfig(source=str(jl), text_column="body", label_column="y"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pqf = tmp_path / "d.parquet"
    pq.write_table(pa.table({"body": [t for t, _ in rows], "y": [lab for _, lab in rows]}), pqf)
    d2 = load_data(DataConfig(source=str(pqf), text_column="body", label_column="y"))
    assert d1.train == d2.train and d1.test == d2.test
    assert len(d1.train) + len(d1.validation) + len(d1.test) == 40


def test_integer_labels_become_strings(tmp_path):
    path = write_csv(tmp_path / "ints.csv", [(t, int(lab == "positive")) for t, lab in make_sentences(30)])
    assert load_data(DataConfig(source=str(path))).label_names == ["0", "1"]


def test_cleaning_strips_drops_empty_duplicates_and_conflicts(tmp_path):
    rows = make_sentences(40) + [("  ", "positive"), ("", "negative"),
                                 ("same text", "positive"), ("same text  ", "positive"),
                                 ("torn", "positive"), ("torn", "negative")]
    d = load_data(DataConfig(source=str(write_csv(tmp_path / "c.csv", rows))))
    everything = d.train.texts + d.validation.texts + d.test.texts
    assert d.stats == {"rows_read": 46, "dropped_empty": 2, "dropped_duplicates": 2, "dropped_conflicting": 1}
    assert everything.count("same text") == 1 and "torn" not in everything
    assert all(t == t.strip() and t for t in everything)


def test_max_train_samples_is_a_stratified_subset_keeping_every_class(tmp_path):
    rows = make_sentences(200) + [(f"rare example number {i}", "rare") for i in range(6)]
    d = load_data(DataConfig(source=str(write_csv(tmp_path / "r.csv", rows)), max_train_samples=20))
    full = load_data(DataConfig(source=str(write_csv(tmp_path / "r.csv", rows))))
    counts = Counter(d.train.labels)
    # every class keeps min(all of it, SUBSET_FLOOR): the 4 rare training texts stay whole
    assert counts[2] == Counter(full.train.labels)[2] == 4 and SUBSET_FLOOR >= 4
    assert 20 <= len(d.train) <= 24 and counts[0] == counts[1] == 10
    assert sum(subset_sizes({k: v for k, v in Counter(full.train.labels).items()}, 20).values()) == len(d.train)
    assert set(d.train.texts) <= set(full.train.texts)
    assert d.test == full.test  # the test split never shrinks


def test_test_file_keeps_its_texts_out_of_training(tmp_path):
    rows = make_sentences(60)
    train = write_csv(tmp_path / "train.csv", rows)
    test = write_csv(tmp_path / "test.csv", rows[:10])
    d = load_data(DataConfig(source=str(train), test_file=str(test), test_size=0.0))
    assert sorted(d.test.texts) == sorted(t for t, _ in rows[:10])
    assert not set(d.test.texts) & set(d.train.texts + d.validation.texts)
    assert d.stats["dropped_in_test_file"] == 10


@pytest.mark.parametrize("case", ["missing_column", "empty_file", "header_only", "single_class",
                                  "undecodable", "missing_text_jsonl", "missing_label", "unseen_test_label",
                                  "bad_json", "unsupported", "no_file", "all_empty"])
def test_bad_data_gives_a_clear_error_naming_file_column_row(tmp_path, case):
    good = make_sentences(20)
    cfg_kw: dict = {}
    if case == "missing_column":
        path, match = write_csv(tmp_path / "x.csv", good, header=("sentence", "label")), r"x\.csv, column 'text'"
    elif case == "empty_file":
        path = tmp_path / "x.csv"
        path.write_bytes(b"")
        match = r"x\.csv: the file is empty"
    elif case == "header_only":
        path, match = write_csv(tmp_path / "x.csv", []), "header but no rows"
    elif case == "single_class":
        path, match = write_csv(tmp_path / "x.csv", [(t, "positive") for t, _ in good]), "only one class"
    elif case == "undecodable":
        path = tmp_path / "x.csv"
        path.write_bytes(b"text,label\nfine,positive\nalso fine,negative\nbad \xff\xfe bytes,positive\n")
        match = r"x\.csv, row 4: bytes .* not valid utf-8"
    elif case == "missing_text_jsonl":
        path = tmp_path / "x.jsonl"
        path.write_text(json.dumps({"text": "ok", "label": "a"}) + "\n" + json.dumps({"text": None, "label": "b"}))
        match = r"x\.jsonl, column 'text', row 2: missing text"
    elif case == "missing_label":
        path, match = write_csv(tmp_path / "x.csv", good[:3] + [("no label here", "")]), r"column 'label', row 5"
    elif case == "unseen_test_label":
        path = write_csv(tmp_path / "x.csv", good)
        test = write_csv(tmp_path / "t.csv", [("a neutral text", "neutral")])
        cfg_kw = {"test_file": str(test), "test_size": 0.0}
        match = r"t\.csv, column 'label', row 1: label 'neutral' never occurs in the training data"
    elif case == "bad_json":
        path = tmp_path / "x.jsonl"
        path.write_text('{"text": "a", "label": "b"}\n{"text": oops}\n')
        match = r"x\.jsonl, row 2: not valid JSON"
    elif case == "unsupported":
        path = tmp_path / "x.xlsx"
        path.write_bytes(b"PK")
        match = r"x\.xlsx: unsupported file type '\.xlsx'"
    elif case == "no_file":
        path, match = tmp_path / "missing.csv", r"missing\.csv: no such file"
    elif case == "all_empty":
        path, match = write_csv(tmp_path / "x.csv", [("  ", "a"), ("", "b")]), "no usable rows"
    with pytest.raises(DataError, match=match):
        load_data(DataConfig(source=str(path), **cfg_kw))


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="test_size=1.5"):
        DataConfig(test_size=1.5)
    with pytest.raises(ConfigError, match="max_train_samples=1"):
        DataConfig(max_train_samples=1)
    with pytest.raises(ConfigError, match="test_size"):
        DataConfig(test_size=0.5, validation_size=0.45)


def test_label_map_is_saved_in_output_order(tiny_csv, tmp_path):
    d = load_data(DataConfig(source=str(tiny_csv)))
    saved = json.loads(save_label_map(d, tmp_path).read_text())
    assert saved["labels"] == ["negative", "positive"]
    assert saved["id2label"] == {"0": "negative", "1": "positive"}


def test_unlabelled_texts_from_txt_and_csv(tmp_path):
    txt = tmp_path / "u.txt"
    txt.write_text("one\n\ntwo\none\n  three  \n")
    assert read_texts(str(txt)) == ["one", "two", "three"]
    path = write_csv(tmp_path / "u.csv", [("x", "")], header=("text", "label"))
    assert read_texts(str(path)) == ["x"]


def test_tokenize_leaves_padding_to_the_batch(tiny_csv, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    d = load_data(DataConfig(source=str(tiny_csv)))
    ds = tokenize(d.train, AutoTokenizer.from_pretrained(tiny_tokenizer_dir), max_length=8)
    lengths = {len(x) for x in ds["input_ids"]}
    assert max(lengths) == 8 and len(ds) == len(d.train)
    assert ds["labels"] == d.train.labels


@pytest.mark.real
def test_real_builtin_datasets_counts(real_cache):
    movie = load_data(DataConfig(source="movie-snippets"))
    # 10,605 rows, 37 rated exactly 0 dropped; 2 exact duplicates
    assert movie.stats == {"rows_read": 10568, "dropped_empty": 0, "dropped_duplicates": 2,
                           "dropped_conflicting": 0}
    totals = Counter()
    for s in ("train", "validation", "test"):
        totals.update(movie.label_names[i] for i in movie.split(s).labels)
    assert totals == {"positive": 5241, "negative": 5325}
    sms = load_data(DataConfig(source="sms-spam"))
    assert sms.stats["rows_read"] == 4837 and sms.label_names == ["ham", "spam"]
    assert len(sms.train) + len(sms.validation) + len(sms.test) == 4837 - 325
    trec = load_data(DataConfig(source="trec6"))
    assert trec.stats["rows_read"] == 15452
    assert trec.label_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert len(trec.train) + len(trec.validation) + len(trec.test) == 5381


def test_sorted_by_length_keeps_every_example_with_its_label(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from edgedistill.compress.data import Split, sorted_by_length, tokenize

    texts = ["a b c d e f", "a", "a b c", "a b", "a b c d"]
    split = Split(texts, [0, 1, 0, 1, 0])
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    ds = sorted_by_length(tokenize(split, tok, 16))
    lengths = [len(x) for x in ds["input_ids"]]
    assert lengths == sorted(lengths) and ds.column_names == tokenize(split, tok, 16).column_names
    pairs = {(tuple(x), y) for x, y in zip(tokenize(split, tok, 16)["input_ids"], split.labels)}
    assert {(tuple(x), y) for x, y in zip(ds["input_ids"], ds["labels"])} == pairs


def test_token_lengths_say_how_many_texts_a_limit_cuts(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from edgedistill.compress.data import token_lengths

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    texts = ["good"] * 98 + ["good " * 40, "good " * 60]
    n_short = len(tok("good")["input_ids"])
    stats = token_lengths(tok, texts, limit=16)
    assert stats["p50"] == n_short and stats["max"] == len(tok("good " * 60)["input_ids"])
    assert stats["truncated_share"] == 0.02  # the two long texts
    assert stats["limit_for_99pct"] % 8 == 0 and stats["limit_for_99pct"] >= stats["p99"]


def test_labels_keeps_only_the_named_classes(tiny_csv):
    from edgedistill.compress.data import DataConfig, load_data
    from edgedistill.compress.errors import ConfigError, DataError

    data = load_data(DataConfig(source=str(tiny_csv), labels=["positive"]), min_classes=1)
    assert data.label_names == ["positive"] and len(data.train) + len(data.validation) + len(data.test) == 120
    with pytest.raises(DataError, match="at least two"):
        load_data(DataConfig(source=str(tiny_csv), labels=["positive"]))
    with pytest.raises(DataError, match=r"data.labels names \['neutral'\]"):
        load_data(DataConfig(source=str(tiny_csv), labels=["positive", "neutral"]))
    with pytest.raises(ConfigError, match="data.labels"):
        DataConfig(source=str(tiny_csv), labels="positive")
