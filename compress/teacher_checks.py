"""What the teacher is trained and judged by: its metrics for the Trainer, its loss (class-weighted, or binary per
label), the check a fine-tuned teacher must pass (:func:`check_teacher`), and the settings of each attempt and of
the retry after a failed check (:func:`first_attempt`, :func:`next_attempt`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgedistill.compress.heads import head_multiplier

if TYPE_CHECKING:
    from edgedistill.compress.teacher import TeacherConfig


def trainer_metrics(labels: list[str], multi_label: bool = False):
    import numpy as np

    from edgedistill.compress.evaluate import compute_metrics, validation_metrics
    from edgedistill.runtime.probabilities import sigmoid, softmax

    def fn(pred) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        if multi_label:  # the label ids are 0/1 rows; each label its own sigmoid, at thresholds fitted here
            m = validation_metrics(np.asarray(pred.label_ids), sigmoid(logits), labels)
            return {"macro_f1": m.macro_f1, "accuracy": m.accuracy, "micro_f1": m.micro_f1}
        m = compute_metrics(pred.label_ids, softmax(logits), labels)
        return {"macro_f1": m.macro_f1, "accuracy": m.accuracy}

    return fn


@dataclass(frozen=True)
class Attempt:
    """What one fine-tuning run uses of the settings a retry may change."""

    head_lr_multiplier: float
    """full / partial: the head's learning rate over the encoder's."""
    head_learning_rate: float
    """features: the head's learning rate."""
    epochs: float
    class_weighting: str
    """``none`` or ``balanced``."""


def first_attempt(cfg: TeacherConfig, num_labels: int) -> Attempt:
    """``cfg`` resolved; ``auto`` weighting starts plain."""
    mult = cfg.head_lr_multiplier if cfg.head_lr_multiplier is not None else head_multiplier(num_labels)
    epochs = cfg.head_epochs if cfg.strategy == "features" else cfg.epochs
    weighting = "none" if cfg.class_weighting == "auto" else cfg.class_weighting
    return Attempt(mult, cfg.head_learning_rate, float(epochs), weighting)


def next_attempt(cfg: TeacherConfig, last: Attempt, missing: list[str]) -> Attempt:
    """The retry after a failed check: 1) a head step 4x larger (the encoder's rate stays: a larger one is what
    breaks pretrained encoders); 2) twice the epochs; 3) with ``auto`` weighting and a class left unpredicted,
    the balanced loss."""
    weighting = "balanced" if cfg.class_weighting == "auto" and missing else last.class_weighting
    return Attempt(last.head_lr_multiplier * 4, last.head_learning_rate * 2, last.epochs * 2, weighting)


def check_teacher(val_macro_f1: float, missing: list[str], baseline_macro_f1: float | None) -> str | None:
    """Why a fine-tuned teacher is not good enough to distil from, in words; None when it is."""
    problems = []
    if missing:
        problems.append(f"never predicts {len(missing)} class(es) on validation ({', '.join(missing[:5])}"
                        f"{', ...' if len(missing) > 5 else ''})")
    if baseline_macro_f1 is not None and val_macro_f1 <= baseline_macro_f1:
        problems.append(f"validation macro-F1 {val_macro_f1:.4f} is not above TF-IDF + LR's {baseline_macro_f1:.4f}")
    return "; ".join(problems) or None


def unpredicted(y_true, pred, labels: list[str], min_support: int = 2) -> list[str]:
    """The classes with at least ``min_support`` validation examples that the model never predicts (multi-label:
    ``y_true`` and ``pred`` are 0/1 matrices)."""
    import numpy as np

    y, pred = np.asarray(y_true), np.asarray(pred)
    if y.ndim == 2:
        return [lab for i, lab in enumerate(labels) if y[:, i].sum() >= min_support and not pred[:, i].any()]
    return [lab for i, lab in enumerate(labels) if (y == i).sum() >= min_support and not (pred == i).any()]


MAX_POS_WEIGHT = 10.0
"""Multi-label ``balanced`` weighting: a label's positives weigh (negatives / positives), at most this much."""


def class_weights(labels: list[Any], num_labels: int):
    """Inverse class frequency, scaled so that the mean weight over the training examples is 1. Multi-label
    (label tuples): each label's positive weight for binary cross-entropy, negatives over positives (at most
    :data:`MAX_POS_WEIGHT`)."""
    import numpy as np

    from edgedistill.compress.data import label_counts

    if labels and isinstance(labels[0], tuple):
        pos = np.array([label_counts(labels).get(k, 0) for k in range(num_labels)], dtype=np.float64)
        return np.clip((len(labels) - pos) / np.maximum(pos, 1), 1.0, MAX_POS_WEIGHT)
    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(np.float64)
    return np.where(counts > 0, len(labels) / ((counts > 0).sum() * np.maximum(counts, 1)), 0.0)


def loss_function(weights, multi_label: bool = False):
    """A Trainer ``compute_loss_func``: cross-entropy, weighted by class when ``weights`` is given; multi-label:
    binary cross-entropy per label (``weights``: the positives' weights), the mean over texts and labels."""
    import torch
    import torch.nn.functional as F

    w = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    def fn(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"]
        if multi_label:
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float(),
                                                      pos_weight=None if w is None else w.to(logits.device))
        loss = F.cross_entropy(logits.float(), labels, weight=None if w is None else w.to(logits.device),
                               reduction="sum")
        if w is not None:  # sum of the weights, as a weighted mean; the trainer's divisor counts examples
            return loss / w.to(logits.device)[labels].sum().clamp_min(1e-12)
        return loss / (num_items_in_batch if num_items_in_batch is not None else len(labels))

    return fn
