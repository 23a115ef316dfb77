"""The accuracy gate and the run it judges: build each variant, measure it through the runtime, fall back, choose."""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress.data import Split
from edgedistill.compress.errors import VariantBuildError
from edgedistill.compress.exportmeta import MODEL_FILE, TOKENIZER_FILE, ExportMeta, read_export, runtime_config
# builders called as variants.<name>: one place to replace them in a test
from edgedistill.compress.quantize import variants
from edgedistill.compress.quantize.config import CALIBRATIONS, VARIANT_FILES, QuantizeConfig
from edgedistill.compress.quantize.graph import QUANT_OPS, layer_groups, op_counts, sensitivity
from edgedistill.compress.quantize.report import REPORT_JSON, Attempt, QuantizeReport
from edgedistill.runtime.bench import environment
from edgedistill.runtime.package import BATCH_DEPENDENT_VARIANTS

log = logging.getLogger(__name__)

WORK_PREFIX = ".quantize.tmp-"  # the folder inside the ONNX folder where a run builds its graphs


def _predict(clf: Any, texts: list[str], batch_size: int) -> np.ndarray:
    """Probabilities through the runtime (a seam the tests use to force a variant outside the budget)."""
    return np.asarray(clf.predict_proba(texts, batch_size=batch_size), dtype=np.float64)


def batch1_latency(clf: Any, texts: list[str]) -> tuple[float, float]:
    """Batch-1 p50 / p90 in ms of an ``edgedistill.runtime.TextClassifier``: each text twice, after a warm-up on
    the first few.
    The protocol of every validation latency a choice reads (the gate's, the ship stage's)."""
    for text in texts[:5]:
        clf.predict_proba([text])
    times = []
    for _ in range(2):
        for text in texts:
            t0 = time.perf_counter()
            clf.predict_proba([text])
            times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 90) * 1e3)


class _Gate:
    """Evaluates variants through the runtime with one protocol and judges them against fp32."""

    def __init__(self, cfg: QuantizeConfig, meta: ExportMeta, onnx_dir: Path, split: Split, labels: list[str],
                 work: Path | None = None):
        """``split`` is the validation split (or a subsample): it decides every verdict and the choice."""
        self.cfg, self.meta, self.onnx_dir, self.split, self.labels = cfg, meta, onnx_dir, split, labels
        self.work = work or onnx_dir  # where this run writes the graphs it builds
        self.reference: Attempt | None = None
        self.reference_pred: np.ndarray | None = None
        self.latency_texts = split.texts[:cfg.latency_samples]
        step = max(1, len(split) // cfg.consistency_samples) if cfg.consistency_samples else 0
        self.consistency = list(range(0, len(split), step))[:cfg.consistency_samples] if step else []

    def path(self, file: str) -> Path:
        """Where an attempt's graph is: the export's own model.onnx, or a variant this run built in its work
        folder."""
        return self.onnx_dir / file if file == MODEL_FILE else self.work / file

    def classifier(self, path: Path, variant: str, providers: Any = None) -> Any:
        from edgedistill.runtime.classifier import TextClassifier

        # run as the package will run it (batch_invariant), so the gate judges what ships
        config = runtime_config(self.meta, variant, batch_invariant=self.cfg.batch_invariant)
        return TextClassifier.from_files(path, self.onnx_dir / TOKENIZER_FILE, config, providers=providers,
                                         threads=self.cfg.threads)

    def measure(self, attempt: Attempt, providers: Any = None) -> Attempt:
        from edgedistill.compress.evaluate import align_columns, validation_metrics

        path = self.path(attempt.file)
        attempt.size_bytes = path.stat().st_size
        clf = self.classifier(path, attempt.variant, providers)
        probs = align_columns(_predict(clf, list(self.split.texts), self.cfg.batch_size), clf.labels, self.labels)
        metrics = validation_metrics(self.split.labels, probs, self.labels)  # multi-label: at fitted thresholds
        attempt.macro_f1, attempt.accuracy = metrics.macro_f1, metrics.accuracy
        pred = self.decide(probs)
        if self.reference is None:
            self.reference, self.reference_pred = attempt, pred
        attempt.agreement = float(_same(pred, self.reference_pred).mean())
        # the same texts, each alone: does an answer depend on its batch-mates? (never, for a classifier that
        # runs_alone: measured all the same, as a check of what ships)
        if self.consistency:
            alone = np.concatenate([align_columns(_predict(clf, [self.split.texts[i]], 1), clf.labels, self.labels)
                                    for i in self.consistency])
            batched = probs[self.consistency]
            attempt.batch_flips = float(1.0 - _same(self.decide(alone), self.decide(batched)).mean())
            attempt.batch_max_diff = float(np.abs(alone - batched).max())
        attempt.latency_p50_ms, attempt.latency_p90_ms = self.latency(clf)
        return attempt

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Each text's answer: its top label, or a multi-label model's 0/1 row at 0.5 (the thresholds are fitted
        after the gate, for the variant it chose)."""
        return (probs >= 0.5) if self.meta.task == "multi_label" else probs.argmax(axis=1)

    def latency(self, clf: Any) -> tuple[float, float]:
        return batch1_latency(clf, self.latency_texts)

    def judge(self, attempt: Attempt) -> Attempt:
        assert self.reference is not None and self.reference.macro_f1 is not None
        drop = 100 * (self.reference.macro_f1 - attempt.macro_f1)
        floor, flips = self.cfg.min_agreement, self.cfg.max_batch_flips
        if drop > self.cfg.budget + 1e-9:
            attempt.status = "rejected"
            attempt.reason = f"{-drop + 0.0:+.2f} points, beyond the budget of -{self.cfg.budget:g}"
        elif flips is not None and attempt.batch_flips is not None and attempt.batch_flips > flips + 1e-12:
            attempt.status = "rejected"
            attempt.reason = (f"{-drop + 0.0:+.2f} points, but {attempt.batch_flips:.2%} of texts change label "
                              f"between batch 1 and batched runs, above the limit of {flips:.2%}")
        elif floor is not None and attempt.agreement < floor - 1e-12:
            attempt.status = "rejected"
            attempt.reason = (f"{-drop + 0.0:+.2f} points, but agrees with fp32 on {attempt.agreement:.2%} of the "
                              f"validation texts, below the floor of {floor:.2%}")
        else:
            attempt.status, attempt.reason = "passed", f"{-drop + 0.0:+.2f} points"
        log.info("%s: macro-F1 %.4f (%+.2f points), agreement %.4f, batch flips %s, %.1f MB, p50 %.2f ms: %s",
                 attempt.name, attempt.macro_f1, -drop, attempt.agreement,
                 "–" if attempt.batch_flips is None else f"{attempt.batch_flips:.2%}", attempt.size_bytes / 1e6,
                 attempt.latency_p50_ms, attempt.status)
        return attempt


# --------------------------------------------------------------------------- the public function

LATENCY_TIE = 0.05
"""Batch-1 p50s within this share of the fastest variant's are a tie: closer than the timing's run-to-run noise."""


def quantize(cfg: QuantizeConfig, data: Any = None) -> QuantizeReport:
    """Build the requested variants of ``cfg.onnx_dir``, gate them, choose the fastest passing one.

    See :mod:`edgedistill.compress.quantize` for the variants, the gate and its fallbacks. ``data``: labelled data
    already loaded (a :class:`~edgedistill.compress.data.LabelledData`; an update gates on its old and new tasks
    together) instead of ``cfg.data``.
    """
    from edgedistill.compress.data import load_data

    onnx_dir = Path(cfg.onnx_dir)
    meta = read_export(onnx_dir)
    data = data if data is not None else load_data(cfg.data)
    split = _stratified_subset(data.validation, cfg.max_validation_samples, cfg.data.seed)
    for old in onnx_dir.glob(f"{WORK_PREFIX}*"):  # left by a run that was killed
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=onnx_dir))
    try:
        report = _quantize(cfg, meta, onnx_dir, work, data, split)
        _publish(work, onnx_dir, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (log.warning if report.nothing_passed else log.info)("%s", report.summary())
    return report


def _publish(work: Path, onnx_dir: Path, report: QuantizeReport) -> None:
    """Move this run's graphs from ``work`` into the ONNX folder, then write the report.

    The old report goes first: from then on until the new one is written the folder holds no report, so a
    half-published run never passes for a finished one. Graphs of the previous run that this one did not
    rebuild (a fallback it no longer needed) are removed, so every graph beside the report is the report's.
    """
    try:
        previous = {a.file for a in QuantizeReport.load(onnx_dir).attempts}
    except (OSError, ValueError, KeyError, TypeError):
        previous = set()
    (onnx_dir / REPORT_JSON).unlink(missing_ok=True)
    built = {p.name for p in work.iterdir()}
    for name in sorted(built):
        os.replace(work / name, onnx_dir / name)
    for name in previous - built - {MODEL_FILE}:
        if "/" not in name and name.endswith(".onnx"):
            (onnx_dir / name).unlink(missing_ok=True)
    report.save(onnx_dir)


def _quantize(cfg: QuantizeConfig, meta: ExportMeta, onnx_dir: Path, work: Path, data: Any,
              split: Split) -> QuantizeReport:
    gate = _Gate(cfg, meta, onnx_dir, split, data.label_names, work)
    run = _Run(cfg, meta, onnx_dir, gate, data.train)

    ref = gate.measure(Attempt("fp32", "fp32", MODEL_FILE, {}))
    ref.status, ref.reason = "passed", "reference"
    run.attempts.append(ref)
    log.info("fp32: macro-F1 %.4f on %d validation texts, %.1f MB, p50 %.2f ms", ref.macro_f1, len(split),
             ref.size_bytes / 1e6, ref.latency_p50_ms)

    wanted = set(cfg.variants)
    if wanted & {"optimized", "int8-dynamic", "fp16"}:
        run.optimized()
    if "int8-dynamic" in wanted:
        run.int8("dynamic")
    if "int8-static" in wanted or (run.rejected("dynamic") and cfg.fallbacks):
        run.int8("static", fallback_for=None if "int8-static" in wanted else "int8-dynamic")
    if "fp16" in wanted:
        run.fp16()
    _check_int8_built(cfg, run.attempts)

    passing = [a for a in run.attempts if a.passed and a.variant != "fp16"]  # fp16 is for GPUs, never shipped on CPU
    chosen, why = choose(passing, cfg.batch_invariant)
    report = QuantizeReport(onnx_dir=str(onnx_dir), config=cfg.to_dict(), dataset=data.name,
                            validation_examples=len(split), budget=cfg.budget, reference_macro_f1=ref.macro_f1,
                            chosen=chosen.name, chosen_variant=chosen.variant, chosen_file=chosen.file, chosen_why=why,
                            fused_ops=run.fused_ops, attempts=run.attempts,
                            environment=environment("cpu", cfg.threads),
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"))
    return report


def choose(passing: list[Attempt], batch_invariant: bool = True) -> tuple[Attempt, str]:
    """The passing variant to ship, and why in words when a tie decided it: the fastest at batch 1, where every
    variant within :data:`LATENCY_TIE` of the fastest p50 counts as as fast (timing noise). Among those, one that runs
    batches whole beats one that must run a text per call (a batch-dependent variant in a batch-invariant package:
    same batch-1 latency, a fraction of the batch throughput), then the smaller file, then the higher validation
    macro-F1, then the lower p50."""
    fastest = min(a.latency_p50_ms for a in passing)
    tied = [a for a in passing if a.latency_p50_ms <= fastest * (1 + LATENCY_TIE)]

    def alone(a: Attempt) -> bool:
        return batch_invariant and a.variant in BATCH_DEPENDENT_VARIANTS

    chosen = min(tied, key=lambda a: (alone(a), a.size_bytes or 0, -(a.macro_f1 or 0.0), a.latency_p50_ms))
    quickest = min(tied, key=lambda a: a.latency_p50_ms)
    if chosen is quickest:
        return chosen, ""
    return chosen, (f"{quickest.name} and {chosen.name} are within {LATENCY_TIE:.0%} at batch 1 "
                    f"({quickest.latency_p50_ms:.3f} and {chosen.latency_p50_ms:.3f} ms); {chosen.name} ships, "
                    + ("as it runs batches whole where " + quickest.name + " runs one text per call"
                       if alone(quickest) and not alone(chosen) else "being smaller or more accurate"))


def _check_int8_built(cfg: QuantizeConfig, attempts: list[Attempt]) -> None:
    """Fail when int8 was asked for and every int8 attempt errored: fp32 would ship for want of a graph, not on the
    gate's verdict. ``allow_fp32`` lets it ship (the errors stay in the report)."""
    if not any(v.startswith("int8") for v in cfg.variants):
        return
    int8 = [a for a in attempts if a.variant.startswith("int8")]
    if not int8 or any(a.status != "error" for a in int8):
        return
    errors = {a.name: a.reason for a in int8}
    if not cfg.allow_fp32:
        raise VariantBuildError(errors)
    log.warning("no int8 variant could be built or run; fp32 ships (quantize.allow_fp32): %s",
                "; ".join(f"{k}: {v}" for k, v in errors.items()))


class _Run:
    """The state of one quantize() call: attempts so far, cached graphs and calibration batches."""

    def __init__(self, cfg: QuantizeConfig, meta: ExportMeta, onnx_dir: Path, gate: _Gate, train: Split):
        self.cfg, self.meta, self.onnx_dir, self.gate, self.train = cfg, meta, onnx_dir, gate, train
        self.attempts: list[Attempt] = []
        self.fused_ops: dict[str, int] = {}
        self._optimized: Path | None = None
        self._preprocessed: Path | None = None
        self._feeds: list[dict[str, np.ndarray]] | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="edgedistill-quantize-")

    # ---- shared inputs
    def feeds(self) -> list[dict[str, np.ndarray]]:
        """Calibration batches: ``calibration_samples`` training texts in batches of 8, tokenised by the runtime."""
        if self._feeds is None:
            rng = random.Random(self.cfg.data.seed)
            idx = rng.sample(range(len(self.train)), min(self.cfg.calibration_samples, len(self.train)))
            texts = [self.train.texts[i] for i in idx]
            clf = self.gate.classifier(self.onnx_dir / MODEL_FILE, "fp32")
            feeds = [clf.tokenize(texts[i:i + 8]) for i in range(0, len(texts), 8)]
            # one sequence length for all batches: the histogram calibrators (entropy, percentile) stack them
            length = max(f["input_ids"].shape[1] for f in feeds)
            pad = {"input_ids": self.meta.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
            self._feeds = [{k: np.pad(v, ((0, 0), (0, length - v.shape[1])), constant_values=pad[k])
                            for k, v in f.items()} for f in feeds]
        return self._feeds

    def preprocessed(self) -> Path:
        """The fp32 graph after onnxruntime's quantisation pre-processing (shape inference, basic folding)."""
        if self._preprocessed is None:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            path = Path(self._tmp.name) / "model_preprocessed.onnx"
            # the unfused graph holds standard ops only: ONNX shape inference suffices (the symbolic one
            # gives up on the exported dynamic-shape subgraphs)
            quant_pre_process(str(self.onnx_dir / MODEL_FILE), str(path), skip_symbolic_shape=True)
            self._preprocessed = path
        return self._preprocessed

    def rejected(self, kind: str) -> bool:
        tried = [a for a in self.attempts if a.variant == f"int8-{kind}"]
        return bool(tried) and not any(a.passed for a in tried)

    def _try(self, attempt: Attempt, build: Any, providers: Any = None, gate: bool = True) -> Attempt:
        self.attempts.append(attempt)
        try:
            build()
            attempt.ops = op_counts(self.gate.path(attempt.file), QUANT_OPS)
            if not gate:
                attempt.size_bytes = self.gate.path(attempt.file).stat().st_size
                return attempt
            self.gate.measure(attempt, providers)
        except Exception as e:  # a variant that cannot be built or run is recorded, never shipped
            attempt.status, attempt.reason = "error", f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
            log.warning("%s could not be built or run: %s", attempt.name, attempt.reason)
            return attempt
        return self.gate.judge(attempt)

    # ---- variants
    def optimized(self) -> None:
        dest = self.gate.work / VARIANT_FILES["optimized"]

        def build() -> None:
            self.fused_ops = variants.optimize(self.onnx_dir / MODEL_FILE, dest, self.meta)
            log.info("fused operators: %s", self.fused_ops)

        a = self._try(Attempt("optimized", "optimized", dest.name, {"optimizer": "onnxruntime.transformers",
                                                                   "model_type": "bert"}), build)
        if a.status != "error":
            self._optimized = dest

    def _settings(self, kind: str) -> dict[str, Any]:
        c = self.cfg
        s = {"per_channel": c.per_channel, "reduce_range": c.reduce_range, "weight_type": c.weight_type,
             "embeddings": c.quantize_embeddings, "exclude": []}
        if kind == "static":
            s.update(activation_type=c.activation_type, symmetric_activations=c.symmetric_activations,
                     calibration=c.calibration, calibration_samples=c.calibration_samples, format="QDQ")
        else:
            s.update(activation_type="quint8", source="optimized" if self._optimized else "fp32")
        return s

    def int8(self, kind: str, fallback_for: str | None = None) -> None:
        variant = f"int8-{kind}"
        src = (self._optimized or self.onnx_dir / MODEL_FILE) if kind == "dynamic" else None
        settings = self._settings(kind)
        base = self._build_int8(variant, variant, VARIANT_FILES[variant], settings, src, fallback_for)
        if base.status == "error" and kind == "dynamic" and src != self.onnx_dir / MODEL_FILE:
            # the fused graph defeated the quantiser: quantise the plain graph instead
            src, settings = self.onnx_dir / MODEL_FILE, dict(settings, source="fp32")
            base = self._build_int8(f"{variant} (unfused)", variant,
                                    VARIANT_FILES[variant].replace(".onnx", "_unfused.onnx"), settings, src, variant)
        if base.passed or not self.cfg.fallbacks or base.status == "error":
            return
        for step, (label, step_settings) in enumerate(self._fallbacks(kind, settings, src), start=1):
            attempt = self._build_int8(f"{variant} +{label}", variant,
                                       VARIANT_FILES[variant].replace(".onnx", f"_fb{step}.onnx"), step_settings, src,
                                       variant)
            if attempt.passed:
                return

    def _build_int8(self, name: str, variant: str, file: str, settings: dict[str, Any], src: Path | None,
                    fallback_for: str | None) -> Attempt:
        dest = self.gate.work / file
        if variant == "int8-dynamic":
            def build() -> None:
                variants.quantize_dynamic_variant(src, dest, settings)
        else:
            def build() -> None:
                variants.quantize_static_variant(self.preprocessed(), dest, settings, self.feeds(), self.cfg.percentile)
        return self._try(Attempt(name, variant, file, {k: v for k, v in settings.items()}, fallback_for), build)

    def _fallbacks(self, kind: str, base: dict[str, Any], src: Path | None):
        """Fallback settings in order, each keeping the previous ones: (label, settings)."""
        import onnx

        s = dict(base, exclude=list(base["exclude"]))
        if not s["per_channel"]:
            s = dict(s, per_channel=True)
            yield "per-channel", s
        if not s["reduce_range"]:
            s = dict(s, reduce_range=True)
            yield "reduce-range", s
        if kind == "static":
            for method in CALIBRATIONS:
                if method != s["calibration"]:
                    yield f"{method} calibration", dict(s, calibration=method)
        graph_path = src if kind == "dynamic" else self.preprocessed()
        # what the quantiser would touch
        ops = variants.DYNAMIC_WEIGHT_OPS if kind == "dynamic" else variants.STATIC_WEIGHT_OPS
        model = onnx.load(str(graph_path), load_external_data=False)
        groups = {k: [variants.quantizer_name(model, n, kind) for n in names]
                  for k, names in layer_groups(model, ops).items()}
        if groups["head"]:
            s = dict(s, exclude=s["exclude"] + groups["head"])
            yield "fp32 head", s
        first_last = [n for n in groups["first"] + groups["last"] if n not in s["exclude"]]
        if first_last:
            s = dict(s, exclude=s["exclude"] + first_last)
            yield "fp32 first+last layers", s
        ranked = sensitivity(graph_path, self.feeds()[:2], per_channel=s["per_channel"],
                             reduce_range=s["reduce_range"], weight_type=s["weight_type"], ops=ops)
        ranked = [(variants.quantizer_name(model, name, kind), err) for name, err in ranked]
        ranked = [(name, err) for name, err in ranked if name not in s["exclude"]]
        if ranked:
            top = [name for name, _ in ranked[:self.cfg.sensitive_nodes]]
            log.info("most sensitive weight nodes: %s", ", ".join(f"{n} ({e:.3g})" for n, e in
                                                                ranked[:self.cfg.sensitive_nodes]))
            s = dict(s, exclude=s["exclude"] + top, sensitive=top)
            yield f"fp32 {len(top)} most sensitive", s
        if s["embeddings"]:  # last: the embedding table is about half of a small model's weights
            yield "fp32 embeddings", dict(s, embeddings=False)

    def fp16(self) -> None:
        import onnxruntime as ort

        if self._optimized is None:
            self.attempts.append(Attempt("fp16", "fp16", VARIANT_FILES["fp16"], {}, status="error",
                                         reason="needs the optimised graph, which could not be built"))
            return
        dest = self.gate.work / VARIANT_FILES["fp16"]
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        a = self._try(Attempt("fp16", "fp16", dest.name, {"keep_io_types": True, "source": "optimized"}),
                      lambda: variants.to_fp16(self._optimized, dest),
                      providers=["CUDAExecutionProvider"] if cuda else None, gate=cuda)
        if not cuda and a.status != "error":
            a.status, a.reason = "not-gated", "built for GPUs; no CUDA provider here, so never shipped on CPU"
        elif a.passed:
            a.reason += " (on CUDA; the CPU choice ignores it)"


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per text: the same answer (the same label, or every label of a multi-label row decided alike)."""
    eq = a == b
    return eq.all(axis=1) if eq.ndim == 2 else eq


def _stratified_subset(split: Split, n: int | None, seed: int) -> Split:
    """At most ``n`` examples of ``split``, the same share of each label, chosen from ``seed``."""
    if n is None or n >= len(split):
        return split
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, lab in enumerate(split.labels):
        by_label.setdefault(lab, []).append(i)
    keep = sorted(i for idx in by_label.values() for i in rng.sample(idx, max(1, round(n * len(idx) / len(split)))))
    return Split([split.texts[i] for i in keep], [split.labels[i] for i in keep])
