"""Lifelong updates: teach a shipped classifier new data without forgetting, and show what changed first.

``update(build, cfg)`` takes a finished build (or an earlier update of it) and new labelled data, and writes a
new version beside it, ``<build>/updates/v<N>/`` (``student/``, ``onnx/``, ``package/``, ``update_report.md``),
never touching the package it started from::

    old student --(fine-tune on the new data, per cfg.method)--> student --> export --> quantize --> package

Methods (:data:`METHODS`):

- ``naive``: cross-entropy on the new data alone: the reference that shows forgetting;
- ``lwf``: Learning without Forgetting (Li & Hoiem, 2016): the old model's soft outputs on the new texts are
  distillation targets beside the new gold labels, ``(1 - alpha) * CE + alpha * T^2 * KL``, the KL over the old
  classes only (a class the old model never had has no old logit);
- ``rehearsal``: a seeded sample of the old training texts (``rehearsal.jsonl`` in the build folder, never in a
  package) is replayed with its gold labels beside the new data;
- ``lwf+rehearsal``: both (the old model's outputs are targets on the replayed texts too).

New labels grow the classification head: the old classes keep their output positions, new ones are appended.

The gate, on validation data only (the test splits are reported, never read by a choice): the update ships only
if its macro-F1 on the old tasks' validation texts drops by at most ``forget_budget`` points and its macro-F1 on
the new data's validation split improves on the old package's. Both are measured through the runtime on the
packages themselves. A refused update raises :class:`~edgedistill.compress.errors.UpdateRefused` with one line saying
why; its candidate stays in ``updates/v<N>.refused/`` for inspection, and nothing the old version shipped changes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress.calibration import softmax
from edgedistill.compress.data import DataConfig, LabelledData, Split, load_data
from edgedistill.compress.errors import ConfigError, UpdateRefused
from edgedistill.runtime.fsutil import write_text_atomic
from edgedistill.compress.layout import BuildLayout

log = logging.getLogger(__name__)

METHODS = ("naive", "lwf", "rehearsal", "lwf+rehearsal")
REHEARSAL_FILE = "rehearsal.jsonl"
TASKS_FILE = "tasks.json"
REPORT_JSON, REPORT_MD = "update_report.json", "update_report.md"
UPDATES = "updates"


@dataclass
class UpdateConfig:
    """How to update a shipped classifier with new labelled data (the recipe's ``[update]`` table)."""

    data: DataConfig | None = None
    """The new labelled data: a built-in dataset or a file with the recipe's columns (or a ``[update.data]``
    table), split like any data. Named by the command's ``--data`` or the recipe."""
    method: str = "lwf+rehearsal"
    """naive, lwf, rehearsal or lwf+rehearsal (see the module doc)."""
    alpha: float = 0.5
    """LwF: the weight of the old model's soft outputs; 1 - alpha weighs the gold labels."""
    temperature: float = 2.0
    """LwF: the softmax temperature of the distillation term."""
    rehearsal_samples: int = 1000
    """Rehearsal: old training texts kept in the build folder and replayed (a seeded, stratified sample)."""
    epochs: float = 3.0
    """Epochs over the update's training texts (new data, plus the replayed old texts with rehearsal)."""
    learning_rate: float = 5e-5
    """AdamW learning rate (linear decay after a 10% warm-up)."""
    batch_size: int = 32
    """Training texts per step."""
    max_length: int | None = None
    """Tokens per training text; default: what the student was distilled with."""
    evals_per_epoch: int = 2
    """Validation evaluations per epoch; the best (mean of old-task and new-task validation macro-F1) is kept."""
    forget_budget: float = 1.0
    """Largest drop, in macro-F1 points, on the old tasks' validation texts that an update may ship with."""
    seed: int = 42
    """Seed of the data order, the rehearsal sample and the report's sample of changed texts."""
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
        for name in ("epochs", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"update.{name}", getattr(self, name), "must be > 0")
        for name, low in (("rehearsal_samples", 1), ("batch_size", 1), ("evals_per_epoch", 1),
                          ("changed_samples", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"update.{name}", v, f"must be an int >= {low}")
        if self.max_length is not None and self.max_length < 8:
            raise ConfigError("update.max_length", self.max_length, "must be >= 8 (or unset)")
        if not 0 <= self.forget_budget <= 100:
            raise ConfigError("update.forget_budget", self.forget_budget, "must be in [0, 100] macro-F1 points")

    @property
    def lwf(self) -> bool:
        return self.method in ("lwf", "lwf+rehearsal")

    @property
    def rehearsal(self) -> bool:
        return self.method in ("rehearsal", "lwf+rehearsal")


# ---------------------------------------------------------------------------------- the loss
def lwf_loss(logits, old_logits, labels, alpha: float, temperature: float):
    """``(1 - alpha) * CE(logits, labels) + alpha * T^2 * KL(softmax(old / T) || softmax(logits[:, :k] / T))``.

    ``old_logits`` has the old model's k classes, the first k of ``logits`` (new classes come after them); the KL
    is averaged over the batch. ``old_logits=None`` (naive fine-tuning) is plain cross-entropy."""
    import torch.nn.functional as F

    from edgedistill.compress.distill.losses import soft_target_loss

    ce = F.cross_entropy(logits, labels)
    if old_logits is None or alpha == 0:
        return ce
    k = old_logits.shape[-1]
    return (1 - alpha) * ce + alpha * soft_target_loss(logits[:, :k], old_logits, temperature)


# ---------------------------------------------------------------------------------- the model
def grow_head(model, labels: list[str]) -> None:
    """Give ``model``'s classification head one output per label in ``labels``: its own labels keep their rows
    (they must come first, in order), new ones get fresh rows (small random weights, the mean old bias)."""
    import torch

    old = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if labels[:len(old)] != old:
        raise ConfigError("update.data", labels, f"must keep the model's labels {old} first, in order")
    if len(labels) == len(old):
        return
    owner, name = _head_linear(model)
    lin: torch.nn.Linear = getattr(owner, name)
    new = torch.nn.Linear(lin.in_features, len(labels), bias=lin.bias is not None)
    with torch.no_grad():
        torch.nn.init.normal_(new.weight, std=float(lin.weight.std()))
        new.weight[:len(old)] = lin.weight
        if lin.bias is not None:
            new.bias[:] = lin.bias.mean()
            new.bias[:len(old)] = lin.bias
    setattr(owner, name, new)
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {lab: i for i, lab in enumerate(labels)}


def _head_linear(model):
    """The (module, attribute) of the Linear layer whose outputs are the logits."""
    import torch

    k = model.config.num_labels
    found = [(name, mod) for name, mod in model.named_modules()
             if isinstance(mod, torch.nn.Linear) and mod.out_features == k]
    if not found:
        raise ConfigError("update", type(model).__name__, "has no Linear layer with one output per label to grow")
    path = found[-1][0]  # the head comes last in every model class here (BERT's classifier, the static head)
    parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
    return parent, path.rsplit(".", 1)[-1]


# ---------------------------------------------------------------------------------- tasks and data
@dataclass
class Task:
    """One labelled dataset a version learned: the original build's, or an update's."""

    data: DataConfig
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {"data": asdict(self.data), "version": self.version}


def remap(split: Split, names: list[str], labels: list[str]) -> Split:
    """``split`` (label ids into ``names``) with its label ids into ``labels``."""
    index = {lab: i for i, lab in enumerate(labels)}
    return Split(list(split.texts), [index[names[y]] for y in split.labels])


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
        if config.get("long_texts", "truncate") != "truncate":
            raise ConfigError("update.build", str(folder), "reads long texts as head+tail or chunks, which an update "
                              "does not yet; rebuild it with the new data")
        if config.get("task") == "multi_label":
            raise ConfigError("update.build", str(folder), "ships a multi-label classifier, which an update cannot "
                              "fine-tune yet (LwF on sigmoid outputs is not built); rebuild it with the new data")
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
        return cls(root, layout, version, list(config["labels"]), tasks, raw, manifest)

    def task_data(self, labels: list[str]) -> tuple[list[LabelledData], Split, Split]:
        """Every old task's data, and their validation and test splits joined, label ids into ``labels``."""
        datas = [load_data(t.data) for t in self.tasks]
        val = concat([remap(d.validation, d.label_names, labels) for d in datas])
        test = concat([remap(d.test, d.label_names, labels) for d in datas])
        return datas, val, test


def rehearsal_buffer(source: UpdateSource, datas: list[LabelledData], n: int, seed: int) -> list[tuple[str, str]]:
    """The replayed old training texts as (text, label name), from the version's own ``rehearsal.jsonl`` (an update
    writes its parent's buffer plus a share of its own texts into its folder); for a build, first drawn there (a
    seeded sample of its training texts). Never part of a package."""
    path = source.layout.root / REHEARSAL_FILE
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["text"], r["label"]) for r in rows]
    rng = random.Random(seed)
    pool = [(t, d.label_names[y]) for d in datas for t, y in zip(d.train.texts, d.train.labels)]
    rows = rng.sample(pool, min(n, len(pool)))
    _write_rows(path, rows)
    log.info("rehearsal: %d old training texts kept in %s (never packaged)", len(rows), path)
    return rows


def _write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    write_text_atomic(path, "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n" for t, y in rows))


# ---------------------------------------------------------------------------------- training
def _logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Raw logits of ``model`` in input order (batched by length, no grad)."""
    import torch

    from edgedistill.compress.data import length_batches
    from edgedistill.compress.evaluate import model_inputs

    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for idx, batch in length_batches(tokenizer, texts, max_length, batch_size):
            out[idx] = model(**model_inputs(model, batch)).logits.float().numpy()
    return out


def _macro_f1(y_true: list[int] | np.ndarray, probs: np.ndarray, label_ids: list[int]) -> float:
    """Macro-F1 over ``label_ids`` (a task's own labels); a text given another label counts as an error."""
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(y_true), np.asarray(probs).argmax(1), labels=label_ids, average="macro",
                          zero_division=0))


def train(model, tokenizer, texts: list[str], labels: list[int], old_logits: np.ndarray | None,
          cfg: UpdateConfig, max_length: int, evaluate) -> dict[str, Any]:
    """Fine-tune ``model`` in place with :func:`lwf_loss`; ``evaluate(model) -> score`` picks the best of the
    evaluations (validation only), whose weights the model ends with."""
    import copy

    import torch
    from transformers import get_linear_schedule_with_warmup

    from edgedistill.compress import progress

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    n = len(texts)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = max(1, round(cfg.epochs * steps_per_epoch))
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    y = torch.tensor(labels)
    old = torch.from_numpy(old_logits) if old_logits is not None else None
    best = {"score": evaluate(model), "step": 0}
    best_state = copy.deepcopy(model.state_dict())
    history = [{"step": 0, "score": best["score"]}]
    step = 0
    with progress.bar("updating", total, unit="steps") as bar:
        while step < total:
            order = list(range(n))
            rng.shuffle(order)
            for start in range(0, n, cfg.batch_size):
                if step >= total:
                    break
                idx = order[start:start + cfg.batch_size]
                batch = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                                  return_tensors="pt")
                from edgedistill.compress.evaluate import model_inputs

                model.train()
                logits = model(**model_inputs(model, batch)).logits
                loss = lwf_loss(logits, old[idx] if old is not None and cfg.lwf else None, y[idx], cfg.alpha,
                                cfg.temperature)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                step += 1
                bar.advance()
                if step % eval_every == 0 or step == total:
                    score = evaluate(model)
                    history.append({"step": step, "score": score, "loss": float(loss.detach())})
                    bar.note(f"validation {score:.4f}")
                    if score > best["score"]:
                        best = {"score": score, "step": step}
                        best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return {"best": best, "history": history, "steps": total}


# ---------------------------------------------------------------------------------- the public function
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

    from edgedistill.compress.export import export
    from edgedistill.compress.package import build_package
    from edgedistill.compress.quantize import quantize
    from edgedistill.compress.recipe import recipe_from_dict
    from edgedistill.compress.checkpoints import load_classifier
    from edgedistill.compress.targets import check_targets

    if cfg.data is None:
        raise ConfigError("update.data", None, "name the new labelled data (--data FILE_OR_DATASET)")
    started = time.perf_counter()
    src = UpdateSource.open(build)
    new = load_data(cfg.data, min_classes=1)
    if new.multi_label:
        raise ConfigError("update.data", cfg.data.source, "is multi-label: updating a multi-label classifier is not "
                          "supported yet (LwF on sigmoid outputs is not built); rebuild it with the new data instead")
    labels = src.labels + sorted(set(new.label_names) - set(src.labels))
    added = labels[len(src.labels):]
    old_ids = list(range(len(src.labels)))
    new_ids = [labels.index(lab) for lab in new.label_names]
    datas, old_val, old_test = src.task_data(labels)
    new_train, new_val, new_test = (remap(s, new.label_names, labels) for s in (new.train, new.validation, new.test))
    if leaked := set(new_train.texts) & (set(old_val.texts) | set(old_test.texts)):
        log.warning("%d new training texts are old validation/test texts; they are dropped", len(leaked))
        keep = [i for i, t in enumerate(new_train.texts) if t not in leaked]
        new_train = Split([new_train.texts[i] for i in keep], [new_train.labels[i] for i in keep])

    version = max([src.version, *_versions(src.root)]) + 1
    folder = Path(output) if output else src.root / UPDATES / f"v{version}"
    for stale in (folder, folder.with_name(folder.name + ".refused")):
        if stale.exists():
            shutil.rmtree(stale)
    layout = BuildLayout(folder)
    layout.student.mkdir(parents=True)
    log.info("update v%d of %s: %s on %s (%d training texts%s), old tasks %s", version, src.root.name, cfg.method,
             new.name, len(new_train), f", new labels {added}" if added else "",
             ", ".join(t.data.source for t in src.tasks))

    texts, ys = list(new_train.texts), list(new_train.labels)
    if cfg.rehearsal:
        rows = rehearsal_buffer(src, datas, cfg.rehearsal_samples, cfg.seed)
        held = set(new_val.texts) | set(new_test.texts) | set(old_val.texts) | set(old_test.texts)
        rows = [(t, lab) for t, lab in rows if t not in held and lab in labels]
        texts += [t for t, _ in rows]
        ys += [labels.index(lab) for _, lab in rows]

    model = load_classifier(src.layout.student)
    tokenizer = AutoTokenizer.from_pretrained(src.layout.student)
    distilled = json.loads((src.layout.student / "distill.json").read_text()) \
        if (src.layout.student / "distill.json").is_file() else {}
    max_length = cfg.max_length or (distilled.get("config") or {}).get("max_length") or 128
    old_logits = _logits(model, tokenizer, texts, max_length) if cfg.lwf else None
    grow_head(model, labels)

    def evaluate(m) -> float:
        probs_old = softmax(_logits(m, tokenizer, old_val.texts, max_length))
        probs_new = softmax(_logits(m, tokenizer, new_val.texts, max_length))
        return 0.5 * (_macro_f1(old_val.labels, probs_old, old_ids) + _macro_f1(new_val.labels, probs_new, new_ids))

    trained = train(model, tokenizer, texts, ys, old_logits, cfg, max_length, evaluate)
    model.save_pretrained(layout.student, safe_serialization=True)
    tokenizer.save_pretrained(layout.student)
    (layout.student / "labels.json").write_text(json.dumps({"labels": labels}, indent=2) + "\n")

    # the combined data the gate and the package see: old and new validation, old and new test
    combined = LabelledData(f"{src.recipe.get('name', 'build')}+{new.name}", labels, new_train,
                            concat([old_val, new_val]), concat([old_test, new_test]))
    recipe = recipe_from_dict(src.recipe, profile=src.recipe.get("profile"), build_root=src.root.parent)
    export(replace(recipe.export(), checkpoint=str(layout.student), output=str(layout.onnx), overwrite=True))
    qcfg = recipe.quantize()
    quantize(replace(qcfg, onnx_dir=str(layout.onnx)), data=combined)
    # the recipe's targets, checked as a build checks its own, on the original task's validation texts (the new
    # data may bring one class alone, which is no split to sample from)
    check_targets(replace(recipe.targets(), onnx_dir=str(layout.onnx), data=src.tasks[0].data))
    history = [*src.manifest.get("history", [_history_entry(src.manifest, 1, None)]),
               {"version": version, "method": cfg.method, "data": new.name, "new_labels": added,
                "parent_sha256": _manifest_sha(src.layout.package)}]
    build_package(replace(recipe.package(), onnx_dir=str(layout.onnx), output=str(layout.package), overwrite=True,
                          parent={"version": src.version, "sha256": _manifest_sha(src.layout.package),
                                  "path": str(src.layout.package.resolve())},
                          history=history), data=combined)  # the temperature is fitted on both tasks' validation

    report = _compare(src, layout.package, labels, old_ids, new_ids, old_val, new_val, old_test, new_test, cfg)
    report.update(version=version, parent_version=src.version, method=cfg.method, new_data=new.name,
                  new_labels=added, old_tasks=[t.data.source for t in src.tasks],
                  training={"texts": len(texts), "new": len(new_train), "replayed": len(texts) - len(new_train),
                            "max_length": max_length, **trained},
                  seconds=round(time.perf_counter() - started, 1))
    shipped, reason = _verdict(report, cfg)
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
    rows = rehearsal_buffer(src, datas, cfg.rehearsal_samples, cfg.seed)
    per_task = max(1, cfg.rehearsal_samples // (len(src.tasks) + 1))
    fresh = random.Random(cfg.seed + version).sample(
        [(t, labels[y]) for t, y in zip(new_train.texts, new_train.labels)], min(per_task, len(new_train)))
    _write_rows(folder / REHEARSAL_FILE, rows + fresh)
    log.info("update v%d shipped: %s -> %s", version, reason, layout.package)
    return UpdateResult(version, folder, True, reason, report)


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


def _package_probs(package: Path, texts: list[str], labels: list[str]) -> np.ndarray:
    from edgedistill.compress.evaluate import align_columns
    from edgedistill.runtime import TextClassifier

    clf = TextClassifier.load(package)
    probs = np.asarray(clf.predict_proba(texts), dtype=np.float64)
    known = [lab for lab in labels if lab in clf.labels]
    out = np.zeros((len(texts), len(labels)))  # a label the package lacks gets probability 0
    out[:, [labels.index(lab) for lab in known]] = align_columns(probs, clf.labels, known)
    return out


def _compare(src: UpdateSource, package: Path, labels, old_ids, new_ids, old_val, new_val, old_test, new_test,
             cfg: UpdateConfig) -> dict[str, Any]:
    """Old-task and new-task macro-F1 of the old and the new package (validation decides, test is reported), and
    which old test texts changed label."""
    out: dict[str, Any] = {"labels": labels}
    for split_name, old_split, new_split in (("validation", old_val, new_val), ("test", old_test, new_test)):
        row = {}
        for who, pkg in (("before", src.layout.package), ("after", package)):
            p_old = _package_probs(pkg, old_split.texts, labels)
            p_new = _package_probs(pkg, new_split.texts, labels)
            row[who] = {"old_task": _macro_f1(old_split.labels, p_old, old_ids),
                        "new_task": _macro_f1(new_split.labels, p_new, new_ids),
                        # both tasks' texts together, every label: what a user of the updated model meets
                        "all": _macro_f1([*old_split.labels, *new_split.labels], np.concatenate([p_old, p_new]),
                                         list(range(len(labels))))}
            if split_name == "test":
                row[who]["_pred_old"] = p_old.argmax(1)
        out[split_name] = row
    before, after = out["test"]["before"].pop("_pred_old"), out["test"]["after"].pop("_pred_old")
    changed = np.flatnonzero(before != after)
    sample = random.Random(cfg.seed).sample(list(changed), min(cfg.changed_samples, len(changed)))
    out["changed"] = {
        "n": int(len(changed)), "of": len(old_test),
        "fixed": int(((after == old_test.labels) & (before != after)).sum()),
        "broken": int(((before == old_test.labels) & (before != after)).sum()),
        "sample": [{"text": old_test.texts[i], "gold": labels[old_test.labels[i]], "before": labels[before[i]],
                    "after": labels[after[i]]} for i in sorted(sample)]}
    return out


def _verdict(report: dict[str, Any], cfg: UpdateConfig) -> tuple[bool, str]:
    val = report["validation"]
    drop = 100 * (val["before"]["old_task"] - val["after"]["old_task"])
    gain = 100 * (val["after"]["new_task"] - val["before"]["new_task"])
    where = (f"old tasks {val['before']['old_task']:.4f} -> {val['after']['old_task']:.4f}, "
             f"new data {val['before']['new_task']:.4f} -> {val['after']['new_task']:.4f} (validation)")
    if drop > cfg.forget_budget + 1e-9:
        return False, f"it forgets {drop:.2f} macro-F1 points of the old tasks, beyond the budget of " \
                      f"{cfg.forget_budget:g} ({where})"
    if gain <= 0:
        return False, f"it does not improve on the new data ({gain:+.2f} points; {where})"
    return True, f"{where}"


def report_markdown(r: dict[str, Any]) -> str:
    """The update report: before / after on both tasks, the verdict, the old texts whose label changed."""
    v, t = r["validation"], r["test"]
    lines = [f"# Update v{r['version']} (from v{r['parent_version']}): {r['method']} on {r['new_data']}", "",
             f"**{'Shipped' if r['shipped'] else 'Not shipped'}**: {r['reason']}.", "",
             f"Old tasks: {', '.join(r['old_tasks'])}. New labels: {', '.join(r['new_labels']) or 'none'}. "
             f"Trained on {r['training']['new']} new texts and {r['training']['replayed']} replayed old ones, "
             f"{r['training']['steps']} steps; the best validation point was step {r['training']['best']['step']}.",
             "", "| macro-F1 | old tasks, before | old tasks, after | new data, before | new data, after | "
             "both, every label, before | after |", "|---|---|---|---|---|---|---|"]
    for name, row in (("validation (decides)", v), ("test (reported)", t)):
        lines.append(f"| {name} | {row['before']['old_task']:.4f} | {row['after']['old_task']:.4f} | "
                     f"{row['before']['new_task']:.4f} | {row['after']['new_task']:.4f} | "
                     f"{row['before'].get('all', float('nan')):.4f} | {row['after'].get('all', float('nan')):.4f} |")
    c = r["changed"]
    lines += ["", f"{c['n']} of {c['of']} old test texts changed label ({c['fixed']} now right, {c['broken']} now "
              "wrong, the rest wrong both times).", ""]
    if c["sample"]:
        lines += ["| text | gold | before | after |", "|---|---|---|---|"]
        lines += [f"| {s['text'][:100].replace('|', '/')} | {s['gold']} | {s['before']} | {s['after']} |"
                  for s in c["sample"]]
    return "\n".join(lines) + "\n"
