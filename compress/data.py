"""Labelled data: load, clean, split, label map, tokenize.

Every stage reads its data through :func:`load_data`, so the teacher, the
student and every exported variant are trained and measured on the same,
deterministic splits. Sources are a built-in name (see ``edgedistill.compress.sources``) or
a local CSV / JSONL / Parquet file with selectable text and label columns, read into rows by
:mod:`edgedistill.compress.readers`.

Cleaning: texts are stripped, empty ones dropped, exact duplicates removed
(the first occurrence is kept; a text seen with two different labels is
dropped entirely, since it cannot be learned). Splits are stratified per class
from a seed. Errors name the file, the column and the row.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.compress.errors import ConfigError, DataError
from edgedistill.compress.readers import LIST_SEP, Row, is_file_source, read_file, read_rows

log = logging.getLogger(__name__)

@dataclass
class DataConfig:
    """Where the labelled data comes from and how it is split."""

    source: str = "movie-snippets"
    """A built-in dataset name (``edgedistill sources list``) or a path to a CSV / JSONL / Parquet file."""
    text_column: str = "text"
    """The column holding the texts (CSV / TSV header, JSONL key or Parquet column)."""
    label_column: str = "label"
    """The column holding the labels; any values, read as strings (the classes sorted are the outputs)."""
    encoding: str = "utf-8"
    """Text encoding of a user's CSV / JSONL file (built-in datasets know their own)."""
    test_file: str | None = None
    """Optional separate test file (same columns); then only train/validation are split off ``source``."""
    test_size: float = 0.2
    """Share of the rows (after cleaning and de-duplication) cut off as the stratified test split; 0 needs a
    ``test_file``."""
    validation_size: float = 0.1
    """Share of the rows cut off as the stratified validation split (``test_size + validation_size`` must
    stay below 0.9)."""
    seed: int = 42
    """Seed of the splits and subsamples: the same seed gives the same splits."""
    max_train_samples: int | None = None
    """Stratified subsample of the training split (quick profiles). Validation and test stay whole."""
    max_validation_samples: int | None = None
    """Stratified subsample of the validation split (the quick teacher profile's early stopping); None: all
    of it. The test split stays whole."""
    labels: list[str] | None = None
    """Keep only the rows with these labels (e.g. a classifier of five classes now, the sixth added by an update);
    None: every label. Multi-label: the other labels are removed from each text (a text left with none is dropped)."""
    label_separator: str | None = None
    """Makes the task multi-label: the label column holds each text's labels joined by it (``"billing|urgent"``).
    A list value in a JSONL / Parquet label column is read as multi-label without it. None: one label a text."""
    long_texts: str = "truncate"
    """How a text longer than a model's token limit is read, in training and at inference alike: ``truncate`` (its
    first tokens), ``head+tail`` (its first quarter and last three quarters of the limit) or ``chunks`` (windows of
    the limit, 32 tokens of overlap, at most 8, whose probabilities the package averages; the maximum per label
    for a multi-label task). See ``edgedistill.runtime.views``."""

    def __post_init__(self) -> None:
        for name in ("test_size", "validation_size"):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"data.{name}", v, "must be in [0, 1)")
        if self.test_file is None and self.test_size == 0:
            raise ConfigError("data.test_size", 0, "needs a test_file when no test split is cut")
        if self.test_size + self.validation_size >= 0.9:
            raise ConfigError("data.test_size", self.test_size,
                              "test_size + validation_size leaves too little to train on")
        for name in ("max_train_samples", "max_validation_samples"):
            v = getattr(self, name)
            if v is not None and v < 2:
                raise ConfigError(f"data.{name}", v, "must be at least 2 (or unset)")
        if not self.source:
            raise ConfigError("data.source", self.source, "name a built-in dataset or a file")
        from edgedistill.runtime.views import LONG_TEXTS

        if self.long_texts not in LONG_TEXTS:
            raise ConfigError("data.long_texts", self.long_texts, f"must be one of {', '.join(LONG_TEXTS)}")
        if self.label_separator is not None and (not isinstance(self.label_separator, str)
                                                 or not self.label_separator.strip()):
            raise ConfigError("data.label_separator", self.label_separator,
                              "must be a non-blank string such as '|' (or unset for one label a text)")
        if self.labels is not None:
            if isinstance(self.labels, str) or not self.labels:
                raise ConfigError("data.labels", self.labels, "must be a non-empty list of labels (or unset)")
            self.labels = [str(lab) for lab in self.labels]


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: list[Any]
    """One label id a text (``int``), or for a multi-label task the sorted tuple of a text's label ids."""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class LabelledData:
    name: str
    label_names: list[str]
    train: Split
    validation: Split
    test: Split
    stats: dict[str, int] = field(default_factory=dict)
    multi_label: bool = False
    """Each text carries a set of labels (``Split.labels`` holds tuples of ids); else one label id a text."""

    @property
    def task(self) -> str:
        return "multi_label" if self.multi_label else "single_label"

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.label_names)}

    def split(self, name: str) -> Split:
        if name not in ("train", "validation", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, name)

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per split and label, for ``edgedistill data show`` (multi-label: texts carrying each label)."""
        return {s: {self.label_names[k]: v for k, v in sorted(label_counts(self.split(s).labels).items())}
                for s in ("train", "validation", "test")}


def label_counts(labels: Sequence[Any]) -> Counter:
    """Texts per label id: of single labels, or of label tuples (a text counts once for each of its labels)."""
    if labels and isinstance(labels[0], tuple):
        return Counter(k for ys in labels for k in ys)
    return Counter(labels)


def multi_hot(labels: Sequence[Any], num_labels: int) -> Any:
    """``(n, num_labels)`` float32 0/1 targets of label-id tuples (binary cross-entropy's):
    :func:`edgedistill.compress.multilabel.as_matrix` as floats."""
    import numpy as np

    from edgedistill.compress.multilabel import as_matrix

    return as_matrix(labels, num_labels).astype(np.float32)


# --------------------------------------------------------------------------- cleaning
def clean(rows: list[Row], stats: dict[str, int]) -> list[Row]:
    """Strip, drop empty texts, drop exact duplicates; a text with two labels is dropped entirely."""
    stats["rows_read"] = len(rows)
    labels_of: dict[str, set[str]] = {}
    order: list[str] = []
    empty = 0
    for text, label in rows:
        text = text.strip()
        if not text:
            empty += 1
            continue
        if text not in labels_of:
            labels_of[text] = set()
            order.append(text)
        labels_of[text].add(label)
    conflicts = {t for t, labs in labels_of.items() if len(labs) > 1}
    stats["dropped_empty"] = empty
    stats["dropped_duplicates"] = len(rows) - empty - len(order)
    stats["dropped_conflicting"] = len(conflicts)
    return [(t, next(iter(labels_of[t]))) for t in order if t not in conflicts]


SUBSET_FLOOR = 8
"""A training or validation subsample keeps at least min(all of them, 8) texts of every class, so no class is
left out or left with one example; a subsample may hold a few more texts than asked."""


def _take(count: int, fraction: float, floor: int) -> int:
    """How many of a class's ``count`` texts a stratified share takes: ``fraction`` of them (rounded), at least
    ``floor`` (or all of them, when fewer)."""
    return max(round(count * fraction), min(floor, count))


def subset_sizes(counts: dict[Any, int], n: int | None) -> dict[Any, int]:
    """Texts of each class kept by a subsample of ``n`` (``max_train_samples``) from ``counts`` per class: what
    :func:`load_data` takes, for the planner to say what a subset leaves out."""
    total = sum(counts.values())
    if n is None or n >= total:
        return dict(counts)
    return {k: _take(c, n / total, SUBSET_FLOOR) for k, c in counts.items()}


def _stratified(indices_by_label: dict[int, list[int]], fraction: float, rng: random.Random,
                keep_one: bool, floor: int = 0) -> tuple[list[int], list[int]]:
    """Take ``fraction`` of each class (rounded), at least ``floor`` of it (:func:`_take`).

    ``keep_one`` leaves at least one of each class in the rest.
    """
    taken, rest = [], []
    for _, idx in sorted(indices_by_label.items()):
        idx = idx[:]
        rng.shuffle(idx)
        n = _take(len(idx), fraction, floor)
        if keep_one:
            n = min(n, len(idx) - 1)
        taken += idx[:n]
        rest += idx[n:]
    return sorted(taken), sorted(rest)


def _by_label(labels: list[int], idx: Iterable[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i in idx:
        out.setdefault(labels[i], []).append(i)
    return out


def strata(labels: Sequence[Any]) -> list[int]:
    """The stratum of each text: its label, or for a multi-label text its rarest label (ties: the lower id), so
    that a stratified split keeps the rare labels in every split (an approximation of iterative stratification:
    the frequent labels ride along with the rest)."""
    if not labels or not isinstance(labels[0], tuple):
        return list(labels)
    freq = label_counts(labels)
    return [min(ys, key=lambda k: (freq[k], k)) for ys in labels]


def _subsample(split: Split, n: int | None, seed: int) -> Split:
    if n is None or n >= len(split):
        return split
    taken, _ = _stratified(_by_label(strata(split.labels), range(len(split))), n / len(split),
                           random.Random(seed), keep_one=False, floor=SUBSET_FLOOR)
    return Split([split.texts[i] for i in taken], [split.labels[i] for i in taken])


def _keep_labels(rows: list[Row], labels: list[str] | None, where: str, column: str, multi: bool) -> list[Row]:
    if labels is None:
        return rows
    seen = {x for _, lab in rows for x in lab.split(LIST_SEP)} if multi else {lab for _, lab in rows}
    if missing := sorted(set(labels) - seen):
        raise DataError(f"data.labels names {missing}, which never occur", path=where, column=column)
    if not multi:
        return [r for r in rows if r[1] in labels]
    kept = ((t, LIST_SEP.join(x for x in lab.split(LIST_SEP) if x in labels)) for t, lab in rows)
    return [(t, lab) for t, lab in kept if lab]


def _label_sets(rows: list[Row], separator: str | None, where: str, column: str) -> list[Row]:
    """Multi-label rows with their labels split on ``separator`` (and on :data:`LIST_SEP`, which joins a list
    value), stripped, de-duplicated and sorted: one canonical key per label set, so that de-duplication and
    conflicts see ``a|b`` and ``b|a`` as one."""
    out = []
    for i, (text, lab) in enumerate(rows, start=1):
        parts = lab.replace(separator, LIST_SEP).split(LIST_SEP) if separator else lab.split(LIST_SEP)
        names = sorted({p.strip() for p in parts if p.strip()})
        if not names:
            raise DataError(f"no label left after splitting {lab!r} on {separator!r}", path=where, column=column,
                            row=i)
        out.append((text, LIST_SEP.join(names)))
    return out


def load_data(cfg: DataConfig, min_classes: int = 2) -> LabelledData:
    """Load, clean and split ``cfg.source`` deterministically (same seed, same splits). ``min_classes``: an update
    may bring the examples of one new class alone."""
    stats: dict[str, int] = {}
    raw = read_rows(cfg.source, cfg.text_column, cfg.label_column, cfg.encoding)
    multi = cfg.label_separator is not None or any(LIST_SEP in lab for _, lab in raw)
    if multi:
        raw = _label_sets(raw, cfg.label_separator, cfg.source, cfg.label_column)
    rows = _keep_labels(clean(raw, stats), cfg.labels, cfg.source, cfg.label_column, multi)
    test_rows: list[Row] = []
    if cfg.test_file:
        test_stats: dict[str, int] = {}
        test_raw = read_file(cfg.test_file, cfg.text_column, cfg.label_column, cfg.encoding)
        if multi:
            test_raw = _label_sets(test_raw, cfg.label_separator, cfg.test_file, cfg.label_column)
        test_rows = _keep_labels(clean(test_raw, test_stats), cfg.labels, cfg.test_file, cfg.label_column, multi)
        test_texts = {t for t, _ in test_rows}
        before = len(rows)
        rows = [r for r in rows if r[0] not in test_texts]  # keep test texts out of training
        stats["dropped_in_test_file"] = before - len(rows)
    if not rows:
        raise DataError("no usable rows after cleaning (all empty or duplicated)", path=cfg.source)
    names_of = (lambda lab: lab.split(LIST_SEP)) if multi else (lambda lab: [lab])
    label_names = sorted({x for _, lab in rows for x in names_of(lab)})
    if len(label_names) < min_classes:
        raise DataError(f"only one class ({label_names[0]!r}); a classifier needs at least two",
                        path=cfg.source, column=cfg.label_column)
    label2id = {n: i for i, n in enumerate(label_names)}

    def ids(lab: str) -> Any:
        return tuple(label2id[x] for x in names_of(lab)) if multi else label2id[lab]

    texts = [t for t, _ in rows]
    labels = [ids(lab) for _, lab in rows]
    keys = strata(labels)
    rng = random.Random(cfg.seed)

    if cfg.test_file:
        for i, (_, lab) in enumerate(test_rows, start=1):
            if unknown := [x for x in names_of(lab) if x not in label2id]:
                raise DataError(f"label {unknown[0]!r} never occurs in the training data {label_names}",
                                path=cfg.test_file, column=cfg.label_column, row=i)
        test = Split([t for t, _ in test_rows], [ids(lab) for _, lab in test_rows])
        rest = list(range(len(texts)))
    else:
        test_idx, rest = _stratified(_by_label(keys, range(len(texts))), cfg.test_size, rng, keep_one=True)
        test = Split([texts[i] for i in test_idx], [labels[i] for i in test_idx])
    frac = cfg.validation_size / (1.0 - (0.0 if cfg.test_file else cfg.test_size))
    val_idx, train_idx = _stratified(_by_label(keys, rest), frac, rng, keep_one=True)
    train = Split([texts[i] for i in train_idx], [labels[i] for i in train_idx])
    validation = Split([texts[i] for i in val_idx], [labels[i] for i in val_idx])
    counts = label_counts(train.labels)
    if rare := [label_names[k] for k, c in counts.items() if c < 2]:
        log.warning("%s: classes with a single training example: %s", cfg.source, rare)
    if missing := [n for k, n in enumerate(label_names) if k not in counts]:
        log.warning("%s: labels with no training example (never learned): %s", cfg.source, missing)
    train = _subsample(train, cfg.max_train_samples, cfg.seed)
    validation = _subsample(validation, cfg.max_validation_samples, cfg.seed)
    name = Path(cfg.source).stem if is_file_source(cfg.source) else cfg.source
    return LabelledData(name, label_names, train, validation, test, stats, multi_label=multi)


def label_map(data: LabelledData) -> dict[str, Any]:
    """The label map saved beside every model (labels in output order)."""
    return {"labels": data.label_names, "id2label": {str(i): n for i, n in data.id2label.items()},
            "label2id": data.label2id, "dataset": data.name, "task": data.task}


def save_label_map(data: LabelledData, folder: Path) -> Path:
    path = Path(folder) / "labels.json"
    path.write_text(json.dumps(label_map(data), indent=2))
    return path


def tokenize(split: Split, tokenizer, max_length: int, num_labels: int | None = None, long_texts: str = "truncate"):
    """A ``datasets.Dataset`` of input ids (unpadded: pad per batch with DataCollatorWithPadding). A multi-label
    split's labels become 0/1 float rows of ``num_labels`` (the targets of binary cross-entropy). ``long_texts``:
    how a long text is read (:mod:`edgedistill.compress.textviews`); with ``chunks`` each window is an example
    with its text's label."""
    import datasets

    labels = split.labels
    if labels and isinstance(labels[0], tuple):
        if num_labels is None:
            raise ValueError("tokenize: a multi-label split needs num_labels")
        labels = multi_hot(labels, num_labels).tolist()
    if long_texts != "truncate":
        from edgedistill.compress.textviews import TextViews

        views = TextViews(tokenizer, split.texts, max_length, long_texts)
        return datasets.Dataset.from_dict({**views.columns(), "labels": [labels[i] for i in views.owner]})
    ds = datasets.Dataset.from_dict({"text": split.texts, "labels": labels})
    return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length),
                  batched=True, remove_columns=["text"], desc="tokenizing")


def sorted_by_length(ds):
    """``ds`` (a tokenised ``datasets.Dataset``) shortest first, for evaluation: each padded batch then holds
    texts of about one length, so it pads little. Metrics do not depend on the order of the examples."""
    lengths = ds.map(lambda b: {"_length": [len(x) for x in b["input_ids"]]}, batched=True, desc="measuring")
    return lengths.sort("_length").remove_columns("_length")


def length_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int, return_tensors: str = "pt"):
    """``(indices, padded batch)`` over ``texts`` in batches of about one token length, shortest first: each
    batch pads little. Write each batch's outputs to ``out[indices]`` to get them back in input order. The one
    loop behind every batched inference of the toolchain (evaluation, the teacher's outputs, cached features)."""
    import numpy as np

    texts = list(texts)
    enc = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(e) for e in enc], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                             return_tensors=return_tensors)


def token_lengths(tokenizer, texts: Sequence[str], limit: int) -> dict[str, Any]:
    """How many tokens ``texts`` take untruncated (p50, p95, p99, max) and the share that ``limit`` cuts.

    With length-grouped batches and padding per batch, compute follows the texts' real lengths, so the limit
    matters only for the texts above it: this says how many there are, and which limit would keep 99%."""
    import numpy as np

    n = np.array([len(x) for x in tokenizer(list(texts), truncation=False)["input_ids"]] or [0])
    p99 = int(np.percentile(n, 99))
    return {"p50": int(np.percentile(n, 50)), "p95": int(np.percentile(n, 95)), "p99": p99, "max": int(n.max()),
            "limit": int(limit), "truncated_share": float((n > limit).mean()),
            "limit_for_99pct": int(-(-p99 // 8) * 8)}


def config_dict(cfg: DataConfig) -> dict[str, Any]:
    return asdict(cfg)
