"""Many processes and mixed precision: what the teacher and the distillation share when they train.

Both stages train through transformers' ``Trainer``, which reads the launcher's environment (``torchrun`` and
``accelerate launch`` both set ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) and trains data-parallel
(DistributedDataParallel, each process a shard of every epoch). CPUs talk over gloo, GPUs over NCCL. Rank 0 does
what must happen once (cached teacher outputs, the final output); :func:`gather` and :func:`barrier` are the
two collectives the stages need beyond the Trainer's own, and both are no-ops in one process.
"""

from __future__ import annotations

import os
from typing import Any

from edgedistill.compress.errors import ConfigError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


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
