"""The teacher's outputs on the transfer texts: computed once (in torch, or through ONNX Runtime when only its logits
are needed: its int8 graph when that agrees with fp32, see :mod:`~edgedistill.compress.distill.labelling`), by every
process of a group at once, and cached on disk under a fingerprint of the checkpoint, the graph, the texts and
``max_length``."""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedistill.compress import parallel, progress
from edgedistill.compress.distill import labelling
from edgedistill.compress.distill.labelling import (LABEL_BATCH, Labelling, from_rank0, int8_graph, length_order,
                                                     onnx_threads, rank_and_world, shard_indices)
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
    labelling: Labelling | None = None
    """How the texts were labelled: the graph, its int8 agreement, texts/s (:class:`Labelling`)."""


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
                attention: bool = False, batch_size: int = LABEL_BATCH,
                layers: Sequence[int] | None = None) -> TeacherOutputs:
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
    and kept in the cache under its checkpoint hash: ``<cache>/teacher-onnx/<hash>-<max_length>/``. Its int8 copy
    for labelling (:func:`~edgedistill.compress.distill.labelling.int8_graph`) is kept beside ``model.onnx``."""
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
                     batch_size: int = LABEL_BATCH, int8: bool = False) -> TeacherOutputs:
    """The teacher's logits on ``texts`` through ONNX Runtime (see :func:`onnx_teacher`), sorted by length; through
    its dynamic-int8 copy with ``int8``."""
    folder = onnx_teacher(teacher_dir, max_length)
    return TeacherOutputs(_run_graph(folder, int8_graph(folder) if int8 else None, texts, max_length, batch_size))


def _run_graph(folder: Path, graph: Path | None, texts: Sequence[str], max_length: int,
               batch_size: int = LABEL_BATCH, what: str = "labelling") -> np.ndarray:
    """Logits of the exported teacher in ``folder`` (its ``model.onnx``, or the file ``graph``) on ``texts``; ``what``
    names the progress bar."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from edgedistill.compress.exportmeta import MODEL_FILE, read_export
    from edgedistill.compress.textviews import TextViews, pooled_logits

    meta = read_export(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = onnx_threads()
    session = ort.InferenceSession(str(graph or folder / MODEL_FILE), opts, providers=["CPUExecutionProvider"])
    views = TextViews(tok, list(texts), max_length, meta.long_texts)  # as the teacher learned to read a long text
    logits = None
    with progress.bar(what, views.n_windows) as bar:
        for idx, batch in views.batches(batch_size, return_tensors="np"):  # batches of about one length
            out = session.run(["logits"], {k: batch[k].astype(np.int64) for k in meta.input_names})[0]
            if logits is None:
                logits = np.zeros((views.n_windows, out.shape[1]), dtype=np.float32)
            logits[idx] = out
            bar.advance(len(idx))
    del session
    if logits is None:
        return np.zeros((0, 0), np.float32)
    return pooled_logits(views, logits, meta.task == "multi_label")


def _choose_graph(teacher_dir: Path | str, max_length: int, validation_texts: Sequence[str] | None) -> Labelling:
    """Which ONNX graph labels: the int8 copy when its labels agree with fp32's on the first
    :data:`~edgedistill.compress.distill.labelling.AGREEMENT_TEXTS` validation texts at least
    :data:`~edgedistill.compress.distill.labelling.INT8_MIN_AGREEMENT` of the time (measured once per graph and
    texts, and kept beside the graph), else fp32."""
    from edgedistill.compress.exportmeta import read_export

    line = labelling.INT8_MIN_AGREEMENT
    val = list(validation_texts or [])[:labelling.AGREEMENT_TEXTS]
    if not val:
        return Labelling("onnx-fp32", min_agreement=line, reason="no validation texts to check an int8 graph on")
    folder = onnx_teacher(teacher_dir, max_length)
    try:
        int8 = int8_graph(folder)
    except Exception as e:  # noqa: BLE001 (the quantiser fails in its own ways: label in fp32, and say why)
        log.warning("the teacher labels in fp32: its int8 graph could not be built (%s: %s)", type(e).__name__, e)
        return Labelling("onnx-fp32", min_agreement=line, reason=f"no int8 graph ({type(e).__name__}: {e})")
    record = labelling.agreement_file(int8, val)
    agree = labelling.read_agreement(record)
    if agree is None:
        fp32_logits = _run_graph(folder, None, val, max_length, what="agreement fp32")
        try:
            int8_logits = _run_graph(folder, int8, val, max_length, what="agreement int8")
        except Exception as e:  # noqa: BLE001 (onnxruntime's own error classes: label in fp32, and say why)
            log.warning("the teacher labels in fp32: its int8 graph does not run (%s: %s)", type(e).__name__, e)
            return Labelling("onnx-fp32", min_agreement=line, reason=f"int8 graph fails ({type(e).__name__}: {e})")
        agree = labelling.agreement(int8_logits, fp32_logits, read_export(folder).task == "multi_label")
        labelling.write_agreement(record, agree, len(val))
    use = agree >= line
    log.info("the teacher labels through its %s ONNX graph: int8 agrees with fp32 on %.2f%% of %d validation "
             "labels (the line: %.2f%%)", "int8" if use else "fp32", 100 * agree, len(val), 100 * line)
    return Labelling("onnx-int8" if use else "onnx-fp32", agree, len(val), line, graph_file=int8.name if use else "",
                     reason=f"int8 agreement {agree:.4f} {'>=' if use else '<'} {line}")


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


@dataclass
class _Plan:
    """What rank 0 decided and every process needs: how to label, and which texts the cache lacks."""

    labelling: Labelling
    missing: list[int] | None
    """Positions of the texts to label; None when the cache holds every one."""


def teacher_outputs(teacher_dir: Path | str, texts: Sequence[str], max_length: int, *, pooled: bool = False,
                    attention: bool = False, cache: Path | None = None, layers: Sequence[int] | None = None,
                    backend: str = "torch", validation_texts: Sequence[str] | None = None) -> TeacherOutputs:
    """The teacher's outputs on ``texts``: from the on-disk cache when its fingerprint matches, else computed
    (:func:`run_teacher`, or :func:`run_teacher_onnx` through the graph :func:`_choose_graph` picks on
    ``validation_texts``) and cached (written to a temp file and renamed). Rows of texts that an earlier transfer set
    of the same teacher, ``max_length`` and graph holds are reused: only new texts meet the teacher.

    In a process group every process calls this: rank 0 readies the graph and reads the cache, each process labels
    its shard of the new texts (:func:`~edgedistill.compress.distill.labelling.shard_indices` over them in order of
    length), rank 0 gathers the shards and writes the cache, and every process returns the same outputs."""
    from edgedistill.runtime.fsutil import cache_dir

    texts = list(texts)
    rank, world = rank_and_world()
    folder = Path(cache) if cache else cache_dir() / "teacher-outputs"
    # 1) rank 0 readies the graph and reads the cache; the others take its plan
    plan, path, fp, cached, row_of = (_plan(teacher_dir, texts, max_length, pooled, attention, layers, backend,
                                            validation_texts, folder, world) if rank == 0
                                      else (None, None, "", None, {}))
    plan = from_rank0(plan)
    if plan.missing is None:
        return from_rank0(cached)

    # 2) every process labels its shard of the texts the cache lacks
    def run(subset: list[str]) -> TeacherOutputs:
        if plan.labelling.graph == "torch":
            return run_teacher(teacher_dir, subset, max_length, pooled=pooled, attention=attention, layers=layers)
        return run_teacher_onnx(teacher_dir, subset, max_length, int8=plan.labelling.graph == "onnx-int8")

    started = time.perf_counter()
    new = _label(run, teacher_dir, texts, plan.missing, max_length, rank, world, plan.labelling)
    plan.labelling.seconds = time.perf_counter() - started
    if rank != 0:
        return from_rank0(None)
    # 3) rank 0 adds the cached rows, writes the cache; every process gets the same outputs
    out = new if new is not None and len(plan.missing) == len(texts) else _combine(texts, row_of, plan.missing, new,
                                                                                     pooled)
    _write(out, _text_digests(texts), path, fp)
    out.fingerprint, out.labelling = fp, plan.labelling
    return from_rank0(out)


def _plan(teacher_dir, texts: list[str], max_length: int, pooled: bool, attention: bool, layers, backend: str,
          validation_texts, folder: Path, world: int):
    """Rank 0: the graph that labels, the cache path and fingerprint, the cached outputs when the cache holds them
    all, else the rows other cached transfer sets hold (text digest -> (outputs, row))."""
    from edgedistill.compress.errors import ExportError

    lab = Labelling("torch", reason="teacher_backend = torch")
    if pooled or attention:
        lab = Labelling("torch", reason="inner states (pooled features, attention) come from torch only")
    elif backend == "onnx":
        try:
            onnx_teacher(teacher_dir, max_length)
            lab = _choose_graph(teacher_dir, max_length, validation_texts)
        except ExportError as e:  # an architecture the exporter can't take, or a graph that fails parity
            log.warning("the teacher runs in torch: its ONNX export failed (%s)", e)
            lab = Labelling("torch", reason=f"its ONNX export failed ({e})")
    graph = {"torch": "torch", "onnx-fp32": "onnx"}.get(lab.graph, f"onnx-int8/{lab.graph_file}")
    key = _model_key(teacher_dir, max_length, pooled, attention, layers, graph)  # graphs never share a cache
    fp = _fingerprint(key, texts)
    path = folder / f"{key}-{fp}.npz"
    digests = _text_digests(texts)
    if path.is_file():
        cached_digests, out = _load_cached(path)
        if np.array_equal(cached_digests, digests):
            log.info("teacher outputs for %d texts from the cache (%s)", len(texts), path.name)
            out.fingerprint, out.from_cache, out.labelling = fp, True, lab
            return _Plan(lab, None), path, fp, out, {}
        log.warning("cached teacher outputs %s do not match their texts: recomputing", path)
    # rows that other cached transfer sets of this teacher already hold
    row_of: dict[bytes, tuple[TeacherOutputs, int]] = {}
    if not attention and folder.is_dir():
        for other in sorted(folder.glob(f"{key}-*.npz")):
            other_digests, other_out = _load_cached(other)
            if len(other_digests) == len(other_out.logits):
                row_of.update({d: (other_out, i) for i, d in enumerate(other_digests.tolist())})
    missing = [i for i, d in enumerate(digests.tolist()) if d not in row_of]
    log.info("running the teacher %s over %d of %d transfer texts (max_length %d; %d reused from the cache; %s; "
             "%d process(es))", teacher_dir, len(missing), len(texts), max_length, len(texts) - len(missing),
             lab.graph, world)
    return _Plan(lab, missing), path, fp, None, row_of


def _label(run, teacher_dir, texts: list[str], missing: list[int], max_length: int, rank: int, world: int,
           lab: Labelling) -> TeacherOutputs | None:
    """The outputs of ``texts[missing]`` (None without any), in the order of ``missing``, on rank 0 (None on the
    others): in one process one run; in a group each rank runs its shard (blocks of whole batches, over the texts in
    order of length) and rank 0 puts the gathered shards together."""
    if world == 1:
        lab.texts_labelled, lab.texts_per_process = len(missing), [len(missing)]
        return run([texts[i] for i in missing]) if missing else None
    order = length_order(teacher_dir, [texts[i] for i in missing], max_length)  # the same on every rank
    mine = order[shard_indices(len(order), rank, world, LABEL_BATCH)]
    part = run([texts[missing[j]] for j in mine]) if len(mine) else None
    parts = parallel.gather((mine, part))
    lab.texts_labelled, lab.texts_per_process = len(missing), [len(m) for m, _ in parts]
    if rank != 0 or not missing:
        return None
    some = next(p for _, p in parts if p is not None)
    logits = np.zeros((len(missing), some.logits.shape[1]), dtype=np.float32)
    feats = None if some.pooled is None else np.zeros((len(missing), some.pooled.shape[1]), dtype=np.float32)
    attns: list[np.ndarray] | None = None if some.attentions is None else [np.zeros((0, 0))] * len(missing)
    for m, p in parts:
        if p is None:
            continue
        logits[m] = p.logits
        if feats is not None:
            feats[m] = p.pooled
        if attns is not None:
            for j, a in zip(m.tolist(), p.attentions):
                attns[j] = a
    return TeacherOutputs(logits, feats, attns)


def _combine(texts: list[str], row_of: dict[bytes, tuple[TeacherOutputs, int]], missing: list[int],
             new: TeacherOutputs | None, pooled: bool) -> TeacherOutputs:
    """The outputs of every text: rows of other cached transfer sets, and ``new`` at ``missing``."""
    some = new if new is not None else next(iter(row_of.values()))[0] if row_of else None
    if some is None:  # no texts
        return TeacherOutputs(np.zeros((len(texts), 0), dtype=np.float32))
    logits = np.zeros((len(texts), some.logits.shape[1]), dtype=np.float32)
    feats = np.zeros((len(texts), some.pooled.shape[1]), dtype=np.float32) if pooled else None
    for i, d in enumerate(_text_digests(texts).tolist()):
        if d in row_of:
            src, j = row_of[d]
            logits[i] = src.logits[j]
            if pooled:
                feats[i] = src.pooled[j]
    if new is not None:
        logits[missing] = new.logits
        if pooled:
            feats[missing] = new.pooled
    return TeacherOutputs(logits, feats, None)


def _write(out: TeacherOutputs, digests: np.ndarray, path: Path, fp: str) -> None:
    """The outputs into the cache file ``path`` (a temp file renamed: a reader never sees half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"logits": out.logits, "text_sha": digests}
    if out.pooled is not None:
        arrays["pooled"] = out.pooled
    if out.attentions is not None:
        arrays["attn_len"] = np.array([a.shape[0] for a in out.attentions], dtype=np.int32)
        arrays["attn_flat"] = (np.concatenate([a.ravel() for a in out.attentions]) if out.attentions
                               else np.zeros(0, np.float32))
    fd, tmp = tempfile.mkstemp(prefix=f".{fp}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
