"""Augmented transfer texts: new sentences made from the training texts, labelled by the teacher only.

Distillation learns the teacher's function from the texts it is shown; a few thousand labelled sentences
show little of it. TinyBERT (Jiao et al., 2020) and Tang et al. (2019) grow the transfer set with
perturbed copies of the training texts and let the teacher label them. Two perturbations here:

- ``replace``: each content word (not a stop word) is swapped, with probability ``p``, for one of its
  nearest neighbours in the teacher's own input-embedding space (cosine). TinyBERT uses a masked-LM head for
  single-piece words and GloVe neighbours for the rest; the built-in sentence-transformer checkpoints ship no trained
  MLM head, so the embedding table that every checkpoint has stands in for both;
- ``delete``: one span of up to a quarter of the words is cut (Tang et al.'s n-gram sampling, kept whole
  but for a gap).

A copy that comes out equal to a training, validation or test text is dropped, so no held-out text ever
reaches the teacher or the student through augmentation::

    neighbours = embedding_neighbours(teacher_dir, words_of(train_texts))
    extra = augment_texts(train_texts, copies=2, neighbours=neighbours, p=0.3, seed=42)
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edgedistill.compress.errors import ConfigError

log = logging.getLogger(__name__)

WORD = re.compile(r"\b[A-Za-z]+\b")
METHODS = ("replace", "delete")


def words_of(texts: Iterable[str]) -> set[str]:
    """The lower-cased alphabetic words of ``texts``."""
    return {w.lower() for t in texts for w in WORD.findall(t)}


def _input_embeddings(model_dir: Path) -> np.ndarray:
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    for path in files:
        with safe_open(str(path), "np") as f:
            names = [k for k in f.keys() if k.endswith("word_embeddings.weight")]
            if names:
                return f.get_tensor(names[0]).astype(np.float32)
    raise ConfigError("distill.augment", str(model_dir), "the teacher's safetensors hold no word-embedding table")


def embedding_neighbours(model_dir: Path | str, words: Iterable[str], k: int = 8,
                         chunk: int = 2048) -> dict[str, list[str]]:
    """For each of ``words`` that is one whole token of the checkpoint's vocabulary, its ``k`` nearest whole-word
    tokens by cosine similarity of the input embeddings (itself excluded)."""
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise ConfigError("distill.augment", str(model_dir), "needs the teacher's tokenizer.json")
    vocab = Tokenizer.from_file(str(tok_file)).get_vocab()
    emb = _input_embeddings(model_dir)
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    # function words neither change nor come in: swapping "not" for "is" says nothing about the teacher
    cand = sorted((w, i) for w, i in vocab.items() if len(w) > 2 and w.isascii() and w.isalpha() and i < len(emb)
                  and w not in ENGLISH_STOP_WORDS)
    if not cand:
        return {}
    names = [w for w, _ in cand]
    index = {w: j for j, w in enumerate(names)}
    mat = emb[[i for _, i in cand]]
    mat /= np.linalg.norm(mat, axis=1, keepdims=True).clip(min=1e-12)
    query = sorted(w for w in set(words) if w in index)
    k = min(k, len(names) - 1)
    if k < 1:
        return {}
    out: dict[str, list[str]] = {}
    for start in range(0, len(query), chunk):
        qs = query[start:start + chunk]
        sims = mat[[index[w] for w in qs]] @ mat.T
        for row, w in enumerate(qs):
            sims[row, index[w]] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        for row, w in enumerate(qs):
            best = top[row][np.argsort(-sims[row, top[row]])]
            out[w] = [names[j] for j in best]
    return out


def _replace(text: str, neighbours: dict[str, list[str]], p: float, rng: random.Random) -> str:
    def swap(m: re.Match) -> str:
        word = m.group(0)
        options = neighbours.get(word.lower())
        if not options or rng.random() >= p:
            return word
        new = rng.choice(options)
        return new.capitalize() if word[0].isupper() else new

    return WORD.sub(swap, text)


def _delete(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) < 4:
        return text
    n = rng.randint(1, max(1, len(words) // 4))
    start = rng.randrange(0, len(words) - n + 1)
    return " ".join(words[:start] + words[start + n:])


def augment_texts(texts: Sequence[str], copies: int, *, neighbours: dict[str, list[str]], p: float = 0.3,
                  methods: Sequence[str] = METHODS, exclude: Iterable[str] = (), seed: int = 42) -> list[str]:
    """``copies`` perturbed versions of each text (fewer where a perturbation changes nothing or repeats a
    text already seen), in input order; none is in ``texts`` or ``exclude``."""
    if bad := [m for m in methods if m not in METHODS]:
        raise ConfigError("distill.augment_methods", list(methods), f"unknown {bad}; choose from {list(METHODS)}")
    rng = random.Random(seed)
    seen = set(texts) | set(exclude)
    out: list[str] = []
    for text in texts:
        for _ in range(copies):
            new = text
            if "replace" in methods:
                new = _replace(new, neighbours, p, rng)
            if "delete" in methods and (new == text or rng.random() < 0.5):
                new = _delete(new, rng)
            if new not in seen:
                seen.add(new)
                out.append(new)
    return out
