"""Fine-tune the teacher: a pretrained encoder plus a classification head, on transformers' ``Trainer``.

Three transfer strategies (``TeacherConfig.strategy``):

- ``full``: every weight trains.
- ``partial``: the embeddings and the bottom ``freeze_layers`` encoder layers are frozen.
- ``features``: the encoder is frozen and only the model's own classification head trains, on features
  computed once and cached (the exact input of ``model.classifier``), so head epochs cost next to nothing.
  The saved checkpoint is still a normal ``AutoModelForSequenceClassification``.

The best checkpoint is chosen on validation macro-F1 (with early stopping), then evaluated on the test split
with the one protocol of :mod:`edgedistill.compress.evaluate`. The output folder holds::

    config.json, model.safetensors, tokenizer files    (save_pretrained)
    labels.json                                         (label map, output order)
    metrics.json, metrics.md                            (test split)
    training.json                                       (resolved config, wall time, validation history)

It is written into a temporary folder that is renamed at the end, so a crash never leaves half a teacher.

Many GPUs: the same entry point runs under ``torchrun --nproc_per_node N -m edgedistill.compress.teacher --config
cfg.json`` or ``accelerate launch -m edgedistill.compress.teacher --config cfg.json`` (data-parallel through
``Trainer``; on CPUs the processes talk over gloo). Only rank 0 writes the final output.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.compress import parallel, profiles, progress, sources
from edgedistill.compress.heads import grouped_adamw
from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.teacher_checks import (Attempt, check_teacher, class_weights, first_attempt,
                                                 loss_function, next_attempt, trainer_metrics, unpredicted)
from edgedistill.compress.training_settings import TrainingSettings
from edgedistill.compress.teacher_transfer import (FeatureDataset, cached_features, count_parameters, freeze,
                                                   head_module, load_model)
from edgedistill.runtime.fsutil import replace_folder

log = logging.getLogger("edgedistill.compress.teacher")  # the same name when run with -m

STRATEGIES = ("full", "partial", "features")
CLASS_WEIGHTING = ("auto", "none", "balanced")
# The one table of profile defaults: TeacherConfig fields left None are filled from here.
PROFILES: dict[str, dict[str, Any]] = {
    # A CPU in minutes: a stratified subset, short sequences, dynamic padding, batches grouped by length,
    # one epoch with two validations (sorted by length, so they pad little). MPNet-base trains at 4 to 8
    # examples/s on 2 cores (~30 tokens): 1,600 sentences keep `make demo` (set-up, downloads, every stage)
    # near 13 minutes on an idle 2-core CPU, with room under 20 for a busy one. 1,200 sentences saved a
    # minute and cost about 4 macro-F1 points (0.857 against 0.895).
    "quick": {
        "max_train_samples": 1600, "max_validation_samples": 400, "max_length": 64, "epochs": 1.0,
        "batch_size": 16, "eval_batch_size": 64, "learning_rate": 3e-5, "head_learning_rate": 2e-3,
        "head_epochs": 40, "evals_per_epoch": 2, "patience": 3, "group_by_length": True, "precision": "fp32",
        "retries": 1,
    },
    # All of the data, longer sequences, two epochs with early stopping on the whole validation split: MPNet-base
    # fine-tunes at about 10 sentences/s on 2 cores, so a few thousand sentences take under half an hour on a CPU
    # and seconds on a GPU (bf16/fp16 where CUDA supports it).
    "full": {
        "max_train_samples": None, "max_validation_samples": None, "max_length": 128, "epochs": 2.0,
        "batch_size": 16, "eval_batch_size": 64, "learning_rate": 2e-5, "head_learning_rate": 1e-3,
        "head_epochs": 100, "evals_per_epoch": 2, "patience": 2, "group_by_length": True, "precision": "auto",
        "retries": 1,
    },
}


@dataclass
class TeacherConfig(TrainingSettings):
    """Everything one teacher fine-tune needs: the training fields every trainer shares
    (:class:`~edgedistill.compress.training_settings.TrainingSettings`) and the teacher's own. ``None`` fields are
    filled from ``PROFILES[profile]``."""

    model: str = "mpnet-base"
    """A built-in model name (``edgedistill sources list``), a Hugging Face id, or a local model folder."""
    data: DataConfig = field(default_factory=DataConfig)
    strategy: str = "full"
    """``full``, ``partial`` (embeddings + bottom layers frozen) or ``features`` (only the head trains)."""
    freeze_layers: int | None = None
    """``partial`` only: how many bottom encoder layers to freeze (default: half of them)."""
    profile: str = "quick"
    """``quick`` (minutes on a CPU: subset, short sequences) or ``full`` (all data; under 30 min for a few thousand
    sentences on a 2-core CPU, mixed precision on a GPU)."""
    output_dir: str = "models/teacher"
    head_learning_rate: float | None = None
    """``features`` only: learning rate of the head (it trains alone, so it takes a larger step)."""
    head_lr_multiplier: float | None = None
    """``full`` / ``partial``: the classification head learns at ``learning_rate`` times this; None: from the
    number of classes (:func:`head_multiplier`)."""
    class_weighting: str = "auto"
    """``none``, ``balanced`` (cross-entropy weighted by inverse class frequency) or ``auto``: plain first, and
    balanced in the retry when the first model leaves a class unpredicted (the better on validation is kept)."""
    retries: int | None = None
    """How many more runs a teacher that fails its check gets (at or below the TF-IDF baseline on validation
    macro-F1, or fewer classes predicted on validation than it holds): each with a larger head learning rate and
    twice the epochs; the best on validation is kept."""
    head_epochs: int | None = None
    """``features`` only: epochs over the cached features."""
    eval_batch_size: int | None = None
    """Texts per batch when evaluating (validation, test) and, for ``features``, when caching the features."""
    grad_accumulation: int = 1
    """Batches whose gradients are summed before each optimizer step."""
    group_by_length: bool | None = None
    """Batch texts of similar token length together so that batches pad little (``features``: never)."""
    cross_dataset: str | None = None
    """Also evaluate on this dataset's test split, its labels mapped onto ours (see edgedistill.compress.evaluate)."""
    cross_label_map: dict[str, str] | None = None
    """``cross_dataset``'s labels mapped onto ours (``{"theirs": "ours"}``; rows of an unmapped label are
    dropped); None: the built-in map for that dataset."""
    adapt_texts: list[str] = field(default_factory=list)
    """Unlabelled in-domain text to adapt the encoder on before fine-tuning (built-in corpora such as
    ``snippets-unlabelled``, or files); empty: no adaptation. Validation and test texts are left out."""
    adapt_objective: str = "mlm"
    """``mlm`` (masked-language-model continued pre-training) or ``contrastive`` (unsupervised SimCSE)."""
    adapt_steps: int = 200
    """Adaptation steps (optimizer steps over ``adapt_batch_size`` texts each)."""
    adapt_batch_size: int = 16
    """Texts per adaptation step."""
    adapt_learning_rate: float = 5e-5
    """Learning rate of the encoder during the adaptation."""

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        profiles.check("teacher", self.profile)
        if self.strategy not in STRATEGIES:
            raise ConfigError("teacher.strategy", self.strategy, f"must be one of {list(STRATEGIES)}")
        if not self.model:
            raise ConfigError("teacher.model", self.model, "name a built-in model, a Hugging Face id or a folder")
        if self.freeze_layers is not None:
            if self.strategy != "partial":
                raise ConfigError("teacher.freeze_layers", self.freeze_layers, "only applies to strategy='partial'")
            if self.freeze_layers < 0:
                raise ConfigError("teacher.freeze_layers", self.freeze_layers, "must be >= 0")
        # fields left None are checked once resolve() has filled them from the profile
        self.check_training("teacher")
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise ConfigError("teacher.head_learning_rate", self.head_learning_rate, "must be > 0")
        for name in ("head_epochs", "eval_batch_size", "grad_accumulation"):
            if (v := getattr(self, name)) is not None and v < 1:
                raise ConfigError(f"teacher.{name}", v, "must be at least 1")
        if self.head_lr_multiplier is not None and self.head_lr_multiplier <= 0:
            raise ConfigError("teacher.head_lr_multiplier", self.head_lr_multiplier, "must be > 0")
        if self.class_weighting not in CLASS_WEIGHTING:
            raise ConfigError("teacher.class_weighting", self.class_weighting,
                              f"must be one of {list(CLASS_WEIGHTING)}")
        if self.retries is not None and self.retries < 0:
            raise ConfigError("teacher.retries", self.retries, "must be >= 0")
        if not self.output_dir:
            raise ConfigError("teacher.output_dir", self.output_dir, "must name a folder")
        if isinstance(self.adapt_texts, str):
            self.adapt_texts = [self.adapt_texts]
        self.adapt_texts = list(self.adapt_texts)
        if self.adapt_texts:
            self.adapt_settings()  # checks the adapt_* fields
        if self.cross_label_map is not None and self.cross_dataset is None:
            raise ConfigError("teacher.cross_label_map", self.cross_label_map, "needs cross_dataset")

    def resolved(self) -> TeacherConfig:
        """A copy with every None field filled from ``PROFILES[profile]`` (the DataConfig subset sizes too)."""
        return profiles.resolve(self, PROFILES)

    def adapt_settings(self):
        """The adaptation's settings (:mod:`edgedistill.compress.adapt`); its texts are cut at the fine-tuning
        length."""
        from edgedistill.compress.adapt import settings

        return settings("teacher", objective=self.adapt_objective, steps=self.adapt_steps,
                        batch_size=self.adapt_batch_size, learning_rate=self.adapt_learning_rate,
                        max_length=self.max_length or 64, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeacherConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(d) - names):
            raise ConfigError(f"teacher.{unknown[0]}", d[unknown[0]],
                              f"unknown TeacherConfig field (known: {sorted(names)})")
        return cls(**d)

    @classmethod
    def from_json(cls, path: Path | str) -> TeacherConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


# ----------------------------------------------------------------------------- training
def _train(trainer, cfg: TeacherConfig) -> None:
    from transformers import EarlyStoppingCallback

    trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=cfg.patience))
    with progress.training(trainer):
        trainer.train()


def _baseline_f1(data) -> float | None:
    """TF-IDF + LR's validation macro-F1 on the teacher's own training texts: the bar a teacher must clear."""
    from edgedistill.compress.baseline import train_baseline

    if len(data.validation) == 0:
        return None
    base = train_baseline(data.train, data.validation, num_labels=data.num_labels)
    return base.validation_macro_f1[base.C]


@dataclass
class _Run:
    """A trained attempt: its trainer (holding the best checkpoint's model), its figures and its verdict."""

    trainer: Any
    model: Any
    tokenizer: Any
    attempt: Attempt
    val_macro_f1: float
    missing: list[str]
    problem: str | None

    def summary(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.attempt), "validation_macro_f1": round(self.val_macro_f1, 4),
                "steps": self.trainer.state.global_step, "unpredicted_classes": self.missing,
                "problem": self.problem}


def finetune_teacher(cfg: TeacherConfig) -> Path:
    """Fine-tune, pick the best checkpoint on validation macro-F1 (retrying a teacher that fails its check,
    :func:`check_teacher`), evaluate on test, save; returns the folder."""
    from transformers import set_seed

    from edgedistill.compress.adapt import adapt_on
    from edgedistill.compress.data import load_data

    t0 = time.perf_counter()
    cfg = cfg.resolved()
    set_seed(cfg.seed)
    data = load_data(cfg.data)
    model_path = sources.resolve_model(cfg.model)
    out = Path(cfg.output_dir)
    work = out.with_name(f".{out.name}.partial")
    attempt = first_attempt(cfg, data.num_labels)
    args = _attempt_args(cfg, attempt, work, len(data.train))
    adaptation = None
    if cfg.adapt_texts:
        with args.main_process_first(desc="adaptation"):  # rank 0 adapts and caches; the others read the cache
            adaptation = adapt_on("teacher", model_path, cfg.adapt_texts, data, cfg.adapt_settings())
        model_path = adaptation.path
    with args.main_process_first(desc="output folder"):
        if args.process_index == 0:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
    record: dict[str, Any] = {"config": cfg.to_dict(), "model_path": model_path, "strategy": cfg.strategy,
                              "adaptation": dataclasses.asdict(adaptation) if adaptation else None}
    try:
        best = _attempts(cfg, attempt, data, model_path, work, record)
        if best.trainer.is_world_process_zero():
            _save(cfg, best.trainer, data, best.tokenizer, best.model,
                  work / "model", record, t0)
            replace_folder(work / "model", out)
            shutil.rmtree(work, ignore_errors=True)
            log.info("teacher saved to %s", out)
    except BaseException:
        if args.process_index == 0:
            shutil.rmtree(work, ignore_errors=True)  # never leave half a teacher behind
        raise
    return out


def _attempt_args(cfg: TeacherConfig, attempt: Attempt, work: Path, n_train: int):
    features = cfg.strategy == "features"
    return parallel.trainer_arguments(
        work, cfg, table="teacher", n_train=n_train, eval_batch_size=cfg.eval_batch_size,
        learning_rate=attempt.head_learning_rate if features else cfg.learning_rate, epochs=attempt.epochs,
        grad_accumulation=cfg.grad_accumulation, group_by_length=False if features else cfg.group_by_length, keep=2,
        ddp_find_unused_parameters=False)  # frozen weights get no gradient by design


def _attempts(cfg: TeacherConfig, attempt: Attempt, data, model_path: str, work: Path,
              record: dict[str, Any]) -> _Run:
    """Train, check, and retry up to ``cfg.retries`` times; the run with the best validation macro-F1 wins."""
    baseline = _baseline_f1(data)
    record["baseline_validation_macro_f1"] = baseline
    runs: list[dict[str, Any]] = []
    best: _Run | None = None
    chosen = 0
    for i in range(cfg.retries + 1):
        t_train = time.perf_counter()
        run = _attempt(cfg, attempt, data, model_path, work / f"attempt-{i + 1}", record, baseline)
        runs.append({**run.summary(), "seconds": round(time.perf_counter() - t_train, 1)})
        if best is None or run.val_macro_f1 > best.val_macro_f1:
            best, chosen = run, i + 1
        if run.problem is None:
            break
        if i < cfg.retries:
            attempt = next_attempt(cfg, run.attempt, run.missing)
            log.warning("teacher check failed: %s. Retrying (%d of %d) with head learning rate x%g, %g epochs, "
                        "%s class weighting", run.problem, i + 1, cfg.retries, attempt.head_lr_multiplier
                        if cfg.strategy != "features" else attempt.head_learning_rate, attempt.epochs,
                        attempt.class_weighting)
    assert best is not None
    if best.problem:
        log.warning("the teacher still fails its check after %d run(s): %s. The build goes on; the ship rule and "
                    "the report compare what it yields with the baseline", len(runs), best.problem)
    record.update({"attempts": runs, "chosen_attempt": chosen, "check": best.problem or "passed",
                   "train_time_s": round(sum(r["seconds"] for r in runs), 2)})
    return best


def _attempt(cfg: TeacherConfig, attempt: Attempt, data, model_path: str, work: Path, record: dict[str, Any],
             baseline: float | None) -> _Run:
    """One fine-tuning run from the pretrained encoder with ``attempt``'s settings, checked on validation."""
    tokenizer, model = load_model(model_path, data.label_names, data.multi_label)
    if cfg.data.long_texts != "truncate":  # how it reads a long text: evaluation and export read it from here
        model.config.long_texts = cfg.data.long_texts
    frozen_layers = freeze(model, cfg.strategy, cfg.freeze_layers)
    trainable, total = count_parameters(model)
    log.info("%s: %s strategy, %.1fM of %.1fM parameters train, %d train / %d validation examples, %s",
             cfg.model, cfg.strategy, trainable / 1e6, total / 1e6, len(data.train), len(data.validation), attempt)
    record.update({"frozen_layers": frozen_layers, "trainable_parameters": trainable, "total_parameters": total})
    from edgedistill.compress.textviews import examples

    n_train = examples(tokenizer, data.train.texts, cfg.max_length, cfg.data.long_texts)  # chunks: windows
    args = _attempt_args(cfg, attempt, work, n_train)
    trainer = _build_trainer(cfg, attempt, args, data, tokenizer, model, model_path, record)
    _train(trainer, cfg)
    pred = trainer.predict(trainer.eval_dataset)
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    if data.multi_label:  # each label decided at the threshold its package would get
        from edgedistill.compress.multilabel import decide, fit_thresholds
        from edgedistill.runtime.probabilities import sigmoid

        probs = sigmoid(logits)
        decided = decide(probs, fit_thresholds(pred.label_ids, probs)[0])
    else:
        decided = logits.argmax(axis=1)
    missing = unpredicted(pred.label_ids, decided, data.label_names)
    val_f1 = float(pred.metrics.get("test_macro_f1", trainer.state.best_metric or 0.0))
    return _Run(trainer, model, tokenizer, attempt, val_f1, missing, check_teacher(val_f1, missing, baseline))


def _build_trainer(cfg: TeacherConfig, attempt: Attempt, args, data, tokenizer, model, model_path: str,
                   record: dict[str, Any]):
    from transformers import DataCollatorWithPadding, Trainer

    from edgedistill.compress.data import multi_hot, sorted_by_length, tokenize

    labels, multi, k = data.label_names, data.multi_label, data.num_labels
    weights = class_weights(data.train.labels, len(labels)) if attempt.class_weighting == "balanced" else None
    targets = (lambda s: multi_hot(s.labels, k)) if multi else (lambda s: s.labels)
    if cfg.strategy == "features":
        from safetensors.numpy import load_file

        cache = cached_features(model, tokenizer, data, model_path, cfg.max_length, cfg.eval_batch_size, args)
        feats = load_file(str(cache))
        record["features_cache"] = str(cache)
        return Trainer(model=head_module(model.classifier, multi), args=args,
                       train_dataset=FeatureDataset(feats["train"], targets(data.train)),
                       eval_dataset=FeatureDataset(feats["validation"], targets(data.validation)),
                       compute_metrics=trainer_metrics(labels, multi), compute_loss_func=loss_function(weights, multi))
    with args.main_process_first(desc="tokenizing"):
        train_ds = tokenize(data.train, tokenizer, cfg.max_length, k, cfg.data.long_texts)
        val_ds = sorted_by_length(tokenize(data.validation, tokenizer, cfg.max_length, k, cfg.data.long_texts))
    return Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                   processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                   compute_metrics=trainer_metrics(labels, multi), compute_loss_func=loss_function(weights, multi),
                   optimizers=(_optimizer(cfg, attempt, model), None))


def _optimizer(cfg: TeacherConfig, attempt: Attempt, model):
    """AdamW over two groups, the head at ``head_lr_multiplier`` times the encoder's rate."""
    return grouped_adamw(model, cfg.learning_rate, attempt.head_lr_multiplier, cfg.weight_decay)


def _save(cfg: TeacherConfig, trainer, data, tokenizer, model, final: Path, record: dict[str, Any],
          t0: float) -> None:
    """Rank 0: the checkpoint, label map, test metrics (and cross-dataset ones) and training record."""
    import torch
    import transformers

    from edgedistill.compress.data import save_label_map
    from edgedistill.compress.evaluate import cross_dataset_split, evaluate_torch, write_metrics

    labels = data.label_names
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    save_label_map(data, final)
    thresholds = None
    if data.multi_label:  # decided as a shipped package decides: at thresholds fitted on validation
        from edgedistill.compress.evaluate import torch_thresholds

        thresholds = torch_thresholds(model, tokenizer, data.validation, data.num_labels, max_length=cfg.max_length,
                                      batch_size=cfg.eval_batch_size)
    metrics = evaluate_torch(model, data.test, labels, tokenizer=tokenizer, max_length=cfg.max_length,
                             batch_size=cfg.eval_batch_size, dataset=data.name, progress=True, thresholds=thresholds)
    metrics.extra = {"model": cfg.model, "strategy": cfg.strategy, "max_length": cfg.max_length}
    write_metrics(metrics, final, "metrics", title=f"Teacher ({cfg.model}, {cfg.strategy}) on {data.name} test")
    cross = None
    if cfg.cross_dataset:
        split = cross_dataset_split(dataclasses.replace(cfg.data, source=cfg.cross_dataset, max_train_samples=None,
                                                        max_validation_samples=None, test_file=None),
                                    labels, cfg.cross_label_map, exclude=data.train.texts)
        cross = evaluate_torch(model, split, labels, tokenizer=tokenizer, max_length=cfg.max_length,
                               batch_size=cfg.eval_batch_size, dataset=cfg.cross_dataset, progress=True)
        write_metrics(cross, final, "metrics-cross", title=f"Teacher on {cfg.cross_dataset} (cross-dataset)")
    state, args = trainer.state, trainer.args
    record.update({
        "examples": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)},
        "best_validation_macro_f1": state.best_metric, "best_checkpoint": Path(state.best_model_checkpoint).name
        if state.best_model_checkpoint else None, "steps": state.global_step, "epochs_run": state.epoch,
        "wall_time_s": round(time.perf_counter() - t0, 2), "world_size": args.world_size,
        "device": str(args.device), "test": metrics.summary(), "cross_dataset": cross.summary() if cross else None,
        "log_history": state.log_history,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    })
    (final / "training.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    log.info("teacher test macro-F1 %.4f, accuracy %.4f (%.0f s)", metrics.macro_f1, metrics.accuracy,
             record["wall_time_s"])


def main(argv: list[str] | None = None) -> None:
    """``python -m edgedistill.compress.teacher --config recipe.toml`` (also under torchrun / accelerate launch)."""
    parallel.script_main(argv, prog="python -m edgedistill.compress.teacher", description=__doc__.splitlines()[0],
                         tables="data, teacher",
                         owned={"--output-dir": ("output_dir", "Where the teacher goes (default: the recipe's build "
                                                               "folder).")},
                         config=lambda recipe, **owned: recipe.teacher(**owned), run=finetune_teacher)


if __name__ == "__main__":
    main()
