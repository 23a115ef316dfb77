r"""The cheapest strong classifier a user could train instead: TF-IDF n-grams and logistic regression.

Every build report, ablation table and benchmark suite carries it as a row, so a user sees what the
teacher and the shipped student gain over it::

    base = train_baseline(data.train, data.validation)      # C chosen on validation macro-F1
    metrics = base.evaluate(data.test, data.label_names)    # from its own predictions
    base.size_bytes                                          # what shipping it would take

Features: word 1-2-grams and character 2-5-grams of the lowercased text, binary tf (present or not) times idf,
l2-normalised, concatenated; one logistic regression on top. The regularisation ``C`` is chosen on the
validation split; the test split is only ever scored.

The features are the ones skl2onnx converts exactly, so that the baseline can ship as an ONNX package
(:mod:`edgedistill.compress.baseline_package`) that gives these probabilities:

- words are runs of 2+ ASCII letters, digits or underscores (:data:`WORD_PATTERN`), the same in Python's ``re`` and
  in RE2, which onnxruntime's Tokenizer runs (scikit-learn's default ``\b\w\w+\b`` is Unicode-aware in Python and
  ASCII in RE2);
- character n-grams are n-grams of single-character tokens (:data:`CHAR_PATTERN`, skl2onnx's
  ``TraceableTfidfVectorizer``, which keeps them as tuples for the converter): skl2onnx has no ``char_wb`` and its
  ``char`` analyzer would not collapse runs of whitespace as scikit-learn does;
- tf is binary: skl2onnx writes sublinear tf as log(1 + tf) where scikit-learn computes 1 + log(tf).

On the validation split of five built-in datasets these features score as the unconvertible ones did (word 1-2 +
``char_wb`` 2-5-grams, sublinear tf): the figures are in the message of the commit that changed them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgedistill.compress.errors import DataError

log = logging.getLogger(__name__)

C_GRID = (0.5, 2.0, 8.0, 32.0)
WORD_PATTERN = r"[A-Za-z0-9_]{2,}"
"""A word: 2+ ASCII letters, digits or underscores (the same tokens in Python's ``re`` and in RE2)."""
CHAR_PATTERN = r"(?s)."
"""A character token (any code point, newlines included); its 2-5-grams are the character n-grams."""


@dataclass
class Baseline:
    """A fitted TF-IDF + logistic-regression classifier and how its ``C`` was chosen."""

    features: Any
    classifier: Any
    C: float
    validation_macro_f1: dict[float, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    thresholds: list[float] | None = None
    """Multi-label (one-vs-rest): per-label thresholds fitted on validation, as every candidate gets them."""

    @property
    def multi_label(self) -> bool:
        return self.thresholds is not None

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, columns in :attr:`label_ids` order."""
        return self.classifier.predict_proba(self.features.transform(list(texts)))

    @property
    def label_ids(self) -> list[int]:
        """The label ids of the probability columns (those of the training split, ascending; multi-label: all)."""
        return [int(c) for c in self.classifier.classes_] if not self.multi_label else \
            list(range(len(self.thresholds or ())))

    @property
    def size_bytes(self) -> int:
        """What shipping it would take: each vocabulary (UTF-8 n-grams and an int32 column each), the idf weights
        and the coefficients, as flat arrays."""
        heads = self.classifier.estimators_ if self.multi_label else [self.classifier]
        total = sum(h.coef_.nbytes + h.intercept_.nbytes for h in heads)
        for _, vec in self.features.transformer_list:
            total += sum(len("".join(k).encode("utf-8")) + 4 for k in vec.vocabulary_) + vec.idf_.nbytes
        return total

    def evaluate(self, split, labels: Sequence[str], *, split_name: str = "test", dataset: str | None = None):
        from edgedistill.compress.evaluate import compute_metrics

        metrics = compute_metrics(split.labels, self.predict_proba(split.texts), labels, self.thresholds)
        metrics.dataset, metrics.split = dataset, split_name
        return metrics


def make_features():
    """Word 1-2-grams and character 2-5-grams, binary tf x idf, each l2-normalised (see the module docstring)."""
    from skl2onnx.sklapi import TraceableTfidfVectorizer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", token_pattern=WORD_PATTERN, ngram_range=(1, 2), binary=True,
                                 lowercase=True)),
        ("char", TraceableTfidfVectorizer(analyzer="word", token_pattern=CHAR_PATTERN, ngram_range=(2, 5),
                                          binary=True, lowercase=True)),
    ])


def train_baseline(train, validation, *, grid: Sequence[float] = C_GRID, seed: int = 42,
                   num_labels: int | None = None) -> Baseline:
    """Fit the features on ``train``, one logistic regression per ``C`` in ``grid``, keep the one with the best
    validation macro-F1 (ties: the smaller C, the simpler model). ``train`` / ``validation`` are
    :class:`edgedistill.compress.data.Split` objects; the test split never reaches this function.

    A multi-label split (label tuples) gets one-vs-rest logistic regressions (one per label, sharing ``C``), scored
    at 0.5, and then per-label thresholds fitted on validation; ``num_labels`` (the data's) keeps a label that
    no training text carries in its column."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier

    from edgedistill.compress.evaluate import validation_metrics
    from edgedistill.compress.multilabel import as_matrix, fit_thresholds, is_multilabel

    multi = is_multilabel(train.labels)
    k = 0
    if multi:
        k = num_labels or 1 + max(max(ys) for ys in [*train.labels, *validation.labels] if ys)
        y_train, y_val = as_matrix(train.labels, k), as_matrix(validation.labels, k)
        if absent := [j for j, c in enumerate(y_train.sum(axis=0)) if c == 0]:
            raise DataError(f"the one-vs-rest baseline needs every label in the training split; label ids {absent} "
                            "have none")
    else:
        y_train, y_val = np.asarray(train.labels), np.asarray(validation.labels)
        if len(set(train.labels)) < 2:
            raise DataError("the baseline needs at least two classes in the training split")
    t0 = time.perf_counter()
    features = make_features()
    x_train = features.fit_transform(list(train.texts))
    x_val = features.transform(list(validation.texts))
    scores: dict[float, float] = {}
    best: tuple[float, float, Any] | None = None
    for c in grid:
        clf = LogisticRegression(C=c, max_iter=3000, random_state=seed)
        clf = OneVsRestClassifier(clf) if multi else clf
        clf.fit(x_train, y_train)
        score = float(validation_metrics(y_val, clf.predict_proba(x_val), [str(k) for k in range(k)]).macro_f1
                      if multi else f1_score(y_val, clf.predict(x_val), average="macro", zero_division=0))
        scores[float(c)] = score
        if best is None or score > best[0] + 1e-12:
            best = (score, float(c), clf)
    assert best is not None
    thresholds = fit_thresholds(y_val, best[2].predict_proba(x_val))[0] if multi else None
    seconds = time.perf_counter() - t0
    log.info("baseline TF-IDF + LR%s: C=%g chosen on validation (macro-F1 %.4f), %d features, %.1f s",
             " (one-vs-rest)" if multi else "", best[1], best[0], x_train.shape[1], seconds)
    return Baseline(features, best[2], best[1], scores, round(seconds, 2), thresholds)


def margin_kept(model_f1: float | None, teacher_f1: float | None, baseline_f1: float | None) -> float | None:
    """(model - baseline) / (teacher - baseline): the share of the teacher's gain over the baseline that a
    model keeps. None where undefined (a missing figure, or a teacher no better than the baseline)."""
    if model_f1 is None or teacher_f1 is None or baseline_f1 is None or teacher_f1 - baseline_f1 <= 1e-12:
        return None
    return (model_f1 - baseline_f1) / (teacher_f1 - baseline_f1)


def share_of_teacher(model_f1: float | None, teacher_f1: float | None) -> float | None:
    if model_f1 is None or not teacher_f1:
        return None
    return model_f1 / teacher_f1
