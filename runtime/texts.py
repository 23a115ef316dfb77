"""The texts a caller hands :class:`~edgedistill.runtime.classifier.TextClassifier`: checked (a list of ``str``, valid
Unicode, a sane batch size), each error naming the text at fault, and ordered by length for batching."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def _check_unicode(texts: Sequence[str], positions: Iterable[int]) -> None:
    """Raise a ValueError naming the first position whose text is not valid Unicode (a lone surrogate)."""
    for i, t in zip(positions, texts):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"texts[{i}] is not valid Unicode: {e.reason} at character {e.start}") from None


def _check_batch_size(batch_size: Any) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an int >= 1")


def _by_length(texts: Sequence[str]) -> np.ndarray:
    """Positions of ``texts``, shortest first (in characters; stable)."""
    if len(texts) == 1:
        return np.zeros(1, dtype=np.int64)
    return np.argsort(np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts)), kind="stable")


def _check_texts(texts: Any, what: str = "texts") -> list[str]:
    if texts is None:
        raise TypeError(f"{what} is None; expected a list of strings")
    if isinstance(texts, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{what} is a single {type(texts).__name__}; pass a list of strings "
                        "(predict() also takes one string)")
    if not isinstance(texts, Iterable):
        raise TypeError(f"{what} is {type(texts).__name__}; expected a list of strings")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] is {'None' if t is None else type(t).__name__}; expected str")
    return texts
