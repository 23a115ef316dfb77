"""What batch-invariant answers cost: a dynamic-int8 package run one text per call against the same graph batched.

    python benchmarks/batch_invariance.py PACKAGE [--threads 2] [--seconds 10] [--texts 512]

Dynamic int8 quantises activations with one scale per tensor, so over a whole padded batch: batched, a
text's answer depends on its batch-mates. The runtime therefore runs such a package one text per call
(``batch_invariant``, the default). For one package (folder or .zip) this measures, in one process,
interleaved call by call (the order rotating every round):

- throughput at batch 32 (texts per second) and batch-1 latency (p50 / p90) of the package run one text
  per call (invariant) and batched (``TextClassifier.load(..., batch_invariant=False)``); beside them, for
  comparison, the int8-static and fp32 graphs of the same build (from the ONNX folder the manifest names;
  both are batch-invariant, so they batch);
- how often batching changes a label: every text classified alone and in batches of 32 (sorted by
  length, as ``predict_proba`` batches them), the share whose label differs and the largest |Δp|.

Texts: the test split of the data named in the package's recipe (its manifest), else review-like
synthetic texts (``--synthetic``). Results go to
``benchmarks/results/cpu-<machine>/batch_invariance-<name>.{json,md}``. Run heavy benchmarks under the
shared lock: ``flock /tmp/edgedistill-heavy.lock python benchmarks/batch_invariance.py ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]  # run from a checkout: `python benchmarks/batch_invariance.py`

from benchmarks._paths import recorded, recorded_argv  # noqa: E402
from runtime_overhead import review_texts  # noqa: E402
from edgedistill.runtime import TextClassifier  # noqa: E402
from edgedistill.runtime.bench import environment  # noqa: E402
from edgedistill.runtime.timing import summarize  # noqa: E402
from edgedistill.runtime.package import BATCH_DEPENDENT_VARIANTS, MODEL_FILE, TOKENIZER_FILE, open_package  # noqa: E402

INVARIANT, BATCHED = "package, one text per call (invariant)", "package, batched (opt-out)"


def comparison_graphs(manifest: dict[str, Any]) -> dict[str, Path]:
    """The fp32 graph and the fastest passing int8-static graph of the build the package came from."""
    onnx_dir = Path((manifest.get("source") or {}).get("onnx_dir") or "")
    if not (onnx_dir / MODEL_FILE).is_file():
        return {}
    graphs = {"fp32": onnx_dir / MODEL_FILE}
    try:
        from edgedistill.compress.quantize import QuantizeReport

        static = [a for a in QuantizeReport.load(onnx_dir).attempts if a.variant == "int8-static" and a.passed]
        if static:
            graphs["int8-static"] = onnx_dir / min(static, key=lambda a: a.latency_p50_ms or 0.0).file
    except (OSError, ValueError, KeyError, ImportError):
        pass
    if "int8-static" not in graphs and (onnx_dir / "model_int8_static.onnx").is_file():
        graphs["int8-static"] = onnx_dir / "model_int8_static.onnx"
    return graphs


def test_texts(manifest: dict[str, Any], n: int, synthetic: bool) -> tuple[list[str], str]:
    """The test split of the package's recipe data (the first ``n`` texts), or synthetic review texts."""
    data = ((manifest.get("recipe") or {}).get("data")) if not synthetic else None
    if data:
        from edgedistill.compress.data import DataConfig, load_data

        loaded = load_data(DataConfig(**data))
        return list(loaded.test.texts[:n]), f"{loaded.name} test split"
    return review_texts(n, seed=3), "synthetic review-like texts"


def batch_flips(invariant: TextClassifier, batched: TextClassifier, texts: list[str]) -> dict[str, Any]:
    """Each text alone against the batches of 32 ``predict_proba`` makes: the share of labels that change."""
    alone = invariant.predict_proba(texts)  # one text per call
    together = batched.predict_proba(texts, batch_size=32)
    flips = alone.argmax(1) != together.argmax(1)
    return {"texts": len(texts), "label_flips": int(flips.sum()), "label_flip_share": float(flips.mean()),
            "max_abs_diff": float(np.abs(alone - together).max()),
            "invariant_check_max_abs_diff": float(np.abs(invariant.predict_proba(texts, batch_size=32) - alone).max())}


def interleaved(fns: dict[str, Any], calls: list[Any], batch: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Time ``fns[name](call)`` round by round, every model on the same input in a round, the order rotating."""
    names = list(fns)
    end = time.perf_counter() + warmup
    k = 0
    while time.perf_counter() < end or k < 2:
        for name in names:
            fns[name](calls[k % len(calls)])
        k += 1
    times: dict[str, list[float]] = {name: [] for name in names}
    end, k = time.perf_counter() + seconds, 0
    while time.perf_counter() < end or k < 10:
        order = names[k % len(names):] + names[:k % len(names)]
        for name in order:
            t0 = time.perf_counter()
            fns[name](calls[k % len(calls)])
            times[name].append(time.perf_counter() - t0)
        k += 1
    return {name: summarize(v, batch) for name, v in times.items()}


def measure(package: Path, threads: int | None, seconds: float, warmup: float, n_texts: int,
            synthetic: bool = False) -> dict[str, Any]:
    load_before = [round(x, 2) for x in os.getloadavg()]
    invariant = TextClassifier.load(package, threads=threads, batch_invariant=True)
    batched = TextClassifier.load(package, threads=threads, batch_invariant=False)
    manifest = invariant.manifest or {}
    models: dict[str, TextClassifier] = {INVARIANT: invariant, BATCHED: batched}
    with open_package(package) as folder:  # the package's own tokenizer, also from a .zip
        for variant, graph in comparison_graphs(manifest).items():
            config = invariant.config.to_dict() | {"variant": variant, "temperature": 1.0,
                                                   "batch_dependent": variant in BATCH_DEPENDENT_VARIANTS}
            models[f"{variant} ({graph.name})"] = TextClassifier.from_files(graph, folder / TOKENIZER_FILE, config,
                                                                            threads=threads)
    texts, source = test_texts(manifest, n_texts, synthetic)
    flips = batch_flips(invariant, batched, texts)
    print(f"{flips['label_flips']} of {flips['texts']} labels change when batched "
          f"(max |dp| {flips['max_abs_diff']:.4f}); invariant check {flips['invariant_check_max_abs_diff']:.1e}",
          flush=True)
    rng = np.random.default_rng(0)
    chunks = [[texts[i] for i in rng.choice(len(texts), 32, replace=False)] for _ in range(16)]
    b32 = interleaved({n: (lambda c, m=m: m.predict_proba(c, batch_size=32)) for n, m in models.items()},
                      chunks, 32, seconds, warmup)
    b1 = interleaved({n: (lambda t, m=m: m.predict_proba([t])) for n, m in models.items()},
                     texts[:256], 1, seconds, warmup)
    rows = [{"model": n, "variant": m.config.variant, "one_text_per_call": m.runs_alone,
             "batch32": b32[n], "batch1": b1[n]} for n, m in models.items()]
    for r in rows:
        print(f"{r['model']}: batch 32 {r['batch32']['throughput_per_s']:.0f} texts/s, batch 1 p50 "
              f"{r['batch1']['p50_ms']:.2f} ms", flush=True)
    inv, bat = b32[INVARIANT], b32[BATCHED]
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": shlex.join(["python", *recorded_argv(sys.argv)]),
        "package": {"path": recorded(package), "name": manifest.get("name") or Path(package).name.removesuffix(".zip"),
                    "variant": invariant.config.variant, "batch_dependent": invariant.config.batch_dependent,
                    "model_sha256": manifest.get("files", {}).get(MODEL_FILE, {}).get("sha256")},
        "texts": source, "environment": environment("cpu", threads),
        "loadavg_before": load_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "flips": flips, "rows": rows,
        "throughput_ratio_invariant_vs_batched": inv["throughput_per_s"] / bat["throughput_per_s"],
        "batch1_p50_ratio_invariant_vs_batched": b1[INVARIANT]["p50_ms"] / b1[BATCHED]["p50_ms"],
    }


def markdown(r: dict[str, Any]) -> str:
    env, f = r["environment"], r["flips"]
    lines = [f"# Batch invariance: {r['package']['name']} ({r['package']['variant']})", "",
             f"{env['cpu']}, {env['threads'] or 'default'} threads, onnxruntime {env['onnxruntime']}; "
             f"load average {r['loadavg_before']} before, {r['loadavg_after']} after. `{r['command']}`", "",
             f"**Batched, {f['label_flips']} of {f['texts']} texts ({f['label_flip_share']:.2%}, {r['texts']}) get "
             f"another label than alone (max |Δp| {f['max_abs_diff']:.4f}). Running one text per call removes "
             f"that, at {r['throughput_ratio_invariant_vs_batched']:.2f}x the batched throughput at batch 32; "
             f"at batch 1, where both run the same call, {r['batch1_p50_ratio_invariant_vs_batched']:.2f}x the p50 "
             "latency.**", "",
             "Interleaved call by call in one process, the order rotating each round; batch 32: random chunks of "
             "the texts; batch 1: one text a call.", "",
             "| model | runs | batch-32 throughput (texts/s) | batch-32 p50 (ms) | batch-1 p50 (ms) | "
             "batch-1 p90 (ms) |",
             "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['model']} | {'one text per call' if row['one_text_per_call'] else 'batched'} | "
                     f"{row['batch32']['throughput_per_s']:.0f} | {row['batch32']['p50_ms']:.2f} | "
                     f"{row['batch1']['p50_ms']:.2f} | {row['batch1']['p90_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, help="a model package folder or .zip")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for every model")
    ap.add_argument("--seconds", type=float, default=10.0, help="measuring time per batch size")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up time per batch size")
    ap.add_argument("--texts", type=int, default=100_000, help="at most this many test texts")
    ap.add_argument("--synthetic", action="store_true", help="synthetic review texts instead of the test split")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results" / f"cpu-{platform.machine()}")
    args = ap.parse_args(argv)
    result = measure(args.package, args.threads, args.seconds, args.warmup, args.texts, args.synthetic)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"batch_invariance-{result['package']['name']}"
    (args.out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / f"{stem}.md").write_text(markdown(result))
    print(f"wrote {args.out_dir / stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
