"""The physical limit: multiply-adds a model needs per sequence, and the GFLOP/s this machine reaches.

Two numbers put a latency in perspective: how much arithmetic a forward pass is (multiply-adds,
MACs; 1 MAC = 2 FLOP) and how fast this machine does dense arithmetic at its best (a large
square GEMM, the kernel a transformer spends most of its time in). Their ratio says how close a
variant comes to the hardware: ``fraction = 2 * MACs / latency / peak``, with the peak of the
arithmetic the variant does: fp32 for fp32 models, int8 for int8 ones (an int8 GEMM does several
times the fp32 rate on a CPU with VNNI or AMX, so an int8 row against the fp32 peak could read
above 100%).

- :func:`gemm_peak` measures a large fp32 GEMM through numpy (OpenBLAS) and through onnxruntime's
  MatMul (MLAS, the kernels the models run on), and an int8 GEMM through onnxruntime's
  MatMulInteger (uint8 activations x int8 constant weights, the MLAS kernel the dynamic and static
  int8 variants run), each in a fresh process pinned to ``threads``; the fp32 peak is the best fp32
  engine, the int8 peak the int8 one.
- :func:`graph_macs` counts the MACs of an fp32 ONNX graph at a given sequence length: every MatMul
  and Gemm, with the shapes onnxruntime really sees (the graph is run once with all its MatMul
  inputs exposed as outputs, optimisations off, so each node is the exported one).
- :func:`analytic_macs` counts the same from a transformer config (layers, hidden, intermediate,
  heads' total width, labels): ``layers * (4 L H^2 + 2 L^2 H + 2 L H I) + H^2 + H C``
  (Q, K, V and output projections; scores and context; the feed-forward pair; pooler; classifier).

Quantised and fused variants do the same multiply-adds as the fp32 graph they came from (in int8,
or inside fused kernels), so the count of the fp32 graph is used for every variant of a model.

    python benchmarks/gemm_peak.py [--threads 2] [--n 1024] [--onnx model.onnx --length 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")

_PEAK_CHILD = r"""
import json, sys, time
import numpy as np
n, threads, seconds, engine = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
if engine == "numpy":
    def step():
        np.matmul(a, b)
elif engine == "onnxruntime-int8":
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    qa = rng.integers(0, 256, size=(n, n), dtype=np.uint8)
    qb = rng.integers(-127, 128, size=(n, n), dtype=np.int8)
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B", "A_zero"], ["C"])], "gemm_int8",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("C", TensorProto.INT32, [n, n])],
                              initializer=[onnx.numpy_helper.from_array(qb, "B"),
                                           onnx.numpy_helper.from_array(np.array(128, dtype=np.uint8), "A_zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    def step():
        sess.run(None, {"A": qa})
else:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "gemm",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])],
                              initializer=[onnx.numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    def step():
        sess.run(None, {"A": a})
end = time.perf_counter() + max(0.2, seconds / 4)
step()
while time.perf_counter() < end:
    step()
times = []
end = time.perf_counter() + seconds
while time.perf_counter() < end or len(times) < 3:
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
best = min(times)
print(json.dumps({"engine": engine, "dtype": "int8" if engine.endswith("int8") else "fp32", "n": n,
                  "threads": threads, "runs": len(times),
                  "gflops_best": 2 * n ** 3 / best / 1e9,
                  "gflops_median": 2 * n ** 3 / float(np.median(times)) / 1e9}))
"""


ENGINES = ("numpy", "onnxruntime", "onnxruntime-int8")


def gemm_peak(threads: int, n: int = 1024, seconds: float = 2.0, engines: tuple[str, ...] = ENGINES) -> dict[str, Any]:
    """Dense ``n x n @ n x n`` GEMMs with ``threads`` threads: GFLOP/s (fp32) or GOP/s (int8, one multiply-add =
    2 ops) per engine; ``peak_gflops`` is the best fp32 engine, ``int8_peak_gops`` the best int8 one.

    Each engine runs in a fresh interpreter whose thread-count variables are set before numpy
    loads (OpenBLAS reads them once), so the count is really the one asked for.
    """
    unknown = set(engines) - set(ENGINES)
    if unknown or not any(e in engines for e in ("numpy", "onnxruntime")):
        raise ValueError(f"engines={engines!r}: choose from {ENGINES}, at least one fp32 engine")
    if threads < 1 or n < 16:
        raise ValueError(f"threads={threads!r}, n={n!r}: need threads >= 1 and n >= 16")
    env = dict(os.environ, **{v: str(threads) for v in _THREAD_VARS})
    out: dict[str, Any] = {"threads": threads, "n": n, "engines": {}}
    for engine in engines:
        proc = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(n), str(threads), str(seconds), engine],
                              env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the {engine} GEMM failed: {proc.stderr.strip()[-1500:]}")
        out["engines"][engine] = json.loads(proc.stdout.strip().splitlines()[-1])
    for dtype, peak_key, engine_key in (("fp32", "peak_gflops", "peak_engine"),
                                        ("int8", "int8_peak_gops", "int8_peak_engine")):
        measured = {k: e for k, e in out["engines"].items() if e["dtype"] == dtype}
        if measured:
            best = max(measured, key=lambda k: measured[k]["gflops_best"])
            out[peak_key], out[engine_key] = measured[best]["gflops_best"], best
    return out


# --------------------------------------------------------------------------- multiply-adds

def analytic_macs(layers: int, hidden: int, intermediate: int, length: int, num_labels: int,
                  pooler: bool = True) -> int:
    """MACs of one sequence through a BERT-style encoder classifier (see the module doc)."""
    per_layer = 4 * length * hidden * hidden + 2 * length * length * hidden + 2 * length * hidden * intermediate
    head = (hidden * hidden if pooler else 0) + hidden * num_labels
    return layers * per_layer + head


def config_macs(config: Mapping[str, Any], length: int) -> int:
    """:func:`analytic_macs` from a Hugging Face ``config.json`` (BERT, MPNet, RoBERTa, DistilBERT...)."""
    layers = config.get("num_hidden_layers", config.get("n_layers"))
    hidden = config.get("hidden_size", config.get("dim"))
    inter = config.get("intermediate_size", config.get("hidden_dim"))
    labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)
    if not (layers and hidden and inter):
        raise ValueError(f"config lacks layers / hidden / intermediate sizes: {sorted(config)}")
    # BERT's classifier has a pooler (dense on the first token); MPNet / RoBERTa have a dense layer too
    return analytic_macs(int(layers), int(hidden), int(inter), length, int(labels), pooler=True)


def graph_macs(onnx_path: Path | str, length: int, batch: int = 1) -> dict[str, Any]:
    """MACs per sequence of an fp32 ONNX classifier at ``length`` tokens, from the shapes it really runs.

    Returns ``{"macs": int, "by_op": {...}, "nodes": int}``. Raises ``ValueError`` for a graph with
    quantised or fused matrix ops (count the fp32 graph it came from instead).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    unsupported = {n.op_type for n in model.graph.node} & {"MatMulInteger", "QAttention", "Attention", "QLinearMatMul",
                                                           "MatMulIntegerToFloat", "QGemm", "MultiHeadAttention"}
    if unsupported:
        raise ValueError(f"{onnx_path}: {sorted(unsupported)} nodes; count the fp32 graph it was made from")
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    initial = {i.name: list(i.dims) for i in model.graph.initializer}
    existing = {o.name for o in model.graph.output}
    for node in matmuls:
        for name in node.input[:2]:
            if name not in initial and name not in existing:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                existing.add(name)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feed = {}
    for i in sess.get_inputs():
        dtype = np.int64 if "int64" in i.type else np.int32
        feed[i.name] = (np.ones if i.name == "attention_mask" else np.zeros)((batch, length), dtype=dtype)
        if i.name == "input_ids":
            feed[i.name] = np.full((batch, length), 5, dtype=dtype)
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: list(v.shape) for n, v in zip(names, sess.run(names, feed))}
    shapes.update(initial)
    total, by_op = 0, {}
    for node in matmuls:
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        if node.op_type == "Gemm":
            attrs = {x.name: x.i for x in node.attribute}
            m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
            n = b[0] if attrs.get("transB") else b[1]
            macs = m * k * n
        else:
            if len(a) == 1:
                a = [1] + a
            if len(b) == 1:
                b = b + [1]
            m, k, n = a[-2], a[-1], b[-1]
            lead = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
            macs = int(np.prod(lead, dtype=np.int64)) * m * k * n
        total += int(macs)
        by_op[node.op_type] = by_op.get(node.op_type, 0) + int(macs)
    return {"macs": total // batch, "by_op": {k: v // batch for k, v in by_op.items()}, "nodes": len(matmuls),
            "length": length}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Dense fp32 and int8 GEMM peaks of this machine, and a graph's MACs.")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--onnx", type=Path, help="also count the MACs of this fp32 ONNX graph")
    ap.add_argument("--length", type=int, default=128)
    args = ap.parse_args(argv)
    result: dict[str, Any] = {"gemm": gemm_peak(args.threads, args.n, args.seconds)}
    if args.onnx:
        result["macs"] = graph_macs(args.onnx, args.length)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
