"""``edgedistill distill``: distil a teacher into a student."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, stage_paths, stage_recipe, table


def _layers(text: str | None) -> int | list[int] | None:
    """``3`` (a count) or ``0,2,5`` (indices)."""
    if text is None:
        return None
    from edgedistill.compress.errors import ConfigError

    try:
        parts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError("student.layers", text, "write a count (3) or indices (0,2,5)") from None
    return parts[0] if len(parts) == 1 and "," not in text else parts


def _row(name: str, folder: Path) -> tuple[Any, ...] | None:
    """macro-F1, accuracy, parameters and size of a checkpoint folder that has a metrics.json."""
    mpath = folder / "metrics.json"
    if not mpath.is_file():
        return None
    m = json.loads(mpath.read_text())
    params = m.get("extra", {}).get("params")
    size = m.get("extra", {}).get("size_mb")
    if size is None:
        weights = list(folder.glob("*.safetensors"))
        size = sum(w.stat().st_size for w in weights) / 1e6 if weights else None
    return (name, m["macro_f1"], m["accuracy"], f"{params / 1e6:.1f}M" if params else "?",
            f"{size:.1f} MB" if size else "?")


@app.command("distill")
@command
def distill_command(
    teacher: Annotated[Optional[Path], typer.Option(help="The fine-tuned teacher checkpoint folder.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Built-in dataset or a CSV / JSONL / Parquet file.")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="Text column of a file.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of a file.")] = None,
    student: Annotated[Optional[str], typer.Option(
        help="pretrained / drop-layers: built-in model (minilm-l6), HF id or folder.")] = None,
    builder: Annotated[Optional[str], typer.Option(
        help="pretrained | teacher-layers | drop-layers | static.")] = None,
    layers: Annotated[Optional[str], typer.Option(help="Layers to keep: a count (3) or indices (0,2,5).")] = None,
    static_dim: Annotated[Optional[int], typer.Option(help="static: dimensions of the token table.")] = None,
    static_bigrams: Annotated[Optional[int], typer.Option(
        help="static: hashed token-bigram buckets beside the token table (0: tokens alone).")] = None,
    static_token_dropout: Annotated[Optional[float], typer.Option(
        help="static: share of each training text's tokens left out of its mean.")] = None,
    static_init: Annotated[Optional[str], typer.Option(
        help="static: start the table from the teacher's token outputs (teacher) or input embeddings.")] = None,
    trim_vocab: Annotated[Optional[bool], typer.Option(
        "--trim-vocab/--no-trim-vocab", help="Keep only the tokens of the training + transfer texts.")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Weight of the soft targets (1 - alpha: gold labels).")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Softmax temperature of the KD term.")] = None,
    hidden_loss_weight: Annotated[Optional[float], typer.Option(help="Pooled hidden-state MSE weight.")] = None,
    hidden_loss_layers: Annotated[Optional[int], typer.Option(
        help="Student layers the hidden loss maps onto teacher layers (evenly spaced, last included).")] = None,
    attention_loss_weight: Annotated[Optional[float], typer.Option(
        help="Attention KL weight (teacher and student must share a tokenizer).")] = None,
    transfer: Annotated[Optional[list[str]], typer.Option(
        help="Unlabelled transfer texts: snippets-unlabelled or a file (repeatable).")] = None,
    max_transfer_samples: Annotated[Optional[int], typer.Option(help="At most this many unlabelled texts.")] = None,
    augment: Annotated[Optional[int], typer.Option(
        help="Perturbed copies of each training text, labelled by the teacher only.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="AdamW weight decay.")] = None,
    profile: Annotated[Optional[str], typer.Option(help="quick (CPU minutes) | full (GPU).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output folder.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Epochs over the transfer set.")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--lr", help="Learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per text (teacher and student).")] = None,
    max_train_samples: Annotated[Optional[int], typer.Option(help="Stratified labelled training subset.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the splits, the sampling and the training.")] = None,
    config: Annotated[Optional[Path], typer.Option(
        help="A recipe, or a TOML / JSON file of its tables (data, student, distill); flags override it. Its "
             "build folder holds the teacher and the output unless --teacher / --output say otherwise.")] = None,
) -> None:
    """Distil a teacher into a compact student (KD on cached teacher outputs) and evaluate it on test."""
    from edgedistill.compress.distill.run import distill

    recipe = stage_recipe(config, profile).with_values({
        "data.source": data, "data.text_column": text_column, "data.label_column": label_column,
        "data.max_train_samples": max_train_samples, "data.seed": seed,
        "student.model": student, "student.builder": builder, "student.layers": _layers(layers),
        "student.trim_vocab": trim_vocab, "student.static_dim": static_dim, "student.static_init": static_init,
        "student.static_bigrams": static_bigrams, "student.static_token_dropout": static_token_dropout,
        "distill.alpha": alpha, "distill.temperature": temperature, "distill.hidden_loss_weight": hidden_loss_weight,
        "distill.hidden_loss_layers": hidden_loss_layers, "distill.attention_loss_weight": attention_loss_weight,
        "distill.transfer": transfer, "distill.max_transfer_samples": max_transfer_samples,
        "distill.augment": augment, "distill.weight_decay": weight_decay,
        "distill.epochs": epochs, "distill.learning_rate": learning_rate, "distill.batch_size": batch_size,
        "distill.max_length": max_length, "distill.seed": seed})
    cfg = recipe.distill(**stage_paths(teacher_dir=teacher, output_dir=output))
    console.print(f"distilling {cfg.teacher_dir} -> {cfg.student.builder} {cfg.student.model} on "
                  f"{cfg.data.source} ({cfg.profile} profile, alpha {cfg.alpha}, T {cfg.temperature})")
    out = distill(cfg)
    info = json.loads((out / "distill.json").read_text())
    rows = []
    if cfg.teacher_dir and (t := _row("teacher", Path(cfg.teacher_dir))):
        rows.append(t)
    s = _row(f"student ({cfg.student.builder}, {info['layers']} layers, vocab {info['vocab']})", out)
    rows.append(s)
    console.print(table(f"Test split of {cfg.data.source}: {out}",
                        ["model", "macro-F1", "accuracy", "parameters", "size (fp32)"], rows))
    tr = info["transfer"]
    console.print(f"transfer set: {tr['labelled']} labelled + {tr['unlabelled']} unlabelled texts "
                  f"({tr.get('augmented', 0)} of them augmented); "
                  f"training {info['train_seconds']:.0f} s, total {info['total_seconds']:.0f} s")
    if info.get("vocab_trim"):
        v = info["vocab_trim"]
        console.print(f"vocabulary trimmed {v['vocab_before']} -> {v['vocab_after']} tokens: "
                      f"{v['params_saved'] / 1e6:.1f}M parameters, {v['mb_saved_fp32']:.1f} MB saved")
