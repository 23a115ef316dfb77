"""The evaluation protocol: metrics against numbers worked out by hand, torch and ONNX paths agreeing."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from edgedistill.compress.data import DataConfig, Split, load_data
from edgedistill.compress.errors import ConfigError, DataError
from edgedistill.compress.evaluate import (Metrics, align_columns, compute_metrics, cross_dataset_split,
                                           expected_calibration_error, evaluate_package, evaluate_torch,
                                           predict_proba_torch, read_metrics, write_metrics)

# Five binary examples; the numbers below are worked out by hand.
Y = [0, 0, 1, 1, 1]
P_POS = [0.1, 0.65, 0.75, 0.35, 0.9]
PROBS = np.array([[1 - p, p] for p in P_POS])
# predictions: 0, 1, 1, 0, 1 -> correct: yes, no, yes, no, yes


def test_binary_metrics_match_hand_computed_values():
    m = compute_metrics(Y, PROBS, ["neg", "pos"])
    assert m.n == 5
    assert m.accuracy == pytest.approx(3 / 5)
    # neg: predicted {0, 3}, true {0, 1} -> P = 1/2, R = 1/2; pos: predicted {1, 2, 4}, true {2, 3, 4} -> 2/3, 2/3
    assert m.per_class["neg"].precision == pytest.approx(0.5)
    assert m.per_class["neg"].recall == pytest.approx(0.5)
    assert m.per_class["neg"].f1 == pytest.approx(0.5)
    assert m.per_class["neg"].support == 2
    assert m.per_class["pos"].precision == pytest.approx(2 / 3)
    assert m.per_class["pos"].recall == pytest.approx(2 / 3)
    assert m.per_class["pos"].support == 3
    assert m.macro_precision == pytest.approx(7 / 12)
    assert m.macro_recall == pytest.approx(7 / 12)
    assert m.macro_f1 == pytest.approx(7 / 12)
    # positive scores {.75, .35, .9} vs negative {.1, .65}: 5 of 6 pairs ranked right
    assert m.roc_auc == pytest.approx(5 / 6)
    assert m.confusion == [[1, 1], [1, 2]]
    # confidences .9 .65 .75 .65 .9 -> bins (13/15, 14/15]: {.9, .9} all right, |1 - .9| x 2/5;
    # (9/15, 10/15]: {.65, .65} both wrong, |0 - .65| x 2/5; (11/15, 12/15]: {.75} right, |1 - .75| x 1/5
    assert m.ece == pytest.approx(0.4 * 0.1 + 0.4 * 0.65 + 0.2 * 0.25)


def test_multiclass_with_an_absent_class_has_no_auc_and_zero_scores_for_it():
    y = [0, 1, 0, 1]
    probs = np.array([[.7, .2, .1], [.2, .5, .3], [.3, .3, .4], [.1, .8, .1]])  # predicted 0, 1, 2, 1
    m = compute_metrics(y, probs, ["a", "b", "c"])
    assert m.roc_auc is None  # c never occurs
    assert m.accuracy == pytest.approx(3 / 4)
    assert m.per_class["a"].precision == pytest.approx(1.0)
    assert m.per_class["a"].recall == pytest.approx(0.5)
    assert m.per_class["a"].f1 == pytest.approx(2 / 3)
    assert (m.per_class["b"].precision, m.per_class["b"].recall) == (1.0, 1.0)
    assert (m.per_class["c"].precision, m.per_class["c"].f1, m.per_class["c"].support) == (0.0, 0.0, 0)
    assert m.macro_f1 == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m.confusion == [[1, 0, 1], [0, 2, 0], [0, 0, 0]]


def _pair_auc(scores, positive):
    """AUC by counting ranked pairs (ties count half)."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_multiclass_auc_is_the_macro_mean_of_one_vs_rest_pair_counts():
    rng = np.random.default_rng(0)
    y = [0, 1, 2, 0, 1, 2, 0, 1]
    probs = rng.dirichlet([1, 1, 1], size=len(y))
    m = compute_metrics(y, probs, ["a", "b", "c"])
    expected = np.mean([_pair_auc(probs[:, k], [t == k for t in y]) for k in range(3)])
    assert m.roc_auc == pytest.approx(expected)


def test_ece_is_zero_when_confidence_equals_accuracy():
    # four examples at confidence .75, three of them right: perfectly calibrated
    probs = np.array([[.75, .25]] * 4)
    assert expected_calibration_error(np.array([0, 0, 0, 1]), probs) == pytest.approx(0.0)
    assert expected_calibration_error(np.array([1, 1, 1, 1]), probs) == pytest.approx(0.75)


def test_bad_shapes_and_labels_are_refused():
    with pytest.raises(DataError, match="do not match"):
        compute_metrics([0, 1], np.ones((3, 2)) / 2, ["a", "b"])
    with pytest.raises(DataError, match="label ids"):
        compute_metrics([0, 2], np.ones((2, 2)) / 2, ["a", "b"])


def test_align_columns_reorders_by_name():
    probs = np.array([[0.2, 0.8]])
    assert align_columns(probs, ["pos", "neg"], ["neg", "pos"]).tolist() == [[0.8, 0.2]]
    assert align_columns(probs, ["LABEL_0", "LABEL_1"], ["neg", "pos"]).tolist() == [[0.2, 0.8]]
    with pytest.raises(DataError, match="differ"):
        align_columns(probs, ["x", "y"], ["neg", "pos"])


def test_write_and_read_metrics_round_trip(tmp_path):
    m = compute_metrics(Y, PROBS, ["neg", "pos"])
    m.dataset, m.split = "tiny", "test"
    jpath, mpath = write_metrics(m, tmp_path, "metrics")
    assert json.loads(jpath.read_text())["macro_f1"] == pytest.approx(7 / 12)
    assert read_metrics(jpath) == m
    md = mpath.read_text()
    assert "| macro F1 | 0.5833 |" in md and "| **pos** | 1 | 2 |" in md


def _tiny_split(tiny_csv):
    data = load_data(DataConfig(source=str(tiny_csv)))
    return data, data.test


def test_evaluate_torch_matches_an_unbatched_forward_pass(tiny_model_dir, tiny_csv):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    data, split = _tiny_split(tiny_csv)
    m = evaluate_torch(tiny_model_dir, split, data.label_names, batch_size=7, dataset=data.name)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        probs = np.stack([torch.softmax(model(**tok(t, return_tensors="pt")).logits[0], -1).numpy()
                          for t in split.texts])
    expected = compute_metrics(split.labels, probs, data.label_names)
    assert m.n == len(split) == 48
    assert m.accuracy == pytest.approx(expected.accuracy)
    assert m.roc_auc == pytest.approx(expected.roc_auc, abs=1e-6)
    assert m.ece == pytest.approx(expected.ece, abs=1e-5)
    assert m.dataset == data.name and m.split == "test"


def test_evaluate_torch_aligns_reversed_model_labels(tmp_path, tiny_tokenizer_dir, tiny_csv):
    from tests.helpers import build_tiny_bert

    data, split = _tiny_split(tiny_csv)
    straight = build_tiny_bert(tmp_path / "a", tiny_tokenizer_dir, labels=("negative", "positive"), seed=3)
    reversed_ = build_tiny_bert(tmp_path / "b", tiny_tokenizer_dir, labels=("positive", "negative"), seed=3)
    # same weights, swapped names: b calls "positive" what a calls "negative", so its predictions flip
    a = evaluate_torch(straight, split, data.label_names)
    b = evaluate_torch(reversed_, split, data.label_names)
    assert b.confusion == [row[::-1] for row in a.confusion]
    assert a.confusion != b.confusion


def test_evaluate_torch_needs_the_tokenizer_with_a_model_object(tiny_model_dir, tiny_csv):
    from transformers import AutoModelForSequenceClassification

    _, split = _tiny_split(tiny_csv)
    with pytest.raises(ConfigError, match="tokenizer"):
        evaluate_torch(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir), split)


def test_evaluate_package_agrees_with_torch(tmp_path, tiny_model_dir, tiny_csv):
    """The same model through ONNX and edgedistill.runtime.TextClassifier scores what it scores in torch."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    runtime = pytest.importorskip("edgedistill.runtime.classifier")
    data, split = _tiny_split(tiny_csv)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = tok(["a warm film", "dull"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(model, tuple(enc[n] for n in names), str(tmp_path / "model.onnx"), input_names=names,
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}})
    config = {"labels": data.label_names, "max_length": 64, "input_names": names, "output_name": "logits",
              "uses_token_type_ids": True, "pad_token_id": tok.pad_token_id, "model_type": "bert",
              "variant": "fp32"}
    clf = runtime.TextClassifier.from_files(tmp_path / "model.onnx", tiny_model_dir / "tokenizer.json", config)
    onnx_m = evaluate_package(clf, split, data.label_names)
    torch_m = evaluate_torch(model, split, data.label_names, tokenizer=tok, max_length=64)
    assert onnx_m.confusion == torch_m.confusion
    assert onnx_m.roc_auc == pytest.approx(torch_m.roc_auc, abs=1e-5)
    assert onnx_m.ece == pytest.approx(torch_m.ece, abs=1e-4)


def test_evaluate_package_runs_the_batches_one_call_would(tiny_package, tiny_csv):
    """Evaluation feeds the classifier in chunks (for its progress bar): every batch is still the one a single
    ``predict_proba`` call makes, so the numbers do not depend on the chunking."""
    from edgedistill.runtime import TextClassifier

    data, _ = _tiny_split(tiny_csv)
    texts = [t + " fine" * (i % 5) for i, t in enumerate(data.train.texts[:100])]  # varied lengths, many ties
    split = Split(texts, data.train.labels[:100])
    clf = TextClassifier.load(tiny_package)
    fed: list[np.ndarray] = []
    logits = clf.logits
    clf.logits = lambda feed: (fed.append(feed["input_ids"].copy()), logits(feed))[1]
    chunked = evaluate_package(clf, split, batch_size=4, progress=True)
    by_chunks, fed[:] = list(fed), []
    probs = clf.predict_proba(texts, batch_size=4)
    assert len(by_chunks) == len(fed) == 25
    assert all(np.array_equal(a, b) for a, b in zip(by_chunks, fed))
    whole = compute_metrics(split.labels, probs, data.label_names)
    assert (chunked.confusion, chunked.roc_auc, chunked.ece) == (whole.confusion, whole.roc_auc, whole.ece)


def test_cross_dataset_split_maps_labels_and_drops_the_rest(tmp_path):
    import csv

    path = tmp_path / "other.csv"
    rows = [(f"text number {i}", ["fresh", "rotten", "plot"][i % 3]) for i in range(90)]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    labels = ["negative", "positive"]
    split = cross_dataset_split(DataConfig(source=str(path), test_size=0.5), labels,
                                {"fresh": "positive", "rotten": "negative"}, exclude=["text number 0"])
    truth = dict(rows)
    assert split.texts and "text number 0" not in split.texts
    for t, y in zip(split.texts, split.labels):
        assert truth[t] != "plot"
        assert labels[y] == {"fresh": "positive", "rotten": "negative"}[truth[t]]
    with pytest.raises(ConfigError, match="label_map"):
        cross_dataset_split(DataConfig(source=str(path)), labels, {"fresh": "great"})
    with pytest.raises(ConfigError, match="no built-in label map"):
        cross_dataset_split(DataConfig(source=str(path)), labels)


def test_metrics_summary_and_markdown_cover_every_class():
    m = compute_metrics([0, 1, 2], np.eye(3), ["x", "y", "z"])
    assert m.summary()["macro_f1"] == 1.0 and m.ece == pytest.approx(0.0)
    md = m.to_markdown()
    assert all(f"| {k} |" in md for k in "xyz")
    assert isinstance(Metrics.from_dict(m.to_dict()), Metrics)


def test_predict_proba_torch_keeps_input_order(tiny_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["the film was very good and fun", "dull", "a plot", "the acting was really poor but warm"]
    batched = predict_proba_torch(model, tok, texts, batch_size=3)
    with torch.no_grad():
        one = np.stack([torch.softmax(model(**tok(t, return_tensors="pt")).logits[0], -1).numpy() for t in texts])
    np.testing.assert_allclose(batched, one, atol=1e-5)
