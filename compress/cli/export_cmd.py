"""``edgedistill export``: a checkpoint to ONNX, parity-checked against torch."""

from __future__ import annotations

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
