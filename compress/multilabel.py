"""Multi-label tasks: the metrics, the per-label decision thresholds and the distillation loss.

A multi-label model gives one logit per label; its probabilities are ``sigmoid(logit)``, one independent yes/no
per label, and a text carries every label whose probability reaches that label's threshold. The thresholds are
fitted on the validation split (:func:`fit_thresholds`) and shipped in the package's config.json; the test split
is only ever scored with them.

Metrics (:func:`multilabel_metrics`, reached through :func:`edgedistill.compress.evaluate.compute_metrics`):

- per label: precision, recall, F1 and support (the texts that carry it);
- macro-F1 (the mean of the labels' F1: every label counts alike, the number the gates and the ship choice use,
  as for single-label tasks), micro-F1 (every (text, label) decision counts alike), samples-F1 (the mean over
  texts of each text's F1);
- subset accuracy (the share of texts whose label set is exactly right), reported as ``accuracy``;
- ROC-AUC: the mean over the labels present and absent in the split; ECE over every (text, label) probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgedistill.compress.errors import DataError

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""Candidate thresholds: 0.05, 0.10, ..., 0.95."""
MIN_POSITIVES = 5
"""A label with fewer validation texts than this gets the one global threshold (its own F1 would be fitted to a
handful of texts)."""


def as_matrix(y_true: Any, num_labels: int) -> np.ndarray:
    """0/1 ``(n, num_labels)`` int matrix from label-id tuples (or a matrix already)."""
    if isinstance(y_true, np.ndarray) and y_true.ndim == 2:
        if y_true.shape[1] != num_labels:
            raise DataError(f"a label matrix of {y_true.shape[1]} columns for {num_labels} labels")
        return (y_true > 0.5).astype(np.int64)
    out = np.zeros((len(y_true), num_labels), dtype=np.int64)
    for i, ys in enumerate(y_true):
        ys = list(ys)
        if ys and (min(ys) < 0 or max(ys) >= num_labels):
            raise DataError(f"label ids must be in [0, {num_labels}); text {i} has {ys}")
        out[i, ys] = 1
    return out


def is_multilabel(y_true: Any) -> bool:
    """True for label-id tuples (or a 2-D 0/1 matrix), False for one label id a text."""
    if isinstance(y_true, np.ndarray):
        return y_true.ndim == 2
    return len(y_true) > 0 and isinstance(y_true[0], (tuple, list, frozenset, set))


def decide(probs: np.ndarray, thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """0/1 decisions: ``probs >= threshold`` per label (0.5 each when ``thresholds`` is None)."""
    t = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return (probs >= t[None, :]).astype(np.int64)


def binary_ece(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE over every (text, label) probability: |observed share - mean probability| per equal-width bin."""
    p, t = probs.ravel(), y.ravel().astype(np.float64)
    idx = np.clip(np.ceil(p * bins).astype(int) - 1, 0, bins - 1)
    return float(sum((idx == b).mean() * abs(t[idx == b].mean() - p[idx == b].mean())
                     for b in range(bins) if (idx == b).any()))


def multilabel_metrics(y_true: Any, probs: np.ndarray, labels: Sequence[str],
                       thresholds: Sequence[float] | np.ndarray | None = None) -> dict[str, Any]:
    """Every multi-label metric (see the module docstring): the fields of an
    :class:`~edgedistill.compress.evaluate.Metrics`, ``per_class`` as ``(precision, recall, F1, support)`` rows."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

    k = len(labels)
    probs = np.asarray(probs, dtype=np.float64)
    y = as_matrix(y_true, k)
    if probs.ndim != 2 or probs.shape != y.shape:
        raise DataError(f"probabilities of shape {probs.shape} do not match {len(y)} texts x {k} labels")
    if len(y) == 0:
        raise DataError("nothing to evaluate: the split is empty")
    pred = decide(probs, thresholds)
    p, r, f1, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    both = [j for j in range(k) if 0 < y[:, j].sum() < len(y)]
    auc = float(np.mean([roc_auc_score(y[:, j], probs[:, j]) for j in both])) if both else None
    return dict(
        n=int(len(y)), labels=list(labels), accuracy=float((pred == y).all(axis=1).mean()),
        macro_precision=float(np.mean(p)), macro_recall=float(np.mean(r)), macro_f1=float(np.mean(f1)),
        per_class={lab: (float(p[i]), float(r[i]), float(f1[i]), int(support[i])) for i, lab in enumerate(labels)},
        roc_auc=auc, ece=binary_ece(y, probs), confusion=[],
        task="multi_label", micro_f1=float(f1_score(y, pred, average="micro", zero_division=0)),
        samples_f1=float(f1_score(y, pred, average="samples", zero_division=0)),
        thresholds=None if thresholds is None else [float(t) for t in thresholds],
    )


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp = float((y & pred).sum())
    denominator = float(y.sum() + pred.sum())
    return 0.0 if denominator == 0 else 2 * tp / denominator


def fit_thresholds(y_true: Any, probs: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID,
                   min_positives: int = MIN_POSITIVES) -> tuple[list[float], dict[str, Any]]:
    """Per-label thresholds from VALIDATION probabilities: each label's F1-maximising value on ``grid``, or, for a
    label with fewer than ``min_positives`` validation texts, the one global threshold that maximises micro-F1
    over all labels. Ties go to the value nearest 0.5. Returns the thresholds and how each was chosen."""
    probs = np.asarray(probs, dtype=np.float64)
    y = as_matrix(y_true, probs.shape[1])
    grid = sorted(grid, key=lambda t: (abs(t - 0.5), t))  # ties: nearest 0.5 first

    def best(score) -> float:
        return max(grid, key=lambda t: (round(score(t), 12), -abs(t - 0.5)))

    global_t = best(lambda t: _f1(y, (probs >= t).astype(np.int64)))
    out, how = [], []
    for j in range(y.shape[1]):
        if y[:, j].sum() < min_positives:
            out.append(float(global_t))
            how.append("global")
        else:
            out.append(float(best(lambda t, j=j: _f1(y[:, j], (probs[:, j] >= t).astype(np.int64)))))
            how.append("own")
    return out, {"global": float(global_t), "chosen_by": how, "min_positives": min_positives,
                 "grid": [min(grid), max(grid)]}


def soft_bce_loss(student_logits, teacher_logits, temperature: float = 1.0):
    """Binary knowledge distillation: the binary cross-entropy of the student's ``sigmoid(s / T)`` against the
    teacher's ``sigmoid(t / T)`` per label, averaged, times ``T**2`` (so its gradient keeps its scale as ``T``
    grows, as in Hinton et al.'s softmax version). Shared by distillation and by an update's learning without
    forgetting on a multi-label build (:func:`edgedistill.compress.update_train.lwf_loss`)."""
    import torch.nn.functional as F

    target = (teacher_logits.float() / temperature).sigmoid()
    return F.binary_cross_entropy_with_logits(student_logits.float() / temperature, target) * temperature ** 2



def thresholds_markdown(th: dict[str, Any]) -> list[str]:
    """The build report's section on a multi-label package's thresholds (its manifest's calibration record)."""
    how = th["how"]
    return ["", "## Per-label thresholds (multi-label)", "",
            f"Fitted on the {th['n']} validation texts for the shipped variant: each label's F1-maximising threshold, "
            f"or the global one ({how['global']:.2f}) for the {how['chosen_by'].count('global')} labels with fewer "
            f"than {how['min_positives']} validation texts. Validation macro-F1 {th['at_half']['macro_f1']:.4f} at "
            f"0.5 -> {th['validation']['macro_f1']:.4f}, micro-F1 {th['at_half']['micro_f1']:.4f} -> "
            f"{th['validation']['micro_f1']:.4f}. The teacher, the student and the baseline are scored at thresholds "
            "fitted the same way on the same split."]
