"""Adapt a pretrained encoder to a domain on unlabelled text before fine-tuning (an auxiliary objective).

``adapt(model_path, texts, cfg)`` returns a folder holding the adapted encoder, which the teacher then loads as
it would any pretrained model. Two objectives (:data:`OBJECTIVES`):

- ``mlm``: masked-language-model continued pre-training (domain-adaptive pre-training, Gururangan et al., 2020):
  15% of the tokens masked (80% [MASK], 10% random, 10% kept), cross-entropy on the masked ones. The built-in
  sentence-transformer checkpoints ship without their MLM head's layers: the decoder is tied to the input
  embeddings (as in pre-training), the head's dense layer, norm and bias start fresh. They first train alone for
  ``head_steps`` (encoder frozen, ``head_learning_rate``), then everything trains for ``steps``: a random head's
  gradients would otherwise rewrite the encoder before the head means anything (without this phase, 100 steps on
  tweets left the MLM loss at 6.0 and cost the fine-tuned teacher 10 points of macro-F1).
  :class:`Adaptation` records which head weights were fresh, and the teacher's record and the build report say so.
- ``contrastive``: unsupervised SimCSE (Gao et al., 2021): each text passes twice through the encoder with dropout
  on, and the two mean-pooled embeddings must find each other among the batch's (InfoNCE, temperature 0.05).
  It needs no head. On the built-in sentence-transformer encoders, already trained on this task with harder
  negatives, the loss starts near 0 at small batches (0.0016 on tweets at 16), so it teaches them little; the
  adaptation then says so.

The result is cached under ``$EDGEDISTILL_CACHE/adapted/<key>/``, the key a hash of the encoder's files, the texts
and every setting, so a second build (or a teacher re-run with other fine-tuning settings) skips it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgedistill import __version__
from edgedistill.compress import progress
from edgedistill.compress.errors import ConfigError
from edgedistill.runtime.fsutil import publishing

log = logging.getLogger(__name__)

OBJECTIVES = ("mlm", "contrastive")
RECORD = "adapt.json"
NOTHING_TO_LEARN = 0.01
"""A contrastive loss below this over the first tenth of the steps: the in-batch task is already solved."""


@dataclass(frozen=True)
class AdaptSettings:
    objective: str = "mlm"
    steps: int = 200
    batch_size: int = 16
    learning_rate: float = 5e-5
    max_length: int = 64
    mlm_probability: float = 0.15
    contrastive_temperature: float = 0.05
    seed: int = 42
    head_steps: int = 100
    """MLM with a fresh head: steps that train the head alone, the encoder frozen, before ``steps`` of both."""
    head_learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError("teacher.adapt_objective", self.objective, f"choose one of {list(OBJECTIVES)}")
        for name, least in (("steps", 1), ("batch_size", 1), ("head_steps", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ConfigError(f"teacher.adapt_{name}", v, f"must be an int >= {least}")
        for name in ("learning_rate", "head_learning_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"teacher.adapt_{name}", getattr(self, name), "must be > 0")


@dataclass
class Adaptation:
    """What :func:`adapt` did (or found in the cache): recorded beside the teacher."""

    path: str
    objective: str
    steps: int
    texts: int
    seconds: float
    from_cache: bool
    fresh_head: list[str] = field(default_factory=list)
    """MLM: the head weights the checkpoint lacked, trained from scratch (the decoder is tied to the embeddings)."""
    losses: list[float] = field(default_factory=list)
    """The mean loss over each tenth of the steps."""
    head_losses: list[float] = field(default_factory=list)
    """MLM with a fresh head: the same over the head-only steps that came first."""


def cache_key(model_path: str, texts: Sequence[str], s: AdaptSettings) -> str:
    digest = hashlib.sha256()
    for t in texts:
        digest.update(hashlib.sha256(t.encode()).digest())
    from edgedistill.compress.fingerprints import checkpoint_hash

    # a model folder's digest, cached by path, size and mtime like a build's inputs; a hub id stands for itself
    blob = json.dumps({"model": checkpoint_hash(model_path), "texts": digest.hexdigest(), "settings": asdict(s),
                       "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def settings(table: str, **values) -> AdaptSettings:
    """``AdaptSettings(**values)`` for the ``adapt_*`` fields of the recipe table ``table`` (``teacher``,
    ``student``): a bad value is named as that table's field."""
    try:
        return AdaptSettings(**values)
    except ConfigError as e:
        raise ConfigError(f"{table}.{e.field.partition('.')[2]}", e.value, e.why) from None


def adapt_on(table: str, model_path: str, sources: Sequence[str], data, s: AdaptSettings) -> Adaptation:
    """:func:`adapt` on the texts of ``sources`` (built-in corpora or files) less the validation and test texts of
    ``data`` (:class:`~edgedistill.compress.data.LabelledData`), which must stay unseen until they are scored."""
    from edgedistill.compress.readers import read_texts

    held_out = set(data.validation.texts) | set(data.test.texts)
    texts = list(dict.fromkeys(t for src in sources for t in read_texts(src) if t not in held_out))
    if not texts:
        raise ConfigError(f"{table}.adapt_texts", list(sources), "hold no text beside the validation and test texts")
    return adapt(model_path, texts, s)


def adapt(model_path: str, texts: Sequence[str], s: AdaptSettings, cache: Path | None = None) -> Adaptation:
    """The encoder at ``model_path`` adapted on ``texts`` with ``s.objective`` (cached; see the module doc)."""
    from edgedistill.runtime.fsutil import cache_dir

    if not texts:
        raise ConfigError("teacher.adapt_texts", [], "gave no texts to adapt on")
    out = (cache or cache_dir()) / "adapted" / cache_key(model_path, texts, s)
    if (out / RECORD).is_file():
        record = json.loads((out / RECORD).read_text())
        log.info("adapted encoder (%s, %d steps on %d texts) from the cache: %s", s.objective, s.steps, len(texts),
                 out)
        return Adaptation(**{**record, "path": str(out), "from_cache": True})
    started = time.perf_counter()
    with publishing(out) as tmp:
        fresh, losses, head_losses = (_mlm if s.objective == "mlm" else _contrastive)(model_path, list(texts), s,
                                                                                       tmp)
        result = Adaptation(str(out), s.objective, s.steps, len(texts), round(time.perf_counter() - started, 1),
                            False, fresh, losses, head_losses)
        (tmp / RECORD).write_text(json.dumps({k: v for k, v in asdict(result).items() if k != "path"}, indent=2)
                                  + "\n")
    log.info("adapted the encoder (%s) on %d texts in %d steps, %.0f s%s: loss %.3f -> %.3f", s.objective,
             len(texts), s.steps, result.seconds,
             f"; fresh MLM head weights ({', '.join(fresh)}) trained alone first: loss {head_losses[0]:.3f} -> "
             f"{head_losses[-1]:.3f}" if head_losses else "", losses[0], losses[-1])
    return result


def _batches(texts: list[str], s: AdaptSettings):
    """An endless stream of shuffled batches (a new order each pass)."""
    rng = random.Random(s.seed)
    while True:
        order = list(range(len(texts)))
        rng.shuffle(order)
        for i in range(0, len(order) - s.batch_size + 1 if len(order) >= s.batch_size else 1, s.batch_size):
            yield [texts[j] for j in order[i:i + s.batch_size]]


def _loop(model, s: AdaptSettings, batches, step_loss, steps: int | None = None, lr: float | None = None,
          what: str = "") -> list[float]:
    """``steps`` (default ``s.steps``) optimiser steps at ``lr`` of ``step_loss(batch) -> loss`` on the parameters
    that require grad; the mean loss of each tenth of them."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    steps = steps or s.steps
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr or s.learning_rate, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    model.train()
    seen: list[float] = []
    with progress.bar(f"adapting ({what or s.objective})", steps, unit="steps") as bar:
        for _ in range(steps):
            loss = step_loss(next(batches))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            seen.append(float(loss.detach()))
            bar.advance()
    model.eval()
    tenth = max(1, len(seen) // 10)
    return [round(sum(seen[i:i + tenth]) / len(seen[i:i + tenth]), 4) for i in range(0, len(seen), tenth)]


def _mlm(model_path: str, texts: list[str], s: AdaptSettings, out: Path) -> tuple[list[str], list[float], list[float]]:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    torch.manual_seed(s.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model, info = AutoModelForMaskedLM.from_pretrained(model_path, output_loading_info=True)
    model.tie_weights()  # the decoder shares the input embeddings, as in pre-training
    fresh = sorted(k for k in info.get("missing_keys", []) if "decoder.weight" not in k)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=s.mlm_probability)

    def step(batch: list[str]):
        enc = tokenizer(batch, truncation=True, max_length=s.max_length)
        feats = collator([{k: enc[k][i] for k in enc} for i in range(len(batch))])
        return model(**{k: v for k, v in feats.items() if k in ("input_ids", "attention_mask", "labels",
                                                                   "token_type_ids")}).loss

    batches = _batches(texts, s)
    head_losses = []
    if fresh and s.head_steps:
        encoder = [p for n, p in model.named_parameters() if n.startswith(model.base_model_prefix + ".")]
        for p in encoder:  # the tied decoder is the input embeddings: it stays too
            p.requires_grad_(False)
        head_losses = _loop(model, s, batches, step, s.head_steps, s.head_learning_rate, "mlm head alone")
        for p in encoder:
            p.requires_grad_(True)
    losses = _loop(model, s, batches, step)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return fresh, losses, head_losses


def _contrastive(model_path: str, texts: list[str], s: AdaptSettings, out: Path) -> tuple[list[str], list[float],
                                                                                          list[float]]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(s.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path)

    def embed(enc):
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)

    def step(batch: list[str]):
        enc = tokenizer(batch, truncation=True, max_length=s.max_length, padding=True, return_tensors="pt")
        enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        a, b = embed(enc), embed(enc)  # dropout makes the two passes differ: the only "augmentation"
        sim = a @ b.T / s.contrastive_temperature
        return F.cross_entropy(sim, torch.arange(len(batch)))

    losses = _loop(model, s, _batches(texts, s), step)
    if losses[0] < NOTHING_TO_LEARN:
        log.warning("the contrastive loss was %.4f from the start: this encoder already tells the batch's texts apart "
                    "(a sentence-transformer checkpoint is trained on this task), so SimCSE has next to nothing to "
                    "teach it; a larger adapt_batch_size or the mlm objective gives it a signal", losses[0])
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return [], losses, []

