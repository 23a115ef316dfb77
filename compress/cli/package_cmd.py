"""``edgedistill package``: the model package the runtime loads, from an ONNX folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, make_config, table


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
