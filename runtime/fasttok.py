"""The classifier's tokenizer front end: the package's ``tokenizer.json`` run by the tokenizers library, with a
BERT-style normalizer applied ahead of it where that is cheaper, giving the very same token ids.

The library normalizes each text while tracking alignments (offsets back into the raw text) that a classifier never
reads; for a review-length text on a 2-core x86 that is about half the cost of encoding it, and encoding is most of
what the runtime adds to a batch-1 prediction (``benchmarks/runtime_overhead.py``). Where the tokenizer's normalizer
is a ``BertNormalizer`` (clean-up of control characters, spaces around CJK characters, accents, lower case: each
character on its own), :class:`Encoder` normalizes the text itself:

- an ASCII text with one ``str.translate``, through a 128-entry table that the normalizer itself gives, character by
  character, at load (and checked there on every ASCII character at once);
- any other text with the normalizer's own ``normalize_str``;

then encodes the result with the same tokenizer, its normalizer removed. The ids, attention masks and type ids are
those of the tokenizer as shipped, because nothing else reads the raw text, with one exception: added tokens (``[CLS]``,
``[MASK]``, ...) are matched on the raw text before normalizing. A batch where any text holds one is encoded by the
tokenizer as shipped, parsed again from ``tokenizer.json`` on the first such batch. Any other normalizer (or none) is
left in place and the tokenizer runs as shipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from tokenizers import Tokenizer

MAX_ADDED_TOKENS = 32
"""With more added tokens than this, checking each text for them would cost what the fast path saves."""


class Encoder:
    """Encode texts with a package's tokenizer (see the module's docstring); safe to share across threads once
    :meth:`configure` has run."""

    def __init__(self, tokenizer: Tokenizer, raw: str | None = None):
        """``tokenizer``: parsed from ``raw`` (the text of tokenizer.json), which it may change; without ``raw`` it
        runs as it is."""
        self.tokenizer = tokenizer
        self._raw = raw
        self._shipped: Tokenizer | None = None  # as in tokenizer.json, parsed on the first text with an added token
        self._lock = threading.Lock()
        self._settings: Callable[[Tokenizer], None] = lambda tok: None
        self._ascii: dict[int, str] | None = None
        self._normalize: Callable[[str], str] | None = None
        self._added: tuple[str, ...] = ()
        self._added_normalized: tuple[str, ...] = ()
        if raw is not None:
            self._take_normalizer()

    @property
    def fast(self) -> bool:
        """Whether texts are normalized here, ahead of the tokenizer (else the tokenizer runs as shipped)."""
        return self._ascii is not None

    def _take_normalizer(self) -> None:
        norm = self.tokenizer.normalizer
        if type(norm).__name__ != "BertNormalizer":
            return
        added = [t.content for t in self.tokenizer.get_added_tokens_decoder().values()]
        if len(added) > MAX_ADDED_TOKENS:
            return
        table = {c: norm.normalize_str(chr(c)) for c in range(128)}
        probe = "".join(map(chr, range(128)))
        if probe.translate(table) != norm.normalize_str(probe) or probe[::-1].translate(table) != \
                norm.normalize_str(probe[::-1]):
            return  # not character by character after all: keep the tokenizer as shipped
        self._ascii, self._normalize = table, norm.normalize_str
        self._added = tuple(a for a in added if a)
        self._added_normalized = tuple(n for n in (norm.normalize_str(a) for a in self._added) if n)
        self.tokenizer.normalizer = None

    def configure(self, settings: Callable[[Tokenizer], None]) -> None:
        """Apply ``settings`` (truncation, padding) to the tokenizer, and to the shipped one when it is parsed."""
        self._settings = settings
        settings(self.tokenizer)
        if self._shipped is not None:
            settings(self._shipped)

    def encode(self, texts: Sequence[str]) -> list[Any]:
        """The tokenizers library's encodings of ``texts``, in order (offsets not computed)."""
        if self._ascii is None:
            return _encode(self.tokenizer, texts)
        normalized = [t.translate(self._ascii) if t.isascii() else self._normalize(t) for t in texts]
        if self._added and any(self._holds_added(t, n) for t, n in zip(texts, normalized)):
            return _encode(self._as_shipped(), texts)
        return _encode(self.tokenizer, normalized)

    def _holds_added(self, text: str, normalized: str) -> bool:
        return any(a in text for a in self._added) or any(a in normalized for a in self._added_normalized)

    def _as_shipped(self) -> Tokenizer:
        with self._lock:
            if self._shipped is None:
                shipped = Tokenizer.from_str(self._raw)
                self._settings(shipped)
                self._shipped = shipped
            return self._shipped


def _encode(tokenizer: Tokenizer, texts: Sequence[str]) -> list[Any]:
    """``encode_batch_fast`` (no offsets; faster than ``encode`` even for one text), where the library has it."""
    batch = getattr(tokenizer, "encode_batch_fast", None)
    return batch(list(texts)) if batch is not None else tokenizer.encode_batch(list(texts))
