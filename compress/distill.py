"""Knowledge distillation: train a compact student on the teacher's soft targets.

``distill(cfg) -> Path`` runs one distillation and writes a checkpoint folder
like the teacher's::

    OUTPUT/
      model.safetensors, config.json   the student (save_pretrained)
      tokenizer.json, ...               its tokenizer (trimmed if asked)
      labels.json                       label map
      metrics.json, metrics.md          test split, through edgedistill.compress.evaluate
      distill.json                      config, parameters, size, timing, transfer set, trim report

The loss of a transfer example with teacher logits ``t`` and student logits ``s``::

    alpha * T^2 * KL(softmax(t / T) || softmax(s / T))  +  (1 - alpha) * CE(s, gold)
      + hidden_loss_weight * mean over k mapped layers of MSE(P_k(mean_pool(student_k)), mean_pool(teacher_k))
      + attention_loss_weight * KL(teacher last-layer attention || student's)

Unlabelled transfer texts have no gold label: they take only the teacher terms
(their CE is masked out). Teacher outputs are computed once, over the training
texts plus the unlabelled transfer texts (never a validation or test text),
with the teacher's own tokenizer, and cached on disk under a fingerprint of the
teacher checkpoint, the texts and ``max_length``; the teacher is freed before
the student trains. Sentence-level outputs (logits, mean-pooled features) need
no token alignment, so teacher and student may tokenize differently (MPNet
teacher, BERT student); the attention loss compares token positions and so
needs both to split every text into the same tokens.

Many processes: the same entry point runs under ``torchrun --nproc_per_node N -m edgedistill.compress.distill --config
recipe.toml`` or ``accelerate launch -m edgedistill.compress.distill --config recipe.toml``, as the teacher's does
(:mod:`edgedistill.compress.parallel`). Rank 0 builds the student and computes the teacher outputs into the cache while
the others wait, then reads them; the student trains data-parallel (each process a shard of every epoch, batch_size
per process); only rank 0 evaluates and writes the output. Mixed precision (``precision``) runs on CUDA only.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress import parallel, profiles, progress, sources
from edgedistill.compress.adapt import Adaptation, adapt_on
from edgedistill.compress.data import DataConfig, length_batches, sorted_by_length
from edgedistill.compress.errors import ConfigError, TransferSetError
from edgedistill.compress.fsutil import publishing
from edgedistill.compress.student import StudentConfig

log = logging.getLogger("edgedistill.compress.distill")  # the same name when run with -m

# Fields of DistillConfig left None take their value from the profile. ``quick`` runs in minutes on a
# 2-core CPU (short sequences, subsets); ``full`` is the real recipe (whole splits; under an hour on 2 cores).
# max_train_samples / max_validation_samples fill DataConfig's fields of the same name when those are None.
PROFILES: dict[str, dict[str, Any]] = {
    # quick: more labelled sentences was the one lever that paid (2,500 -> 5,000: +1.1 points of macro-F1 on
    # movie-snippets for two minutes); temperature, alpha, learning rate, a pooled-hidden loss and augmentation
    # did not (the ablation in benchmarks/results). Up to 8,000 sentences (all of movie-snippets' 7,397) keeps
    # `make demo` within 15 minutes on 2 cores; the whole validation split decides early stopping (500 texts
    # were too noisy).
    "quick": {"epochs": 2.0, "learning_rate": 1e-4, "batch_size": 32, "max_length": 64,
              "max_transfer_samples": 2000, "max_train_samples": 8000, "max_validation_samples": None,
              "augment": 0},
    "full": {"epochs": 3.0, "learning_rate": 1e-4, "batch_size": 32, "max_length": 128,
             "max_transfer_samples": None, "max_train_samples": None, "max_validation_samples": None,
             "augment": 0},
}
TEACHER_BACKENDS = ("onnx", "torch")


@dataclass
class DistillConfig:
    """One distillation run. Fields left None come from ``PROFILES[profile]``."""

    teacher_dir: str | None = None
    """The fine-tuned teacher checkpoint folder (needed unless alpha=0 with no teacher losses and the
    student is not built from the teacher)."""
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    output_dir: str = "models/student"
    profile: str = "quick"
    alpha: float = 0.5
    """Weight of the soft-target (KD) term; 1 - alpha weighs the gold-label cross-entropy."""
    temperature: float = 2.0
    hidden_loss_weight: float = 0.0
    """Pooled hidden-state MSE (through a learned projection when widths differ)."""
    hidden_loss_layers: int = 1
    """How many student layers the hidden loss maps onto teacher layers: evenly spaced, the last included
    (:func:`layer_map`); 1 is the last layer only."""
    attention_loss_weight: float = 0.0
    """Last-layer attention KL; needs teacher and student to share a tokenizer."""
    transfer: list[str] = field(default_factory=list)
    """Unlabelled transfer texts beside the training texts: built-in corpora (``snippets-unlabelled``)
    or files (CSV/JSONL/Parquet with a ``text`` column, or .txt, one text a line)."""
    max_transfer_samples: int | None = None
    """At most this many unlabelled transfer texts (a seeded sample)."""
    augment: int | None = None
    """Perturbed copies of each training text added to the transfer set, labelled by the teacher only
    (:mod:`edgedistill.compress.augment`: content words swapped for embedding neighbours, a span deleted)."""
    augment_p: float = 0.3
    """Probability that augmentation swaps a content word."""
    augment_methods: list[str] = field(default_factory=lambda: ["replace", "delete"])
    epochs: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    max_length: int | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    evals_per_epoch: int = 2
    patience: int = 3
    """Early stopping: evaluations without a better validation macro-F1 before training stops."""
    seed: int = 42
    precision: str = "auto"
    """``auto`` (bf16, or fp16 where the GPU lacks it, on CUDA; else fp32), ``fp32``, ``fp16`` or ``bf16``: the
    student's training (autocast); the teacher outputs and the test evaluation stay fp32."""
    teacher_backend: str = "onnx"
    """How the teacher labels the transfer texts when only its logits are needed: ``onnx`` exports it once
    (parity-checked, cached by its checkpoint hash) and runs ONNX Runtime, 1.9x torch's texts/s for MPNet-base
    on 2 cores (benchmarks/teacher_labelling.py); ``torch`` runs it in torch. The hidden and attention losses
    need inner states, so they always run torch."""

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if isinstance(self.student, dict):
            self.student = StudentConfig(**self.student)
        if isinstance(self.transfer, str):
            self.transfer = [self.transfer]
        self.transfer = list(self.transfer)
        profiles.check("distill", self.profile)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("distill.alpha", self.alpha, "must be in [0, 1]")
        if self.augment is not None and (isinstance(self.augment, bool) or not isinstance(self.augment, int)
                                         or self.augment < 0):
            raise ConfigError("distill.augment", self.augment, "must be a whole number of copies >= 0")
        if not 0.0 < self.augment_p <= 1.0:
            raise ConfigError("distill.augment_p", self.augment_p, "must be in (0, 1]")
        from edgedistill.compress.augment import METHODS

        self.augment_methods = list(self.augment_methods)
        bad = [m for m in self.augment_methods if m not in METHODS]
        if not self.augment_methods or bad:
            raise ConfigError("distill.augment_methods", self.augment_methods,
                              f"{'unknown ' + str(bad) + '; ' if bad else 'name at least one; '}"
                              f"choose from {list(METHODS)}")
        if self.precision not in parallel.PRECISIONS:
            raise ConfigError("distill.precision", self.precision, f"must be one of {list(parallel.PRECISIONS)}")
        if self.teacher_backend not in TEACHER_BACKENDS:
            raise ConfigError("distill.teacher_backend", self.teacher_backend,
                              f"must be one of {', '.join(TEACHER_BACKENDS)}")
        if not self.temperature > 0:
            raise ConfigError("distill.temperature", self.temperature, "must be > 0")
        if isinstance(self.hidden_loss_layers, bool) or not isinstance(self.hidden_loss_layers, int) \
                or self.hidden_loss_layers < 1:
            raise ConfigError("distill.hidden_loss_layers", self.hidden_loss_layers, "must be a layer count >= 1")
        for name in ("hidden_loss_weight", "attention_loss_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name}", getattr(self, name), "must be >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError("distill.warmup_ratio", self.warmup_ratio, "must be in [0, 1)")
        for name, lo in (("epochs", 0), ("learning_rate", 0), ("batch_size", 0), ("max_length", 7),
                         ("max_transfer_samples", -1), ("evals_per_epoch", 0), ("patience", 0)):
            v = getattr(self, name)
            if v is not None and not v > lo:
                raise ConfigError(f"distill.{name}", v, f"must be > {lo}")
        if self.student.builder == "static":
            for name in ("hidden_loss_weight", "attention_loss_weight"):
                if getattr(self, name) > 0:
                    raise ConfigError(f"distill.{name}", getattr(self, name),
                                      "the static student has no layers or attention to match; use the soft "
                                      "targets (alpha) alone")
        if self.teacher_dir is None and self.needs_teacher:
            raise ConfigError("distill.teacher_dir", None,
                              "a teacher checkpoint is needed (alpha > 0, a teacher loss, or builder teacher-layers "
                              "or static)")
        if not self.output_dir:
            raise ConfigError("distill.output_dir", self.output_dir, "must name a folder")

    @property
    def needs_teacher(self) -> bool:
        return (self.alpha > 0 or self.hidden_loss_weight > 0 or self.attention_loss_weight > 0
                or self.student.builder in ("teacher-layers", "static"))

    @property
    def needs_teacher_outputs(self) -> bool:
        return self.alpha > 0 or self.hidden_loss_weight > 0 or self.attention_loss_weight > 0

    def resolved(self) -> DistillConfig:
        """A copy with every None field filled from ``PROFILES[profile]`` (the DataConfig subset sizes too)."""
        return profiles.resolve(self, PROFILES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ the loss
def distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels).

    The KL term is averaged over every example in the batch; the CE term over the labelled ones only
    (label -100 marks an unlabelled transfer text). Returns a scalar tensor.
    """
    import torch
    import torch.nn.functional as F

    student_logits = student_logits.float()  # under autocast: bf16 logits would round the teacher's away
    loss = student_logits.new_zeros(())
    if alpha > 0:
        t = temperature
        log_p_s = F.log_softmax(student_logits / t, dim=-1)
        log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
        loss = loss + alpha * t * t * kl
    if alpha < 1 and labels is not None:
        mask = labels != -100
        if bool(mask.any()):
            loss = loss + (1 - alpha) * F.cross_entropy(student_logits[mask], labels[mask])
    return loss if isinstance(loss, torch.Tensor) else torch.as_tensor(loss)


def mean_pool(hidden, attention_mask):
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def layer_map(student_config, teacher_depth: int, k: int) -> list[tuple[int, int]]:
    """``k`` (student, teacher) pairs of ``hidden_states`` indices (0 is the embeddings) for the hidden loss.

    Student layers are evenly spaced with the last included (6 layers, k=3: 2, 4, 6). A student copied from the
    teacher's own layers (``teacher-layers``) maps each layer to the one it was copied from; any other student
    maps layer ``s`` of ``L_s`` to teacher layer ``round(s * L_t / L_s)``, as TinyBERT's uniform mapping does.
    """
    depth = student_config.num_hidden_layers
    if k > depth:
        raise ConfigError("distill.hidden_loss_layers", k, f"the student has only {depth} layers")
    origin = getattr(student_config, "student", None) or {}
    kept = origin.get("layers_kept") if origin.get("builder") == "teacher-layers" else None
    pairs = []
    for j in range(1, k + 1):
        s = round(j * depth / k)
        t = kept[s - 1] + 1 if kept else round(s * teacher_depth / depth)
        pairs.append((s, min(max(t, 1), teacher_depth)))
    return pairs


def attention_loss(student_attn, teacher_attn: Sequence, attention_mask):
    """Mean over rows of KL(teacher || student) of head-averaged last-layer attention, per real token."""
    import torch

    student_attn = student_attn.float()  # under fp16 autocast the 1e-9 floor would round to 0, and log(0) to -inf
    total, rows = student_attn.new_zeros(()), 0
    for i, t in enumerate(teacher_attn):
        n = int(attention_mask[i].sum())
        t = torch.as_tensor(t, dtype=student_attn.dtype, device=student_attn.device)
        assert t.shape == (n, n), f"teacher attention {tuple(t.shape)} vs {n} student tokens"
        s = student_attn[i, :n, :n].clamp(min=1e-9)
        total = total + (t * (t.clamp(min=1e-9).log() - s.log())).sum()
        rows += n
    return total / max(rows, 1)


# --------------------------------------------------------------------- teacher outputs, cached
@dataclass
class TeacherOutputs:
    """The teacher's outputs on the transfer texts, row i for text i."""

    logits: np.ndarray
    pooled: np.ndarray | None = None
    """Mean-pooled hidden states, the chosen layers' side by side: (texts, layers * hidden)."""
    attentions: list[np.ndarray] | None = None
    fingerprint: str = ""
    from_cache: bool = False


def checkpoint_hash(model_dir: Path | str) -> str:
    """sha256 over a checkpoint's weights and config (what decides its outputs)."""
    from edgedistill.compress.sources import sha256_file

    model_dir = Path(model_dir)
    h = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and (
        p.suffix in (".safetensors", ".bin") or p.name in ("config.json", "tokenizer.json", "vocab.txt")))
    if not files:
        raise ConfigError("distill.teacher_dir", str(model_dir), "holds no model weights")
    for p in files:
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode() + b"\0")
    return h.hexdigest()


def _model_key(teacher_dir: Path | str, max_length: int, pooled: bool, attention: bool,
               layers: Sequence[int] | None = None, backend: str = "torch") -> str:
    """What decides a text's teacher outputs besides the text: the checkpoint, max_length, the outputs kept."""
    h = hashlib.sha256(checkpoint_hash(teacher_dir).encode())
    h.update(f"|max_length={max_length}|pooled={pooled}|attention={attention}|".encode())
    if pooled and layers is not None:  # the last layer alone keeps the key it always had
        h.update(f"layers={','.join(map(str, layers))}|".encode())
    if backend != "torch":
        h.update(f"backend={backend}|".encode())
    return h.hexdigest()[:16]


def _text_digests(texts: Sequence[str]) -> np.ndarray:
    return np.array([hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()[:16] for t in texts], dtype="S16")


def _fingerprint(key: str, texts: Sequence[str]) -> str:
    """The cache key of a transfer set: the teacher's :func:`_model_key` and the texts, in order."""
    h = hashlib.sha256(key.encode())
    h.update(f"|n={len(texts)}|".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:32]


def run_teacher(teacher_dir: Path | str, texts: Sequence[str], max_length: int, *, pooled: bool = False,
                attention: bool = False, batch_size: int = 32, layers: Sequence[int] | None = None) -> TeacherOutputs:
    """Load the teacher, run it over ``texts`` with its own tokenizer, free it. Sorted by length for speed.

    ``pooled`` keeps the mean-pooled hidden states of ``layers`` (``hidden_states`` indices; default the last)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    kwargs = {"attn_implementation": "eager"} if attention else {}
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir, **kwargs).eval()
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    texts = list(texts)
    logits = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    layers = list(layers) if layers is not None else [model.config.num_hidden_layers]
    width = model.config.hidden_size
    feats = np.zeros((len(texts), len(layers) * width), dtype=np.float32) if pooled else None
    attns: list[np.ndarray | None] = [None] * len(texts) if attention else []
    with torch.inference_mode(), progress.bar("labelling", len(texts)) as bar:
        for idx, batch in length_batches(tok, texts, max_length, batch_size):
            out = model(**batch, output_hidden_states=pooled, output_attentions=attention)
            logits[idx] = out.logits.float().numpy()
            if pooled:
                feats[idx] = torch.cat([mean_pool(out.hidden_states[k], batch["attention_mask"]) for k in layers],
                                       -1).float().numpy()
            if attention:
                last = out.attentions[-1].float().mean(1)  # (b, L, L), heads averaged
                for j, i in enumerate(idx):
                    n = int(batch["attention_mask"][j].sum())
                    attns[i] = last[j, :n, :n].numpy().copy()
            bar.advance(len(idx))
    del model
    gc.collect()
    return TeacherOutputs(logits, feats, attns if attention else None)


def onnx_teacher(teacher_dir: Path | str, max_length: int) -> Path:
    """The teacher exported to ONNX once, parity-checked against torch by :func:`edgedistill.compress.export.export`,
    and kept in the cache under its checkpoint hash: ``<cache>/teacher-onnx/<hash>-<max_length>/``."""
    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.compress.exportmeta import MODEL_FILE
    from edgedistill.compress.sources import cache_dir

    dest = cache_dir() / "teacher-onnx" / f"{checkpoint_hash(teacher_dir)[:16]}-{max_length}"
    if not (dest / MODEL_FILE).is_file():
        log.info("exporting the teacher %s to ONNX once (%s)", teacher_dir, dest)
        export(ExportConfig(checkpoint=str(teacher_dir), output=str(dest), max_length=max_length, overwrite=True))
    return dest


def run_teacher_onnx(teacher_dir: Path | str, texts: Sequence[str], max_length: int, *,
                     batch_size: int = 32) -> TeacherOutputs:
    """The teacher's logits on ``texts`` through ONNX Runtime (see :func:`onnx_teacher`), sorted by length."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from edgedistill.compress.exportmeta import MODEL_FILE, read_export

    folder = onnx_teacher(teacher_dir, max_length)
    names = read_export(folder).input_names
    tok = AutoTokenizer.from_pretrained(folder)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(folder / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
    texts = list(texts)
    logits = None
    with progress.bar("labelling", len(texts)) as bar:
        for idx, batch in length_batches(tok, texts, max_length, batch_size, return_tensors="np"):
            out = session.run(["logits"], {k: batch[k].astype(np.int64) for k in names})[0]
            if logits is None:
                logits = np.zeros((len(texts), out.shape[1]), dtype=np.float32)
            logits[idx] = out
            bar.advance(len(idx))
    del session
    return TeacherOutputs(logits if logits is not None else np.zeros((0, 0), np.float32))


def _load_cached(path: Path) -> tuple[np.ndarray, TeacherOutputs]:
    with np.load(path) as z:
        logits = z["logits"]
        feats = z["pooled"] if "pooled" in z.files else None
        digests = z["text_sha"] if "text_sha" in z.files else np.zeros(0, dtype="S16")
        attns = None
        if "attn_flat" in z.files:
            flat, lens = z["attn_flat"], z["attn_len"]
            offs = np.concatenate([[0], np.cumsum(lens.astype(np.int64) ** 2)])
            attns = [flat[offs[i]:offs[i + 1]].reshape(n, n) for i, n in enumerate(lens)]
    return digests, TeacherOutputs(logits, feats, attns)


def teacher_outputs(teacher_dir: Path | str, texts: Sequence[str], max_length: int, *, pooled: bool = False,
                    attention: bool = False, cache: Path | None = None,
                    layers: Sequence[int] | None = None, backend: str = "torch") -> TeacherOutputs:
    """The teacher's outputs on ``texts``: from the on-disk cache when its fingerprint matches, else computed
    with :func:`run_teacher` and cached (written to a temp file and renamed). Rows of texts that an earlier
    transfer set of the same teacher and ``max_length`` holds are reused: only new texts meet the teacher."""
    from edgedistill.compress.sources import cache_dir

    texts = list(texts)
    if pooled or attention:
        backend = "torch"  # inner states come from torch only
    if backend == "onnx":
        from edgedistill.compress.errors import ExportError

        try:
            onnx_teacher(teacher_dir, max_length)
        except ExportError as e:  # an architecture the exporter can't take, or a graph that fails parity
            log.warning("the teacher runs in torch: its ONNX export failed (%s)", e)
            backend = "torch"

    def run(subset: list[str]) -> TeacherOutputs:
        if backend == "onnx":
            return run_teacher_onnx(teacher_dir, subset, max_length)
        return run_teacher(teacher_dir, subset, max_length, pooled=pooled, attention=attention, layers=layers)

    key = _model_key(teacher_dir, max_length, pooled, attention, layers, backend)
    fp = _fingerprint(key, texts)
    folder = Path(cache) if cache else cache_dir() / "teacher-outputs"
    path = folder / f"{key}-{fp}.npz"
    digests = _text_digests(texts)
    if path.is_file():
        cached_digests, out = _load_cached(path)
        if np.array_equal(cached_digests, digests):
            log.info("teacher outputs for %d texts from the cache (%s)", len(texts), path.name)
            out.fingerprint, out.from_cache = fp, True
            return out
        log.warning("cached teacher outputs %s do not match their texts: recomputing", path)
    # rows that other cached transfer sets of this teacher already hold
    row_of: dict[bytes, tuple[TeacherOutputs, int]] = {}
    if not attention and folder.is_dir():
        for other in sorted(folder.glob(f"{key}-*.npz")):
            other_digests, other_out = _load_cached(other)
            if len(other_digests) == len(other_out.logits):
                row_of.update({d: (other_out, i) for i, d in enumerate(other_digests.tolist())})
    missing = [i for i, d in enumerate(digests.tolist()) if d not in row_of]
    log.info("running the teacher %s over %d of %d transfer texts (max_length %d; %d reused from the cache)",
             teacher_dir, len(missing), len(texts), max_length, len(texts) - len(missing))
    if len(missing) == len(texts):
        out = run(texts)
    else:
        new = run([texts[i] for i in missing]) if missing else None
        some = next(iter(row_of.values()))[0]
        logits = np.zeros((len(texts), some.logits.shape[1]), dtype=np.float32)
        feats = np.zeros((len(texts), some.pooled.shape[1]), dtype=np.float32) if pooled else None
        for i, d in enumerate(digests.tolist()):
            if d in row_of:
                src, j = row_of[d]
                logits[i] = src.logits[j]
                if pooled:
                    feats[i] = src.pooled[j]
        if new is not None:
            logits[missing] = new.logits
            if pooled:
                feats[missing] = new.pooled
        out = TeacherOutputs(logits, feats, None)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"logits": out.logits, "text_sha": digests}
    if out.pooled is not None:
        arrays["pooled"] = out.pooled
    if out.attentions is not None:
        arrays["attn_len"] = np.array([a.shape[0] for a in out.attentions], dtype=np.int32)
        arrays["attn_flat"] = (np.concatenate([a.ravel() for a in out.attentions]) if out.attentions
                               else np.zeros(0, np.float32))
    fd, tmp = tempfile.mkstemp(prefix=f".{fp}.", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    out.fingerprint = fp
    return out


# ----------------------------------------------------------------------------- transfer set
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
    from edgedistill.compress.data import read_texts

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
        from edgedistill.compress.augment import augment_texts, embedding_neighbours, words_of

        neighbours = embedding_neighbours(cfg.teacher_dir, words_of(train))
        augmented = augment_texts(train, cfg.augment, neighbours=neighbours, p=cfg.augment_p,
                                  methods=cfg.augment_methods, exclude=held_out | seen, seed=cfg.seed)
        log.info("augmentation: %d new texts from %d training texts (%d copies each, p=%g, %s)", len(augmented),
                 len(train), cfg.augment, cfg.augment_p, "+".join(cfg.augment_methods))
    extra += augmented
    texts = train + extra
    if leaked := held_out.intersection(texts):
        raise TransferSetError(f"{len(leaked)} validation/test texts in the transfer set, e.g. "
                               f"{next(iter(leaked))[:60]!r}")
    return TransferSet(texts, list(data.train.labels) + [-100] * len(extra), len(train), len(extra), dropped,
                       len(augmented))


def same_tokens(tok_a, tok_b, texts: Sequence[str], max_length: int) -> bool:
    """Whether two tokenizers split every text into the same token strings (attention maps align)."""
    a = tok_a(list(texts), truncation=True, max_length=max_length)["input_ids"]
    b = tok_b(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return all(tok_a.convert_ids_to_tokens(x) == tok_b.convert_ids_to_tokens(y) for x, y in zip(a, b))


# ------------------------------------------------------------------------------ the trainer
def _trainer_class():
    import torch
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """A Trainer whose loss is the distillation loss on cached teacher outputs (see the module doc)."""

        def __init__(self, *args, teacher: TeacherOutputs | None, alpha: float, temperature: float,
                     hidden_loss_weight: float = 0.0, attention_loss_weight: float = 0.0,
                     hidden_layers: Sequence[int] = (-1,), **kwargs):
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False
            self.alpha, self.temperature = alpha, temperature
            self.hidden_w, self.attn_w = hidden_loss_weight, attention_loss_weight
            self.hidden_layers = list(hidden_layers)
            self.t_logits = torch.from_numpy(teacher.logits) if teacher is not None else None
            self.t_pooled = (torch.from_numpy(teacher.pooled)
                             if teacher is not None and teacher.pooled is not None else None)
            self.t_attn = teacher.attentions if teacher is not None else None
            self.parts: dict[str, float] = {}
            self.seen: set[int] = set()
            """The transfer texts this process trained on (its shards under data parallelism)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            idx = inputs.pop("teacher_index", None)  # training only: a transfer text's row
            labels = inputs.pop("labels", None)
            if idx is not None and model.training:
                self.seen.update(idx.tolist())
            hidden = idx is not None and self.hidden_w > 0
            attn = idx is not None and self.attn_w > 0
            outputs = model(**inputs, output_hidden_states=hidden, output_attentions=attn)
            logits = outputs.logits
            if idx is None or self.t_logits is None:  # evaluation, or plain fine-tuning (alpha = 0)
                loss = distillation_loss(logits, None, labels, 0.0, 1.0)
            else:
                cpu_idx = idx.cpu()
                loss = distillation_loss(logits, self.t_logits[cpu_idx].to(logits.device), labels,
                                         self.alpha, self.temperature)
                if hidden:
                    projs = self.accelerator.unwrap_model(model).distill_projection
                    mask = inputs["attention_mask"]
                    s = torch.cat([p(mean_pool(outputs.hidden_states[k], mask))
                                   for p, k in zip(projs, self.hidden_layers)], -1)
                    t = self.t_pooled[cpu_idx].to(s.device, s.dtype)
                    loss = loss + self.hidden_w * torch.nn.functional.mse_loss(s, t)
                if attn:
                    s_attn = outputs.attentions[-1].mean(1)
                    loss = loss + self.attn_w * attention_loss(
                        s_attn, [self.t_attn[i] for i in cpu_idx.tolist()], inputs["attention_mask"])
            if return_outputs:
                outputs = type(outputs)(logits=logits)
                return loss, outputs
            return loss

    return DistillTrainer


# ------------------------------------------------------------------------------ distill
def _datasets(tokenizer, transfer: TransferSet, validation, max_length: int):
    import datasets

    # each text's row: where its teacher outputs are, and which texts a process trained on
    cols = {"text": transfer.texts, "labels": transfer.labels, "teacher_index": list(range(len(transfer.texts)))}
    train = datasets.Dataset.from_dict(cols)
    val = datasets.Dataset.from_dict({"text": list(validation.texts), "labels": list(validation.labels)})

    def tok(b):
        return tokenizer(b["text"], truncation=True, max_length=max_length)

    train = train.map(tok, batched=True, remove_columns=["text"], desc="tokenizing transfer set")
    val = val.map(tok, batched=True, remove_columns=["text"], desc="tokenizing validation")
    return train, sorted_by_length(val)


def _teacher_labels(teacher_dir: Path | str) -> list[str]:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(teacher_dir)
    return [c.id2label[i] for i in range(c.num_labels)]


def distill(cfg: DistillConfig) -> Path:
    """Distil ``cfg.teacher_dir`` into the student ``cfg.student`` on ``cfg.data``; returns the output folder.

    Under torchrun or accelerate launch every process calls this; see the module doc for who does what."""
    from transformers import set_seed

    from edgedistill.compress.data import load_data

    cfg = cfg.resolved()
    started = time.perf_counter()
    data = load_data(cfg.data)
    if cfg.needs_teacher:
        tdir = Path(cfg.teacher_dir)
        if not (tdir / "config.json").is_file():
            raise ConfigError("distill.teacher_dir", str(tdir), "is not a model checkpoint (no config.json)")
        tlabels = _teacher_labels(tdir)
        generic = all(n == f"LABEL_{i}" for i, n in enumerate(tlabels))
        if (tlabels != data.label_names and not generic) or len(tlabels) != data.num_labels:
            raise ConfigError("distill.teacher_dir", str(tdir),
                              f"the teacher's labels {tlabels} differ from the data's {data.label_names}")
    use_unlabelled = cfg.needs_teacher_outputs
    if (cfg.transfer or cfg.augment) and not use_unlabelled:
        log.warning("alpha=0 and no teacher losses: the unlabelled transfer texts would carry no signal; "
                    "they are not used")
    transfer = build_transfer_set(replace(cfg, transfer=cfg.transfer if use_unlabelled else [],
                                          augment=cfg.augment if use_unlabelled else 0), data)

    out = Path(cfg.output_dir)
    # the Trainer's checkpoints: one folder every process names alike (each reloads the best one at the end)
    work = out.with_name(f".{out.name}.partial")
    args = _training_args(cfg, work, len(transfer.texts))  # under a launcher, this joins the process group
    rank0 = args.process_index == 0
    with args.main_process_first(desc="checkpoint folder"):
        if rank0:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
    try:
        set_seed(cfg.seed)
        # rank 0 first: what it computes into the cache (teacher outputs, a static student's token vectors), the
        # others then read
        with args.main_process_first(desc="student and teacher outputs"):
            adaptation = _adapt(cfg, data)
            model, tokenizer, teacher, pairs = _student_and_teacher(cfg, data, transfer, adaptation)
        result = _train(cfg, args, data, transfer, model, tokenizer, teacher, pairs)
        parallel.barrier()  # every process has reloaded the best checkpoint before rank 0 removes it
        if rank0:
            _save(cfg, data, transfer, result, teacher, adaptation, out, started)
    finally:
        if rank0:
            shutil.rmtree(work, ignore_errors=True)
    parallel.barrier()  # the others return once the output is there
    return out


def _adapt(cfg: DistillConfig, data) -> Adaptation | None:
    """The student's pretrained encoder adapted on ``cfg.student.adapt_texts`` (cached by edgedistill.compress.adapt),
    or None when it names none."""
    if not cfg.student.adapt_texts:
        return None
    model_path = sources.resolve_model(cfg.student.model, field="student.model")
    return adapt_on("student", model_path, cfg.student.adapt_texts, data,
                    cfg.student.adapt_settings(max_length=cfg.max_length, seed=cfg.seed))


def _student_and_teacher(cfg: DistillConfig, data, transfer: TransferSet, adaptation: Adaptation | None = None):
    """The student and its tokenizer (from the adapted encoder when there is one), the teacher's outputs on the
    transfer texts (None without teacher losses) and the hidden loss's (student, teacher) layer pairs."""
    import torch

    from edgedistill.compress.student import build_student

    model, tokenizer = build_student(cfg.student, cfg.teacher_dir, data.num_labels, data.id2label,
                                     corpus=transfer.texts, encoder=adaptation.path if adaptation else None)
    teacher = None
    pairs: list[tuple[int, int]] = []
    t_layers = None
    if cfg.hidden_loss_weight > 0:
        from transformers import AutoConfig

        t_depth = AutoConfig.from_pretrained(cfg.teacher_dir).num_hidden_layers
        pairs = layer_map(model.config, t_depth, cfg.hidden_loss_layers)
        t_layers = None if [t for _, t in pairs] == [t_depth] else [t for _, t in pairs]
        log.info("hidden loss over %d layer pair(s) (student, teacher): %s", len(pairs), pairs)
    if cfg.needs_teacher_outputs:
        if cfg.attention_loss_weight > 0:
            from transformers import AutoTokenizer

            t_tok = AutoTokenizer.from_pretrained(cfg.teacher_dir)
            if not same_tokens(t_tok, tokenizer, transfer.texts, cfg.max_length):
                raise ConfigError("distill.attention_loss_weight", cfg.attention_loss_weight,
                                  "the attention loss needs teacher and student to split texts into the same "
                                  "tokens; these tokenizers differ (use hidden_loss_weight instead)")
            model.set_attn_implementation("eager")
        teacher = teacher_outputs(cfg.teacher_dir, transfer.texts, cfg.max_length,
                                  pooled=cfg.hidden_loss_weight > 0, attention=cfg.attention_loss_weight > 0,
                                  layers=t_layers, backend=cfg.teacher_backend)
        agree = float((teacher.logits[:transfer.n_labelled].argmax(1)
                       == np.asarray(transfer.labels[:transfer.n_labelled])).mean())
        log.info("teacher agrees with %.1f%% of the gold training labels", 100 * agree)
    if cfg.hidden_loss_weight > 0:
        t_width = teacher.pooled.shape[1] // len(pairs)
        s_width = model.config.hidden_size
        model.distill_projection = torch.nn.ModuleList(
            torch.nn.Linear(s_width, t_width) if s_width != t_width else torch.nn.Identity() for _ in pairs)
    return model, tokenizer, teacher, pairs


def _training_args(cfg: DistillConfig, work: Path, n_train: int):
    from transformers import TrainingArguments

    steps_per_epoch = math.ceil(n_train / (cfg.batch_size * parallel.world_size()))
    eval_steps = max(1, steps_per_epoch // cfg.evals_per_epoch)
    return TrainingArguments(
        output_dir=str(work / "checkpoints"), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=max(cfg.batch_size, 64),
        weight_decay=cfg.weight_decay, eval_strategy="steps",
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is the share of the training steps
        eval_steps=eval_steps, save_strategy="steps", save_steps=eval_steps, save_total_limit=1,
        save_only_model=True, load_best_model_at_end=True, metric_for_best_model="macro_f1",
        greater_is_better=True, logging_steps=max(1, min(50, eval_steps)), report_to=[],
        remove_unused_columns=False, seed=cfg.seed, data_seed=cfg.seed, dataloader_num_workers=0,
        dataloader_pin_memory=False, label_names=["labels"], train_sampling_strategy="group_by_length",
        disable_tqdm=True,  # edgedistill.compress.progress shows the training instead
        **parallel.training_args(cfg.precision, "distill.precision"),
    )


@dataclass
class _Trained:
    model: Any
    tokenizer: Any
    best_validation_macro_f1: float | None
    train_seconds: float
    lengths: dict[str, Any]
    processes: dict[str, Any]


def _train(cfg: DistillConfig, args, data, transfer: TransferSet, model, tokenizer, teacher: TeacherOutputs | None,
           pairs: list[tuple[int, int]]) -> _Trained:
    """Every process: train on its shard; the best checkpoint (on validation macro-F1) comes back on each."""
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from edgedistill.compress.data import token_lengths
    from edgedistill.compress.evaluate import compute_metrics

    lengths = token_lengths(tokenizer, transfer.texts, cfg.max_length)
    log.info("transfer texts: %d tokens at p50, %d at p99, %d at most; max_length %d cuts %.1f%% of them",
             lengths["p50"], lengths["p99"], lengths["max"], cfg.max_length, 100 * lengths["truncated_share"])
    if lengths["truncated_share"] > 0.05:
        log.warning("max_length %d truncates %.0f%% of the transfer texts; %d would keep 99%% whole",
                    cfg.max_length, 100 * lengths["truncated_share"], lengths["limit_for_99pct"])
    train_ds, val_ds = _datasets(tokenizer, transfer, data.validation, cfg.max_length)

    def val_metrics(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        probs = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), -1).numpy()
        m = compute_metrics(p.label_ids, probs, data.label_names)
        return {"macro_f1": m.macro_f1, "accuracy": m.accuracy}

    trainer = _trainer_class()(
        model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=val_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)],
        teacher=teacher, alpha=cfg.alpha, temperature=cfg.temperature,
        hidden_loss_weight=cfg.hidden_loss_weight, attention_loss_weight=cfg.attention_loss_weight,
        hidden_layers=[s for s, _ in pairs],
    )
    t_train = time.perf_counter()
    with progress.training(trainer):
        trainer.train()
    train_seconds = time.perf_counter() - t_train
    seen = parallel.gather(sorted(trainer.seen))
    processes = {"world_size": args.world_size, "backend": args.ddp_backend if args.world_size > 1 else None,
                 "device": str(args.device), "precision": parallel.precision_of(args),
                 "texts_per_process": [len(s) for s in seen],
                 "texts_covered": len(set().union(*map(set, seen)))}
    best = trainer.state.best_metric
    model = trainer.model
    if hasattr(model, "distill_projection"):
        del model.distill_projection
    model = model.cpu().eval()
    del trainer
    return _Trained(model, tokenizer, best, train_seconds, lengths, processes)


def _save(cfg: DistillConfig, data, transfer: TransferSet, result: _Trained, teacher: TeacherOutputs | None,
          adaptation: Adaptation | None, out: Path, started: float) -> None:
    """Rank 0: the student, its tokenizer, label map, test metrics and distill.json, published as one folder."""
    from edgedistill.compress.data import save_label_map
    from edgedistill.compress.evaluate import evaluate_torch, write_metrics
    from edgedistill.compress.student import count_parameters

    model, tokenizer = result.model, result.tokenizer
    with publishing(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_label_map(data, tmp)
        metrics = evaluate_torch(model, data.test, data.label_names, tokenizer=tokenizer,
                                 max_length=cfg.max_length, dataset=data.name, progress=True)
        params = count_parameters(model)
        size_mb = (tmp / "model.safetensors").stat().st_size / 1e6
        metrics.extra.update({"params": params, "size_mb": round(size_mb, 3), "stage": "student"})
        write_metrics(metrics, tmp, "metrics", title=f"Student ({cfg.student.builder}) on {data.name}")
        info = {
            "config": cfg.to_dict(),
            "params": params, "size_mb": round(size_mb, 3),
            "layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
            "vocab": model.config.vocab_size, "vocab_trim": getattr(model.config, "vocab_trim", None),
            "test": metrics.summary(), "best_validation_macro_f1": result.best_validation_macro_f1,
            "transfer": {"labelled": transfer.n_labelled, "unlabelled": transfer.n_unlabelled,
                         "augmented": transfer.n_augmented, "held_out_dropped": transfer.dropped_overlap,
                         "token_lengths": result.lengths},
            "teacher_outputs": ({"fingerprint": teacher.fingerprint, "from_cache": teacher.from_cache}
                                if teacher is not None else None),
            "adaptation": asdict(adaptation) if adaptation else None,
            "processes": result.processes,
            "train_seconds": round(result.train_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / "distill.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    log.info("student: test macro-F1 %.4f, %.1fM parameters, %.1f MB -> %s", metrics.macro_f1, params / 1e6,
             size_mb, out)


def main(argv: list[str] | None = None) -> None:
    """``python -m edgedistill.compress.distill --config recipe.toml`` (also under torchrun / accelerate launch)."""
    from edgedistill.compress.recipe import load_recipe

    parser = argparse.ArgumentParser(prog="python -m edgedistill.compress.distill", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True,
                        help="A recipe, or a TOML / JSON file of its tables (data, student, distill).")
    parser.add_argument("--profile", help="quick | full (default: the recipe's).")
    parser.add_argument("--teacher", help="The teacher checkpoint (default: the recipe's build folder's).")
    parser.add_argument("--output-dir", help="Where the student goes (default: the recipe's build folder).")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                        help="Override a recipe value, as `edgedistill build --set` does (repeatable).")
    a = parser.parse_args(argv)
    recipe = load_recipe(a.config, profile=a.profile, overrides=a.set, default_name=Path(a.config).stem)
    owned = {k: v for k, v in (("teacher_dir", a.teacher), ("output_dir", a.output_dir)) if v}
    cfg = recipe.distill(**owned)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(distill(cfg))  # noqa: T201 (the script's one result line)


if __name__ == "__main__":
    main()
