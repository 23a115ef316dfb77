"""The Pareto report of a built ladder: every rung beside the teacher, the TF-IDF baseline and two peers.

    python benchmarks/ladder.py models/movie-sentiment.toml --profile full \\
        --set 'ladder.rungs=["minilm-l6", "drop-layers:3", "static"]' --out benchmarks/results/cpu-x86_64

reads ``<build>/ladder/ladder.json`` (run ``edgedistill build`` with the same recipe, profile and ``--set`` first),
times every rung's package, the teacher (torch) and the baseline the same way (batch-1 p50 and batch-32 throughput
on the same test texts, here, one after the other), runs the two peers in their own environments (``make peers``;
each skipped with a note when its environment is missing), and writes ``ladder-<name>-<profile>.{md,json,png}``:
macro-F1 against batch-1 latency, log scale, the frontier drawn, every point labelled.

The peers are what a user would do instead of the toolchain:

- model2vec (.venv-model2vec, ``peers/model2vec_peer.py``): a static model distilled from the teacher's base
  encoder and its own classifier, which times itself;
- optimum (.venv-peers: optimum-onnx needs transformers 4.57; ``peers/optimum_peer.py``, the child process that
  benchmarks/suite.py drives too): the recipe's own fine-tuned student exported by optimum and quantized by its
  ``ORTQuantizer`` (dynamic int8, the ``AutoQuantizationConfig`` preset of this CPU), run by
  ``ORTModelForSequenceClassification`` in ``pipeline("text-classification")``. It is timed by this script's own
  :func:`timings`, each call timed in the child (the round trip is not its work). benchmarks/suite.py runs the same
  pipeline on the shipped file instead, for the runtime's overhead against it.

Every peer's macro-F1 is scored here from its probabilities on the whole test split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from benchmarks._paths import recorded, recorded_argv  # noqa: E402
from peers.process import M2V_PYTHON, PeerError, PeerProcess, model2vec_row, score_peer  # noqa: E402

PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"  # `make peers`
OPTIMUM_PEER = HERE / "peers" / "optimum_peer.py"
LONG = 128  # the long-text timing: batch 1 on texts of exactly this many of each model's own tokens


def timings(predict, texts: list[str], n_one: int = 100, seconds: float = 3.0,
            self_timed: bool = False) -> tuple[float, float]:
    """Batch-1 p50 in ms over the first ``n_one`` texts (twice each), and the best batch-32 texts/s of about
    ``seconds`` (:func:`edgedistill.compress.ladder.throughput`, as the ladder table measures it). ``self_timed``:
    ``predict`` returns the seconds its call took, timed where it ran (a peer's own process)."""
    from edgedistill.compress.ladder import throughput

    return (p50_at_length(predict, texts[:n_one], self_timed),
            throughput(predict, texts, seconds=seconds, self_timed=self_timed))


def p50_at_length(predict, texts: list[str], self_timed: bool = False) -> float:
    """Batch-1 p50 in ms over ``texts`` (each twice), after one warm-up call."""
    predict(texts[:1])
    one = []
    for t in texts * 2:
        s = time.perf_counter()
        took = predict([t])
        one.append((took if self_timed else time.perf_counter() - s) * 1e3)
    return statistics.median(one)


class _HFTokens:
    """What edgedistill.runtime.bench.exact_length_texts needs from a classifier, for a transformers tokenizer."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def tokenize(self, texts: list[str]):
        return {"input_ids": np.asarray(self.tokenizer(texts)["input_ids"])}


def optimum_row(recipe, data, texts: list[str], python: Path) -> dict[str, Any] | None:
    """The optimum peer's row: the recipe's student through optimum's own export and dynamic int8 quantization,
    run by its pipeline in ``python`` (.venv-peers) and timed by :func:`timings` like every other row, each call
    timed in the child; its macro-F1 scored here (:func:`score_peer`) from the pipeline's probabilities on the
    test split. None without that environment."""
    from transformers import AutoTokenizer

    from edgedistill.compress.quantize.config import ISA_PRESETS
    from edgedistill.runtime.bench import exact_length_texts
    from edgedistill.runtime.cpu import detect

    if not python.is_file():
        return None
    isa = detect().name
    if ISA_PRESETS[isa] is None:
        raise SystemExit(f"the optimum peer: optimum has no AutoQuantizationConfig preset for this CPU ({isa})")
    student = recipe.layout.student
    with tempfile.TemporaryDirectory() as tmp, closing(PeerProcess(python, OPTIMUM_PEER)) as proc:
        try:
            made = proc.call(cmd="quantize", model=str(student), out=tmp, preset=ISA_PRESETS[isa])
            hello = proc.call(cmd="load", onnx_dir=made["onnx_dir"], file=made["file"], threads=None,
                              device="cpu", max_length=recipe.export().max_length, batch=32)
            probs = proc.call(cmd="proba", texts=list(data.test.texts))["probs"]

            def run(ts: list[str]) -> float:
                return proc.call(cmd="run", texts=ts)["seconds"]

            lat, thr = timings(run, texts, self_timed=True)
            long_texts = exact_length_texts(_HFTokens(AutoTokenizer.from_pretrained(student), 512), LONG, 20)
            at128 = p50_at_length(run, long_texts, self_timed=True)
        except PeerError as e:
            raise SystemExit(f"the optimum peer failed: {e}") from e
    row = score_peer({"test": {"classes": hello["labels"], "probs": probs}}, data)
    made = {k: v for k, v in made.items() if k not in ("ok", "onnx_dir")}  # the folder is gone with ``tmp``
    return {**row, **made, "latency_p50_ms": lat, "throughput_b32": thr, "p50_ms_128_tokens": at128,
            "size_mb": round(made["size_bytes"] / 1e6, 2), "versions": hello["versions"], "student": str(student)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu-x86_64"))
    ap.add_argument("--model2vec-python", default=str(M2V_PYTHON))
    ap.add_argument("--peers-python", default=str(PEERS_PYTHON), help="Python of the optimum peer's environment")
    a = ap.parse_args(argv)

    from edgedistill.compress.baseline import margin_kept, share_of_teacher, train_baseline
    from edgedistill.compress.data import load_data
    from edgedistill.compress.evaluate import predict_proba_torch
    from edgedistill.compress.ladder import frontier, package_mb, plot_points
    from edgedistill.compress.recipe import load_recipe
    from edgedistill.compress.checkpoints import load_classifier
    from edgedistill.runtime.bench import environment

    recipe = load_recipe(a.recipe, profile=a.profile, overrides=a.overrides)
    ladder = json.loads((recipe.layout.ladder / "ladder.json").read_text())
    data = load_data(recipe.data())
    texts = list(data.test.texts)[:512]
    refs = ladder["references"]
    teacher_f1, baseline_f1 = refs["teacher"], refs["baseline"]
    rows: list[dict[str, Any]] = []
    from edgedistill.runtime import TextClassifier

    from edgedistill.runtime.bench import exact_length_texts

    for r in ladder["rungs"]:  # each rung's shipped package, timed here like every other row
        package = Path(r["build_dir"]) / "package"
        clf = TextClassifier.load(package)
        lat, thr = timings(clf.predict_proba, texts)
        at128 = p50_at_length(clf.predict_proba, exact_length_texts(clf, LONG, 20))
        # scored here too, like every other row: the package on disk, not the figure its build recorded
        test = score_peer({"test": {"classes": list(clf.labels), "probs": clf.predict_proba(list(data.test.texts))}},
                          data)
        rows.append({"model": f"rung: {r['name']}", "kind": "rung", "macro_f1": test["macro_f1"],
                     "latency_p50_ms": lat, "throughput_b32": thr, "size_mb": package_mb(package),
                     "variant": json.loads((package / "config.json").read_text())["variant"],
                     "p50_ms_128_tokens": at128})
        del clf
    # the teacher in torch and the baseline, timed here on the same texts
    from transformers import AutoTokenizer

    tdir = recipe.layout.teacher
    model, tok = load_classifier(tdir).eval(), AutoTokenizer.from_pretrained(tdir)
    lat, thr = timings(lambda ts, model=model: predict_proba_torch(model, tok, ts,
                                                                   max_length=recipe.export().max_length,
                                                                   batch_size=32), texts, n_one=40, seconds=10.0)
    size = sum(p.stat().st_size for p in tdir.glob("*.safetensors")) / 1e6
    long_texts = exact_length_texts(_HFTokens(tok, 512), LONG, 20)
    at128 = p50_at_length(lambda ts, model=model: predict_proba_torch(model, tok, ts, max_length=LONG, batch_size=1),
                          long_texts)
    rows.append({"model": "teacher (torch fp32)", "kind": "reference", "macro_f1": teacher_f1, "latency_p50_ms": lat,
                 "throughput_b32": thr, "size_mb": round(size, 1), "variant": "fp32", "p50_ms_128_tokens": at128})
    del model
    base = train_baseline(data.train, data.validation)
    lat, thr = timings(base.predict_proba, texts)
    rows.append({"model": "baseline TF-IDF + LR", "kind": "reference", "macro_f1": baseline_f1,
                 "latency_p50_ms": lat, "throughput_b32": thr, "size_mb": round(base.size_bytes / 1e6, 1),
                 "variant": "scikit-learn"})
    notes = ["model2vec: skipped (run `make peers` for .venv-model2vec)."]
    try:
        m2v = model2vec_row(recipe, data, Path(a.model2vec_python))
    except PeerError as e:
        raise SystemExit(str(e)) from e
    if m2v:
        rows.append({"model": "peer: model2vec classifier", "kind": "peer", "macro_f1": m2v["macro_f1"],
                     "latency_p50_ms": m2v["latency_p50_ms"], "throughput_b32": m2v["throughput_b32"],
                     "size_mb": m2v["size_mb"], "variant": f"model2vec {m2v['versions']['model2vec']}"})
        notes[0] = (f"model2vec {m2v['versions']['model2vec']}: distilled from the teacher's base encoder "
                    f"(PCA {m2v['pca_dims']}) in {m2v['distill_seconds']:.0f} s, StaticModelForClassification "
                    f"fitted on the training split in {m2v['fit_seconds']:.0f} s (validation macro-F1 "
                    f"{m2v['validation_macro_f1']:.4f}).")
    notes.append("optimum: skipped (run `make peers` for .venv-peers).")
    opt = optimum_row(recipe, data, texts, Path(a.peers_python))
    if opt:
        v = opt["versions"]
        recipe_rung = next((r["name"] for r in ladder["rungs"] if r.get("spec") == "recipe"), "the recipe's student")
        rows.append({"model": f"peer: optimum int8 of {recipe_rung}", "kind": "peer", "macro_f1": opt["macro_f1"],
                     "latency_p50_ms": opt["latency_p50_ms"], "throughput_b32": opt["throughput_b32"],
                     "size_mb": opt["size_mb"], "p50_ms_128_tokens": opt["p50_ms_128_tokens"],
                     "variant": f"optimum-onnx {v['optimum-onnx']}: its export + dynamic int8 ({opt['preset']})"})
        notes[1] = (f"optimum-onnx {v['optimum-onnx']} (transformers {v['transformers']}, onnxruntime "
                    f"{v['onnxruntime']}): the recipe's student exported by optimum in {opt['export_seconds']:.0f} s, "
                    f"quantized by ORTQuantizer with AutoQuantizationConfig.{opt['preset']}(is_static=False) "
                    f"(per-channel {opt['per_channel']}, reduce_range {opt['reduce_range']}) in "
                    f"{opt['quantize_seconds']:.0f} s, run by ORTModelForSequenceClassification in "
                    "pipeline(\"text-classification\"), each call timed in its own process.")
    t128 = next(r["p50_ms_128_tokens"] for r in rows if r["model"].startswith("teacher"))
    for r in rows:
        r["share_of_teacher"] = share_of_teacher(r["macro_f1"], teacher_f1)
        r["margin_kept"] = margin_kept(r["macro_f1"], teacher_f1, baseline_f1)
        r["speedup_128_tokens"] = t128 / r["p50_ms_128_tokens"] if r.get("p50_ms_128_tokens") else None
    front = frontier([(r["latency_p50_ms"], r["macro_f1"]) for r in rows])
    for r in rows:
        r["on_frontier"] = (r["latency_p50_ms"], r["macro_f1"]) in front
    env = environment("cpu")
    if opt:
        env["optimum_peer"] = {"python": recorded(a.peers_python), **opt["versions"]}
    name = f"ladder-{recipe.name}-{recipe.profile}"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/ladder.py " + " ".join(
        recorded_argv([a.recipe]) + (["--profile", a.profile] if a.profile else [])
        + [f"--set '{s}'" for s in a.overrides])
    (out / f"{name}.json").write_text(json.dumps({"rows": rows, "references": refs, "chosen": ladder["chosen"],
                                                  "budget": ladder["budget"], "environment": env,
                                                  "command": command}, indent=2) + "\n")

    def f(v: Any, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    lines = [f"# Student ladder and peers: {recipe.name} ({recipe.profile} profile)", "",
             f"`{command}` on {env['cpu']}, {env['available_cpus']} CPUs ({', '.join(env['cpu_flags'])}); "
             f"test split of `{data.name}`, latency and throughput on its first {len(texts)} texts, one model at "
             "a time, each in this process but the peers: batch 1 is the p50 of the first 100 texts twice each, "
             "batch 32 the best pass over all 512 of about 3 s (the teacher: 40 texts and 10 s). Rungs: the shipped "
             "variant through the runtime; the teacher: torch, batched by length. " + " ".join(notes), "",
             f"The 128-token columns time batch 1 on 20 texts of exactly {LONG} of each model's own tokens (twice "
             "each), for the transformer rows.", "",
             "| model | variant | test macro-F1 | of teacher | margin kept | p50 ms (batch 1) | texts/s (batch 32) "
             f"| p50 ms at {LONG} tokens | × faster than teacher at {LONG} | size MB | on the frontier |",
             "|" + "---|" * 11]
    for r in sorted(rows, key=lambda r: r["latency_p50_ms"]):
        lines.append(f"| {r['model']} | {r['variant']} | {f(r['macro_f1'], '.4f')} | "
                     f"{f(r['share_of_teacher'], '.1%')} | {f(r['margin_kept'], '.0%')} | "
                     f"{f(r['latency_p50_ms'], '.2f')} | {f(r['throughput_b32'], ',.0f')} | "
                     f"{f(r.get('p50_ms_128_tokens'), '.2f')} | {f(r.get('speedup_128_tokens'), '.1f')} | "
                     f"{f(r['size_mb'], '.1f')} | "
                     f"{'✓' if r['on_frontier'] else ''} |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    plot_points([(r["latency_p50_ms"], r["macro_f1"], r["model"].removeprefix("rung: "), r["kind"]) for r in rows],
                out / f"{name}.png", f"{recipe.name} ({recipe.profile} profile): test macro-F1 vs latency")
    print("\n".join(lines))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
