"""The variant builders: the fused graph, dynamic and static int8, fp16, each from a source graph into a file."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress.exportmeta import ExportMeta
from edgedistill.compress.quantize.graph import FUSED_OPS

log = logging.getLogger(__name__)

# The weight nodes each quantiser turns into int8. The dynamic one first rewrites every Gemm into a
# MatMul named "<gemm>_MatMul" (+ Add), which it then quantises like any other MatMul.
DYNAMIC_WEIGHT_OPS = ("MatMul", "Attention", "Gemm")
STATIC_WEIGHT_OPS = ("MatMul", "Gemm")


def optimize(src: Path, dest: Path, meta: ExportMeta) -> dict[str, int]:
    """Fuse the fp32 graph with onnxruntime's transformer optimiser; returns the fused-op counts."""
    from onnxruntime.transformers.optimizer import optimize_model

    heads = meta.num_attention_heads or 0
    # the optimiser takes both numbers or neither: a static student has no heads, and then no hidden size either
    model = optimize_model(str(src), model_type="bert", num_heads=heads,
                           hidden_size=(meta.hidden_size or 0) if heads else 0, opt_level=0)
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
    ops = list(STATIC_WEIGHT_OPS) + (["Gather"] if settings["embeddings"] else [])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the calibrators print their progress: to the log, not the console
        quantize_static(str(src), str(dest), _Feeds(feeds), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
                        per_channel=settings["per_channel"], reduce_range=settings["reduce_range"],
                        activation_type=qtype[settings["activation_type"]],
                        weight_type=qtype[settings["weight_type"]], nodes_to_exclude=list(settings["exclude"]),
                        calibrate_method=method,
                        extra_options={"ActivationSymmetric": settings["symmetric_activations"],
                                       # attention's activation x activation products stay fp32
                                       "MatMulConstBOnly": True, "CalibPercentile": percentile})
    if printed.getvalue().strip():
        log.debug("onnxruntime calibration (%s): %s", settings["calibration"], " / ".join(
            line.strip() for line in printed.getvalue().splitlines() if line.strip()))


def to_fp16(src: Path, dest: Path) -> None:
    """fp16 weights and compute with fp32 inputs and outputs (for GPUs) from the optimised graph."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(dest))


def quantizer_name(model: Any, name: str, kind: str) -> str:
    """The name the quantiser gives node ``name``: dynamic quantisation renames a Gemm to ``<name>_MatMul``."""
    if kind == "dynamic" and any(n.name == name and n.op_type == "Gemm" for n in model.graph.node):
        return name + "_MatMul"
    return name
