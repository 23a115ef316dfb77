"""``edgedistill predict --engine ray``: a Ray Data job scores a file or folder into a folder of Parquet files
(runtime/ray_job.py; the ``ray`` extra)."""

from __future__ import annotations

from pathlib import Path
import typer

from edgedistill.compress.cli._app import console, err_console, make_config, table
from edgedistill.compress.errors import EdgeDistillError


def predict_with_ray(package: Path, input: Path | None, output: Path | None, *, texts: list[str] | None,
                     text_column: str | None, top_k: int | None, batch_size: int | None, chunk_size: int | None,
                     threads: int | None, address: str | None, workers: int | None, keep_columns: list[str] | None,
                     encoding: str | None, provider: list[str] | None, fallback: bool) -> None:
    """Check the flags that go with --engine ray, build the job's config, run it, print what it did."""
    if texts or input is None or output is None:
        raise typer.BadParameter("--engine ray scores --input FILE_OR_FOLDER into --output FOLDER (no TEXTS)")
    if encoding or provider or fallback:
        raise typer.BadParameter("--encoding, --provider and --fallback go with --engine local (a Ray job reads "
                                 "UTF-8 and runs on the CPU)")
    try:
        from edgedistill.runtime.ray_job import RayJobConfig, score

        cfg = make_config(RayJobConfig, package=str(package), input=str(input), output=str(output),
                          text_column=text_column, top_k=top_k, batch_size=batch_size, rows_per_batch=chunk_size,
                          threads=threads, address=address, workers=workers,
                          keep_columns=tuple(keep_columns) if keep_columns else None)
        result = score(cfg)
    except (ImportError, ValueError) as e:  # ray missing, a bad flag value, an input Ray cannot read
        raise EdgeDistillError(str(e)) from e
    rate = result.rows / result.seconds if result.seconds else float("nan")
    console.print(table(f"{package} -> {output}", ["texts", "workers x threads", "seconds", "texts/s"],
                        [(f"{result.rows:,}", f"{result.workers} x {result.threads}", round(result.seconds, 1),
                          f"{rate:,.0f}")]))
    err_console.print(f"[green]✓[/] {result.rows:,} predictions written to {output}/ (Parquet; read in file-name "
                      "order, the input's order)")
