"""The transfer set: the training texts with their gold labels, and the unlabelled and augmented texts only the
teacher labels; never a validation or test text."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.errors import TransferSetError

log = logging.getLogger(__name__)


@dataclass
class TransferSet:
    texts: list[str]
    labels: list[int]  # -100 for unlabelled texts
    n_labelled: int
    n_unlabelled: int
    dropped_overlap: int = 0
    n_augmented: int = 0
    """Of the unlabelled texts, how many are augmented copies of training texts (the last ones)."""


def build_transfer_set(cfg: DistillConfig, data) -> TransferSet:
    """Training texts (gold labels) + unlabelled texts from ``cfg.transfer`` + ``cfg.augment`` perturbed copies
    of each training text (both label -100: the teacher labels them).

    Unlabelled texts that are training, validation or test texts are dropped; no test or validation text
    ever reaches the teacher or the student's training set (checked).
    """
    from edgedistill.compress.readers import read_texts

    train = list(data.train.texts)
    seen = set(train)
    held_out = set(data.validation.texts) | set(data.test.texts)
    extra: list[str] = []
    dropped = 0
    for src in cfg.transfer:
        for t in read_texts(src):
            if t in held_out or t in seen:
                dropped += t in held_out
                continue
            seen.add(t)
            extra.append(t)
    if cfg.transfer:
        log.info("transfer set: %d unlabelled texts from %s (%d held-out texts dropped)", len(extra),
                 ", ".join(cfg.transfer), dropped)
    if cfg.max_transfer_samples is not None and len(extra) > cfg.max_transfer_samples:
        extra = random.Random(cfg.seed).sample(extra, cfg.max_transfer_samples)
    augmented: list[str] = []
    if cfg.augment:
        augmented = _augmented(cfg, train, held_out | seen)
    extra += augmented
    texts = train + extra
    if leaked := held_out.intersection(texts):
        raise TransferSetError(f"{len(leaked)} validation/test texts in the transfer set, e.g. "
                               f"{next(iter(leaked))[:60]!r}")
    return TransferSet(texts, list(data.train.labels) + [-100] * len(extra), len(train), len(extra), dropped,
                       len(augmented))


def _augmented(cfg: DistillConfig, train: list[str], exclude: set[str]) -> list[str]:
    """``cfg.augment`` copies of each training text by ``cfg.augment_methods``, none in ``exclude``; the teacher's
    embedding table is read only for ``replace``, its tokenizer files only for ``mask``."""
    from edgedistill.compress.augment import augment_texts, embedding_neighbours, teacher_mask_token, words_of

    methods = cfg.augment_methods
    neighbours = embedding_neighbours(cfg.teacher_dir, words_of(train)) if "replace" in methods else None
    token = teacher_mask_token(cfg.teacher_dir) if "mask" in methods else None
    augmented = augment_texts(train, cfg.augment, neighbours=neighbours, p=cfg.augment_p, methods=methods,
                              mask_token=token, mask_p=cfg.augment_mask_p, exclude=exclude, seed=cfg.seed)
    mask = f", mask {token!r} p={cfg.augment_mask_p:g}" if "mask" in methods else ""
    log.info("augmentation: %d new texts from %d training texts (%d copies each, %s, p=%g%s)", len(augmented),
             len(train), cfg.augment, "+".join(methods), cfg.augment_p, mask)
    return augmented


def same_tokens(tok_a, tok_b, texts: Sequence[str], max_length: int) -> bool:
    """Whether two tokenizers split every text into the same token strings (attention maps align)."""
    a = tok_a(list(texts), truncation=True, max_length=max_length)["input_ids"]
    b = tok_b(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return all(tok_a.convert_ids_to_tokens(x) == tok_b.convert_ids_to_tokens(y) for x, y in zip(a, b))
