"""The static student: built from the teacher, distilled, exported without attention, run by the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgedistill.compress.data import DataConfig
from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.distill.run import distill
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.checkpoints import load_classifier
from edgedistill.compress.student import StudentConfig, build_student

TEXTS = ["the film was great", "awful plot and a very boring movie", "fine"]


def _cfg(csv: Path, teacher: Path, out: Path, **student) -> DistillConfig:
    return DistillConfig(teacher_dir=str(teacher), data=DataConfig(source=str(csv)),
                         student=StudentConfig(builder="static", static_dim=16, **student), output_dir=str(out),
                         epochs=2.0, batch_size=16, max_length=32, learning_rate=1e-2)


@pytest.mark.parametrize("init", ["teacher", "embeddings"])
def test_static_student_starts_from_the_teacher(tiny_model_dir, init):
    import torch

    corpus = TEXTS * 5
    model, tok = build_student(StudentConfig(builder="static", static_dim=8, static_init=init), tiny_model_dir, 2,
                               {0: "negative", 1: "positive"}, corpus=corpus)
    assert model.config.model_type == "edgedistill-static" and model.config.num_hidden_layers == 0
    assert model.embeddings.weight.shape == (len(tok), 8)
    assert tok.model_input_names == ["input_ids", "attention_mask"]
    # SIF: the special tokens every text carries weigh less than a word seen once
    w = model.embeddings.weight.detach().norm(dim=1)
    cls_id, fine_id = tok.cls_token_id, tok.convert_tokens_to_ids("fine")
    assert w[cls_id] < w[fine_id]
    # padding does not move the mean
    enc = tok(["fine", "the film was great"], padding=True, return_tensors="pt")
    with torch.no_grad():
        padded = model(**enc).logits[0]
        alone = model(**tok(["fine"], return_tensors="pt")).logits[0]
    torch.testing.assert_close(padded, alone)


def test_static_student_refuses_layer_losses_and_layers(tiny_csv, tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="distill.hidden_loss_weight"):
        DistillConfig(teacher_dir=str(tiny_model_dir), student=StudentConfig(builder="static"),
                      hidden_loss_weight=1.0)
    with pytest.raises(ConfigError, match="student.layers"):
        StudentConfig(builder="static", layers=2)
    with pytest.raises(ConfigError, match="student.static_init"):
        StudentConfig(builder="static", static_init="glove")
    with pytest.raises(ConfigError, match="distill.teacher_dir"):
        DistillConfig(student=StudentConfig(builder="static"), alpha=0.0)


def test_static_student_distils_exports_without_attention_and_runs_in_the_runtime(tiny_csv, tiny_model_dir,
                                                                                   tmp_path):
    import onnx
    import torch

    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.runtime import TextClassifier

    out = distill(_cfg(tiny_csv, tiny_model_dir, tmp_path / "static", trim_vocab=True))
    info = json.loads((out / "distill.json").read_text())
    assert info["layers"] == 0 and info["vocab_trim"]["vocab_after"] <= info["vocab_trim"]["vocab_before"]
    model = load_classifier(out).eval()
    assert type(model).__name__ == "StaticForSequenceClassification"

    onnx_dir = export(ExportConfig(checkpoint=str(out), output=str(tmp_path / "onnx"), max_length=32))
    ops = {n.op_type for n in onnx.load(str(onnx_dir / "model.onnx")).graph.node}
    assert "Gather" in ops and not ops & {"Softmax", "Attention", "MultiHeadAttention", "LayerNormalization"}
    meta = json.loads((onnx_dir / "export.json").read_text())
    assert meta["input_names"] == ["input_ids", "attention_mask"]
    assert max(meta["parity"]["max_abs_diff"].values()) < 1e-4

    from edgedistill.compress.package import PackagingConfig, build_package
    from edgedistill.compress.quantize import QuantizeConfig, quantize

    quantize(QuantizeConfig(onnx_dir=str(onnx_dir), data=DataConfig(source=str(tiny_csv)), calibration_samples=16,
                            latency_samples=4))
    package = build_package(PackagingConfig(onnx_dir=str(onnx_dir), output=str(tmp_path / "package")))
    clf = TextClassifier.load(package)
    texts = TEXTS + ["a much longer text " * 20]
    probs = clf.predict_proba(texts)
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        ref = torch.softmax(model(**hf_tok(texts, padding=True, truncation=True, max_length=32,
                                           return_tensors="pt")).logits, -1).numpy()
    assert probs.shape == ref.shape
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.75  # the shipped variant may be int8
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_hashed_bigrams_export_with_parity_and_ignore_padding(tiny_csv, tiny_model_dir, tmp_path):
    import onnx
    import torch

    from edgedistill.compress.export import ExportConfig, export

    out = distill(_cfg(tiny_csv, tiny_model_dir, tmp_path / "bigrams", static_bigrams=97, trim_vocab=True))
    model = load_classifier(out).eval()
    assert model.config.bigram_buckets == 97 and model.bigrams.weight.shape == (97, 64)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        padded = model(**tok(["fine", "the film was great"], padding=True, return_tensors="pt")).logits[0]
        alone = model(**tok(["fine"], return_tensors="pt")).logits[0]
    torch.testing.assert_close(padded, alone)
    onnx_dir = export(ExportConfig(checkpoint=str(out), output=str(tmp_path / "onnx"), max_length=32))
    ops = {n.op_type for n in onnx.load(str(onnx_dir / "model.onnx")).graph.node}
    assert "Mod" in ops and "Softmax" not in ops  # the hashing runs in the graph
    meta = json.loads((onnx_dir / "export.json").read_text())
    assert max(meta["parity"]["max_abs_diff"].values()) < 1e-4
