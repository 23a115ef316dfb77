"""A student + baseline ensemble, measured (issue 24: "a candidate worth measuring") on builds already made.

For each build folder, the student's package (``candidates/student``) and the TF-IDF + LR baseline's
(``candidates/baseline``), both through the torch-free runtime, give calibrated class probabilities
(``predict_proba``: temperature and class biases applied) on the validation and test splits of the build's recipe.
The ensemble is ``w * student + (1 - w) * baseline``, with ``w`` chosen on validation from 0, 0.1, .., 1 (ties:
the largest ``w``, the student alone where it is as good); the test split is only reported::

    .venv/bin/python benchmarks/ensemble.py models/trec50-planned models/trec-questions-planned models/movie-sentiment

Results: ``benchmarks/results/<device>/ensemble.{md,json}`` (one row per build, merged by build).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from benchmarks._paths import recorded, recorded_argv  # noqa: E402

WEIGHTS = tuple(round(0.1 * k, 1) for k in range(11))


def macro_f1(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    """scikit-learn's macro-F1 over the classes that occur in ``y`` or ``pred`` (``n``: kept for the callers)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro", zero_division=0))


def aligned(probs: np.ndarray, labels: list[str], order: list[str]) -> np.ndarray:
    """``probs`` (columns in ``labels`` order) with its columns in ``order``."""
    index = {name: i for i, name in enumerate(labels)}
    return probs[:, [index[name] for name in order]]


def choose_weight(student: np.ndarray, baseline: np.ndarray, y: np.ndarray, n: int) -> tuple[float, dict[float, float]]:
    """The student's weight with the best validation macro-F1 (ties: the larger weight), and every weight's."""
    scores = {w: macro_f1(y, (w * student + (1 - w) * baseline).argmax(1), n) for w in WEIGHTS}
    best = max(scores.values())
    return max(w for w, s in scores.items() if s == best), scores


def measure(build: Path) -> dict[str, Any]:
    """One build's row: student, baseline and the ensemble on validation and test."""
    from edgedistill.compress.data import load_data
    from edgedistill.compress.recipe import load_recipe
    from edgedistill.runtime import TextClassifier

    cfg = json.loads((build / "candidates" / "student" / "config.json").read_text())
    recipe_path = REPO / "models" / f"{cfg.get('name') or build.name}.toml"
    if not recipe_path.is_file():  # a planned build: models/<name>-planned
        recipe_path = REPO / "models" / f"{build.name.removesuffix('-planned')}.toml"
    recipe = load_recipe(recipe_path)
    data = load_data(recipe.data())
    order = list(data.label_names)
    student = TextClassifier.load(build / "candidates" / "student")
    baseline = TextClassifier.load(build / "candidates" / "baseline")
    probs = {}
    for split in ("validation", "test"):
        texts = list(data.split(split).texts)
        probs[split] = (aligned(student.predict_proba(texts), student.labels, order),
                        aligned(baseline.predict_proba(texts), baseline.labels, order),
                        np.asarray(data.split(split).labels))
    n = len(order)
    s_val, b_val, y_val = probs["validation"]
    w, by_weight = choose_weight(s_val, b_val, y_val, n)
    s_test, b_test, y_test = probs["test"]
    row = {"build": recorded(build), "classes": n, "weight": w,
           "validation": {"student": by_weight[1.0], "baseline": by_weight[0.0], "ensemble": by_weight[w]},
           "test": {"student": macro_f1(y_test, s_test.argmax(1), n), "baseline": macro_f1(y_test, b_test.argmax(1), n),
                    "ensemble": macro_f1(y_test, (w * s_test + (1 - w) * b_test).argmax(1), n)},
           "by_weight_validation": {str(k): v for k, v in by_weight.items()}}
    return row


def to_markdown(rows: list[dict[str, Any]], command: str, when: str) -> str:
    lines = ["# Student + baseline ensemble (measured, not shipped)", "",
             f"Written by `{command}` on {when}. The ensemble averages the calibrated probabilities of the student's "
             "package and the TF-IDF + LR baseline's package (both through the runtime), `w * student + (1 - w) * "
             "baseline`, `w` chosen on validation from 0, 0.1, .., 1; test only reported. Macro-F1.", "",
             "| build | classes | w | val student | val baseline | val ensemble | test student | test baseline | "
             "**test ensemble** |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        v, t = r["validation"], r["test"]
        lines.append(f"| {r['build']} | {r['classes']} | {r['weight']:.1f} | {v['student']:.4f} | {v['baseline']:.4f} "
                     f"| {v['ensemble']:.4f} | {t['student']:.4f} | {t['baseline']:.4f} | **{t['ensemble']:.4f}** |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", type=Path, help="build folders (models/<name>[-planned])")
    ap.add_argument("--output", type=Path, default=HERE / "results" / "cpu-x86_64")
    args = ap.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "ensemble.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    new = [measure(b.resolve()) for b in args.builds]
    names = {r["build"] for r in new}
    rows = [r for r in old if r["build"] not in names] + new
    command = " ".join(["python benchmarks/ensemble.py", *recorded_argv([str(b) for b in args.builds])])
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path.write_text(json.dumps({"command": command, "written": when, "rows": rows}, indent=2) + "\n")
    (args.output / "ensemble.md").write_text(to_markdown(rows, command, when))
    print(to_markdown(rows, command, when))
    return 0


if __name__ == "__main__":
    sys.exit(main())
