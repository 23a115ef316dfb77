"""Distillation: the loss by hand, cached teacher outputs, different tokenizers (the ablation grid: test_ablate.py)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgedistill.compress.data import DataConfig, load_data
from edgedistill.compress.distill import teacher_outputs as outputs_mod
from edgedistill.compress.distill.config import PROFILES, DistillConfig
from edgedistill.compress.distill.losses import distillation_loss
from edgedistill.compress.distill.run import distill
from edgedistill.compress.distill.transfer import build_transfer_set
from edgedistill.compress.errors import ConfigError, TransferSetError
from edgedistill.compress.student import StudentConfig
from tests.helpers import FILLER, NEGATIVE, POSITIVE, build_tiny_bert, tiny_distill_config

LABELS = ("negative", "positive")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_loss_matches_a_hand_computation():
    s = torch.tensor([[1.0, 2.0], [0.5, -0.5]])
    t = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1, -100])  # the second example is an unlabelled transfer text
    # T = 2: p_t = softmax(t/2) = [.7311, .2689], [.3775, .6225]; KL per row .2574 and .1225, mean .18993;
    # CE of row 0 only: -log softmax([1, 2])[1] = .31326
    kl, ce = 0.18993124790437288, 0.31326168751822286
    got = distillation_loss(s, t, labels, alpha=0.5, temperature=2.0)
    assert math.isclose(float(got), 0.5 * 4 * kl + 0.5 * ce, rel_tol=1e-6)  # 0.53649...
    assert math.isclose(float(distillation_loss(s, t, labels, 1.0, 2.0)), 4 * kl, rel_tol=1e-6)
    assert math.isclose(float(distillation_loss(s, t, labels, 0.0, 2.0)), ce, rel_tol=1e-6)
    # no labelled example in the batch: the KD term alone
    none = torch.tensor([-100, -100])
    assert math.isclose(float(distillation_loss(s, t, none, 0.3, 2.0)), 0.3 * 4 * kl, rel_tol=1e-6)
    # identical logits: KL is zero
    assert float(distillation_loss(s, s, none, 1.0, 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_config_validation_and_profiles(tiny_model_dir):
    with pytest.raises(ConfigError, match="distill.alpha"):
        DistillConfig(teacher_dir=str(tiny_model_dir), alpha=1.5)
    with pytest.raises(ConfigError, match="distill.teacher_dir"):
        DistillConfig(alpha=0.5)
    with pytest.raises(ConfigError, match="distill.profile"):
        DistillConfig(teacher_dir="x", profile="huge")
    DistillConfig(alpha=0.0)  # plain fine-tuning needs no teacher
    cfg = DistillConfig(teacher_dir="x", epochs=5.0).resolved()
    assert cfg.epochs == 5.0 and cfg.max_length == PROFILES["quick"]["max_length"]
    assert cfg.data.max_train_samples == PROFILES["quick"]["max_train_samples"]
    full = DistillConfig(teacher_dir="x", profile="full").resolved()
    assert full.data.max_train_samples is None and full.max_transfer_samples is None


def test_mixed_precision_without_cuda_is_refused(tiny_csv, tiny_model_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ConfigError, match="distill.precision"):
        DistillConfig(teacher_dir="x", precision="fp8")
    (tmp_path / "runs").mkdir()
    cfg = tiny_distill_config(tiny_csv, tiny_model_dir, tmp_path / "runs" / "s", None, precision="bf16",
                              student=StudentConfig(builder="teacher-layers", layers=1))
    with pytest.raises(ConfigError, match="distill.precision='bf16': mixed precision needs a CUDA GPU"):
        distill(cfg)
    assert list((tmp_path / "runs").iterdir()) == []  # nothing left behind


@pytest.fixture
def unlabelled_file(tmp_path):
    import random

    rng = random.Random(5)
    lines = [" ".join(rng.sample(FILLER, 4) + rng.sample(POSITIVE + NEGATIVE, 2)) + f" u{i}" for i in range(40)]
    path = tmp_path / "unlabelled.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_distill_writes_a_checkpoint_and_reuses_cached_teacher_outputs(
        tiny_csv, tiny_model_dir, student_init, unlabelled_file, tmp_path, monkeypatch):
    calls = []
    real = outputs_mod.run_teacher_onnx  # the default backend when only logits are needed

    def spy(*args, **kwargs):
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs_mod, "run_teacher_onnx", spy)
    # a cache of its own: the first run meets the teacher on every text, whatever ran before in the session
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    cfg = tiny_distill_config(tiny_csv, tiny_model_dir, tmp_path / "s1", student_init, transfer=[str(unlabelled_file)])
    out = distill(cfg)
    assert out == tmp_path / "s1"
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "labels.json", "metrics.json",
            "distill.json"} <= names
    assert not [n for n in names if n.startswith(".") or "checkpoint" in n]
    info = json.loads((out / "distill.json").read_text())
    data = load_data(cfg.resolved().data)
    assert calls == [len(data.train) + 40]
    lengths = info["transfer"].pop("token_lengths")
    assert info["transfer"] == {"labelled": len(data.train), "unlabelled": 40, "augmented": 0, "held_out_dropped": 0}
    assert lengths["limit"] == 32 and lengths["p50"] <= lengths["p99"] <= lengths["max"]
    assert 0 <= lengths["truncated_share"] <= 1 and lengths["limit_for_99pct"] % 8 == 0
    assert info["teacher_outputs"]["from_cache"] is False
    # the int8 graph labelled: it agreed with fp32 on the validation texts (tests/compress/test_teacher_labelling.py)
    lab = info["teacher_outputs"]["labelling"]
    assert lab["graph"] == "onnx-int8" and lab["agreement"] >= lab["min_agreement"]
    assert lab["agreement_texts"] == len(data.validation) and lab["texts_labelled"] == len(data.train) + 40
    # one process trained on every text (tests/compress/test_parallel.py runs two)
    assert info["processes"] == {"world_size": 1, "backend": None, "device": "cpu", "precision": "fp32",
                                 "texts_per_process": [len(data.train) + 40], "texts_covered": len(data.train) + 40}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == len(data.test) and 0.0 <= metrics["macro_f1"] <= 1.0
    assert metrics["extra"]["params"] == info["params"] > 0
    assert json.loads((out / "labels.json").read_text())["labels"] == list(LABELS)

    # same teacher, texts and max_length: the teacher is not run again
    again = distill(replace(cfg, output_dir=str(tmp_path / "s2"), alpha=0.9))
    assert len(calls) == 1
    assert json.loads((again / "distill.json").read_text())["teacher_outputs"]["from_cache"] is True
    # a different max_length is a different fingerprint: the teacher runs again
    texts, val = build_transfer_set(cfg.resolved(), data).texts, data.validation.texts
    assert outputs_mod.teacher_outputs(tiny_model_dir, texts, 32, backend="onnx", validation_texts=val).from_cache
    assert len(calls) == 1
    assert not outputs_mod.teacher_outputs(tiny_model_dir, texts, 24, backend="onnx", validation_texts=val).from_cache
    assert len(calls) == 2


def test_transfer_set_never_holds_a_test_text(tiny_csv, tmp_path):
    data = load_data(DataConfig(source=str(tiny_csv)))
    leaky = tmp_path / "leaky.txt"
    leaky.write_text("\n".join(data.test.texts[:5] + data.validation.texts[:3] + ["a brand new text"]) + "\n")
    cfg = DistillConfig(teacher_dir="t", data=DataConfig(source=str(tiny_csv)), transfer=[str(leaky)])
    ts = build_transfer_set(cfg, data)
    assert ts.n_unlabelled == 1 and ts.dropped_overlap == 8
    assert not set(ts.texts) & set(data.test.texts)
    assert ts.labels[-1] == -100 and ts.labels[: ts.n_labelled] == data.train.labels

    class Leaky:  # a data object whose train split overlaps its test split is refused
        train, validation, test = data.train, data.validation, data.train
    with pytest.raises(TransferSetError, match="validation/test texts"):
        build_transfer_set(replace(cfg, transfer=[]), Leaky)


def build_tiny_mpnet(path: Path, labels=LABELS, hidden: int = 48, seed: int = 0) -> Path:
    """A random 2-layer MPNet classifier with its own tokenizer (<s> </s>, another vocabulary order)."""
    from transformers import MPNetConfig, MPNetForSequenceClassification, MPNetTokenizerFast

    from tests.helpers import VOCAB

    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    words = [w for w in VOCAB if not w.startswith("[")]
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"] + sorted(words, reverse=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = MPNetTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    cfg = MPNetConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=2 * hidden, max_position_embeddings=80, num_labels=len(labels),
                      id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                      pad_token_id=tok.pad_token_id)
    MPNetForSequenceClassification(cfg).eval().save_pretrained(path, safe_serialization=True)
    (path / "vocab.txt").unlink()
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def mpnet_teacher(tmp_path_factory):
    return build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))


def test_teacher_and_student_may_tokenize_differently(tiny_csv, mpnet_teacher, student_init, tmp_path,
                                                      monkeypatch):
    from transformers import AutoTokenizer

    t_tok, s_tok = AutoTokenizer.from_pretrained(mpnet_teacher), AutoTokenizer.from_pretrained(student_init)
    text = "the film was great"
    assert t_tok(text)["input_ids"] != s_tok(text)["input_ids"]  # really different ids
    seen = {}
    real = outputs_mod.run_teacher

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen["pooled"] = out.pooled.shape
        return out

    monkeypatch.setattr(outputs_mod, "run_teacher", spy)
    # widths differ (48 vs 32): the pooled hidden-state loss goes through a learned projection
    cfg = tiny_distill_config(tiny_csv, mpnet_teacher, tmp_path / "s", student_init, hidden_loss_weight=1.0)
    out = distill(cfg)
    assert seen["pooled"][1] == 48
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.model_type == "bert" and not hasattr(model, "distill_projection")
    assert "distill_projection" not in " ".join(model.state_dict())
    # the attention loss needs a shared tokenizer: refused with the field named
    with pytest.raises(ConfigError, match="attention_loss_weight"):
        distill(replace(cfg, attention_loss_weight=1.0, output_dir=str(tmp_path / "a")))
    assert not (tmp_path / "a").exists()


def test_teacher_layers_student_of_an_mpnet_teacher_with_attention_loss(tiny_csv, mpnet_teacher, tmp_path):
    cfg = tiny_distill_config(tiny_csv, mpnet_teacher, tmp_path / "s", None, attention_loss_weight=1.0,
                              hidden_loss_weight=0.5, student=StudentConfig(builder="teacher-layers", layers=1),
                              epochs=0.5)
    out = distill(cfg)
    info = json.loads((out / "distill.json").read_text())
    assert info["layers"] == 1 and info["hidden"] == 48
    assert json.loads((out / "config.json").read_text())["model_type"] == "mpnet"


def test_teacher_with_other_labels_is_refused(tiny_csv, tmp_path, tiny_tokenizer_dir, student_init):
    other = build_tiny_bert(tmp_path / "t3", tiny_tokenizer_dir, labels=("a", "b", "c"))
    with pytest.raises(ConfigError, match="labels"):
        distill(tiny_distill_config(tiny_csv, other, tmp_path / "s", student_init))


def _texts_seen_by(monkeypatch, runner: str) -> list[list[str]]:
    """Patch ``edgedistill.compress.distill.teacher_outputs.<runner>`` to record the texts of each call; returns that
    record."""
    calls: list[list[str]] = []
    real = getattr(outputs_mod, runner)

    def spy(teacher_dir, texts, *args, **kwargs):
        calls.append(list(texts))
        return real(teacher_dir, texts, *args, **kwargs)

    monkeypatch.setattr(outputs_mod, runner, spy)
    return calls


def test_cached_rows_are_reused_for_a_larger_transfer_set(tiny_model_dir, tmp_path, monkeypatch):
    real = outputs_mod.run_teacher
    calls = _texts_seen_by(monkeypatch, "run_teacher")
    first = ["the film was great", "awful plot", "a very boring and flat movie"]
    more = ["a warm and moving story", "tedious"]
    a = outputs_mod.teacher_outputs(tiny_model_dir, first, 16, pooled=True, cache=tmp_path)
    b = outputs_mod.teacher_outputs(tiny_model_dir, more[:1] + first + more[1:], 16, pooled=True, cache=tmp_path)
    assert calls == [first, more]  # only the new texts met the teacher
    whole = real(tiny_model_dir, more[:1] + first + more[1:], 16, pooled=True)
    np.testing.assert_allclose(b.logits, whole.logits, atol=1e-5)
    np.testing.assert_allclose(b.pooled, whole.pooled, atol=1e-5)
    np.testing.assert_allclose(b.logits[1:4], a.logits, atol=1e-6)


def test_cached_outputs_round_trip_attention(tiny_model_dir, tmp_path):
    texts = ["the film was great", "awful plot", "a very boring and flat movie"]
    a = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, pooled=True, attention=True, cache=tmp_path)
    b = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, pooled=True, attention=True, cache=tmp_path)
    assert not a.from_cache and b.from_cache and a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal(a.pooled, b.pooled)
    assert [x.shape for x in b.attentions] == [(6, 6), (4, 4), (8, 8)]
    assert all(np.allclose(x.sum(-1), 1.0, atol=1e-5) for x in b.attentions)


def test_cli_distill_and_ablate(tiny_csv, tiny_model_dir, student_init, tmp_path):
    from typer.testing import CliRunner

    from edgedistill.compress.cli import app

    runner = CliRunner()
    out = tmp_path / "cli-student"
    res = runner.invoke(app, ["distill", "--teacher", str(tiny_model_dir), "--data", str(tiny_csv),
                              "--student", str(student_init), "--builder", "drop-layers", "--layers", "1",
                              "--alpha", "0.8", "--epochs", "0.5", "--max-length", "32", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "macro-F1" in res.output and "teacher" in res.output
    assert json.loads((out / "distill.json").read_text())["layers"] == 1
    bad = runner.invoke(app, ["distill", "--teacher", str(tiny_model_dir), "--alpha", "2"])
    assert bad.exit_code == 1 and "distill.alpha=2.0" in bad.output
    cfg = tmp_path / "base.json"
    cfg.write_text(json.dumps({"data": {"source": str(tiny_csv)}, "student": {"model": str(student_init)},
                               "distill": {"epochs": 0.3, "max_length": 32}}))
    res = runner.invoke(app, ["ablate", str(cfg), "--teacher", str(tiny_model_dir), "--grid", "distill.alpha=0.5",
                              "-o", str(tmp_path / "abl")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "abl" / "ablation.md").is_file() and "macro-F1" in res.output


def test_layer_map_spaces_student_layers_and_follows_copied_layers():
    from types import SimpleNamespace

    from edgedistill.compress.distill.losses import layer_map

    minilm = SimpleNamespace(num_hidden_layers=6)
    assert layer_map(minilm, 12, 1) == [(6, 12)]  # the last layer alone, as before
    assert layer_map(minilm, 12, 3) == [(2, 4), (4, 8), (6, 12)]
    assert layer_map(minilm, 12, 6) == [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]
    # a student copied from teacher layers 0, 2, 4, 7, 9, 11 maps each layer to the one it came from
    copied = SimpleNamespace(num_hidden_layers=6, student={"builder": "teacher-layers",
                                                           "layers_kept": [0, 2, 4, 7, 9, 11]})
    assert layer_map(copied, 12, 3) == [(2, 3), (4, 8), (6, 12)]
    with pytest.raises(ConfigError, match="hidden_loss_layers"):
        layer_map(minilm, 12, 7)
    with pytest.raises(ConfigError, match="hidden_loss_layers"):
        DistillConfig(teacher_dir="t", hidden_loss_layers=0)


def test_hidden_loss_over_several_layers(tiny_csv, mpnet_teacher, student_init, tmp_path, monkeypatch):
    seen = {}
    real = outputs_mod.run_teacher

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen["pooled"], seen["layers"] = out.pooled.shape, kwargs.get("layers")
        return out

    monkeypatch.setattr(outputs_mod, "run_teacher", spy)
    cfg = tiny_distill_config(tiny_csv, mpnet_teacher, tmp_path / "s", student_init, hidden_loss_weight=1.0,
                              hidden_loss_layers=2, epochs=0.5)
    out = distill(cfg)
    # both of the 2-layer student's layers, each against its teacher layer: two 48-wide blocks side by side
    assert seen["layers"] == [1, 2] and seen["pooled"][1] == 2 * 48
    whole = real(mpnet_teacher, ["the film was great"], 16, pooled=True, layers=[1, 2])
    last = real(mpnet_teacher, ["the film was great"], 16, pooled=True)
    np.testing.assert_allclose(whole.pooled[:, 48:], last.pooled, atol=1e-5)
    assert "distill_projection" not in " ".join(
        __import__("transformers").AutoModelForSequenceClassification.from_pretrained(out).state_dict())


def test_teacher_outputs_through_onnx_runtime_match_torch_and_are_cached(tiny_model_dir, tmp_path, monkeypatch):
    texts = ["the film was great", "awful plot", "a very boring and flat movie", "a warm and moving story"]
    torch_out = outputs_mod.run_teacher(tiny_model_dir, texts, 16)
    calls = _texts_seen_by(monkeypatch, "run_teacher_onnx")
    a = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", cache=tmp_path)
    np.testing.assert_allclose(a.logits, torch_out.logits, atol=1e-4)
    # exported once, parity-checked, kept in the cache under the checkpoint's hash
    assert (outputs_mod.onnx_teacher(tiny_model_dir, 16) / "model.onnx").is_file()
    b = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", cache=tmp_path)
    assert b.from_cache and calls == [texts]
    # a different backend is a different cache entry; inner states always come from torch
    assert not outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, cache=tmp_path).from_cache
    c = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, pooled=True, backend="onnx", cache=tmp_path)
    assert c.pooled is not None and calls == [texts]
    with pytest.raises(ConfigError, match="teacher_backend"):
        DistillConfig(teacher_dir="t", teacher_backend="tf")


def test_a_teacher_that_cannot_export_is_run_in_torch(tiny_model_dir, tmp_path, monkeypatch, caplog):
    from edgedistill.compress.errors import ExportError

    def no_export(*args, **kwargs):
        raise ExportError("optimum could not export this architecture")

    monkeypatch.setattr(outputs_mod, "onnx_teacher", no_export)
    torch_calls = _texts_seen_by(monkeypatch, "run_teacher")
    texts = ["the film was great", "awful plot"]
    with caplog.at_level("WARNING", logger="edgedistill.compress.distill"):
        out = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", cache=tmp_path)
    assert torch_calls == [texts] and out.logits.shape == (2, 2)
    assert "its ONNX export failed" in caplog.text and "could not export" in caplog.text
