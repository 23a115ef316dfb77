"""The settings of one distillation: :class:`DistillConfig`, and the profiles that fill the fields it leaves None."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgedistill.compress import profiles
from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.student import StudentConfig
from edgedistill.compress.training_settings import TrainingSettings

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
              "augment": 0, "evals_per_epoch": 2, "patience": 3, "precision": "auto"},
    "full": {"epochs": 3.0, "learning_rate": 1e-4, "batch_size": 32, "max_length": 128,
             "max_transfer_samples": None, "max_train_samples": None, "max_validation_samples": None,
             "augment": 0, "evals_per_epoch": 2, "patience": 3, "precision": "auto"},
}
TEACHER_BACKENDS = ("onnx", "torch")


@dataclass
class DistillConfig(TrainingSettings):
    """One distillation run: the training fields every trainer shares
    (:class:`~edgedistill.compress.training_settings.TrainingSettings`) and the distillation's own. Fields left None
    come from ``PROFILES[profile]``."""

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
    """Softmax temperature T of the soft-target term: teacher and student logits are divided by T, and the
    term is scaled by T squared."""
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
    (:mod:`edgedistill.compress.augment`); ``augment_methods`` says how they are made. Copies equal to a training,
    validation or test text, or to another copy, are dropped."""
    augment_p: float = 0.3
    """Probability that ``replace`` swaps a content word."""
    augment_mask_p: float = 0.1
    """Probability that ``mask`` hides a word behind the teacher's mask token (Tang et al. 2019: 0.1; at least one
    word a copy)."""
    augment_methods: list[str] = field(default_factory=lambda: ["replace", "delete"])
    """The perturbation families augmentation uses: ``replace`` (content words swapped for the teacher's
    embedding neighbours), ``delete`` (a span cut), ``mask`` (words hidden behind the teacher tokenizer's mask
    token), ``ngram`` (a window of 1 to 5 contiguous words kept) and ``mix`` (the first words of one training
    text, the last words of another). ``replace`` and ``delete`` together make one edit (replace, then maybe
    delete); each text's copies go through the edit and the other families chosen in turn, from one drawn at
    random."""
    head_lr_multiplier: float | None = None
    """A fresh head's learning rate over the encoder's (``pretrained`` and ``drop-layers`` students; a student
    cut from the teacher keeps its trained head at 1x); None: from the number of classes
    (:func:`edgedistill.compress.heads.student_head_multiplier`: 4x for 2 classes, up to a 1e-3 step)."""
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
        if self.head_lr_multiplier is not None and self.head_lr_multiplier <= 0:
            raise ConfigError("distill.head_lr_multiplier", self.head_lr_multiplier, "must be > 0")
        for name in ("augment_p", "augment_mask_p"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"distill.{name}", getattr(self, name), "must be in (0, 1]")
        from edgedistill.compress.augment import METHODS

        self.augment_methods = list(self.augment_methods)
        bad = [m for m in self.augment_methods if m not in METHODS]
        if not self.augment_methods or bad:
            raise ConfigError("distill.augment_methods", self.augment_methods,
                              f"{'unknown ' + str(bad) + '; ' if bad else 'name at least one; '}"
                              f"choose from {list(METHODS)}")
        if self.teacher_backend not in TEACHER_BACKENDS:
            raise ConfigError("distill.teacher_backend", self.teacher_backend,
                              f"must be one of {', '.join(TEACHER_BACKENDS)}")
        if not self.temperature > 0:
            raise ConfigError("distill.temperature", self.temperature, "must be > 0")
        if isinstance(self.hidden_loss_layers, bool) or not isinstance(self.hidden_loss_layers, int) \
                or self.hidden_loss_layers < 1:
            raise ConfigError("distill.hidden_loss_layers", self.hidden_loss_layers, "must be a layer count >= 1")
        self.check_training("distill")
        for name in ("hidden_loss_weight", "attention_loss_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name}", getattr(self, name), "must be >= 0")
        if self.max_transfer_samples is not None and self.max_transfer_samples < 0:
            raise ConfigError("distill.max_transfer_samples", self.max_transfer_samples, "must be >= 0")
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

    def head_multiplier(self, num_labels: int) -> float:
        """The student head's learning rate over the encoder's (call on a resolved config)."""
        if self.head_lr_multiplier is not None:
            return self.head_lr_multiplier
        if self.student.builder in ("pretrained", "drop-layers"):
            from edgedistill.compress.heads import student_head_multiplier

            return student_head_multiplier(num_labels, self.learning_rate)
        return 1.0

    def resolved(self) -> DistillConfig:
        """A copy with every None field filled from ``PROFILES[profile]`` (the DataConfig subset sizes too)."""
        return profiles.resolve(self, PROFILES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
