"""This machine's throughput: seconds per text of a training step and of inference, for each model a build trains.

:func:`measure` loads a model, runs a few warm-up steps, then times a few more on random token ids at two
sequence lengths (:data:`LENGTHS`) and fits a line through them (:class:`Rate`: seconds per text = per_text +
per_token x tokens; with length-grouped batches and padding per batch, a text costs about its own length). Each
measurement is cached by machine, model, kind, length, batch size and device in ``$EDGEDISTILL_CACHE/throughput/``,
so a second build on this machine measures nothing. Other jobs on the machine slow a measurement down, and so
the plan errs long.

Students the planner never measures: a rung of N of the teacher's layers (or of the student model's) runs at the
full model's rate scaled by N / its depth (the embeddings and the head cost little); the static student is a
table lookup and a mean (:data:`STATIC`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedistill import __version__
from edgedistill.runtime.fsutil import cache_dir, write_text_atomic

log = logging.getLogger(__name__)

LENGTHS = (16, 64)
"""The sequence lengths measured (fixed, so that the cache serves every dataset)."""
LONG_LENGTH = 256
"""Measured too where the data's token limit is past twice the longest of :data:`LENGTHS` (long texts): the line
through 16 and 64 tokens understates long inputs (BBC articles at 264 tokens: the teacher stage took 29 minutes
against the 21 it gave, and the 30-minute build ran 38), so the rate is the line through the two longest lengths
measured."""
PROBE_FORMAT = 3
"""Bumped when how a step is measured changes, so that older measurements are not read back."""
WARMUP_STEPS = 1
TIMED_STEPS = {"train": 2, "infer": 1}
"""Steps timed after the warm-up: a training step's time varies more than a batch of 64 texts' inference."""
INFER_BATCH = 64
"""Inference is measured at the batch the stages evaluate and label at (a CPU runs short texts in a batch of 64 at
about twice the texts per second of a batch of 16)."""


@dataclass(frozen=True)
class Rate:
    """Seconds per text as a line in its token count: ``per_text + per_token x tokens``."""

    per_text: float
    per_token: float = 0.0

    def seconds(self, texts: float, tokens: float) -> float:
        """Seconds for ``texts`` texts of ``tokens`` tokens on average."""
        return texts * max(0.0, self.per_text + self.per_token * tokens)

    def scaled(self, factor: float) -> Rate:
        return Rate(self.per_text * factor, self.per_token * factor)

    @classmethod
    def fit(cls, points: dict[int, float]) -> Rate:
        """The line through the two longest of the (length, seconds per text) points (the data that measured a
        long length has long texts); one point: a line through the origin."""
        ordered = sorted(points.items())
        if len(ordered) == 1:
            (a, sa), = ordered
            return cls(0.0, sa / a)
        (a, sa), (b, sb) = ordered[-2:]
        slope = max(0.0, (sb - sa) / (b - a))
        return cls(max(0.0, sa - slope * a), slope)


@dataclass(frozen=True)
class ModelSpeed:
    """One model's training and inference rates on this machine."""

    train: Rate
    infer: Rate
    layers: int = 0
    """Its encoder depth (0: not a layered model), to scale a rung that keeps fewer layers."""
    load_average: float | None = None
    """The machine's load average when it was measured (the highest of its measurements)."""


STATIC = ModelSpeed(Rate(2e-4), Rate(5e-5))
"""The static student: a table lookup, a mean and a small head (thousands of texts a second, trained or not)."""


@dataclass(frozen=True)
class Speeds:
    """What the planner reads: the teacher's rates and every student's (``"recipe"``: the recipe's own; the
    ladder's by their rung specs)."""

    teacher: ModelSpeed
    students: dict[str, ModelSpeed]
    max_length: int
    """The longest input the teacher and the recipe's student both take (their tokenizers' limit)."""
    machine: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------- measuring
def machine() -> dict[str, Any]:
    """What a measurement depends on besides the model: CPU, cores, torch threads, GPU, torch version."""
    import torch

    from edgedistill.runtime.cpu import cpu_info

    name, _, _ = cpu_info()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": name, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "platform": platform.machine()}


def load_average() -> float | None:
    """The machine's one-minute load average (None where the OS has none): other jobs' share of the CPU, which
    slows a measurement and the build alike, and may differ between the two."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _cache_file(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "throughput" / f"{digest}.json"


def _time_steps(model, kind: str, batch: int, length: int) -> float:
    """Seconds per text of ``kind`` (``train``: forward, backward and an optimiser step; ``infer``: a forward pass
    without gradients) on random token ids, after :data:`WARMUP_STEPS` untimed steps."""
    import torch

    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    ids = torch.randint(5, max(6, vocab), (batch, length), device=device)
    mask = torch.ones_like(ids)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    opt = _optimizer(model) if kind == "train" else None
    model.train(kind == "train")

    def step() -> None:
        if opt is not None:
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(WARMUP_STEPS):
        step()
    started = time.perf_counter()
    for _ in range(TIMED_STEPS[kind]):
        step()
    return (time.perf_counter() - started) / (TIMED_STEPS[kind] * batch)


def _optimizer(model):
    """AdamW as the stages' Trainer runs it: the fused kernel where this torch has one (its default from torch 2.8);
    the per-tensor loop costs several times as much per step on a CPU."""
    import torch

    try:
        return torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(model.parameters(), lr=1e-6)


def measure(model_name: str, *, batch_size: int, lengths: tuple[int, ...] = LENGTHS) -> ModelSpeed:
    """``model_name``'s (a built-in name, a folder or a hub id) training rate at ``batch_size`` (the stage's: an
    optimiser step costs the same for any batch, so a smaller one would overstate a text's share) and inference
    rate at :data:`INFER_BATCH`, from the cache when this machine measured them before."""
    from edgedistill.compress import sources

    where = machine()
    found: dict[tuple[str, int], dict[str, Any]] = {}
    keys = {(kind, length): {"machine": where, "model": model_name, "kind": kind, "batch": batch,
                             "length": length, "probe": PROBE_FORMAT, "version": __version__}
            for kind, batch in (("train", batch_size), ("infer", INFER_BATCH)) for length in lengths}
    for k, key in keys.items():
        if (path := _cache_file(key)).is_file():
            found[k] = json.loads(path.read_text())
    if len(found) < len(keys):
        model = _load(sources.resolve_model(model_name))
        for k, key in keys.items():
            if k in found:
                continue
            length = min(key["length"], _limit(model))  # a model with a shorter table is timed at its limit
            seconds = _time_steps(model, key["kind"], key["batch"], length)
            found[k] = {**key, "measured_length": length, "seconds_per_text": seconds,
                        "layers": getattr(model.config, "num_hidden_layers", 0), "load_average": load_average()}
            path = _cache_file(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, json.dumps(found[k], indent=2))  # builds may measure side by side
            log.info("%s on this machine: %s at %d tokens, batch %d: %.1f texts/s", model_name, key["kind"],
                     length, key["batch"], 1 / max(seconds, 1e-12))
        del model

    def rate(kind: str) -> Rate:
        return Rate.fit({r["measured_length"]: r["seconds_per_text"] for (k, _), r in found.items() if k == kind})

    loads = [r["load_average"] for r in found.values() if r.get("load_average") is not None]
    return ModelSpeed(rate("train"), rate("infer"), int(next(iter(found.values()))["layers"]),
                      max(loads) if loads else None)


def student_speed(student, teacher: ModelSpeed, *, batch_size: int, lengths: tuple[int, ...] = LENGTHS) -> ModelSpeed:
    """A student's rates (a :class:`~edgedistill.compress.student.StudentConfig`): measured for a pretrained model,
    scaled by the layers kept for ``drop-layers`` and ``teacher-layers`` (:func:`measure`'s docstring), :data:`STATIC`
    for the static student."""
    if student.builder == "static":
        return STATIC
    full = teacher if student.builder == "teacher-layers" else measure(student.model, batch_size=batch_size,
                                                                       lengths=lengths)
    if student.builder == "pretrained" or not full.layers:
        return full
    kept = len(student.layers) if isinstance(student.layers, list) else student.layers or max(1, full.layers // 2)
    return ModelSpeed(full.train.scaled(kept / full.layers), full.infer.scaled(kept / full.layers), kept,
                      full.load_average)


def _load(path: str):
    """The model as a 2-label classifier on the device the stages train on (the head's size costs nothing)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, ignore_mismatched_sizes=True)
    return model.to("cuda" if torch.cuda.is_available() else "cpu")


def _limit(model) -> int:
    """The longest input the model's position table holds (RoBERTa-style tables keep two rows for padding)."""
    positions = getattr(model.config, "max_position_embeddings", 512) or 512
    return positions - 2 if getattr(model.config, "pad_token_id", None) == 1 else positions


def tokenizer_limit(tokenizer) -> int:
    """A tokenizer's own limit on input tokens (a huge placeholder when it states none: then 512)."""
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return int(limit) if limit < 100_000 else 512
