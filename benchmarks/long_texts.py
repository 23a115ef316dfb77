"""Long documents: each way of reading a text longer than the token limit, trained and measured alike.

    .venv/bin/python benchmarks/long_texts.py                                   # bbc-news, 128 tokens, MiniLM-L6
    .venv/bin/python benchmarks/long_texts.py --dataset bbc-news --max-length 128 --epochs 2 --model minilm-l6

For each mode (``truncate``, ``head+tail``, ``chunks``: ``[data] long_texts``, ``edgedistill.runtime.views``) one
classifier is fine-tuned from the same encoder on the same split with the same settings (the teacher stage of the
toolchain, its early stopping on validation macro-F1), exported to ONNX and run through the runtime, which reads
long texts in that mode. TF-IDF + logistic regression reads every article whole. Each row: validation macro-F1 (the
split a choice may read), test macro-F1 (reported only), the share of texts the limit cuts, windows per text, and
the batch-1 p50 per text through the runtime on validation texts, every model timed interleaved in one process.

``--chunks-epochs`` trains the chunks mode for fewer epochs: each of its epochs reads every window of every
article, about four times the examples (and the minutes) of an epoch of the other modes.

MiniLM-L6 rather than the MPNet teacher: three fine-tunes of MPNet at 128 tokens, chunks among them, would take
hours on 2 cores; the comparison is between views of the text, which the smaller encoder shows as well.
Writes ``benchmarks/results/<device>/long-texts-<dataset>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._paths import REPO, recorded_paths  # noqa: E402

MODES = ("truncate", "head+tail", "chunks")


def epochs_of(mode: str, args) -> float:
    return args.chunks_epochs if mode == "chunks" and args.chunks_epochs else args.epochs


def train_one(mode: str, args, work: Path) -> dict:
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.compress.teacher import TeacherConfig, finetune_teacher

    out = work / mode.replace("+", "-")
    t0 = time.perf_counter()
    if not (out / "training.json").is_file():
        finetune_teacher(TeacherConfig(model=args.model, data=DataConfig(source=args.dataset, long_texts=mode),
                                       profile="full", output_dir=str(out), max_length=args.max_length,
                                       epochs=epochs_of(mode, args), retries=0, batch_size=16, evals_per_epoch=2))
    seconds = time.perf_counter() - t0
    onnx = work / f"{out.name}-onnx"
    if not (onnx / "export.json").is_file():
        export(ExportConfig(checkpoint=str(out), output=str(onnx), max_length=args.max_length, overwrite=True))
    training = json.loads((out / "training.json").read_text())
    test = json.loads((out / "metrics.json").read_text())
    return {"model": f"{args.model} ({mode})", "mode": mode, "onnx": str(onnx), "epochs": epochs_of(mode, args),
            "validation_macro_f1": training["best_validation_macro_f1"], "macro_f1": test["macro_f1"],
            "accuracy": test["accuracy"], "train_minutes": round(training.get("train_time_s", seconds) / 60, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="bbc-news")
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--chunks-epochs", type=float, default=None,
                   help="epochs of the chunks mode (default --epochs): each of its epochs reads every window of every "
                        "article, about 4 times the examples of the other modes")
    p.add_argument("--latency-texts", type=int, default=40)
    p.add_argument("--work", default=str(REPO / "models" / "long-texts"))
    args = p.parse_args(argv)

    import numpy as np

    from edgedistill.compress.baseline_package import BaselineConfig, package_baseline
    from edgedistill.compress.data import DataConfig, load_data
    from edgedistill.compress.exportmeta import TOKENIZER_FILE, read_export, runtime_config
    from edgedistill.compress.textviews import TextViews
    from edgedistill.runtime import TextClassifier
    from edgedistill.runtime.timing import paired_latency
    from edgedistill.runtime.cpu import detect

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = load_data(DataConfig(source=args.dataset))
    rows = [train_one(mode, args, work) for mode in MODES]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(rows[0]["onnx"])
    whole = np.array([len(x) for x in tok(list(data.validation.texts), truncation=False, verbose=False)["input_ids"]])
    base_dir = work / "baseline"
    if not (base_dir / "manifest.json").is_file():
        package_baseline(BaselineConfig(data=DataConfig(source=args.dataset), output=str(base_dir)))
    base = TextClassifier.load(base_dir)
    manifest = json.loads((base_dir / "manifest.json").read_text())
    from edgedistill.compress.evaluate import evaluate_package

    rows.insert(0, {"model": "TF-IDF + LR (whole text)", "mode": "whole text",
                    "validation_macro_f1": manifest["metrics"]["macro_f1"],
                    "macro_f1": evaluate_package(base, data.test, data.label_names).macro_f1, "train_minutes": None})
    clfs = {"TF-IDF + LR (whole text)": base}
    for r in rows[1:]:
        meta = read_export(r["onnx"])
        clfs[r["model"]] = TextClassifier.from_files(Path(r["onnx"]) / "model.onnx", Path(r["onnx"]) / TOKENIZER_FILE,
                                                     runtime_config(meta, "fp32"))
        views = TextViews(tok, list(data.validation.texts), args.max_length, r["mode"])
        r["windows_per_text"] = round(views.n_windows / len(data.validation), 2)
        r["runtime_validation_macro_f1"] = evaluate_package(clfs[r["model"]], data.validation,
                                                            data.label_names).macro_f1
    texts = list(data.validation.texts)[:args.latency_texts]
    p50 = paired_latency({name: (lambda t, c=c: c.predict_proba([t])) for name, c in clfs.items()}, texts)
    for r in rows:
        r["latency_p50_ms"] = round(p50[r["model"]], 2)
        r.pop("onnx", None)
    best = max(rows[1:], key=lambda r: r["runtime_validation_macro_f1"])
    result = {
        "dataset": args.dataset, "model": args.model, "max_length": args.max_length, "epochs": args.epochs,
        "validation": len(data.validation), "test": len(data.test),
        "tokens_p50": int(np.percentile(whole, 50)), "cut_share": float((whole > args.max_length).mean()),
        "machine": f"{platform.processor() or platform.machine()}, int8 ISA {detect().name}",
        "command": "python benchmarks/long_texts.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows, "best_on_validation": best["mode"],
    }
    out = REPO / "benchmarks" / "results" / "cpu-x86_64"
    (out / f"long-texts-{args.dataset}.json").write_text(json.dumps(recorded_paths(result), indent=2) + "\n")
    (out / f"long-texts-{args.dataset}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    def f(v, spec=".4f"):
        return "–" if v is None else format(v, spec)

    lines = [f"# Long texts: {r['dataset']}, {r['max_length']}-token limit", "",
             f"Written by `{r['command'].strip()}`. {r['model']} fine-tuned per mode ({r['epochs']:g} epochs, "
             f"early stopping on validation macro-F1), exported to ONNX, run through the runtime. Validation "
             f"{r['validation']} texts, test {r['test']}; the median validation text is {r['tokens_p50']} tokens and "
             f"the limit cuts {r['cut_share']:.0%} of them. p50: batch 1, per text, on validation texts, every model "
             "timed interleaved in one process.", "",
             "| model | reads | epochs | validation macro-F1 | test macro-F1 | windows a text | p50 ms a text "
             "| train min |",
             "|---|---|---|---|---|---|---|---|"]
    notes = ["", "Validation macro-F1: through the runtime, a text's windows pooled as the package pools them (the "
             "trainer's early stopping read each window alone: chunks "
             + ", ".join(f"{x['validation_macro_f1']:.4f}" for x in r["rows"] if x["mode"] == "chunks") + ")."]
    for x in r["rows"]:
        val = x.get("runtime_validation_macro_f1", x["validation_macro_f1"])
        lines.append(f"| {x['model']} | {x['mode']} | {f(x.get('epochs'), 'g')} | {f(val)} | "
                     f"{f(x['macro_f1'])} | "
                     f"{f(x.get('windows_per_text'), '.2f')} | {f(x['latency_p50_ms'], '.2f')} | "
                     f"{f(x['train_minutes'], '.1f')} |")
    lines += notes + ["", f"Best mode on validation: **{r['best_on_validation']}** (the test column decides nothing)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
