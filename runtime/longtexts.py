"""The runtime's reading of texts longer than a package's ``max_length`` tokens, in config.json's ``long_texts``
mode (``head+tail`` or ``chunks``; the rules are :mod:`edgedistill.runtime.views`'s):

1) each text is encoded whole and unpadded, and its special tokens found from its special-tokens mask;
2) its windows are cut from its ids (and the same cut from its type ids): one window, or one per stretch of it;
3) windows are padded into model feeds, a batch at a time, to their longest;
4) the windows' probabilities are pooled into one row per text: their mean, or for a multi-label model their
   maximum per label (a label found in one part of the text is kept).

A text within the limit is one window holding exactly the ids the tokenizer's own truncation gives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgedistill.runtime.views import view


@dataclass(frozen=True)
class Windows:
    """Texts' windows of token ids, each with its text's special tokens, and the text each window reads."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    owner: np.ndarray
    """int64, one a window: the position of its text among the texts encoded; windows of a text are neighbours,
    in reading order."""


def special_ends(mask: Sequence[int]) -> tuple[int, int]:
    """How many special tokens open and close a sequence: its special-tokens mask's leading and trailing 1s (a
    sequence of special tokens only opens with all of them)."""
    lead = next((i for i, m in enumerate(mask) if not m), len(mask))
    trail = next((i for i, m in enumerate(reversed(mask)) if not m), 0) if lead < len(mask) else 0
    return lead, trail


def windows(encodings: Iterable[Any], max_length: int, mode: str, stride: int, max_chunks: int) -> Windows:
    """The windows of ``encodings`` (``tokenizers`` encodings made without truncation or padding) in ``mode``."""
    ids: list[list[int]] = []
    type_ids: list[list[int]] = []
    owner: list[int] = []
    for i, e in enumerate(encodings):
        lead, trail = special_ends(e.special_tokens_mask)
        cut = view(e.ids, max_length, mode, lead, trail, stride, max_chunks)
        ids += cut
        type_ids += view(e.type_ids, max_length, mode, lead, trail, stride, max_chunks)
        owner += [i] * len(cut)
    return Windows(ids, type_ids, np.asarray(owner, dtype=np.int64))


def feed(w: Windows, rows: Sequence[int], pad_id: int, dtypes: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The model inputs of windows ``rows``, padded with ``pad_id`` to the longest of them (attention mask 0 and
    type id 0 there, as the tokenizer pads). ``dtypes``: each input's dtype by name; ``token_type_ids`` is fed
    only where it is among them."""
    width = max((len(w.ids[r]) for r in rows), default=0)
    out = {"input_ids": np.full((len(rows), width), pad_id, dtype=dtypes["input_ids"]),
           "attention_mask": np.zeros((len(rows), width), dtype=dtypes["attention_mask"])}
    if "token_type_ids" in dtypes:
        out["token_type_ids"] = np.zeros((len(rows), width), dtype=dtypes["token_type_ids"])
    for j, r in enumerate(rows):
        n = len(w.ids[r])
        out["input_ids"][j, :n] = w.ids[r]
        out["attention_mask"][j, :n] = 1
        if "token_type_ids" in out:
            out["token_type_ids"][j, :n] = w.type_ids[r]
    return out


def pool(values: np.ndarray, owner: np.ndarray, n_texts: int, how: str = "mean") -> np.ndarray:
    """One float32 row per text from one row per window (``owner``: each window's text): the ``mean`` of its
    windows' rows or their ``max``. A text of one window keeps its row exactly."""
    if how not in ("mean", "max"):
        raise ValueError(f"how={how!r}: choose mean or max")
    out = np.full((n_texts, values.shape[1]), -np.inf if how == "max" else 0.0)
    if how == "max":
        np.maximum.at(out, owner, values)
    else:
        np.add.at(out, owner, values)
        out /= np.maximum(np.bincount(owner, minlength=n_texts), 1)[:, None]
    return out.astype(np.float32)
