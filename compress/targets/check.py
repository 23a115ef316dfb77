"""Run a variant on each target's kernels, compare it with the fp32 reference, fall back, decide what ships.

The reference is the fp32 ``model.onnx`` on the build machine. A target passes when

- **labels**: of the texts the variant labels as fp32 does on the build machine (the answers the accuracy gate
  accepted), it labels at least ``min_agreement`` so on the target too; for an fp32 variant, or one the build
  machine cannot run (fp16), that is its plain agreement with fp32;
- **probabilities**: its largest ``|p - p_fp32|`` over the texts is at most the build machine's own (0 for fp32
  variants) plus ``prob_tolerance``.

int8 is never compared bit for bit with x86 int8 (x86 without VNNI saturates some products that ARM and
WASM do not): both are held against fp32. A target whose tools cannot be set up here is "not checked", never
passed. Each target's runner is one entry of :data:`RUNNERS` (a seam the tests replace); the build machine's
own target runs in this process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress.targets.config import TargetsConfig, build_machine

log = logging.getLogger(__name__)

REFERENCE = "fp32"
WORK_PREFIX = ".targets.tmp-"


class TargetUnavailable(Exception):
    """This target's kernels cannot be run on this machine (no GPU, no QEMU, no Chromium): not checked."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


Outcome = dict[str, list[np.ndarray] | str]
"""What a runner gives: sub-target (``arm64/neoverse-n1``) -> one probability array per package (in the
packages' label order), or the reason it failed there (the model did not load or run)."""
Runner = Callable[[str, list[Path], list[str], TargetsConfig, Path], Outcome]


# --------------------------------------------------------------------------- the runners

def run_x86(target: str, packages: list[Path], texts: list[str], cfg: TargetsConfig, work: Path) -> Outcome:
    """x86 is checked natively only (the build machine's own target never gets here)."""
    raise TargetUnavailable(f"x86 is checked on an x86 machine only; this one is {build_machine()}")


def run_arm64(target: str, packages: list[Path], texts: list[str], cfg: TargetsConfig, work: Path) -> Outcome:
    """Under QEMU user mode, once per CPU model of ``cfg.arm64_cpus``, side by side."""
    from edgedistill.compress.targets import arm64

    try:
        env = arm64.setup()
    except arm64.EmulatorUnavailable as e:
        raise TargetUnavailable(f"no emulated aarch64 here: {e}") from None
    stage = arm64.stage_runtime(Path(tempfile.mkdtemp(prefix="arm64-", dir=work)))
    texts_file = stage / "texts.json"
    texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    outcome: Outcome = {}
    for cpu, result in arm64.run_emulated(stage, texts_file, packages, list(cfg.arm64_cpus), env).items():
        if isinstance(result, subprocess.TimeoutExpired):
            raise TargetUnavailable(f"QEMU_CPU={cpu} ran past {result.timeout:.0f} s")
        outcome[f"arm64/{cpu}"] = str(result) if isinstance(result, Exception) else \
            [np.asarray(result["results"][str(p)]["probs"], dtype=np.float64) for p in packages]
    return outcome


def run_wasm(target: str, packages: list[Path], texts: list[str], cfg: TargetsConfig, work: Path) -> Outcome:
    """In headless Chromium through the web export (transformers.js, onnxruntime-web WASM)."""
    from edgedistill.compress.targets import wasm

    try:
        return {"wasm/chromium": wasm.classify(packages, texts, work)}
    except wasm.BrowserUnavailable as e:
        raise TargetUnavailable(f"no headless Chromium here: {e}") from None
    except (wasm.PageError, subprocess.TimeoutExpired) as e:
        return {"wasm/chromium": str(e)}


def run_cuda(target: str, packages: list[Path], texts: list[str], cfg: TargetsConfig, work: Path) -> Outcome:
    """On onnxruntime's CUDA provider, in this process."""
    import onnxruntime as ort

    from edgedistill.runtime.classifier import TextClassifier
    from edgedistill.runtime.errors import ProviderUnavailableError

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise TargetUnavailable("onnxruntime here has no CUDAExecutionProvider (a machine with an NVIDIA GPU and "
                                "the onnxruntime-gpu wheel checks it)")
    probs = []
    for p in packages:
        try:
            clf = TextClassifier.load(p, providers=["CUDAExecutionProvider"])
        except ProviderUnavailableError as e:
            raise TargetUnavailable(str(e)) from None
        probs.append(np.asarray(clf.predict_proba(texts), dtype=np.float64))
    return {"cuda": probs}


RUNNERS: dict[str, Runner] = {"x86": run_x86, "arm64": run_arm64, "wasm": run_wasm, "cuda": run_cuda}
"""How each target is run when it is not the build machine's own."""


# --------------------------------------------------------------------------- comparing

@dataclass
class TargetRow:
    """One variant checked on one target (an arm64 target gives one row per CPU model)."""

    target: str
    """x86, arm64/cortex-a72, arm64/neoverse-n1, arm64/neoverse-v1, wasm/chromium, cuda."""
    platform: str
    attempt: str
    """The quantize attempt (or package file) checked."""
    variant: str
    n: int = 0
    agreement: float | None = None
    """The labels rule: of the texts the variant labels as fp32 on the build machine, the share labelled so here."""
    agreement_all: float | None = None
    """Plain agreement with fp32's labels over every text."""
    max_abs_diff: float | None = None
    """Largest |p - p_fp32| over the texts."""
    allowed_max_abs_diff: float | None = None
    """The build machine's own largest |p - p_fp32| for this variant plus the tolerance."""
    status: str = "pending"
    """passed, failed or not checked."""
    reason: str = ""
    fell_back_to: str | None = None
    """After a failure: the attempt checked next on this target."""
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        if self.status == "failed":
            return "failed: " + self.reason + (f" → fell back to {self.fell_back_to}" if self.fell_back_to else "")
        if self.status == "not checked":
            return f"not checked: {self.reason}"
        return self.status + (f" ({self.reason})" if self.reason else "")


def compare(row: TargetRow, probs: np.ndarray, reference: np.ndarray, baseline: np.ndarray | None,
            cfg: TargetsConfig, multi_label: bool = False) -> TargetRow:
    """Fill ``row`` from a target's probabilities against the fp32 reference; ``baseline``: the same variant on
    the build machine (None: it cannot run there, then fp32 itself is the baseline). ``multi_label``: a text's
    answer is its row of labels decided at 0.5, the same only when every label is."""
    base = reference if baseline is None else baseline
    row.n = len(reference)
    if probs.shape != reference.shape:
        row.status, row.reason = "failed", f"gave probabilities of shape {probs.shape}, fp32 {reference.shape}"
        return row

    def answer(p: np.ndarray) -> np.ndarray:
        return p >= 0.5 if multi_label else p.argmax(1)

    def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a == b).all(1) if multi_label else a == b

    ref_labels, labels = answer(reference), answer(probs)
    accepted = same(answer(base), ref_labels)
    row.agreement = float(same(labels[accepted], ref_labels[accepted]).mean()) if accepted.any() else 1.0
    row.agreement_all = float(same(labels, ref_labels).mean())
    row.max_abs_diff = float(np.abs(probs - reference).max())
    base_diff = float(np.abs(base - reference).max())
    row.allowed_max_abs_diff = base_diff + cfg.prob_tolerance
    problems = []
    if row.agreement < cfg.min_agreement - 1e-12:
        changed = int((~same(labels[accepted], ref_labels[accepted])).sum())
        problems.append(f"{changed} of {int(accepted.sum())} labels differ from fp32's "
                        f"(agreement {row.agreement:.2%} < {cfg.min_agreement:.2%})")
    if row.max_abs_diff > row.allowed_max_abs_diff + 1e-12:
        problems.append(f"max |Δp| {row.max_abs_diff:.3g} > {row.allowed_max_abs_diff:.3g} (build machine "
                        f"{base_diff:.3g} + tolerance {cfg.prob_tolerance:g})")
    row.status, row.reason = ("failed", "; ".join(problems)) if problems else ("passed", "")
    return row


# --------------------------------------------------------------------------- one model on one target

@dataclass
class Candidate:
    """A model to check: a package whose file for the target is the model (a one-file package made from a
    quantize attempt, or the shipped package itself)."""

    attempt: str
    variant: str
    package: Path
    file: str | None = None
    """The attempt's file in the ONNX folder (None: checking a package)."""


class Checker:
    """Runs candidates on targets against one fp32 reference over one set of texts."""

    def __init__(self, cfg: TargetsConfig, texts: list[str], reference: Path, work: Path,
                 runners: dict[str, Runner] | None = None):
        self.cfg, self.texts, self.work = cfg, texts, work
        self.runners = runners or RUNNERS
        self.machine = build_machine()
        self._host: dict[tuple[Path, str], np.ndarray] = {}
        self._task: dict[tuple[Path, str], str] = {}
        self.reference = self.host(reference, self.machine)
        self.multi_label = self._task[(reference, self.machine)] == "multi_label"

    def host(self, package: Path, target: str) -> np.ndarray:
        """A package's file for ``target`` on the build machine's CPU, through the runtime's normal path."""
        from edgedistill.runtime.classifier import TextClassifier

        key = (package, target)
        if key not in self._host:
            clf = TextClassifier.load(package, target=target)
            self._task[key] = clf.config.task
            self._host[key] = np.asarray(clf.predict_proba(self.texts), dtype=np.float64)
        return self._host[key]

    def baseline(self, cand: Candidate, platform: str) -> np.ndarray | None:
        """The candidate as the build machine runs it: the answers the gate judged (fp16 is not run on a CPU)."""
        return None if cand.variant == "fp16" else self.host(cand.package, platform)

    def run(self, platform: str, cand: Candidate) -> list[TargetRow]:
        """The candidate's rows on ``platform``; raises :class:`TargetUnavailable` when it cannot run here."""
        started = time.perf_counter()
        if platform == self.machine:
            outcome: Outcome = {platform: [self.host(cand.package, platform)]}
        else:
            log.info("checking %s on %s (%d texts)", cand.attempt, platform, len(self.texts))
            outcome = self.runners[platform](platform, [cand.package], self.texts, self.cfg, self.work)
        baseline = self.baseline(cand, platform)
        rows = []
        for target, result in outcome.items():
            row = TargetRow(target, platform, cand.attempt, cand.variant, n=len(self.texts))
            if isinstance(result, str):
                row.status, row.reason = "failed", result
            else:
                compare(row, result[0], self.reference, baseline, self.cfg, self.multi_label)
            row.seconds = round(time.perf_counter() - started, 1)
            if platform == self.machine:
                row.reason = row.reason or "build machine"
            (log.info if row.status == "passed" else log.warning)("%s on %s: %s", cand.attempt, target, row.verdict)
            rows.append(row)
        return rows


# --------------------------------------------------------------------------- packages to run

def slug(name: str) -> str:
    """An attempt name as a file-name part: ``int8-static +fp32 head`` -> ``int8-static-fp32-head``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def one_file_package(onnx_dir: Path, meta: Any, file: str, variant: str, dest: Path) -> Path:
    """A package around one graph of the ONNX folder (linked, not copied, where the file system allows)."""
    from edgedistill.compress.exportmeta import MODEL_FILE, TOKENIZER_FILE, runtime_config
    from edgedistill.runtime.package import write_manifest

    dest.mkdir(parents=True)
    try:
        os.link(onnx_dir / file, dest / MODEL_FILE)
    except OSError:
        shutil.copyfile(onnx_dir / file, dest / MODEL_FILE)
    shutil.copyfile(onnx_dir / TOKENIZER_FILE, dest / TOKENIZER_FILE)
    (dest / "config.json").write_text(json.dumps(runtime_config(meta, variant), indent=2) + "\n")
    write_manifest(dest, opset=meta.opset)
    return dest


@dataclass
class Shipped:
    """What one target gets: the attempt, its file in the ONNX folder, and whether it was checked."""

    attempt: str
    variant: str
    file: str
    status: str
    """passed, fell back (an earlier attempt failed here), unverified (could not be checked; allowed)."""
    sha256: str = ""
    """Of the file in the ONNX folder, so a package is never made from a later quantize run's file."""

    @property
    def verified(self) -> bool:
        return self.status != "unverified"


@dataclass
class TargetsReport:
    """Every check of one run, and (for a build) what each target ships."""

    platforms: list[str]
    build_machine: str
    reference: str
    dataset: str
    texts: int
    config: dict[str, Any]
    rows: list[TargetRow] = field(default_factory=list)
    ship: dict[str, Shipped] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    """Targets that could not be checked and are not in ``allow_unverified``: target -> why not."""
    failed: dict[str, str] = field(default_factory=dict)
    """Targets on which no candidate passed: target -> the last reason."""
    package: str | None = None
    """The package checked (``edgedistill targets PACKAGE``), with its manifest's sha256."""
    package_manifest_sha256: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = asdict(self)
        for row, r in zip(d["rows"], self.rows):
            row["verdict"] = r.verdict
        for t, s in self.ship.items():
            d["ship"][t]["verified"] = s.verified
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetsReport:
        d = dict(d)
        d["rows"] = [TargetRow(**{k: v for k, v in r.items() if k != "verdict"}) for r in d.get("rows", [])]
        d["ship"] = {t: Shipped(**{k: v for k, v in s.items() if k != "verified"})
                     for t, s in d.get("ship", {}).items()}
        return cls(**d)

    @classmethod
    def load(cls, path: Path | str) -> TargetsReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, json_path: Path, md_path: Path | None = None) -> Path:
        """Write the JSON (whole, through a temporary file) and, when asked, the Markdown."""
        if md_path is not None:
            md_path.write_text(self.to_markdown())
        from edgedistill.runtime.fsutil import write_text_atomic

        return write_text_atomic(json_path, json.dumps(self.to_dict(), indent=2) + "\n")

    def table_lines(self) -> list[str]:
        """The per-target table (Markdown), one row per target and variant checked."""
        def pct(v: float | None) -> str:
            return "–" if v is None else f"{v:.2%}"

        lines = ["| target | variant checked | n texts | label agreement | all texts vs fp32 | max \\|Δp\\| "
                 "(allowed) | verdict |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            diff = "–" if r.max_abs_diff is None else f"{r.max_abs_diff:.3g} ({r.allowed_max_abs_diff:.3g})"
            lines.append(f"| {r.target} | {r.attempt} | {r.n or '–'} | {pct(r.agreement)} | {pct(r.agreement_all)} | "
                         f"{diff} | {r.verdict.replace('|', '/')} |")
        return lines

    def explanation(self) -> str:
        c = self.config
        return (f"Reference: {self.reference}, on {self.texts} {self.dataset} validation texts (a stratified sample). "
                f"Label agreement: of the texts the variant labels as fp32 does on the build machine, the share it "
                f"labels so on the target (at least {c['min_agreement']:.1%}); max |Δp| against fp32 may exceed the "
                f"build machine's own by at most {c['prob_tolerance']:g}. Targets that could not be set up here are "
                "not checked, never passed.")

    def to_markdown(self) -> str:
        lines = [f"# Targets: {', '.join(self.platforms)}", "", self.explanation(), "", *self.table_lines()]
        if self.ship:
            lines += ["", "Ships: " + "; ".join(f"{t}: {s.attempt} ({s.status})" for t, s in self.ship.items()) + "."]
        for what, d in (("Refused (unverified, not allowed)", self.refused), ("Nothing passed", self.failed)):
            if d:
                lines += ["", f"**{what}:** " + "; ".join(f"{t}: {why}" for t, why in d.items())]
        return "\n".join(lines) + "\n"


def _environment() -> dict[str, Any]:
    import platform as _platform

    import onnxruntime

    from edgedistill.runtime.cpu import detect

    isa = detect()
    return {"machine": _platform.machine(), "isa": isa.name, "onnxruntime": onnxruntime.__version__}


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def validation_texts(cfg: TargetsConfig) -> tuple[list[str], str]:
    """The texts every target is checked on: a stratified sample of the validation split (the data seed)."""
    from edgedistill.compress.data import load_data
    from edgedistill.compress.quantize.gate import _stratified_subset

    data = load_data(cfg.data)
    return list(_stratified_subset(data.validation, cfg.max_texts, cfg.data.seed).texts), data.name
