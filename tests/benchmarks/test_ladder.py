"""benchmarks/ladder.py: a peer's macro-F1 scored from its own probabilities, and a self-timed peer timed by the
seconds it reports."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import load_benchmark


def test_ladder_scores_the_model2vec_peer_from_its_own_probabilities():
    """The peer hands back probabilities (columns in its own class order); macro-F1 is computed here."""
    from edgedistill.compress.data import LabelledData, Split
    from edgedistill.compress.evaluate import compute_metrics

    ladder = load_benchmark("ladder")
    names = ["negative", "neutral", "positive"]
    split = Split(["a", "b", "c", "d", "e", "f"], [0, 1, 2, 0, 1, 2])
    data = LabelledData("d", names, split, split, split)
    # the peer's columns are alphabetical by accident of its encoder: positive, negative, neutral
    probs = [[0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.7, 0.2, 0.1], [0.9, 0.05, 0.05]]
    given = {"classes": ["positive", "negative", "neutral"], "probs": probs}
    row = ladder.score_peer({"model": "m2v", "latency_p50_ms": 1.0, "test": given, "validation": given}, data)
    in_order = np.asarray(probs)[:, [1, 2, 0]]  # negative, neutral, positive
    expected = compute_metrics(split.labels, in_order, names).macro_f1
    assert row["macro_f1"] == row["validation_macro_f1"] == pytest.approx(expected)
    assert 0 < expected < 1 and "test" not in row and row["latency_p50_ms"] == 1.0


def test_ladder_times_a_self_timed_peer_by_the_seconds_it_reports(tmp_path):
    """The optimum peer times each call in its own process: the ladder's timings take those seconds, not the clock
    around the round trip; without .venv-peers its row is None (a note in the report), and the peer answers a
    preset optimum does not have, or a ``run`` before ``load``, with an error."""
    ladder = load_benchmark("ladder")
    calls: list[list[str]] = []

    def peer(texts: list[str]) -> float:
        calls.append(texts)
        return 0.25 * len(texts)  # a quarter second a text, whatever the clock says

    texts = [f"t{i}" for i in range(64)]
    p50, per_s = ladder.timings(peer, texts, n_one=10, seconds=0.01, self_timed=True)
    assert p50 == pytest.approx(250.0) and per_s == pytest.approx(4.0)
    assert {len(c) for c in calls} == {1, 32}
    assert ladder.timings(peer, texts, n_one=10, seconds=0.01)[1] > 4.0  # the clock: no sleeping in there

    assert ladder.optimum_row(None, None, texts, tmp_path / "no-python") is None
    proc = ladder.PeerProcess(Path(sys.executable), ladder.OPTIMUM_PEER)
    try:
        with pytest.raises(ladder.PeerError, match="before 'load'"):
            proc.call(cmd="run", texts=["a"])
        with pytest.raises(ladder.PeerError, match="quantize: ValueError: preset 'avx512'"):
            proc.call(cmd="quantize", model=str(tmp_path), out=str(tmp_path), preset="avx512")
    finally:
        proc.close()
    assert proc.proc.returncode == 0

    given = {"classes": ["b", "a"], "probs": [[0.9, 0.1], [0.2, 0.8]]}
    from edgedistill.compress.data import LabelledData, Split

    split = Split(["x", "y"], [1, 0])
    row = ladder.score_peer({"test": given}, LabelledData("d", ["a", "b"], split, split, split))
    assert row == {"macro_f1": 1.0}
