"""Many processes and mixed precision: what the teacher and the distillation share when they train.

Both stages train through transformers' ``Trainer``, which reads the launcher's environment (``torchrun`` and
``accelerate launch`` both set ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) and trains data-parallel
(DistributedDataParallel, each process a shard of every epoch). CPUs talk over gloo, GPUs over NCCL. Rank 0 does
what must happen once (cached teacher outputs, the final output); :func:`gather` and :func:`barrier` are the
two collectives the stages need beyond the Trainer's own, and both are no-ops in one process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from edgedistill.compress.errors import ConfigError
from edgedistill.compress.training_settings import TrainingSettings


def world_size() -> int:
    """Processes the launcher started (1 without one): known before the process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_args(precision: str, field: str) -> dict[str, Any]:
    """The ``TrainingArguments`` keywords for a precision and the process group: ``auto`` is bf16 (or fp16 where
    the GPU lacks bf16) on CUDA and fp32 elsewhere; mixed precision without CUDA is refused, naming ``field``."""
    import torch

    cuda = torch.cuda.is_available()
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision in ("fp16", "bf16") and not cuda:
        raise ConfigError(field, precision, "mixed precision needs a CUDA GPU; use fp32 or auto")
    return {"fp16": precision == "fp16", "bf16": precision == "bf16", "use_cpu": not cuda,
            "ddp_backend": "gloo" if world_size() > 1 and not cuda else None}


def trainer_arguments(work, settings: TrainingSettings, *, table: str, n_train: int, eval_batch_size: int,
                      learning_rate: float | None = None, epochs: float | None = None, grad_accumulation: int = 1,
                      group_by_length: bool = True, keep: int = 1, **extra: Any):
    """The ``TrainingArguments`` of every training stage (the teacher's and the student's) from its resolved
    :class:`TrainingSettings`, one rule for each: evaluation and a checkpoint ``evals_per_epoch`` times an epoch (an
    epoch's optimizer steps across every process, rounded up), the best checkpoint on validation macro-F1 loaded at
    the end, ``keep`` checkpoints on disk, the log every 10 steps at most, the precision of :func:`training_args`
    (a bad one named ``<table>.precision``). ``learning_rate`` / ``epochs``: a run's own (the teacher's retries);
    ``extra``: what one stage adds."""
    from transformers import TrainingArguments

    batch_size = settings.batch_size
    steps_per_epoch = max(1, math.ceil(n_train / (batch_size * world_size() * grad_accumulation)))
    every = max(1, math.ceil(steps_per_epoch / settings.evals_per_epoch))
    return TrainingArguments(
        output_dir=str(work / "checkpoints"), seed=settings.seed, data_seed=settings.seed,
        learning_rate=learning_rate or settings.learning_rate, num_train_epochs=epochs or settings.epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=eval_batch_size,
        gradient_accumulation_steps=grad_accumulation,
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float in [0, 1) is the share of the training steps
        weight_decay=settings.weight_decay, train_sampling_strategy="group_by_length" if group_by_length else "random",
        eval_strategy="steps", eval_steps=every, save_strategy="steps", save_steps=every, save_total_limit=keep,
        save_only_model=True, load_best_model_at_end=True, metric_for_best_model="macro_f1",  # safetensors always
        greater_is_better=True, logging_steps=max(1, min(every, 10)), report_to=[],
        disable_tqdm=True,  # edgedistill.compress.progress shows the training instead
        dataloader_num_workers=0, **training_args(settings.precision, f"{table}.precision"), **extra)


def precision_of(args: Any) -> str:
    """``fp32``, ``fp16`` or ``bf16``: what :func:`training_args` chose, for the stage's record."""
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"


def _group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather(obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, on every process; ``[obj]`` in one process."""
    if not _group():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in one process)."""
    if _group():
        import torch.distributed as dist

        dist.barrier()


def script_main(argv: list[str] | None, *, prog: str, description: str, tables: str,
                owned: dict[str, tuple[str, str]], config: Callable[..., Any], run: Callable[[Any], Any]) -> None:
    """The ``python -m ...`` entry of a training stage, also under torchrun / accelerate launch: a recipe (or a file
    of its ``tables``), ``--profile``, ``--set`` overrides and the stage's own folders (``owned``: flag -> (config
    field, help)); ``config(recipe, **owned)`` makes the stage's config and ``run`` runs it. Prints its one result."""
    import argparse
    import logging
    from pathlib import Path

    from edgedistill.compress.recipe import load_recipe

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", required=True, help=f"A recipe, or a TOML / JSON file of its tables ({tables}).")
    parser.add_argument("--profile", help="quick | full (default: the recipe's).")
    for flag, (_, help_text) in owned.items():
        parser.add_argument(flag, help=help_text)
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                        help="Override a recipe value, as `edgedistill build --set` does (repeatable).")
    a = parser.parse_args(argv)
    recipe = load_recipe(a.config, profile=a.profile, overrides=a.set, default_name=Path(a.config).stem)
    given = {name: v for flag, (name, _) in owned.items() if (v := getattr(a, flag.lstrip("-").replace("-", "_")))}
    cfg = config(recipe, **given)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(run(cfg))  # noqa: T201 (the script's one result line)

