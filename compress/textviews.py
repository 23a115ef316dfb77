"""Texts as their model inputs in a long-text mode, for training and evaluation alike (the runtime reads them the
same way: :mod:`edgedistill.runtime.views`)::

    views = TextViews(tokenizer, texts, max_length=128, mode="chunks")
    for idx, batch in views.batches(32):          # windows, in batches of about one length
        out[idx] = model(**batch).logits           # out has one row per window: views.n_windows
    probs = views.pool(softmax(out), "mean")       # one row per text, in input order

``truncate`` and ``head+tail`` give one window a text, so :meth:`TextViews.pool` returns its input; ``chunks``
gives a text one window per stretch of it, whose probabilities are pooled: the mean (single-label), the maximum
(multi-label). In training, each window is an example with its text's label (and its text's teacher outputs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgedistill.runtime.probabilities import sigmoid, softmax
from edgedistill.runtime.longtexts import pool, special_ends
from edgedistill.runtime.views import CHUNKS, DEFAULT_MAX_CHUNKS, DEFAULT_STRIDE, TRUNCATE, view


class TextViews:
    """Each text's token windows in ``mode`` and the text each window belongs to (see the module docstring)."""

    def __init__(self, tokenizer, texts: Sequence[str], max_length: int, mode: str = TRUNCATE,
                 stride: int = DEFAULT_STRIDE, max_chunks: int = DEFAULT_MAX_CHUNKS):
        self.tokenizer, self.mode, self.n_texts = tokenizer, mode, len(texts)
        texts = list(texts)
        if mode == TRUNCATE:  # the tokenizer's own truncation: the same ids, and no long texts tokenized whole
            enc = tokenizer(texts, truncation=True, max_length=max_length)
            self.ids: list[list[int]] = list(enc["input_ids"])
            self.owner = np.arange(len(texts))
        else:
            enc = tokenizer(texts, truncation=False, return_special_tokens_mask=True, verbose=False)
            self.ids, owner = [], []
            for i, (ids, special) in enumerate(zip(enc["input_ids"], enc["special_tokens_mask"])):
                lead, trail = special_ends(special)
                windows = view(ids, max_length, mode, lead, trail, stride, max_chunks)
                self.ids += windows
                owner += [i] * len(windows)
            self.owner = np.asarray(owner, dtype=np.int64)
        self.types = "token_type_ids" in enc

    @property
    def n_windows(self) -> int:
        return len(self.ids)

    def features(self, idx: Sequence[int]) -> list[dict[str, list[int]]]:
        """Unpadded model inputs of windows ``idx`` (rows a ``datasets.Dataset`` or a collator takes)."""
        out = []
        for i in idx:
            ids = self.ids[i]
            row = {"input_ids": ids, "attention_mask": [1] * len(ids)}
            if self.types:
                row["token_type_ids"] = [0] * len(ids)
            out.append(row)
        return out

    def columns(self) -> dict[str, list[list[int]]]:
        """Every window's unpadded inputs as columns (``datasets.Dataset.from_dict``)."""
        rows = self.features(range(self.n_windows))
        return {k: [r[k] for r in rows] for k in (rows[0] if rows else {"input_ids": 0, "attention_mask": 0})}

    def batches(self, batch_size: int, return_tensors: str = "pt") -> Iterator[tuple[np.ndarray, Any]]:
        """``(window indices, padded batch)`` in batches of about one length, shortest first."""
        order = np.argsort([len(x) for x in self.ids], kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield idx, self.tokenizer.pad(self.features(idx), padding=True, return_tensors=return_tensors)

    def pool(self, values: np.ndarray, how: str = "mean") -> np.ndarray:
        """One row per text from one row per window: the windows' ``mean`` or ``max`` (the runtime's pooling)."""
        if self.n_windows == self.n_texts and self.mode != CHUNKS:
            return values
        return pool(values, self.owner, self.n_texts, how).astype(values.dtype)


def pooled_logits(views: TextViews, logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Per-text logits whose softmax (sigmoid, multi-label) is the pooled probability of its windows: the log of
    the mean probability, or the logit of the largest one per label. Without windows, the logits themselves."""
    if views.n_windows == views.n_texts and views.mode != CHUNKS:
        return logits
    if multi_label:
        p = np.clip(views.pool(sigmoid(logits).astype(np.float64), "max"), 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p)).astype(np.float32)
    return np.log(np.clip(views.pool(softmax(logits).astype(np.float64), "mean"), 1e-30, None)).astype(np.float32)


def examples(tokenizer, texts: Sequence[str], max_length: int, mode: str) -> int:
    """How many training examples ``texts`` make in ``mode``: one a text, but one a window with ``chunks`` (what
    the Trainer's evaluation cadence and warm-up are counted in)."""
    return TextViews(tokenizer, texts, max_length, mode).n_windows if mode == CHUNKS else len(texts)
