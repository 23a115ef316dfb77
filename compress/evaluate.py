"""One evaluation protocol for every stage: torch checkpoints and ONNX packages alike.

Every number the toolchain reports (teacher, student, each exported or
quantized variant) comes from :func:`compute_metrics` on the same split, so
they are comparable::

    metrics = evaluate_torch("models/x/teacher", data.test)        # a torch checkpoint
    metrics = evaluate_package("models/x/package", data.test)      # what ships, through runtime/
    write_metrics(metrics, folder, "metrics")                       # metrics.json + metrics.md

Metrics: accuracy; macro and per-class precision / recall / F1; ROC-AUC (binary,
or one-vs-rest macro; ``None`` where undefined, e.g. a class absent from the
split); expected calibration error (15 equal-width bins on the top-label
confidence); the confusion matrix (rows true, columns predicted).

A cross-dataset check evaluates on another dataset's test split with its labels
mapped onto the model's (:func:`cross_dataset_split`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress import progress as progress_bars
from edgedistill.compress.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ECE_BINS = 15

# Label maps for the cross-dataset check between built-in datasets (their label -> the model's label).
CROSS_DATASET_LABELS: dict[str, dict[str, str]] = {
    "rt-critics": {"fresh": "positive", "rotten": "negative"},
    "movie-snippets": {"positive": "positive", "negative": "negative"},
    "tweets-sentiment": {"positive": "positive", "negative": "negative"},  # neutral is dropped
}


@dataclass
class ClassMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class Metrics:
    """What one model scored on one labelled split."""

    n: int
    labels: list[str]
    accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    roc_auc: float | None
    ece: float
    confusion: list[list[int]]
    """Rows: true label, columns: predicted label, both in ``labels`` order."""
    dataset: str | None = None
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    task: str = "single_label"
    """``multi_label``: ``accuracy`` is subset accuracy, the per-class rows are per label, no confusion matrix
    (see :mod:`edgedistill.compress.multilabel`)."""
    micro_f1: float | None = None
    """Multi-label only: F1 over every (text, label) decision."""
    samples_f1: float | None = None
    """Multi-label only: the mean over texts of each text's F1."""
    thresholds: list[float] | None = None
    """Multi-label only: the per-label thresholds the decisions used (None: 0.5 each)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Metrics:
        d = dict(d)
        d["per_class"] = {k: ClassMetrics(**v) for k, v in d["per_class"].items()}
        return cls(**d)

    def summary(self) -> dict[str, float | None]:
        """The headline numbers (for result tables and manifests)."""
        out = {"macro_f1": self.macro_f1, "accuracy": self.accuracy, "roc_auc": self.roc_auc, "ece": self.ece,
               "n": self.n}
        if self.task == "multi_label":
            out.update(micro_f1=self.micro_f1, samples_f1=self.samples_f1)
        return out

    def to_markdown(self, title: str = "Evaluation") -> str:
        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        where = " / ".join(x for x in (self.dataset, self.split) if x)
        lines = [f"# {title}", ""]
        if where:
            lines += [f"Data: {where}, {self.n} examples.", ""]
        multi = self.task == "multi_label"
        lines += ["| metric | value |", "|---|---|",
                  *([f"| micro F1 | {f(self.micro_f1)} |", f"| samples F1 | {f(self.samples_f1)} |"] if multi else []),
                  f"| {'subset accuracy' if multi else 'accuracy'} | {f(self.accuracy)} |",
                  f"| macro precision | {f(self.macro_precision)} |",
                  f"| macro recall | {f(self.macro_recall)} |", f"| macro F1 | {f(self.macro_f1)} |",
                  f"| ROC-AUC | {f(self.roc_auc)} |", f"| ECE ({ECE_BINS} bins) | {f(self.ece)} |", "",
                  "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {f(c.precision)} | {f(c.recall)} | {f(c.f1)} | {c.support} |"
                  for k, c in self.per_class.items()]
        if multi:
            return "\n".join(lines) + "\n"
        lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
                  "| | " + " | ".join(self.labels) + " |", "|---" * (len(self.labels) + 1) + "|"]
        lines += [f"| **{lab}** | " + " | ".join(str(v) for v in row) + " |"
                  for lab, row in zip(self.labels, self.confusion)]
        return "\n".join(lines) + "\n"


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over equal-width confidence bins (lo, hi] of |accuracy - confidence| * share."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to bin 0
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def compute_metrics(y_true: Sequence[Any] | np.ndarray, probs: np.ndarray, labels: Sequence[str],
                    thresholds: Sequence[float] | None = None) -> Metrics:
    """The protocol: every metric from true label ids and predicted probabilities ``(n, len(labels))``.

    Multi-label (``y_true`` holds tuples of label ids): sigmoid probabilities, decided by ``thresholds`` (one per
    label; None: 0.5), scored by :func:`edgedistill.compress.multilabel.multilabel_metrics`."""
    from edgedistill.compress.multilabel import is_multilabel, multilabel_metrics

    if is_multilabel(y_true):
        fields = multilabel_metrics(y_true, probs, labels, thresholds)
        fields["per_class"] = {k: ClassMetrics(*v) for k, v in fields["per_class"].items()}
        return Metrics(**fields)
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(labels)
    if probs.ndim != 2 or probs.shape != (len(y), k):
        raise DataError(f"probabilities of shape {probs.shape} do not match {len(y)} labels x {k} classes")
    if len(y) == 0:
        raise DataError("nothing to evaluate: the split is empty")
    if y.min() < 0 or y.max() >= k:
        raise DataError(f"label ids must be in [0, {k}); got {int(y.min())}..{int(y.max())}")
    pred = probs.argmax(axis=1)
    ids = list(range(k))
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=ids, average=None, zero_division=0)
    present = np.unique(y)
    auc: float | None = None
    if len(present) == k:  # undefined when a class is missing from the split
        if k == 2:
            auc = float(roc_auc_score(y, probs[:, 1]))
        else:
            auc = float(roc_auc_score(y, probs / probs.sum(axis=1, keepdims=True), multi_class="ovr",
                                      average="macro", labels=ids))
    return Metrics(
        n=int(len(y)), labels=list(labels), accuracy=float((pred == y).mean()),
        macro_precision=float(np.mean(p)), macro_recall=float(np.mean(r)), macro_f1=float(np.mean(f1)),
        per_class={lab: ClassMetrics(float(p[i]), float(r[i]), float(f1[i]), int(support[i]))
                   for i, lab in enumerate(labels)},
        roc_auc=auc, ece=expected_calibration_error(y, probs),
        confusion=confusion_matrix(y, pred, labels=ids).tolist(),
    )


def validation_metrics(y_true: Sequence[Any] | np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> Metrics:
    """The metrics a choice on the validation split reads (early stopping, the baseline's C, the quantize gate): a
    multi-label model's at per-label thresholds fitted on these very probabilities, as its package will ship them
    (so that a model whose scores rank the labels well but sit under 0.5, as early in training, is not scored 0);
    a single-label model's as :func:`compute_metrics` gives them."""
    from edgedistill.compress.multilabel import fit_thresholds, is_multilabel

    if is_multilabel(y_true):
        return compute_metrics(y_true, probs, labels, fit_thresholds(y_true, probs)[0])
    return compute_metrics(y_true, probs, labels)


def align_columns(probs: np.ndarray, model_labels: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Reorder probability columns from the model's label order into ``labels`` order (matched by name).

    Generic names (``LABEL_0``...) are taken to be in ``labels`` order already.
    """
    model_labels = list(model_labels)
    if model_labels == list(labels) or all(m == f"LABEL_{i}" for i, m in enumerate(model_labels)):
        if len(model_labels) != len(labels):
            raise DataError(f"the model has {len(model_labels)} outputs but the data has {len(labels)} labels")
        return probs
    if sorted(model_labels) != sorted(labels):
        raise DataError(f"the model's labels {model_labels} differ from the data's labels {list(labels)}")
    return probs[:, [model_labels.index(lab) for lab in labels]]


# ------------------------------------------------------------------------------ torch
def model_inputs(model, batch) -> dict[str, Any]:
    """The tokenizer outputs the model's forward takes (a BERT tokenizer's token_type_ids never reach MPNet)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in batch.items() if k in accepted}


def predict_proba_torch(model, tokenizer, texts: Sequence[str], *, max_length: int = 128, batch_size: int = 32,
                        device: str | None = None, progress: bool = False) -> np.ndarray:
    """Softmax probabilities ``(n, num_labels)`` in input order (a multi-label model's: one sigmoid per label):
    batched, no grad, dynamic padding.

    Texts are sorted by length so each batch pads little; the output is put back in input order. A long text is
    read as the model was trained to read it (its config's ``long_texts``, :mod:`edgedistill.compress.textviews`;
    ``chunks``: its windows' probabilities pooled). ``progress`` shows a bar (see
    :mod:`edgedistill.compress.progress`).
    """
    from edgedistill.compress.textviews import TextViews
    from edgedistill.runtime.probabilities import sigmoid, softmax

    multi = is_multilabel_model(model)
    views = TextViews(tokenizer, list(texts), max_length, long_texts_of(model))
    logits = window_logits(model, views, batch_size, device=device, progress=progress)
    return views.pool(sigmoid(logits) if multi else softmax(logits), "max" if multi else "mean")


def window_logits(model, views, batch_size: int = 32, *, device: str | None = None,
                  progress: bool = False) -> np.ndarray:
    """Raw float32 logits of the torch ``model`` on every window of ``views`` (a
    :class:`~edgedistill.compress.textviews.TextViews`), in window order: batched by length, no grad, the model
    left in the mode it was in."""
    import torch

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.zeros((views.n_windows, model.config.num_labels), dtype=np.float32)
    try:
        with torch.inference_mode(), progress_bars.bar("evaluating", views.n_windows, enabled=progress) as bar:
            for idx, batch in views.batches(batch_size):
                out[idx] = model(**model_inputs(model, batch.to(device))).logits.float().cpu().numpy()
                bar.advance(len(idx))
    finally:
        model.train(was_training)
    return out


def long_texts_of(model) -> str:
    """How ``model`` was trained to read a long text (``truncate`` for a checkpoint that does not say)."""
    return getattr(model.config, "long_texts", None) or "truncate"


def is_multilabel_model(model) -> bool:
    """A torch classifier trained with one sigmoid per label (``problem_type``)."""
    return getattr(model.config, "problem_type", None) == "multi_label_classification"


def torch_thresholds(model, tokenizer, split, num_labels: int, *, max_length: int, batch_size: int = 32) -> list[float]:
    """:func:`fit_thresholds` for a torch checkpoint on ``split`` (the validation split): the thresholds its test
    figures are then scored with, as every shipped candidate's are (columns in the model's label order, which is
    the data's)."""
    from edgedistill.compress.multilabel import as_matrix, fit_thresholds

    probs = predict_proba_torch(model, tokenizer, list(split.texts), max_length=max_length, batch_size=batch_size)
    return fit_thresholds(as_matrix(split.labels, num_labels), probs)[0]


def model_labels(model) -> list[str]:
    id2label = model.config.id2label
    return [id2label[i] for i in range(model.config.num_labels)]


def evaluate_torch(model_dir_or_model, split, labels: Sequence[str] | None = None, *, tokenizer=None,
                   max_length: int = 128, batch_size: int = 32, device: str | None = None,
                   dataset: str | None = None, split_name: str | None = "test", progress: bool = False,
                   thresholds: Sequence[float] | None = None) -> Metrics:
    """Evaluate a torch sequence classifier (a checkpoint folder, or a model plus its ``tokenizer``).

    ``split`` is a :class:`edgedistill.compress.data.Split`; ``labels`` are the data's label names (default: the
    model's); ``thresholds``: a multi-label model's per-label decision thresholds (None: 0.5), in ``labels`` order.
    """
    if isinstance(model_dir_or_model, (str, Path)):
        from transformers import AutoTokenizer

        from edgedistill.compress.checkpoints import load_classifier

        path = Path(model_dir_or_model)
        if not (path / "config.json").is_file():
            raise DataError("not a model checkpoint (no config.json)", path=path)
        model = load_classifier(path)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        if device:
            model.to(device)
    else:
        model = model_dir_or_model
        if tokenizer is None:
            raise ConfigError("tokenizer", None, "pass the tokenizer along with a model object")
    mlabels = model_labels(model)
    labels = list(labels) if labels is not None else mlabels
    probs = predict_proba_torch(model, tokenizer, split.texts, max_length=max_length, batch_size=batch_size,
                                device=device, progress=progress)
    metrics = compute_metrics(split.labels, align_columns(probs, mlabels, labels), labels, thresholds)
    metrics.dataset, metrics.split = dataset, split_name
    return metrics


# ---------------------------------------------------------------------------- packages
def evaluate_package(path_or_classifier, split, labels: Sequence[str] | None = None, *, batch_size: int = 32,
                     threads: int | None = None, dataset: str | None = None,
                     split_name: str | None = "test", progress: bool = False) -> Metrics:
    """Evaluate a model package (folder or .zip) or a loaded ``edgedistill.runtime.TextClassifier``: what ships.

    ``progress`` shows a bar. The texts go to the classifier in chunks of whole batches, in the order the
    runtime sorts them (by length, stable), so every batch is the one a single call would make."""
    if isinstance(path_or_classifier, (str, Path)):
        from edgedistill.runtime import TextClassifier

        clf = TextClassifier.load(path_or_classifier, threads=threads)
    else:
        clf = path_or_classifier
    labels = list(labels) if labels is not None else list(clf.labels)
    texts = list(split.texts)
    order = np.argsort([len(t) for t in texts], kind="stable")
    probs = np.zeros((len(texts), len(clf.labels)), dtype=np.float64)
    with progress_bars.bar("evaluating", len(texts), enabled=progress) as bar:
        for start in range(0, len(texts), 8 * batch_size):
            idx = order[start:start + 8 * batch_size]
            probs[idx] = clf.predict_proba([texts[i] for i in idx], batch_size=batch_size)
            bar.advance(len(idx))
    thresholds = getattr(clf, "thresholds", None) if getattr(clf, "multi_label", False) else None
    if thresholds is not None:
        thresholds = align_columns(np.asarray(thresholds)[None, :], clf.labels, labels)[0]
    metrics = compute_metrics(split.labels, align_columns(probs, clf.labels, labels), labels, thresholds)
    metrics.dataset, metrics.split = dataset, split_name
    return metrics


# ------------------------------------------------------------------------- cross-dataset
def cross_dataset_split(data_cfg, labels: Sequence[str], label_map: dict[str, str] | None = None,
                        exclude: Iterable[str] = ()):
    """Another dataset's test split with its labels mapped onto ``labels`` (a :class:`edgedistill.compress.data.Split`).

    ``data_cfg`` is a :class:`edgedistill.compress.data.DataConfig` (or a source name). Rows whose label has no
    mapping are dropped (e.g. ``neutral``); texts in ``exclude`` (say, the training texts) are dropped too,
    since some built-in datasets share their source.
    """
    from edgedistill.compress.data import DataConfig, Split, load_data

    if isinstance(data_cfg, str):
        data_cfg = DataConfig(source=data_cfg)
    if label_map is None:
        label_map = CROSS_DATASET_LABELS.get(data_cfg.source)
        if label_map is None:
            raise ConfigError("label_map", None, f"no built-in label map for {data_cfg.source!r}; "
                              "pass one (its label -> the model's label)")
    unknown = sorted(set(label_map.values()) - set(labels))
    if unknown:
        raise ConfigError("label_map", label_map, f"maps onto {unknown}, which are not model labels {list(labels)}")
    other = load_data(data_cfg)
    skip = set(exclude)
    lid = {lab: i for i, lab in enumerate(labels)}
    texts, ids = [], []
    for t, y in zip(other.test.texts, other.test.labels):
        name = other.label_names[y]
        if name in label_map and t not in skip:
            texts.append(t)
            ids.append(lid[label_map[name]])
    if not texts:
        raise DataError(f"no test rows of {data_cfg.source!r} map onto {list(labels)}", path=data_cfg.source)
    log.info("cross-dataset %s: %d of %d test rows kept", data_cfg.source, len(texts), len(other.test))
    return Split(texts, ids)


# -------------------------------------------------------------------------------- files
def write_metrics(metrics: Metrics, folder: Path | str, name: str = "metrics",
                  title: str | None = None) -> tuple[Path, Path]:
    """Write ``NAME.json`` and ``NAME.md`` into ``folder``; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jpath, mpath = folder / f"{name}.json", folder / f"{name}.md"
    jpath.write_text(json.dumps(metrics.to_dict(), indent=2) + "\n")
    mpath.write_text(metrics.to_markdown(title or f"Evaluation: {name}"))
    return jpath, mpath


def read_metrics(path: Path | str) -> Metrics:
    return Metrics.from_dict(json.loads(Path(path).read_text()))
