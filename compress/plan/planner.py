"""The planner: what a build trains on, from the data's shape, this machine's speeds and a time budget.

:func:`plan` is pure (no torch, no clock): it takes the data's shape (:class:`DataShape`), the measured speeds
(:class:`~edgedistill.compress.plan.probe.Speeds`) and what the recipe states (:class:`Settings`), and returns a
:class:`Plan`: the values it fills into the planned profile, the estimated seconds of every stage, and what it
left out. The time model, stated here and set beside the actual stage times in every planned build's report:

    a pass of N texts through a model = N x (per_text + per_token x mean tokens)     (probe.Rate)
    teacher  = adaptation texts + texts x epochs (training steps)
               + validation texts x evaluations + test texts (inference) + a fixed cost
    student  = transfer texts once through the teacher (labelling) + transfer texts x epochs (training steps)
               + validation texts x evaluations + test texts (inference) + a fixed cost
    export, quantize, targets, package, report = a fixed cost + the validation / test passes each makes
    each ladder rung = its student (the labels are cached) + export .. report

Mean tokens are the training texts' (teacher's tokenizer), cut at the token limit. Early stopping ends training
sooner than planned, so training estimates are upper bounds; the fixed costs (:data:`FIXED_SECONDS`) are rough.

Epochs follow the data: a stage whose epochs the recipe leaves open trains at least ``min_steps`` optimizer steps
(whole epochs, up to ``max_epochs`` for the teacher and ``max_student_epochs`` for the student), so a small dataset
gets more epochs than its profile's.

Without a budget, or when everything fits, the plan takes all of the data. Otherwise it gives up, in order, until
the estimate fits: 1) the epochs the data earned beyond the profile's, one at a time, the student's first; 2) ladder
rungs, the costliest first; 3) the teacher's epochs beyond ``min_epochs``, then the student's; 3b) the token limit,
where the recipe leaves it open, down to ``min_length`` (long documents: a text's first tokens carry most of what
classifies it, and every token costs); 4) training texts: the teacher's share of the data falls, the student distils
on up to ``student_texts_per_teacher_text`` times as many (labelled by the teacher), and every class keeps its floor
(:data:`edgedistill.compress.data.SUBSET_FLOOR`). Rungs that fit in what is left come back. A budget that cannot
hold the smallest plan raises :class:`~edgedistill.compress.errors.PlanError` naming the budget that would.

Long texts: where many training texts are longer than the student's token limit (:attr:`PlanConfig.long_text_share`)
and the recipe leaves ``[data] long_texts`` open, the plan adds the recipe's student reading them ``head+tail`` and in
``chunks`` as ladder rungs (``view:MODE``) where the budget holds them (``chunks`` costs its windows: a text of 3
windows trains and infers 3 inputs), and the ship stage picks the mode, like any candidate, on validation. Under a
budget they come before tokens beyond ``min_length`` (step 3b): as many of them as fit at some token limit, then the
longest limit that holds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from edgedistill.compress.data import subset_sizes
from edgedistill.compress.errors import PlanError
from edgedistill.compress.ladder import VIEW
from edgedistill.compress.plan.probe import Speeds
from edgedistill.compress.plan.shapes import (DataShape, Plan, PlanConfig, Settings, StagePlan, StageSettings,
                                              epochs_text, format_duration)
from edgedistill.runtime.views import CHUNKS, LONG_TEXTS, TRUNCATE

FIXED_SECONDS = {"teacher": 20.0, "labelling": 30.0, "student": 15.0, "export": 20.0, "quantize": 30.0,
                 "targets": 10.0, "package": 10.0, "baseline": 30.0, "ship": 10.0, "report": 20.0}
"""Model loads, checkpoint writes, exports and graph optimisation, the TF-IDF baseline; ``labelling``: the
teacher's one-off ONNX export when it labels through ONNX Runtime."""
BASELINE_FIT_SECONDS = 0.005
"""Seconds per training text of the TF-IDF + LR baseline (n-grams, its C chosen on validation), the teacher's check
on the teacher's texts and the baseline stage on all of them: 26,038 tweets took 130 s, 5,095 took 25 s on the 2-core
EPYC (a fixed 30 s left 3 minutes of the tweets' baseline stage out of the estimate)."""
BASELINE_PARITY_SECONDS = 0.012
"""Seconds per validation text of the baseline's ONNX parity check and gate (3,735 tweets: 47 s)."""
QUANTIZE_PASSES = 4
"""Validation passes of the quantize gate (fp32, the optimised graph and the int8 variants)."""
REPORT_TEACHER_TEXTS = 48
"""The report times the teacher one text at a time on 24 test texts, twice (its test figures are the teacher
stage's)."""
STAGES = ("teacher", "student", "export", "quantize", "targets", "package", "baseline", "ship", "report")


@dataclass(frozen=True)
class _Choice:
    teacher_texts: int
    student_texts: int
    teacher_validation: int
    unlabelled: int
    teacher_epochs: float
    student_epochs: float
    rungs: tuple[str, ...]
    limit: int = 512
    """The token limit of the stages whose limit the recipe leaves open."""

    def limits(self, s: Settings) -> tuple[int, int]:
        """The teacher's and the student's token limits: the recipe's, else this choice's (the student's no more
        than the recipe's export limit: training reads a text as inference will)."""
        student = s.student.max_length or (min(self.limit, s.export_max_length) if s.export_max_length
                                           else self.limit)
        return s.teacher.max_length or self.limit, student


EXPORT_MIN_LENGTH = 128
"""A plan raises the export's token limit to the student's, never lowers it below this (the export's default): a
short-text student reads the occasional long text whole at inference, at no cost to the others."""


# ---------------------------------------------------------------------------------------------- time model
def token_limit(shape: DataShape, percentile: float, model_max: int) -> int:
    """1) The length that keeps ``percentile`` % of the training texts whole, up to a multiple of 8; 2) no more
    than the models take; 3) at least 16."""
    whole = -(-shape.percentile(percentile) // 8) * 8
    return max(16, min(model_max, whole))


def _evals(epochs: float, per_epoch: int) -> int:
    return math.ceil(epochs * per_epoch)


def _student_seconds(speed, transfer: int, epochs: float, shape: DataShape, s: StageSettings, tokens: float,
                     windows: float = 1.0) -> float:
    """One student's distillation without the labelling: training steps, validations, the test pass
    (``windows``: model inputs a text, ``chunks``)."""
    return (speed.train.seconds(transfer * windows * epochs + s.adapt_texts, tokens)
            + speed.infer.seconds((shape.validation * _evals(epochs, s.evals_per_epoch) + shape.test) * windows,
                                  tokens)
            + FIXED_SECONDS["student"])


def _tail(student, teacher, shape: DataShape, tokens: float, windows: float = 1.0) -> dict[str, float]:
    """Export .. report for one student: a fixed cost each, and their passes over validation and test texts (the
    report scores the package on the test split and calibrates on it, and times the teacher)."""
    val = lambda passes: student.infer.seconds(shape.validation * passes * windows, tokens)  # noqa: E731
    return {"export": FIXED_SECONDS["export"], "quantize": FIXED_SECONDS["quantize"] + val(QUANTIZE_PASSES),
            "targets": FIXED_SECONDS["targets"] + val(1), "package": FIXED_SECONDS["package"] + val(1),
            "baseline": (FIXED_SECONDS["baseline"] + BASELINE_FIT_SECONDS * shape.n_train
                         + BASELINE_PARITY_SECONDS * shape.validation),
            "ship": FIXED_SECONDS["ship"] + val(1),
            "report": FIXED_SECONDS["report"] + student.infer.seconds(2 * shape.test * windows, tokens)
            + teacher.infer.seconds(REPORT_TEACHER_TEXTS, tokens)}


def _reading(rung: str, speeds: Speeds, shape: DataShape, limit: int) -> tuple[Any, float, float]:
    """A rung's speed, its model inputs a text and their mean tokens: a ``view:`` rung is the recipe's student
    reading texts in its mode (``chunks``: several windows a long text)."""
    if not rung.startswith(VIEW):
        return speeds.students[rung], 1.0, shape.mean_tokens(limit)
    windows, tokens = shape.windows(limit) if rung == VIEW + CHUNKS else (1.0, shape.mean_tokens(limit))
    return speeds.students["recipe"], windows, tokens


def _sizes(shape: DataShape, c: _Choice) -> tuple[int, int]:
    """Training texts the teacher and the student get once every class has its floor."""
    return (sum(subset_sizes(shape.train_counts, c.teacher_texts).values()),
            sum(subset_sizes(shape.train_counts, c.student_texts).values()))


def estimate(c: _Choice, shape: DataShape, speeds: Speeds, s: Settings) -> dict[str, float]:
    """Seconds of each stage (and of the ladder) for choice ``c`` (the module docstring's time model)."""
    T, S = speeds.teacher, speeds.students["recipe"]
    limits = c.limits(s)
    tok_t, tok_s = shape.mean_tokens(limits[0]), shape.mean_tokens(limits[1])
    n_t, n_s = _sizes(shape, c)
    if s.teacher_features:
        teacher = T.infer.seconds(n_t + c.teacher_validation + shape.test, tok_t)
    else:
        evals = c.teacher_validation * _evals(c.teacher_epochs, s.teacher.evals_per_epoch)
        teacher = (T.train.seconds(n_t * c.teacher_epochs + s.teacher.adapt_texts, tok_t)
                   + T.infer.seconds(evals + shape.test, tok_t))
    transfer = n_s * (1 + s.augment) + c.unlabelled
    labelling = T.infer.seconds(transfer, tok_s) / s.labelling_speedup
    labelling += FIXED_SECONDS["labelling"] if s.labelling_speedup > 1 else 0.0
    teacher += BASELINE_FIT_SECONDS * n_t  # the teacher's check fits the baseline on the teacher's texts
    out = {"teacher": teacher + FIXED_SECONDS["teacher"],
           "student": labelling + _student_seconds(S, transfer, c.student_epochs, shape, s.student, tok_s),
           **_tail(S, T, shape, tok_s)}
    if c.rungs:  # each rung distils on the same texts, labelled once (cached), then goes through its own tail
        out["ladder"] = 0.0
        for r in c.rungs:
            speed, windows, tokens = _reading(r, speeds, shape, limits[1])
            out["ladder"] += (_student_seconds(speed, transfer, c.student_epochs, shape, s.student, tokens, windows)
                              + sum(_tail(speed, T, shape, tokens, windows).values()))
    return out


# ----------------------------------------------------------------------------------------------- the search
def data_epochs(stage: StageSettings, texts: int, cfg: PlanConfig, cap: float | None = None) -> float:
    """The epochs of a stage on ``texts`` training texts: the recipe's when it states them; else its profile's,
    or more where that is fewer than ``cfg.min_steps`` optimizer steps (whole epochs, up to ``cap``, by default
    ``cfg.max_epochs``)."""
    if stage.epochs_fixed or not stage.batch_size or not cfg.min_steps:
        return stage.epochs
    steps_per_epoch = max(1, math.ceil(texts / stage.batch_size))
    most = cfg.max_epochs if cap is None else cap
    return max(stage.epochs, min(most, float(math.ceil(cfg.min_steps / steps_per_epoch))))


def _largest(shape: DataShape, s: Settings, cfg: PlanConfig, limit: int) -> _Choice:
    """All of the data (or what the recipe states), the epochs that follow it, every rung, the token limit."""
    n = shape.n_train
    unlabelled = shape.unlabelled if s.max_transfer is None else min(shape.unlabelled, s.max_transfer)
    c = _Choice(s.teacher.texts or n, s.student.texts or n, s.teacher.validation or shape.validation,
                unlabelled, s.teacher.epochs, s.student.epochs, s.rungs, limit)
    n_t, n_s = _sizes(shape, c)
    return replace(c, teacher_epochs=data_epochs(s.teacher, n_t, cfg),
                   student_epochs=data_epochs(s.student, n_s * (1 + s.augment) + unlabelled, cfg,
                                              cfg.max_student_epochs))


def _at(f: float, c: _Choice, shape: DataShape, s: Settings, cfg: PlanConfig) -> _Choice:
    """``c`` with the texts the recipe leaves to the planner at share ``f`` in [0, 1] of the way from the
    smallest plan to all of the data (the module docstring's step 3)."""
    n, floor = shape.n_train, min(shape.n_train, cfg.min_teacher_texts)
    between = round(floor + f * (n - floor))
    teacher = s.teacher.texts or between
    if s.student.texts:
        student = s.student.texts
    elif s.teacher.texts is None:
        student = min(n, max(teacher, round(cfg.student_texts_per_teacher_text * teacher)))
    else:
        student = between
    validation = s.teacher.validation or min(shape.validation, max(cfg.min_validation_texts,
                                                                  round(shape.validation * teacher / max(1, n))))
    unlabelled = c.unlabelled if s.max_transfer is not None else round(shape.unlabelled * student / max(1, n))
    return replace(c, teacher_texts=teacher, student_texts=student, teacher_validation=validation,
                   unlabelled=unlabelled)


def _fit(full: _Choice, cost, budget: float, shape: DataShape, s: Settings, cfg: PlanConfig,
         views: list[str] = ()) -> _Choice:
    """The largest choice under ``budget`` (the module docstring's steps 1 to 3, then the rungs that fit);
    ``views``: the long-text rungs the plan would add, which come before tokens beyond the floor."""
    fits = lambda c: sum(cost(c).values()) <= budget  # noqa: E731
    rung_cost = {r: cost(replace(full, rungs=(r,)))["ladder"] for r in full.rungs}
    # 0) the smallest plan must fit
    shortest = min(full.limit, cfg.min_length)
    smallest = _at(0.0, replace(full, rungs=(), teacher_epochs=_fewer(s.teacher, cfg),
                                student_epochs=_fewer(s.student, cfg), limit=shortest), shape, s, cfg)
    if not fits(smallest):
        need = sum(cost(smallest).values())
        raise PlanError(f"a time budget of {format_duration(budget)} cannot hold the smallest plan (the teacher on "
                        f"{_sizes(shape, smallest)[0]:,} texts for {epochs_text(smallest.teacher_epochs)} at up to "
                        f"{smallest.limits(s)[0]} tokens, no ladder), "
                        f"estimated at {format_duration(need)} on this machine: give --time-budget "
                        f"{format_duration(need * 1.05)} or more", needed_s=need)
    # 1) the epochs the data earned beyond its profile's (min_steps), one at a time: the student's, then the
    #    teacher's
    c = full
    for stage, key in ((s.student, "student_epochs"), (s.teacher, "teacher_epochs")):
        while not fits(c) and getattr(c, key) - 1 >= stage.epochs:
            c = replace(c, **{key: getattr(c, key) - 1})
    # 2) ladder rungs, the costliest first
    for r in sorted(full.rungs, key=rung_cost.__getitem__, reverse=True):
        if fits(c):
            break
        c = replace(c, rungs=tuple(x for x in c.rungs if x != r))
    # 3) epochs beyond min_epochs: the teacher's, then the student's
    if not fits(c):
        c = replace(c, teacher_epochs=_fewer(s.teacher, cfg))
    if not fits(c):
        c = replace(c, student_epochs=_fewer(s.student, cfg))
    # 3b) the token limit, where the recipe leaves it open: the longest (a multiple of 8) that fits, else the floor;
    #     long texts read in other modes come first (as many as fit at some limit, the cheapest first): a whole
    #     article read in windows of the floor beats more of its start
    if not fits(c) and c.limit > shortest and not (s.teacher.max_length and s.student.max_length):
        lengths = range(shortest, c.limit + 1, 8)
        with_views = (replace(c, rungs=(*c.rungs, *views[:k])) for k in range(len(views), 0, -1))
        c = next((v for v in with_views if fits(replace(v, limit=shortest))), c)
        c = replace(c, limit=next((n for n in reversed(lengths) if fits(replace(c, limit=n))), shortest))
    # 4) texts: the largest share that fits (the cost grows with the share)
    if not fits(c):
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(_at(mid, c, shape, s, cfg)) else (lo, mid)
        c = _at(lo, c, shape, s, cfg)
    # 5) the rungs left out come back, the cheapest first, while they fit
    for r in sorted(set(full.rungs) - set(c.rungs), key=rung_cost.__getitem__):
        more = replace(c, rungs=tuple(x for x in full.rungs if x in (*c.rungs, r)))
        c = more if fits(more) else c
    return c


def _fewer(stage: StageSettings, cfg: PlanConfig) -> float:
    return stage.epochs if stage.epochs_fixed else min(stage.epochs, cfg.min_epochs)


# ------------------------------------------------------------------------------------------------- the plan
def plan(cfg: PlanConfig, shape: DataShape, speeds: Speeds, settings: Settings) -> Plan:
    """What a build trains on within ``cfg.time_budget`` (all of the data without one): see the module docstring."""
    # 1) the token limit, from the training texts' lengths, for the stages whose limit the recipe leaves open
    limit = token_limit(shape, cfg.length_percentile, speeds.max_length)

    def cost(c: _Choice) -> dict[str, float]:
        return estimate(c, shape, speeds, settings)

    # 2) all of the data; 3) under a budget it does not fit, the largest choice that does
    full = _largest(shape, settings, cfg, limit)
    budget = cfg.budget_seconds
    views = _long_text_views(full, shape, settings, cfg)
    chosen = full if budget is None or sum(cost(full).values()) <= budget else _fit(full, cost, budget, shape,
                                                                                    settings, cfg, views)
    # 4) long texts: the other ways of reading them, as rungs chosen on validation, where the budget holds them
    unheld = []
    for rung in (r for r in views if r not in chosen.rungs):
        more = replace(chosen, rungs=(*chosen.rungs, rung))
        if budget is None or sum(cost(more).values()) <= budget:
            chosen = more
        else:
            unheld.append(rung)
    # 5) the values that differ from the full profile's, the stages in words, what was left out
    seconds = cost(chosen)
    limits = chosen.limits(settings)
    described = _described(chosen, full, shape, settings, limits)
    values, left_out = _values(chosen, full, settings, limits), _left_out(chosen, full, shape, settings)
    if unheld:
        left_out.append(f"long-text modes the budget cannot hold: {', '.join(r[len(VIEW):] for r in unheld)} "
                        f"(the student reads {settings.long_texts or TRUNCATE})")
    retries = _retries(seconds, budget, settings.teacher_retries)
    if retries:
        described["teacher"] += (f"; a failed check retries: up to "
                                 f"{format_duration(_retry_seconds(seconds, retries))} more")
    if retries < settings.teacher_retries:
        values.setdefault("teacher", {})["retries"] = retries
        left_out.append(f"teacher: {settings.teacher_retries - retries} retry of a failed check (each runs twice the "
                        "epochs of the run before it: up to "
                       f"{format_duration(_retry_seconds(seconds, settings.teacher_retries))}"
                        " more), which the budget cannot hold")
    stages = [StagePlan(name, what, seconds[name]) for name, what in described.items() if name in seconds]
    return Plan(values, stages, left_out, budget, {**shape.summary(), "token_limit": chosen.limit}, speeds.as_dict())


def _long_text_views(c: _Choice, shape: DataShape, s: Settings, cfg: PlanConfig) -> list[str]:
    """The ``view:MODE`` rungs of a plan: where the recipe leaves ``[data] long_texts`` open, has a transformer
    student, and at least ``cfg.long_text_share`` of the training texts are longer than the student's limit, every
    mode but ``truncate`` (the recipe's student reads that way), the cheapest first."""
    if s.long_texts is not None or s.static_student or shape.cut(c.limits(s)[1]) < cfg.long_text_share:
        return []
    return [VIEW + mode for mode in LONG_TEXTS if mode != TRUNCATE and VIEW + mode not in s.rungs]


def _retry_seconds(seconds: dict[str, float], retries: int) -> float:
    """What ``retries`` runs of a teacher that fails its check add: each twice the epochs of the run before."""
    return (seconds["teacher"] - FIXED_SECONDS["teacher"]) * sum(2 ** k for k in range(1, retries + 1))


def _retries(seconds: dict[str, float], budget: float | None, wanted: int) -> int:
    """The teacher's retries the budget can hold beside the plan (all of them without a budget)."""
    if budget is None:
        return wanted
    left = budget - sum(seconds.values())
    return max((k for k in range(wanted + 1) if _retry_seconds(seconds, k) <= left), default=0)


def _values(c: _Choice, full: _Choice, s: Settings, limits: tuple[int, int]) -> dict[str, dict[str, Any]]:
    """The planned profile's table: what the planner chose where the recipe left the choice open."""
    teacher: dict[str, Any] = {}
    student: dict[str, Any] = {}
    if s.teacher.max_length is None:
        teacher["max_length"] = limits[0]
    if s.student.max_length is None:
        student["max_length"] = limits[1]
    for table, stage, texts, epochs, whole in (
            (teacher, s.teacher, c.teacher_texts, c.teacher_epochs, full.teacher_texts),
            (student, s.student, c.student_texts, c.student_epochs, full.student_texts)):
        if stage.texts is None and texts < whole:
            table["max_train_samples"] = texts
        if not stage.epochs_fixed and epochs != stage.epochs:
            table["epochs"] = epochs
    if s.teacher.validation is None and c.teacher_validation < full.teacher_validation:
        teacher["max_validation_samples"] = c.teacher_validation
    if s.max_transfer is None and c.unlabelled < full.unlabelled:
        student["max_transfer_samples"] = c.unlabelled
    values = {"teacher": teacher, "distill": student}
    if s.export_max_length is None and limits[1] > EXPORT_MIN_LENGTH:
        values["export"] = {"max_length": limits[1]}
    if c.rungs != s.rungs:
        values["ladder"] = {"rungs": list(c.rungs)}
    return {k: v for k, v in values.items() if v}


def _described(c: _Choice, full: _Choice, shape: DataShape, s: Settings,
               limits: tuple[int, int]) -> dict[str, str]:
    n_t, n_s = _sizes(shape, c)
    n = shape.n_train
    unlabelled = f" + {c.unlabelled:,} unlabelled" if c.unlabelled else ""
    augmented = f" + {s.augment} augmented copies each" if s.augment else ""
    return {
        "teacher": (f"{n_t:,} of {n:,} training texts, {epochs_text(c.teacher_epochs)}, up to {limits[0]} tokens; "
                    f"validation {c.teacher_validation:,} of {shape.validation:,}"
                    + (" (features: the head alone trains)" if s.teacher_features else "")),
        "student": (f"{n_s:,} of {n:,} training texts{unlabelled}{augmented} labelled by the teacher, "
                    f"{epochs_text(c.student_epochs)}, up to {limits[1]} tokens"),
        "export": "ONNX, parity-checked",
        "quantize": f"variants gated on {shape.validation:,} validation texts",
        "targets": "the declared targets",
        "package": "files, manifest, " + ("per-label thresholds" if shape.labels else "temperature, class biases"),
        "baseline": "TF-IDF + logistic regression, exported to ONNX and packaged",
        "ship": "the most accurate candidate on validation ships",
        "report": f"{shape.test:,} test texts: teacher, baseline, student, package",
        "ladder": "rungs " + ", ".join(f"{r} (the student reading long texts as {r[len(VIEW):]})"
                                       if r.startswith(VIEW) else r for r in c.rungs),
    }


def _left_out(c: _Choice, full: _Choice, shape: DataShape, s: Settings) -> list[str]:
    """What the plan gave up, in words (empty when it took everything)."""
    out = []
    for who, texts in (("teacher", c.teacher_texts), ("student", c.student_texts)):
        kept = subset_sizes(shape.train_counts, texts)
        if (k := sum(kept.values())) < shape.n_train:
            floored = [f"{name} ({kept[name]})" for name, count in shape.train_counts.items()
                       if kept[name] == count and round(count * texts / shape.n_train) < count]
            out.append(f"{who}: {shape.n_train - k:,} of {shape.n_train:,} training texts left out "
                       f"({k / shape.n_train:.0%} "
                       "kept, the same share of each class)"
                       + (f"; kept whole by the floor per class: {', '.join(floored[:8])}"
                          + (f" and {len(floored) - 8} more" if len(floored) > 8 else "") if floored else ""))
    if c.teacher_validation < full.teacher_validation:
        out.append(f"teacher: validates on {c.teacher_validation:,} of {full.teacher_validation:,} validation texts")
    if c.unlabelled < full.unlabelled:
        out.append(f"student: {full.unlabelled - c.unlabelled:,} of {full.unlabelled:,} unlabelled transfer texts "
                   "left out")
    for who, now, before in (("teacher", c.teacher_epochs, full.teacher_epochs),
                             ("student", c.student_epochs, full.student_epochs)):
        if now < before:
            out.append(f"{who}: {epochs_text(now)} instead of {before:g}")
    if dropped := [r for r in full.rungs if r not in c.rungs]:
        out.append(f"ladder rungs that do not fit: {', '.join(dropped)}")
    if c.limit < full.limit:
        out.append(f"token limit {c.limit} instead of {full.limit} (where the recipe leaves it open)")
    for limit in sorted(set(c.limits(s))):
        if cut := sum(n > limit for n in shape.lengths) / max(1, len(shape.lengths)):
            out.append(f"{cut:.1%} of the training texts are longer than {limit} tokens and are cut there")
    return out
