"""Auxiliary objectives on unlabelled text before fine-tuning (edgedistill.compress.adapt): MLM and SimCSE run, are
cached by what they read, and the teacher fine-tunes from the adapted encoder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgedistill.compress.adapt import AdaptSettings, adapt
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.teacher import finetune_teacher
from tests.helpers import make_sentences, saved_state, tiny_teacher_config

TEXTS = [t for t, _ in make_sentences(64, seed=21)]


@pytest.mark.parametrize("objective", ["mlm", "contrastive"])
def test_adaptation_trains_the_encoder_and_is_cached(objective, tiny_model_dir, tmp_path, monkeypatch):
    import edgedistill.compress.adapt as mod

    s = AdaptSettings(objective, steps=6, batch_size=8, learning_rate=1e-3, max_length=32)
    first = adapt(str(tiny_model_dir), TEXTS, s, cache=tmp_path)
    assert not first.from_cache and len(first.losses) >= 2 and all(v == v for v in first.losses)  # finite
    before, after = saved_state(tiny_model_dir), saved_state(first.path)
    key = next(k for k in after if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not (after[key] == before["bert." + key.split("bert.", 1)[-1]]).all()  # the encoder moved
    if objective == "mlm":  # a classifier checkpoint has no MLM head: its layers start fresh, the decoder is tied
        assert first.fresh_head and all("decoder.weight" not in k for k in first.fresh_head)
    else:
        assert first.fresh_head == []

    def no_training(*args, **kwargs):
        raise AssertionError("adapted again")

    monkeypatch.setattr(mod, "_mlm", no_training)
    monkeypatch.setattr(mod, "_contrastive", no_training)
    again = adapt(str(tiny_model_dir), TEXTS, s, cache=tmp_path)
    assert again.from_cache and again.path == first.path and again.losses == first.losses
    with pytest.raises(AssertionError, match="adapted again"):  # other texts or settings: another key
        adapt(str(tiny_model_dir), TEXTS[:-1], s, cache=tmp_path)


def test_bad_adaptation_settings_name_the_field(tiny_model_dir, tiny_csv, tmp_path):
    with pytest.raises(ConfigError, match="teacher.adapt_objective"):
        tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "t", "full", adapt_texts=["x.csv"],
                            adapt_objective="gpt")
    with pytest.raises(ConfigError, match="teacher.adapt_steps"):
        tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "t", "full", adapt_texts=["x.csv"], adapt_steps=0)


@pytest.mark.slow
def test_the_teacher_fine_tunes_the_adapted_encoder_and_a_second_build_reuses_it(tiny_model_dir, tiny_csv,
                                                                                  tmp_path):
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("\n".join(TEXTS) + "\n")
    cfg = tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "teacher", "full", adapt_texts=[str(unlabelled)],
                              adapt_steps=4, adapt_batch_size=8)
    finetune_teacher(cfg)
    record = json.loads((tmp_path / "teacher" / "training.json").read_text())
    first = record["adaptation"]
    assert first["objective"] == "mlm" and first["texts"] == len(TEXTS) and not first["from_cache"]
    assert record["model_path"] == first["path"]
    finetune_teacher(replace(cfg, learning_rate=1e-3))  # another fine-tune, the same adaptation
    second = json.loads((tmp_path / "teacher" / "training.json").read_text())["adaptation"]
    assert second["from_cache"] and second["path"] == first["path"]


def test_a_fresh_mlm_head_trains_alone_before_the_encoder_moves(tiny_model_dir, tmp_path):
    # a learning rate too small to move anything in the joint phase isolates the head-only phase's effect
    s = AdaptSettings("mlm", steps=1, batch_size=8, learning_rate=1e-12, max_length=32, head_steps=8,
                      head_learning_rate=1e-2)
    result = adapt(str(tiny_model_dir), TEXTS, s, cache=tmp_path)
    assert result.fresh_head and len(result.head_losses) == 8 and result.head_losses[-1] < result.head_losses[0]
    before, after = saved_state(tiny_model_dir), saved_state(result.path)
    moved = [k for k in before
             if k.startswith("bert.") and k in after and not (after[k] - before[k]).abs().max() < 1e-6]
    assert moved == []  # the encoder (and the tied decoder, its embeddings) did not move while the head learned
    assert any(k.startswith("cls.predictions.transform") for k in after)  # the trained head is saved with it
    with pytest.raises(ConfigError, match="teacher.adapt_head_steps"):
        AdaptSettings(head_steps=-1)


# ----------------------------------------------------------------------------- the student
def test_a_student_built_from_the_teacher_is_refused_adaptation():
    from edgedistill.compress.student import StudentConfig

    for builder in ("teacher-layers", "static"):
        with pytest.raises(ConfigError, match=r"student.adapt_texts=.*adapt the teacher instead"):
            StudentConfig(builder=builder, adapt_texts=["x.txt"])
    with pytest.raises(ConfigError, match="student.adapt_steps"):  # AdaptSettings' check, named as the student's
        StudentConfig(adapt_texts=["x.txt"], adapt_steps=0)
    StudentConfig(builder="teacher-layers", adapt_steps=5)  # no texts: nothing to adapt, nothing refused


@pytest.mark.slow
def test_the_student_distils_from_its_adapted_encoder_and_a_second_run_reuses_it(tiny_model_dir, tiny_csv, tmp_path,
                                                                                 monkeypatch):
    import edgedistill.compress.adapt as adapt_mod
    import edgedistill.compress.student as student_mod
    from edgedistill.compress.data import DataConfig, load_data
    from edgedistill.compress.distill.config import DistillConfig
    from edgedistill.compress.distill.run import distill
    from edgedistill.compress.report import adaptation_text
    from edgedistill.compress.student import StudentConfig

    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))  # not the teacher test's adaptation
    student = StudentConfig(builder="drop-layers", model=str(tiny_model_dir), layers=1, adapt_steps=4,
                            adapt_batch_size=8)
    cfg = DistillConfig(teacher_dir=str(tiny_model_dir), data=DataConfig(source=str(tiny_csv)), student=student,
                        output_dir=str(tmp_path / "s1"), epochs=1.0, batch_size=16, max_length=32, learning_rate=1e-3)
    data = load_data(cfg.resolved().data)
    unlabelled = tmp_path / "unlabelled.txt"  # one validation and one test text among them: left out
    unlabelled.write_text("\n".join([*TEXTS, data.validation.texts[0], data.test.texts[0]]) + "\n")
    cfg = replace(cfg, student=replace(student, adapt_texts=[str(unlabelled)]))
    encoders = []
    real_build = student_mod.build_student

    def spy(*args, **kwargs):
        encoders.append(kwargs.get("encoder"))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(student_mod, "build_student", spy)
    info = json.loads((distill(cfg) / "distill.json").read_text())
    first = info["adaptation"]
    assert first["objective"] == "mlm" and first["texts"] == len(TEXTS) and not first["from_cache"]
    assert encoders == [first["path"]]  # the student was built from the adapted encoder
    adapted = json.loads((Path(first["path"]) / "config.json").read_text())
    assert adapted["num_hidden_layers"] == 2 and info["layers"] == 1  # adapted whole, then cut
    assert adaptation_text("student", first).startswith(f"The student's encoder was first adapted on {len(TEXTS)} ")

    def no_training(*args, **kwargs):
        raise AssertionError("adapted again")

    monkeypatch.setattr(adapt_mod, "_mlm", no_training)
    again = json.loads((distill(replace(cfg, output_dir=str(tmp_path / "s2"), alpha=0.9)) / "distill.json")
                       .read_text())["adaptation"]
    assert again["from_cache"] and again["path"] == first["path"] and encoders[-1] == first["path"]
