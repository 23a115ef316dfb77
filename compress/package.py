"""Assemble the deployable model package from an export (and its quantize report).

The package is the contract between the toolchain and ``runtime/`` (see
``runtime/package.py``, which owns the format)::

    package/
      model.onnx      the chosen variant (the report's choice unless one is named)
      tokenizer.json
      config.json     labels in output order, max_length, input names, pad id, model type, variant, temperature,
                      whether the runtime runs the model one text per call (batch_dependent, batch_invariant)
      manifest.json   sha256 + size of every file, opset, versions, quantization, metrics, calibration, recipe,
                      created
      README.md       model card: intended use, data, labels, metrics, quantization, calibration, limitations

Only a variant that passed the accuracy gate can be packaged (fp32 needs no gate). The temperature is fitted
on the validation split that gated it (:mod:`edgedistill.compress.calibration`), for the shipped variant run as the
runtime will run it, and for the fp32 student beside it (recorded, for comparison). The folder
is assembled under a temporary name, loaded back through ``edgedistill.runtime.TextClassifier`` (every hash
checked, one prediction run), and only then renamed into place; the optional ``.zip`` likewise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.compress.errors import ConfigError
from edgedistill.runtime.fsutil import publishing
from edgedistill.compress.layout import TARGETS_REPORT, BuildLayout
from edgedistill.compress.exportmeta import MODEL_FILE, TOKENIZER_FILE, ExportMeta, read_export, runtime_config
from edgedistill.compress.quantize import REPORT_JSON, Attempt, QuantizeReport
from edgedistill.runtime.views import DEFAULT_MAX_CHUNKS

log = logging.getLogger(__name__)


@dataclass
class PackagingConfig:
    """Which export to package, which of its variants, and where to write it."""

    onnx_dir: str = ""
    """A folder written by ``edgedistill export`` (and usually ``edgedistill quantize``)."""
    output: str | None = None
    """The package folder to write; default: ``package/`` beside the ONNX folder."""
    variant: str | None = None
    """An attempt name or variant from the quantize report; default: the report's choice (fp32 without one)."""
    name: str | None = None
    """The model's name on its card; default: the package folder's name."""
    zip: bool = False
    """Also write ``<output>.zip`` (the files at the archive's top level)."""
    overwrite: bool = False
    """Replace an existing package folder (and .zip)."""
    recipe: dict[str, Any] | None = None
    """The recipe the model was built from, recorded in the manifest."""
    parent: dict[str, Any] | None = None
    """Set by ``edgedistill update``: the package this one updates (its version and manifest sha256), in the
    manifest."""
    history: list[dict[str, Any]] | None = None
    """Set by ``edgedistill update``: every version so far, oldest first, in the manifest and on the model card."""
    calibrate: bool = True
    """Fit a temperature on the validation split the quantize report was gated on, and ship it: the runtime divides
    the logits by it, so scores track accuracy. Labels never change. False (or no quantize report): temperature 1."""

    class_biases: bool = True
    """With ``calibrate``: also fit per-class decision biases (logit adjustment) on the validation split, shipped
    only where biases fitted on one half of it raise macro-F1 on the other
    (see ``edgedistill.compress.calibration``)."""

    def __post_init__(self) -> None:
        if not str(self.onnx_dir):
            raise ConfigError("package.onnx_dir", self.onnx_dir, "name a folder written by `edgedistill export`")
        if self.recipe is not None and not isinstance(self.recipe, dict):
            raise ConfigError("package.recipe", self.recipe, "must be a mapping (the parsed recipe) or None")
        if not isinstance(self.calibrate, bool):
            raise ConfigError("package.calibrate", self.calibrate, "must be true or false")

    @property
    def output_dir(self) -> Path:
        return Path(self.output) if self.output else BuildLayout(Path(self.onnx_dir).resolve().parent).package


def write_package(out: Path, files: dict[str, Path], config: dict[str, Any], card: str, *, opset: int,
                  zip_path: Path | None = None, verify_on: tuple[str | None, ...] = (None,), **manifest: Any) -> Path:
    """The one way a package folder is written: ``files`` (name in the package -> file to copy), config.json and
    the model card go into a temporary folder, :func:`edgedistill.runtime.package.write_manifest` hashes them
    (``manifest``: its fields), the folder is loaded back through ``edgedistill.runtime.TextClassifier`` for each of
    ``verify_on`` (every hash checked, one prediction run), and only then renamed to ``out``; ``zip_path`` likewise.
    Returns ``out``."""
    from edgedistill.runtime.classifier import TextClassifier  # submodules: they import under any install layout
    from edgedistill.runtime.package import CONFIG_FILE, README_FILE, write_manifest, zip_package

    tmp_zip: Path | None = None
    try:
        with publishing(out) as tmp:
            for name, source in files.items():
                shutil.copyfile(source, tmp / name)
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
            (tmp / README_FILE).write_text(card)
            write_manifest(tmp, opset=opset, **manifest)
            for target in verify_on:
                clf = TextClassifier.load(tmp, target=target)  # what ships must load, verify and predict
                clf.predict("a quick check that the package runs")
                del clf
            if zip_path is not None:
                zip_package(tmp, tmp_zip := tmp.with_name(tmp.name + ".zip"))
        if tmp_zip is not None:
            os.replace(tmp_zip, zip_path)
    except BaseException:
        if tmp_zip is not None:
            tmp_zip.unlink(missing_ok=True)
        raise
    return out


def build_package(cfg: PackagingConfig, data: Any = None) -> Path:
    """Write the package folder (and optional .zip) for ``cfg``; returns the folder. ``data``: the labelled data
    whose validation split fits the temperature, already loaded (an update's old and new tasks together); default:
    the data the quantize report was gated on."""
    onnx_dir, out = Path(cfg.onnx_dir), cfg.output_dir
    meta = read_export(onnx_dir)
    report = QuantizeReport.load(onnx_dir) if (onnx_dir / REPORT_JSON).is_file() else None
    plan = _targets_plan(onnx_dir, cfg.variant, report)
    attempt = report.attempt(plan.default) if plan else _pick(cfg.variant, report)
    source = onnx_dir / attempt.file
    if not source.is_file():
        raise ConfigError("package.variant", attempt.name, f"its file {source} is missing (re-run quantize)")
    zip_path = out.with_name(out.name + ".zip")
    for path in (out, zip_path) if cfg.zip else (out,):
        if path.exists() and not cfg.overwrite:
            raise ConfigError("package.output", str(path),
                              "already exists; pass overwrite=True (--overwrite) to replace it")
    # how the gate ran the variant is how it ships (reports from before the setting: invariant)
    batch_invariant = bool((report.config if report else {}).get("batch_invariant", True))
    calibration = _calibration(meta, onnx_dir, attempt, report, batch_invariant, data, cfg.class_biases) \
        if cfg.calibrate else None
    biases = (calibration or {}).get("biases") or {}
    thresholds = (calibration or {}).get("thresholds")

    files = {MODEL_FILE: source, TOKENIZER_FILE: onnx_dir / TOKENIZER_FILE,
             **{name: onnx_dir / file for name, file in (plan.extra_files.items() if plan else ())}}  # other targets
    config = runtime_config(meta, attempt.variant, batch_invariant=batch_invariant,
                            temperature=calibration["shipped"]["temperature"] if calibration else 1.0,
                            biases=biases.get("biases"), thresholds=thresholds)
    metrics = _metrics(attempt, report, meta)
    if thresholds is not None:  # what ships decides with its thresholds: its validation figures are those
        metrics.update(calibration["validation"], macro_f1_at_half=metrics.get("macro_f1"))
    name = cfg.name or out.name
    card = model_card(name, meta, attempt, report, metrics, cfg.history, calibration=calibration,
                      runs_alone=config["batch_dependent"] and batch_invariant)
    lineage = {"parent": cfg.parent, "history": cfg.history} if cfg.parent or cfg.history else {}
    write_package(out, files, config, card, opset=meta.opset, zip_path=zip_path if cfg.zip else None,
                  verify_on=(None, *(t for t in (plan.targets if plan else ()) if t != "cuda")),
                  quantization=_quantization(attempt, report), metrics=metrics, recipe=cfg.recipe, name=name,
                  calibration=calibration, **lineage,
                  source={"checkpoint": meta.checkpoint, "onnx_dir": str(onnx_dir.resolve()), "file": attempt.file,
                          "attempt": attempt.name},
                  **({"targets": plan.targets} if plan else {}))
    log.info("package %s: %s (%s, %.1f MB)%s", name, out, attempt.name, (out / MODEL_FILE).stat().st_size / 1e6,
             f" and {zip_path}" if cfg.zip else "")
    return out


def _targets_plan(onnx_dir: Path, wanted: str | None, report: QuantizeReport | None):
    """The per-target files the targets check decided (None without one, or when a variant is named)."""
    from edgedistill.compress.targets import shipping_plan

    if report is None or not (onnx_dir / TARGETS_REPORT).is_file():
        return None
    if wanted is not None:
        log.warning("package.variant=%r is named: the package ships it alone, without the targets check's "
                    "decisions", wanted)
        return None
    return shipping_plan(onnx_dir)


def _pick(wanted: str | None, report: QuantizeReport | None) -> Attempt:
    """The attempt to ship: the report's choice, or the named one, which must have passed the gate."""
    if report is None:
        if wanted not in (None, "fp32"):
            raise ConfigError("package.variant", wanted, "there is no quantize report in the ONNX folder, so only fp32 "
                              "(which needs no accuracy gate) can be packaged; run `edgedistill quantize` first")
        return Attempt("fp32", "fp32", MODEL_FILE, {}, status="passed", reason="reference")
    if wanted is None:
        return report.attempt(report.chosen)
    named = [a for a in report.attempts if a.name == wanted] or [a for a in report.attempts if a.variant == wanted]
    if not named:
        raise ConfigError("package.variant", wanted,
                          f"not in the quantize report; attempts: {[a.name for a in report.attempts]}")
    passing = [a for a in named if a.passed]
    if not passing:
        a = named[0]
        raise ConfigError("package.variant", wanted, f"did not pass the accuracy gate ({a.status}: {a.reason}); "
                          "a package never ships a variant that failed it")
    if any(a.variant == "fp16" for a in passing):
        raise ConfigError("package.variant", wanted, "fp16 is for GPUs only: declare the cuda target "
                          "(targets.platforms) and the package ships it for cuda")
    return min(passing, key=lambda a: a.latency_p50_ms or 0.0)


def _calibration(meta: ExportMeta, onnx_dir: Path, attempt: Attempt, report: QuantizeReport | None,
                 batch_invariant: bool, data: Any = None, class_biases: bool = True) -> dict[str, Any] | None:
    """Temperatures fitted on the validation split for the shipped variant and the fp32 student (manifest record),
    and the shipped variant's per-class biases where they earn their place
    (:func:`edgedistill.compress.calibration.fit_biases`).

    None, with a warning, when there is no validation split to fit on (no quantize report, or an empty split).
    """
    from dataclasses import fields

    from edgedistill.compress.calibration import calibrate, fit_biases, model_label_ids
    from edgedistill.compress.data import DataConfig, load_data
    from edgedistill.compress.evaluate import ECE_BINS
    from edgedistill.runtime.classifier import TextClassifier

    if data is None and report is None:
        log.warning("no quantize report, so no validation split to fit a temperature on: the package is not "
                    "calibrated (temperature 1)")
        return None
    if data is None:
        known = {f.name for f in fields(DataConfig)}
        data = load_data(DataConfig(**{k: v for k, v in (report.config.get("data") or {}).items() if k in known}))
    settings = report.config if report else {}
    split = data.validation
    if len(split) == 0:
        log.warning("the validation split of %s is empty: the package is not calibrated (temperature 1)", data.name)
        return None
    if meta.task == "multi_label":
        return _thresholds(meta, onnx_dir, attempt, batch_invariant, data, settings)
    import numpy as np

    y = y_texts = np.asarray(model_label_ids(split.labels, data.label_names, meta.labels))
    fits: dict[str, Any] = {}
    logits: dict[str, Any] = {}
    for key, a in (("fp32", Attempt("fp32", "fp32", MODEL_FILE, {})), ("shipped", attempt)):
        if key == "shipped" and a.file == MODEL_FILE:
            fits[key] = fits["fp32"]
            continue
        config = runtime_config(meta, a.variant, batch_invariant=batch_invariant)
        clf = TextClassifier.from_files(onnx_dir / a.file, onnx_dir / TOKENIZER_FILE, config,
                                        threads=settings.get("threads"))
        # each window as the runtime scores it (one a text, but for chunks: then each window has its text's label)
        logits[key], owner = clf.window_logits(list(split.texts), settings.get("batch_size", 32))
        y = y_texts[owner]
        fits[key] = calibrate(logits[key], y)
        log.info("calibration of %s: %s", a.name if key == "shipped" else "the fp32 student", fits[key])
    biases = fit_biases(logits.get("shipped", logits["fp32"]), y, fits["shipped"].temperature) \
        if class_biases else None
    if biases is not None:
        log.info("%s: %s", attempt.name, biases)
    return {"method": "temperature", "split": "validation", "dataset": data.name, "n": len(split),
            "bins": ECE_BINS, "variant": attempt.name, "temperature": fits["shipped"].temperature,
            "shipped": fits["shipped"].to_dict(), "fp32": fits["fp32"].to_dict(),
            "biases": biases.to_dict() if biases else None}


def _thresholds(meta: ExportMeta, onnx_dir: Path, attempt: Attempt, batch_invariant: bool, data: Any,
                settings: dict[str, Any]) -> dict[str, Any]:
    """A multi-label package's per-label decision thresholds, fitted on the validation split for the shipped
    variant (:func:`edgedistill.compress.multilabel.fit_thresholds`), and its validation figures with them."""
    from edgedistill.compress.evaluate import compute_metrics
    from edgedistill.compress.multilabel import as_matrix, fit_thresholds
    from edgedistill.runtime.classifier import TextClassifier

    split = data.validation
    y = as_matrix(split.labels, data.num_labels)[:, [data.label_names.index(lab) for lab in meta.labels]]
    clf = TextClassifier.from_files(onnx_dir / attempt.file, onnx_dir / TOKENIZER_FILE,
                                    runtime_config(meta, attempt.variant, batch_invariant=batch_invariant),
                                    threads=settings.get("threads"))
    probs = clf.predict_proba(list(split.texts), settings.get("batch_size", 32))
    thresholds, how = fit_thresholds(y, probs)
    at_half, fitted = compute_metrics(y, probs, meta.labels), compute_metrics(y, probs, meta.labels, thresholds)
    log.info("%s: per-label thresholds on %d validation texts: macro-F1 %.4f -> %.4f, micro-F1 %.4f -> %.4f",
             attempt.name, len(split), at_half.macro_f1, fitted.macro_f1, at_half.micro_f1, fitted.micro_f1)
    return {"method": "thresholds", "split": "validation", "dataset": data.name, "n": len(split),
            "variant": attempt.name, "thresholds": thresholds, "how": how,
            "at_half": {"macro_f1": at_half.macro_f1, "micro_f1": at_half.micro_f1},
            "validation": {"macro_f1": fitted.macro_f1, "micro_f1": fitted.micro_f1, "accuracy": fitted.accuracy,
                           "samples_f1": fitted.samples_f1},
            "shipped": {"temperature": 1.0}, "biases": None}


def _quantization(attempt: Attempt, report: QuantizeReport | None) -> dict[str, Any] | None:
    if attempt.variant in ("fp32", "optimized"):
        return None
    return {"variant": attempt.variant, "attempt": attempt.name, "settings": attempt.settings,
            "preset": report.preset if report else None,
            "detected_isa": report.detected_isa if report else None,  # what preset = "auto" chose it from
            "isa": report.isa if report else None,  # the int8 instruction set the gate timed it on
            "operators": attempt.ops,
            "gate": {"budget_macro_f1_points": report.budget if report else None, "status": attempt.status,
                     "reason": attempt.reason}}


def _metrics(attempt: Attempt, report: QuantizeReport | None, meta: ExportMeta) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    if report is not None:
        ref = report.attempt("fp32")
        metrics.update(dataset=report.dataset, split="validation", n=report.validation_examples,
                       macro_f1=attempt.macro_f1, accuracy=attempt.accuracy, agreement_with_fp32=attempt.agreement,
                       fp32_macro_f1=ref.macro_f1, size_bytes=attempt.size_bytes, fp32_size_bytes=ref.size_bytes,
                       latency_p50_ms=attempt.latency_p50_ms, latency_p90_ms=attempt.latency_p90_ms,
                       latency_machine=report.environment.get("cpu"), latency_threads=report.environment.get("threads"))
    ckpt_metrics = Path(meta.checkpoint or "") / "metrics.json"
    if meta.checkpoint and ckpt_metrics.is_file():
        try:
            metrics["checkpoint"] = json.loads(ckpt_metrics.read_text())
        except json.JSONDecodeError:
            log.warning("%s is not valid JSON; the package records no checkpoint metrics", ckpt_metrics)
    metrics["parity_max_abs_diff"] = dict(meta.parity.max_abs_diff) if meta.parity else None
    return metrics


def _calibration_lines(calibration: dict[str, Any] | None, labels: list[str], attempt: Attempt) -> list[str]:
    """The model card's calibration section: the thresholds (multi-label) or the temperature and biases."""
    lines: list[str] = []
    if calibration and calibration.get("method") == "thresholds":
        v, h = calibration["validation"], calibration["at_half"]
        lines += [f"Multi-label: scores are one sigmoid per label, and a text carries every label whose score reaches "
                  f"that label's threshold. The thresholds were fitted on the {calibration['n']} texts of the "
                  f"validation split (each label's F1-maximising value; the one global threshold for labels with "
                  f"fewer than {calibration['how']['min_positives']} validation texts): macro-F1 "
                  f"{h['macro_f1']:.4f} -> {v['macro_f1']:.4f}, micro-F1 {h['micro_f1']:.4f} -> {v['micro_f1']:.4f}.",
                  "", "| label | threshold | chosen by |", "|---|---|---|",
                  *(f"| {lab} | {t:.2f} | {how} |" for lab, t, how in
                    zip(labels, calibration["thresholds"], calibration["how"]["chosen_by"]))]
    elif calibration:
        c, f = calibration["shipped"], calibration["fp32"]
        lines += [f"Scores are `softmax(logits / {c['temperature']:.4g})`: the temperature was fitted on the "
                  f"{calibration['n']} texts of the validation split (negative log-likelihood), so that a score of "
                  "0.8 is right about 80% of the time on data like it. It never changes a label.", "",
                  f"| model | temperature | ECE before ({calibration['bins']} bins) | ECE after |", "|---|---|---|---|",
                  f"| {attempt.name} (this package) | {c['temperature']:.4g} | {c['ece_before']:.4f} | "
                  f"{c['ece_after']:.4f} |"]
        if attempt.file != MODEL_FILE:
            lines.append(f"| fp32 student | {f['temperature']:.4g} | {f['ece_before']:.4f} | {f['ece_after']:.4f} |")
        if c.get("capped"):
            lines += ["", "The fit alone would make the scores surer, on average, than the validation accuracy allows "
                      "(every score 1.0 when every text is right); the temperature is instead the one at which the "
                      "mean score equals the accuracy these texts vouch for, (right + 1) / (n + 2)."]
        if b := calibration.get("biases"):
            lines += ["", (f"Per-class decision biases are added after the temperature (logit adjustment): on the "
                           f"validation split they raise macro-F1 {b['macro_f1_before']:.4f} -> "
                           f"{b['macro_f1_after']:.4f}, and biases fitted on either half of it gained "
                           f"{b['heldout_gain']:+.4f} on the other half." if b.get("biases") else
                           f"No per-class decision biases: fitted on either half of the validation split, they "
                           f"gained {b['heldout_gain']:+.4f} macro-F1 on the other half.")]
    else:
        lines.append("Not calibrated: scores are the model's softmax probabilities (temperature 1).")
    return lines


def _limitations(meta: ExportMeta, attempt: Attempt, calibration: dict[str, Any] | None,
                 runs_alone: bool) -> list[str]:
    """The model card's limitations, in bullet lines."""
    lines = ["- It knows only the labels above; a text that fits none may still get one."
             if meta.task == "multi_label" else
             "- It knows only the labels above; every text gets one of them, including texts that fit none.",
             "- Trained on one dataset: expect lower accuracy on other domains, registers or languages.",
             _long_text_limitation(meta),
             "- Scores are calibrated on the validation split only: on other domains they are likely overconfident."
             if calibration and calibration.get("method") != "thresholds" else
             "- Thresholds are fitted on the validation split only; on other domains they may need refitting."
             if calibration else "- Scores are softmax probabilities, not calibrated certainties."]
    if attempt.variant.startswith("int8") and attempt.agreement is not None:
        lines.append(f"- int8 arithmetic: {100 * (1 - attempt.agreement):.1f}% of validation texts get a different "
                     "label than the fp32 model; results also vary slightly between CPUs (VNNI or not, ARM).")
    if runs_alone:
        lines.append("- Dynamic int8 quantises activations with one range per batch, so the runtime (and the web "
                     "page) runs each text on its own: an answer never depends on the other texts of a call, at the "
                     "cost of batched throughput (`TextClassifier.load(..., batch_invariant=False)` batches anyway).")
    elif attempt.batch_flips:
        lines.append(f"- Batching changes answers: this variant quantises activations with one range per batch, so "
                     f"{attempt.batch_flips:.1%} of test texts got a different label when classified alone than in a "
                     f"batch (probabilities differ by up to {attempt.batch_max_diff:.3f}). Classify one text per "
                     "call (`batch_size=1`) where the same text must always get the same answer.")
    lines.append("- Inherits the biases of its pretrained encoder and of its training data.")
    return lines


def _long_text_reading(meta: ExportMeta) -> str:
    """How the package reads a text over its token limit, for the model card's data section."""
    if meta.long_texts == "head+tail":
        return (f"a text longer than {meta.max_length} tokens is read as its first quarter and its last three "
                "quarters of that limit (head+tail)")
    if meta.long_texts == "chunks":
        return (f"a text longer than {meta.max_length} tokens is read in windows of that many, whose probabilities "
                "are pooled (chunks: the mean; the maximum per label for a multi-label package), at most "
                f"{DEFAULT_MAX_CHUNKS} windows")
    return f"texts longer than {meta.max_length} tokens are truncated"


def _long_text_limitation(meta: ExportMeta) -> str:
    if meta.long_texts == "head+tail":
        return f"- A text over {meta.max_length} tokens loses its middle; only its start and its end are read."
    if meta.long_texts == "chunks":
        return (f"- A text over {meta.max_length} tokens costs one run a window; past {DEFAULT_MAX_CHUNKS} windows "
                "the rest is not read.")
    return f"- Texts are cut at {meta.max_length} tokens; what comes later is not read."


def model_card(name: str, meta: ExportMeta, attempt: Attempt, report: QuantizeReport | None,
               metrics: dict[str, Any], history: list[dict[str, Any]] | None = None, *,
               calibration: dict[str, Any] | None = None, runs_alone: bool = False) -> str:
    """The README.md of a package: intended use, data, labels, metrics, quantization, calibration, limitations."""
    from importlib import metadata

    try:
        version = metadata.version("edgedistill")
    except metadata.PackageNotFoundError:
        version = "unknown"
    labels = meta.labels
    data = (report.config.get("data") or {}) if report else {}
    lines = [f"# {name}", "",
             f"A {len(labels)}-{'label multi-label' if meta.task == 'multi_label' else 'class'} text classifier "
             f"({meta.model_type}, variant **{attempt.variant}**) built by "
             f"edgedistill {version}. It runs on onnxruntime and tokenizers alone (no torch).", "",
             "## Intended use", "",
             f"Sorting short English texts into {', '.join(f'`{lab}`' for lab in labels)}, in the domain of the "
             f"data it was trained on{' (' + report.dataset + ')' if report else ''}.", "",
             "```python", "from edgedistill import TextClassifier", "",
             f'clf = TextClassifier.load("{name}")   # the folder or its .zip; every file\'s sha256 is checked',
             'clf.predict("a text to classify")     # {"label": ..., "score": ...}', "```", "",
             "## Data", ""]
    if report:
        lines += [f"- Dataset: `{data.get('source', report.dataset)}`; deterministic stratified splits "
                  f"(seed {data.get('seed')}, test share {data.get('test_size')}).",
                  f"- Metrics below: the validation split, {report.validation_examples} texts, which chose this "
                  "variant; never seen in training or calibration. The build report scores the package on the "
                  "test split, which no choice reads."]
    else:
        lines += ["- No quantize report: this package was not gated or evaluated by edgedistill."]
    lines += [f"- Labels, in output order: {', '.join(f'`{lab}`' for lab in labels)}.",
              f"- Inputs: {', '.join(meta.input_names)}; {_long_text_reading(meta)}.", "", "## Metrics", ""]
    if report:
        ref = report.attempt("fp32")
        lines += ["Measured through the runtime (`TextClassifier`), the same protocol for every variant.", "",
                  "| model | macro-F1 | accuracy | agreement with fp32 | size (MB) | batch-1 p50 (ms) |",
                  "|---|---|---|---|---|---|"]
        for a in ([ref] if attempt.name == "fp32" else [attempt, ref]):
            lines.append(f"| {a.name}{' (this package)' if a is attempt else ''} | {a.macro_f1:.4f} | "
                         f"{a.accuracy:.4f} | {a.agreement:.4f} | {a.size_bytes / 1e6:.1f} | {a.latency_p50_ms:.2f} |")
        lines += ["", f"Latency: {report.environment.get('cpu')}, {report.environment.get('threads') or 'default'} "
                  "threads, texts of the validation split one at a time; measure on your own hardware."]
    else:
        lines.append("Not measured by edgedistill.")
    if (checkpoint := metrics.get("checkpoint")) and isinstance(checkpoint, dict):
        shown = {k: v for k, v in checkpoint.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and ("f1" in k or "acc" in k)}
        if shown:
            lines += ["", "Source checkpoint (torch): " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()) + "."]
    lines += ["", "## Quantization", ""]
    if attempt.variant in ("fp32", "optimized"):
        lines.append(f"None: fp32 weights ({attempt.variant})."
                     + (" " + report.summary() if report and report.nothing_passed else ""))
    else:
        s = attempt.settings
        lines += [f"{attempt.variant}: weights {s.get('weight_type')}, per-channel {s.get('per_channel')}, "
                  f"reduced range {s.get('reduce_range')}, embeddings quantised {s.get('embeddings')}"
                  + (f", calibration {s.get('calibration')} on {s.get('calibration_samples')} training texts"
                     if attempt.variant == "int8-static" else "")
                  + (f"; kept in fp32: {len(s['exclude'])} nodes" if s.get("exclude") else "") + ".",
                  f"Preset: {report.preset_text()}; gated and timed on a CPU with int8 instruction set "
                  f"{report.isa or 'unknown'}. Accuracy gate: at most {report.budget:g} macro-F1 points "
                  f"below fp32; {sum(a.passed for a in report.attempts)} of {len(report.attempts)} attempts passed "
                  "(see the quantize report)."]
    lines += ["", "## Calibration", "", *_calibration_lines(calibration, labels, attempt)]
    lines += ["", "## Limitations", "", *_limitations(meta, attempt, calibration, runs_alone)]
    if history:
        lines += ["", "## Version history", "", "| version | how | data | new labels | parent manifest sha256 |",
                  "|---|---|---|---|---|"]
        lines += [f"| v{h['version']} | {h.get('method')} | {h.get('data')} "
                  f"| {', '.join(h.get('new_labels') or []) or '–'}"
                  f" | {(h.get('parent_sha256') or '–')[:16]} |" for h in history]
    return "\n".join(lines) + "\n"
