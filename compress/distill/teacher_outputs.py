"""The teacher's outputs on the transfer texts: computed once (in torch, or through ONNX Runtime when only its logits
are needed) and cached on disk under a fingerprint of the checkpoint, the texts and ``max_length``."""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedistill.compress import progress
from edgedistill.compress.distill.losses import mean_pool
from edgedistill.compress.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class TeacherOutputs:
    """The teacher's outputs on the transfer texts, row i for text i."""

    logits: np.ndarray
    pooled: np.ndarray | None = None
    """Mean-pooled hidden states, the chosen layers' side by side: (texts, layers * hidden)."""
    attentions: list[np.ndarray] | None = None
    fingerprint: str = ""
    from_cache: bool = False


def _model_key(teacher_dir: Path | str, max_length: int, pooled: bool, attention: bool,
               layers: Sequence[int] | None = None, backend: str = "torch") -> str:
    """What decides a text's teacher outputs besides the text: the checkpoint (its
    :func:`~edgedistill.compress.fingerprints.checkpoint_hash`), max_length, the outputs kept."""
    from edgedistill.compress.fingerprints import checkpoint_hash

    if not any(p.suffix in (".safetensors", ".bin") for p in Path(teacher_dir).glob("*")):
        raise ConfigError("distill.teacher_dir", str(teacher_dir), "holds no model weights")
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

    from edgedistill.compress.evaluate import is_multilabel_model, long_texts_of
    from edgedistill.compress.textviews import TextViews, pooled_logits

    kwargs = {"attn_implementation": "eager"} if attention else {}
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir, **kwargs).eval()
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    texts = list(texts)
    views = TextViews(tok, texts, max_length, long_texts_of(model))  # the teacher reads a long text as it learned to
    if attention and views.n_windows != len(texts):
        raise ConfigError("distill.attention_loss_weight", "chunks", "the attention loss needs one window a text; "
                          "read long texts as head+tail or truncate")
    logits = np.zeros((views.n_windows, model.config.num_labels), dtype=np.float32)
    layers = list(layers) if layers is not None else [model.config.num_hidden_layers]
    width = model.config.hidden_size
    feats = np.zeros((views.n_windows, len(layers) * width), dtype=np.float32) if pooled else None
    attns: list[np.ndarray | None] = [None] * len(texts) if attention else []
    with torch.inference_mode(), progress.bar("labelling", views.n_windows) as bar:
        for idx, batch in views.batches(batch_size):
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
    multi = is_multilabel_model(model)
    del model
    gc.collect()
    return TeacherOutputs(pooled_logits(views, logits, multi), None if feats is None else views.pool(feats),
                          attns if attention else None)


def onnx_teacher(teacher_dir: Path | str, max_length: int) -> Path:
    """The teacher exported to ONNX once, parity-checked against torch by :func:`edgedistill.compress.export.export`,
    and kept in the cache under its checkpoint hash: ``<cache>/teacher-onnx/<hash>-<max_length>/``."""
    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.compress.exportmeta import MODEL_FILE
    from edgedistill.compress.fingerprints import checkpoint_hash
    from edgedistill.runtime.fsutil import cache_dir

    key = hashlib.sha256(checkpoint_hash(teacher_dir).encode()).hexdigest()[:16]
    dest = cache_dir() / "teacher-onnx" / f"{key}-{max_length}"
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
    from edgedistill.compress.textviews import TextViews, pooled_logits

    folder = onnx_teacher(teacher_dir, max_length)
    meta = read_export(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(folder / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
    views = TextViews(tok, list(texts), max_length, meta.long_texts)  # as the teacher learned to read a long text
    logits = None
    with progress.bar("labelling", views.n_windows) as bar:
        for idx, batch in views.batches(batch_size, return_tensors="np"):
            out = session.run(["logits"], {k: batch[k].astype(np.int64) for k in meta.input_names})[0]
            if logits is None:
                logits = np.zeros((views.n_windows, out.shape[1]), dtype=np.float32)
            logits[idx] = out
            bar.advance(len(idx))
    del session
    if logits is None:
        return TeacherOutputs(np.zeros((0, 0), np.float32))
    return TeacherOutputs(pooled_logits(views, logits, meta.task == "multi_label"))


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
    from edgedistill.runtime.fsutil import cache_dir

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
