"""edgedistill.runtime.bench, `edgedistill bench` and the physical-limit helpers of benchmarks/, on the tiny package.

No timing thresholds: the tests check structure (every row there, percentiles ordered, inputs of
exactly the asked length, the environment recorded), the typed error for a missing provider, and
the multiply-add count of the tiny BERT against a hand computation.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.runtime.bench import (BenchConfig, bench, exact_length_texts, markdown_table, merge, read_json,
                                       write_json)
from edgedistill.runtime.timing import overall_verdict, paired_ratio, summarize, verdict

REPO = Path(__file__).resolve().parents[2]
ENV_FIELDS = {"cpu", "machine", "isa", "cpu_flags", "avx2", "avx512_vnni", "amx", "dotprod", "i8mm", "physical_cores",
              "logical_cpus", "available_cpus", "os", "python", "onnxruntime", "provider", "threads"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def result(tiny_package):
    cfg = BenchConfig.quick(threads=(1, 2), lengths=(16, 32, 64, 128), batches=(1, 8, 32), measure_s=0.05,
                            min_runs=3)
    return bench(tiny_package, cfg)


def test_every_row_with_ordered_percentiles_and_environment(result):
    # the tiny package's max_length is 64: 128 is capped to it (and 64 is not measured twice)
    assert result["max_length"] == 64 and result["capped_lengths"] == [128]
    keys = [(r["threads"], r["length"], r["batch"]) for r in result["rows"]]
    assert sorted(keys) == sorted(itertools.product((1, 2), (16, 32, 64), (1, 8, 32)))
    for r in result["rows"]:
        assert r["runs"] >= 3
        assert 0 < r["min_ms"] <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput_per_s"] > 0
        assert ENV_FIELDS <= set(r["env"]), ENV_FIELDS - set(r["env"])
        assert r["env"]["threads"] == r["threads"] and r["env"]["provider"] == "CPUExecutionProvider"
    assert result["device"] == f"cpu-{result['environment']['machine']}"
    assert result["model_bytes"] > 0 and result["package_bytes"] >= result["model_bytes"]
    cold = result["cold_start"]
    assert cold["import_s"] > 0 and cold["load_s"] > 0 and cold["first_predict_s"] > 0
    assert cold["peak_rss_mb"] > 10 and cold["torch_imported"] is False  # the runtime alone, no torch
    assert result["memory"]["bench_process_peak_rss_mb"] >= 1


def test_inputs_have_exactly_the_asked_token_count(tiny_package):
    from edgedistill.runtime import TextClassifier

    clf = TextClassifier.load(tiny_package)
    for length in (2, 5, 16, 63, 64):
        texts = exact_length_texts(clf, length, 6)
        if length > 8:  # long enough for the texts to differ: each starts at another word
            assert len(set(texts)) == 6
        for t in texts:  # one at a time: no padding can hide a short text
            assert clf.tokenize([t])["input_ids"].shape == (1, length)
    with pytest.raises(ValueError, match="max_length"):
        exact_length_texts(clf, 65, 1)


def test_summarize_percentiles_and_throughput():
    s = summarize([0.001, 0.002, 0.003, 0.010], batch=4)
    assert s["runs"] == 4 and s["p50_ms"] == pytest.approx(2.5)
    assert s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= 10.0
    assert s["throughput_per_s"] == pytest.approx(16 / 0.016)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="threads"):
        BenchConfig(threads=(0,))
    with pytest.raises(ValueError, match="lengths"):
        BenchConfig(lengths=())
    with pytest.raises(ValueError, match="provider"):
        BenchConfig(provider="tpu")
    with pytest.raises(ValueError, match="max_runs"):
        BenchConfig(min_runs=10, max_runs=5)
    assert BenchConfig().threads[0] == 1


@pytest.mark.skipif(_has_cuda(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_typed_error(tiny_package):
    from edgedistill.runtime.errors import ProviderUnavailableError

    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider"):
        bench(tiny_package, BenchConfig.quick(provider="cuda"))


@pytest.mark.skipif(_has_cuda(), reason="CUDA is available here")
def test_cli_cuda_without_cuda_is_one_line_and_exit_1(tiny_package):
    from edgedistill.compress.cli import app

    out = CliRunner().invoke(app, ["bench", str(tiny_package), "--provider", "cuda", "--quick"])
    assert out.exit_code == 1
    assert "CUDAExecutionProvider not available" in out.output and "Traceback" not in out.output


def test_cli_prints_a_table_and_writes_json(tiny_package, tmp_path):
    from edgedistill.compress.cli import app

    dest = tmp_path / "bench.json"
    out = CliRunner().invoke(app, ["bench", str(tiny_package), "--quick", "--threads", "1", "--lengths", "16,32",
                                   "--batches", "1,4", "--cold-starts", "0", "--seconds", "0.05", "-o", str(dest)])
    assert out.exit_code == 0, out.output
    assert "p50 ms" in out.output and "texts/s" in out.output
    data = read_json(dest)
    assert {(r["length"], r["batch"]) for r in data["rows"]} == {(16, 1), (16, 4), (32, 1), (32, 4)}
    assert data["cold_start"] is None
    bad = CliRunner().invoke(app, ["bench", str(tiny_package), "--threads", "one"])
    assert bad.exit_code != 0 and "comma-separated" in bad.output


def test_results_merge_by_device_and_render(result, tmp_path):
    arm = json.loads(json.dumps(result))
    arm["device"], arm["environment"]["machine"] = "cpu-aarch64", "aarch64"
    path = write_json(arm, tmp_path / "arm.json")
    merged = merge([result, read_json(path)])
    assert set(merged["devices"]) == {result["device"], "cpu-aarch64"}
    assert "| threads | tokens | batch |" in markdown_table(result)
    assert f"int8 instruction set {result['environment']['isa']}," in markdown_table(result)
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="not an edgedistill-bench result"):
        read_json(tmp_path / "bad.json")


def test_gemm_peak_is_positive():
    peak = _load("gemm_peak").gemm_peak(threads=1, n=128, seconds=0.1)
    assert peak["peak_gflops"] > 0 and peak["int8_peak_gops"] > 0
    assert set(peak["engines"]) == {"numpy", "onnxruntime", "onnxruntime-int8"}
    assert {k: e["dtype"] for k, e in peak["engines"].items()} == {"numpy": "fp32", "onnxruntime": "fp32",
                                                                   "onnxruntime-int8": "int8"}
    assert peak["int8_peak_gops"] == peak["engines"]["onnxruntime-int8"]["gflops_best"]
    assert peak["peak_gflops"] == max(peak["engines"][k]["gflops_best"] for k in ("numpy", "onnxruntime"))
    assert all(e["gflops_best"] >= e["gflops_median"] > 0 for e in peak["engines"].values())


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


def test_macs_of_the_tiny_bert_equal_a_hand_count(tiny_package):
    gp = _load("gemm_peak")
    length, hidden, inter, layers, labels = 16, 32, 64, 2, 2
    per_layer = (3 * length * hidden * hidden      # Q, K, V projections
                 + length * length * hidden        # scores: heads x (L x d) @ (d x L)
                 + length * length * hidden        # context: heads x (L x L) @ (L x d)
                 + length * hidden * hidden        # attention output projection
                 + length * hidden * inter         # feed-forward up
                 + length * inter * hidden)        # feed-forward down
    by_hand = layers * per_layer + hidden * hidden + hidden * labels  # + pooler (first token) + classifier
    assert by_hand == 296_000
    counted = gp.graph_macs(tiny_package / "model.onnx", length)
    assert counted["macs"] == by_hand
    assert gp.analytic_macs(layers, hidden, inter, length, labels) == by_hand
    config = {"num_hidden_layers": layers, "hidden_size": hidden, "intermediate_size": inter,
              "id2label": {"0": "negative", "1": "positive"}}
    assert gp.config_macs(config, length) == by_hand
    assert gp.graph_macs(tiny_package / "model.onnx", 32)["macs"] == gp.analytic_macs(layers, hidden, inter, 32, labels)


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
    suite = _load("suite")
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
    suite = _load("suite")
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


def test_bench_command_never_imports_torch(tiny_package):
    import subprocess

    code = ("import sys; from typer.testing import CliRunner; from edgedistill.compress.cli import app; "
            f"r = CliRunner().invoke(app, ['bench', {str(tiny_package)!r}, '--quick', '--threads', '1', "
            "'--lengths', '16', '--batches', '1', '--cold-starts', '0', '--seconds', '0.02']); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_suite_bare_row_scores_its_own_outputs(tiny_onnx_dir):
    """The bare session's macro-F1 comes from its own logits on the test split, never from the row it shadows."""
    from edgedistill.compress.data import Split
    from edgedistill.compress.evaluate import evaluate_package
    from tests.helpers import make_sentences

    suite = _load("suite")
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


def test_ladder_scores_the_model2vec_peer_from_its_own_probabilities():
    """The peer hands back probabilities (columns in its own class order); macro-F1 is computed here."""
    from edgedistill.compress.data import LabelledData, Split
    from edgedistill.compress.evaluate import compute_metrics

    ladder = _load("ladder")
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
    ladder = _load("ladder")
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
def test_arm64_check_names_the_package_it_checked_by_manifest_hash(tiny_package, tmp_path):
    """benchmarks/arm64/check.py's report says which package it vouches for: path, manifest sha256, model sha256."""
    import hashlib
    import shutil

    spec = importlib.util.spec_from_file_location("arm64_check", REPO / "benchmarks" / "arm64" / "check.py")
    check = importlib.util.module_from_spec(spec)
    sys.modules["arm64_check"] = check  # its dataclasses look their module up
    spec.loader.exec_module(check)
    assert check.DEFAULT_CPUS == ("cortex-a72", "neoverse-n1", "neoverse-v1")  # all three unless --cpu says fewer
    manifest = (tiny_package / "manifest.json").read_bytes()
    described = check.describe_package(tiny_package)
    assert described == {"path": str(tiny_package), "variant": "fp32",
                         "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                         "model_sha256": json.loads(manifest)["files"]["model.onnx"]["sha256"]}
    zipped = Path(shutil.make_archive(str(tmp_path / "pkg"), "zip", tiny_package))
    assert check.describe_package(zipped)["manifest_sha256"] == described["manifest_sha256"]


def test_runtime_session_stops_spinning_after_a_call():
    """onnxruntime's workers otherwise spin for tens of ms after each run, slowing the next engine or the caller."""
    import onnxruntime as ort

    from edgedistill.runtime.classifier import _session_options

    so = _session_options(2)
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"
    assert so.intra_op_num_threads == 2 and so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_suite_interleave_shuffles_rows_and_pairs_calls_by_round(tiny_onnx_dir):
    """Every row once a round, a new seeded order each round (no row always first or last), an untimed call of the
    same row before each timed one, and the i-th times of two rows from the same round."""
    suite = _load("suite")
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
    suite = _load("suite")
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
