"""How fast the teacher labels transfer texts: torch, ONNX Runtime fp32 and its int8 copy, on the same texts.

    python benchmarks/teacher_labelling.py models/movie-sentiment/teacher --texts 1000 --max-length 64
    # -> benchmarks/results/<device>/teacher-labelling-movie-sentiment.{md,json}

Distillation runs the teacher once over every training and transfer text (20,413 texts in the full
movie-sentiment build). This times the three graphs of
:func:`edgedistill.compress.distill.teacher_outputs.teacher_outputs` on the first ``--texts`` unlabelled snippets:
each round runs torch, ONNX fp32 and ONNX int8 over all of them, the next round in the reverse order, and the fastest
round is kept per graph. The ONNX export and the int8 copy (each made once per teacher and cached) are timed apart.

Agreement: max |logit difference| and the share of equal labels against fp32 (torch's, on the snippets; int8's, on
the snippets and on the first validation texts of ``--data``, the check distillation makes before it lets int8 label:
:data:`edgedistill.compress.distill.labelling.INT8_MIN_AGREEMENT`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from benchmarks._paths import recorded  # noqa: E402
from edgedistill.runtime.bench import device_name, environment  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", type=Path, help="a fine-tuned teacher checkpoint folder")
    ap.add_argument("--texts", type=int, default=1000, help="how many unlabelled snippets to label")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default="movie-snippets",
                    help="the teacher's data: its validation texts check int8 against fp32 (default: %(default)s)")
    ap.add_argument("--output", type=Path, default=HERE / "results", help="results root (default: %(default)s)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from edgedistill.compress.data import DataConfig, load_data
    from edgedistill.compress.distill import labelling
    from edgedistill.compress.distill.teacher_outputs import onnx_teacher, run_teacher, run_teacher_onnx
    from edgedistill.compress.readers import read_texts

    texts = read_texts("snippets-unlabelled")[:args.texts]
    val = list(load_data(DataConfig(source=args.data)).validation.texts)[:labelling.AGREEMENT_TEXTS]
    t0 = time.perf_counter()
    folder = onnx_teacher(args.teacher, args.max_length)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    int8_file = labelling.int8_graph(folder)
    quantize_s = time.perf_counter() - t0
    runs = {"torch": lambda x: run_teacher(args.teacher, x, args.max_length),
            "onnx-fp32": lambda x: run_teacher_onnx(args.teacher, x, args.max_length),
            "onnx-int8": lambda x: run_teacher_onnx(args.teacher, x, args.max_length, int8=True)}
    for run in runs.values():  # warm-up: load, first-call allocations
        run(texts[:32])
    best: dict[str, float] = {}
    logits = {}
    for r in range(args.rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t0 = time.perf_counter()
            logits[name] = runs[name](texts).logits
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            print(f"round {r + 1} {name}: {len(texts) / (time.perf_counter() - t0):.1f} texts/s", flush=True)
    val_fp32 = runs["onnx-fp32"](val).logits
    val_int8 = runs["onnx-int8"](val).logits

    def compare(a, b) -> dict[str, float]:
        return {"max_abs_logit_diff": float(np.abs(a - b).max()),
                "label_agreement": labelling.agreement(a, b, multi_label=False)}

    gate = compare(val_int8, val_fp32)
    line = labelling.INT8_MIN_AGREEMENT
    env = environment("cpu")
    teacher = recorded(args.teacher)
    tps = {k: round(len(texts) / v, 1) for k, v in best.items()}
    result = {
        "environment": env, "torch_threads": torch.get_num_threads(), "teacher": teacher, "texts": len(texts),
        "max_length": args.max_length, "rounds": args.rounds, "batch_size": labelling.LABEL_BATCH,
        "export_seconds": round(export_s, 1), "int8_seconds": round(quantize_s, 1), "int8_graph": int8_file.name,
        "texts_per_second": tps,
        "speedup_over_torch": {k: round(best["torch"] / v, 2) for k, v in best.items()},
        "speedup_int8_over_fp32": round(best["onnx-fp32"] / best["onnx-int8"], 2),
        "snippets": {"onnx-fp32_vs_torch": compare(logits["onnx-fp32"], logits["torch"]),
                     "onnx-int8_vs_onnx-fp32": compare(logits["onnx-int8"], logits["onnx-fp32"])},
        "validation": {"data": args.data, "texts": len(val), "onnx-int8_vs_onnx-fp32": gate,
                       "min_agreement": line, "labels_through": "onnx-int8" if gate["label_agreement"] >= line
                       else "onnx-fp32"},
    }
    slug = args.teacher.resolve().parent.name if args.teacher.name == "teacher" else args.teacher.name
    folder = args.output / device_name(env)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"teacher-labelling-{slug}.json").write_text(json.dumps(result, indent=2) + "\n")
    snip = result["snippets"]
    md = ["# Teacher labelling: torch, ONNX Runtime fp32 and int8", "",
          f"`{teacher}` over the first {len(texts)} unlabelled snippets at {args.max_length} tokens, batch "
          f"{labelling.LABEL_BATCH}, sorted by length; {env['cpu']} ({env.get('available_cpus')} CPUs, int8 "
          f"instruction set {env.get('isa') or 'unknown'}), onnxruntime {env.get('onnxruntime')}; best of "
          f"{args.rounds} rounds, alternating order.", "",
          "| graph | texts/s | x torch |", "|---|---|---|"]
    md += [f"| {k} | {v:.1f} | {result['speedup_over_torch'][k]:.2f} |" for k, v in tps.items()]
    md += ["", f"int8 is {result['speedup_int8_over_fp32']:.2f}x ONNX fp32 (`{int8_file.name}`: dynamic int8 of "
           f"every MatMul, this machine's quantize preset, embeddings fp32; built once in {quantize_s:.0f} s, the "
           f"export {export_s:.0f} s, both cached per teacher).", "",
           "| labels compared | texts | agree | max \\|logit diff\\| |", "|---|---|---|---|",
           f"| ONNX fp32 vs torch, snippets | {len(texts)} | {snip['onnx-fp32_vs_torch']['label_agreement']:.2%} | "
           f"{snip['onnx-fp32_vs_torch']['max_abs_logit_diff']:.2g} |",
           f"| int8 vs fp32, snippets | {len(texts)} | {snip['onnx-int8_vs_onnx-fp32']['label_agreement']:.2%} | "
           f"{snip['onnx-int8_vs_onnx-fp32']['max_abs_logit_diff']:.2g} |",
           f"| int8 vs fp32, {args.data} validation | {len(val)} | {gate['label_agreement']:.2%} | "
           f"{gate['max_abs_logit_diff']:.2g} |", "",
           f"Distillation lets int8 label when it agrees with fp32 on at least {line:.0%} of the validation labels: "
           f"this teacher labels through **{result['validation']['labels_through']}**.", "",
           f"Command: `python benchmarks/teacher_labelling.py {teacher} --texts {len(texts)} "
           f"--max-length {args.max_length} --data {args.data}`"]
    (folder / f"teacher-labelling-{slug}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
