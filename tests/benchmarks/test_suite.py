"""benchmarks/suite.py: ratios, goals judged by paired intervals, the report, the optimum peer in its own
environment, the bare session's own scores, interleaved rounds, and a smoke run on the tiny build (no timing
thresholds)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import load_benchmark


def _row(name, p50, thr, stream, f1, size=1e6, variant=None, macs=10**9):
    stats = lambda p: {"p50_ms": p, "p90_ms": p * 1.1, "p99_ms": p * 1.2}  # noqa: E731
    return {"name": name, "variant": variant, "engine": "x", "file": None, "size_bytes": size, "macro_f1": f1,
            "f1_source": "test", "macs_per_sequence": macs, "batch1": stats(p50),
            "batch32": {**stats(p50 * 20), "throughput_per_s": thr}, "stream": {"throughput_per_s": stream}}


def _round_samples(seconds: dict[str, float], n: int, noise: float = 0.02, seed: int = 0) -> dict[str, list[float]]:
    """Per-row call times of ``n`` interleaved rounds: each row's typical time x the round's drift x its own noise."""
    rng = np.random.default_rng(seed)
    drift = rng.lognormal(0.0, 0.3, n)
    return {name: list(t * drift * rng.lognormal(0.0, noise, n)) for name, t in seconds.items()}


def _goal_samples(runtime: float, bare: float, optimum: float, n: int = 200, noise: float = 0.02, seed: int = 0):
    names = ("student ONNX int8-dynamic", "bare onnxruntime session", "optimum pipeline")
    return {"rows": list(names), **{kind: _round_samples(dict(zip(names, (runtime * k, bare * k, optimum * k))), n,
                                                         noise, seed + i)
                                    for i, (kind, k) in enumerate((("one", 1), ("many", 20), ("stream", 40)))}}


def test_suite_ratios_goals_and_report(tmp_path):
    suite = load_benchmark("suite")
    result = {"device": "cpu-test", "created": "now", "batch": 32, "length": 128, "dataset": "d", "test_texts": 100,
              "stream_texts": 256, "stream_tokens_mean": 30.0, "peer_row": "student ONNX int8-dynamic",
              "peer_file": "model_int8_dynamic.onnx",
              "gemm": {"n": 1024, "threads": 2, "peak_gflops": 100.0, "int8_peak_gops": 400.0, "engines": {
                  "numpy": {"gflops_best": 90.0, "gflops_median": 80.0, "dtype": "fp32"},
                  "onnxruntime-int8": {"gflops_best": 400.0, "gflops_median": 380.0, "dtype": "int8"}}},
              "samples": {"one": _round_samples({suite.TEACHER: 0.200, "student ONNX int8-dynamic": 0.008}, 100)},
              "goal_samples": _goal_samples(0.0080, 0.0078, 0.0120),
              "macs": {"teacher": 10**10, "student": 10**9},
              "environment": {"cpu": "cpu", "threads": 2, "os": "os", "python": "3", "onnxruntime": "1",
                              "isa": "avx2", "cpu_flags": ["avx2"]},
              "load_average": {"before": None, "after": None}, "notes": [], "results_root": str(tmp_path),
              "rows": [_row(suite.TEACHER, 200.0, 5.0, 10.0, 0.90, 4e8, macs=10**10),
                       _row("student ONNX int8-dynamic", 8.0, 150.0, 600.0, 0.88, 2e7, "int8-dynamic"),
                       _row(suite.BARE, 7.8, 152.0, 610.0, 0.88, 2e7, "int8-dynamic"),
                       _row(suite.OPTIMUM, 12.0, 100.0, 300.0, 0.88, 2e7, "int8-dynamic")]}
    suite.add_ratios(result)
    rows = {r["name"]: r for r in result["rows"]}
    int8 = rows["student ONNX int8-dynamic"]
    assert int8["ratios"]["speedup_vs_teacher_batch1_p50"] == pytest.approx(25.0)
    assert int8["ratios"]["throughput_vs_optimum"] == pytest.approx(1.5)
    assert int8["peak_dtype"] == "int8" and rows[suite.TEACHER]["peak_dtype"] == "fp32"
    assert int8["peak_fraction_batch1"] == pytest.approx(2 * 10**9 / 0.008 / 1e9 / 400.0)  # the int8 peak
    assert rows[suite.TEACHER]["peak_fraction_batch1"] == pytest.approx(2 * 10**10 / 0.2 / 1e9 / 100.0)
    goals = {g["goal"].split(" ")[0]: g for g in result["goals"]}
    assert goals["int8"]["verdict"] == "met" and goals["int8"]["macro_f1_ratio"] == pytest.approx(0.88 / 0.90)
    assert goals["int8"]["speedup"]["low"] >= 20  # 25x, judged by the interval's lower bound
    assert goals["runtime"]["verdict"] == "met" and goals["runtime"]["throughput_batch32"]["low"] >= 1.3  # 1.5x
    assert goals["runtime"]["latency_batch1_vs_optimum"]["ratio"] == pytest.approx(8 / 12, rel=0.02)
    under = goals["under"]
    assert under["verdict"] == "met" and under["overhead_batch1_p50"] == pytest.approx(8.0 / 7.8 - 1)
    assert under["time_ratio_batch1"]["high"] <= 1.05 and under["time_ratio_batch1"]["pairs"] == 200
    result["goal_samples"] = _goal_samples(0.0080, 0.0070, 0.0120)  # 14% overhead now
    suite.add_ratios(result)
    assert {g["goal"].split(" ")[0]: g for g in result["goals"]}["under"]["verdict"] == "not met"
    result["goal_samples"] = _goal_samples(0.0080, 0.0077, 0.0120, n=12, noise=0.2, seed=5)  # 4%, too few pairs
    suite.add_ratios(result)
    under = {g["goal"].split(" ")[0]: g for g in result["goals"]}["under"]
    assert under["verdict"] == "inconclusive", under
    rows[suite.TEACHER]["macro_f1"] = 1.0  # 0.88 is 88% of the teacher: fast is not enough
    suite.add_ratios(result)
    assert {g["goal"].split(" ")[0]: g for g in result["goals"]}["int8"]["verdict"] == "not met"
    rows[suite.TEACHER]["macro_f1"] = 0.90
    result["goal_samples"] = _goal_samples(0.0080, 0.0070, 0.0120)
    suite.add_ratios(result)
    folder = suite.write_results(result, tmp_path)
    md = (folder / "suite.md").read_text()
    assert "| student ONNX int8-dynamic |" in md and "- **NOT met**: under 5% overhead" in md
    assert "- **met**: int8 student >= 20x faster" in md and "(200 pairs)" in md
    assert "int8 peak = 400.0 GOP/s" in md and " (int8) |" in md
    old = {**result, "goals": [{"goal": "under 5% overhead", "met": True}], "samples": None}  # an older result
    assert "- **met (one run, no interval)**: under 5% overhead" in suite.to_markdown(old)
    no_pairs = {**result, "samples": None, "goal_samples": None}
    suite.add_ratios(no_pairs)
    assert {g["verdict"] for g in no_pairs["goals"]} == {"not judged"}
    assert "int8 instruction set avx2 · CPU flags: avx2" in md
    assert (folder / "suite.png").stat().st_size > 1000 and json.loads((folder / "suite.json").read_text())["goals"]
    assert "In a browser" not in md  # no web_bench run in this folder yet
    web = {"package_name": "pkg", "variant": "int8-dynamic", "created": "2026-01-01T00:00:00", "parity":
           {"max_abs_diff": 0.01}, "rows": [
               {"runtime": "browser: transformers.js WASM", "threads": 2, "p50_ms": 16.5, "p90_ms": 27.0,
                "load_ms": 2300.0},
               {"runtime": "python: TextClassifier (onnxruntime CPU)", "threads": 2, "p50_ms": 7.0, "p90_ms": 10.0,
                "load_ms": 98.0}]}
    (folder / "web-pkg.json").write_text(json.dumps(web))
    # suite.json records a results root outside the repository by its name alone: say where it is, as
    # refresh_report does
    md = suite.to_markdown({**json.loads((folder / "suite.json").read_text()), "results_root": str(tmp_path)})
    assert "| pkg (int8-dynamic) | browser: transformers.js WASM | 2 | 16.50 | 27.00 | 2300 | 0.01 |" in md
    assert "| pkg (int8-dynamic) | python: TextClassifier (onnxruntime CPU) | 2 | 7.00 | 10.00 | 98 |  |" in md


def test_suite_optimum_peer_runs_elsewhere_or_says_it_was_skipped(tmp_path, tiny_onnx_dir):
    """The optimum peer lives in its own environment (`make peers`): without it the suite says so in a row and a
    goal; the child's protocol answers failures as JSON (here: this environment has no optimum to load)."""
    suite = load_benchmark("suite")
    proc = suite.PeerProcess(Path(sys.executable), suite.OPTIMUM_PEER)
    try:
        with pytest.raises(suite.PeerError, match="before 'load'"):
            proc.call(cmd="one", i=0)
        with pytest.raises(suite.PeerError, match="load: ModuleNotFoundError"):
            proc.call(cmd="load", onnx_dir=str(tiny_onnx_dir), file="model.onnx", threads=1, device="cpu",
                      max_length=64, batch=2, fixed=["a"], batches=[["a", "b"]], real=["a"])
    finally:
        proc.close()
    assert proc.proc.returncode == 0

    peer = suite.Row("student ONNX fp32", "runtime", str(tiny_onnx_dir / "model.onnx"), 1, 1, one=print, many=print,
                     stream=print, variant="fp32")
    missing = suite.Suite(suite.SuiteConfig(onnx_dir=str(tiny_onnx_dir), peers_python=str(tmp_path / "no-python")))
    assert missing.optimum_row(peer) is None
    assert missing.skipped == [{"name": suite.OPTIMUM,
                                "reason": f"skipped: run `make peers` (no {tmp_path / 'no-python'})"}]
    broken = suite.Suite(suite.SuiteConfig(onnx_dir=str(tiny_onnx_dir), peers_python=sys.executable))
    broken.fixed, broken.batches, broken.real = ["a"], [["a"]], ["a"]
    assert broken.optimum_row(peer) is None and broken.peer_processes[0].proc.poll() is not None
    assert broken.skipped[0]["reason"].startswith("skipped: the optimum peer failed: load: ModuleNotFoundError")

    result = {"batch": 32, "length": 128, "peer_row": peer.name, "skipped_rows": missing.skipped,
              "rows": [_row("student ONNX fp32", 8.0, 150.0, 600.0, 0.88, 2e7, "fp32"),
                       _row(suite.BARE, 7.8, 152.0, 610.0, 0.88, 2e7, "fp32")]}
    suite.add_ratios(result)
    assert "throughput_vs_optimum" not in result["rows"][0]["ratios"]
    goal = next(g for g in result["goals"] if "optimum" in g["goal"])
    assert goal["verdict"] == "not measured" and goal["skipped"].startswith("skipped: run `make peers`")
    result.update({"device": "cpu-test", "created": "now", "dataset": "d", "test_texts": 100, "stream_texts": 256,
                   "stream_tokens_mean": 30.0, "peer_file": "model.onnx", "gemm": None, "macs": {},
                   "environment": {"cpu": "cpu", "threads": 2, "os": "os", "python": "3", "onnxruntime": "1",
                                   "cpu_flags": []},
                   "load_average": {"before": None, "after": None}, "notes": [], "results_root": str(tmp_path)})
    md = suite.to_markdown(result)
    assert "| optimum pipeline | skipped: run `make peers`" in md and "optimum not run" in md
    assert "int8 instruction set unknown" in md  # a result from before the environment named it
    assert "- **not measured**: runtime >= 1.3x the optimum pipeline's throughput" in md


def test_suite_bare_row_scores_its_own_outputs(tiny_onnx_dir):
    """The bare session's macro-F1 comes from its own logits on the test split, never from the row it shadows."""
    from edgedistill.compress.data import Split
    from edgedistill.compress.evaluate import evaluate_package
    from tests.helpers import make_sentences

    suite = load_benchmark("suite")
    s = suite.Suite(suite.SuiteConfig(onnx_dir=str(tiny_onnx_dir), threads=1, batch=4))
    clf = s.classifier("fp32")
    texts = [t for t, _ in make_sentences(30, seed=2)]
    labels = clf.predict_proba(texts).argmax(axis=1)
    labels[:7] = 1 - labels[:7]  # 7 wrong of 30: a macro-F1 that is neither 0 nor 1
    s.test, s.labels, s.reference_clf = Split(texts, labels.tolist()), list(s.meta.labels), clf
    s.fixed, s.batches, s.real = texts[:2], [texts[:4]], texts[:8]
    peer = suite.Row("student ONNX fp32", "runtime", str(tiny_onnx_dir / "model.onnx"), 1, 1, one=print, many=print,
                     stream=print, variant="fp32", macro_f1=0.123)
    bare = s.bare_row(peer)
    expected = evaluate_package(clf, s.test, s.labels).macro_f1
    assert 0.3 < expected < 0.9
    assert bare.macro_f1 == pytest.approx(expected, abs=1e-9) and bare.f1_source.startswith("evaluated here")
    assert bare.one(0) is not None  # and it runs


def test_suite_interleave_shuffles_rows_and_pairs_calls_by_round(tiny_onnx_dir):
    """Every row once a round, a new seeded order each round (no row always first or last), an untimed call of the
    same row before each timed one, and the i-th times of two rows from the same round."""
    suite = load_benchmark("suite")
    s = suite.Suite(suite.SuiteConfig(onnx_dir=str(tiny_onnx_dir), warmup_s=0.0, cooldown_s=0.0, seed=7))
    calls: list[tuple[str, str, int]] = []

    def row(name: str, self_timed: bool = False):
        def make(kind):
            return lambda i: calls.append((name, kind, i)) or (0.5 if self_timed else None)
        return suite.Row(name, "x", None, 1, 1, one=make("one"), many=make("many"), stream=make("stream"),
                         self_timed=self_timed)

    s.rows = [row("a"), row("b"), row("c", self_timed=True)]
    times = s.interleave("many", 12)
    assert {k: len(v) for k, v in times.items()} == {"a": 12, "b": 12, "c": 12} and set(times["c"]) == {0.5}
    assert [c[1:] for c in calls[:3]] == [("many", 0)] * 3  # the warm-up: one call per row (warmup_s=0)
    untimed, timed = calls[3::2], calls[4::2]
    assert [(n, kind) for n, kind, _ in untimed] == [(n, "one") for n, _, _ in timed]  # each right before its own
    rounds = [[n for n, _, i in timed if i == r] for r in range(12)]
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds) and len(timed) == 36
    assert len({r[0] for r in rounds}) > 1 and len({r[-1] for r in rounds}) > 1 and len({tuple(r) for r in rounds}) > 2
    again = suite.Suite(suite.SuiteConfig(onnx_dir=str(tiny_onnx_dir), warmup_s=0.0, cooldown_s=0.0, seed=7))
    again.rows, before = s.rows, list(calls)
    calls.clear()
    again.interleave("many", 12)
    assert calls == before  # seeded: the same order again


def test_suite_runs_end_to_end_on_the_tiny_build(tiny_quantized_dir, tiny_csv, tmp_path):
    """A smoke run (seconds) of every pass: rows, the goals' paired pass, verdicts, the int8 peak, the report."""
    suite = load_benchmark("suite")
    cfg = suite.SuiteConfig(onnx_dir=str(tiny_quantized_dir), data=str(tiny_csv), threads=1, length=16, batch=4,
                            latency_rounds=3, batch_rounds=2, stream_rounds=2, stream_texts=8, goal_latency_rounds=6,
                            goal_rounds=3, warmup_s=0.0, cooldown_s=0.0, gemm_n=64,
                            peers_python=str(tmp_path / "no-python"), output=str(tmp_path))
    result = suite.Suite(cfg).run()
    rows = {r["name"]: r for r in result["rows"]}
    assert suite.BARE in rows and rows[suite.BARE]["f1_source"].startswith("evaluated here")
    assert result["goal_samples"]["rows"] == ["student ONNX fp32", suite.BARE]
    assert {len(v) for v in result["goal_samples"]["one"].values()} == {6}
    overhead = next(g for g in result["goals"] if g["goal"].startswith("under"))
    assert overhead["verdict"] in ("met", "not met", "inconclusive") and overhead["time_ratio_batch1"]["pairs"] == 6
    assert result["gemm"]["int8_peak_gops"] > 0 and rows["student ONNX int8-dynamic"]["peak_dtype"] == "int8"
    md = suite.to_markdown(result)
    assert "(6 pairs)" in md and "int8 peak =" in md
