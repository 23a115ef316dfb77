"""The settings every trainer shares: :class:`TrainingSettings`, declared once and taken whole by the teacher's
fine-tune (``[teacher]``), the distillation (``[distill]``) and an update (``[update]``), each adding only its own
fields. The recipe stays flat: ``[teacher] epochs = 2`` sets the teacher's ``epochs``.

A field left None is filled by the stage's own table when it runs (``PROFILES`` in ``teacher.py`` and
``distill/config.py``, ``DEFAULTS`` in ``update.py``, or the planner): the stages train different models on
different amounts of text, so one default would fit none of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgedistill.compress.errors import ConfigError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(kw_only=True)
class TrainingSettings:
    """What every trainer shares: epochs, the AdamW step and its schedule, batches, the token limit, the
    validations that pick the best checkpoint, early stopping, precision and the seed."""

    epochs: float | None = None
    """Epochs over the stage's training texts (fractions allowed); early stopping may end sooner."""
    learning_rate: float | None = None
    """Peak learning rate of the encoder (AdamW, linear decay after the warm-up); a fresh head's may be a multiple
    of it (``head_lr_multiplier``)."""
    batch_size: int | None = None
    """Training texts per optimizer step, per process."""
    max_length: int | None = None
    """Token limit of every text the stage reads (training, validation, test; the distillation's teacher outputs
    too); longer texts are read as ``[data] long_texts`` says. An update left unset uses the student's."""
    warmup_ratio: float = 0.1
    """Share of the training steps over which the learning rate warms up from 0."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    evals_per_epoch: int | None = None
    """Validations per epoch, each a candidate checkpoint; the best on validation is kept."""
    patience: int | None = None
    """Early stopping: validations without a better score before training stops (an update left unset never
    stops early: it keeps the best of all its validations)."""
    precision: str | None = None
    """``auto`` (bf16, or fp16 where the GPU lacks it, on CUDA; else fp32), ``fp32``, ``fp16`` or ``bf16``: the
    precision of training (autocast); evaluation stays fp32. An update trains on the CPU, in fp32."""
    seed: int = 42
    """Seed of fresh weights, the data order, dropout and the stage's samples."""

    def check_training(self, table: str) -> None:
        """Refuse a bad value of a set field, naming ``<table>.<field>``; None fields are checked once filled."""
        for name in ("epochs", "learning_rate"):
            if (v := getattr(self, name)) is not None and not v > 0:
                raise ConfigError(f"{table}.{name}", v, "must be > 0")
        for name in ("batch_size", "evals_per_epoch", "patience"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{table}.{name}", v, "must be a whole number >= 1")
        if self.max_length is not None and not 8 <= self.max_length <= 4096:
            raise ConfigError(f"{table}.max_length", self.max_length, "must be in [8, 4096]")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{table}.warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError(f"{table}.weight_decay", self.weight_decay, "must be >= 0")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"{table}.precision", self.precision, f"must be one of {list(PRECISIONS)}")
