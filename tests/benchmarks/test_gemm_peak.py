"""benchmarks/gemm_peak.py: the machine's matrix-multiply peaks, and the multiply-adds of a model counted from its
graph, from its architecture and from its config, against a hand count."""

from __future__ import annotations

from tests.helpers import load_benchmark


def test_gemm_peak_is_positive():
    peak = load_benchmark("gemm_peak").gemm_peak(threads=1, n=128, seconds=0.1)
    assert peak["peak_gflops"] > 0 and peak["int8_peak_gops"] > 0
    assert set(peak["engines"]) == {"numpy", "onnxruntime", "onnxruntime-int8"}
    assert {k: e["dtype"] for k, e in peak["engines"].items()} == {"numpy": "fp32", "onnxruntime": "fp32",
                                                                   "onnxruntime-int8": "int8"}
    assert peak["int8_peak_gops"] == peak["engines"]["onnxruntime-int8"]["gflops_best"]
    assert peak["peak_gflops"] == max(peak["engines"][k]["gflops_best"] for k in ("numpy", "onnxruntime"))
    assert all(e["gflops_best"] >= e["gflops_median"] > 0 for e in peak["engines"].values())


def test_macs_of_the_tiny_bert_equal_a_hand_count(tiny_package):
    gp = load_benchmark("gemm_peak")
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
