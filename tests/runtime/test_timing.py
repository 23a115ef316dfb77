"""edgedistill.runtime.timing: percentiles and throughput, the paired ratio's interval, and the verdicts judged by
its bounds, on synthetic samples (no timing)."""

from __future__ import annotations

import numpy as np
import pytest

from edgedistill.runtime.timing import overall_verdict, paired_ratio, summarize, verdict


def test_summarize_percentiles_and_throughput():
    s = summarize([0.001, 0.002, 0.003, 0.010], batch=4)
    assert s["runs"] == 4 and s["p50_ms"] == pytest.approx(2.5)
    assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= 10.0
    assert s["throughput_per_s"] == pytest.approx(16 / 0.016)


def _pairs(ratio: float, n: int, noise: float, seed: int = 0) -> tuple[list[float], list[float]]:
    """Synthetic paired timings: b around 10 ms with machine drift shared by the pair, a = ratio x b x noise."""
    rng = np.random.default_rng(seed)
    b = 0.010 * rng.lognormal(0.0, 0.3, n)  # the drift of a shared machine: both calls of a pair see it
    return list(b * ratio * rng.lognormal(0.0, noise, n)), list(b)


def test_paired_ratio_recovers_the_ratio_and_its_interval_narrows_with_pairs():
    a, b = _pairs(1.02, 400, 0.03)
    ci = paired_ratio(a, b)
    assert ci["low"] < 1.02 < ci["high"] and ci["low"] <= ci["ratio"] <= ci["high"]
    assert ci["high"] - ci["low"] < 0.02 and ci["pairs"] == 400 and ci["confidence"] == 0.95
    few = paired_ratio(a[:20], b[:20])
    assert few["high"] - few["low"] > ci["high"] - ci["low"]
    assert paired_ratio(a, b) == ci  # seeded: the same samples give the same interval
    # the drift shared by a pair cancels: unpaired, this spread would swamp a 2% difference
    assert np.std(np.log(b)) > 10 * (ci["high"] - ci["low"])
    with pytest.raises(ValueError, match="one length"):
        paired_ratio(a, b[:-1])
    with pytest.raises(ValueError, match="> 0"):
        paired_ratio([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_ratio([1.0], [1.0])


def test_verdicts_on_synthetic_samples_met_not_met_inconclusive():
    """The overhead goal (a / b <= 1.05) and a throughput goal (>= 1.3x), judged by the interval's bound."""
    met = paired_ratio(*_pairs(1.01, 500, 0.02))              # 1% overhead, tight: the whole interval <= 1.05
    not_met = paired_ratio(*_pairs(1.12, 500, 0.02))          # 12%: the whole interval > 1.05
    unsure = paired_ratio(*_pairs(1.045, 30, 0.15, seed=3))   # 4.5% measured, but few noisy pairs straddle 1.05
    assert met["high"] <= 1.05 and verdict(met, 1.05, "lower") == "met"
    assert not_met["low"] > 1.05 and verdict(not_met, 1.05, "lower") == "not met"
    assert unsure["ratio"] < 1.05 < unsure["high"] and verdict(unsure, 1.05, "lower") == "inconclusive"
    # a point estimate below the goal is not enough: that was the old "met"
    fast = paired_ratio(*_pairs(1.6, 400, 0.05))               # throughput ratio: other's time / mine
    assert verdict(fast, 1.3, "higher") == "met" and verdict(met, 1.3, "higher") == "not met"
    assert verdict(paired_ratio(*_pairs(1.3, 30, 0.2, seed=1)), 1.3, "higher") == "inconclusive"
    assert overall_verdict(["met", "met"]) == "met"
    assert overall_verdict(["met", "inconclusive"]) == "inconclusive"
    assert overall_verdict(["inconclusive", "not met", "met"]) == "not met"
    with pytest.raises(ValueError):
        verdict(met, 1.05, "smaller")
    with pytest.raises(ValueError):
        overall_verdict([])
