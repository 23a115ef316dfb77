"""Lifelong updates: teach a shipped classifier new data without forgetting, and show what changed first.

``update(build, cfg)`` takes a finished build (or an earlier update of it) and new labelled data, and writes a
new version beside it, ``<build>/updates/v<N>/`` (``student/``, ``onnx/``, ``package/``, ``update_report.md``),
never touching the package it started from::

    old student --(fine-tune on the new data, per cfg.method)--> student --> export --> quantize --> package

Methods (:data:`METHODS`; the loss is :func:`~edgedistill.compress.update_train.lwf_loss`):

- ``naive``: the gold labels of the new data alone: the reference that shows forgetting;
- ``lwf``: Learning without Forgetting (Li & Hoiem, 2016): the old model's soft outputs on the new texts are
  distillation targets beside the new gold labels, ``(1 - alpha) * CE + alpha * T^2 * KL``, the KL over the old
  classes only (a class the old model never had has no old logit);
- ``rehearsal``: a seeded sample of the old training texts (``rehearsal.jsonl`` in the build folder, never in a
  package) is replayed with its gold labels beside the new data;
- ``lwf+rehearsal``: both (the old model's outputs are targets on the replayed texts too).

New labels grow the classification head: the old classes keep their output positions, new ones are appended.

Multi-label builds (config.json ``"task": "multi_label"``): the gold term is the binary cross-entropy of every
output against the text's label set, and LwF's term is the distiller's binary one on the old labels' outputs,
``(1 - alpha) * BCE(s, gold) + alpha * T^2 * BCE(sigmoid(s_old / T), sigmoid(t_old / T))``. New data with one label
a text reads each as the set of that label alone; multi-label data onto a single-label build is refused (its
softmax cannot become one sigmoid per label). Replayed rows keep their label sets (a list of names in
``rehearsal.jsonl``), and the package ships per-label thresholds for every label, new ones included.

Long texts: the update reads a text as the package does (the student's ``long_texts``: ``head+tail`` or ``chunks``,
see :mod:`edgedistill.compress.textviews`): each window a training example with its text's labels and, for LwF,
the old model's outputs on that window; every evaluation pools a text's windows.

The gate, on validation data only (the test splits are reported, never read by a choice): the update ships only
if its macro-F1 on the old tasks' validation texts drops by at most ``forget_budget`` points and its macro-F1 on
the new data's validation split improves on the old package's. Both are measured through the runtime on the
packages themselves (multi-label: each decides at the thresholds it ships, which the package stage fitted on
validation). A refused update raises :class:`~edgedistill.compress.errors.UpdateRefused` with one line saying why;
its candidate stays in ``updates/v<N>.refused/`` for inspection, and nothing the old version shipped changes.

This module decides what runs in which order; :mod:`~edgedistill.compress.update_train` holds the loss, the grown
head and the training loop, :mod:`~edgedistill.compress.update_gate` the packages' scores, the verdict and the report.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from edgedistill.compress import profiles
from edgedistill.compress.data import DataConfig, LabelledData, Split, load_data
from edgedistill.compress.errors import ConfigError, UpdateRefused
from edgedistill.compress.layout import BuildLayout
from edgedistill.compress.training_settings import TrainingSettings
from edgedistill.compress.update_gate import compare, report_markdown, task_macro_f1, verdict
from edgedistill.compress.update_train import grow_head, train
from edgedistill.runtime.fsutil import write_text_atomic

log = logging.getLogger(__name__)

METHODS = ("naive", "lwf", "rehearsal", "lwf+rehearsal")
REHEARSAL_FILE = "rehearsal.jsonl"
TASKS_FILE = "tasks.json"
REPORT_JSON, REPORT_MD = "update_report.json", "update_report.md"
UPDATES = "updates"


# The fields of UpdateConfig left None take these values: a short fine-tune of a small model that is already
# trained, at a lower step than a distillation's. An update keeps the best of all its validations unless
# ``patience`` is set (its runs are short), and trains on the CPU in fp32.
DEFAULTS: dict[str, Any] = {"epochs": 3.0, "learning_rate": 5e-5, "batch_size": 32, "evals_per_epoch": 2,
                            "precision": "fp32"}


@dataclass
class UpdateConfig(TrainingSettings):
    """How to update a shipped classifier with new labelled data (the recipe's ``[update]`` table): the training
    fields every trainer shares (:class:`~edgedistill.compress.training_settings.TrainingSettings`; those left None
    from :data:`DEFAULTS`, ``max_length`` from the student's) and the update's own."""

    data: DataConfig | None = None
    """The new labelled data: a built-in dataset or a file with the recipe's columns (or a ``[update.data]``
    table), split like any data. Named by the command's ``--data`` or the recipe."""
    method: str = "lwf+rehearsal"
    """naive, lwf, rehearsal or lwf+rehearsal (see the module doc)."""
    alpha: float = 0.5
    """LwF: the weight of the old model's soft outputs; 1 - alpha weighs the gold labels."""
    temperature: float = 2.0
    """LwF: the temperature of the distillation term (softmax; multi-label: each label's sigmoid)."""
    rehearsal_samples: int = 1000
    """Rehearsal: old training texts kept in the build folder and replayed (a seeded, stratified sample)."""
    forget_budget: float = 1.0
    """Largest drop, in macro-F1 points, on the old tasks' validation texts that an update may ship with."""
    changed_samples: int = 10
    """Old test texts whose label changed, shown in the update report."""

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = DataConfig(source=self.data)
        elif isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if self.method not in METHODS:
            raise ConfigError("update.method", self.method, f"choose one of {list(METHODS)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError("update.alpha", self.alpha, "must be in [0, 1]")
        if not self.temperature > 0:
            raise ConfigError("update.temperature", self.temperature, "must be > 0")
        self.check_training("update")
        if self.precision in ("fp16", "bf16"):
            raise ConfigError("update.precision", self.precision, "an update trains on the CPU: use fp32 or auto")
        for name, low in (("rehearsal_samples", 1), ("changed_samples", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"update.{name}", v, f"must be an int >= {low}")
        if not 0 <= self.forget_budget <= 100:
            raise ConfigError("update.forget_budget", self.forget_budget, "must be in [0, 100] macro-F1 points")

    def resolved(self) -> UpdateConfig:
        """A copy with every None training field filled from :data:`DEFAULTS`."""
        return profiles.fill(self, DEFAULTS)

    @property
    def lwf(self) -> bool:
        return self.method in ("lwf", "lwf+rehearsal")

    @property
    def rehearsal(self) -> bool:
        return self.method in ("rehearsal", "lwf+rehearsal")


# ---------------------------------------------------------------------------------- tasks and data
@dataclass
class Task:
    """One labelled dataset a version learned: the original build's, or an update's."""

    data: DataConfig
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {"data": asdict(self.data), "version": self.version}


Label = str | list[str]
"""A text's label by name, as ``rehearsal.jsonl`` stores it: one name, or the list of a multi-label text's names."""


def label_names(names: list[str], y: int | tuple[int, ...]) -> Label:
    """The name of label id ``y`` in ``names``, or the names of a tuple of ids."""
    return [names[i] for i in y] if isinstance(y, tuple) else names[y]


def label_ids(label: Label, labels: list[str], multi_label: bool) -> int | tuple[int, ...]:
    """A label's id in ``labels``; for a multi-label classifier the sorted tuple of its ids (one name: a set of one)."""
    ids = [labels.index(x) for x in ([label] if isinstance(label, str) else label)]
    return tuple(sorted(ids)) if multi_label else ids[0]


def remap(split: Split, names: list[str], labels: list[str], multi_label: bool = False) -> Split:
    """``split`` (label ids into ``names``) with its label ids into ``labels``; ``multi_label``: as label-id tuples
    (a single label becomes a set of one)."""
    return Split(list(split.texts), [label_ids(label_names(names, y), labels, multi_label) for y in split.labels])


def concat(splits: list[Split]) -> Split:
    return Split([t for s in splits for t in s.texts], [y for s in splits for y in s.labels])


@dataclass
class UpdateSource:
    """The version an update starts from: its folders, labels, tasks and the recipe it was built with."""

    root: Path          # the original build folder (updates/ live there)
    layout: BuildLayout  # this version's student/, onnx/, package/
    version: int
    labels: list[str]
    tasks: list[Task]
    recipe: dict[str, Any]
    manifest: dict[str, Any]
    multi_label: bool = False  # its package's config.json task

    @classmethod
    def open(cls, path: Path | str) -> UpdateSource:
        from edgedistill.compress.recipe import recipe_from_dict
        from edgedistill.runtime.package import KIND_STRINGS, verify_package

        folder = Path(path)
        layout = BuildLayout(folder)
        if not (layout.package / "manifest.json").is_file():
            raise ConfigError("update.build", str(folder), "holds no package (package/manifest.json): build it first")
        if not (layout.student / "config.json").is_file():
            raise ConfigError("update.build", str(folder), "holds no student checkpoint (student/): an update "
                              "fine-tunes the student, so it needs the build folder, not only the package")
        manifest = verify_package(layout.package)
        config = json.loads((layout.package / "config.json").read_text())
        if config.get("kind") == KIND_STRINGS:
            raise ConfigError("update.build", str(folder), "ships the TF-IDF baseline (it won on validation), which "
                              "an update cannot fine-tune; an update starts from a student's package")
        student = json.loads((layout.student / "config.json").read_text())
        reads = config.get("long_texts", "truncate"), student.get("long_texts") or "truncate"
        if reads[0] != reads[1]:  # the update fine-tunes student/, and its package reads as student/ does
            raise ConfigError("update.build", str(folder), f"ships a package that reads long texts as {reads[0]}, "
                              f"but its student/ reads them as {reads[1]} (another candidate shipped); rebuild it")
        raw = manifest.get("recipe")
        if not raw:
            raise ConfigError("update.build", str(folder), "its package records no recipe to take the data from")
        tasks_file = folder / TASKS_FILE
        if tasks_file.is_file():
            info = json.loads(tasks_file.read_text())
            tasks = [Task(DataConfig(**t["data"]), t["version"]) for t in info["tasks"]]
            version, root = info["version"], folder.parent.parent
        else:
            recipe = recipe_from_dict(raw, profile=raw.get("profile"), build_root=folder.parent)
            tasks, version, root = [Task(recipe.distill().resolved().data, 1)], 1, folder
        return cls(root, layout, version, list(config["labels"]), tasks, raw, manifest,
                   config.get("task") == "multi_label")

    def task_data(self, labels: list[str]) -> tuple[list[LabelledData], Split, Split]:
        """Every old task's data, and their validation and test splits joined, label ids into ``labels``."""
        datas = [load_data(t.data) for t in self.tasks]
        val = concat([remap(d.validation, d.label_names, labels, self.multi_label) for d in datas])
        test = concat([remap(d.test, d.label_names, labels, self.multi_label) for d in datas])
        return datas, val, test


def rehearsal_buffer(source: UpdateSource, datas: list[LabelledData], n: int, seed: int) -> list[tuple[str, Label]]:
    """The replayed old training texts as (text, label name; a multi-label text: the list of its names), from the
    version's own ``rehearsal.jsonl`` (an update writes its parent's buffer plus a share of its own texts into its
    folder); for a build, first drawn there (a seeded sample of its training texts). Never part of a package."""
    path = source.layout.root / REHEARSAL_FILE
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["text"], r["label"]) for r in rows]
    rng = random.Random(seed)
    pool = [(t, label_names(d.label_names, y)) for d in datas for t, y in zip(d.train.texts, d.train.labels)]
    rows = rng.sample(pool, min(n, len(pool)))
    _write_rows(path, rows)
    log.info("rehearsal: %d old training texts kept in %s (never packaged)", len(rows), path)
    return rows


def _write_rows(path: Path, rows: list[tuple[str, Label]]) -> None:
    write_text_atomic(path, "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows))


@dataclass
class UpdateData:
    """What an update reads: the labels it ends with (the old ones first) and every split, label ids into them."""

    new: LabelledData
    labels: list[str]
    multi_label: bool
    datas: list[LabelledData]  # the old tasks' data, whose training texts rehearsal draws from
    new_train: Split
    new_val: Split
    new_test: Split
    old_val: Split
    old_test: Split
    n_old: int  # the old labels are the first n_old of labels

    @classmethod
    def load(cls, src: UpdateSource, cfg: DataConfig) -> UpdateData:
        new = load_data(cfg, min_classes=1)
        if new.multi_label and not src.multi_label:
            raise ConfigError("update.data", cfg.source, "is multi-label (a set of labels a text), but the build's "
                              "classifier gives one label a text (a softmax over its classes), which an update cannot "
                              "turn into one sigmoid per label; rebuild it with a label_separator instead")
        if src.multi_label and not new.multi_label:
            log.info("%s has one label a text: each text is taken to carry that label alone", new.name)
        labels = src.labels + sorted(set(new.label_names) - set(src.labels))
        datas, old_val, old_test = src.task_data(labels)
        new_train, new_val, new_test = (remap(s, new.label_names, labels, src.multi_label)
                                        for s in (new.train, new.validation, new.test))
        if leaked := set(new_train.texts) & (set(old_val.texts) | set(old_test.texts)):
            log.warning("%d new training texts are old validation/test texts; they are dropped", len(leaked))
            keep = [i for i, t in enumerate(new_train.texts) if t not in leaked]
            new_train = Split([new_train.texts[i] for i in keep], [new_train.labels[i] for i in keep])
        return cls(new, labels, src.multi_label, datas, new_train, new_val, new_test, old_val, old_test,
                   len(src.labels))

    @property
    def added(self) -> list[str]:
        return self.labels[self.n_old:]

    @property
    def old_ids(self) -> list[int]:
        return list(range(self.n_old))

    @property
    def new_ids(self) -> list[int]:
        return [self.labels.index(lab) for lab in self.new.label_names]

    @property
    def validation(self) -> Split:
        """Both tasks' validation texts, the old ones first."""
        return concat([self.old_val, self.new_val])
@dataclass
class UpdateResult:
    version: int
    folder: Path
    shipped: bool
    reason: str
    report: dict[str, Any]

    @property
    def package(self) -> Path:
        return BuildLayout(self.folder).package


def update(build: Path | str, cfg: UpdateConfig, *, output: Path | str | None = None) -> UpdateResult:
    """Update the classifier of ``build`` (a build folder or an ``updates/v<N>`` of one) with ``cfg.data``; see the
    module doc. Returns the result when the update ships; raises :class:`UpdateRefused` when the gate refuses it."""
    from transformers import AutoTokenizer

    from edgedistill.compress.checkpoints import load_classifier
    from edgedistill.compress.evaluate import long_texts_of, window_logits
    from edgedistill.compress.export import export
    from edgedistill.compress.package import build_package
    from edgedistill.compress.quantize import quantize
    from edgedistill.compress.recipe import recipe_from_dict
    from edgedistill.compress.targets import check_targets
    from edgedistill.compress.textviews import TextViews

    if cfg.data is None:
        raise ConfigError("update.data", None, "name the new labelled data (--data FILE_OR_DATASET)")
    cfg = cfg.resolved()
    started = time.perf_counter()
    src = UpdateSource.open(build)
    d = UpdateData.load(src, cfg.data)
    labels, new = d.labels, d.new

    version = max([src.version, *_versions(src.root)]) + 1
    folder = Path(output) if output else src.root / UPDATES / f"v{version}"
    for stale in (folder, folder.with_name(folder.name + ".refused")):
        if stale.exists():
            shutil.rmtree(stale)
    layout = BuildLayout(folder)
    layout.student.mkdir(parents=True)
    log.info("update v%d of %s: %s on %s (%d training texts%s), old tasks %s", version, src.root.name, cfg.method,
             new.name, len(d.new_train), f", new labels {d.added}" if d.added else "",
             ", ".join(t.data.source for t in src.tasks))

    replayed = rehearsal_buffer(src, d.datas, cfg.rehearsal_samples, cfg.seed)
    texts, ys = _training_texts(d, replayed if cfg.rehearsal else [])
    model = load_classifier(src.layout.student)
    tokenizer = AutoTokenizer.from_pretrained(src.layout.student)
    distilled = json.loads((src.layout.student / "distill.json").read_text()) \
        if (src.layout.student / "distill.json").is_file() else {}
    max_length = cfg.max_length or (distilled.get("config") or {}).get("max_length") or 128
    # each window of a text is an example, read as the package reads it; LwF's targets are the old model's
    # outputs on each window, not its text's pooled one: a window that lacks the evidence for its text's label
    # would be asked to give it anyway; keeping the old model's function means its output on that very input
    views = TextViews(tokenizer, texts, max_length, long_texts_of(model))
    old_logits = window_logits(model, views, 64) if cfg.lwf else None
    grow_head(model, labels)
    trained = train(model, views, ys, old_logits, cfg, partial(_validation_score, tokenizer=tokenizer, d=d,
                                                               max_length=max_length))
    model.save_pretrained(layout.student, safe_serialization=True)
    tokenizer.save_pretrained(layout.student)
    (layout.student / "labels.json").write_text(json.dumps({"labels": labels}, indent=2) + "\n")

    # the combined data the gate and the package see: old and new validation, old and new test
    combined = LabelledData(f"{src.recipe.get('name', 'build')}+{new.name}", labels, d.new_train, d.validation,
                            concat([d.old_test, d.new_test]), multi_label=d.multi_label)
    recipe = recipe_from_dict(src.recipe, profile=src.recipe.get("profile"), build_root=src.root.parent)
    export(replace(recipe.export(), checkpoint=str(layout.student), output=str(layout.onnx), overwrite=True))
    qcfg = recipe.quantize()
    quantize(replace(qcfg, onnx_dir=str(layout.onnx)), data=combined)
    # the recipe's targets, checked as a build checks its own, on the original task's validation texts (the new
    # data may bring one class alone, which is no split to sample from)
    check_targets(replace(recipe.targets(), onnx_dir=str(layout.onnx), data=src.tasks[0].data))
    history = [*src.manifest.get("history", [_history_entry(src.manifest, 1, None)]),
               {"version": version, "method": cfg.method, "data": new.name, "new_labels": d.added,
                "parent_sha256": _manifest_sha(src.layout.package)}]
    # the temperature (multi-label: every label's threshold) is fitted on both tasks' validation texts
    build_package(replace(recipe.package(), onnx_dir=str(layout.onnx), output=str(layout.package), overwrite=True,
                          parent={"version": src.version, "sha256": _manifest_sha(src.layout.package),
                                  "path": str(src.layout.package.resolve())},
                          history=history), data=combined)

    report = compare(src.layout.package, layout.package, d, cfg)
    report.update(version=version, parent_version=src.version, method=cfg.method, new_data=new.name,
                  new_labels=d.added, old_tasks=[t.data.source for t in src.tasks],
                  training={"texts": len(texts), "new": len(d.new_train), "replayed": len(texts) - len(d.new_train),
                            "max_length": max_length, "long_texts": views.mode, **trained},
                  seconds=round(time.perf_counter() - started, 1))
    shipped, reason = verdict(report, cfg)
    report.update(shipped=shipped, reason=reason)
    (folder / TASKS_FILE).write_text(json.dumps(
        {"version": version, "tasks": [t.to_dict() for t in src.tasks] + [Task(cfg.data, version).to_dict()]},
        indent=2) + "\n")
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=2, default=str) + "\n")
    (folder / REPORT_MD).write_text(report_markdown(report))
    if not shipped:
        refused = folder.with_name(folder.name + ".refused")
        folder.rename(refused)
        raise UpdateRefused(f"update v{version} not shipped: {reason} (report: {refused / REPORT_MD}); "
                            f"v{src.version} stays in place")
    # the next update from this version replays this task's texts too
    per_task = max(1, cfg.rehearsal_samples // (len(src.tasks) + 1))
    fresh = random.Random(cfg.seed + version).sample(
        [(t, label_names(labels, y)) for t, y in zip(d.new_train.texts, d.new_train.labels)],
        min(per_task, len(d.new_train)))
    _write_rows(folder / REHEARSAL_FILE, replayed + fresh)
    log.info("update v%d shipped: %s -> %s", version, reason, layout.package)
    return UpdateResult(version, folder, True, reason, report)


def _training_texts(d: UpdateData, replayed: list[tuple[str, Label]]) -> tuple[list[str], list[Any]]:
    """The new training texts and the ``replayed`` old ones (none held out by either task), with their label ids
    into ``d.labels``."""
    texts, ys = list(d.new_train.texts), list(d.new_train.labels)
    if replayed:
        held = set(d.new_val.texts) | set(d.new_test.texts) | set(d.old_val.texts) | set(d.old_test.texts)
        known = set(d.labels)
        rows = [(t, lab) for t, lab in replayed
                if t not in held and known.issuperset([lab] if isinstance(lab, str) else lab)]
        texts += [t for t, _ in rows]
        ys += [label_ids(lab, d.labels, d.multi_label) for _, lab in rows]
    return texts, ys


def _validation_score(model, *, tokenizer, d: UpdateData, max_length: int) -> float:
    """The mean of the old tasks' and the new data's validation macro-F1 of the torch ``model`` (each text's
    windows pooled, as the package pools them; multi-label: at thresholds fitted on these validation texts, as the
    package stage fits them): what picks the best point of the training."""
    from edgedistill.compress.evaluate import predict_proba_torch
    from edgedistill.compress.multilabel import as_matrix, fit_thresholds

    val = d.validation
    probs = predict_proba_torch(model, tokenizer, val.texts, max_length=max_length)
    thresholds = fit_thresholds(as_matrix(val.labels, len(d.labels)), probs)[0] if d.multi_label else None
    k = len(d.old_val)
    return 0.5 * (task_macro_f1(d.old_val.labels, probs[:k], d.old_ids, thresholds)
                  + task_macro_f1(d.new_val.labels, probs[k:], d.new_ids, thresholds))


def _versions(root: Path) -> list[int]:
    out = []
    for p in (root / UPDATES).glob("v*"):
        digits = p.name[1:].split(".")[0]
        if digits.isdigit():
            out.append(int(digits))
    return out


def _manifest_sha(package: Path) -> str:
    from edgedistill.runtime.package import sha256_file

    return sha256_file(package / "manifest.json")


def _history_entry(manifest: dict[str, Any], version: int, method: str | None) -> dict[str, Any]:
    recipe = manifest.get("recipe") or {}
    return {"version": version, "method": method or "build", "data": (recipe.get("data") or {}).get("source"),
            "new_labels": [], "created": manifest.get("created")}
