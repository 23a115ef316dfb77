"""Student models: what the teacher is distilled into.

Three builders, chosen by :attr:`StudentConfig.builder`:

``pretrained``
    A compact pretrained encoder (``minilm-l6`` from the built-in catalog, any
    Hugging Face model id or a local folder) with a new classification head.
``teacher-layers``
    A shallower copy of the teacher's own architecture: its embeddings, its
    classification head and every k-th encoder layer (DistilBERT-style). Works
    for any encoder whose layers live in ``<base>.encoder.layer`` (BERT, MPNet,
    RoBERTa, ...).
``drop-layers``
    A pretrained compact model with only a chosen subset of its layers kept
    (e.g. MiniLM 6 -> 3), with a new head.

``static``
    No transformer at all: a token-embedding table started from the teacher,
    a masked mean and a small head (:mod:`edgedistill.compress.static`).

``layers`` is either a count (evenly spaced layers are kept, first and last
included) or an explicit list of 0-based layer indices.

Optional vocabulary trimming (``trim_vocab``) keeps the special tokens and the
tokens that occur in a given corpus (the training and transfer texts), shrinks
the word-embedding matrix and rebuilds a matching WordPiece tokenizer. Half of
MiniLM-L6's weights are its 30,522-token embedding, so this is the largest
single saving for a small student. The trimmed model is checked: on texts of
the kept corpus it must give the same token sequences and the same logits as
the untrimmed one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.compress import sources
from edgedistill.compress.errors import ConfigError, VocabTrimError

log = logging.getLogger(__name__)

BUILDERS = ("pretrained", "teacher-layers", "drop-layers", "static")
FROM_TEACHER = ("teacher-layers", "static")  # they start from the teacher's weights, not an encoder of their own
STATIC_INITS = ("teacher", "embeddings")
# Fields added after builds existed: out of the stage's fingerprint while at their default
# (edgedistill.compress.pipeline), so adding them re-distils no existing build.
WHEN_SET = {"fingerprint": "when-set"}


@dataclass
class StudentConfig:
    """How the student is built (see the module docstring)."""

    builder: str = "pretrained"
    """``pretrained``, ``teacher-layers`` or ``drop-layers``."""
    model: str = "minilm-l6"
    """``pretrained`` / ``drop-layers``: a built-in model name, a Hugging Face model id or a local folder.
    Ignored by ``teacher-layers`` (it copies the teacher)."""
    layers: int | list[int] | None = None
    """Layers to keep: a count (evenly spaced, first and last kept) or 0-based indices.
    ``teacher-layers`` defaults to half the teacher's depth; ``drop-layers`` needs it; ``pretrained`` keeps all."""
    trim_vocab: bool = False
    """Keep only the special tokens and the tokens of the training + transfer texts."""
    static_dim: int = 256
    """``static``: dimensions of the token table (PCA of the teacher's vectors)."""
    static_bigrams: int = 0
    """``static``: hashed token-bigram buckets beside the token table (0: tokens alone)."""
    static_token_dropout: float = 0.0
    """``static``: share of each training text's tokens left out of its mean (a bag model's dropout)."""
    static_init: str = "embeddings"
    """``static``: start the table from the teacher's input ``embeddings`` or from its ``teacher`` token outputs
    (model2vec's way). On movie-snippets' validation split the embeddings start led by 3 points of macro-F1
    (0.7996 against 0.7669; benchmarks/results/cpu-x86_64/static-student.md)."""
    adapt_texts: list[str] = field(default_factory=list, metadata=WHEN_SET)
    """``pretrained`` / ``drop-layers``: unlabelled in-domain text to adapt the pretrained encoder on before
    distillation (all of its layers, before any are dropped), as ``[teacher] adapt_texts`` does the teacher's;
    empty: no adaptation. Validation and test texts are left out."""
    adapt_objective: str = field(default="mlm", metadata=WHEN_SET)
    """``mlm`` (masked-language-model continued pre-training) or ``contrastive`` (unsupervised SimCSE)."""
    adapt_steps: int = field(default=200, metadata=WHEN_SET)
    """Adaptation steps (optimizer steps over ``adapt_batch_size`` texts each)."""
    adapt_batch_size: int = field(default=16, metadata=WHEN_SET)
    """Texts per adaptation step."""
    adapt_learning_rate: float = field(default=5e-5, metadata=WHEN_SET)
    """Learning rate of the encoder during the adaptation."""

    def __post_init__(self) -> None:
        if self.builder not in BUILDERS:
            raise ConfigError("student.builder", self.builder, f"must be one of {', '.join(BUILDERS)}")
        if not self.model:
            raise ConfigError("student.model", self.model, "name a built-in model, a model id or a folder")
        if isinstance(self.layers, (list, tuple)):
            self.layers = list(self.layers)
            if not self.layers:
                raise ConfigError("student.layers", self.layers, "an index list must not be empty")
            if any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in self.layers):
                raise ConfigError("student.layers", self.layers, "indices must be integers >= 0")
            if len(set(self.layers)) != len(self.layers):
                raise ConfigError("student.layers", self.layers, "indices must be distinct")
            self.layers = sorted(self.layers)
        elif self.layers is not None:
            if isinstance(self.layers, bool) or not isinstance(self.layers, int) or self.layers < 1:
                raise ConfigError("student.layers", self.layers, "must be a layer count >= 1 or a list of indices")
        if self.builder == "drop-layers" and self.layers is None:
            raise ConfigError("student.layers", None, "drop-layers needs the layers to keep (a count or indices)")
        if self.builder == "static" and self.layers is not None:
            raise ConfigError("student.layers", self.layers, "the static student has no layers")
        if isinstance(self.static_dim, bool) or not isinstance(self.static_dim, int) or self.static_dim < 2:
            raise ConfigError("student.static_dim", self.static_dim, "must be an int >= 2")
        if isinstance(self.static_bigrams, bool) or not isinstance(self.static_bigrams, int) or self.static_bigrams < 0:
            raise ConfigError("student.static_bigrams", self.static_bigrams, "must be a bucket count >= 0")
        if not 0.0 <= self.static_token_dropout < 1.0:
            raise ConfigError("student.static_token_dropout", self.static_token_dropout, "must be in [0, 1)")
        if self.static_init not in STATIC_INITS:
            raise ConfigError("student.static_init", self.static_init, f"must be one of {', '.join(STATIC_INITS)}")
        if self.builder == "pretrained" and self.layers is not None:
            raise ConfigError("student.layers", self.layers,
                              "the pretrained builder keeps every layer; use builder='drop-layers' to cut some")
        if isinstance(self.adapt_texts, str):
            self.adapt_texts = [self.adapt_texts]
        self.adapt_texts = list(self.adapt_texts)
        if self.adapt_texts:
            if self.builder in FROM_TEACHER:
                raise ConfigError("student.adapt_texts", self.adapt_texts,
                                  f"the {self.builder} builder starts from the teacher: adapt the teacher instead "
                                  "([teacher] adapt_texts)")
            self.adapt_settings()  # checks the adapt_* fields

    def adapt_settings(self, **run: Any):
        """The adaptation's settings (:mod:`edgedistill.compress.adapt`); ``run`` gives the distillation's
        ``max_length`` and ``seed``."""
        from edgedistill.compress.adapt import settings

        return settings("student", objective=self.adapt_objective, steps=self.adapt_steps,
                        batch_size=self.adapt_batch_size, learning_rate=self.adapt_learning_rate, **run)


# ---------------------------------------------------------------------------- builders
def layer_indices(layers: int | list[int] | None, depth: int, field_name: str = "student.layers") -> list[int]:
    """Which of ``depth`` layers to keep. A count keeps evenly spaced layers, the first and the last included
    (12 -> 6 keeps 0, 2, 4, 7, 9, 11 like DistilBERT)."""
    if layers is None:
        return list(range(depth))
    if isinstance(layers, list):
        if max(layers) >= depth:
            raise ConfigError(field_name, layers, f"the model has only {depth} layers (indices 0..{depth - 1})")
        return list(layers)
    if layers > depth:
        raise ConfigError(field_name, layers, f"the model has only {depth} layers")
    if layers == 1:
        return [depth - 1]
    return sorted({round(i * (depth - 1) / (layers - 1)) for i in range(layers)})


def encoder_layers(model):
    """The ``nn.ModuleList`` of transformer layers of a BERT-like encoder."""
    base = getattr(model, model.base_model_prefix, model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None:
        raise ConfigError("student.builder", type(model).__name__,
                          "cannot find <base>.encoder.layer in this architecture; use builder='pretrained'")
    return layers


def keep_layers(model, indices: Sequence[int]) -> None:
    """Keep only the encoder layers ``indices`` (in this order), in place, and update the config."""
    import torch.nn as nn

    layers = encoder_layers(model)
    kept = [layers[i] for i in indices]
    for new_idx, layer in enumerate(kept):  # attention modules that know their index (caches) stay consistent
        for m in layer.modules():
            if hasattr(m, "layer_idx"):
                m.layer_idx = new_idx
    base = getattr(model, model.base_model_prefix, model)
    base.encoder.layer = nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)


def build_student(cfg: StudentConfig, teacher_dir: Path | str | None, num_labels: int, id2label: dict[int, str],
                  corpus: Sequence[str] | None = None, *, encoder: str | None = None):
    """Build the student ``(model, tokenizer)`` for ``num_labels`` classes named by ``id2label``.

    ``corpus`` (the training and transfer texts) is needed when ``cfg.trim_vocab`` is set, and gives the static
    student its token frequencies; the trim report is kept in ``model.config.vocab_trim`` (it lands in
    config.json). ``encoder``: a folder that replaces ``cfg.model`` (``pretrained`` / ``drop-layers``), the encoder
    adapted on ``cfg.adapt_texts``.
    """
    id2label = {int(k): v for k, v in id2label.items()}
    if len(id2label) != num_labels:
        raise ConfigError("id2label", id2label, f"has {len(id2label)} labels, num_labels is {num_labels}")
    if cfg.builder == "static":
        model, tokenizer = _static_student(cfg, teacher_dir, num_labels, id2label, corpus)
    else:
        model, tokenizer = _transformer_student(cfg, teacher_dir, num_labels, id2label, encoder)
    if cfg.trim_vocab:
        if not corpus:
            raise ConfigError("student.trim_vocab", True, "needs the training/transfer texts (corpus) to keep")
        model, tokenizer, report = trim_vocabulary(model, tokenizer, corpus)
        model.config.vocab_trim = report.as_dict()
    if cfg.builder == "static" and cfg.static_bigrams:
        from edgedistill.compress.static import with_bigrams

        model = with_bigrams(model, cfg.static_bigrams)
    return model.eval(), tokenizer


def _transformer_student(cfg: StudentConfig, teacher_dir: Path | str | None, num_labels: int,
                         id2label: dict[int, str], encoder: str | None = None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    label2id = {v: k for k, v in id2label.items()}
    if cfg.builder == "teacher-layers":
        if teacher_dir is None or not Path(teacher_dir).is_dir():
            raise ConfigError("distill.teacher_dir", teacher_dir, "teacher-layers copies the teacher: give its folder")
        source = str(teacher_dir)
        model = AutoModelForSequenceClassification.from_pretrained(source)
        if model.config.num_labels != num_labels:
            raise ConfigError("distill.teacher_dir", str(teacher_dir),
                              f"the teacher has {model.config.num_labels} labels, the data {num_labels}")
        depth = model.config.num_hidden_layers
        indices = layer_indices(cfg.layers if cfg.layers is not None else max(1, depth // 2), depth)
    else:
        source = encoder or sources.resolve_model(cfg.model, field="student.model")
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True)
        depth = model.config.num_hidden_layers
        indices = layer_indices(cfg.layers, depth)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if indices != list(range(depth)):
        keep_layers(model, indices)
    model.config.id2label, model.config.label2id = id2label, label2id
    model.config.num_labels = num_labels
    model.config.student = {"builder": cfg.builder, "source": cfg.model if cfg.builder != "teacher-layers"
                            else "teacher", "layers_kept": indices, "of_layers": depth}
    log.info("student %s from %s: layers %s of %d, hidden %d, vocab %d, %.1fM parameters", cfg.builder, source,
             indices, depth, model.config.hidden_size, model.config.vocab_size, count_parameters(model) / 1e6)
    return model, tokenizer


def _static_student(cfg: StudentConfig, teacher_dir: Path | str | None, num_labels: int, id2label: dict[int, str],
                    corpus: Sequence[str] | None):
    if teacher_dir is None or not Path(teacher_dir).is_dir():
        raise ConfigError("distill.teacher_dir", teacher_dir, "the static student starts from the teacher: "
                                                              "give its folder")
    from edgedistill.compress.static import build_static

    model, tokenizer = build_static(teacher_dir, num_labels, id2label, corpus or [], dim=cfg.static_dim,
                                    init=cfg.static_init, token_dropout=cfg.static_token_dropout)
    model.config.student = {"builder": "static", "source": "teacher", "init": cfg.static_init,
                            "dim": model.config.hidden_size}
    return model, tokenizer


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- vocabulary trimming
@dataclass
class TrimReport:
    """What vocabulary trimming kept and saved (fp32 bytes)."""

    vocab_before: int
    vocab_after: int
    params_before: int
    params_after: int
    texts: int
    verified_texts: int
    max_logit_diff: float

    @property
    def params_saved(self) -> int:
        return self.params_before - self.params_after

    @property
    def mb_saved(self) -> float:
        return self.params_saved * 4 / 1e6

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "params_saved": self.params_saved, "mb_saved_fp32": round(self.mb_saved, 2)}


def _wordpiece_path(word: str, vocab: dict[str, int], prefix: str, max_chars: int) -> list[str]:
    """Every piece greedy longest-match-first WordPiece visits for ``word``, including a failed path."""
    if len(word) > max_chars:
        return []
    pieces, start = [], 0
    while start < len(word):
        end, cur = len(word), None
        while start < end:
            sub = word[start:end] if start == 0 else prefix + word[start:end]
            if sub in vocab:
                cur = sub
                break
            end -= 1
        if cur is None:
            break
        pieces.append(cur)
        start = end
    return pieces


def trim_vocabulary(model, tokenizer, corpus: Sequence[str], *, verify_texts: int = 64, batch_size: int = 32):
    """Keep special tokens, single ASCII characters and the tokens of ``corpus``; returns
    ``(model, tokenizer, TrimReport)``.

    Only WordPiece tokenizers (BERT, MPNet, ...) are supported. Because greedy longest-match-first WordPiece
    only ever chose kept pieces for corpus words (and the pieces of failed paths are kept too), every corpus
    text tokenizes to the same sequence; this is checked on all of them, and the logits on ``verify_texts``.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("student.trim_vocab", True, f"needs a fast tokenizer; {type(tokenizer).__name__} is not")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    wp = spec.get("model", {})
    if wp.get("type") != "WordPiece":
        raise ConfigError("student.trim_vocab", True, f"supports WordPiece tokenizers only, not {wp.get('type')}")
    texts = list(dict.fromkeys(t for t in corpus if t))
    old_vocab: dict[str, int] = wp["vocab"]
    # 1. the ids the corpus uses, the special/added tokens and the pieces of failed WordPiece paths
    used: set[int] = set(tokenizer.all_special_ids)
    used.update(t["id"] for t in spec.get("added_tokens", []))
    enc = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    for ids in enc:
        used.update(ids)
    backend = tokenizer.backend_tokenizer
    words: set[str] = set()
    for t in texts:
        norm = backend.normalizer.normalize_str(t) if backend.normalizer else t
        words.update(w for w, _ in (backend.pre_tokenizer.pre_tokenize_str(norm) if backend.pre_tokenizer
                                    else [(norm, None)]))
    prefix, max_chars = wp.get("continuing_subword_prefix", "##"), wp.get("max_input_chars_per_word", 100)
    for w in words:
        used.update(old_vocab[p] for p in _wordpiece_path(w, old_vocab, prefix, max_chars))
    # single ASCII characters (and their continuations): a word unseen in the corpus then falls back to
    # character pieces instead of [UNK]
    used.update(i for tok, i in old_vocab.items()
                if len(tok.removeprefix(prefix)) == 1 and tok.removeprefix(prefix).isascii())
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}
    id_to_token = {i: t for t, i in old_vocab.items()}
    # 2. the new tokenizer.json: vocab, added tokens, post-processor and padding ids remapped
    wp["vocab"] = {id_to_token[old]: new for new, old in enumerate(keep)}
    for t in spec.get("added_tokens", []):
        t["id"] = remap[t["id"]]
    post = spec.get("post_processor") or {}
    for procs in ([post] if post.get("type") != "Sequence" else post.get("processors", [])):
        for v in (procs.get("special_tokens") or {}).values():
            v["ids"] = [remap[i] for i in v["ids"]]
        for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing: [token, id]
            if key in procs:
                procs[key][1] = remap[procs[key][1]]
    if spec.get("padding"):
        spec["padding"]["pad_id"] = remap[spec["padding"]["pad_id"]]
    new_backend = Tokenizer.from_str(json.dumps(spec))
    with tempfile.TemporaryDirectory(prefix="edgedistill-trim-") as tmp:
        tokenizer.save_pretrained(tmp)
        for name in ("vocab.txt", "tokenizer.json"):
            Path(tmp, name).unlink(missing_ok=True)
        new_backend.save(os.path.join(tmp, "tokenizer.json"))
        new_tok = AutoTokenizer.from_pretrained(tmp)
    # 3. the model: the embedding rows of the kept tokens
    old_params = count_parameters(model)
    old_emb = model.get_input_embeddings()
    pad_old = model.config.pad_token_id
    new_emb = torch.nn.Embedding(len(keep), old_emb.embedding_dim,
                                 padding_idx=remap.get(pad_old) if pad_old is not None else None)
    new_emb.weight.data = old_emb.weight.data[torch.tensor(keep)].clone()
    trimmed = _copy_model(model)
    trimmed.set_input_embeddings(new_emb)
    trimmed.config.vocab_size = len(keep)
    if pad_old is not None:
        trimmed.config.pad_token_id = remap[pad_old]
    # 4. verify: same token sequences on the whole corpus, same logits on a sample
    new_enc = new_tok(texts, add_special_tokens=True, truncation=False)["input_ids"]
    for t, a, b in zip(texts, enc, new_enc):
        if [remap.get(i, -1) for i in a] != b:
            raise VocabTrimError(f"the trimmed tokenizer splits {t[:60]!r} differently "
                                 f"({len(a)} vs {len(b)} tokens)")
    step = max(1, len(texts) // verify_texts)
    sample = texts[::step][:verify_texts]
    max_diff = 0.0
    model.eval()
    trimmed.eval()
    with torch.no_grad():
        for i in range(0, len(sample), batch_size):
            chunk = sample[i:i + batch_size]
            a = model(**tokenizer(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits
            b = trimmed(**new_tok(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits
            max_diff = max(max_diff, float((a - b).abs().max()))
    if max_diff > 1e-4:
        raise VocabTrimError(f"trimmed and untrimmed models disagree: max logit difference {max_diff:.2e}")
    report = TrimReport(len(old_vocab), len(keep), old_params, count_parameters(trimmed), len(texts),
                        len(sample), max_diff)
    log.info("vocabulary trimmed %d -> %d tokens: %.2fM parameters (%.1f MB fp32) saved; verified on %d texts "
             "(max logit difference %.1e)", report.vocab_before, report.vocab_after, report.params_saved / 1e6,
             report.mb_saved, len(sample), max_diff)
    return trimmed, new_tok, report


def _copy_model(model):
    import copy

    return copy.deepcopy(model)
