"""The training fields every trainer shares (edgedistill.compress.training_settings): declared once, checked once,
filled by each stage's own table, and read by the one ``trainer_arguments`` and by the update's loop."""

from __future__ import annotations

import dataclasses
import math

import pytest

from edgedistill.compress.distill import DistillConfig
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.teacher import TeacherConfig
from edgedistill.compress.training_settings import TrainingSettings
from edgedistill.compress.update import DEFAULTS, UpdateConfig

SHARED = [f.name for f in dataclasses.fields(TrainingSettings)]
STAGES = {"teacher": TeacherConfig, "distill": DistillConfig, "update": UpdateConfig}


@pytest.mark.parametrize("table", STAGES)
def test_every_trainer_takes_the_shared_fields_and_restates_none(table):
    cls = STAGES[table]
    assert issubclass(cls, TrainingSettings)
    own = set(cls.__dict__.get("__annotations__", {}))
    assert not own & set(SHARED), f"{cls.__name__} restates {sorted(own & set(SHARED))}"
    assert [f.name for f in dataclasses.fields(cls)][:len(SHARED)] == SHARED  # the TOML stays flat: same names


@pytest.mark.parametrize(("table", "field", "value"), [
    ("teacher", "batch_size", 0), ("teacher", "warmup_ratio", 1.0), ("distill", "max_length", 4),
    ("distill", "learning_rate", 0.0), ("distill", "precision", "fp8"), ("update", "evals_per_epoch", 1.5),
    ("update", "weight_decay", -0.1), ("update", "patience", 0), ("update", "precision", "bf16")])
def test_a_bad_training_value_is_refused_naming_its_table(table, field, value):
    extra = {"teacher_dir": "teacher"} if table == "distill" else {}
    with pytest.raises(ConfigError, match=f"{table}.{field}"):
        STAGES[table](**extra, **{field: value})


def test_each_stage_fills_what_is_left_open_from_its_own_table():
    update = UpdateConfig().resolved()
    assert {k: getattr(update, k) for k in DEFAULTS} == DEFAULTS and update.patience is None
    assert UpdateConfig(epochs=1.0, learning_rate=1e-4).resolved().epochs == 1.0
    teacher = TeacherConfig(profile="full").resolved()
    distill = DistillConfig(teacher_dir="teacher", profile="full").resolved()
    assert (teacher.learning_rate, teacher.patience, teacher.precision) == (2e-5, 2, "auto")
    assert (distill.learning_rate, distill.patience, distill.precision) == (1e-4, 3, "auto")
    assert all(getattr(cfg, name) is not None for cfg in (teacher, distill) for name in SHARED)


def test_one_trainer_arguments_reads_the_settings(tmp_path):
    from edgedistill.compress import parallel

    cfg = dataclasses.replace(DistillConfig(teacher_dir="teacher", profile="full"), warmup_ratio=0.2,
                              weight_decay=0.05, evals_per_epoch=4, seed=7).resolved()
    args = parallel.trainer_arguments(tmp_path, cfg, table="distill", n_train=1000, eval_batch_size=64)
    steps = math.ceil(1000 / cfg.batch_size)
    assert args.eval_steps == math.ceil(steps / 4) == args.save_steps
    assert (args.learning_rate, args.num_train_epochs, args.seed) == (1e-4, 3.0, 7)
    assert (args.warmup_steps, args.weight_decay, args.per_device_train_batch_size) == (0.2, 0.05, 32)
    retry = parallel.trainer_arguments(tmp_path, cfg, table="distill", n_train=1000, eval_batch_size=64,
                                       learning_rate=3e-4, epochs=6.0)  # a teacher's retry: its own step and epochs
    assert (retry.learning_rate, retry.num_train_epochs) == (3e-4, 6.0)
    with pytest.raises(ConfigError, match="distill.precision"):  # mixed precision without CUDA names the table
        parallel.trainer_arguments(tmp_path, dataclasses.replace(cfg, precision="bf16"), table="distill",
                                   n_train=10, eval_batch_size=8)


def test_the_update_loop_follows_patience_and_keeps_the_best(tiny_model_dir):
    from transformers import AutoTokenizer

    from edgedistill.compress.checkpoints import load_classifier
    from edgedistill.compress.textviews import TextViews
    from edgedistill.compress.update_train import train

    model = load_classifier(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    views = TextViews(tokenizer, ["a good film", "a bad film"] * 16, max_length=16)
    scores = iter([0.5, 0.7, 0.6, 0.6, 0.9, 0.9])  # the first is before any step

    def run(patience):
        nonlocal scores
        scores = iter([0.5, 0.7, 0.6, 0.6, 0.9, 0.9])
        cfg = UpdateConfig(epochs=5.0, batch_size=8, evals_per_epoch=1, patience=patience).resolved()
        return train(model, views, [0, 1] * 16, None, cfg, lambda m: next(scores))

    stopped = run(2)  # two validations without a better score after step 4: it stops at step 12
    assert stopped["steps"] == 12 and stopped["best"] == {"score": 0.7, "step": 4}
    every = run(None)  # unset: an update keeps the best of all its validations
    assert every["steps"] == 20 and every["best"] == {"score": 0.9, "step": 16}
