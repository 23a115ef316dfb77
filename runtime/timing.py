"""Timing and judging it: latency summaries, calls timed after a warm-up by time, paired interleaved timings of
several callables, and a paired bootstrap ratio with its verdict against a goal (``met``, ``not met``,
``inconclusive``). Used by :mod:`edgedistill.runtime.bench` and the benchmarks; numpy and the standard library only."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def summarize(times_s: Sequence[float], batch: int) -> dict[str, Any]:
    """p50 / p90 / p99 / mean per-call latency in ms and throughput in texts per second."""
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {"runs": int(ms.size), "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
            "throughput_per_s": float(batch * ms.size / (ms.sum() / 1e3))}


VERDICTS = ("met", "not met", "inconclusive")
OVERHEAD_GOAL = 1.05
"""The runtime's goal: a call costs at most this many times a bare session's on the same ids (under 5% overhead)."""


def paired_ratio(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, resamples: int = 4000,
                 seed: int = 0) -> dict[str, Any]:
    """How many times ``b`` a costs, from paired timings (``a[i]`` and ``b[i]`` measured next to each other).

    The estimate is the geometric mean of the per-pair ratios ``a[i] / b[i]`` (a slow-down of the machine that
    hits both calls of a pair cancels out); the interval is a percentile bootstrap over the pairs (resampled
    whole, ``resamples`` times, seeded: the same samples give the same interval). For throughputs pass the
    times the other way round: ``paired_ratio(t_other, t_mine)`` is how many times the other's speed mine is.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired samples need two 1-D sequences of one length, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError(f"{a.size} pair(s): an interval needs at least 2")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0)):
        raise ValueError("paired samples must be finite and > 0 (times or rates)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: must be between 0 and 1")
    if not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples={resamples!r}: must be an int >= 100")
    logs = np.log(a / b)
    rng = np.random.default_rng(seed)
    means = np.concatenate([logs[rng.integers(0, logs.size, size=(k, logs.size))].mean(axis=1)
                            for k in np.diff(np.r_[0:resamples:256, resamples])])  # in chunks: bounded memory
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"ratio": float(np.exp(logs.mean())), "low": float(np.exp(low)), "high": float(np.exp(high)),
            "confidence": confidence, "pairs": int(a.size),
            "method": f"geometric mean of paired ratios, {confidence:.0%} percentile bootstrap ({resamples} resamples)"}


def verdict(interval: Mapping[str, float], target: float, better: str) -> str:
    """Whether a goal on a ratio holds, from its interval (:func:`paired_ratio`): ``met`` only when the whole
    interval meets ``target``, ``not met`` when none of it does, else ``inconclusive`` (more pairs, or a
    quieter machine, would tell). ``better`` is ``"lower"`` (a goal ``ratio <= target``) or ``"higher"``."""
    if better == "lower":
        return "met" if interval["high"] <= target else "not met" if interval["low"] > target else "inconclusive"
    if better == "higher":
        return "met" if interval["low"] >= target else "not met" if interval["high"] < target else "inconclusive"
    raise ValueError(f"better={better!r}: choose lower or higher")


def overall_verdict(verdicts: Iterable[str]) -> str:
    """A goal made of several parts: met when every part is, not met when any part is not, else inconclusive."""
    verdicts = list(verdicts)
    if not verdicts or any(v not in VERDICTS for v in verdicts):
        raise ValueError(f"verdicts={verdicts!r}: a non-empty list of {VERDICTS}")
    return "met" if all(v == "met" for v in verdicts) else "not met" if "not met" in verdicts else "inconclusive"


def paired_latency(fns: dict[str, Any], texts: list[str], repeats: int = 2) -> dict[str, float]:
    """Batch-1 p50 in ms of each ``fns[name](text)``, timed interleaved (text by text, model by model, the order
    reversed every other round) so that a machine's drift touches every model alike; a warm-up first. Each timed
    call follows an untimed one of the same model: torch's and onnxruntime's worker threads spin for a while
    after a call and would otherwise slow whichever engine runs next (as in benchmarks/suite.py)."""
    for fn in fns.values():
        for t in texts[:3]:
            fn(t)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns.items())
    for r in range(repeats):
        for t in texts:
            for name, fn in (order if r % 2 == 0 else order[::-1]):
                fn(t)
                t0 = time.perf_counter()
                fn(t)
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.percentile(v, 50) * 1e3) for name, v in times.items()}


def time_calls(fn: Any, warmup_s: float, measure_s: float, min_runs: int, max_runs: int) -> list[float]:
    """Call ``fn()`` for ``warmup_s`` untimed (at least once), then time calls for ``measure_s``."""
    end = time.perf_counter() + warmup_s
    fn()
    while time.perf_counter() < end:
        fn()
    times: list[float] = []
    end = time.perf_counter() + measure_s
    while (time.perf_counter() < end or len(times) < min_runs) and len(times) < max_runs:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times
