"""The benchmark over many datasets: default builds against TF-IDF + LR and model2vec, one row per dataset.

Every built-in labelled dataset is built with default settings and a stated time budget, beside the cheap
classifiers a user could train instead::

    flock /tmp/edgedistill-heavy.lock .venv/bin/python benchmarks/many_datasets.py --time-budget 45m
    .venv/bin/python benchmarks/many_datasets.py --recipe trec50 --time-budget 45m   # one dataset: its row replaces
                                                                                      # the one already there

For each recipe (default: every recipe in ``models/`` whose data is a built-in dataset; ``--recipe`` picks some) it

1. runs ``edgedistill build RECIPE --force all [--time-budget T]`` as a child process and times it by the wall
   clock (``--force all``: the time is a whole build's, never a resumed one's);
2. reads the build's report (``report/report.json``: the teacher, the TF-IDF + LR baseline and the shipped row;
   rows it does not know are left alone) and, for the standard error of the shipped macro-F1, the shipped package's
   confusion matrix on the test split (``report/package_metrics.json``); where a ladder ships, its chosen rung's;
3. fits model2vec's classifier on the same splits (the ladder benchmark's peer, :func:`peers.process.model2vec_row`;
   skipped with a note without ``.venv-model2vec``: ``make peers``);
4. measures the dataset itself: classes, the smallest class, the imbalance, the median length in the teacher's
   tokens;

and merges one row per dataset into ``benchmarks/results/<device>/datasets.{json,md,png}`` (a dataset run again
replaces its row), with a copy of each build's report beside it (``report-<recipe>-<profile>.{json,md}``, what
``benchmarks/zoo.py`` reads). The columns are described in benchmarks/README.md.

The file is not named ``datasets.py``: a script's folder comes first on ``sys.path``, so a ``benchmarks/datasets.py``
would shadow Hugging Face's ``datasets`` for every script run from this folder (transformers imports it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from benchmarks._paths import relative  # noqa: E402
from peers.process import M2V_PYTHON, PeerError, model2vec_row  # noqa: E402

MODELS = REPO / "models"
RESULTS = HERE / "results"
CLI = [sys.executable, "-m", "edgedistill.compress.cli"]
"""``edgedistill``, run as a child process (this environment's)."""
RESAMPLES = 2000
"""Bootstrap resamples of the test texts for the standard error of the shipped macro-F1."""
SE_BOOTSTRAP = (f"bootstrap: the standard deviation of macro-F1 over {RESAMPLES} resamples of the test texts with "
                "replacement (drawn from the shipped package's confusion matrix, which holds every (true, predicted) "
                "pair)")
SE_BINOMIAL = "binomial approximation: sqrt(F1 (1 - F1) / n test texts) (no confusion matrix in the report)"
FLOOR_SE = 1.0
"""The floor: the shipped macro-F1 must be at least the best cheap peer's less this many standard errors."""
LEAD, ABOVE = 0.03, 0.02
"""Where the teacher leads both cheap peers by LEAD or more on validation, the shipped model should lead both by
ABOVE on test (issue 24's "Done when")."""
PEERS = (("baseline", "TF-IDF + LR"), ("model2vec", "model2vec"))
"""The cheap peers: (key prefix in a row, name)."""


class BenchmarkError(Exception):
    """A benchmark input that cannot work (an unknown recipe, a flag the build lacks); one line, exit code 1."""


# ---------------------------------------------------------------------------------------------- the dataset
def dataset_stats(data, token_lengths: Callable[[list[str]], Sequence[int]]) -> dict[str, Any]:
    """What kind of dataset ``data`` (``LabelledData``) is: its size, classes, smallest class, imbalance (largest
    class over smallest, all splits together) and median length in tokens (``token_lengths`` of every text)."""
    splits = [data.train, data.validation, data.test]
    counts = Counter(data.label_names[i] for s in splits for y in s.labels
                     for i in (y if isinstance(y, tuple) else [y]))  # a multi-label text counts for each label
    smallest = min(counts, key=lambda k: (counts[k], k))
    largest = max(counts, key=lambda k: (counts[k], k))
    texts = [t for s in splits for t in s.texts]
    return {"texts": len(texts), "train_texts": len(data.train), "test_texts": len(data.test),
            "classes": len(counts), "smallest_class": [smallest, counts[smallest]],
            "largest_class": [largest, counts[largest]], "classes_under_10": sum(v < 10 for v in counts.values()),
            "imbalance": round(counts[largest] / counts[smallest], 1),
            "median_tokens": float(statistics.median(token_lengths(texts)))}


def teacher_token_lengths(recipe) -> Callable[[list[str]], list[int]]:
    """Untruncated token counts (special tokens included) by the recipe's teacher's tokenizer."""
    from edgedistill.compress import sources
    from edgedistill.compress.teacher import TeacherConfig

    base = Path(sources.resolve_model(recipe.tables["teacher"].get("model", TeacherConfig.model)))
    if (base / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(base / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        return lambda texts: [len(e.ids) for e in tok.encode_batch(texts)]
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(base))
    return lambda texts: [len(ids) for ids in hf(texts, truncation=False)["input_ids"]]


# ------------------------------------------------------------------------------------------ standard error
def macro_f1s(confusions: np.ndarray) -> np.ndarray:
    """Macro-F1 of each confusion matrix in ``(..., k, k)`` (rows true, columns predicted), as
    ``edgedistill.compress.evaluate.compute_metrics`` scores it: every class counts, F1 0 where undefined."""
    tp = np.diagonal(confusions, axis1=-2, axis2=-1).astype(np.float64)
    denominator = confusions.sum(axis=-1) + confusions.sum(axis=-2)  # true + predicted, per class
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=-1)


def bootstrap_se(confusion: Sequence[Sequence[int]], resamples: int = RESAMPLES, seed: int = 0) -> float:
    """One standard error of the macro-F1 of ``confusion``, by the bootstrap over test texts: each resample draws
    n (true, predicted) pairs with replacement, i.e. a multinomial over the confusion matrix's cells."""
    c = np.asarray(confusion, dtype=np.int64)
    n = int(c.sum())
    if n == 0:
        raise ValueError("an empty confusion matrix has no standard error")
    draws = np.random.default_rng(seed).multinomial(n, (c / n).ravel(), size=resamples).reshape(resamples, *c.shape)
    return float(macro_f1s(draws).std(ddof=1))


def binomial_se(f1: float, n: int) -> float:
    """One standard error of a proportion ``f1`` on ``n`` texts: sqrt(f1 (1 - f1) / n)."""
    return float(np.sqrt(f1 * (1.0 - f1) / n))


# ---------------------------------------------------------------------------------------- the build report
def _row(rows: list[dict[str, Any]], *, model: str = "", prefix: str = "",
         shipped: bool | None = None) -> dict[str, Any] | None:
    """The first of a report's ``rows`` named ``model`` (or starting with ``prefix``), shipped or not."""
    for r in rows:
        name = str(r.get("model", ""))
        if (name == model if model else name.startswith(prefix)) and shipped in (None, bool(r.get("shipped"))):
            return r
    return None


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def shipped_of(build: Path, report: dict[str, Any], ladder: dict[str, Any] | None) -> dict[str, Any]:
    """What shipped, from a build's report (and its ladder's table, when a ladder chose among rungs): its kind
    (student, rung or baseline), rung, variant, test macro-F1, test texts, and the folder of its report."""
    rung = next((r for r in (ladder or {}).get("rungs", []) if r["name"] == (ladder or {}).get("chosen")), None)
    if rung is not None and rung.get("spec") != "recipe":  # the recipe's own student is the report's shipped row
        folder = Path(rung["build_dir"])
        row = _row((read_json(folder / "report" / "report.json") or {}).get("rows", []), shipped=True) or {}
        f1 = rung.get("test_macro_f1")
        return {"kind": "rung", "rung": rung["name"], "variant": rung.get("variant"),
                "model": row.get("model", "package (shipped)"), "macro_f1": row.get("macro_f1") if f1 is None else f1,
                "n": row.get("n"), "report_dir": folder / "report"}
    row = _row(report["rows"], shipped=True) or _row(report["rows"], model="package (shipped)")
    if row is None:
        raise BenchmarkError(f"{build}: the build report has no shipped row")
    said = re.sub("[^a-z]", "", f"{row['model']} {row.get('format', '')}".lower())
    kind = "baseline" if "baseline" in said or "tfidf" in said else "student"
    return {"kind": kind, "rung": None, "variant": row.get("format") or report.get("chosen"), "model": row["model"],
            "macro_f1": row["macro_f1"], "n": row.get("n"), "report_dir": build / "report"}


def shipped_se(shipped: dict[str, Any]) -> tuple[float | None, str | None]:
    """The shipped macro-F1's standard error and how it was made: the bootstrap where the shipped package's confusion
    matrix is in its report folder (and scores the same macro-F1), else the binomial approximation."""
    metrics = read_json(Path(shipped["report_dir"]) / "package_metrics.json")
    f1, n = shipped.get("macro_f1"), shipped.get("n")
    if metrics and metrics.get("confusion") and (f1 is None or abs(macro_f1s(np.asarray(metrics["confusion"])) - f1)
                                                 < 1e-6):
        return bootstrap_se(metrics["confusion"]), "bootstrap"
    if f1 is not None and (n or (metrics or {}).get("n")):
        return binomial_se(f1, n or metrics["n"]), "binomial"
    return None, None


def dataset_row(recipe: str, dataset: str, build: Path, stats: dict[str, Any], *, m2v: dict[str, Any] | None,
                build_seconds: float | None, time_budget: str | None) -> dict[str, Any]:
    """One dataset's row from its build folder (``report/report.json``, the teacher's ``training.json``, a ladder's
    ``ladder.json``), the dataset's statistics and model2vec's row (None: not run)."""
    report = read_json(build / "report" / "report.json")
    if report is None:
        raise BenchmarkError(f"{build}: no build report (report/report.json)")
    rows = report["rows"]
    teacher = _row(rows, model="teacher") or {}
    baseline = _row(rows, model="baseline TF-IDF + LR") or _row(rows, prefix="baseline", shipped=False) or {}
    training = read_json(build / "teacher" / "training.json") or {}
    ladder = build / "ladder" / "ladder.json"  # a ladder's choice, if this build made one (it runs after the report)
    fresh = ladder.is_file() and ladder.stat().st_mtime >= (build / "report" / "report.json").stat().st_mtime
    shipped = shipped_of(build, report, read_json(ladder) if fresh else None)
    se, how = shipped_se(shipped)
    by_c = baseline.get("validation_macro_f1_by_C") or {}
    row: dict[str, Any] = {
        "recipe": recipe, "dataset": dataset, "profile": report.get("profile"), **stats,
        "baseline_macro_f1": baseline.get("macro_f1"), "baseline_validation_macro_f1": max(by_c.values(), default=None),
        "model2vec_macro_f1": (m2v or {}).get("macro_f1"),
        "model2vec_validation_macro_f1": (m2v or {}).get("validation_macro_f1"),
        "teacher_macro_f1": teacher.get("macro_f1"),
        "teacher_validation_macro_f1": training.get("best_validation_macro_f1"),
        "shipped": {k: shipped[k] for k in ("kind", "rung", "variant", "model")},
        "shipped_macro_f1": shipped["macro_f1"], "shipped_se": se, "se_method": how,
        "build_seconds": build_seconds, "time_budget": time_budget,
    }
    row.update(verdicts(row))
    return row


def verdicts(row: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's two checks on one row (None where a figure is missing): the shipped test macro-F1 at least
    the best cheap peer's less one standard error; and, where the teacher leads both peers by 3 points or more on
    validation, the shipped test macro-F1 2 points above both."""
    test = {name: row.get(f"{key}_macro_f1") for key, name in PEERS if row.get(f"{key}_macro_f1") is not None}
    val = [row.get(f"{key}_validation_macro_f1") for key, _ in PEERS]
    out: dict[str, Any] = {"best_peer": None, "best_peer_macro_f1": None, "floor_met": None,
                           "teacher_lead_validation": None, "lead_required": None, "lead_met": None}
    if not test:
        return out
    best = max(test, key=test.__getitem__)
    f1, se = row.get("shipped_macro_f1"), row.get("shipped_se")
    out.update(best_peer=best, best_peer_macro_f1=test[best])
    if f1 is not None and se is not None:
        out["floor_met"] = bool(f1 >= test[best] - FLOOR_SE * se)
    t_val, peers_val = row.get("teacher_validation_macro_f1"), [v for v in val if v is not None]
    if t_val is not None and peers_val:
        out["teacher_lead_validation"] = t_val - max(peers_val)
        out["lead_required"] = bool(out["teacher_lead_validation"] >= LEAD)
        if out["lead_required"] and f1 is not None:
            out["lead_met"] = bool(f1 >= test[best] + ABOVE)
    return out


def merge_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with each of ``new`` in place of the row of the same recipe, or after them when there is none."""
    fresh = {r["recipe"]: r for r in new}
    out = [fresh.pop(r["recipe"], r) for r in old]
    return out + [r for r in new if r["recipe"] in fresh]


# ----------------------------------------------------------------------------------------------- the writers
def _f(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _check(v: bool | None) -> str:
    return "–" if v is None else ("yes" if v else "**no**")


def _shipped_text(s: dict[str, Any] | None) -> str:
    if not s:
        return "–"
    what = {"rung": f"rung {s.get('rung')}", "baseline": "TF-IDF + LR"}.get(s["kind"], s["kind"])
    return f"{what} ({s['variant']})" if s.get("variant") else what


def to_markdown(result: dict[str, Any]) -> str:
    env, rows = result["environment"], result["rows"]
    lines = ["# Datasets: what a default build ships, against the cheap classifiers", "",
             f"Written by `{result['command']}` (rows of earlier runs kept: each row names its own command), on "
             f"{env['cpu']} ({env.get('available_cpus')} CPUs, int8 instruction set {env.get('isa') or 'unknown'}). "
             "Every build: `edgedistill build models/<recipe>.toml --force all`, default settings, with the time "
             "budget shown. macro-F1 on each recipe's test split; TF-IDF + LR, the teacher and the shipped model "
             "from the build's own report; model2vec's classifier fitted here on the same splits. Columns: "
             "benchmarks/README.md.", "",
             "| dataset | classes | smallest class | imbalance | median tokens | TF-IDF + LR | model2vec | teacher | "
             "shipped | shipped macro-F1 ± 1 SE | ≥ best peer − 1 SE | +2 points where the teacher leads by 3 | "
             "build time | time budget |",
             "|" + "---|" * 14]
    for r in rows:
        if r.get("build_error"):
            lines.append(f"| {r['dataset']} | {_f(r.get('classes'), 'd')} | – | – | – | – | – | – | "
                         f"build failed: {r['build_error']} | – | – | – | {duration(r.get('build_seconds'))} | "
                         f"{r.get('time_budget') or 'none'} |")
            continue
        small = r.get("smallest_class") or ["–", None]
        se = f" ± {r['shipped_se']:.4f}" if r.get("shipped_se") is not None else ""
        lead = "not required" if r.get("lead_required") is False else _check(r.get("lead_met"))
        lines.append(f"| {r['dataset']} | {r['classes']} | {small[1]} ({small[0]}) | "
                     f"{_f(r.get('imbalance'), '.1f')}:1 | "
                     f"{_f(r.get('median_tokens'), '.0f')} | {_f(r.get('baseline_macro_f1'), '.4f')} | "
                     f"{_f(r.get('model2vec_macro_f1'), '.4f')} | {_f(r.get('teacher_macro_f1'), '.4f')} | "
                     f"{_shipped_text(r.get('shipped'))} | **{_f(r.get('shipped_macro_f1'), '.4f')}**{se} | "
                     f"{_check(r.get('floor_met'))} | {lead} | {duration(r.get('build_seconds'))} | "
                     f"{r.get('time_budget') or 'none'} |")
    floors = [r["floor_met"] for r in rows if r.get("floor_met") is not None]
    leads = [r["lead_met"] for r in rows if r.get("lead_required")]
    lines += ["", f"The shipped model is at least the best cheap peer less one SE on {sum(floors)} of {len(floors)} "
              f"datasets with a peer; 2 points above both on {sum(leads)} of the {len(leads)} where the teacher leads "
              "them by 3 on validation."]
    methods = sorted({r["se_method"] for r in rows if r.get("se_method")})
    lines += ["", "SE: " + "; ".join({"bootstrap": SE_BOOTSTRAP, "binomial": SE_BINOMIAL}[m] for m in methods) + "."
              if methods else "SE: none computed."]
    notes = [f"- {r['dataset']}: {n}" for r in rows for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "Rebuild one row (it replaces the row above):", ""]
    lines += [f"- {r['dataset']}: `{r['command']}`" for r in rows if r.get("command")]
    return "\n".join(lines) + "\n"


SERIES = (("baseline_macro_f1", "TF-IDF + LR"), ("model2vec_macro_f1", "model2vec"), ("teacher_macro_f1", "teacher"),
          ("shipped_macro_f1", "shipped"))


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """A grouped bar chart: per dataset, test macro-F1 of the two cheap peers, the teacher and what shipped (with
    one standard error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    width = 0.8 / len(SERIES)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.2))
    for i, (key, label) in enumerate(SERIES):
        values = [np.nan if r.get(key) is None else r[key] for r in rows]
        err = [r.get("shipped_se") or 0.0 for r in rows] if key == "shipped_macro_f1" else None
        ax.bar(x + (i - (len(SERIES) - 1) / 2) * width, values, width, label=label, yerr=err, capsize=3)
    ax.set_xticks(x, [r["dataset"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("macro-F1 (test)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=len(SERIES), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(title, pad=24)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_results(folder: Path, rows: list[dict[str, Any]], env: dict[str, Any], command: str) -> dict[str, Any]:
    """Merge ``rows`` into ``folder/datasets.json`` and write ``datasets.md`` and ``datasets.png`` from the whole."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "datasets.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    result = {"rows": merge_rows(old, rows), "environment": env, "command": command,
              "se_methods": {"bootstrap": SE_BOOTSTRAP, "binomial": SE_BINOMIAL}}
    path.write_text(json.dumps(result, indent=2) + "\n")
    (folder / "datasets.md").write_text(to_markdown(result))
    plot([r for r in result["rows"] if not r.get("build_error")], folder / "datasets.png",
         f"Default builds against the cheap classifiers ({env['cpu']})")
    return result


# -------------------------------------------------------------------------------------------------- running
def builtin_recipes(models: Path = MODELS) -> dict[str, Path]:
    """The recipes in ``models`` whose data is a built-in dataset, by name (the default list)."""
    from edgedistill.compress.recipe import load_recipe
    from edgedistill.compress.sources import CATALOG

    out = {}
    for path in sorted(models.glob("*.toml")):
        source = load_recipe(path).tables["data"].get("source")
        if source in CATALOG and CATALOG[source].kind == "dataset":
            out[path.stem] = path
    return out


def pick_recipes(asked: Sequence[str], models: Path = MODELS) -> list[Path]:
    """``--recipe`` values (a name in ``models``, or a recipe file) as paths; none asked: every built-in one."""
    known = builtin_recipes(models)
    if not asked:
        if not known:
            raise BenchmarkError(f"no recipe of a built-in dataset in {models}")
        return list(known.values())
    out = []
    for name in asked:
        path = Path(name)
        if path.suffix == ".toml" and path.is_file():
            out.append(path)
        elif name in known or (models / f"{name}.toml").is_file():
            out.append(known.get(name, models / f"{name}.toml"))
        else:
            raise BenchmarkError(f"unknown recipe {name!r}: give a recipe file or one of {', '.join(known)}")
    return out


def build_takes(flag: str) -> bool:
    """Whether ``edgedistill build`` has ``flag`` (read from its ``--help``)."""
    proc = subprocess.run([*CLI, "build", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})  # rich wraps to the terminal's width
    if proc.returncode != 0:
        raise BenchmarkError(f"`edgedistill build --help` failed: {proc.stderr.strip()[-500:]}")
    return flag in proc.stdout


def build_args(recipe: Path, time_budget: str | None) -> list[str]:
    return ["build", relative(recipe), "--force", "all", *(["--time-budget", time_budget] if time_budget else [])]


def find_report(recipe_name: str, root: Path, since: float | None) -> Path | None:
    """The build folder of ``recipe_name`` under ``root`` whose report was written last (after ``since``, a
    ``time.time()``, when given): ``<name>`` or ``<name>-<profile>``, whatever profile the build chose."""
    found = []
    for report in [root / recipe_name / "report" / "report.json", *root.glob(f"{recipe_name}-*/report/report.json")]:
        if report.is_file() and (read_json(report) or {}).get("name") == recipe_name:
            found.append((report.stat().st_mtime, report.parent.parent))
    found = [f for f in found if since is None or f[0] >= since]
    return max(found)[1] if found else None


def stage_seconds(build: Path) -> float | None:
    """The seconds the stages of the runs that built ``build`` took, summed (None: no record)."""
    from edgedistill.compress.plan.build import actual_seconds

    return sum(actual_seconds(build).values()) or None


def run_build(recipe: Path, time_budget: str | None) -> tuple[int, float]:
    """``edgedistill build`` of ``recipe`` in a child process, its output to this console: (exit code, seconds)."""
    started = time.perf_counter()
    code = subprocess.run([*CLI, *build_args(recipe, time_budget)], cwd=REPO).returncode
    return code, time.perf_counter() - started


def git_commit() -> str | None:
    """The checkout's commit, ``-dirty`` when files other than the results differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    changed = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!benchmarks/results"], cwd=REPO,
                             capture_output=True, text=True)
    return (head.stdout.strip() + ("-dirty" if changed.stdout.strip() else "")) or None


def benchmark_one(recipe_path: Path, args, env: dict[str, Any]) -> dict[str, Any]:
    """Build one recipe (unless ``--skip-build``) and make its row."""
    from edgedistill.compress.data import load_data
    from edgedistill.compress.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    root = recipe_path.parent
    data = load_data(recipe.data())
    named = recipe.name if root.resolve() == MODELS.resolve() else relative(recipe_path)
    base: dict[str, Any] = {"recipe": recipe.name, "dataset": data.name, "recipe_file": relative(recipe_path),
                            "command": f"python benchmarks/many_datasets.py --recipe {named}"
                                       + (f" --time-budget {args.time_budget}" if args.time_budget else ""),
                            "build_command": "edgedistill " + " ".join(build_args(recipe_path, args.time_budget)),
                            "commit": git_commit(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "environment": env, "notes": []}
    stats = dataset_stats(data, teacher_token_lengths(recipe))
    seconds, since = None, None
    if not args.skip_build:
        since = time.time() - 1.0  # file times are coarser than the clock: a report written now is not "before"
        code, seconds = run_build(recipe_path, args.time_budget)
        if code != 0:
            return {**base, **stats, "build_error": f"exit code {code}", "build_seconds": seconds,
                    "time_budget": args.time_budget}
    build = find_report(recipe.name, root, since)
    if build is None and args.skip_build:
        raise BenchmarkError(f"{recipe.name}: no build report under {relative(root)} (build it first, or run "
                             "without --skip-build)")
    if build is None:
        return {**base, **stats, "build_error": f"no report written under {relative(root)}",
                "build_seconds": seconds, "time_budget": args.time_budget}
    if args.skip_build:  # the build's own record of its stages (.state.json), not a clock of this run
        seconds = stage_seconds(build)
        base["notes"].append("not built by this run (--skip-build): the build time is the sum of the build's own "
                             "stage times (.state.json, the ladder's rungs included; planning and start-up not "
                             "counted)" if seconds else "not built by this run (--skip-build): the build time is "
                             "unknown")
    m2v = None
    try:
        m2v = model2vec_row(recipe, data, Path(args.model2vec_python))
    except PeerError as e:
        base["notes"].append(f"model2vec failed: {str(e).strip().splitlines()[-1]}")
    if m2v is None and not any(n.startswith("model2vec") for n in base["notes"]):
        base["notes"].append("model2vec: skipped (run `make peers` for .venv-model2vec)")
    row = dataset_row(recipe.name, base["dataset"], build, stats, m2v=m2v, build_seconds=seconds,
                      time_budget=args.time_budget)
    row["build"] = relative(build)
    row["report"] = copy_report(build, row["profile"], args.folder, recipe.name)
    return {**base, **row}


def copy_report(build: Path, profile: str | None, folder: Path, name: str) -> str:
    """A copy of the build's report beside the results (``report-<recipe>-<profile>.{json,md}``), for the zoo."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"report-{name}-{profile}"
    for suffix in ("json", "md"):
        src = build / "report" / f"report.{suffix}"
        if src.is_file():
            shutil.copyfile(src, folder / f"{stem}.{suffix}")
    return relative(folder / f"{stem}.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", action="append", default=[],
                    help="a recipe name in models/ or a recipe file (repeat it; default: every recipe of a built-in "
                         "dataset)")
    ap.add_argument("--time-budget", default=None,
                    help='passed to `edgedistill build --time-budget` ("45m", "2h"); default: none, the build\'s own')
    ap.add_argument("--skip-build", action="store_true",
                    help="read the builds already there instead of building (no build time is recorded)")
    ap.add_argument("--model2vec-python", default=str(M2V_PYTHON), help="Python of .venv-model2vec (`make peers`)")
    ap.add_argument("--output", type=Path, default=RESULTS, help="results root (default: %(default)s)")
    a = ap.parse_args(argv)

    from edgedistill.runtime.bench import device_name, environment

    argv = [relative(x) if os.path.isabs(x) else x for x in (sys.argv[1:] if argv is None else argv)]
    command = " ".join(["python benchmarks/many_datasets.py", *(f'"{x}"' if " " in x else x for x in argv)])
    failed = False
    try:
        recipes = pick_recipes(a.recipe)
        if a.time_budget and not a.skip_build and not build_takes("--time-budget"):
            raise BenchmarkError("this edgedistill's `build` has no --time-budget yet: run without it")
        env = environment("cpu")
        a.folder = a.output / device_name(env)
        for i, path in enumerate(recipes, start=1):
            print(f"== {path.stem} ({i} of {len(recipes)})", flush=True)  # noqa: T201
            row = benchmark_one(path, a, env)
            failed |= bool(row.get("build_error"))
            result = write_results(a.folder, [row], env, command)  # after each dataset: a late failure keeps them
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 1
    print(to_markdown(result))  # noqa: T201
    print(f"{a.folder / 'datasets.md'}: {len(recipes)} rows written, {len(result['rows'])} in all")  # noqa: T201
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
