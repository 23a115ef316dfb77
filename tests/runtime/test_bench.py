"""edgedistill.runtime.bench and `edgedistill bench`, on the tiny package (the statistics it reports:
test_timing.py; the benchmarks/ scripts: tests/benchmarks/).

No timing thresholds: the tests check structure (every row there, percentiles ordered, inputs of
exactly the asked length, the environment recorded) and the typed error for a missing provider.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgedistill.runtime.bench import (BenchConfig, bench, exact_length_texts, markdown_table, merge, read_json,
                                       write_json)

REPO = Path(__file__).resolve().parents[2]
ENV_FIELDS = {"cpu", "machine", "isa", "cpu_flags", "avx2", "avx512_vnni", "amx", "dotprod", "i8mm", "physical_cores",
              "logical_cpus", "available_cpus", "os", "python", "onnxruntime", "provider", "threads"}


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
