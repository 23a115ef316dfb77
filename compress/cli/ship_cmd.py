"""``edgedistill export``, ``edgedistill quantize`` and ``edgedistill package``: from checkpoint to shipped package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, make_config, table


@app.command("export")
@command
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuned classifier checkpoint folder (save_pretrained).")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="ONNX folder (default: onnx/ beside it).")] = None,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (17 or newer).")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per text at inference.")] = None,
    atol: Annotated[Optional[float], typer.Option(help="Largest accepted |torch - onnx| logit difference.")] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help="Replace an existing output folder.")] = None,
) -> None:
    """Export to ONNX through torch.onnx and check torch-vs-onnxruntime parity on several input shapes."""
    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.compress.exportmeta import read_export

    cfg = make_config(ExportConfig, checkpoint=str(checkpoint), output=str(output) if output else None, opset=opset,
                      max_length=max_length, atol=atol, overwrite=overwrite)
    with console.status(f"exporting {checkpoint}"):
        out = export(cfg)
    meta = read_export(out)
    parity = meta.parity
    assert parity is not None  # export() always records its parity check
    rows = [(c.batch, c.length, *(c.diffs.get(k) for k in parity.max_abs_diff)) for c in parity.cases]
    console.print(table(f"Parity torch vs onnxruntime (atol {parity.atol:g}): all within",
                        ["batch", "tokens", *(f"max |diff| {k}" for k in parity.max_abs_diff)], rows))
    console.print(table(f"Exported {meta.model_type} to {out}",
                        ["file", "opset", "inputs", "labels", "max length"],
                        [("model.onnx", meta.opset, ", ".join(meta.input_names), ", ".join(meta.labels),
                          meta.max_length)]))


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


@app.command("package")
@command
def package_cmd(
    onnx_dir: Annotated[Path, typer.Argument(help="A folder written by `edgedistill export` (+ quantize).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Package folder (default: package/ "
                                                                          "beside the ONNX folder).")] = None,
    variant: Annotated[Optional[str], typer.Option(help="Attempt or variant to ship (default: the report's "
                                                        "choice); it must have passed the gate.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Model name on the card.")] = None,
    zip_: Annotated[Optional[bool], typer.Option("--zip", help="Also write <output>.zip.")] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite", help="Replace an existing package.")] = None,
    recipe: Annotated[Optional[Path], typer.Option(
        help="Recipe file (TOML or JSON) to record in the manifest.")] = None,
    calibrate: Annotated[Optional[bool], typer.Option(
        "--calibrate/--no-calibrate", help="Fit a temperature on the validation split (default).")] = None,
) -> None:
    """Write the model package: model.onnx, tokenizer.json, config.json, manifest.json (hashes), README.md."""
    from edgedistill.compress.errors import ConfigError
    from edgedistill.compress.package import PackagingConfig, build_package

    recipe_dict = None
    if recipe is not None:
        if not recipe.is_file():
            raise ConfigError("recipe", str(recipe), "no such file")
        if recipe.suffix == ".toml":
            import tomllib

            recipe_dict = tomllib.loads(recipe.read_text())
        else:
            recipe_dict = json.loads(recipe.read_text())
    cfg = make_config(PackagingConfig, onnx_dir=str(onnx_dir), output=str(output) if output else None, variant=variant,
                      name=name, zip=zip_, overwrite=overwrite, recipe=recipe_dict, calibrate=calibrate)
    with console.status(f"packaging {onnx_dir}"):
        out = build_package(cfg)
    manifest = json.loads((out / "manifest.json").read_text())
    rows = [(f, f"{e['size'] / 1e6:.2f}" if e["size"] > 1e5 else f"{e['size']} B", e["sha256"][:16] + "…")
            for f, e in manifest["files"].items()]
    config = json.loads((out / "config.json").read_text())
    console.print(table(f"Package {out} (variant {config['variant']}, opset {manifest['opset']})",
                        ["file", "size (MB)", "sha256"], rows))
    m = manifest.get("metrics") or {}
    if m.get("macro_f1") is not None:
        console.print(f"{m.get('split', 'validation')} macro-F1 {m['macro_f1']:.4f} (fp32 {m['fp32_macro_f1']:.4f}), "
                      "agreement with fp32 "
                      f"{m['agreement_with_fp32']:.4f}, batch-1 p50 {m['latency_p50_ms']:.2f} ms")
    if cal := manifest.get("calibration"):
        c = cal["shipped"]
        console.print(f"temperature {c['temperature']:.4g} (validation, {cal['n']} texts): ECE {c['ece_before']:.4f} "
                      f"-> {c['ece_after']:.4f}")
    if config.get("batch_dependent") and config.get("batch_invariant", True):
        console.print("dynamic int8: the runtime runs one text per call, so answers never depend on batch-mates")
    if cfg.zip:
        console.print(f"zip: {out.with_name(out.name + '.zip')}")
