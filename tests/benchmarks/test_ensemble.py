"""benchmarks/ensemble.py: its macro-F1 is scikit-learn's, and the weight is chosen on the split it is given."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.ensemble import aligned, choose_weight, macro_f1  # noqa: E402


def test_macro_f1_is_scikit_learns():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 5, 200), rng.integers(0, 4, 200)  # class 4 never predicted
    assert macro_f1(y, pred, 5) == pytest.approx(f1_score(y, pred, average="macro"))


def test_the_weight_follows_the_better_model_and_ties_keep_the_student():
    y = np.array([0, 1, 0, 1])
    right = np.eye(2)[y] * 0.8 + 0.1
    wrong = np.eye(2)[1 - y] * 0.8 + 0.1
    assert choose_weight(right, wrong, y, 2)[0] == 1.0  # the student right, the baseline wrong
    w, scores = choose_weight(wrong, right, y, 2)
    assert scores[w] == 1.0 and w < 0.5  # the baseline right: the mix leans on it
    assert choose_weight(right, right, y, 2)[0] == 1.0  # a tie: the student alone


def test_columns_are_aligned_by_label_name():
    probs = np.array([[0.1, 0.9]])
    assert aligned(probs, ["b", "a"], ["a", "b"]).tolist() == [[0.9, 0.1]]
