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

How a text over ``max_length`` tokens is read is checked here too (:func:`long_texts_problem`): config.json's
``long_texts`` (``truncate``, ``head+tail`` or ``chunks``, :mod:`edgedistill.runtime.views`), and for ``chunks``
``chunk_stride`` and ``max_chunks``; a chunked text's probabilities are its windows' mean (multi-label: the maximum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from edgedistill.runtime.views import CHUNKS, LONG_TEXTS, TRUNCATE

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


def _count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def long_texts_problem(long_texts: Any, chunk_stride: Any, max_chunks: Any, max_length: Any,
                       whole_texts: bool = False) -> tuple[str, Any, str] | None:
    """The first thing wrong with config.json's ``long_texts``, ``chunk_stride`` and ``max_chunks`` as ``(field,
    value, why)``; None when they fit together and with ``max_length``. ``whole_texts``: the graph reads raw texts
    (the ``strings`` kind), so that only ``truncate``, the default, which then cuts nothing, is allowed.

    ``chunk_stride`` and ``max_chunks`` only matter for ``chunks``: elsewhere they are accepted if they are counts
    (the stride's bound, ``max_length - 2``, is only checked where it is used)."""
    if long_texts not in LONG_TEXTS:
        return "long_texts", long_texts, f"must be one of {', '.join(LONG_TEXTS)}"
    if whole_texts and long_texts != TRUNCATE:
        return "long_texts", long_texts, f"a graph of raw strings reads whole texts: only {TRUNCATE} (or absent)"
    if not _count(chunk_stride, 0):
        return "chunk_stride", chunk_stride, "must be an int >= 0 (tokens shared by neighbouring windows)"
    if not _count(max_chunks, 1):
        return "max_chunks", max_chunks, "must be an int >= 1 (windows read per text at most)"
    if long_texts == CHUNKS and _count(max_length, 0) and chunk_stride >= max_length - 2:
        return "chunk_stride", chunk_stride, f"must be < max_length - 2 = {max_length - 2} (a window's room)"
    return None


def long_texts_fields(long_texts: str, chunk_stride: int, max_chunks: int) -> dict[str, Any]:
    """What config.json holds of them: nothing for ``truncate`` (every package before the field reads the same),
    ``long_texts`` for ``head+tail``, and the stride and the cap too for ``chunks``."""
    if long_texts == TRUNCATE:
        return {}
    return {"long_texts": long_texts, **({"chunk_stride": chunk_stride, "max_chunks": max_chunks}
                                         if long_texts == CHUNKS else {})}
