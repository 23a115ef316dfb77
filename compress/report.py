"""The build report: what ships, against its teacher and the cheapest classifier a user could train instead.

It leads with the figures a user judges the build by, all on the test split, which is read here and
nowhere a choice is made:

- the shipped package's share of the teacher's macro-F1;
- the **margin kept**: (shipped - baseline) / (teacher - baseline), where the baseline is TF-IDF + logistic
  regression trained on the same training split (:mod:`edgedistill.compress.baseline`);
- how many times faster than the teacher (torch) it answers one text, both timed here, interleaved, on
  the same test texts.

Rows scored on the test split: baseline (its package, through the runtime), teacher, student (torch), the student's
package when it did not ship, and the shipped package (through the runtime). A section says what shipped and why:
every candidate's validation macro-F1, as the ship stage (:mod:`edgedistill.compress.ship`) read them. The quantize
variants follow in their own table with the validation scores the gate chose them on.
Both name the int8 instruction set they were timed on (``isa``; ``quantize_isa`` for the variants) and the
preset the build was quantized with. A calibration table gives the expected calibration error on the test split
before and after the temperatures the package stage fitted on the validation split. A planned build ends with
its Plan: what was planned and left out, and each stage's estimated time beside its actual one. Writes
``report/report.md``, ``report/report.json`` and ``report/plot.png``.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.compress.baseline import margin_kept, share_of_teacher
from edgedistill.compress.errors import ConfigError
from edgedistill.runtime.fsutil import publishing
from edgedistill.compress.layout import BuildLayout
from edgedistill.compress.report_plot import plot  # noqa: F401  (also imported from here by the ladder and benchmarks)
from edgedistill.runtime.timing import paired_latency
from edgedistill.runtime.cpu import detect

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    plot: bool = True
    """Draw plot.png (macro-F1 against size and against batch-1 latency)."""
    batch_size: int = 32
    """Batch size of the package's evaluation through the runtime."""
    baseline: bool = True
    """Score the TF-IDF + logistic-regression baseline's package (the baseline stage's) on the test split."""
    latency_samples: int = 24
    """Test texts timed one at a time, twice each, through the teacher (torch), the baseline, the student and the
    package."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "latency_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"report.{name}", getattr(self, name), "must be >= 1")


def safetensors_parameters(folder: Path) -> int:
    """Parameters in a checkpoint's safetensors files, read from their headers (no torch needed)."""
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
    return total


def _size_mb(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def _torch_row(name: str, folder: Path) -> dict[str, Any] | None:
    from edgedistill.compress.evaluate import read_metrics

    metrics = folder / "metrics.json"
    if not metrics.is_file():
        return None
    m = read_metrics(metrics)
    return {"model": name, "format": "torch fp32", "split": "test", "n": m.n, "macro_f1": m.macro_f1,
            "micro_f1": m.micro_f1, "accuracy": m.accuracy,
            "roc_auc": m.roc_auc, "ece": m.ece, "size_mb": round(_size_mb(list(folder.glob("*.safetensors"))), 1),
            "params_m": round(safetensors_parameters(folder) / 1e6, 1), "latency_p50_ms": None, "shipped": False,
            "never_predicted": never_predicted(m)}


def never_predicted(metrics) -> list[list[Any]]:
    """``[label, support, F1]`` for every class with test texts that the model never predicts (its column of the
    confusion matrix is empty): the classes a macro-F1 hides least, and a collapsed model shows first. Multi-label:
    every label with test texts of which the model finds none (recall 0)."""
    if metrics.task == "multi_label":
        return [[lab, c.support, c.f1] for lab, c in metrics.per_class.items() if c.support > 0 and c.recall == 0]
    cols = [sum(row[j] for row in metrics.confusion) for j in range(len(metrics.labels))]
    return [[lab, metrics.per_class[lab].support, metrics.per_class[lab].f1] for j, lab in enumerate(metrics.labels)
            if cols[j] == 0 and metrics.per_class[lab].support > 0]


def teacher_check(folder: Path) -> str | None:
    """The teacher's failed check (``training.json``'s ``check``,
    :func:`edgedistill.compress.teacher_checks.check_teacher`), None when it passed or was not recorded."""
    path = Path(folder) / "training.json"
    if not path.is_file():
        return None
    check = json.loads(path.read_text()).get("check")
    return None if check in (None, "passed") else str(check)


def _teacher_predictor(folder: Path, max_length: int):
    """A batch-1 predictor of the torch teacher, for timing; None when there is no teacher checkpoint."""
    if not (folder / "config.json").is_file():
        return None
    from transformers import AutoTokenizer

    from edgedistill.compress.evaluate import predict_proba_torch
    from edgedistill.compress.checkpoints import load_classifier

    model = load_classifier(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    return lambda text: predict_proba_torch(model, tok, [text], max_length=max_length, batch_size=1)


def package_row(model: str, fmt: str, metrics: Any, folder: Path, *, params_m: float | None = None,
                latency: dict[str, float] | None = None, shipped: bool = False) -> dict[str, Any]:
    """A package's test row: its metrics, its size on disk (every file it ships), its batch-1 p50 from ``latency``."""
    return {"model": model, "format": fmt, "split": "test", "n": metrics.n, "macro_f1": metrics.macro_f1,
            "micro_f1": metrics.micro_f1, "accuracy": metrics.accuracy, "roc_auc": metrics.roc_auc, "ece": metrics.ece,
            "size_mb": round(_size_mb([p for p in Path(folder).iterdir() if p.is_file()]), 1), "params_m": params_m,
            "latency_p50_ms": (latency or {}).get(model), "shipped": shipped,
            "never_predicted": never_predicted(metrics)}


def build_rows(build: Path | BuildLayout, package_metrics=None, *, baseline: dict[str, Any] | None = None,
               latency: dict[str, float] | None = None, ship: dict[str, Any] | None = None,
               candidates: tuple[dict[str, Any], ...] = ()) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The test rows (baseline, teacher, student, ``candidates``: the student's package when it did not ship,
    package) and the validation rows of the quantize variants of a build (its folder, or its layout: a ladder
    rung's teacher is its recipe's). ``latency`` maps a row's model name to its batch-1 p50 in ms; ``ship`` is
    the ship stage's record (None: the student's package shipped, as before the stage)."""
    from edgedistill.compress.quantize import QuantizeReport

    latency = latency or {}
    layout = build if isinstance(build, BuildLayout) else BuildLayout(build)
    rows = [r for r in (baseline, _torch_row("teacher", layout.teacher),
                        _torch_row("student", layout.student), *candidates) if r]
    teacher = next((r for r in rows if r["model"] == "teacher"), None)
    for r in rows:
        r["latency_p50_ms"] = latency.get(r["model"], r["latency_p50_ms"])
    q = QuantizeReport.load(layout.onnx)
    student_params = next((r["params_m"] for r in rows if r["model"] == "student"), None)
    for r in candidates:  # the student's package, when another candidate shipped
        r["params_m"] = student_params
    variants = [{"model": f"student onnx {a.name}", "format": a.variant, "split": "validation",
                 "macro_f1": a.macro_f1, "accuracy": a.accuracy, "agreement": a.agreement,
                 "size_mb": None if a.size_bytes is None else round(a.size_bytes / 1e6, 1),
                 "params_m": student_params, "latency_p50_ms": a.latency_p50_ms, "latency_p90_ms": a.latency_p90_ms,
                 "status": a.status, "reason": a.reason, "chosen": a.name == q.chosen} for a in q.attempts]
    chosen = _shipped_candidate(ship)
    if package_metrics is not None:
        rows.append(package_row("package (shipped)", chosen["variant"] if chosen else q.chosen_variant,
                                package_metrics, layout.package, latency=latency, shipped=True,
                                params_m=student_params if not chosen or chosen["name"] == "student" else None))
    base = baseline["macro_f1"] if baseline else None
    t_f1, t_ms = (teacher["macro_f1"], teacher["latency_p50_ms"]) if teacher else (None, None)
    withheld = share_withheld(teacher_check(layout.teacher), t_f1, base)
    for r in rows:
        r["share_of_teacher"] = None if withheld else share_of_teacher(r["macro_f1"], t_f1)
        r["margin_kept"] = None if withheld or r is baseline else margin_kept(r["macro_f1"], t_f1, base)
        r["speedup_vs_teacher"] = (t_ms / r["latency_p50_ms"]) if t_ms and r.get("latency_p50_ms") else None
    shipped = next((r for r in rows if r.get("shipped")), None)
    headline = {k: (shipped or {}).get(k) for k in ("macro_f1", "micro_f1", "share_of_teacher", "margin_kept",
                                                   "speedup_vs_teacher")}
    headline.update(teacher_macro_f1=t_f1, baseline_macro_f1=base,
                    teacher_micro_f1=(teacher or {}).get("micro_f1"),
                    baseline_micro_f1=(baseline or {}).get("micro_f1"),
                    teacher_p50_ms=t_ms, share_withheld=withheld,
                    size_ratio=(teacher["size_mb"] / shipped["size_mb"]) if teacher and shipped and shipped["size_mb"]
                    else None)
    return rows, {"chosen": f"{chosen['name']} ({chosen['variant']})" if chosen else q.chosen, "why": q.summary(),
                  "ship": ship, "environment": q.environment, "headline": headline,
                  "variants": variants, "validation_examples": q.validation_examples, "dataset": q.dataset,
                  "isa": q.isa, "preset": q.preset, "detected_isa": q.detected_isa, "quantize_isa": q.isa}


def share_withheld(check: str | None, teacher_f1: float | None, baseline_f1: float | None) -> str | None:
    """Why the share of the teacher and the margin kept mean nothing for this build (None when they do): a
    teacher that failed its check on validation, or one the TF-IDF baseline beats on the test split."""
    if check:
        return f"the teacher failed its check on validation ({check})"
    if teacher_f1 is not None and baseline_f1 is not None and baseline_f1 > teacher_f1:
        return f"the TF-IDF baseline ({baseline_f1:.4f}) scores above the teacher ({teacher_f1:.4f}) on the test split"
    return None


def _shipped_candidate(ship: dict[str, Any] | None) -> dict[str, Any] | None:
    if not ship or not ship.get("chosen"):
        return None
    return next(c for c in ship["candidates"] if c["name"] == ship["chosen"])


def never_predicted_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Per model, the test classes it never predicts (F1 0), with their support."""
    found = [(r["model"], r["never_predicted"]) for r in rows if r.get("never_predicted")]
    if not found:
        return []
    lines = ["", "## Classes never predicted: test split", "",
             "Macro-F1 counts each of these as 0; a model that predicts few classes shows here first.", "",
             "| model | classes never predicted (test texts) |", "|---|---|"]
    for model, classes in found:
        lines.append(f"| {model} | {len(classes)}: " + ", ".join(f"{c[0]} ({c[1]})" for c in classes[:12])
                     + (f", and {len(classes) - 12} more" if len(classes) > 12 else "") + " |")
    return lines


def ship_markdown(ship: dict[str, Any] | None) -> list[str]:
    """The report's section on what shipped and why: every candidate's validation figures, as the ship stage read
    them (the test rows above are only reported)."""
    if not ship:
        return []
    budget = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in (ship.get("budget") or {}).items())
    lines = ["", "## What shipped and why: validation split", "",
             f"{ship['why']} The most accurate candidate on validation macro-F1 ships"
             + (f", within the budget ({budget})" if budget else "") + "; the test split decides nothing.", "",
             "| candidate | variant | reads | macro-F1 (validation) | p50 ms (validation) | size MB | ships |",
             "|---|---|---|---|---|---|---|"]
    for c in ship["candidates"]:
        note = "✓" if c["name"] == ship.get("chosen") else (c.get("excluded") or "")
        lines.append(f"| {c['name']} | {c['variant']} | {c.get('reads') or '–'} | "
                     f"{_fmt(c.get('validation_macro_f1'), '.4f')} | {_fmt(c.get('validation_latency_ms'), '.2f')} | "
                     f"{_fmt(c.get('size_mb'), '.1f')} | {note} |")
    if any(c.get("reads") not in (None, "truncate", "whole text") for c in ship["candidates"]):
        lines += ["", "Reads: how a text over the token limit is read: `truncate` its first tokens, `head+tail` its "
                  "start and its end, `chunks` every stretch of it in windows whose probabilities are averaged "
                  "(`[data] long_texts`; the planner adds the `view-*` candidates where the texts are long); the "
                  "baseline reads the whole text."]
    return lines


def calibration_rows(models: dict[str, tuple[Any, float]], split, labels: list[str],
                     batch_size: int = 32) -> list[dict[str, Any]]:
    """ECE and NLL on ``split`` before and after each model's temperature: ``models`` maps a row's name to a
    ``edgedistill.runtime.TextClassifier`` and the temperature fitted for it on the validation split (reported, never
    fitted here)."""
    from edgedistill.compress.calibration import ece, model_label_ids, nll

    rows = []
    for name, (clf, t) in models.items():
        logits, owner = clf.window_logits(list(split.texts), batch_size)  # chunks: each window, as calibrated
        y = model_label_ids(split.labels, labels, clf.labels)[owner]
        rows.append({"model": name, "split": "test", "n": len(split.texts), "temperature": t,
                     "ece_before": ece(logits, y), "ece_after": ece(logits, y, t),
                     "nll_before": nll(logits, y), "nll_after": nll(logits, y, t)})
    return rows


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


NARROW_MARGIN = 0.01
"""A teacher less than 1 macro-F1 point above the baseline leaves a margin too small to share meaningfully."""


def headline_text(h: dict[str, Any]) -> str:
    """One sentence with the figures a user judges a build by."""
    if h.get("macro_f1") is None:
        return "No package was scored."
    parts = [f"macro-F1 {h['macro_f1']:.4f} on the test split"]
    if h.get("micro_f1") is not None:
        parts[0] += (f" (micro-F1 {h['micro_f1']:.4f}; the teacher's {_fmt(h.get('teacher_micro_f1'), '.4f')}, "
                     f"the baseline's {_fmt(h.get('baseline_micro_f1'), '.4f')})")
    if h.get("share_of_teacher") is not None:
        parts.append(f"{h['share_of_teacher']:.1%} of the teacher's ({h['teacher_macro_f1']:.4f})")
    if h.get("margin_kept") is not None:
        parts.append(f"{h['margin_kept']:.0%} of its margin over the TF-IDF baseline ({h['baseline_macro_f1']:.4f}) "
                     "kept")
    if h.get("speedup_vs_teacher") is not None:
        parts.append(f"{h['speedup_vs_teacher']:.1f}x faster than the teacher at batch 1")
    if h.get("size_ratio") is not None:
        parts.append(f"{h['size_ratio']:.1f}x smaller")
    text = "; ".join(parts) + "."
    if h.get("share_withheld"):
        return text + f" No share of the teacher or margin is given: {h['share_withheld']}."
    t, b, m = h.get("teacher_macro_f1"), h.get("baseline_macro_f1"), h["macro_f1"]
    if t is not None and b is not None and t - b < NARROW_MARGIN:
        gap = (f"only {100 * (t - b):.1f} points above" if t >= b else f"{100 * (b - t):.1f} points below")
        text += (f" Note: the teacher is {gap} the TF-IDF baseline, so the margin "
                 "says little here" + (f", and the baseline scores {100 * (b - m):.1f} points more than what "
                                       "ships: it may be the better choice" if b > m else "") + ".")
    return text


def _machine_line(meta: dict[str, Any]) -> str:
    """Which int8 instruction set the figures were measured on, and the preset the build was quantized with."""
    from edgedistill.compress.quantize.report import preset_text

    isa, gated = meta.get("isa") or "unknown", meta.get("quantize_isa") or "unknown"
    return (f"Measured on a CPU with int8 instruction set **{isa}**; quantized with the "
            f"{preset_text(meta.get('preset'), meta.get('detected_isa'))} preset"
            + (f", its variants gated and timed on {gated}" if gated != isa else "") + ".")


def adaptation_text(whose: str, adapted: dict[str, Any]) -> str:
    """One sentence on how the ``whose`` (teacher, student) encoder was adapted (a
    :class:`edgedistill.compress.adapt.Adaptation` as recorded)."""
    fresh = adapted.get("fresh_head") or []
    return (f"The {whose}'s encoder was first adapted on {adapted['texts']:,} unlabelled in-domain texts "
            f"({adapted['objective']}, {adapted['steps']} steps"
            + (f"; the checkpoint had no MLM head, so {', '.join(fresh)} started fresh and the decoder was "
               "tied to the input embeddings" if fresh else "") + ").")


def to_markdown(name: str, profile: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    test_n = next((r.get("n") for r in rows if r.get("n")), None)
    multi = any(r.get("micro_f1") is not None for r in rows)
    lines = [f"# {name}: build report ({profile} profile)", "",
             f"**Shipped: {meta['chosen']}: {headline_text(meta['headline'])}**", "",
             f"## Test split of `{meta['dataset']}`" + (f", {test_n} texts" if test_n else ""), "",
             "Scored once per model, after every choice was made. Margin kept = (model - baseline) / "
             "(teacher - baseline). Latency: batch 1, p50 on real test texts, every timed model (the teacher in "
             "torch, the student as its fp32 ONNX graph through the runtime) interleaved text by text in one "
             "process.", "",
             _machine_line(meta), "",
             f"| model | format | macro-F1 |{' micro-F1 |' if multi else ''} share of teacher | margin kept | "
             f"{'subset accuracy' if multi else 'accuracy'} | size MB | params M | p50 ms | × faster than teacher |",
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if multi else "")]
    for r in rows:
        label = f"**{r['model']}**" if r.get("shipped") else r["model"]
        micro = f" {_fmt(r.get('micro_f1'), '.4f')} |" if multi else ""
        lines.append(f"| {label} | {r['format']} | {_fmt(r['macro_f1'], '.4f')} |{micro} "
                     f"{_fmt(r.get('share_of_teacher'), '.1%')} | {_fmt(r.get('margin_kept'), '.0%')} | "
                     f"{_fmt(r['accuracy'], '.4f')} | {_fmt(r['size_mb'], '.1f')} | {_fmt(r.get('params_m'), '.1f')} | "
                     f"{_fmt(r.get('latency_p50_ms'), '.2f')} | {_fmt(r.get('speedup_vs_teacher'), '.1f')} |")
    for whose, key in (("teacher", "adaptation"), ("student", "student_adaptation")):
        if adapted := meta.get(key):
            lines += ["", adaptation_text(whose, adapted)]
    lines += never_predicted_markdown(rows)
    lines += ship_markdown(meta.get("ship"))
    lines += ["", "Sizes: torch rows count the safetensors weights; package rows (the baseline's too) every file "
              "the package ships (model, tokenizer, config, manifest, card).", "",
              f"## Quantized variants: validation split, {meta['validation_examples']} texts", "",
              f"The accuracy gate and the choice of what ships read only these. {meta['why']}", "",
              "| variant | format | macro-F1 (validation) | agreement with fp32 | size MB | p50 ms | status |",
              "|---|---|---|---|---|---|---|"]
    for v in meta["variants"]:
        status = (("**chosen** · " if v.get("chosen") else "") + v["status"]
                  + (f": {v['reason']}" if v["reason"] else ""))
        lines.append(f"| {v['model'].replace('student onnx ', '')} | {v['format']} | {_fmt(v['macro_f1'], '.4f')} | "
                     f"{_fmt(v.get('agreement'), '.4f')} | {_fmt(v['size_mb'], '.1f')} | "
                     f"{_fmt(v.get('latency_p50_ms'), '.2f')} | {status} |")
    lines += targets_markdown(meta.get("targets"))
    if th := meta.get("thresholds"):
        from edgedistill.compress.multilabel import thresholds_markdown

        lines += thresholds_markdown(th)
    if meta.get("calibration"):
        cal = meta["calibration"]
        lines += ["", f"## Calibration: test split, {cal[0]['n']} texts", "",
                  "Temperatures fitted on the validation split when packaging (the runtime divides the logits by "
                  "the package's); the test split only reports what they do. ECE: 15 equal-width bins on the "
                  "top-class confidence. Labels never change.", "",
                  "| model | temperature | ECE before | ECE after | NLL before | NLL after |",
                  "|---|---|---|---|---|---|"]
        for c in cal:
            lines.append(f"| {c['model']} | {c['temperature']:.4g} | {c['ece_before']:.4f} | {c['ece_after']:.4f} | "
                         f"{c['nll_before']:.4f} | {c['nll_after']:.4f} |")
    if meta.get("plan"):
        from edgedistill.compress.plan.build import plan_markdown

        lines += plan_markdown(meta["plan"], meta.get("plan_actual") or {})
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- per-target checks

def targets_meta(layout: BuildLayout) -> dict[str, Any] | None:
    """The targets stage's report (``onnx/targets.json``) as the build report records it; None without one."""
    from edgedistill.compress.targets import TargetsReport

    path = layout.targets_report
    return TargetsReport.load(path).to_dict() if path.is_file() else None


def targets_markdown(targets: dict[str, Any] | None) -> list[str]:
    """The report's section on targets: one row per target and variant checked, and the verdict."""
    from edgedistill.compress.targets import TargetsReport

    if not targets:
        return []
    report = TargetsReport.from_dict(targets)
    return ["", f"## Targets: {', '.join(report.platforms)}", "", report.explanation(), "", *report.table_lines()]


def baseline_row(data) -> tuple[dict[str, Any], Any]:
    """Train the TF-IDF + LR baseline on ``data``'s training split (C chosen on validation), score it on test (in
    scikit-learn: for ablations and benchmarks; a build scores the baseline stage's package)."""
    from edgedistill.compress.baseline import train_baseline
    from edgedistill.compress.baseline_package import NAME

    base = train_baseline(data.train, data.validation, num_labels=data.num_labels)
    m = base.evaluate(data.test, data.label_names, dataset=data.name)
    row = {"model": NAME, "format": "scikit-learn", "split": "test", "macro_f1": m.macro_f1,
           "micro_f1": m.micro_f1, "accuracy": m.accuracy, "roc_auc": m.roc_auc, "ece": m.ece, "n": m.n,
           "size_mb": round(base.size_bytes / 1e6, 1), "params_m": None, "latency_p50_ms": None, "shipped": False,
           "C": base.C, "validation_macro_f1_by_C": base.validation_macro_f1, "fit_seconds": base.fit_seconds}
    return row, base


def write_report(recipe, cfg: ReportConfig) -> Path:
    """Score the shipped package and the other candidates on the test split, time them against the teacher, write
    the report."""
    from edgedistill.compress.data import load_data
    from edgedistill.compress.evaluate import evaluate_package, write_metrics
    from edgedistill.compress.exportmeta import MODEL_FILE, TOKENIZER_FILE, read_export, runtime_config
    from edgedistill.compress.plan.build import actual_seconds, read_plan
    from edgedistill.compress.quantize import QuantizeReport
    from edgedistill.compress.ship import read_record
    from edgedistill.runtime.classifier import TextClassifier

    layout = recipe.layout
    data = load_data(recipe.data())
    ship = read_record(layout.ship_record)

    def scored(folder: Path) -> tuple[Any, Any]:
        c = TextClassifier.load(folder)
        return c, evaluate_package(c, data.test, batch_size=cfg.batch_size, dataset=data.name, progress=True)

    clf, metrics = scored(layout.package)
    texts = list(data.test.texts[:cfg.latency_samples])
    meta_export = read_export(layout.onnx)
    # the student's own latency: its fp32 graph (parity-checked against the torch checkpoint) through the runtime
    fp32 = TextClassifier.from_files(layout.onnx / MODEL_FILE, layout.onnx / TOKENIZER_FILE,
                                     runtime_config(meta_export, "fp32"))
    fns: dict[str, Any] = {"package (shipped)": lambda t: clf.predict_proba([t]),
                           "student": lambda t: fp32.predict_proba([t])}
    baseline = candidates = None
    if cfg.baseline and layout.baseline_package.is_dir():
        from edgedistill.compress.baseline_package import NAME

        base, m = scored(layout.baseline_package)
        baseline = package_row(NAME, "onnx (raw strings)", m, layout.baseline_package)
        fns[NAME] = lambda t: base.predict_proba([t])
    if ship and ship.get("chosen") != "student" and layout.student_package.is_dir():  # the student lost: scored too
        student_pkg, m = scored(layout.student_package)
        candidates = package_row("student package", QuantizeReport.load(layout.onnx).chosen_variant, m,
                                 layout.student_package)
        fns["student package"] = lambda t: student_pkg.predict_proba([t])
    teacher = _teacher_predictor(layout.teacher, meta_export.max_length)
    if teacher is not None:
        fns["teacher"] = teacher
    latency = paired_latency(fns, texts)  # keyed by the rows' model names
    for row in (baseline, candidates):
        if row is not None:
            row["latency_p50_ms"] = latency.get(row["model"])
    rows, meta = build_rows(layout, metrics, baseline=baseline, latency=latency, ship=ship,
                            candidates=(candidates,) if candidates else ())
    meta["isa"] = detect().name  # where the test rows were timed (the quantize stage may have run elsewhere)
    meta["targets"] = targets_meta(layout)
    training = layout.teacher / "training.json"
    meta["adaptation"] = json.loads(training.read_text()).get("adaptation") if training.is_file() else None
    distilled = layout.student / "distill.json"
    meta["student_adaptation"] = json.loads(distilled.read_text()).get("adaptation") if distilled.is_file() else None
    if (saved := read_plan(layout.root)) and saved["plan"]["values"] == recipe.planned:  # this build's plan
        meta["plan"], meta["plan_actual"] = saved["plan"], actual_seconds(layout.root)
    fitted = (clf.manifest or {}).get("calibration")
    if fitted and fitted.get("method") == "thresholds":  # multi-label: thresholds, not a temperature
        meta["thresholds"], fitted = fitted, None
    meta["calibration"] = calibration_rows(
        {"package (shipped)": (clf, clf.temperature), "student": (fp32, fitted["fp32"]["temperature"])},
        data.test, list(data.label_names), cfg.batch_size) if fitted else None
    for r in rows:
        r.setdefault("n", metrics.n)
    out = layout.report
    with publishing(out) as tmp:
        write_metrics(metrics, tmp, "package_metrics", title=f"{recipe.name}: shipped package")
        (tmp / "report.json").write_text(json.dumps({"name": recipe.name, "profile": recipe.profile,
                                                     "overrides": recipe.overrides,
                                                     "rows": rows, **meta}, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text(to_markdown(recipe.name, recipe.profile, rows, meta))
        if cfg.plot:
            plot(rows, tmp / "plot.png", f"{recipe.name} ({recipe.profile} profile), test split")
    log.info("report written to %s: %s", out / "report.md", headline_text(meta["headline"]))
    return out
