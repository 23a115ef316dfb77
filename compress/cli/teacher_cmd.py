"""``edgedistill teacher``: fine-tune the teacher and print its test metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, stage_paths, stage_recipe, table


@app.command("teacher")
@command
def teacher(
    model: Annotated[Optional[str], typer.Option(help="Built-in model (mpnet-base), HF id or folder.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Built-in dataset or a CSV / JSONL / Parquet file.")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="Text column of a file.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of a file.")] = None,
    strategy: Annotated[Optional[str], typer.Option(help="full | partial | features.")] = None,
    freeze_layers: Annotated[Optional[int], typer.Option(help="partial: bottom encoder layers to freeze.")] = None,
    profile: Annotated[Optional[str], typer.Option(help="quick (CPU) | full (GPU).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--lr", help="Learning rate.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Epochs (features: head epochs are --head-epochs).")] = None,
    head_epochs: Annotated[Optional[int], typer.Option(help="features: epochs over the cached features.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Per-device batch size.")] = None,
    grad_accumulation: Annotated[Optional[int], typer.Option(help="Gradient accumulation steps.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per text.")] = None,
    max_train_samples: Annotated[Optional[int], typer.Option(help="Stratified training subset.")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early stopping patience (validations).")] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto | fp32 | fp16 | bf16.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the splits and the training.")] = None,
    cross_dataset: Annotated[Optional[str], typer.Option(help="Also evaluate on this dataset's test split.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        help="A recipe, or a TOML / JSON file of its tables (data, teacher); flags override it. Its output is the "
             "recipe's build folder unless --output says otherwise.")] = None,
) -> None:
    """Fine-tune a teacher (Trainer; works under torchrun / accelerate launch) and evaluate it on test."""
    from edgedistill.compress.teacher import finetune_teacher

    recipe = stage_recipe(config, profile).with_values({
        "data.source": data, "data.text_column": text_column, "data.label_column": label_column,
        "data.max_train_samples": max_train_samples, "data.seed": seed,
        "teacher.model": model, "teacher.strategy": strategy, "teacher.freeze_layers": freeze_layers,
        "teacher.learning_rate": learning_rate, "teacher.epochs": epochs, "teacher.head_epochs": head_epochs,
        "teacher.batch_size": batch_size, "teacher.grad_accumulation": grad_accumulation,
        "teacher.max_length": max_length, "teacher.patience": patience, "teacher.precision": precision,
        "teacher.seed": seed, "teacher.cross_dataset": cross_dataset})
    cfg = recipe.teacher(**stage_paths(output_dir=output))
    out = finetune_teacher(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun / accelerate launch, rank 0 reports
        return
    rec = json.loads((out / "training.json").read_text())
    t = rec["test"]
    rows = [(rec["strategy"], f"{cfg.data.source} test", t["macro_f1"], t["accuracy"], t["roc_auc"], t["ece"],
             f"{rec['wall_time_s']:.0f} s")]
    if c := rec.get("cross_dataset"):
        rows.append((rec["strategy"], f"{cfg.cross_dataset} (cross)", c["macro_f1"], c["accuracy"], c["roc_auc"],
                     c["ece"], ""))
    console.print(table(f"Teacher {cfg.model}, {cfg.profile} profile, {rec['examples']['train']} train examples",
                        ["strategy", "data", "macro-F1", "accuracy", "AUC", "ECE", "wall time"], rows))
    console.print(f"saved to {out}")
