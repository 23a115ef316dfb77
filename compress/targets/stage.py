"""The targets stage (:func:`check_targets`), the check of a finished package (:func:`check_package`), and what
the package stage ships per target (:func:`shipping_plan`)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.compress.errors import ConfigError, TargetsError
from edgedistill.compress.layout import TARGETS_REPORT, TARGETS_REPORT_MD
from edgedistill.compress.targets.check import (REFERENCE, WORK_PREFIX, Candidate, Checker, Runner, Shipped, TargetRow,
                                    TargetsReport, TargetUnavailable, _environment, _now, one_file_package, slug,
                                    validation_texts)
from edgedistill.compress.targets.config import TargetsConfig, build_machine

log = logging.getLogger(__name__)


def candidates(report: Any, platform: str) -> list[Any]:
    """The quantize attempts a target may ship, in order: for CPUs and WASM every attempt that passed the
    accuracy gate, fastest first (the gate's choice), fp32 last; for cuda fp16 (built for GPUs, never gated on a
    CPU), then fp32."""
    fp32 = report.attempt(REFERENCE)
    if platform == "cuda":
        fp16 = [a for a in report.attempts if a.variant == "fp16" and a.status in ("passed", "not-gated")]
        return [*fp16, fp32]
    passing = [a for a in report.attempts if a.passed and a.variant != "fp16" and a.name != REFERENCE]
    chosen = [a for a in passing if a.name == report.chosen]
    rest = sorted((a for a in passing if a.name != report.chosen), key=lambda a: a.latency_p50_ms or float("inf"))
    return [*chosen, *rest, fp32]


def check_targets(cfg: TargetsConfig, runners: dict[str, Runner] | None = None) -> TargetsReport:
    """Check the quantize stage's choice on every declared target, falling back per target; write
    ``targets.json`` and ``targets.md`` into the ONNX folder. Raises (after writing them)
    :class:`~edgedistill.compress.errors.ConfigError` naming ``targets.allow_unverified`` when a target could not be
    checked and may not ship unverified, and :class:`~edgedistill.compress.errors.TargetsError` when nothing passed on a
    target."""
    from edgedistill.compress.exportmeta import read_export
    from edgedistill.compress.quantize import QuantizeReport
    from edgedistill.runtime.package import sha256_file

    started = time.perf_counter()
    onnx_dir = Path(cfg.onnx_dir)
    meta, qreport = read_export(onnx_dir), QuantizeReport.load(onnx_dir)
    texts, dataset = validation_texts(cfg)
    platforms = list(cfg.resolved_platforms())
    for old in onnx_dir.glob(f"{WORK_PREFIX}*"):  # left by a run that was killed
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=onnx_dir))  # beside the graphs: links, not copies
    packages: dict[str, Path] = {}

    def package(a: Any) -> Path:
        if a.name not in packages:
            packages[a.name] = one_file_package(onnx_dir, meta, a.file, a.variant, work / f"pkg-{slug(a.name)}")
        return packages[a.name]

    try:
        checker = Checker(cfg, texts, package(qreport.attempt(REFERENCE)), work, runners)
        report = TargetsReport(platforms=platforms, build_machine=checker.machine,
                               reference=f"fp32 {qreport.attempt(REFERENCE).file} on the build machine "
                                         f"({checker.machine})", dataset=dataset, texts=len(texts),
                               config=cfg.to_dict(), environment=_environment(), created=_now())
        for platform in platforms:
            _decide(report, checker, platform, [Candidate(a.name, a.variant, package(a), a.file)
                                                for a in candidates(qreport, platform)], cfg)
        for s in report.ship.values():
            s.sha256 = sha256_file(onnx_dir / s.file)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.seconds = round(time.perf_counter() - started, 1)
    report.save(onnx_dir / TARGETS_REPORT, onnx_dir / TARGETS_REPORT_MD)
    raise_for(report, cfg)
    log.info("targets: %s", "; ".join(f"{t} ships {s.attempt} ({s.status})" for t, s in report.ship.items()))
    return report


def _decide(report: TargetsReport, checker: Checker, platform: str, cands: list[Candidate],
            cfg: TargetsConfig) -> None:
    """Check ``cands`` on ``platform`` in order until one passes everywhere there; record what ships."""
    failed: list[TargetRow] = []
    for i, cand in enumerate(cands):
        try:
            rows = checker.run(platform, cand)
        except TargetUnavailable as e:
            report.rows.append(TargetRow(platform, platform, cand.attempt, cand.variant, status="not checked",
                                         reason=e.reason))
            log.warning("%s: not checked: %s", platform, e.reason)
            if platform in cfg.allow_unverified:
                report.ship[platform] = Shipped(cand.attempt, cand.variant, cand.file or "", "unverified")
            else:
                report.refused[platform] = e.reason
            break
        for row in failed:
            row.fell_back_to = cand.attempt
        report.rows += rows
        if all(r.status == "passed" for r in rows):
            report.ship[platform] = Shipped(cand.attempt, cand.variant, cand.file or "",
                                            "passed" if i == 0 else "fell back")
            break
        failed = [r for r in rows if r.status != "passed"]
    else:
        report.failed[platform] = "; ".join(f"{r.target}: {r.reason}" for r in failed) or "no candidate"


def raise_for(report: TargetsReport, cfg: TargetsConfig) -> None:
    """Refuse to go on with a target that may not ship (see :func:`check_targets`)."""
    if report.refused:
        t, why = next(iter(report.refused.items()))
        raise ConfigError("targets.allow_unverified", list(cfg.allow_unverified),
                          f"{t} could not be checked here ({why}); a build never ships a target it did not check "
                          f"unless the recipe allows it: add \"{t}\" to targets.allow_unverified (its manifest entry "
                          "then says unverified), or build where it can be checked")
    if report.failed:
        t, why = next(iter(report.failed.items()))
        raise TargetsError(f"no variant, not even fp32, gives fp32's answers on {t}: {why}. Its kernels or tools "
                           f"disagree with the build machine; see {TARGETS_REPORT_MD}, or drop {t} from "
                           "targets.platforms")


# --------------------------------------------------------------------------- what the package ships

@dataclass
class ShippingPlan:
    """The package's model files: ``model.onnx`` from ``default`` (the build machine's target's attempt, else the
    first declared one's), another file for each attempt some other target ships, and the manifest's table."""

    default: str
    """The attempt model.onnx holds."""
    extra_files: dict[str, str]
    """Package file name -> source file in the ONNX folder, for the attempts model.onnx does not hold."""
    targets: dict[str, dict[str, Any]]
    """The manifest's ``targets`` table: target -> file, variant, attempt, verified, status, checks."""


def shipping_plan(onnx_dir: Path) -> ShippingPlan | None:
    """What to ship per target, from the targets report in ``onnx_dir`` (None when there is none: the package
    then ships the quantize choice alone and names no targets). Refuses a report that refused a target or
    whose files changed since (a later quantize run)."""
    from edgedistill.compress.exportmeta import MODEL_FILE
    from edgedistill.runtime.package import sha256_file

    path = onnx_dir / TARGETS_REPORT
    if not path.is_file():
        return None
    report = TargetsReport.load(path)
    if report.refused or report.failed:
        t = next(iter({**report.refused, **report.failed}))
        raise TargetsError(f"{path}: {t} may not ship ({({**report.refused, **report.failed})[t]}); "
                           "see the targets check")
    for t, s in report.ship.items():
        if not (onnx_dir / s.file).is_file() or sha256_file(onnx_dir / s.file) != s.sha256:
            raise TargetsError(f"{path}: {s.file}, checked for {t}, changed since the check; run it again "
                               "(`edgedistill build`, or `edgedistill targets` on the ONNX folder)")
    order = sorted(report.ship, key=lambda t: (t != report.build_machine, t == "cuda", report.platforms.index(t)))
    default = report.ship[order[0]].attempt
    names = {default: MODEL_FILE}
    extra: dict[str, str] = {}
    for t in order:
        s = report.ship[t]
        if s.attempt not in names:
            names[s.attempt] = f"model.{slug(s.attempt)}.onnx"
            extra[names[s.attempt]] = s.file
    table = {t: {"file": names[s.attempt], "variant": s.variant, "attempt": s.attempt, "verified": s.verified,
                 "status": s.status,
                 "checks": [{k: getattr(r, k) for k in ("target", "n", "agreement", "max_abs_diff", "status")}
                            for r in report.rows if r.platform == t and r.attempt == s.attempt]}
             for t, s in report.ship.items()}
    return ShippingPlan(default, extra, table)


# --------------------------------------------------------------------------- a finished package

def check_package(package: Path, onnx_dir: Path, cfg: TargetsConfig,
                  runners: dict[str, Runner] | None = None) -> TargetsReport:
    """Check what a package ships for each target (its own file for each, no fallback) against the fp32 graph of
    ``onnx_dir``; texts as the build's (``cfg.data``). Nothing is written: the caller saves the report."""
    from edgedistill.compress.exportmeta import MODEL_FILE, read_export
    from edgedistill.runtime.package import (KIND_STRINGS, MANIFEST_FILE, open_package, read_config, sha256_file,
                                             target_model, verify_package)

    started = time.perf_counter()
    with open_package(package) as folder:
        if read_config(folder / "config.json").kind == KIND_STRINGS:
            return _strings_package(package, folder, cfg)
    meta = read_export(onnx_dir)
    texts, dataset = validation_texts(cfg)
    platforms = list(cfg.resolved_platforms())
    with tempfile.TemporaryDirectory(prefix="edgedistill-targets-") as tmp, open_package(package) as folder:
        work = Path(tmp)
        manifest = verify_package(folder)
        variant_of_package = read_config(folder / "config.json").variant or "fp32"
        checker = Checker(cfg, texts, one_file_package(onnx_dir, meta, MODEL_FILE, "fp32", work / "fp32"), work,
                          runners)
        report = TargetsReport(platforms=platforms, build_machine=checker.machine,
                               reference=f"fp32 {onnx_dir / MODEL_FILE} on the build machine ({checker.machine})",
                               dataset=dataset, texts=len(texts), config=cfg.to_dict(), environment=_environment(),
                               created=_now(), package=str(package),
                               package_manifest_sha256=sha256_file(folder / MANIFEST_FILE))
        for platform in platforms:
            file, entry = target_model(manifest, platform, package)
            cand = Candidate(file, (entry or {}).get("variant") or variant_of_package, folder)
            try:
                report.rows += checker.run(platform, cand)
            except TargetUnavailable as e:
                report.rows.append(TargetRow(platform, platform, file, cand.variant, status="not checked",
                                             reason=e.reason))
    for r in report.rows:
        r.attempt = f"{r.attempt} ({r.variant})"
    report.seconds = round(time.perf_counter() - started, 1)
    return report


def _strings_package(package: Path, folder: Path, cfg: TargetsConfig) -> TargetsReport:
    """A package whose graph takes raw strings (the TF-IDF baseline) has no fp32 student to compare with: its
    baseline stage checked it against scikit-learn on the build machine. wasm fails: onnxruntime-web has no string
    tensors; the other targets are not checked here."""
    from edgedistill.runtime.package import MANIFEST_FILE, sha256_file, verify_package
    from edgedistill.runtime.webexport import NO_STRING_TENSORS

    parity = (verify_package(folder).get("metrics") or {}).get("parity") or {}
    report = TargetsReport(platforms=list(cfg.resolved_platforms()), build_machine=build_machine(),
                           reference="scikit-learn (the baseline stage's parity check)", dataset="", texts=0,
                           config=cfg.to_dict(), environment=_environment(), created=_now(), package=str(package),
                           package_manifest_sha256=sha256_file(folder / MANIFEST_FILE))
    for platform in report.platforms:
        if platform == "wasm":
            status, reason = "failed", NO_STRING_TENSORS
        else:
            status, reason = "not checked", (f"a raw-strings graph: checked against scikit-learn when built (max "
                                             f"|difference| {parity.get('max_abs_diff', float('nan')):.2g}), not here")
        report.rows.append(TargetRow(platform, platform, "model.onnx", "fp32", status=status, reason=reason))
    return report


def write_report_files(report: TargetsReport, json_path: Path | None, md_path: Path | None) -> None:
    """Save a report where the CLI was told to."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(report.to_markdown())
