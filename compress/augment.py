"""Augmented transfer texts: new sentences made from the training texts, labelled by the teacher only.

Distillation learns the teacher's function from the texts it is shown; a few thousand labelled sentences
show little of it. TinyBERT (Jiao et al., 2020) and Tang et al. (2019, arXiv 1903.12136) grow the transfer set
with perturbed copies of the training texts and let the teacher label them. The families here:

- ``replace``: each content word (not a stop word) is swapped, with probability ``p``, for one of its
  nearest neighbours in the teacher's own input-embedding space (cosine). TinyBERT uses a masked-LM head for
  single-piece words and GloVe neighbours for the rest; the built-in sentence-transformer checkpoints ship no trained
  MLM head, so the embedding table that every checkpoint has stands in for both;
- ``delete``: one span of up to a quarter of the words is cut (Tang et al.'s n-gram sampling, kept whole
  but for a gap);
- ``mask``: each word is replaced, with probability ``mask_p`` (Tang: 0.1; at least one word), by the teacher
  tokenizer's mask token (:func:`teacher_mask_token`), so the teacher labels the sentence with a word hidden;
- ``ngram``: Tang's n-gram sampling: only a random window of n contiguous words is kept, n uniform in 1..5
  (fewer than the text has);
- ``mix``: the first words of one training text joined with the last words of another, drawn at random (each
  cut at a word boundary, at least one word from each).

Words are the whitespace-separated pieces of a text. How a copy is made: ``replace`` and ``delete`` together are
one edit, as they always were (replace, then delete a span when nothing was replaced, else half the time); the edit
and each of ``mask``, ``ngram`` and ``mix`` chosen are the copy-makers. The copies of one text go through the
makers in turn (the order of ``METHODS``), starting at a maker drawn at random for that text: ``copies`` equal to
the number of makers gives one copy by each. Everything is drawn from one generator seeded with ``seed``, so the
same texts and seed give the same copies; with one maker (``replace`` and/or ``delete`` alone) nothing extra is
drawn and the copies are those of the two-method version.

A copy that comes out equal to a training, validation or test text, or to an earlier copy, is dropped, so no
held-out text ever reaches the teacher or the student through augmentation::

    neighbours = embedding_neighbours(teacher_dir, words_of(train_texts))
    extra = augment_texts(train_texts, copies=2, neighbours=neighbours, p=0.3, seed=42)
    masked = augment_texts(train_texts, copies=2, methods=["mask", "ngram"], mask_token=teacher_mask_token(teacher_dir))
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edgedistill.compress.errors import ConfigError

log = logging.getLogger(__name__)

WORD = re.compile(r"\b[A-Za-z]+\b")
METHODS = ("replace", "delete", "mask", "ngram", "mix")
DEFAULT_METHODS = ("replace", "delete")
NGRAM_MAX = 5  # Tang et al.: n-grams of 1 to 5 words


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


def _mask(text: str, token: str, p: float, rng: random.Random) -> str:
    words = text.split()
    if not words:
        return text
    hide = [rng.random() < p for _ in words]
    if not any(hide):  # a copy with nothing hidden would be the text itself
        hide[rng.randrange(len(words))] = True
    return " ".join(token if h else w for w, h in zip(words, hide))


def _ngram(text: str, rng: random.Random) -> str:
    words = text.split()
    if len(words) < 2:
        return text
    n = rng.randint(1, min(NGRAM_MAX, len(words) - 1))
    start = rng.randrange(0, len(words) - n + 1)
    return " ".join(words[start:start + n])


def _mix(texts: Sequence[str], i: int, rng: random.Random) -> str:
    if len(texts) < 2:
        return texts[i]
    j = rng.randrange(len(texts) - 1)
    j += j >= i  # another text than the i-th
    head, tail = texts[i].split(), texts[j].split()
    a = rng.randint(1, max(1, len(head) - 1))
    b = rng.randint(1, max(1, len(tail) - 1))
    return " ".join(head[:a] + tail[len(tail) - b:])


def teacher_mask_token(model_dir: Path | str) -> str | None:
    """The token that hides a word from the teacher: the mask token its tokenizer files name (``<mask>`` for MPNet,
    ``[MASK]`` for BERT), else its unknown token; each only if the teacher's ``tokenizer.json`` holds it as one
    special token that a text containing it encodes to one id. None when neither is."""
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    named: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = model_dir / name
        settings = json.loads(path.read_text()) if path.is_file() else {}
        for key in ("mask_token", "unk_token"):
            value = settings.get(key)
            value = value.get("content") if isinstance(value, dict) else value  # {"content": "<mask>", ...}
            if isinstance(value, str) and value:
                named.setdefault(key, value)
    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise ConfigError("distill.augment_methods", "mask", f"needs the teacher's tokenizer.json in {model_dir}")
    tok = Tokenizer.from_file(str(tok_file))
    specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    for key in ("mask_token", "unk_token"):
        token = named.get(key)
        if token in specials and tok.encode(f"a {token} b", add_special_tokens=False).ids.count(
                tok.token_to_id(token)) == 1:
            return token
    return None


def _makers(methods: Sequence[str], token: str | None) -> list[str]:
    """The copy-makers of ``methods``, in the order of METHODS: ``edit`` (replace and/or delete), then each of
    mask, ngram and mix chosen (mask only with a token)."""
    makers = ["edit"] if {"replace", "delete"} & set(methods) else []
    for m in ("mask", "ngram", "mix"):
        if m in methods:
            if m == "mask" and not token:
                log.warning("augmentation: the teacher's tokenizer names no mask or unknown token that encodes to "
                            "one special id; the mask family is skipped")
                continue
            makers.append(m)
    return makers


def augment_texts(texts: Sequence[str], copies: int, *, neighbours: dict[str, list[str]] | None = None,
                  p: float = 0.3, methods: Sequence[str] = DEFAULT_METHODS, exclude: Iterable[str] = (),
                  seed: int = 42, mask_token: str | None = None, mask_p: float = 0.1) -> list[str]:
    """``copies`` perturbed versions of each text (fewer where a perturbation changes nothing or repeats a
    text already seen), in input order; none is in ``texts`` or ``exclude``. ``neighbours``
    (:func:`embedding_neighbours`) is needed for ``replace``, ``mask_token`` (:func:`teacher_mask_token`) for ``mask``;
    the module docstring says how each copy is made."""
    if bad := [m for m in methods if m not in METHODS]:
        raise ConfigError("distill.augment_methods", list(methods), f"unknown {bad}; choose from {list(METHODS)}")
    if "replace" in methods and neighbours is None:
        raise ConfigError("distill.augment_methods", list(methods), "replace needs the teacher's embedding "
                          "neighbours (embedding_neighbours)")
    makers = _makers(methods, mask_token)
    if copies > 0 and not makers:  # mask alone, and a teacher with no token to mask with
        raise ConfigError("distill.augment_methods", list(methods), "no family left to make copies with: the "
                          "teacher's tokenizer has no mask or unknown token for mask; add another family")
    rng = random.Random(seed)
    seen = set(texts) | set(exclude)
    out: list[str] = []
    for i, text in enumerate(texts):
        # 1) the first maker of this text's copies: drawn only when there is a choice (the two-method stream)
        first = rng.randrange(len(makers)) if len(makers) > 1 else 0
        for c in range(copies if makers else 0):
            # 2) the copies take the makers in turn
            maker = makers[(first + c) % len(makers)]
            if maker == "edit":
                new = text
                if "replace" in methods:
                    new = _replace(new, neighbours, p, rng)
                if "delete" in methods and (new == text or rng.random() < 0.5):
                    new = _delete(new, rng)
            elif maker == "mask":
                new = _mask(text, mask_token, mask_p, rng)
            elif maker == "ngram":
                new = _ngram(text, rng)
            else:
                new = _mix(texts, i, rng)
            # 3) only new texts: never a training, held-out or earlier text
            if new not in seen:
                seen.add(new)
                out.append(new)
    return out
