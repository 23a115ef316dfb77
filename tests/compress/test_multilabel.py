"""Multi-label tasks from recipe to package: data, metrics, thresholds fitted on validation, the one-vs-rest
baseline, binary distillation, and a tiny build whose package answers with every label above its threshold."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edgedistill.compress.data import DataConfig, load_data
from edgedistill.compress.errors import ConfigError, DataError
from edgedistill.compress.evaluate import compute_metrics
from edgedistill.compress.multilabel import as_matrix, fit_thresholds
from tests.helpers import TAGS, multilabel_rows, tiny_multilabel_recipe


def test_a_label_separator_makes_the_task_multi_label_and_a_list_column_does_too(tmp_path, multilabel_csv):
    data = load_data(DataConfig(source=str(multilabel_csv), label_column="tags", label_separator="|"))
    assert data.multi_label and data.task == "multi_label" and data.label_names == TAGS
    assert all(isinstance(y, tuple) and y == tuple(sorted(y)) and y for y in data.train.labels)
    counts = data.counts()
    assert all(counts[s][lab] > 0 for s in ("train", "validation", "test") for lab in TAGS)
    jsonl = tmp_path / "tags.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "tags": labels[::-1]}) + "\n"
                             for t, labels in multilabel_rows(300)))
    again = load_data(DataConfig(source=str(jsonl), label_column="tags"))
    assert again.multi_label and again.train == data.train and again.test == data.test
    single = load_data(DataConfig(source=str(multilabel_csv), label_column="tags"))
    assert not single.multi_label and "negative|story" in single.label_names  # no separator: one label a text


def test_label_sets_are_canonical_and_bad_ones_are_named(tmp_path):
    path = tmp_path / "x.csv"
    rows = [("a b", "x| y"), ("a b", "y|x"), ("c d", "x"), ("e f", "y||x"), ("z", "z"), ("x z", "x|z"),
            *((f"t{i}", "x|y") for i in range(12))]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    data = load_data(DataConfig(source=str(path), label_separator="|", test_size=0.2))
    assert data.stats["dropped_duplicates"] == 1 and data.stats["dropped_conflicting"] == 0  # one label set
    assert data.label_names == ["x", "y", "z"]
    kept = load_data(DataConfig(source=str(path), label_separator="|", labels=["x", "y"], test_size=0.2))
    texts = kept.train.texts + kept.validation.texts + kept.test.texts
    assert kept.label_names == ["x", "y"] and "z" not in texts and "x z" in texts  # z is gone, "x z" keeps x
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(("g h", "| "))
    with pytest.raises(DataError, match="no label left"):
        load_data(DataConfig(source=str(path), label_separator="|"))
    with pytest.raises(ConfigError, match="label_separator"):
        DataConfig(source=str(path), label_separator=" ")


def test_multilabel_metrics_by_hand():
    y = [(0,), (0, 1), (2,), (1, 2)]
    probs = np.array([[0.9, 0.1, 0.1], [0.8, 0.3, 0.1], [0.1, 0.1, 0.7], [0.2, 0.6, 0.9]])
    m = compute_metrics(y, probs, ["a", "b", "c"])
    # decisions at 0.5: {a}, {a}, {c}, {b, c}: text 2 misses b
    assert m.task == "multi_label" and m.accuracy == pytest.approx(0.75)
    assert m.per_class["b"].recall == pytest.approx(0.5) and m.per_class["b"].precision == 1.0
    assert m.micro_f1 == pytest.approx(2 * 5 / (6 + 5))  # tp 5, 6 true labels, 5 predicted
    assert m.macro_f1 == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert m.samples_f1 == pytest.approx((1 + 2 / 3 + 1 + 1) / 4)
    lower = compute_metrics(y, probs, ["a", "b", "c"], thresholds=[0.5, 0.25, 0.5])
    assert lower.accuracy == 1.0 and lower.thresholds == [0.5, 0.25, 0.5]
    assert "micro F1" in m.to_markdown() and "Confusion" not in m.to_markdown()


def test_thresholds_are_fitted_per_label_with_a_global_one_for_rare_labels():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < [0.5, 0.3, 0.005]).astype(int)
    probs = np.clip(y * 0.3 + rng.random((400, 3)) * 0.6, 0, 1)  # positives sit 0.3 higher
    thresholds, how = fit_thresholds(y, probs)
    assert how["chosen_by"][:2] == ["own", "own"] and how["chosen_by"][2] == "global"
    assert thresholds[2] == how["global"]
    for j in (0, 1):  # no other grid value beats the chosen one on that label's F1
        f1 = [compute_metrics(y, probs, "abc", thresholds=[t] * 3).per_class["abc"[j]].f1 for t in (0.3, 0.5, 0.7)]
        chosen = compute_metrics(y, probs, "abc", thresholds=thresholds).per_class["abc"[j]].f1
        assert chosen >= max(f1) - 1e-12


def test_the_one_vs_rest_baseline_ships_as_a_strings_package_that_agrees_with_scikit_learn(tmp_path, multilabel_csv):
    from edgedistill.compress.baseline_package import BaselineConfig, package_baseline
    from edgedistill.runtime import TextClassifier

    cfg = DataConfig(source=str(multilabel_csv), label_column="tags", label_separator="|")
    out = package_baseline(BaselineConfig(data=cfg, output=str(tmp_path / "baseline")))
    clf = TextClassifier.load(out)
    assert clf.multi_label and len(clf.thresholds) == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["parity"]["label_flips"] == 0 and manifest["metrics"]["micro_f1"] > 0.8
    data = load_data(cfg)
    probs = clf.predict_proba(data.test.texts[:8])
    assert probs.shape == (8, 4) and not np.allclose(probs.sum(1), 1.0)  # one sigmoid per label
    answers = clf.predict(data.test.texts[:8])
    for row, answer in zip(probs, answers):
        assert {a["label"] for a in answer} == {clf.labels[j] for j in range(4) if row[j] >= clf.thresholds[j]}


def test_binary_distillation_loss_is_least_where_the_student_matches_the_teacher():
    import torch

    from edgedistill.compress.distill.losses import distillation_loss

    t = torch.tensor([[2.0, -1.0, 0.5]])
    same = distillation_loss(t.clone(), t, None, 1.0, 2.0, multi_label=True)
    p = torch.sigmoid(t / 2.0)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).mean() * 4.0  # T^2 times the teacher's binary entropy
    assert float(same) == pytest.approx(float(entropy), rel=1e-5)
    for other in (-t, t + 0.3, torch.zeros_like(t)):
        assert distillation_loss(other, t, None, 1.0, 2.0, multi_label=True) > same
    labels = torch.tensor([[1.0, 0.0, 1.0], [-100.0, -100.0, -100.0]])  # the second text is unlabelled
    logits = torch.tensor([[3.0, -3.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    hard = distillation_loss(logits, None, labels, 0.0, 1.0, multi_label=True)
    assert float(hard) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:1], labels[:1])))
    hard.backward()
    assert logits.grad[1].abs().sum() == 0  # the unlabelled text gets no gradient from the hard term


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["drop-layers", "static"])
def test_a_tiny_multilabel_recipe_builds_a_package_with_thresholds_from_validation(tmp_path, multilabel_csv,
                                                                                  tiny_model_dir, builder):
    from typer.testing import CliRunner

    from edgedistill.compress.cli import app
    from edgedistill.runtime import TextClassifier

    recipe = tiny_multilabel_recipe(tmp_path, multilabel_csv, tiny_model_dir, builder)
    r = CliRunner().invoke(app, ["build", str(recipe)])
    assert r.exit_code == 0, r.output
    build = tmp_path / "tiny"
    teacher = json.loads((build / "teacher" / "config.json").read_text())
    assert teacher["problem_type"] == "multi_label_classification"
    config = json.loads((build / "package" / "config.json").read_text())
    assert config["task"] == "multi_label" and len(config["thresholds"]) == 4
    manifest = json.loads((build / "package" / "manifest.json").read_text())
    assert manifest["calibration"]["method"] == "thresholds"
    assert manifest["calibration"]["split"] == "validation"
    # the thresholds are the ones the validation probabilities of the shipped variant give
    data = load_data(DataConfig(source=str(multilabel_csv), label_column="tags", label_separator="|"))
    clf = TextClassifier.load(build / "package")
    y = as_matrix(data.validation.labels, 4)[:, [data.label_names.index(lab) for lab in clf.labels]]
    assert fit_thresholds(y, clf.predict_proba(data.validation.texts))[0] == config["thresholds"]
    answers = clf.predict(data.test.texts[:5])
    assert all(isinstance(a, list) for a in answers)
    report = json.loads((build / "report" / "report.json").read_text())
    rows = {row["model"]: row for row in report["rows"]}
    assert all(rows[m]["micro_f1"] is not None for m in ("teacher", "baseline TF-IDF + LR", "package (shipped)"))
    assert "micro-F1" in (build / "report" / "report.md").read_text()
