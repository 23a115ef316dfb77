"""Planning a build: read the data, measure this machine, plan, and keep the plan for the next build.

:func:`plan_build` gives a planned recipe (the ``planned`` profile) its plan: the data's shape
(:func:`data_shape`), what the recipe states (:func:`settings_of`), this machine's speeds
(:func:`measure_speeds`, cached per machine and model), then :func:`~edgedistill.compress.plan.planner.plan`. The plan
goes into the recipe as its ``planned`` values (:meth:`edgedistill.compress.recipe.Recipe.with_plan`), so the stages,
their fingerprints and the report see ordinary config values, and into ``<build>/plan.json`` with its key: a hash of
the data files, the recipe's tables that shape the plan, and the budget. A build whose key matches the saved one
reuses the saved plan without measuring anything: measured throughput varies from run to run, and a plan made
again could move a value and with it every stage's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgedistill import __version__
from edgedistill.compress import profiles
from edgedistill.compress.ladder import VIEW
from edgedistill.runtime.fsutil import write_text_atomic
from edgedistill.compress.plan.planner import STAGES, plan, token_limit
from edgedistill.compress.plan.shapes import DataShape, Plan, Settings, StageSettings, format_duration
from edgedistill.compress.plan.probe import (LENGTHS, LONG_LENGTH, Speeds, measure, student_speed,
                                            tokenizer_limit)

log = logging.getLogger(__name__)

LENGTH_SAMPLE = 5000
"""Training texts tokenized to read the length distribution (a seeded sample of larger data)."""
ONNX_LABELLING_SPEEDUP = 1.9
"""The teacher labels through ONNX Runtime at about 1.9x torch's texts/s (MPNet-base, 2 cores:
benchmarks/results/cpu-x86_64/teacher-labelling.md)."""
KEY_TABLES = ("data", "teacher", "student", "distill", "export", "ladder")
"""The recipe tables a plan depends on (with the ``[plan]`` config itself)."""


def plan_build(recipe, *, speeds: Speeds | None = None) -> tuple[Any, Plan | None]:
    """``recipe`` with its plan, and the plan (None for the fixed profiles, which need none). ``speeds``: use
    these instead of measuring (tests)."""
    from edgedistill.compress.fingerprints import HashCache

    if recipe.profile != profiles.PLANNED:
        return recipe, None
    base = recipe.with_plan({})
    # 1) a saved plan with the same key is reused as it is
    key = plan_key(base, HashCache())
    path = recipe.layout.plan
    saved = read_plan(recipe.build_dir)
    if saved and saved.get("key") == key:
        log.info("reusing the plan of %s (%s): same data, recipe and budget", saved.get("created"), path)
        found = Plan.from_dict(saved["plan"])
        return base.with_plan(found.values), found
    # 2) the data's shape, what the recipe states, this machine's speeds
    from transformers import AutoTokenizer

    from edgedistill.compress import sources
    from edgedistill.compress.data import load_data

    teacher = base.teacher().resolved()
    tokenizer = AutoTokenizer.from_pretrained(sources.resolve_model(teacher.model))
    data = load_data(base.data())
    shape = data_shape(data, tokenizer, base.distill().transfer)
    # long texts: also measured at LONG_LENGTH tokens, where the line through the short lengths falls short
    long = token_limit(shape, base.plan().length_percentile, tokenizer_limit(tokenizer)) > 2 * LENGTHS[-1]
    speeds = speeds or measure_speeds(base, tokenizer, LENGTHS + (LONG_LENGTH,) if long else LENGTHS)
    # 3) the plan, saved beside the build before anything trains
    made = plan(base.plan(), shape, speeds, settings_of(base))
    recipe.build_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"key": key, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                        "plan": made.as_dict()}, indent=2, default=str) + "\n")
    log.info("planned %s: estimated %s%s", recipe.name, format_duration(made.total_s),
             f" within a budget of {format_duration(made.budget_s)}" if made.budget_s else "")
    return base.with_plan(made.values), made


def plan_key(recipe, hashes) -> str:
    """What a plan depends on: the data files' digests, the recipe tables that shape it, its ``[plan]`` config."""
    from edgedistill.compress.fingerprints import data_inputs, source_input

    inputs = data_inputs(recipe.data(), hashes)
    for src in recipe.distill().transfer:
        inputs.update(source_input("transfer file", src, hashes))
    hashes.save()
    blob = {"inputs": inputs, "tables": {t: recipe.tables[t] for t in KEY_TABLES}, "plan": asdict(recipe.plan()),
            "version": __version__}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_plan(build_dir: Path) -> dict[str, Any] | None:
    """The saved ``plan.json`` of a build (None: none, or unreadable)."""
    from edgedistill.compress.layout import BuildLayout

    path = BuildLayout(build_dir).plan
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):
        log.warning("%s is unreadable; the build is planned again", path)
        return None


# ------------------------------------------------------------------------------------------------- inputs
def data_shape(data, tokenizer, transfer: list[str] = ()) -> DataShape:
    """The planner's view of ``data`` (:class:`~edgedistill.compress.data.LabelledData`): counts per class, split sizes,
    the token lengths of (a sample of) the training texts, and the unlabelled transfer texts."""
    from edgedistill.compress.data import strata
    from edgedistill.compress.readers import read_texts

    texts = list(data.train.texts)
    if len(texts) > LENGTH_SAMPLE:
        texts = random.Random(0).sample(texts, LENGTH_SAMPLE)
    lengths = tuple(len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"])
    counts = Counter(strata(data.train.labels))  # multi-label: each text's rarest label, as subsamples stratify
    seen = set(data.train.texts) | set(data.validation.texts) | set(data.test.texts)
    unlabelled = len({t for src in transfer for t in read_texts(src)} - seen)
    return DataShape({data.label_names[k]: counts[k] for k in sorted(counts)}, len(data.validation), len(data.test),
                     lengths, unlabelled, labels=data.num_labels if data.multi_label else None)


def _stage(cfg, resolved, adapt_texts: int) -> StageSettings:
    return StageSettings(epochs=resolved.epochs, epochs_fixed=cfg.epochs is not None, max_length=cfg.max_length,
                         texts=cfg.data.max_train_samples, validation=cfg.data.max_validation_samples,
                         evals_per_epoch=resolved.evals_per_epoch, adapt_texts=adapt_texts,
                         batch_size=resolved.batch_size * getattr(resolved, "grad_accumulation", 1))


def settings_of(recipe) -> Settings:
    """What ``recipe`` (its planned values left out) states for the planner: its values win over the plan's."""
    t, d = recipe.teacher(), recipe.distill()
    tr, dr = t.resolved(), d.resolved()
    student = d.student
    logits_only = not (dr.hidden_loss_weight or dr.attention_loss_weight)
    return Settings(
        teacher=_stage(t, tr, tr.adapt_steps * tr.adapt_batch_size if tr.adapt_texts else 0),
        student=_stage(d, dr, student.adapt_steps * student.adapt_batch_size if student.adapt_texts else 0),
        teacher_features=tr.strategy == "features", max_transfer=d.max_transfer_samples, augment=dr.augment or 0,
        labelling_speedup=ONNX_LABELLING_SPEEDUP if dr.teacher_backend == "onnx" and logits_only else 1.0,
        rungs=tuple(recipe.ladder().rungs), teacher_retries=tr.retries,
        export_max_length=recipe.tables["export"].get("max_length"),
        long_texts=recipe.tables["data"].get("long_texts"), static_student=student.builder == "static")


def measure_speeds(recipe, tokenizer, lengths: tuple[int, ...] = LENGTHS) -> Speeds:
    """This machine's speeds for the teacher, the recipe's student and each ladder rung at ``lengths`` tokens
    (:mod:`~edgedistill.compress.plan.probe`; measured once per machine and model, then read from the cache)."""
    from transformers import AutoTokenizer

    from edgedistill.compress import sources
    from edgedistill.compress.recipe import rung_recipe
    from edgedistill.compress.plan.probe import load_average, machine

    t, d = recipe.teacher().resolved(), recipe.distill().resolved()
    log.info("measuring this machine's throughput for %s and the students (cached per machine and model)", t.model)
    teacher = measure(t.model, batch_size=t.batch_size, lengths=lengths)
    students = {"recipe": student_speed(recipe.student(), teacher, batch_size=d.batch_size, lengths=lengths)}
    for spec in recipe.ladder().rungs:
        if spec.startswith(VIEW):  # the recipe's own student: its speed, read in windows by the planner
            continue
        students[spec] = student_speed(rung_recipe(recipe, spec).student(), teacher, batch_size=d.batch_size,
                                       lengths=lengths)
    limit = tokenizer_limit(tokenizer)
    if recipe.student().builder in ("pretrained", "drop-layers"):
        student_tok = AutoTokenizer.from_pretrained(sources.resolve_model(recipe.student().model))
        limit = min(limit, tokenizer_limit(student_tok))
    return Speeds(teacher, students, limit, {**machine(), "load_average": load_average()})


# ------------------------------------------------------------------------------------------------ reading it
def actual_seconds(build_dir: Path) -> dict[str, float]:
    """Seconds each stage took in the runs that built what is there now (``.state.json``; the ladder's rungs
    summed), for setting beside the estimate."""
    from edgedistill.compress.layout import read_state

    out = {name: float(r["seconds"]) for name, r in read_state(build_dir)["stages"].items() if "seconds" in r}
    rungs = [read_state(p.parent)["stages"] for p in sorted((Path(build_dir) / "ladder").glob("*/.state.json"))]
    if rungs:
        out["ladder"] = sum(float(r.get("seconds", 0)) for stages in rungs for r in stages.values())
    return out


def remaining_seconds(found: Plan, build_dir: Path, until: str | None = None, force: tuple[str, ...] = ()) -> float:
    """The estimate of what a build still has to run: the plan's stages up to ``until`` (the ladder's rungs when
    the build reaches the ship stage, which they come before) that its ``.state.json`` does not record as built,
    or that ``force`` reruns (a stage forced, and every stage after it; ``all``: every stage). A changed input
    reruns one anyway: then it errs short."""
    from edgedistill.compress.layout import forced_stages, read_state

    built = set(read_state(build_dir)["stages"]) - forced_stages(force, STAGES)
    last = STAGES.index(until) if until in STAGES else len(STAGES) - 1
    reach = {name for name in STAGES if STAGES.index(name) <= last}
    if "ship" in reach:
        reach.add("ladder")
    return sum(s.seconds for s in found.stages if s.name in reach and s.name not in built)


def plan_rows(found: Plan, actual: dict[str, float] | None = None) -> list[tuple[str, str, str, str]]:
    """(stage, what was planned, estimate, actual) for every stage the plan holds, then the total."""
    actual = actual or {}
    order = {name: i for i, name in enumerate((*STAGES, "ladder"))}
    rows = [(s.name, s.what, format_duration(s.seconds),
             format_duration(actual[s.name]) if s.name in actual else "")
            for s in sorted(found.stages, key=lambda s: order.get(s.name, 99))]
    done = sum(actual.get(s.name, 0.0) for s in found.stages)
    rows.append(("total", f"budget {format_duration(found.budget_s)}" if found.budget_s else "no budget",
                 format_duration(found.total_s), format_duration(done) if done else ""))
    return rows


def plan_markdown(record: dict[str, Any], actual: dict[str, float]) -> list[str]:
    """The build report's Plan section, from ``plan.json``'s ``plan`` and the stages' actual seconds."""
    found = Plan.from_dict(record)
    shape = found.shape
    smallest = shape.get("smallest_class") or ["?", "?"]
    lines = ["", "## Plan", "",
             f"Planned from the data ({shape.get('train', '?'):,} training texts in {shape.get('classes', '?')} "
             "classes, "
             f"the smallest {smallest[0]} with {smallest[1]}; tokens p50 {shape.get('tokens', {}).get('p50', '?')}, "
             f"p99 {shape.get('tokens', {}).get('p99', '?')}) and this machine's measured throughput"
             + (f", within a time budget of {format_duration(found.budget_s)}." if found.budget_s else
                ", without a time budget: all of the data.")
             + " Estimates: texts x (seconds per text at their mean length) plus fixed costs "
               "(edgedistill.compress.plan); training that stops early takes less.", "",
             "| stage | planned | estimated | actual |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in plan_rows(found, actual)]
    lines += ["", "Left out: " + ("nothing." if not found.left_out else "")]
    lines += [f"- {item}" for item in found.left_out]
    return lines
