"""A package's probabilities from its logits, numpy only: :func:`softmax` for a single-label model, :func:`sigmoid`
for a multi-label one (:mod:`edgedistill.runtime.tasks` says which). The runtime and the toolchain's evaluations
both call these, so that a score means the same in both."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """A single-label model's probabilities, float32, per row (the toolchain's torch evaluations use it too)."""
    e = np.asarray(logits).astype(np.float32)  # a copy: the exp happens in place
    e -= e.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """A multi-label model's probabilities, float32 (no exp overflows; the toolchain's evaluations use it too)."""
    logits = np.asarray(logits)
    e = np.exp(-np.abs(logits))
    return (np.where(logits >= 0, 1, e) / (1 + e)).astype(np.float32, copy=False)
