"""``edgedistill quantize``: optimised and int8 variants of an ONNX export, each gated on validation macro-F1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, make_config, table


@app.command("quantize")
@command
def quantize_cmd(
    onnx_dir: Annotated[Path, typer.Argument(help="A folder written by `edgedistill export`.")],
    data: Annotated[Optional[str], typer.Option(
        help="Built-in dataset or CSV / JSONL / Parquet file (validation gates, train calibrates).")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="Text column of a file.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of a file.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Split seed (must match the training run's).")] = None,
    preset: Annotated[Optional[str], typer.Option(
        help="Hardware preset: auto (the default: this CPU's), avx2, avx512_vnni or arm64.")] = None,
    variant: Annotated[Optional[list[str]], typer.Option(
        "--variant", help="Variant to build (repeatable): optimized, int8-dynamic, int8-static, fp16.")] = None,
    budget: Annotated[Optional[float], typer.Option(help="Largest macro-F1 drop below fp32, in points.")] = None,
    min_agreement: Annotated[Optional[float], typer.Option(
        help="Also reject a variant agreeing with fp32's labels on less than this share of test texts.")] = None,
    max_batch_flips: Annotated[Optional[float], typer.Option(
        help="Reject a variant whose labels change between batch 1 and batched runs on more than this share.")] = None,
    batch_invariant: Annotated[Optional[bool], typer.Option(
        "--batch-invariant/--batched", help="Run dynamic int8 one text per call, so answers never depend on "
                                            "batch-mates (default), or batch it (faster).")] = None,
    per_channel: Annotated[Optional[bool], typer.Option("--per-channel/--per-tensor", help="Weight scales.")] = None,
    reduce_range: Annotated[Optional[bool], typer.Option("--reduce-range/--full-range", help="7-bit weights.")] = None,
    weight_type: Annotated[Optional[str], typer.Option(help="qint8 or quint8.")] = None,
    activation_type: Annotated[Optional[str], typer.Option(help="Static activations: qint8 or quint8.")] = None,
    embeddings: Annotated[Optional[bool], typer.Option("--embeddings/--no-embeddings",
                                                       help="Quantise the word embeddings.")] = None,
    calibration: Annotated[Optional[str], typer.Option(help="Static: minmax, entropy or percentile.")] = None,
    calibration_samples: Annotated[Optional[int], typer.Option(help="Training texts for calibration.")] = None,
    fallbacks: Annotated[Optional[bool], typer.Option("--fallbacks/--no-fallbacks",
                                                      help="Try fallbacks for rejected int8 variants.")] = None,
    max_validation_samples: Annotated[Optional[int], typer.Option(
        help="Gate on a stratified subset of the validation split.")] = None,
    latency_samples: Annotated[Optional[int], typer.Option(help="Validation texts timed at batch 1.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads.")] = None,
) -> None:
    """Optimise and quantise; every variant is gated on validation macro-F1 and the fastest passing one is chosen."""
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.quantize import QuantizeConfig, quantize

    data_cfg = make_config(DataConfig, source=data, text_column=text_column, label_column=label_column, seed=seed)
    flags = {"variants": tuple(variant) if variant else None, "budget": budget, "min_agreement": min_agreement,
             "max_batch_flips": max_batch_flips, "batch_invariant": batch_invariant,
             "per_channel": per_channel,
             "reduce_range": reduce_range, "weight_type": weight_type, "activation_type": activation_type,
             "quantize_embeddings": embeddings, "calibration": calibration,
             "calibration_samples": calibration_samples, "fallbacks": fallbacks,
             "max_validation_samples": max_validation_samples,
             "latency_samples": latency_samples, "threads": threads}
    cfg = QuantizeConfig.from_preset(preset, str(onnx_dir), data=data_cfg,
                                     **{k: v for k, v in flags.items() if v is not None})
    with console.status(f"quantizing {onnx_dir} (each variant is evaluated on the validation split)"):
        report = quantize(cfg)
    ref = report.attempt("fp32")
    rows = []
    for a in report.attempts:
        delta = None if a.macro_f1 is None else 100 * (a.macro_f1 - ref.macro_f1)
        status = ("[bold green]chosen[/] " if a.name == report.chosen else "") + \
            {"passed": "[green]passed[/]", "rejected": "[red]rejected[/]"}.get(a.status, f"[yellow]{a.status}[/]")
        rows.append((a.name, a.macro_f1, None if delta is None else f"{delta:+.2f}", a.agreement,
                     None if a.size_bytes is None else f"{a.size_bytes / 1e6:.1f}", a.latency_p50_ms, status,
                     a.reason if a.status != "passed" else ""))
    console.print(table(f"Quantization of {onnx_dir} (preset {report.preset_text()}, budget {report.budget:g} "
                        f"points, {report.dataset} validation: {report.validation_examples} texts)",
                        ["attempt", "macro-F1", "vs fp32", "agreement", "MB", "p50 ms", "status", "why"], rows))
    console.print(("[bold yellow]" if report.nothing_passed else "[bold]") + report.summary() + "[/]")
    console.print(f"report: {onnx_dir / 'quantize_report.md'}")
