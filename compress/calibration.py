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


# ------------------------------------------------------------------------ per-class decision biases
BIAS_GRID = np.linspace(-4.0, 4.0, 33)
"""The values a class's bias takes in the search: log-odds steps of 0.25 (a bias of 4 multiplies a class's
odds by about 55)."""
_BIAS_PASSES = 3


@dataclass(frozen=True)
class BiasFit:
    """Per-class decision biases (logit adjustment) and whether they earned their place on validation."""

    biases: tuple[float, ...] | None
    """Added to ``logits / temperature`` before the softmax; None: not shipped."""
    macro_f1_before: float
    macro_f1_after: float
    heldout_gain: float
    """Mean macro-F1 gain of biases fitted on one half of the split, scored on the other half (both ways)."""
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if self.biases is None:
            return (f"no class biases: fitted on half the validation split they gained {self.heldout_gain:+.4f} "
                    f"macro-F1 on the other half")
        return (f"class biases raise validation macro-F1 {self.macro_f1_before:.4f} -> {self.macro_f1_after:.4f} "
                f"(held-out gain {self.heldout_gain:+.4f})")


def macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro-F1 over the classes present in ``y`` or ``pred`` (sklearn's ``average='macro'``), numpy only."""
    tp = np.bincount(y[pred == y], minlength=k).astype(np.float64)
    n_true, n_pred = np.bincount(y, minlength=k), np.bincount(pred, minlength=k)
    seen = (n_true + n_pred) > 0
    f1 = np.where(seen, 2 * tp / np.maximum(n_true + n_pred, 1), 0.0)
    return float(f1[seen].mean()) if seen.any() else 0.0


def _search_biases(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coordinate ascent: 1) each class in turn takes the grid value that maximises macro-F1 with the others held;
    2) a tie keeps the value closest to 0 (no change without a gain); 3) a few passes, or until nothing moves."""
    k = scores.shape[1]
    b = np.zeros(k)
    best = macro_f1(y, scores.argmax(1), k)
    order = np.argsort(np.abs(BIAS_GRID), kind="stable")  # 0 first, then the smallest moves
    for _ in range(_BIAS_PASSES):
        moved = False
        for c in range(k):
            keep = b[c]
            for v in BIAS_GRID[order]:
                b[c] = v
                f = macro_f1(y, (scores + b).argmax(1), k)
                if f > best + 1e-12:
                    best, keep, moved = f, v, True
            b[c] = keep
        if not moved:
            break
    return b


def fit_biases(logits: Any, y: Any, temperature: float = 1.0, *, seed: int = 0, min_gain: float = 0.0) -> BiasFit:
    """Per-class biases on ``logits / temperature`` that maximise macro-F1 on ``(logits, y)``, shipped only when
    biases fitted on one half of the split raise macro-F1 on the other half (both ways, mean gain > ``min_gain``):
    a search over ``k`` biases can always raise the macro-F1 of the texts it searched on, so only a held-out gain
    says they will help on new texts. The halves are stratified by class, seeded."""
    logits, y = _check(logits, y)
    scores = logits / temperature
    k = scores.shape[1]
    before = macro_f1(y, scores.argmax(1), k)
    rng = np.random.default_rng(seed)
    half = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        half[idx[: len(idx) // 2]] = True
    gains = []
    for fit_on in (half, ~half):
        if fit_on.sum() == 0 or (~fit_on).sum() == 0:
            continue
        b = _search_biases(scores[fit_on], y[fit_on])
        other = ~fit_on
        gains.append(macro_f1(y[other], (scores[other] + b).argmax(1), k)
                     - macro_f1(y[other], scores[other].argmax(1), k))
    heldout = float(np.mean(gains)) if gains else 0.0
    if heldout <= min_gain:
        return BiasFit(None, before, before, heldout, len(y))
    b = _search_biases(scores, y)
    return BiasFit(tuple(float(v) for v in b), before, macro_f1(y, (scores + b).argmax(1), k), heldout, len(y))
