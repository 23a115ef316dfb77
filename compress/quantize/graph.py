"""Graph analysis: operator counts, the weight nodes and the layers they belong to, and how much int8 hurts each."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

QUANT_OPS = ("MatMulInteger", "DynamicQuantizeLinear", "QAttention", "QEmbedLayerNormalization", "QuantizeLinear",
             "DequantizeLinear", "QLinearMatMul", "MatMulIntegerToFloat", "QGemm")
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "LayerNormalization", "Gelu", "FastGelu", "BiasGelu", "GemmFastGelu")
_LN_OPS = ("LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization",
           "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
_WEIGHT_OPS = ("MatMul", "Attention", "Gemm")  # nodes whose input 1 is a weight matrix


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
