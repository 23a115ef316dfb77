"""What a package's logits mean: config.json's ``task`` and the fields that turn logits into labels.

- ``"task": "single_label"`` (the default: every package written before the field): one label per text.
  Probabilities are ``softmax(logits / temperature + biases)`` (``biases``: optional per-class decision biases);
  the label is the most probable one.
- ``"task": "multi_label"``: any number of labels per text, none included. The logits are per-label logits and
  probabilities are ``sigmoid(logits / temperature)``, each label on its own (a row does not sum to 1); a label is
  predicted where its probability reaches its threshold: ``"thresholds": [t_0, ..., t_{k-1}]``, one number in
  (0, 1) per label in label order (absent: :data:`DEFAULT_THRESHOLD` each). A multi-label package has no class
  biases, and a single-label package no thresholds.

Both kinds of graph (``tokens`` and ``strings``) follow the same rule. Standard library only: the package reader
imports this, and the numeric side lives in :mod:`edgedistill.runtime.classifier`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

TASK_SINGLE, TASK_MULTI = "single_label", "multi_label"
TASKS = (TASK_SINGLE, TASK_MULTI)
DEFAULT_THRESHOLD = 0.5
"""A multi-label package's threshold for every label when its config.json gives none."""


def _numbers(values: Any, n: int, ok: Any) -> bool:
    return isinstance(values, tuple) and len(values) == n and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and ok(v) for v in values)


def scoring_problem(task: Any, temperature: Any, thresholds: Any, biases: Any,
                    num_labels: int) -> tuple[str, Any, str] | None:
    """The first thing wrong with the config.json fields that turn logits into answers (``task``,
    ``temperature``, ``thresholds``, ``biases``) as ``(field, value, why)``; None when they fit together and with
    ``num_labels``. Lists must already be tuples."""
    if not _numbers((temperature,), 1, lambda v: math.isfinite(v) and v > 0):
        return "temperature", temperature, "must be a finite number > 0 (1.0: logits as the model gives them)"
    if task not in TASKS:
        return "task", task, f"must be one of {', '.join(TASKS)}"
    if task == TASK_SINGLE and thresholds is not None:
        return "thresholds", thresholds, f"only a {TASK_MULTI} package has per-label thresholds (task={task})"
    if task == TASK_MULTI and biases is not None:
        return "biases", biases, f"a {TASK_MULTI} package has per-label thresholds, not class biases"
    if thresholds is not None and not _numbers(thresholds, num_labels, lambda v: 0 < v < 1):
        return "thresholds", thresholds, f"must be {num_labels} numbers in (0, 1), one per label (or absent)"
    if biases is not None and not _numbers(biases, num_labels, math.isfinite):
        return "biases", biases, f"must be {num_labels} finite numbers, one per label (or absent)"
    return None


def label_thresholds(task: str, thresholds: Sequence[float] | None, num_labels: int) -> tuple[float, ...] | None:
    """Each label's threshold for a multi-label package (the default where config.json gives none); None for a
    single-label one."""
    if task != TASK_MULTI:
        return None
    return tuple(thresholds) if thresholds is not None else (DEFAULT_THRESHOLD,) * num_labels
