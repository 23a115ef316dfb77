"""What the planner reads and gives: its config (the recipe's ``[plan]`` table), the data's shape, what the recipe
states, and the plan (:mod:`edgedistill.compress.plan.planner` plans with them; :mod:`edgedistill.compress.plan.build`
fills them from a recipe and its data)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from edgedistill.compress.errors import ConfigError
from edgedistill.runtime.views import DEFAULT_MAX_CHUNKS, DEFAULT_STRIDE


@dataclass
class PlanConfig:
    """How a planned build (the ``planned`` profile) is sized: recipe table ``[plan]``."""

    time_budget: str | None = None
    """Wall-clock budget of the whole build: ``"90s"``, ``"45m"``, ``"2h"``, ``"1h30m"``; None: all of the data
    (the plan and its estimate are still printed)."""
    length_percentile: float = 99.0
    """The token limit keeps this share of the training texts whole (capped by the models' own limit)."""
    min_length: int = 128
    """Under a budget, a token limit the recipe leaves open falls to no fewer tokens than this before training texts
    are cut (texts shorter than this are never cut by it)."""
    min_teacher_texts: int = 400
    """The fewest training texts a budget may leave the teacher (all of them when there are fewer); every class
    keeps its floor on top."""
    student_texts_per_teacher_text: float = 5.0
    """Under a budget, the student distils on up to this many training texts per teacher text (the teacher labels
    them): labelling and a small student cost a fraction of fine-tuning the teacher."""
    min_validation_texts: int = 500
    """Under a budget, the teacher's validation split shrinks with its training texts, to no fewer than this."""
    min_epochs: float = 1.0
    """A budget lowers the epochs a recipe leaves to its profile down to this, before it cuts texts."""
    min_steps: int = 1000
    """Epochs follow the data: a stage whose epochs the recipe leaves open trains for at least this many
    optimizer steps, in whole epochs, up to ``max_epochs`` (small data gets more epochs than its profile's; the
    50-class TREC teacher was still climbing, 0.48 -> 0.61 validation macro-F1, between its first epoch and
    the middle of its second); early stopping on validation still ends it sooner."""
    max_epochs: float = 5.0
    """The most epochs ``min_steps`` may give the teacher."""
    long_text_share: float = 0.1
    """Where at least this share of the training texts is longer than the student's token limit and the recipe
    leaves ``[data] long_texts`` open, the other ways of reading a long text (``head+tail``, ``chunks``) become
    ladder rungs (``view:MODE``: the recipe's student, distilled again reading texts that way) where the budget holds
    them, and the ship stage chooses among them on validation; 1.0: only where every text is cut."""
    max_student_epochs: float = 10.0
    """The most epochs ``min_steps`` may give the student, which trains 5 to 10 times faster than the teacher: the
    50-class TREC student (MiniLM-L6, 3,767 texts) reached validation macro-F1 0.26 in 3 epochs and 0.73 in 10
    (TF-IDF + LR: 0.71), in 5.5 minutes."""

    def __post_init__(self) -> None:
        if self.time_budget is not None:
            self.time_budget = str(self.time_budget)
            parse_duration(self.time_budget)
        if not 50.0 <= self.length_percentile <= 100.0:
            raise ConfigError("plan.length_percentile", self.length_percentile, "must be in [50, 100]")
        if self.min_length < 8:
            raise ConfigError("plan.min_length", self.min_length, "must be at least 8")
        for name in ("min_teacher_texts", "min_validation_texts"):
            if (v := getattr(self, name)) < 2:
                raise ConfigError(f"plan.{name}", v, "must be at least 2")
        if self.min_steps < 0:
            raise ConfigError("plan.min_steps", self.min_steps, "must be >= 0")
        if not 0.0 < self.long_text_share <= 1.0:
            raise ConfigError("plan.long_text_share", self.long_text_share, "must be in (0, 1]")
        for name in ("student_texts_per_teacher_text", "min_epochs", "max_epochs", "max_student_epochs"):
            if not (v := getattr(self, name)) > 0:
                raise ConfigError(f"plan.{name}", v, "must be > 0")

    @property
    def budget_seconds(self) -> float | None:
        return None if self.time_budget is None else parse_duration(self.time_budget)


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """``"90s"``, ``"45m"``, ``"2h"``, ``"1h30m"`` -> seconds."""
    m = _DURATION.match(str(text).strip().lower())
    if not m or not any(m.groups()) or (
            seconds := sum(float(v or 0) * u for v, u in zip(m.groups(), (3600, 60, 1)))) <= 0:
        raise ConfigError("plan.time_budget", text, 'write a duration such as "90s", "45m", "2h" or "1h30m"')
    return seconds


def epochs_text(n: float) -> str:
    return f"{n:g} epoch" + ("" if n == 1 else "s")


def format_duration(seconds: float) -> str:
    """Seconds as a budget is written: ``45s``, ``12m``, ``1h05m`` (whole minutes from a minute up)."""
    if seconds < 60:
        return f"{max(1, math.ceil(seconds))}s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


# --------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class DataShape:
    """What the planner reads of the data: the training split per class, the other splits' sizes, the token
    lengths of the training texts (untruncated, the teacher's tokenizer; a sample of them for large data) and the
    unlabelled transfer texts beside them."""

    train_counts: dict[str, int]
    validation: int
    test: int
    lengths: tuple[int, ...]
    unlabelled: int = 0
    labels: int | None = None
    """A multi-label task's number of labels (``train_counts`` then counts each text under its rarest label, the
    strata its subsamples keep); None: single-label, ``train_counts`` are the classes."""

    @property
    def n_train(self) -> int:
        return sum(self.train_counts.values())

    def percentile(self, q: float) -> int:
        ordered = sorted(self.lengths) or [0]
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def mean_tokens(self, limit: int) -> float:
        """Mean token count of a training text cut at ``limit``."""
        return sum(min(n, limit) for n in self.lengths) / max(1, len(self.lengths))

    def cut(self, limit: int) -> float:
        """The share of the training texts longer than ``limit`` tokens."""
        return sum(n > limit for n in self.lengths) / max(1, len(self.lengths))

    def windows(self, limit: int) -> tuple[float, float]:
        """``chunks`` at ``limit`` tokens: the mean windows a training text makes, and the mean tokens a window
        (:func:`edgedistill.runtime.views.chunks` with one special token at each end, the default stride and cap)."""
        room = max(1, limit - 2)
        step = max(1, room - min(DEFAULT_STRIDE, room - 1))
        counts = [1 if n <= limit else min(DEFAULT_MAX_CHUNKS, 1 + math.ceil((n - 2 - room) / step))
                  for n in self.lengths or [0]]
        tokens = [min(n, limit) if k == 1 else (k - 1) * room + min(room, n - 2 - (k - 1) * step) + 2 * k
                  for n, k in zip(self.lengths or [0], counts)]
        return sum(counts) / len(counts), sum(tokens) / max(1, sum(counts))

    def summary(self) -> dict[str, Any]:
        smallest = min(self.train_counts, key=self.train_counts.__getitem__)
        return {"train": self.n_train, "validation": self.validation, "test": self.test,
                "classes": len(self.train_counts), "smallest_class": [smallest, self.train_counts[smallest]],
                "imbalance": round(max(self.train_counts.values()) / max(1, self.train_counts[smallest]), 1),
                "tokens": {f"p{q}": self.percentile(q) for q in (50, 95, 99)} | {"max": max(self.lengths or [0])},
                "unlabelled": self.unlabelled, **({"labels": self.labels} if self.labels else {})}


@dataclass(frozen=True)
class StageSettings:
    """What the recipe states for one training stage (None: the planner chooses)."""

    epochs: float
    """The recipe's, or its profile's when it states none."""
    epochs_fixed: bool = False
    """The recipe states the epochs: the planner keeps them."""
    max_length: int | None = None
    texts: int | None = None
    """The recipe's ``max_train_samples``."""
    validation: int | None = None
    """The recipe's ``max_validation_samples``."""
    evals_per_epoch: int = 2
    adapt_texts: int = 0
    """Texts through a training step to adapt the encoder first (steps x batch size)."""
    batch_size: int | None = None
    """Texts per optimizer step (batch x accumulation x processes); None: the epochs stay the profile's
    (:attr:`PlanConfig.min_steps` needs it to count steps)."""


@dataclass(frozen=True)
class Settings:
    """What the recipe states: the two training stages, the student's extra texts, the ladder."""

    teacher: StageSettings
    student: StageSettings
    teacher_features: bool = False
    """``teacher.strategy = "features"``: one inference pass, then only the head trains (next to free)."""
    max_transfer: int | None = None
    """The recipe's ``distill.max_transfer_samples``."""
    augment: int = 0
    labelling_speedup: float = 1.0
    """How much faster the teacher labels than torch inference (ONNX Runtime: measured 1.9x on 2 cores)."""
    rungs: tuple[str, ...] = ()
    export_max_length: int | None = None
    """The recipe's ``[export] max_length``: the student trains on no more tokens than it reads at inference. None:
    the plan sets the export's limit to the student's (no lower than :data:`EXPORT_MIN_LENGTH`)."""
    teacher_retries: int = 0
    """Runs a teacher that fails its check gets, each with twice the last one's epochs: not in the estimate (a
    teacher that passes never runs them), named beside it."""
    long_texts: str | None = None
    """The recipe's ``[data] long_texts``; None: it leaves the mode open (see :attr:`PlanConfig.long_text_share`)."""
    static_student: bool = False
    """The recipe's student is the static one, which has no token windows to read."""


# --------------------------------------------------------------------------------------------------- output
@dataclass
class StagePlan:
    name: str
    what: str
    seconds: float


@dataclass
class Plan:
    """What a planned build trains on, its estimate, and what it left out."""

    values: dict[str, dict[str, Any]]
    """The planned profile's table (``Recipe.planned``): only what differs from the full profile's defaults."""
    stages: list[StagePlan]
    left_out: list[str]
    budget_s: float | None
    shape: dict[str, Any] = field(default_factory=dict)
    speeds: dict[str, Any] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.stages)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_s": self.total_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(d["values"], [StagePlan(**s) for s in d["stages"]], list(d["left_out"]), d["budget_s"],
                   d.get("shape", {}), d.get("speeds", {}))
