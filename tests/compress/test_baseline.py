"""The TF-IDF + logistic-regression baseline is a real model, and the report's share and margin are computed."""

from __future__ import annotations

import random

import pytest

from edgedistill.compress.baseline import margin_kept, share_of_teacher, train_baseline
from edgedistill.compress.data import DataConfig, Split, load_data


def test_the_baseline_learns_separable_data_from_its_own_predictions(tiny_csv):
    data = load_data(DataConfig(source=str(tiny_csv)))
    base = train_baseline(data.train, data.validation)
    m = base.evaluate(data.test, data.label_names)
    assert m.macro_f1 > 0.9 and m.n == len(data.test)
    probs = base.predict_proba(data.test.texts[:3])
    assert probs.shape == (3, 2) and abs(float(probs.sum()) - 3.0) < 1e-6
    assert base.size_bytes > 1000


def test_the_baseline_fails_on_shuffled_labels(tiny_csv):
    data = load_data(DataConfig(source=str(tiny_csv)))
    labels = list(data.train.labels)
    random.Random(0).shuffle(labels)
    base = train_baseline(Split(data.train.texts, labels), data.validation)
    assert base.evaluate(data.test, data.label_names).macro_f1 < 0.75


def test_margin_kept_and_share_of_teacher_by_hand():
    assert margin_kept(0.85, 0.90, 0.80) == pytest.approx(0.5)
    assert margin_kept(0.90, 0.90, 0.80) == pytest.approx(1.0)
    assert margin_kept(0.78, 0.90, 0.80) == pytest.approx(-0.2)  # below the baseline: negative, shown as such
    assert margin_kept(0.85, 0.80, 0.80) is None  # a teacher no better than the baseline leaves no margin
    assert margin_kept(None, 0.9, 0.8) is None
    assert share_of_teacher(0.855, 0.9) == pytest.approx(0.95)


def test_the_headline_says_when_the_baseline_is_as_good_as_the_teacher():
    from edgedistill.compress.report import headline_text

    wide = {"macro_f1": 0.85, "share_of_teacher": 0.85 / 0.9, "margin_kept": 0.5, "speedup_vs_teacher": 20.0,
            "size_ratio": 18.0, "teacher_macro_f1": 0.9, "baseline_macro_f1": 0.8}
    assert "50% of its margin" in headline_text(wide) and "Note" not in headline_text(wide)
    narrow = {**wide, "macro_f1": 0.971, "teacher_macro_f1": 0.9818, "baseline_macro_f1": 0.979,
              "margin_kept": -2.81}
    text = headline_text(narrow)
    assert "only 0.3 points above the TF-IDF baseline" in text and "may be the better choice" in text
    below = {**wide, "macro_f1": 0.7819, "teacher_macro_f1": 0.7902, "baseline_macro_f1": 0.8303,
             "margin_kept": None}
    text = headline_text(below)  # trec-questions full: the baseline beats the teacher on macro-F1
    assert "4.0 points below the TF-IDF baseline" in text and "-4.0" not in text and "better choice" in text
