"""Temperature scaling: one number ``T > 0`` so that ``softmax(logits / T)`` means what it says.

A distilled student often ships confidences that do not track its accuracy: right labels with top scores of
0.3, or scores of 0.99 on texts it gets wrong a tenth of the time. :func:`calibrate` fits ``T`` on held-out
logits (the validation split) by minimising the mean negative log-likelihood, and reports the expected
calibration error (15 equal-width bins on the top-class confidence, :func:`edgedistill.compress.evaluate
.expected_calibration_error`) before and after. Dividing every logit of a row by the same ``T > 0`` keeps
their order, so no label ever changes.

The fit is a golden-section search on ``log T`` in ``[log T_MIN, log T_MAX]``: deterministic, numpy only.
The NLL is convex in ``1/T`` (a log-sum-exp of functions linear in it), hence unimodal in ``log T``, so the
search finds its minimum.

A split the model gets (nearly) all right has no such minimum: the NLL keeps falling as ``T`` shrinks and
every score would become 1.0, a certainty no finite split shows. So ``T`` is never below the one at which
the mean top-class confidence equals the rule-of-succession accuracy ``(correct + 1) / (n + 2)``
(:attr:`Calibration.capped` says when that bound decided; near the NLL's minimum it moves ``T`` only slightly).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgedistill.compress.errors import DataError
from edgedistill.compress.evaluate import ECE_BINS, align_columns, expected_calibration_error

log = logging.getLogger(__name__)

T_MIN, T_MAX = 0.01, 100.0
"""The temperatures searched: logits scaled by up to 100 or down to a hundredth."""
_STEPS = 80  # golden-section steps: the bracket shrinks by 0.618 each, to ~1e-16 of log(T_MAX / T_MIN)
_GOLDEN = (math.sqrt(5) - 1) / 2


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` per row, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels ``y`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def _check(logits: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if logits.ndim != 2 or logits.shape[1] < 2 or len(logits) != len(y):
        raise DataError(f"logits of shape {logits.shape} do not match {len(y)} labels over at least 2 classes")
    if len(y) == 0:
        raise DataError("nothing to calibrate on: no texts")
    if y.min() < 0 or y.max() >= logits.shape[1]:
        raise DataError(f"label ids must be in [0, {logits.shape[1]}); got {int(y.min())}..{int(y.max())}")
    if not np.isfinite(logits).all():
        raise DataError("the logits hold NaN or infinity; the model is broken, not miscalibrated")
    return logits, y


def _mean_confidence(logits: np.ndarray, temperature: float) -> float:
    return float(softmax(logits, temperature).max(axis=1).mean())


def confidence_floor(logits: Any, y: Any) -> float:
    """The smallest ``T`` whose mean top-class confidence is at most ``(correct + 1) / (n + 2)``: the accuracy a
    split of ``n`` texts with ``correct`` right can vouch for (each row's top score falls as ``T`` grows)."""
    logits, y = _check(logits, y)
    target = (float((logits.argmax(1) == y).sum()) + 1) / (len(y) + 2)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    if _mean_confidence(logits, T_MIN) <= target:
        return T_MIN
    for _ in range(_STEPS):  # bisection on log T: the mean confidence falls as T grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mean_confidence(logits, math.exp(mid)) > target else (lo, mid)
    return math.exp(hi)


def fit_temperature(logits: Any, y: Any) -> float:
    """The ``T`` in ``[T_MIN, T_MAX]`` that minimises :func:`nll` of ``softmax(logits / T)`` (before the
    :func:`confidence_floor` that :func:`calibrate` applies)."""
    logits, y = _check(logits, y)
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = nll(logits, y, math.exp(a)), nll(logits, y, math.exp(b))
    for _ in range(_STEPS):
        if fa <= fb:  # the minimum is in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = nll(logits, y, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = nll(logits, y, math.exp(b))
    return math.exp((lo + hi) / 2)


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did on the texts it was fitted on."""

    temperature: float
    n: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    capped: bool = False
    """The NLL's minimum lies below the :func:`confidence_floor` (always so when a split is all right), so ``T`` is
    the floor: on average, scores claim the rule-of-succession accuracy and no more."""
    bins: int = ECE_BINS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"temperature {self.temperature:.4g} on {self.n} texts: ECE {self.ece_before:.4f} -> "
                f"{self.ece_after:.4f}, NLL {self.nll_before:.4f} -> {self.nll_after:.4f}"
                + (" (capped: the split is nearly all right, so scores claim no more than its accuracy)"
                   if self.capped else ""))


def calibrate(logits: Any, y: Any) -> Calibration:
    """Fit the temperature on ``logits`` ``(n, classes)`` and true label ids ``y`` (in the logits' column order)."""
    logits, y = _check(logits, y)
    fitted, floor = fit_temperature(logits, y), confidence_floor(logits, y)
    t = max(fitted, floor)
    if floor > fitted:
        log.info("temperature %.4g minimises the NLL but makes scores surer than %d texts can show; using %.4g, "
                 "at which the mean confidence is the rule-of-succession accuracy", fitted, len(y), floor)
    return Calibration(temperature=t, n=len(y), ece_before=ece(logits, y), ece_after=ece(logits, y, t),
                       nll_before=nll(logits, y), nll_after=nll(logits, y, t), capped=floor > fitted)


def model_label_ids(y: Any, data_labels: Sequence[str], model_labels: Sequence[str]) -> np.ndarray:
    """Label ids of the data (``data_labels`` order) as the model's logit columns (matched by name, as every
    evaluation matches them: :func:`edgedistill.compress.evaluate.align_columns`)."""
    k = len(data_labels)
    to_model = align_columns(np.arange(k)[None, :], model_labels, data_labels)[0]
    return to_model[np.asarray(y, dtype=np.int64)]


def ece(logits: Any, y: Any, temperature: float = 1.0) -> float:
    """Expected calibration error (15 bins, top-class confidence) of ``softmax(logits / temperature)``."""
    return expected_calibration_error(np.asarray(y, dtype=np.int64), softmax(logits, temperature))
