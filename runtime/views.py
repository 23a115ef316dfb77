"""How a text longer than the token limit is read: one view, written once, for training and for inference.

- ``truncate``: its first tokens (the special tokens that close a sequence kept);
- ``head+tail``: its first quarter and its last three quarters of the limit (:data:`HEAD_SHARE`): Sun et al. 2019
  ("How to Fine-Tune BERT for Text Classification?") found the head 128 + tail 382 tokens of 512 the best
  single view of long IMDb and Sogou reviews, better than the head alone;
- ``chunks``: windows of the limit over the whole text, ``stride`` tokens of overlap between neighbours, at most
  ``max_chunks`` of them; each window is classified and the probabilities pooled (the mean; for a multi-label
  model the maximum, so that a label found in one part of the text is kept).

Every function takes a sequence's token ids with its special tokens (``lead`` of them before the text, ``trail``
after it, as the tokenizer's post-processor adds them) and gives token id lists that keep those special tokens.
A text within the limit reads the same in every mode.
"""

from __future__ import annotations

from collections.abc import Sequence

TRUNCATE, HEAD_TAIL, CHUNKS = "truncate", "head+tail", "chunks"
LONG_TEXTS = (TRUNCATE, HEAD_TAIL, CHUNKS)
HEAD_SHARE = 0.25
"""head+tail: the share of the limit (less the special tokens) taken from the start of the text."""
DEFAULT_STRIDE = 32
"""chunks: tokens shared by neighbouring windows, so that no sentence is only ever seen cut in two."""
DEFAULT_MAX_CHUNKS = 8
"""chunks: windows classified per text at most (a text of 100,000 characters costs 8 windows, not 200)."""


def _parts(ids: Sequence[int], lead: int, trail: int) -> tuple[list[int], list[int], list[int]]:
    ids = list(ids)
    return ids[:lead], ids[lead:len(ids) - trail], ids[len(ids) - trail:] if trail else []


def head_tail(ids: Sequence[int], max_length: int, lead: int = 1, trail: int = 1) -> list[int]:
    """``ids`` cut to ``max_length`` tokens: the first :data:`HEAD_SHARE` of the room and the last of the rest."""
    if len(ids) <= max_length:
        return list(ids)
    start, body, end = _parts(ids, lead, trail)
    room = max_length - lead - trail
    head = round(room * HEAD_SHARE)
    return start + body[:head] + body[len(body) - (room - head):] + end


def truncate(ids: Sequence[int], max_length: int, lead: int = 1, trail: int = 1) -> list[int]:
    """``ids`` cut to their first ``max_length`` tokens, the closing special tokens kept."""
    if len(ids) <= max_length:
        return list(ids)
    start, body, end = _parts(ids, lead, trail)
    return start + body[:max_length - lead - trail] + end


def chunks(ids: Sequence[int], max_length: int, lead: int = 1, trail: int = 1, stride: int = DEFAULT_STRIDE,
           max_chunks: int = DEFAULT_MAX_CHUNKS) -> list[list[int]]:
    """Windows of at most ``max_length`` tokens over ``ids``, each with the special tokens, neighbours sharing
    ``stride`` tokens, at most ``max_chunks`` of them (the first ones: the text's start)."""
    if len(ids) <= max_length:
        return [list(ids)]
    start, body, end = _parts(ids, lead, trail)
    room = max_length - lead - trail
    step = max(1, room - min(stride, room - 1))
    windows = []
    for s in range(0, len(body), step):
        windows.append(start + body[s:s + room] + end)
        if s + room >= len(body) or len(windows) == max_chunks:
            break
    return windows


def view(ids: Sequence[int], max_length: int, mode: str, lead: int = 1, trail: int = 1, stride: int = DEFAULT_STRIDE,
         max_chunks: int = DEFAULT_MAX_CHUNKS) -> list[list[int]]:
    """The windows a text is read as in ``mode`` (one, but for ``chunks``)."""
    if mode == TRUNCATE:
        return [truncate(ids, max_length, lead, trail)]
    if mode == HEAD_TAIL:
        return [head_tail(ids, max_length, lead, trail)]
    if mode == CHUNKS:
        return chunks(ids, max_length, lead, trail, stride, max_chunks)
    raise ValueError(f"long_texts={mode!r}: choose one of {', '.join(LONG_TEXTS)}")
