"""Optimise and quantise an exported classifier, keeping only variants that pass an accuracy gate.

Input: a folder written by :func:`compress.export.export` (``model.onnx`` fp32,
tokenizer, ``export.json``). Variants built beside it:

- ``optimized`` (``model_optimized.onnx``): onnxruntime's transformer optimiser fuses
  attention, LayerNorm (+ residual), GELU and the embeddings; the fused-op counts are reported;
- ``int8-dynamic`` (``model_int8_dynamic.onnx``): weights int8, activations quantised at run time
  (MatMulInteger / QAttention), built from the fused graph;
- ``int8-static`` (``model_int8_static.onnx``): QDQ graph calibrated on training texts (MinMax,
  Entropy or Percentile), built from the *unfused* graph: onnxruntime fuses QDQ at session creation,
  whereas the transformer optimiser's contrib ops leave the static quantiser little to work on;
- ``fp16`` (``model_fp16.onnx``) for GPUs: gated only where a CUDA provider exists, never shipped on CPU.

The gate: every variant runs through the runtime (``runtime.TextClassifier``, the code that
ships) on the validation split and is scored with :func:`compress.evaluate.compute_metrics`, the
protocol every stage uses. A variant more than ``budget`` macro-F1 points below fp32 is
rejected, and fallbacks are tried in order (per-channel weights, reduced range, other calibrations for
static, then kept in fp32: the classifier head, also the first and last layers, also the most
sensitive weight nodes, also the embeddings; finally static instead of dynamic). The fastest passing variant
(batch-1 p50 latency through the runtime) is chosen; fp32 always passes, so when nothing else
does the report says so and fp32 ships. The :class:`Report` lists every attempt and is written
to ``quantize_report.json`` and ``quantize_report.md`` in the ONNX folder.

A run builds its graphs in a work folder inside the ONNX folder (``.quantize.tmp-*``) and moves them
beside the export only once every attempt is judged, the report last: a run that fails or is killed
leaves the previous graphs and report as they were.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from compress.data import DataConfig, Split
from compress.errors import ConfigError
from compress.export import MODEL_FILE, TOKENIZER_FILE, read_export, runtime_config

log = logging.getLogger(__name__)

VARIANT_FILES = {"fp32": MODEL_FILE, "optimized": "model_optimized.onnx", "int8-dynamic": "model_int8_dynamic.onnx",
                 "int8-static": "model_int8_static.onnx", "fp16": "model_fp16.onnx"}
BUILDABLE = ("optimized", "int8-dynamic", "int8-static", "fp16")
PRESETS = ("avx2", "avx512_vnni", "arm64")
QTYPES = ("qint8", "quint8")
CALIBRATIONS = ("minmax", "entropy", "percentile")
REPORT_JSON = "quantize_report.json"
REPORT_MD = "quantize_report.md"
WORK_PREFIX = ".quantize.tmp-"  # the folder inside the ONNX folder where a run builds its graphs
QUANT_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "QAttention", "QEmbedLayerNormalization", "QuantizeLinear",
             "DequantizeLinear", "QLinearMatMul", "MatMulIntegerToFloat", "QGemm")
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "LayerNormalization", "Gelu", "FastGelu", "BiasGelu", "GemmFastGelu")
_LN_OPS = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
           "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
_WEIGHT_OPS = ("MatMul", "Attention", "Gemm")  # nodes whose input 1 is a weight matrix
# The weight nodes each quantiser turns into int8. The dynamic one first rewrites every Gemm into a
# MatMul named "<gemm>_MatMul" (+ Add), which it then quantises like any other MatMul.
_DYNAMIC_WEIGHT_OPS = ("MatMul", "Attention", "Gemm")
_STATIC_WEIGHT_OPS = ("MatMul", "Gemm")


@dataclass
class QuantizeConfig:
    """Which variants to build from an export, how to quantise them, and the accuracy gate."""

    onnx_dir: str = ""
    """A folder written by ``edgedistill export``; variants and the report are written into it."""
    data: DataConfig = field(default_factory=DataConfig)
    """The labelled data: its validation split gates and chooses every variant, its training texts calibrate static
    int8. The test split is never read here: the build report scores the shipped package on it."""
    preset: str | None = None
    """The hardware preset these settings came from (set by the named constructors; informational)."""
    variants: tuple[str, ...] = BUILDABLE
    """Variants to build besides fp32: optimized, int8-dynamic, int8-static, fp16."""
    per_channel: bool = True
    """One weight scale per output channel (more accurate, slightly bigger) rather than per tensor."""
    reduce_range: bool = False
    """7-bit weights: avoids int16 saturation of u8 x s8 products on AVX2/AVX512 without VNNI."""
    weight_type: str = "qint8"
    """Weight type: qint8 (s8) or quint8 (u8)."""
    activation_type: str = "quint8"
    """Activation type of static QDQ (dynamic quantisation always uses u8 activations)."""
    symmetric_activations: bool = False
    """Static only: symmetric activation ranges (zero point 0), which s8 kernels on ARM prefer."""
    quantize_embeddings: bool = True
    """Quantise the word-embedding table too (Gather / EmbedLayerNormalization): about half of a small model."""
    calibration: str = "minmax"
    """Static calibration: minmax, entropy or percentile."""
    calibration_samples: int = 128
    """Training texts run through the model to calibrate static activation ranges."""
    percentile: float = 99.999
    """Percentile calibration: the share of each activation histogram kept inside the range."""
    budget: float = 1.0
    """Largest macro-F1 drop, in points (1.0 = 0.01), below fp32 that a variant may have."""
    consistency_samples: int = 512
    """Validation texts also classified one at a time, to measure how much a variant's answers depend on batching."""
    max_batch_flips: float | None = None
    """Reject a variant whose labels change between batch 1 and batched runs on more than this share of the
    consistency texts (0.0: every text must always get the same label; dynamic int8 usually fails it, static
    int8 and fp32 pass). None: measured and reported only."""
    min_agreement: float | None = None
    """Also reject a variant whose predicted labels agree with fp32's on fewer than this share of the validation texts
    (e.g. 0.97): a macro-F1 within budget can hide errors that cancel out. None: macro-F1 alone decides."""
    fallbacks: bool = True
    """Try the fallbacks when an int8 variant fails the gate."""
    sensitive_nodes: int = 4
    """How many of the most sensitive weight nodes the last fallback keeps in fp32."""
    max_validation_samples: int | None = None
    """Gate on a stratified subsample of the validation split; None = the whole split."""
    latency_samples: int = 32
    """Validation texts timed one at a time (batch 1) through the runtime, twice each after a warm-up."""
    threads: int | None = None
    """Intra-op threads for evaluation and timing (None: onnxruntime's default, one per core)."""
    batch_size: int = 32
    """Batch size of the accuracy evaluation."""

    def __post_init__(self) -> None:
        if not str(self.onnx_dir):
            raise ConfigError("onnx_dir", self.onnx_dir, "name a folder written by `edgedistill export`")
        if isinstance(self.data, str):
            self.data = DataConfig(source=self.data)
        self.variants = tuple(self.variants)
        if bad := [v for v in self.variants if v not in BUILDABLE]:
            raise ConfigError("variants", list(self.variants), f"unknown {bad}; choose from {list(BUILDABLE)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError("preset", self.preset, f"choose one of {list(PRESETS)}")
        for name in ("weight_type", "activation_type"):
            if getattr(self, name) not in QTYPES:
                raise ConfigError(name, getattr(self, name), f"choose one of {list(QTYPES)}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError("calibration", self.calibration, f"choose one of {list(CALIBRATIONS)}")
        if not 0 <= self.budget <= 100:
            raise ConfigError("budget", self.budget, "must be in [0, 100] macro-F1 points")
        for name in ("min_agreement", "max_batch_flips"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0):
                raise ConfigError(name, v, "must be a share in [0, 1] (or unset)")
        if not 90.0 < self.percentile < 100.0:
            raise ConfigError("percentile", self.percentile, "must be in (90, 100)")
        for name, low in (("calibration_samples", 1), ("latency_samples", 1), ("batch_size", 1),
                          ("consistency_samples", 0),
                          ("sensitive_nodes", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < low:
                raise ConfigError(name, v, f"must be an int >= {low}")
        if self.max_validation_samples is not None and self.max_validation_samples < 2:
            raise ConfigError("max_validation_samples", self.max_validation_samples, "must be at least 2 (or unset)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads", self.threads, "must be >= 1 (or unset)")

    # Hardware presets. Dynamic int8 always multiplies u8 activations by the weights; the presets
    # choose the weight type, the range and the static activation type for the target's kernels.
    @classmethod
    def avx2(cls, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        # x86 without VNNI computes u8 x s8 with VPMADDUBSW, which adds pairs of products into int16 and
        # saturates on large weights: 7-bit weights (reduce_range) keep every pair sum inside int16.
        # u8 activations / s8 weights is MLAS's fast x86 path; per-channel scales win back the accuracy
        # the lost weight bit costs.
        return cls(onnx_dir=onnx_dir, **{"preset": "avx2", "weight_type": "qint8", "activation_type": "quint8",
                                         "per_channel": True, "reduce_range": True, **overrides})

    @classmethod
    def avx512_vnni(cls, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        # VNNI's VPDPBUSD accumulates u8 x s8 products straight into int32: no saturation, so the full
        # 8-bit weight range is safe and faster to reach than 7 bits; u8 activations / s8 weights is
        # the layout the instruction takes; per-channel for accuracy at no measurable cost.
        return cls(onnx_dir=onnx_dir, **{"preset": "avx512_vnni", "weight_type": "qint8",
                                         "activation_type": "quint8", "per_channel": True, "reduce_range": False,
                                         **overrides})

    @classmethod
    def arm64(cls, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        # ARM64 NEON / dot-product (SDOT/UDOT) kernels accumulate in int32 without saturation: full range.
        # Dynamic: u8 activations / s8 weights (optimum's arm64 preset: faster than u8/u8 on lower-end
        # cores, the same on higher-end ones). Static QDQ: s8 activations with symmetric ranges, which
        # onnxruntime's guidance gives for ARM's s8 kernels; per-channel for accuracy.
        return cls(onnx_dir=onnx_dir, **{"preset": "arm64", "weight_type": "qint8", "activation_type": "qint8",
                                         "symmetric_activations": True, "per_channel": True, "reduce_range": False,
                                         **overrides})

    @classmethod
    def from_preset(cls, preset: str | None, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        """The named preset (or the plain defaults for None) with ``overrides`` applied."""
        if preset is None:
            return cls(onnx_dir=onnx_dir, **overrides)
        if preset not in PRESETS:
            raise ConfigError("preset", preset, f"choose one of {list(PRESETS)}")
        return getattr(cls, preset)(onnx_dir, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d


# --------------------------------------------------------------------------- the report

@dataclass
class Attempt:
    """One variant built and measured: what it is, how it scored, and whether it passed the gate."""

    name: str
    variant: str
    file: str
    settings: dict[str, Any] = field(default_factory=dict)
    fallback_for: str | None = None
    status: str = "pending"
    """passed, rejected, not-gated (built but not measurable here) or error (could not be built)."""
    reason: str = ""
    macro_f1: float | None = None
    accuracy: float | None = None
    agreement: float | None = None
    """Share of validation texts whose predicted label equals fp32's."""
    batch_flips: float | None = None
    """Share of the consistency texts whose label differs between classifying each text alone and in batches:
    dynamic int8 quantises activations with one range per batch, so its answers depend on the batch-mates."""
    batch_max_diff: float | None = None
    """Largest probability difference between a text classified alone and in a batch."""
    size_bytes: int | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    ops: dict[str, int] = field(default_factory=dict)
    """Quantisation operators in the graph (MatMulInteger, DynamicQuantizeLinear, QuantizeLinear, ...)."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class Report:
    """Every attempt of one quantisation run and the variant chosen to ship."""

    onnx_dir: str
    config: dict[str, Any]
    dataset: str
    validation_examples: int
    budget: float
    reference_macro_f1: float
    chosen: str
    chosen_variant: str
    chosen_file: str
    fused_ops: dict[str, int] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    @property
    def preset(self) -> str | None:
        return self.config.get("preset")

    @property
    def nothing_passed(self) -> bool:
        """No variant but the fp32 reference passed the gate."""
        return not any(a.passed for a in self.attempts if a.variant != "fp32")

    @property
    def no_int8_passed(self) -> bool:
        return not any(a.passed for a in self.attempts if a.variant.startswith("int8"))

    def attempt(self, name: str) -> Attempt:
        for a in self.attempts:
            if a.name == name:
                return a
        raise KeyError(name)

    def summary(self) -> str:
        ref = self.attempt("fp32")
        best = self.attempt(self.chosen)
        if self.nothing_passed:
            return (f"Nothing passed the gate ({self.budget:g} macro-F1 points below fp32 {ref.macro_f1:.4f}): "
                    "shipping fp32.")
        text = (f"Chosen: {best.name} ({best.file}), macro-F1 {best.macro_f1:.4f} "
                f"({100 * (best.macro_f1 - ref.macro_f1):+.2f} points vs fp32), "
                f"{ref.size_bytes / best.size_bytes:.2f}x smaller, batch-1 p50 {best.latency_p50_ms:.2f} ms "
                f"vs {ref.latency_p50_ms:.2f} ms fp32.")
        if self.no_int8_passed:
            text += " No int8 variant passed the gate."
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nothing_passed"] = self.nothing_passed
        d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        names = {f.name for f in fields(cls)}
        if "test_examples" in d and "validation_examples" not in d:
            raise ConfigError("quantize report", d.get("onnx_dir"), "was written by an older edgedistill whose gate "
                              "read the test split; run the quantize stage again (--force quantize)")
        d = {k: v for k, v in d.items() if k in names}
        d["attempts"] = [Attempt(**a) for a in d.get("attempts", [])]
        return cls(**d)

    @classmethod
    def load(cls, onnx_dir: Path | str) -> Report:
        return cls.from_dict(json.loads((Path(onnx_dir) / REPORT_JSON).read_text()))

    def save(self, folder: Path | str | None = None) -> Path:
        """Write ``quantize_report.json`` and ``quantize_report.md``; returns the JSON's path."""
        folder = Path(folder or self.onnx_dir)
        path = folder / REPORT_JSON
        (folder / REPORT_MD).write_text(self.to_markdown())
        tmp = path.with_name(path.name + ".tmp")  # the JSON is what marks the run finished: it appears whole
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def to_markdown(self) -> str:
        ref = self.attempt("fp32")

        def f(v: float | None, fmt: str = ".4f") -> str:
            return "–" if v is None else format(v, fmt)

        env = self.environment
        floor, flips = self.config.get("min_agreement"), self.config.get("max_batch_flips")
        lines = [f"# Quantization report: {Path(self.onnx_dir).name}", "",
                 f"**{self.summary()}**", "",
                 f"- Gate: macro-F1 at most {self.budget:g} point{'' if self.budget == 1 else 's'} below fp32 "
                 f"({ref.macro_f1:.4f})"
                 + (f" and labels agreeing with fp32's on at least {floor:.2%} of texts" if floor is not None else "")
                 + f" on {self.dataset} validation, {self.validation_examples} texts, through `runtime.TextClassifier` "
                 "(the test split is never read here).",
                 f"- Preset: {self.preset or 'none'}; latency: batch 1, p50/p90 over "
                 f"{self.config.get('latency_samples')} validation texts x 2, {env.get('threads') or 'default'} threads.",
                 f"- Machine: {env.get('cpu', '?')} ({env.get('cores', '?')} cores; "
                 f"AVX2 {env.get('avx2')}, AVX512-VNNI {env.get('avx512_vnni')}); onnxruntime "
                 f"{env.get('onnxruntime')}. Timings on a shared machine are noisy.", "",
                 f"- Batch flips: the share of {self.config.get('consistency_samples')} validation texts whose label "
                 "differs between classifying each alone and in batches of "
                 f"{self.config.get('batch_size')} (dynamic int8 sets activation ranges per batch)"
                 + (f"; at most {flips:.2%} allowed" if flips is not None else "") + ".", "",
                 "| attempt | variant | fallback for | macro-F1 | vs fp32 (points) | agreement | batch flips | "
                 "size (MB) | p50 (ms) | p90 (ms) | status |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for a in self.attempts:
            delta = None if a.macro_f1 is None else 100 * (a.macro_f1 - ref.macro_f1)
            status = a.status + (f": {a.reason}" if a.reason else "")
            if a.name == self.chosen:
                status = "**chosen** · " + status
            lines.append(f"| {a.name} | {a.variant} | {a.fallback_for or ''} | {f(a.macro_f1)} | {f(delta, '+.2f')} | "
                         f"{f(a.agreement)} | {f(a.batch_flips, '.2%')} | "
                         f"{f(None if a.size_bytes is None else a.size_bytes / 1e6, '.2f')} | "
                         f"{f(a.latency_p50_ms, '.2f')} | {f(a.latency_p90_ms, '.2f')} | {status} |")
        if self.fused_ops:
            lines += ["", "Fused operators in model_optimized.onnx: "
                      + ", ".join(f"{k} {v}" for k, v in self.fused_ops.items() if v) + "."]
        lines += ["", "## Settings per attempt", ""]
        for a in self.attempts:
            ops = ", ".join(f"{k} {v}" for k, v in a.ops.items())
            lines.append(f"- **{a.name}** (`{a.file}`): {json.dumps(a.settings, sort_keys=True)}"
                         + (f"; quantised ops: {ops}" if ops else ""))
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- graph helpers

def op_counts(onnx_path: Path | str, ops: tuple[str, ...] | None = None) -> dict[str, int]:
    """How many nodes of each operator type the graph holds (only ``ops`` when given, zero counts dropped)."""
    import onnx

    counts = Counter(n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node)
    if ops is None:
        return dict(counts)
    return {k: counts[k] for k in ops if counts.get(k)}


def weight_nodes(model: Any, ops: tuple[str, ...] = _WEIGHT_OPS) -> list[Any]:
    """Nodes of type ``ops`` that multiply by a constant weight matrix (an initializer at input 1)."""
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in ops and len(n.input) > 1 and n.input[1] in inits]


def layer_groups(model: Any, ops: tuple[str, ...] = _WEIGHT_OPS) -> dict[str, list[str]]:
    """Weight-node names grouped as ``first`` layer, ``last`` layer and ``head`` (pooler + classifier).

    The encoder is walked in topological order counting LayerNorm-type nodes: the embeddings end
    with one and every (post-LN) layer with two, so a node's layer is ``(norms_seen - 1) // 2`` and
    the head is whatever comes after the last norm. Works on fused and unfused graphs alike.
    """
    weights = {n.name for n in weight_nodes(model, ops)}
    norms_total = sum(n.op_type in _LN_OPS for n in model.graph.node)
    seen = 0
    layers: dict[int, list[str]] = {}
    head: list[str] = []
    for node in model.graph.node:
        if node.op_type in _LN_OPS:
            seen += 1
        elif node.name in weights:
            if seen >= norms_total:
                head.append(node.name)
            else:
                layers.setdefault(max(0, (seen - 1) // 2), []).append(node.name)
    first = layers[min(layers)] if layers else []
    last = layers[max(layers)] if len(layers) > 1 else []
    return {"first": first, "last": last, "head": head}


def sensitivity(onnx_path: Path | str, feeds: list[dict[str, np.ndarray]], *, per_channel: bool, reduce_range: bool,
                weight_type: str, exclude: set[str] = frozenset(),
                ops: tuple[str, ...] = _WEIGHT_OPS) -> list[tuple[str, float]]:
    """Weight nodes ranked by how much int8 hurts them, most sensitive first.

    For each weight node the real input activations (from ``feeds``) are multiplied by the weight
    in fp32 and again with both sides quantised as dynamic int8 would (u8 per-tensor activations,
    weights per channel or per tensor, 7 or 8 bits); the score is the relative error of the product.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = [n for n in weight_nodes(model, ops) if n.name not in exclude]
    outputs = {o.name for o in model.graph.output}
    wanted = list(dict.fromkeys(n.input[0] for n in nodes))
    for name in wanted:
        if name not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every intermediate as it is
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    acts: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for feed in feeds:
        for name, value in zip(wanted, session.run(wanted, feed)):
            acts[name].append(value.reshape(-1, value.shape[-1]))
    scores = []
    for node in nodes:
        x = np.concatenate(acts[node.input[0]]).astype(np.float64)
        w = onnx.numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute):
            w = w.T
        y = x @ w
        yq = _fake_quant_act(x) @ _fake_quant_weight(w, per_channel, reduce_range, weight_type)
        scores.append((node.name, float(np.linalg.norm(y - yq) / max(np.linalg.norm(y), 1e-12))))
    return sorted(scores, key=lambda s: -s[1])


def _fake_quant_act(x: np.ndarray) -> np.ndarray:
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zp = round(-lo / scale)
    return (np.clip(np.round(x / scale) + zp, 0, 255) - zp) * scale


def _fake_quant_weight(w: np.ndarray, per_channel: bool, reduce_range: bool, weight_type: str) -> np.ndarray:
    levels = 127 if reduce_range else 255
    if weight_type == "qint8":  # symmetric
        amax = np.abs(w).max(axis=0, keepdims=True) if per_channel else np.abs(w).max()
        scale = np.where(amax > 0, amax / (levels // 2), 1.0)
        return np.clip(np.round(w / scale), -(levels // 2), levels // 2) * scale
    lo = np.minimum(w.min(axis=0, keepdims=True) if per_channel else w.min(), 0.0)
    hi = np.maximum(w.max(axis=0, keepdims=True) if per_channel else w.max(), 0.0)
    scale = np.where(hi > lo, (hi - lo) / levels, 1.0)
    zp = np.round(-lo / scale)
    return (np.clip(np.round(w / scale) + zp, 0, levels) - zp) * scale


# --------------------------------------------------------------------------- building variants

def optimize(src: Path, dest: Path, meta: dict[str, Any]) -> dict[str, int]:
    """Fuse the fp32 graph with onnxruntime's transformer optimiser; returns the fused-op counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(src), model_type="bert", num_heads=meta.get("num_attention_heads") or 0,
                           hidden_size=meta.get("hidden_size") or 0, opt_level=0)
    model.save_model_to_file(str(dest))
    stats = model.get_fused_operator_statistics()
    return {k: int(stats.get(k, 0)) for k in FUSED_OPS if stats.get(k)}


def quantize_dynamic_variant(src: Path, dest: Path, settings: dict[str, Any]) -> None:
    """Dynamic int8 (MatMulInteger / QAttention / QEmbedLayerNormalization) of ``src`` into ``dest``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = ["MatMul", "Attention"] + (["Gather", "EmbedLayerNormalization"] if settings["embeddings"] else [])
    quantize_dynamic(str(src), str(dest), op_types_to_quantize=ops, per_channel=settings["per_channel"],
                     reduce_range=settings["reduce_range"],
                     weight_type=QuantType.QInt8 if settings["weight_type"] == "qint8" else QuantType.QUInt8,
                     nodes_to_exclude=list(settings["exclude"]),
                     # fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference;
                     # without a default type the quantiser fails on them (the DefaultTensorType extra option of
                     # onnxruntime.quantization.quantize_dynamic exists for this case)
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "MatMulConstBOnly": True})


class _Feeds:
    """A CalibrationDataReader over pre-tokenised batches (tokenised by the runtime, as at inference)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = feeds
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def quantize_static_variant(src: Path, dest: Path, settings: dict[str, Any], feeds: list[dict[str, np.ndarray]],
                            percentile: float) -> None:
    """Static int8 in QDQ form of the (unfused, pre-processed) graph ``src``, calibrated on ``feeds``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    qtype = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings["calibration"]]
    ops = list(_STATIC_WEIGHT_OPS) + (["Gather"] if settings["embeddings"] else [])
    quantize_static(str(src), str(dest), _Feeds(feeds), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
                    per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                    activation_type=qtype[settings["activation_type"]], weight_type=qtype[settings["weight_type"]],
                    nodes_to_exclude=list(settings["exclude"]), calibrate_method=method,
                    extra_options={"ActivationSymmetric": settings["symmetric_activations"],
                                   "MatMulConstBOnly": True,  # attention's activation x activation products stay fp32
                                   "CalibPercentile": percentile})


def to_fp16(src: Path, dest: Path) -> None:
    """fp16 weights and compute with fp32 inputs and outputs (for GPUs) from the optimised graph."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dest))


# --------------------------------------------------------------------------- the gate

def _predict(clf: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Probabilities through the runtime (a seam the tests use to force a variant outside the budget)."""
    return np.asarray(clf.predict_proba(texts, batch_size=batch_size), dtype=np.float64)


class _Gate:
    """Evaluates variants through the runtime with one protocol and judges them against fp32."""

    def __init__(self, cfg: QuantizeConfig, meta: dict[str, Any], onnx_dir: Path, split: Split, labels: list[str],
                 work: Path | None = None):
        """``split`` is the validation split (or a subsample): it decides every verdict and the choice."""
        self.cfg, self.meta, self.onnx_dir, self.split, self.labels = cfg, meta, onnx_dir, split, labels
        self.work = work or onnx_dir  # where this run writes the graphs it builds
        self.reference: Attempt | None = None
        self.reference_pred: np.ndarray | None = None
        self.latency_texts = split.texts[:cfg.latency_samples]
        step = max(1, len(split) // cfg.consistency_samples) if cfg.consistency_samples else 0
        self.consistency = list(range(0, len(split), step))[:cfg.consistency_samples] if step else []

    def path(self, file: str) -> Path:
        """Where an attempt's graph is: the export's own model.onnx, or a variant this run built in its work
        folder."""
        return self.onnx_dir / file if file == MODEL_FILE else self.work / file

    def classifier(self, path: Path, variant: str, providers: Any = None) -> Any:
        from runtime.classifier import TextClassifier

        return TextClassifier.from_files(path, self.onnx_dir / TOKENIZER_FILE, runtime_config(self.meta, variant),
                                         providers=providers, threads=self.cfg.threads)

    def measure(self, attempt: Attempt, providers: Any = None) -> Attempt:
        from compress.evaluate import align_columns, compute_metrics

        path = self.path(attempt.file)
        attempt.size_bytes = path.stat().st_size
        clf = self.classifier(path, attempt.variant, providers)
        probs = align_columns(_predict(clf, list(self.split.texts), self.cfg.batch_size), clf.labels, self.labels)
        metrics = compute_metrics(self.split.labels, probs, self.labels)
        attempt.macro_f1, attempt.accuracy = metrics.macro_f1, metrics.accuracy
        pred = probs.argmax(axis=1)
        if self.reference is None:
            self.reference, self.reference_pred = attempt, pred
        attempt.agreement = float((pred == self.reference_pred).mean())
        if self.consistency:  # the same texts, each alone: does an answer depend on its batch-mates?
            alone = np.concatenate([align_columns(_predict(clf, [self.split.texts[i]], 1), clf.labels, self.labels)
                                    for i in self.consistency])
            batched = probs[self.consistency]
            attempt.batch_flips = float((alone.argmax(1) != batched.argmax(1)).mean())
            attempt.batch_max_diff = float(np.abs(alone - batched).max())
        attempt.latency_p50_ms, attempt.latency_p90_ms = self.latency(clf)
        return attempt

    def latency(self, clf: Any) -> tuple[float, float]:
        """Batch-1 p50 / p90 in ms: each latency text twice, after a warm-up on the first few."""
        for text in self.latency_texts[:5]:
            clf.predict_proba([text])
        times = []
        for _ in range(2):
            for text in self.latency_texts:
                t0 = time.perf_counter()
                clf.predict_proba([text])
                times.append(time.perf_counter() - t0)
        return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 90) * 1e3)

    def judge(self, attempt: Attempt) -> Attempt:
        assert self.reference is not None and self.reference.macro_f1 is not None
        drop = 100 * (self.reference.macro_f1 - attempt.macro_f1)
        floor, flips = self.cfg.min_agreement, self.cfg.max_batch_flips
        if drop > self.cfg.budget + 1e-9:
            attempt.status = "rejected"
            attempt.reason = f"{-drop + 0.0:+.2f} points, beyond the budget of -{self.cfg.budget:g}"
        elif flips is not None and attempt.batch_flips is not None and attempt.batch_flips > flips + 1e-12:
            attempt.status = "rejected"
            attempt.reason = (f"{-drop + 0.0:+.2f} points, but {attempt.batch_flips:.2%} of texts change label "
                              f"between batch 1 and batched runs, above the limit of {flips:.2%}")
        elif floor is not None and attempt.agreement < floor - 1e-12:
            attempt.status = "rejected"
            attempt.reason = (f"{-drop + 0.0:+.2f} points, but agrees with fp32 on {attempt.agreement:.2%} of the "
                              f"validation texts, below the floor of {floor:.2%}")
        else:
            attempt.status, attempt.reason = "passed", f"{-drop + 0.0:+.2f} points"
        log.info("%s: macro-F1 %.4f (%+.2f points), agreement %.4f, batch flips %s, %.1f MB, p50 %.2f ms: %s",
                 attempt.name, attempt.macro_f1, -drop, attempt.agreement,
                 "–" if attempt.batch_flips is None else f"{attempt.batch_flips:.2%}", attempt.size_bytes / 1e6,
                 attempt.latency_p50_ms, attempt.status)
        return attempt


# --------------------------------------------------------------------------- the public function

def quantize(cfg: QuantizeConfig) -> Report:
    """Build the requested variants of ``cfg.onnx_dir``, gate them, choose the fastest passing one; see the module doc."""
    from compress.data import load_data

    onnx_dir = Path(cfg.onnx_dir)
    meta = read_export(onnx_dir)
    data = load_data(cfg.data)
    split = _stratified_subset(data.validation, cfg.max_validation_samples, cfg.data.seed)
    for old in onnx_dir.glob(f"{WORK_PREFIX}*"):  # left by a run that was killed
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=onnx_dir))
    try:
        report = _quantize(cfg, meta, onnx_dir, work, data, split)
        _publish(work, onnx_dir, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (log.warning if report.nothing_passed else log.info)("%s", report.summary())
    return report


def _publish(work: Path, onnx_dir: Path, report: Report) -> None:
    """Move this run's graphs from ``work`` into the ONNX folder, then write the report.

    The old report goes first: from then on until the new one is written the folder holds no report, so a
    half-published run never passes for a finished one. Graphs of the previous run that this one did not
    rebuild (a fallback it no longer needed) are removed, so every graph beside the report is the report's.
    """
    try:
        previous = {a.file for a in Report.load(onnx_dir).attempts}
    except (OSError, ValueError, KeyError, TypeError):
        previous = set()
    (onnx_dir / REPORT_JSON).unlink(missing_ok=True)
    built = {p.name for p in work.iterdir()}
    for name in sorted(built):
        os.replace(work / name, onnx_dir / name)
    for name in previous - built - {MODEL_FILE}:
        if "/" not in name and name.endswith(".onnx"):
            (onnx_dir / name).unlink(missing_ok=True)
    report.save(onnx_dir)


def _quantize(cfg: QuantizeConfig, meta: dict[str, Any], onnx_dir: Path, work: Path, data: Any,
              split: Split) -> Report:
    gate = _Gate(cfg, meta, onnx_dir, split, data.label_names, work)
    run = _Run(cfg, meta, onnx_dir, gate, data.train)

    ref = gate.measure(Attempt("fp32", "fp32", MODEL_FILE, {}))
    ref.status, ref.reason = "passed", "reference"
    run.attempts.append(ref)
    log.info("fp32: macro-F1 %.4f on %d validation texts, %.1f MB, p50 %.2f ms", ref.macro_f1, len(split),
             ref.size_bytes / 1e6, ref.latency_p50_ms)

    wanted = set(cfg.variants)
    if wanted & {"optimized", "int8-dynamic", "fp16"}:
        run.optimized()
    if "int8-dynamic" in wanted:
        run.int8("dynamic")
    if "int8-static" in wanted or (run.rejected("dynamic") and cfg.fallbacks):
        run.int8("static", fallback_for=None if "int8-static" in wanted else "int8-dynamic")
    if "fp16" in wanted:
        run.fp16()

    passing = [a for a in run.attempts if a.passed and a.variant != "fp16"]  # fp16 is for GPUs, never shipped on CPU
    chosen = min(passing, key=lambda a: a.latency_p50_ms)
    report = Report(onnx_dir=str(onnx_dir), config=cfg.to_dict(), dataset=data.name, validation_examples=len(split),
                    budget=cfg.budget, reference_macro_f1=ref.macro_f1, chosen=chosen.name,
                    chosen_variant=chosen.variant, chosen_file=chosen.file, fused_ops=run.fused_ops,
                    attempts=run.attempts, environment=environment(cfg.threads),
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"))
    return report


class _Run:
    """The state of one quantize() call: attempts so far, cached graphs and calibration batches."""

    def __init__(self, cfg: QuantizeConfig, meta: dict[str, Any], onnx_dir: Path, gate: _Gate, train: Split):
        self.cfg, self.meta, self.onnx_dir, self.gate, self.train = cfg, meta, onnx_dir, gate, train
        self.attempts: list[Attempt] = []
        self.fused_ops: dict[str, int] = {}
        self._optimized: Path | None = None
        self._preprocessed: Path | None = None
        self._feeds: list[dict[str, np.ndarray]] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="edgedistill-quantize-")

    # ---- shared inputs
    def feeds(self) -> list[dict[str, np.ndarray]]:
        """Calibration batches: ``calibration_samples`` training texts in batches of 8, tokenised by the runtime."""
        if self._feeds is None:
            rng = random.Random(self.cfg.data.seed)
            idx = rng.sample(range(len(self.train)), min(self.cfg.calibration_samples, len(self.train)))
            texts = [self.train.texts[i] for i in idx]
            clf = self.gate.classifier(self.onnx_dir / MODEL_FILE, "fp32")
            feeds = [clf.tokenize(texts[i:i + 8]) for i in range(0, len(texts), 8)]
            # one sequence length for all batches: the histogram calibrators (entropy, percentile) stack them
            length = max(f["input_ids"].shape[1] for f in feeds)
            pad = {"input_ids": self.meta["pad_token_id"], "attention_mask": 0, "token_type_ids": 0}
            self._feeds = [{k: np.pad(v, ((0, 0), (0, length - v.shape[1])), constant_values=pad[k])
                            for k, v in f.items()} for f in feeds]
        return self._feeds

    def preprocessed(self) -> Path:
        """The fp32 graph after onnxruntime's quantisation pre-processing (shape inference, basic folding)."""
        if self._preprocessed is None:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            path = Path(self._tmp.name) / "model_preprocessed.onnx"
            # the unfused graph holds standard ops only: ONNX shape inference suffices (the symbolic one
            # gives up on optimum's dynamic-shape subgraphs)
            quant_pre_process(str(self.onnx_dir / MODEL_FILE), str(path), skip_symbolic_shape=True)
            self._preprocessed = path
        return self._preprocessed

    def rejected(self, kind: str) -> bool:
        tried = [a for a in self.attempts if a.variant == f"int8-{kind}"]
        return bool(tried) and not any(a.passed for a in tried)

    def _try(self, attempt: Attempt, build: Any, providers: Any = None, gate: bool = True) -> Attempt:
        self.attempts.append(attempt)
        try:
            build()
            attempt.ops = op_counts(self.gate.path(attempt.file), QUANT_OPS)
            if not gate:
                attempt.size_bytes = self.gate.path(attempt.file).stat().st_size
                return attempt
            self.gate.measure(attempt, providers)
        except Exception as e:  # a variant that cannot be built or run is recorded, never shipped
            attempt.status, attempt.reason = "error", f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            log.warning("%s could not be built or run: %s", attempt.name, attempt.reason)
            return attempt
        return self.gate.judge(attempt)

    # ---- variants
    def optimized(self) -> None:
        dest = self.gate.work / VARIANT_FILES["optimized"]

        def build() -> None:
            self.fused_ops = optimize(self.onnx_dir / MODEL_FILE, dest, self.meta)
            log.info("fused operators: %s", self.fused_ops)

        a = self._try(Attempt("optimized", "optimized", dest.name, {"optimizer": "onnxruntime.transformers",
                                                                   "model_type": "bert"}), build)
        if a.status != "error":
            self._optimized = dest

    def _settings(self, kind: str) -> dict[str, Any]:
        c = self.cfg
        s = {"per_channel": c.per_channel, "reduce_range": c.reduce_range, "weight_type": c.weight_type,
             "embeddings": c.quantize_embeddings, "exclude": []}
        if kind == "static":
            s.update(activation_type=c.activation_type, symmetric_activations=c.symmetric_activations,
                     calibration=c.calibration, calibration_samples=c.calibration_samples, format="QDQ")
        else:
            s.update(activation_type="quint8", source="optimized" if self._optimized else "fp32")
        return s

    def int8(self, kind: str, fallback_for: str | None = None) -> None:
        variant = f"int8-{kind}"
        src = (self._optimized or self.onnx_dir / MODEL_FILE) if kind == "dynamic" else None
        settings = self._settings(kind)
        base = self._build_int8(variant, variant, VARIANT_FILES[variant], settings, src, fallback_for)
        if base.status == "error" and kind == "dynamic" and src != self.onnx_dir / MODEL_FILE:
            # the fused graph defeated the quantiser: quantise the plain graph instead
            src, settings = self.onnx_dir / MODEL_FILE, dict(settings, source="fp32")
            base = self._build_int8(f"{variant} (unfused)", variant,
                                    VARIANT_FILES[variant].replace(".onnx", "_unfused.onnx"), settings, src, variant)
        if base.passed or not self.cfg.fallbacks or base.status == "error":
            return
        for step, (label, step_settings) in enumerate(self._fallbacks(kind, settings, src), start=1):
            attempt = self._build_int8(f"{variant} +{label}", variant,
                                       VARIANT_FILES[variant].replace(".onnx", f"_fb{step}.onnx"), step_settings, src,
                                       variant)
            if attempt.passed:
                return

    def _build_int8(self, name: str, variant: str, file: str, settings: dict[str, Any], src: Path | None,
                    fallback_for: str | None) -> Attempt:
        dest = self.gate.work / file
        if variant == "int8-dynamic":
            def build() -> None:
                quantize_dynamic_variant(src, dest, settings)
        else:
            def build() -> None:
                quantize_static_variant(self.preprocessed(), dest, settings, self.feeds(), self.cfg.percentile)
        return self._try(Attempt(name, variant, file, {k: v for k, v in settings.items()}, fallback_for), build)

    def _fallbacks(self, kind: str, base: dict[str, Any], src: Path | None):
        """Fallback settings in order, each keeping the previous ones: (label, settings)."""
        import onnx

        s = dict(base, exclude=list(base["exclude"]))
        if not s["per_channel"]:
            s = dict(s, per_channel=True)
            yield "per-channel", s
        if not s["reduce_range"]:
            s = dict(s, reduce_range=True)
            yield "reduce-range", s
        if kind == "static":
            for method in CALIBRATIONS:
                if method != s["calibration"]:
                    yield f"{method} calibration", dict(s, calibration=method)
        graph_path = src if kind == "dynamic" else self.preprocessed()
        ops = _DYNAMIC_WEIGHT_OPS if kind == "dynamic" else _STATIC_WEIGHT_OPS  # what the quantiser would touch
        model = onnx.load(str(graph_path), load_external_data=False)
        groups = {k: [_quantizer_name(model, n, kind) for n in names] for k, names in layer_groups(model, ops).items()}
        if groups["head"]:
            s = dict(s, exclude=s["exclude"] + groups["head"])
            yield "fp32 head", s
        first_last = [n for n in groups["first"] + groups["last"] if n not in s["exclude"]]
        if first_last:
            s = dict(s, exclude=s["exclude"] + first_last)
            yield "fp32 first+last layers", s
        ranked = sensitivity(graph_path, self.feeds()[:2], per_channel=s["per_channel"],
                             reduce_range=s["reduce_range"], weight_type=s["weight_type"], ops=ops)
        ranked = [(_quantizer_name(model, name, kind), err) for name, err in ranked]
        ranked = [(name, err) for name, err in ranked if name not in s["exclude"]]
        if ranked:
            top = [name for name, _ in ranked[:self.cfg.sensitive_nodes]]
            log.info("most sensitive weight nodes: %s", ", ".join(f"{n} ({e:.3g})" for n, e in
                                                                ranked[:self.cfg.sensitive_nodes]))
            s = dict(s, exclude=s["exclude"] + top, sensitive=top)
            yield f"fp32 {len(top)} most sensitive", s
        if s["embeddings"]:  # last: the embedding table is about half of a small model's weights
            yield "fp32 embeddings", dict(s, embeddings=False)

    def fp16(self) -> None:
        import onnxruntime as ort

        if self._optimized is None:
            self.attempts.append(Attempt("fp16", "fp16", VARIANT_FILES["fp16"], {}, status="error",
                                         reason="needs the optimised graph, which could not be built"))
            return
        dest = self.gate.work / VARIANT_FILES["fp16"]
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        a = self._try(Attempt("fp16", "fp16", dest.name, {"keep_io_types": True, "source": "optimized"}),
                      lambda: to_fp16(self._optimized, dest), providers=["CUDAExecutionProvider"] if cuda else None,
                      gate=cuda)
        if not cuda and a.status != "error":
            a.status, a.reason = "not-gated", "built for GPUs; no CUDA provider here, so never shipped on CPU"
        elif a.passed:
            a.reason += " (on CUDA; the CPU choice ignores it)"


def _quantizer_name(model: Any, name: str, kind: str) -> str:
    """The name the quantiser gives node ``name``: dynamic quantisation renames a Gemm to ``<name>_MatMul``."""
    if kind == "dynamic" and any(n.name == name and n.op_type == "Gemm" for n in model.graph.node):
        return name + "_MatMul"
    return name


def _stratified_subset(split: Split, n: int | None, seed: int) -> Split:
    """At most ``n`` examples of ``split``, the same share of each label, chosen from ``seed``."""
    if n is None or n >= len(split):
        return split
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, lab in enumerate(split.labels):
        by_label.setdefault(lab, []).append(i)
    keep = sorted(i for idx in by_label.values() for i in rng.sample(idx, max(1, round(n * len(idx) / len(split)))))
    return Split([split.texts[i] for i in keep], [split.labels[i] for i in keep])


def environment(threads: int | None) -> dict[str, Any]:
    """The machine the latencies were measured on."""
    import onnxruntime as ort

    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not cpu:
                cpu = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:  # not Linux: the flags stay unknown
        pass
    cpu = cpu or platform.processor() or platform.machine()
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "avx2": "avx2" in flags,
            "avx512_vnni": "avx512_vnni" in flags, "arm_dotprod": "asimddp" in flags,
            "onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "python": platform.python_version()}
