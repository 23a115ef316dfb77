"""How fast the teacher labels transfer texts: torch against ONNX Runtime, on the same texts, same machine.

    python benchmarks/teacher_labelling.py models/movie-sentiment-full/teacher --texts 1000 --max-length 128
    # -> benchmarks/results/<device>/teacher-labelling.{md,json}

Distillation runs the teacher once over every training and transfer text (20,413 texts in the full
movie-sentiment build). This times both backends of
:func:`edgedistill.compress.distill.teacher_outputs.teacher_outputs` on the first ``--texts`` unlabelled snippets:
each round runs torch then ONNX Runtime over all of them, the next round the other way round, and the faster of the
rounds is kept per backend. The ONNX export (done once per teacher and cached) is timed separately. Agreement:
max |logit difference| and the share of equal labels.
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
    ap.add_argument("--output", type=Path, default=HERE / "results", help="results root (default: %(default)s)")
    args = ap.parse_args(argv)

    import numpy as np

    from edgedistill.compress.readers import read_texts
    from edgedistill.compress.distill.teacher_outputs import onnx_teacher, run_teacher, run_teacher_onnx

    texts = read_texts("snippets-unlabelled")[:args.texts]
    t0 = time.perf_counter()
    onnx_teacher(args.teacher, args.max_length)
    export_s = time.perf_counter() - t0
    runs = {"torch": lambda: run_teacher(args.teacher, texts, args.max_length),
            "onnx": lambda: run_teacher_onnx(args.teacher, texts, args.max_length)}
    best: dict[str, float] = {}
    logits = {}
    for r in range(args.rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t0 = time.perf_counter()
            logits[name] = runs[name]().logits
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            print(f"round {r + 1} {name}: {len(texts) / (time.perf_counter() - t0):.1f} texts/s", flush=True)
    diff = float(np.abs(logits["torch"] - logits["onnx"]).max())
    agree = float((logits["torch"].argmax(1) == logits["onnx"].argmax(1)).mean())
    env = environment("cpu")
    teacher = recorded(args.teacher)
    result = {"environment": env, "teacher": teacher, "texts": len(texts), "max_length": args.max_length,
              "rounds": args.rounds, "export_seconds": round(export_s, 1),
              "texts_per_second": {k: round(len(texts) / v, 1) for k, v in best.items()},
              "speedup_onnx_over_torch": round(best["torch"] / best["onnx"], 2),
              "max_abs_logit_diff": diff, "label_agreement": agree}
    folder = args.output / device_name(env)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "teacher-labelling.json").write_text(json.dumps(result, indent=2) + "\n")
    md = ["# Teacher labelling: torch against ONNX Runtime", "",
          f"`{teacher}` over the first {len(texts)} unlabelled snippets at {args.max_length} tokens, batch 32, "
          f"sorted by length; {env['cpu']} ({env.get('available_cpus')} CPUs, int8 instruction set "
          f"{env.get('isa') or 'unknown'}); best of {args.rounds} rounds, "
          "alternating order.", "",
          "| backend | texts/s |", "|---|---|"]
    md += [f"| {k} | {v:.1f} |" for k, v in result["texts_per_second"].items()]
    md += ["", f"ONNX Runtime is {result['speedup_onnx_over_torch']:.2f}x torch; the one-off export took "
           f"{export_s:.0f} s (cached per teacher). Max |logit difference| {diff:.2g}; labels agree on "
           f"{agree:.2%} of the texts.", "",
           f"Command: `python benchmarks/teacher_labelling.py {teacher} --texts {len(texts)} "
           f"--max-length {args.max_length}`"]
    (folder / "teacher-labelling.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
