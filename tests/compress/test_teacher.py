"""Teacher fine-tuning on the tiny random BERT: each strategy trains and saves; frozen weights stay frozen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.teacher import PROFILES, TeacherConfig, finetune_teacher
from edgedistill.compress.teacher_transfer import freeze, layer_stack
from tests.helpers import saved_state, tiny_teacher_config

SAVED = {"config.json", "model.safetensors", "tokenizer.json", "labels.json", "metrics.json", "metrics.md",
         "training.json"}


# ------------------------------------------------------------------------------ config
def test_profiles_fill_only_the_fields_left_unset():
    assert TeacherConfig(profile="quick").max_length is None  # filled when the stage runs, from the profile table
    q = TeacherConfig(profile="quick").resolved()
    assert q.max_length == PROFILES["quick"]["max_length"] == 64
    assert q.data.max_train_samples == PROFILES["quick"]["max_train_samples"]
    assert q.group_by_length is True and q.precision == "fp32"
    f = TeacherConfig(profile="full", max_length=96).resolved()
    assert f.max_length == 96  # given explicitly: kept
    assert f.data.max_train_samples is None and f.epochs == PROFILES["full"]["epochs"]
    mine = TeacherConfig(data=DataConfig(max_train_samples=50)).resolved()
    assert mine.data.max_train_samples == 50


@pytest.mark.parametrize("kw, field", [
    ({"strategy": "lora"}, "teacher.strategy"), ({"profile": "huge"}, "teacher.profile"),
    ({"freeze_layers": 2}, "teacher.freeze_layers"),
    ({"strategy": "partial", "freeze_layers": -1}, "teacher.freeze_layers"),
    ({"learning_rate": 0.0}, "teacher.learning_rate"), ({"batch_size": 0}, "teacher.batch_size"),
    ({"max_length": 4}, "teacher.max_length"), ({"precision": "int4"}, "teacher.precision"),
    ({"grad_accumulation": 0}, "teacher.grad_accumulation"),
    ({"cross_label_map": {"a": "b"}}, "teacher.cross_label_map"),
])
def test_bad_fields_are_named(kw, field):
    with pytest.raises(ConfigError) as e:
        TeacherConfig(**kw)
    assert e.value.field == field and repr(e.value.value) in str(e.value)


def test_config_round_trips_through_json(tmp_path):
    cfg = TeacherConfig(strategy="partial", freeze_layers=3, data=DataConfig(source="sms-spam", seed=7))
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg.to_dict()))
    assert TeacherConfig.from_json(path) == cfg
    with pytest.raises(ConfigError, match="unknown TeacherConfig field"):
        TeacherConfig.from_dict({"modle": "x"})


def test_a_built_in_dataset_is_no_model():
    from edgedistill.compress.sources import resolve_model

    with pytest.raises(ConfigError, match="not a model"):
        resolve_model("movie-snippets")


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("strategy", ["full", "partial", "features"])
def test_each_strategy_trains_and_saves(strategy, tmp_path, tiny_model_dir, tiny_csv):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "teacher"
    assert finetune_teacher(tiny_teacher_config(tiny_model_dir, tiny_csv, out, strategy)) == out
    assert SAVED <= {p.name for p in out.iterdir()}
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the temp folder is gone
    assert not (out / "checkpoints").exists()
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert json.loads((out / "labels.json").read_text())["labels"] == ["negative", "positive"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 48 and metrics["labels"] == ["negative", "positive"]
    assert 0.0 <= metrics["macro_f1"] <= 1.0 and metrics["extra"]["strategy"] == strategy
    rec = json.loads((out / "training.json").read_text())
    assert rec["strategy"] == strategy and rec["best_validation_macro_f1"] is not None
    assert rec["examples"] == {"train": 168, "validation": 24, "test": 48}

    before, after = saved_state(tiny_model_dir), saved_state(out)
    changed = {k for k in before if not before[k].equal(after[k])}
    head = {k for k in before if k.startswith("classifier.")}
    assert head <= changed  # the head trained in every strategy
    if strategy == "full":
        assert any(k.startswith("bert.encoder.layer.0.") for k in changed)
        assert any(k.startswith("bert.embeddings.") for k in changed)
    elif strategy == "partial":  # default: half of the 2 layers frozen, with the embeddings
        assert not any(k.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for k in changed)
        assert any(k.startswith("bert.encoder.layer.1.") for k in changed)
        assert rec["frozen_layers"] == 1
    else:  # features: nothing but the head moved
        assert changed == head
        assert rec["trainable_parameters"] == sum(before[k].numel() for k in head)


def test_partial_freezes_the_number_of_layers_asked(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    assert freeze(model, "partial", 2) == 2
    grads = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("bert.embeddings.", "bert.encoder.")) for n in grads)
    assert {n for n in grads if n.startswith("bert.pooler.")} and {n for n in grads if n.startswith("classifier.")}
    assert freeze(model, "partial", 0) == 0
    assert any(p.requires_grad for n, p in model.named_parameters() if n.startswith("bert.encoder.layer.0."))
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("bert.embeddings."))


def test_too_many_frozen_layers_fail_before_any_output(tmp_path, tiny_model_dir, tiny_csv):
    cfg = tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "t", "partial", freeze_layers=3)
    with pytest.raises(ConfigError, match="only 2 layers"):
        finetune_teacher(cfg)
    assert list(tmp_path.iterdir()) == []


def test_features_are_cached_once_and_the_saved_model_reproduces_the_head(tmp_path, tiny_model_dir, tiny_csv,
                                                                          caplog):
    import numpy as np
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgedistill.compress.data import load_data

    out = finetune_teacher(tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "a", "features"))
    cache = Path(json.loads((out / "training.json").read_text())["features_cache"])
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="edgedistill.compress.teacher"):
        finetune_teacher(tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "b", "features", head_epochs=2))
    assert "reusing cached features" in caplog.text and cache.stat().st_mtime_ns == stamp

    # the saved checkpoint, run end to end on the texts, gives what its head gives on the cached features
    feats = load_file(str(cache))["validation"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    texts = load_data(DataConfig(source=str(tiny_csv))).validation.texts
    with torch.no_grad():
        head = model.classifier(torch.from_numpy(feats)).numpy()
        full = model(**tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(full, head, atol=1e-4)
    assert np.abs(head).max() > 0


def tiny_mpnet(tmp_path: Path, tokenizer_dir: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = MPNetConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=80, pad_token_id=tok.pad_token_id,
                      num_labels=2, id2label={0: "negative", 1: "positive"},
                      label2id={"negative": 0, "positive": 1})
    MPNetForSequenceClassification(cfg).save_pretrained(tmp_path / "mpnet")
    tok.save_pretrained(tmp_path / "mpnet")
    return tmp_path / "mpnet"


def test_partial_and_features_find_mpnet_layers_and_head(tmp_path, tiny_tokenizer_dir, tiny_csv):
    """MPNet (the real teacher's architecture): layers found generically, the shared attention bias frozen,
    and its sequence-reading head (first token) works on cached features."""
    from transformers import AutoModelForSequenceClassification

    path = tiny_mpnet(tmp_path, tiny_tokenizer_dir)
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert len(layer_stack(model)) == 2
    assert freeze(model, "partial", 1) == 1
    grads = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("mpnet.encoder.layer.1.") for n in grads)
    assert not any(n.startswith(("mpnet.embeddings.", "mpnet.encoder.layer.0.", "mpnet.encoder.relative"))
                   for n in grads)
    assert {n for n in grads if n.startswith("classifier.")}

    out = finetune_teacher(tiny_teacher_config(path, tiny_csv, tmp_path / "t", "features"))
    before, after = saved_state(path), saved_state(out)
    assert {k for k in before if not before[k].equal(after[k])} == {k for k in before if k.startswith("classifier.")}


def test_a_failure_after_the_temp_folder_exists_cleans_it_up(tmp_path, tiny_tokenizer_dir, tiny_csv):
    """GPT-2's head is called ``score``, not ``classifier``: the features strategy refuses it mid-run."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                     pad_token_id=tok.pad_token_id, num_labels=2)
    GPT2ForSequenceClassification(cfg).save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(ConfigError, match="no .classifier head"):
        finetune_teacher(tiny_teacher_config(tmp_path / "gpt2", tiny_csv, runs / "t", "features"))
    assert list(runs.iterdir()) == []


def test_mixed_precision_without_cuda_is_refused(tmp_path, tiny_model_dir, tiny_csv):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ConfigError, match="precision"):
        finetune_teacher(tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "t", "full", precision="bf16"))


def test_cli_teacher_prints_a_results_table(tmp_path, tiny_model_dir, tiny_csv):
    from typer.testing import CliRunner

    from edgedistill.compress.cli import app

    out = tmp_path / "cli-teacher"
    result = CliRunner().invoke(app, ["teacher", "--model", str(tiny_model_dir), "--data", str(tiny_csv),
                                      "--strategy", "features", "--head-epochs", "2", "--max-length", "32",
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.output and "features" in result.output
    assert (out / "metrics.json").is_file()
    bad = CliRunner().invoke(app, ["teacher", "--strategy", "lora", "--output", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "strategy='lora'" in bad.output


@pytest.mark.real
def test_real_mpnet_layers_and_features_head(real_cache):
    """The real teacher: 12 layers found for partial, and its head reproduces the logits from cached inputs."""
    import torch

    from edgedistill.compress.teacher_transfer import head_inputs, load_model

    tok, model = load_model("mpnet-base", ["negative", "positive"])
    assert len(layer_stack(model)) == 12
    texts = ["A warm, funny and moving film.", "Dull.", "The plot goes nowhere and the acting is flat."]
    feats = head_inputs(model, tok, texts, max_length=64, batch_size=2)  # raises if the head reads more
    assert feats.shape == (3, 1, 768)
    with torch.no_grad():
        full = model(**tok(texts, padding=True, return_tensors="pt")).logits
        head = model.classifier(torch.from_numpy(feats))
    torch.testing.assert_close(head, full, atol=1e-4, rtol=1e-4)
    assert freeze(model, "partial", None) == 6


# -------------------------------------------------------------- settings that follow the data, and the check
def test_the_head_learns_faster_the_more_classes():
    from edgedistill.compress.heads import head_multiplier

    assert [head_multiplier(k) for k in (2, 6, 50, 300)] == [4.0, 6.0, 50.0, 50.0]


def test_the_check_names_unpredicted_classes_and_a_teacher_at_the_baseline():
    from edgedistill.compress.teacher_checks import check_teacher, unpredicted

    labels = ["a", "b", "c", "d"]
    y = [0, 0, 1, 1, 2, 2, 3]
    pred = [0, 0, 0, 0, 2, 2, 3]
    assert unpredicted(y, pred, labels) == ["b"]  # d has one validation example: too few to call it missed
    assert unpredicted(y, pred, labels, min_support=1) == ["b"]
    assert check_teacher(0.9, [], 0.8) is None
    assert "never predicts 1 class(es) on validation (b)" in check_teacher(0.9, ["b"], 0.8)
    assert "not above TF-IDF + LR's 0.8000" in check_teacher(0.8, [], 0.8)
    assert check_teacher(0.5, [], None) is None


def test_balanced_weights_average_one_over_the_examples_and_weight_the_loss():
    import numpy as np
    import torch
    import torch.nn.functional as F

    from edgedistill.compress.teacher_checks import class_weights, loss_function

    y = [0] * 8 + [1] * 2
    w = class_weights(y, 3)
    assert w[2] == 0 and np.isclose(np.mean(w[y]), 1.0) and w[1] == 4 * w[0]
    logits, labels = torch.randn(10, 3), torch.tensor(y)
    assert torch.isclose(loss_function(None)({"logits": logits}, labels, 10), F.cross_entropy(logits, labels))
    want = F.cross_entropy(logits, labels, weight=torch.tensor(w, dtype=torch.float32))
    assert torch.isclose(loss_function(w)({"logits": logits}, labels, 10), want)


def test_retries_grow_the_head_step_and_epochs_and_balance_a_missed_class():
    from edgedistill.compress.teacher_checks import Attempt, next_attempt

    cfg = TeacherConfig().resolved()
    a = Attempt(4.0, 1e-3, 1.0, "none")
    assert next_attempt(cfg, a, ["b"]) == Attempt(16.0, 2e-3, 2.0, "balanced")
    assert next_attempt(cfg, a, []).class_weighting == "none"
    assert next_attempt(TeacherConfig(class_weighting="none"), a, ["b"]).class_weighting == "none"


def test_a_collapsed_teacher_is_caught_retried_and_recorded(tmp_path, tiny_model_dir, tiny_csv):
    """A learning rate far too small leaves the random head where it started: one class, or the baseline's
    level at best. The check fails, the retry runs, and training.json says what was tried and what it got."""
    out = finetune_teacher(tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "t", "full", learning_rate=1e-12,
                                               head_lr_multiplier=1.0, retries=1))
    rec = json.loads((out / "training.json").read_text())
    assert [a["head_lr_multiplier"] for a in rec["attempts"]] == [1.0, 4.0]
    assert [a["epochs"] for a in rec["attempts"]] == [1.0, 2.0]
    assert all(a["problem"] for a in rec["attempts"]) and rec["check"] != "passed"
    assert rec["baseline_validation_macro_f1"] > 0.5  # TF-IDF reads the sentiment words easily
    assert rec["chosen_attempt"] in (1, 2)


def test_a_good_teacher_is_not_retried(tmp_path, tiny_model_dir, tiny_csv):
    out = finetune_teacher(tiny_teacher_config(tiny_model_dir, tiny_csv, tmp_path / "t", "features", head_epochs=30,
                                               head_learning_rate=5e-2))
    rec = json.loads((out / "training.json").read_text())
    if rec["check"] == "passed":
        assert len(rec["attempts"]) == 1
    else:  # the tiny random encoder's features may not beat TF-IDF; then a retry must have run
        assert len(rec["attempts"]) == 2
