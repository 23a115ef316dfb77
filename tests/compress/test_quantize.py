"""edgedistill.compress.quantize: fused and quantised graphs hold the expected operators; the gate rejects, falls back,
reports."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

import edgedistill.compress.quantize as q
from edgedistill.compress.data import DataConfig
from edgedistill.compress.quantize.gate import LATENCY_TIE, choose
from edgedistill.compress.quantize.report import Attempt
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.exportmeta import read_export, runtime_config
from edgedistill.compress.quantize import (QuantizeConfig, QuantizeReport, gate, layer_groups, op_counts, quantize,
                                           sensitivity, variants, weight_nodes)


def _copy(src, tmp_path):
    """The export files of ``src`` (not its variants or report) in a fresh folder."""
    dest = tmp_path / "onnx"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("model_*.onnx", "quantize_report.*"))
    return dest


def test_every_variant_is_attempted_and_reported(tiny_quantized_dir):
    report = QuantizeReport.load(tiny_quantized_dir)
    assert [a.name for a in report.attempts] == ["fp32", "optimized", "int8-dynamic", "int8-static", "fp16"]
    for a in report.attempts:
        assert (tiny_quantized_dir / a.file).is_file(), a.file
        assert a.size_bytes == (tiny_quantized_dir / a.file).stat().st_size
    gated = [a for a in report.attempts if a.variant != "fp16"]
    for a in gated:
        assert a.status in ("passed", "rejected"), (a.name, a.status, a.reason)
        assert 0 <= a.macro_f1 <= 1 and 0 <= a.agreement <= 1 and a.latency_p50_ms > 0
    assert report.attempt("fp32").agreement == 1.0 and report.attempt("fp32").passed
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert report.attempt("fp16").status == "not-gated"
    chosen = report.attempt(report.chosen)
    assert chosen.passed and chosen.variant != "fp16"
    assert chosen.latency_p50_ms <= (1 + LATENCY_TIE) * min(a.latency_p50_ms for a in gated if a.passed)
    assert report.preset == "avx2" and report.validation_examples == 24  # the gate reads validation, never test
    md = (tiny_quantized_dir / "quantize_report.md").read_text()
    for a in report.attempts:
        assert f"| {a.name} |" in md
    assert json.loads((tiny_quantized_dir / "quantize_report.json").read_text())["chosen"] == report.chosen


def test_the_optimiser_fuses_attention_layernorm_gelu_and_embeddings(tiny_quantized_dir):
    report = QuantizeReport.load(tiny_quantized_dir)
    # 2 layers: one Attention each, two SkipLayerNormalization each, one GELU each, one embedding block
    assert report.fused_ops["Attention"] == 2
    assert report.fused_ops["SkipLayerNormalization"] == 4
    assert report.fused_ops["EmbedLayerNormalization"] == 1
    assert report.fused_ops.get("BiasGelu", 0) + report.fused_ops.get("Gelu", 0) + \
        report.fused_ops.get("FastGelu", 0) == 2
    assert op_counts(tiny_quantized_dir / "model_optimized.onnx", ("Attention",)) == {"Attention": 2}


def test_dynamic_int8_quantises_every_weight_matmul(tiny_quantized_dir):
    fused = onnx.load(str(tiny_quantized_dir / "model_optimized.onnx"))
    matmuls = len(weight_nodes(fused, ("MatMul", "Gemm")))  # 6 in the layers + pooler and classifier Gemms
    ops = op_counts(tiny_quantized_dir / "model_int8_dynamic.onnx")
    assert ops["MatMulInteger"] == matmuls == 8
    assert ops["QAttention"] == 2 and "Attention" not in ops
    assert ops["QEmbedLayerNormalization"] == 1  # the word embeddings are int8 too
    assert ops["DynamicQuantizeLinear"] >= 1
    assert "MatMul" not in ops and "Gemm" not in ops
    assert QuantizeReport.load(tiny_quantized_dir).attempt("int8-dynamic").ops["MatMulInteger"] == 8


def test_static_int8_is_qdq_on_every_weight(tiny_quantized_dir):
    fp32 = onnx.load(str(tiny_quantized_dir / "model.onnx"))
    static = onnx.load(str(tiny_quantized_dir / "model_int8_static.onnx"))
    ops = op_counts(tiny_quantized_dir / "model_int8_static.onnx")
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    produced_by = {o: n for n in static.graph.node for o in n.output}
    int8 = {i.name for i in static.graph.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    quantised = [n for n in static.graph.node if n.op_type in ("MatMul", "Gemm")
                 and (dq := produced_by.get(n.input[1])) is not None and dq.op_type == "DequantizeLinear"
                 and dq.input[0] in int8]
    assert len(quantised) == len(weight_nodes(fp32, ("MatMul", "Gemm"))) == 14  # 12 layer MatMuls + 2 Gemms
    assert any("word_embeddings" in name for name in int8)


def test_layer_groups_find_the_first_and_last_layer(tiny_quantized_dir):
    groups = layer_groups(onnx.load(str(tiny_quantized_dir / "model.onnx")), ("MatMul", "Gemm"))
    assert len(groups["first"]) == len(groups["last"]) == 6
    assert all("layer.0/" in n for n in groups["first"]) and all("layer.1/" in n for n in groups["last"])
    assert sorted(groups["head"]) == ["/bert/pooler/dense/Gemm", "/classifier/Gemm"]


def test_sensitivity_ranks_weight_nodes_and_reduced_range_costs_more(tiny_quantized_dir):
    from edgedistill.runtime import TextClassifier

    pkg_cfg = runtime_config(read_export(tiny_quantized_dir), "optimized")
    clf = TextClassifier.from_files(tiny_quantized_dir / "model_optimized.onnx", tiny_quantized_dir / "tokenizer.json",
                                    pkg_cfg)
    feeds = [clf.tokenize(["the film was good and warm", "a dull and boring plot", "it is fine"])]
    path = tiny_quantized_dir / "model_optimized.onnx"
    full = sensitivity(path, feeds, per_channel=True, reduce_range=False, weight_type="qint8")
    seven = dict(sensitivity(path, feeds, per_channel=True, reduce_range=True, weight_type="qint8"))
    assert len(full) == 10  # 2 Attention + 6 MatMul + 2 Gemm
    errors = [e for _, e in full]
    assert errors == sorted(errors, reverse=True) and 0 < errors[-1] and errors[0] < 1
    assert sum(seven.values()) > sum(errors)  # a weight bit fewer: larger products' error


def _flip(names):
    """A _predict that reverses the probabilities of the listed variant files (their predictions all flip)."""
    real = gate._predict

    def predict(clf, texts, batch_size):
        probs = real(clf, texts, batch_size)
        return probs[:, ::-1].copy() if clf.source.rsplit("/", 1)[-1] in names else probs

    return predict


def test_the_gate_rejects_a_variant_and_records_the_fallbacks(tmp_path, tiny_quantized_dir, tiny_csv, monkeypatch):
    monkeypatch.setattr(gate, "_predict", _flip({"model_int8_dynamic.onnx", "model_int8_dynamic_fb1.onnx"}))
    folder = _copy(tiny_quantized_dir, tmp_path)
    cfg = QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)), variants=("int8-dynamic",),
                         per_channel=True, reduce_range=False, latency_samples=2)
    report = quantize(cfg)
    names = [a.name for a in report.attempts]
    assert names == ["fp32", "optimized", "int8-dynamic", "int8-dynamic +reduce-range",
                     "int8-dynamic +fp32 head"]
    base, fb1, fb2 = report.attempts[2:]
    assert base.status == "rejected" and "beyond the budget" in base.reason
    assert base.agreement < 0.5  # every prediction flipped
    assert fb1.status == "rejected" and fb1.fallback_for == "int8-dynamic" and fb1.settings["reduce_range"]
    assert fb2.passed and fb2.fallback_for == "int8-dynamic"
    assert sorted(fb2.settings["exclude"]) == ["/bert/pooler/dense/Gemm_MatMul", "/classifier/Gemm_MatMul"]
    assert op_counts(folder / fb2.file)["MatMulInteger"] == 6  # the head stayed fp32
    assert report.chosen != "int8-dynamic" and report.attempt(report.chosen).passed
    saved = QuantizeReport.load(folder)
    assert [a.status for a in saved.attempts] == [a.status for a in report.attempts]


def test_nothing_passing_ships_fp32_and_says_so(tmp_path, tiny_quantized_dir, tiny_csv, monkeypatch):
    monkeypatch.setattr(gate, "_predict", _flip({"model_optimized.onnx", "model_int8_dynamic.onnx"}))
    folder = _copy(tiny_quantized_dir, tmp_path)
    report = quantize(QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)),
                                     variants=("optimized", "int8-dynamic"), fallbacks=False, latency_samples=2))
    assert report.nothing_passed and report.chosen == "fp32" and report.chosen_file == "model.onnx"
    assert [a.status for a in report.attempts] == ["passed", "rejected", "rejected"]
    assert "Nothing passed the gate" in report.summary()
    assert "Nothing passed the gate" in (folder / "quantize_report.md").read_text()


def _injected(*args, **kwargs):
    raise RuntimeError("injected: the quantiser fell over\nsecond line")


def test_every_int8_variant_erroring_fails_the_stage_unless_fp32_is_allowed(tmp_path, tiny_quantized_dir, tiny_csv,
                                                                           monkeypatch):
    """Errors are not the gate's verdicts: when no int8 graph can be built, fp32 does not ship quietly."""
    from edgedistill.compress.errors import VariantBuildError

    monkeypatch.setattr(variants, "quantize_dynamic_variant", _injected)
    monkeypatch.setattr(variants, "quantize_static_variant", _injected)
    folder = _copy(tiny_quantized_dir, tmp_path)
    before = {p.name for p in folder.iterdir()}
    cfg = QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)), variants=("int8-dynamic", "int8-static"),
                         latency_samples=2)
    with pytest.raises(VariantBuildError) as e:
        quantize(cfg)
    why = "RuntimeError: injected: the quantiser fell over"
    # every attempt, the unfused retry of dynamic int8 too
    assert e.value.errors == {"int8-dynamic": why, "int8-dynamic (unfused)": why, "int8-static": why}
    assert "int8-static: RuntimeError: injected" in str(e.value) and "quantize.allow_fp32" in str(e.value)
    assert {p.name for p in folder.iterdir()} == before  # nothing published: no report, no graph

    report = quantize(dataclasses.replace(cfg, allow_fp32=True))
    assert report.chosen_variant in ("fp32", "optimized")  # an fp32 graph ships, the errors in the report
    int8 = [a for a in report.attempts if a.variant.startswith("int8")]
    assert [(a.name, a.status, a.reason) for a in int8] == [(n, "error", why) for n in e.value.errors]
    assert report.int8_errored and "No int8 variant could be built or run" in report.summary()
    md = (folder / "quantize_report.md").read_text()
    assert "| int8-static | int8-static |" in md and f"error: {why}" in md
    assert QuantizeReport.load(folder).int8_errored


def test_one_int8_error_beside_a_gate_rejection_still_ships_fp32(tmp_path, tiny_quantized_dir, tiny_csv, monkeypatch):
    """A rejection is a verdict: fp32 ships when the other int8 variant errored and this one was judged."""
    monkeypatch.setattr(variants, "quantize_dynamic_variant", _injected)
    monkeypatch.setattr(gate, "_predict", _flip({"model_int8_static.onnx"}))
    folder = _copy(tiny_quantized_dir, tmp_path)
    report = quantize(QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)),
                                     variants=("int8-dynamic", "int8-static"), fallbacks=False, latency_samples=2))
    assert {a.name: a.status for a in report.attempts if a.variant.startswith("int8")} == {
        "int8-dynamic": "error", "int8-dynamic (unfused)": "error", "int8-static": "rejected"}
    assert report.chosen_variant in ("fp32", "optimized") and not report.int8_errored
    assert report.attempt("optimized").passed and report.summary().endswith("No int8 variant passed the gate.")


def test_the_most_sensitive_nodes_fallback(tmp_path, tiny_tokenizer_dir, tiny_csv, monkeypatch):
    """Four layers, so that after the head and the first and last layers there are nodes left to rank."""
    from tests.helpers import train_tiny_bert

    from edgedistill.compress.export import ExportConfig, export

    ckpt = train_tiny_bert(tmp_path / "bert4", tiny_tokenizer_dir, tiny_csv, layers=4)
    folder = export(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / "onnx"), max_length=64))
    flipped = {"model_int8_dynamic.onnx"} | {f"model_int8_dynamic_fb{i}.onnx" for i in (1, 2)}
    monkeypatch.setattr(gate, "_predict", _flip(flipped))
    report = quantize(QuantizeConfig.avx2(str(folder), data=DataConfig(source=str(tiny_csv)),
                                          variants=("int8-dynamic",), sensitive_nodes=2, latency_samples=2))
    # avx2 already has per-channel weights and reduced range, so the fallbacks start with exclusions
    assert [a.name for a in report.attempts[2:]] == [
        "int8-dynamic", "int8-dynamic +fp32 head", "int8-dynamic +fp32 first+last layers",
        "int8-dynamic +fp32 2 most sensitive"]
    head, first_last, sensitive = report.attempts[3:]
    assert [a.status for a in (head, first_last)] == ["rejected", "rejected"] and sensitive.passed
    assert len(head.settings["exclude"]) == 2 and len(first_last.settings["exclude"]) == 2 + 8
    top = sensitive.settings["sensitive"]
    assert len(top) == 2 and not set(top) & set(first_last.settings["exclude"])
    assert all("layer.1/" in n or "layer.2/" in n or n.startswith("Attention") for n in top)
    counts = [op_counts(folder / a.file).get("MatMulInteger", 0) + op_counts(folder / a.file).get("QAttention", 0)
              for a in report.attempts[2:]]
    assert counts == [18, 16, 8, 6]  # 4 x (Attention + 3 MatMul) + 2 head Gemms, minus what stays fp32
    assert report.chosen in ("fp32", "optimized", sensitive.name)


def test_presets_and_overrides():
    avx2, vnni, arm = QuantizeConfig.avx2("d"), QuantizeConfig.avx512_vnni("d"), QuantizeConfig.arm64("d")
    assert (avx2.reduce_range, vnni.reduce_range, arm.reduce_range) == (True, False, False)
    assert avx2.weight_type == vnni.weight_type == arm.weight_type == "qint8"
    assert arm.activation_type == "qint8" and arm.symmetric_activations
    assert avx2.preset == "avx2" and QuantizeConfig.from_preset("arm64", "d").preset == "arm64"
    assert QuantizeConfig.avx2("d", reduce_range=False).reduce_range is False
    assert QuantizeConfig("d").preset is None  # built directly: the plain defaults, no preset
    assert QuantizeConfig.from_preset("avx2", "d").detected_isa is None  # a named preset is not detected


def _on(monkeypatch, cpuinfo: str, machine: str) -> None:
    """Make ``edgedistill.runtime.cpu.detect()`` read this /proc/cpuinfo text and machine instead of the real ones."""
    from edgedistill.runtime import cpu

    seen = cpu.detect(cpuinfo, machine)
    monkeypatch.setattr(cpu, "detect", lambda *args: seen)


@pytest.mark.parametrize(("flags", "machine", "isa", "preset", "reduce_range"), [
    ("avx2", "x86_64", "avx2", "avx2", True),
    ("avx2 avx512f avx512_vnni", "x86_64", "avx512-vnni", "avx512_vnni", False),
    ("avx2 avx512f avx512_vnni amx_tile amx_int8", "x86_64", "amx", "avx512_vnni", False),
    ("avx2 avx_vnni", "x86_64", "avx-vnni", "avx512_vnni", False),
    ("", "x86_64", "x86", "avx2", True),  # no AVX2 or unreadable flags: 7-bit weights, safe on any x86
    ("asimddp i8mm", "aarch64", "arm64-i8mm", "arm64", False),
    ("asimddp", "aarch64", "arm64-dotprod", "arm64", False),
    ("", "riscv64", "unknown", None, False),  # another architecture: the plain defaults
])
def test_auto_preset_follows_the_cpu(monkeypatch, flags, machine, isa, preset, reduce_range):
    from tests.helpers import arm, x86

    _on(monkeypatch, (arm if machine == "aarch64" else x86)(flags), machine)
    cfg = QuantizeConfig.from_preset("auto", "d", budget=0.5)
    assert (cfg.preset, cfg.detected_isa, cfg.reduce_range, cfg.budget) == (preset, isa, reduce_range, 0.5)
    named = QuantizeConfig.from_preset(preset, "d", budget=0.5) if preset else QuantizeConfig("d", budget=0.5)
    assert dataclasses.replace(cfg, detected_isa=None) == named  # exactly the named preset's settings
    assert QuantizeConfig.from_preset(None, "d", budget=0.5) == cfg  # no preset named: auto
    assert cfg.to_dict()["detected_isa"] == isa


def test_auto_preset_keeps_what_is_set_over_it(monkeypatch):
    from tests.helpers import x86

    _on(monkeypatch, x86("avx2"), "x86_64")
    cfg = QuantizeConfig.from_preset("auto", "d", reduce_range=False, weight_type="quint8")
    assert (cfg.preset, cfg.reduce_range, cfg.weight_type) == ("avx2", False, "quint8")


def test_auto_is_resolved_by_from_preset_only():
    with pytest.raises(ConfigError, match="resolved by QuantizeConfig.from_preset"):
        QuantizeConfig("d", preset="auto")
    with pytest.raises(ConfigError, match=r"quantize.preset.*'auto', 'avx2'"):
        QuantizeConfig.from_preset("tpu", "d")
    with pytest.raises(ConfigError, match="quantize.detected_isa"):
        QuantizeConfig("d", detected_isa="sse2")


def test_the_report_names_the_instruction_set_it_was_measured_on(tiny_quantized_dir, tmp_path):
    from edgedistill.runtime.cpu import detect

    report = QuantizeReport.load(tiny_quantized_dir)
    assert report.environment["isa"] == report.isa == detect().name and report.detected_isa is None
    md = (tiny_quantized_dir / "quantize_report.md").read_text()
    assert f"int8 instruction set {detect().name}, flags: " in md and "- Preset: avx2; " in md
    auto = QuantizeReport.from_dict({**report.to_dict(), "config": {**report.config, "preset": "avx512_vnni",
                                                                    "detected_isa": "amx"}})
    assert "- Preset: avx512_vnni (auto-detected: amx); " in auto.to_markdown()
    # a report written before the environment named it: read from its flags
    env = {k: v for k, v in report.environment.items() if k != "isa"}
    old = QuantizeReport.from_dict({**report.to_dict(), "environment": {**env, "cpu_flags": ["avx", "avx2"],
                                                                         "machine": "x86_64"}})
    assert old.isa == "avx2" and "int8 instruction set avx2," in old.to_markdown()


@pytest.mark.parametrize("field, value", [("variants", ("int4",)), ("weight_type", "int8"), ("calibration", "mse"),
                                          ("budget", -1.0), ("preset", "tpu"), ("calibration_samples", 0),
                                          ("max_validation_samples", 1), ("onnx_dir", "")])
def test_bad_config_names_the_field(field, value):
    kwargs = {"onnx_dir": "d", field: value}
    with pytest.raises(ConfigError, match=field):
        QuantizeConfig(**kwargs)


def test_quantize_needs_an_export(tmp_path, tiny_csv):
    from edgedistill.compress.errors import ExportError

    with pytest.raises(ExportError, match="export.json"):
        quantize(QuantizeConfig(str(tmp_path), data=DataConfig(source=str(tiny_csv))))


def test_cli_quantize(tmp_path, tiny_quantized_dir, tiny_csv):
    from edgedistill.compress.cli import app

    folder = _copy(tiny_quantized_dir, tmp_path)
    res = CliRunner().invoke(app, ["quantize", str(folder), "--data", str(tiny_csv), "--preset", "avx512_vnni",
                                   "--variant", "int8-dynamic", "--no-fallbacks", "--latency-samples", "2",
                                   "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "int8-dynamic" in res.output and "chosen" in res.output
    report = QuantizeReport.load(folder)
    assert report.preset == "avx512_vnni" and report.config["threads"] == 1
    assert report.attempt("int8-dynamic").settings["reduce_range"] is False
    res = CliRunner().invoke(app, ["quantize", str(folder), "--data", str(tiny_csv), "--calibration", "mse"])
    assert res.exit_code == 1 and "calibration" in res.output


def test_cli_quantize_without_a_preset_follows_the_machine(tmp_path, tiny_quantized_dir, tiny_csv, monkeypatch):
    from edgedistill.compress.cli import app
    from tests.helpers import x86

    _on(monkeypatch, x86("avx2 avx512f avx512_vnni amx_tile amx_int8"), "x86_64")
    folder = _copy(tiny_quantized_dir, tmp_path)
    res = CliRunner().invoke(app, ["quantize", str(folder), "--data", str(tiny_csv), "--variant", "int8-dynamic",
                                   "--no-fallbacks", "--latency-samples", "2", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "preset avx512_vnni (auto-detected: amx)" in " ".join(res.output.split())
    report = QuantizeReport.load(folder)
    assert (report.preset, report.detected_isa) == ("avx512_vnni", "amx")
    assert report.attempt("int8-dynamic").settings["reduce_range"] is False


def test_fp32_logits_survive_the_runtime_round_trip(tiny_quantized_dir):
    """The gate's reference really is the exported graph: fp32 via the runtime equals a bare session."""
    from edgedistill.runtime import TextClassifier

    meta = read_export(tiny_quantized_dir)
    clf = TextClassifier.from_files(tiny_quantized_dir / "model.onnx", tiny_quantized_dir / "tokenizer.json",
                                    runtime_config(meta, "fp32"))
    feed = clf.tokenize(["good film", "a very dull and boring story"])
    bare = ort.InferenceSession(str(tiny_quantized_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(clf.logits(feed), bare.run(["logits"], feed)[0], atol=1e-5)


def test_a_variant_that_cannot_be_built_is_recorded_and_the_plain_graph_tried(tmp_path, tiny_quantized_dir, tiny_csv,
                                                                              monkeypatch):
    real = q.quantize_dynamic_variant

    def fails_on_fused(src, dest, settings):
        if src.name == "model_optimized.onnx":
            raise RuntimeError("shape inference failed on a contrib op\nsecond line")
        real(src, dest, settings)

    monkeypatch.setattr(variants, "quantize_dynamic_variant", fails_on_fused)
    folder = _copy(tiny_quantized_dir, tmp_path)
    report = quantize(QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)), variants=("int8-dynamic",),
                                     latency_samples=2))
    broken, plain = report.attempts[2:]
    assert broken.status == "error" and broken.reason == "RuntimeError: shape inference failed on a contrib op"
    assert plain.name == "int8-dynamic (unfused)" and plain.settings["source"] == "fp32" and plain.passed
    assert op_counts(folder / plain.file)["MatMulInteger"] == 14  # every MatMul and Gemm of the plain graph
    assert report.chosen != "int8-dynamic"


def test_calibration_batches_share_one_length_for_the_histogram_calibrators(tiny_quantized_dir, tiny_csv):
    """Entropy and percentile calibration stack every batch: texts of different lengths must not break them."""
    from edgedistill.compress.data import Split, load_data

    meta = read_export(tiny_quantized_dir)
    train = load_data(DataConfig(source=str(tiny_csv))).train
    texts = [t if i % 3 else t + " and the plot was very very good" * (i % 4) for i, t in enumerate(train.texts)]
    cfg = QuantizeConfig(str(tiny_quantized_dir), data=DataConfig(source=str(tiny_csv)), calibration_samples=40)
    run = gate._Run(cfg, meta, tiny_quantized_dir,
                    gate._Gate(cfg, meta, tiny_quantized_dir, train, ["negative", "positive"]),
                    Split(texts, train.labels))
    feeds = run.feeds()
    assert len(feeds) == 5 and len({f["input_ids"].shape[1] for f in feeds}) == 1
    assert min(int(f["attention_mask"].sum(axis=1).min()) for f in feeds) < feeds[0]["input_ids"].shape[1]
    settings = dict(run._settings("static"), calibration="entropy")
    q.quantize_static_variant(run.preprocessed(), run._tmp.name + "/entropy.onnx", settings, feeds, 99.999)
    assert op_counts(run._tmp.name + "/entropy.onnx")["QuantizeLinear"] > 0


def test_a_run_that_fails_half_way_leaves_the_previous_graphs_and_report(tmp_path, tiny_quantized_dir, tiny_csv,
                                                                          monkeypatch):
    """Graphs are built in a work folder and published only when every attempt is judged, the report last."""
    folder = tmp_path / "onnx"
    shutil.copytree(tiny_quantized_dir, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("injected: the disk went away")

    monkeypatch.setattr(variants, "quantize_static_variant", broken)
    monkeypatch.setattr(gate._Run, "_fallbacks", lambda *a, **k: iter(()))
    monkeypatch.setattr(gate._Gate, "judge", lambda self, a: (_ for _ in ()).throw(RuntimeError("injected")))
    with pytest.raises(RuntimeError, match="injected"):
        quantize(QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)), variants=("int8-dynamic",),
                                latency_samples=2))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # byte for byte, no work folder left


def test_a_new_run_replaces_every_graph_of_the_old_one(tmp_path, tiny_quantized_dir, tiny_csv):
    """A fallback graph the old run built and the new one did not is removed: every graph beside the report is
    in the report."""
    folder = tmp_path / "onnx"
    shutil.copytree(tiny_quantized_dir, folder)
    old = q.QuantizeReport.load(folder)
    stale = folder / "model_int8_dynamic_fb1.onnx"
    shutil.copyfile(folder / old.chosen_file, stale)
    old.attempts.append(q.Attempt("int8-dynamic +per-channel", "int8-dynamic", stale.name, {}, status="passed"))
    old.save(folder)
    report = quantize(QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)), variants=("int8-dynamic",),
                                     latency_samples=2))
    assert not stale.exists()
    on_disk = {p.name for p in folder.glob("*.onnx")}
    assert on_disk == {a.file for a in report.attempts if (folder / a.file).exists()} | {"model.onnx"}
    assert not list(folder.glob(".quantize.tmp-*"))


def test_the_agreement_floor_rejects_a_variant_the_budget_lets_through(tmp_path, tiny_quantized_dir, tiny_csv,
                                                                       monkeypatch):
    """With no macro-F1 budget to speak of (100 points), only the agreement floor stands between a variant whose
    every label flipped and the package."""
    monkeypatch.setattr(gate, "_predict", _flip({"model_int8_dynamic.onnx"}))
    folder = _copy(tiny_quantized_dir, tmp_path)
    cfg = QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)), variants=("optimized", "int8-dynamic"),
                         budget=100.0, fallbacks=False, latency_samples=2)
    flipped = quantize(cfg).attempt("int8-dynamic")
    assert flipped.passed and flipped.agreement < 0.5  # the budget alone lets it through
    report = quantize(dataclasses.replace(cfg, min_agreement=0.95))
    flipped = report.attempt("int8-dynamic")
    assert flipped.status == "rejected" and "below the floor of 95.00%" in flipped.reason
    assert report.attempt("optimized").passed and report.chosen != "int8-dynamic"
    assert "agreeing with fp32's on at least 95.00%" in (folder / "quantize_report.md").read_text()
    with pytest.raises(ConfigError, match="min_agreement"):
        QuantizeConfig(str(folder), min_agreement=1.5)


def test_batch_consistency_is_measured_and_can_be_required(tmp_path, tiny_quantized_dir, tiny_csv, monkeypatch):
    """fp32 gives a text the same answer alone and in a batch; a variant whose batched answers differ is reported,
    and rejected once max_batch_flips asks for it."""
    folder = _copy(tiny_quantized_dir, tmp_path)
    cfg = QuantizeConfig(str(folder), data=DataConfig(source=str(tiny_csv)), variants=("optimized", "int8-dynamic"),
                         budget=100.0, fallbacks=False, latency_samples=2)
    report = quantize(cfg)
    fp32 = report.attempt("fp32")
    assert fp32.batch_flips == 0.0 and fp32.batch_max_diff < 1e-5
    real = gate._predict

    def batched_flip(clf, texts, batch_size):  # int8-dynamic answers flip only when texts share a call
        probs = real(clf, texts, batch_size)
        flip = clf.source.rsplit("/", 1)[-1] == "model_int8_dynamic.onnx" and len(texts) > 1
        return probs[:, ::-1].copy() if flip else probs

    monkeypatch.setattr(gate, "_predict", batched_flip)
    report = quantize(dataclasses.replace(cfg, max_batch_flips=0.05))
    dyn = report.attempt("int8-dynamic")
    assert dyn.batch_flips == 1.0 and dyn.status == "rejected" and "between batch 1 and batched runs" in dyn.reason
    assert report.attempt("optimized").passed and report.attempt("optimized").batch_flips == 0.0
    assert "| batch flips |" in (folder / "quantize_report.md").read_text()
    with pytest.raises(ConfigError, match="max_batch_flips"):
        QuantizeConfig(str(folder), max_batch_flips=-0.1)


def test_a_report_from_before_the_validation_gate_is_refused_clearly(tiny_quantized_dir, tmp_path):
    """Reports written when the gate read the test split carry test_examples: they must be rebuilt, not trusted."""
    old = json.loads((tiny_quantized_dir / "quantize_report.json").read_text())
    old["test_examples"] = old.pop("validation_examples")
    (tmp_path / "quantize_report.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="run the quantize stage again"):
        QuantizeReport.load(tmp_path)


def test_a_latency_tie_goes_to_the_variant_that_runs_batches_whole_then_the_smaller():
    def attempt(name, variant, p50, size, f1=0.8):
        return Attempt(name, variant, f"{name}.onnx", status="passed", macro_f1=f1, latency_p50_ms=p50,
                       size_bytes=size)

    fp32 = attempt("fp32", "fp32", 0.0700, 32)
    dynamic = attempt("int8-dynamic", "int8-dynamic", 0.0690, 8)
    static = attempt("int8-static", "int8-static", 0.0710, 8, f1=0.81)
    chosen, why = choose([fp32, dynamic, static])
    assert chosen is static and "runs one text per call" in why  # the static student's case: all at 0.07 ms
    chosen, why = choose([fp32, dynamic, static], batch_invariant=False)  # both batch: the same size, more accurate
    assert chosen is static and "more accurate" in why
    slow_static = attempt("int8-static", "int8-static", 0.09, 8)
    assert choose([dynamic, slow_static]) == (dynamic, "")  # 30% slower is no tie: speed decides
    assert choose([fp32, attempt("optimized", "optimized", 0.0701, 30)])[0].name == "optimized"  # smaller
