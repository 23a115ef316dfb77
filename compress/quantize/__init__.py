"""Optimise and quantise an exported classifier, keeping only variants that pass an accuracy gate.

Input: a folder written by :func:`edgedistill.compress.export.export` (``model.onnx`` fp32,
tokenizer, ``export.json``). Variants built beside it:

- ``optimized`` (``model_optimized.onnx``): onnxruntime's transformer optimiser fuses
  attention, LayerNorm (+ residual), GELU and the embeddings; the fused-op counts are reported;
- ``int8-dynamic`` (``model_int8_dynamic.onnx``): weights int8, activations quantised at run time
  (MatMulInteger / QAttention), built from the fused graph;
- ``int8-static`` (``model_int8_static.onnx``): QDQ graph calibrated on training texts (MinMax,
  Entropy or Percentile), built from the *unfused* graph: onnxruntime fuses QDQ at session creation,
  whereas the transformer optimiser's contrib ops leave the static quantiser little to work on;
- ``fp16`` (``model_fp16.onnx``) for GPUs: gated only where a CUDA provider exists, never shipped on CPU.

The gate: every variant runs through the runtime (``edgedistill.runtime.TextClassifier``, the code that
ships) on the validation split and is scored with :func:`edgedistill.compress.evaluate.compute_metrics`, the
protocol every stage uses. A variant more than ``budget`` macro-F1 points below fp32 is
rejected, and fallbacks are tried in order (per-channel weights, reduced range, other calibrations for
static, then kept in fp32: the classifier head, also the first and last layers, also the most
sensitive weight nodes, also the embeddings; finally static instead of dynamic). The fastest passing variant
(batch-1 p50 latency through the runtime) is chosen, variants within 5% of it counting as tied; among
those, one that runs batches whole, then the smaller, then the more accurate wins
(:func:`~edgedistill.compress.quantize.gate.choose`). fp32 always passes, so when nothing else
does the report says so and fp32 ships. A variant that raises while being built or measured is recorded
as an error, not judged: when int8 was asked for and every int8 attempt errored, the stage fails with
:class:`~edgedistill.compress.errors.VariantBuildError` listing the errors, unless ``allow_fp32`` lets fp32 ship.
The :class:`QuantizeReport` lists every attempt and is written to ``quantize_report.json`` and
``quantize_report.md`` in the ONNX folder.

A run builds its graphs in a work folder inside the ONNX folder (``.quantize.tmp-*``) and moves them
beside the export only once every attempt is judged, the report last: a run that fails or is killed
leaves the previous graphs and report as they were.

One concept a module: :mod:`~edgedistill.compress.quantize.config` (the settings and hardware presets),
:mod:`~edgedistill.compress.quantize.variants` (the graph builders), :mod:`~edgedistill.compress.quantize.graph`
(operator counts, layer groups, node sensitivity), :mod:`~edgedistill.compress.quantize.gate` (the gate and the run) and
:mod:`~edgedistill.compress.quantize.report` (the attempts and the report). :func:`quantize` is the way in.
"""

from __future__ import annotations

from edgedistill.compress.quantize.config import BUILDABLE, CALIBRATIONS, PRESETS, QTYPES, VARIANT_FILES, QuantizeConfig
from edgedistill.compress.quantize.gate import WORK_PREFIX, quantize
from edgedistill.compress.quantize.graph import FUSED_OPS, QUANT_OPS, layer_groups, op_counts, sensitivity, weight_nodes
from edgedistill.compress.quantize.report import REPORT_JSON, REPORT_MD, Attempt, QuantizeReport
from edgedistill.compress.quantize.variants import optimize, quantize_dynamic_variant, quantize_static_variant, to_fp16

__all__ = [
    "BUILDABLE", "CALIBRATIONS", "FUSED_OPS", "PRESETS", "QTYPES", "QUANT_OPS", "REPORT_JSON", "REPORT_MD",
    "VARIANT_FILES", "WORK_PREFIX", "Attempt", "QuantizeConfig", "QuantizeReport", "layer_groups", "op_counts",
    "optimize", "quantize", "quantize_dynamic_variant", "quantize_static_variant", "sensitivity", "to_fp16",
    "weight_nodes",
]
