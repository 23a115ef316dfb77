"""``edgedistill targets``: run a package (or a build's variants) on each target's kernels against fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, table


@app.command("targets")
@command
def targets_cmd(
    path: Annotated[Path, typer.Argument(help="A build folder (models/NAME: checks its package), a package folder "
                                              "or .zip, or an ONNX folder (the build's stage: checks the quantize "
                                              "choice, falls back per target, writes targets.json there).")],
    target: Annotated[Optional[list[str]], typer.Option(
        "--target", help="x86, arm64, wasm or cuda (repeatable; default: this machine's).")] = None,
    onnx_dir: Annotated[Optional[Path], typer.Option(
        help="The export whose fp32 model.onnx is the reference (default: the build's onnx/).")] = None,
    cpu: Annotated[Optional[list[str]], typer.Option(
        "--cpu", help="QEMU CPU model for arm64 (repeatable; default cortex-a72, neoverse-n1, neoverse-v1).")] = None,
    max_texts: Annotated[Optional[int], typer.Option(help="Validation texts to check on (a stratified sample).")]
    = None,
    min_agreement: Annotated[Optional[float], typer.Option(help="Share of labels that must stay fp32's.")] = None,
    prob_tolerance: Annotated[Optional[float], typer.Option(
        help="How much further from fp32 than on this machine the probabilities may land.")] = None,
    allow_unverified: Annotated[Optional[list[str]], typer.Option(
        "--allow-unverified", help="ONNX folder: a target that may ship unchecked (repeatable).")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON here.")] = None,
    markdown_out: Annotated[Optional[Path], typer.Option("--markdown", help="Write the table as Markdown here.")]
    = None,
) -> None:
    """Check that a model gives fp32's answers on each target: x86 natively, arm64 under QEMU (three CPU models),
    wasm in headless Chromium, cuda on a GPU. Targets that cannot be set up here are "not checked".

    The texts are a stratified sample of the validation split the build's quantize stage gated on.
    """
    from edgedistill.compress.cli._app import make_config
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.errors import ConfigError, TargetsError
    from edgedistill.compress.layout import TARGETS_REPORT, BuildLayout
    from edgedistill.compress.quantize import REPORT_JSON, QuantizeReport
    from edgedistill.compress.targets import TargetsConfig, TargetsReport, check_package, check_targets
    from edgedistill.compress.targets.stage import write_report_files

    package: Path | None = None
    if (path / "export.json").is_file():  # an ONNX folder: the build's stage
        onnx = path
    else:
        package = BuildLayout(path).package if (path / "package").is_dir() else path
        onnx = onnx_dir or _onnx_of(package, path)
    if not (onnx / REPORT_JSON).is_file():
        raise ConfigError("onnx_dir", str(onnx), "has no quantize report, so neither the reference nor the "
                          "validation split is known; pass --onnx-dir (a folder `edgedistill quantize` wrote)")
    data = DataConfig(**QuantizeReport.load(onnx).config["data"])
    cfg = make_config(TargetsConfig, onnx_dir=str(onnx), data=data, platforms=tuple(target) if target else None,
                      arm64_cpus=tuple(cpu) if cpu else None, max_texts=max_texts, min_agreement=min_agreement,
                      prob_tolerance=prob_tolerance,
                      allow_unverified=tuple(allow_unverified) if allow_unverified else None)
    what = package or onnx
    with console.status(f"checking {what} on {', '.join(cfg.resolved_platforms())} "
                        "(emulated arm64 takes minutes)"):
        try:
            report = check_package(package, onnx, cfg) if package else check_targets(cfg)
        except (ConfigError, TargetsError):  # a refused or failed target: show the table, then the error
            if package is None and (onnx / TARGETS_REPORT).is_file():
                _show(TargetsReport.load(onnx / TARGETS_REPORT), what)
            raise
    _show(report, what)
    write_report_files(report, json_out, markdown_out)
    if any(r.status == "failed" and not r.fell_back_to for r in report.rows):
        raise typer.Exit(1)


def _show(report, what: Path) -> None:  # noqa: ANN001 (a TargetsReport)
    from rich.markup import escape

    rows = [(r.target, r.attempt, r.n or None, _pct(r.agreement), _pct(r.agreement_all),
             None if r.max_abs_diff is None else f"{r.max_abs_diff:.3g} ({r.allowed_max_abs_diff:.3g})",
             _colour(r.status, escape(r.verdict))) for r in report.rows]
    console.print(table(f"{what}: targets ({report.texts} {report.dataset} validation texts, {report.seconds:.0f} s)",
                        ["target", "variant checked", "n", "label agreement", "all vs fp32", "max |Δp| (allowed)",
                         "verdict"], rows))
    console.print(report.explanation(), highlight=False)
    if report.package_manifest_sha256:
        console.print(f"package manifest sha256: {report.package_manifest_sha256}")


def _onnx_of(package: Path, given: Path) -> Path:
    """The ONNX folder beside a build's package, else the one its manifest names. Relative where ``package`` is:
    the report names the ONNX folder (its config, its reference) as the command was given, never a path of this
    machine that the command did not name."""
    import json
    import os

    from edgedistill.compress.layout import BuildLayout

    parent = package.resolve().parent  # resolved: the parent of "." or "pkg/.." is a folder above
    if not package.is_absolute():
        parent = Path(os.path.relpath(parent))
    beside = BuildLayout(parent).onnx
    if beside.is_dir():
        return beside
    manifest = package / "manifest.json"
    if manifest.is_file():
        source = (json.loads(manifest.read_text()).get("source") or {}).get("onnx_dir")
        if source and Path(source).is_dir():
            return Path(source)
    return Path(given) / "onnx"


def _pct(v: float | None) -> str | None:
    return None if v is None else f"{v:.2%}"


def _colour(status: str, text: str) -> str:
    return {"passed": f"[green]{text}[/]", "failed": f"[red]{text}[/]"}.get(status, f"[yellow]{text}[/]")
