"""The frontier table (issue 26, item 5): for each rung and transfer set, what the student keeps and what it cost.

    python benchmarks/frontier.py ABLATION_DIR [ABLATION_DIR ...] --name movie-sentiment-quick

Reads the cells that ``edgedistill ablate`` wrote (``ablation.json`` and each cell's ``distill.json``) and writes
``benchmarks/results/cpu-<machine>/frontier-<name>.{md,json}``: per cell the rung (builder, layers), the transfer set
(labelled texts, augmented copies and their families, unlabelled texts), validation and test macro-F1, share of the
teacher, margin kept over the TF-IDF baseline, the teacher's labelling (graph, texts, minutes, texts/s) and the
student's training minutes. Validation ranks; test is only reported. The commands that made the cells go in with
``--command`` (one per ablation folder), as they were typed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks._paths import recorded_argv, recorded_paths  # noqa: E402
from edgedistill.compress.baseline import margin_kept, share_of_teacher  # noqa: E402


def cells(folder: Path) -> tuple[dict | None, list[dict]]:
    """An ablation folder's header (teacher, baseline) and its cells, each with its distill.json; or one distillation's
    output folder (a build's ``student/``: no header) as one cell."""
    if not (folder / "ablation.json").is_file():
        info = json.loads((folder / "distill.json").read_text())
        return None, [{"row": {"macro_f1": info["test"]["macro_f1"],
                               "validation_macro_f1": info["best_validation_macro_f1"]}, "distill": info}]
    table = json.loads((folder / "ablation.json").read_text())
    out = []
    for row in table["rows"]:
        if "output" not in row:  # a cell that failed: ablation.md says why
            print(f"skipped a failed cell of {folder}: {row.get('cell')}: {row.get('error')}", file=sys.stderr)
            continue
        info = json.loads((Path(row["output"]) / "distill.json").read_text())
        out.append({"row": row, "distill": info})
    return table["references"], out


def frontier_row(cell: dict, teacher: float, baseline: float) -> dict:
    row, info = cell["row"], cell["distill"]
    student, d = info["config"]["student"], info["config"]
    transfer, labelling = info["transfer"], (info.get("teacher_outputs") or {}).get("labelling") or {}
    copies = d.get("augment") or 0
    test = row["macro_f1"]
    return {
        "rung": (f"{student['builder']}:{student['model']}" if student["builder"] == "pretrained" else
                 student["builder"] + (f":{student['layers']}" if student.get("layers") else "")),
        "labelled": transfer["labelled"], "augmented": transfer.get("augmented", 0),
        "unlabelled": transfer["unlabelled"] - transfer.get("augmented", 0),
        "copies": copies, "families": d.get("augment_methods") if copies else [],
        "validation_macro_f1": row["validation_macro_f1"], "test_macro_f1": test,
        "of_teacher": share_of_teacher(test, teacher), "margin_kept": margin_kept(test, teacher, baseline),
        "labelling_graph": labelling.get("graph"), "texts_labelled": labelling.get("texts_labelled", 0),
        "labelling_minutes": labelling.get("seconds", 0.0) / 60,
        "labelling_texts_per_s": labelling.get("texts_per_second"),
        "training_minutes": info["train_seconds"] / 60, "params": info["params"], "size_mb": info["size_mb"],
    }


def _pct(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def markdown(result: dict) -> str:
    r = result
    lines = [f"# Frontier: {r['name']}", "",
             f"Teacher test macro-F1 {r['teacher']:.4f}; TF-IDF + LR baseline {r['baseline']:.4f}. One seed a cell: "
             "a macro-F1's standard error is about 1.2 points on validation (1,056 texts) and 0.9 on test (2,113). "
             "Validation ranks the cells; test is only reported. fp32 students in torch (the ablation's "
             f"evaluation). {r['machine']}.", "",
             "| rung | labelled | augmented (copies: families) | unlabelled | validation macro-F1 | test macro-F1 | "
             "of teacher | margin kept | teacher labelling | labelling min | training min | params | MB |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    best = max(r["rows"], key=lambda x: x["validation_macro_f1"])
    for x in r["rows"]:
        aug = f"{x['augmented']:,} ({x['copies']}: {', '.join(x['families'])})" if x["copies"] else "0"
        lab = (f"{x['texts_labelled']:,} new, {x['labelling_graph']}, {x['labelling_texts_per_s']:.0f}/s"
               if x["texts_labelled"] else "from the cache" if x["labelling_graph"] else "not recorded")
        mark = "**" if x is best else ""
        lines.append(f"| {x['rung']} | {x['labelled']:,} | {aug} | {x['unlabelled']:,} | "
                     f"{mark}{x['validation_macro_f1']:.4f}{mark} | {x['test_macro_f1']:.4f} | "
                     f"{_pct(x['of_teacher'], 1)} | {_pct(x['margin_kept'], 0)} | {lab} | "
                     f"{x['labelling_minutes']:.1f} | {x['training_minutes']:.1f} | "
                     f"{x['params'] / 1e6:.1f}M | {x['size_mb']:.1f} |")
    lines += ["", "Commands:", ""] + [f"- `{c}`" for c in r["commands"]] + \
             ["", f"Written by `python benchmarks/frontier.py {' '.join(r['folders'])} --name {r['name']} "
                  "--command ...` (one `--command` for each line above).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path,
                    help="folders written by edgedistill ablate -o, or a distillation's output (a build's student/)")
    ap.add_argument("--name", required=True, help="file stem: frontier-<name>.{md,json}")
    ap.add_argument("--command", action="append", default=[], help="the command that made a folder (repeatable)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results" / f"cpu-{platform.machine()}")
    args = ap.parse_args()
    found = [cells(folder) for folder in args.folders]
    refs = next((r for r, _ in found if r and {"teacher", "baseline"} <= set(r)), None)
    if refs is None:
        ap.error("no ablation folder among them: the teacher's and the baseline's scores come from an ablation.json")
    rows = [frontier_row(c, refs["teacher"], refs["baseline"]) for _, cs in found for c in cs]
    from edgedistill.runtime.bench import environment

    env = environment("cpu")
    machine = f"{env['cpu']}, {env['logical_cpus']} logical CPUs"
    result = recorded_paths({"name": args.name, "teacher": refs["teacher"], "baseline": refs["baseline"],
                             "machine": machine, "rows": rows, "folders": [str(f) for f in args.folders],
                             "commands": args.command,
                             "command": " ".join(recorded_argv(["python", *sys.argv]))})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"frontier-{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / f"frontier-{args.name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
