"""Lifelong updates (edgedistill.compress.update): LwF's loss, a growing head, new versions that name their parent,
refusals."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from edgedistill.compress.errors import ConfigError, UpdateRefused
from edgedistill.compress.update import UpdateConfig, grow_head, lwf_loss, update
from tests.conftest import FILLER, make_sentences
from tests.test_pipeline import tiny_recipe


def test_lwf_loss_matches_a_hand_computation():
    import torch

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]])  # three classes: the last is new
    old = torch.tensor([[1.0, 0.0], [-0.5, 0.5]])                 # the old model knew two
    labels = torch.tensor([2, 1])
    alpha, t = 0.3, 2.0

    def log_softmax(row):
        row = [v / t for v in row]
        z = np.log(sum(np.exp(v) for v in row))
        return [v - z for v in row]

    ce = np.mean([-(logits[i, labels[i]].item() - np.log(np.exp(logits[i].numpy()).sum())) for i in range(2)])
    kl = np.mean([sum(np.exp(q) * (q - p) for p, q in zip(log_softmax(logits[i, :2].tolist()),
                                                           log_softmax(old[i].tolist()))) for i in range(2)])
    want = (1 - alpha) * ce + alpha * t * t * kl
    assert lwf_loss(logits, old, labels, alpha, t).item() == pytest.approx(want, rel=1e-5)
    assert lwf_loss(logits, None, labels, alpha, t).item() == pytest.approx(ce, rel=1e-5)  # naive
    # the KD term pulls only the old classes' logits: the new class's gradient comes from the gold labels alone
    x = logits.clone().requires_grad_(True)
    lwf_loss(x, old, labels, 1.0, t).backward()
    assert torch.all(x.grad[:, 2] == 0) and torch.any(x.grad[:, :2] != 0)


def test_a_new_label_grows_the_head_and_keeps_the_old_rows(tiny_model_dir):
    import torch

    from edgedistill.compress.checkpoints import load_classifier

    model = load_classifier(tiny_model_dir)
    before = model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()
    old = [model.config.id2label[i] for i in range(2)]
    grow_head(model, [*old, "neutral"])
    assert model.classifier.out_features == 3 and model.config.num_labels == 3
    assert model.config.id2label[2] == "neutral" and model.config.label2id["neutral"] == 2
    assert torch.equal(model.classifier.weight[:2], before[0]) and torch.equal(model.classifier.bias[:2], before[1])
    out = model(input_ids=torch.tensor([[2, 7, 3]])).logits
    assert out.shape == (1, 3)
    with pytest.raises(ConfigError, match="update.data"):
        grow_head(model, ["neutral", *old])  # the old labels must keep their positions


def test_the_config_names_its_fields():
    with pytest.raises(ConfigError, match="update.method"):
        UpdateConfig(method="finetune")
    with pytest.raises(ConfigError, match="update.forget_budget"):
        UpdateConfig(forget_budget=-1)
    assert UpdateConfig(data="tweets-sentiment").data.source == "tweets-sentiment"


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory, tiny_csv, tiny_trained_model_dir) -> Path:
    """A tiny build, teacher to package, shared by the update tests (they write updates/ beside it)."""
    from edgedistill.compress.pipeline import build
    from edgedistill.compress.recipe import load_recipe

    folder = tmp_path_factory.mktemp("update-build")
    recipe = tiny_recipe(folder, tiny_csv, tiny_trained_model_dir)  # a student that already tells the labels apart
    text = (recipe.read_text().replace("[quantize]", '[quantize]\nvariants = ["int8-dynamic"]')
            .replace('builder = "drop-layers"', 'builder = "pretrained"').replace("layers = 1\n", "")
            .replace("[distill]", "[distill]\nalpha = 0.0"))
    recipe.write_text(text)
    build(load_recipe(recipe), until="ship")  # package/ is what the ship stage copies there
    return folder / "tiny"


NEW_POSITIVE, NEW_NEGATIVE = FILLER[:6], FILLER[6:12]


def _new_domain(folder: Path, n: int = 200) -> Path:
    """The same two labels told by other words (no sentiment word at all): a domain the old model cannot read."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = rng.sample(NEW_POSITIVE if label == "positive" else NEW_NEGATIVE, 3) + rng.sample(FILLER[12:], 2)
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))
    return _write(folder / "new-domain.csv", rows)


@pytest.mark.slow
def test_an_update_makes_a_new_version_that_names_its_parent(tiny_build, tmp_path):
    old_package = tiny_build / "package"
    parent_sha = __import__("edgedistill.runtime.package",
                            fromlist=["sha256_file"]).sha256_file(old_package / "manifest.json")
    before = _tree(old_package)
    # rehearsal: on a domain whose words the old model misreads with confidence, LwF's soft targets on the new
    # texts pull against their gold labels (the KD term is over the same classes)
    result = update(tiny_build, UpdateConfig(data=str(_new_domain(tmp_path)), method="rehearsal", epochs=10.0,
                                             batch_size=16, learning_rate=1e-3, forget_budget=100.0))
    assert result.shipped and result.folder == tiny_build / "updates" / "v2"
    manifest = json.loads((result.package / "manifest.json").read_text())
    assert manifest["parent"]["sha256"] == parent_sha and manifest["parent"]["version"] == 1
    assert [h["version"] for h in manifest["history"]] == [1, 2]
    assert "## Version history" in (result.package / "README.md").read_text()
    assert _tree(old_package) == before  # the version it started from is untouched
    # the rehearsal buffer lives in the build folder and never in a package
    rehearsal = (tiny_build / "rehearsal.jsonl").read_text().splitlines()
    assert rehearsal and not any("rehearsal" in p.name for p in result.package.iterdir())
    # the new version keeps its own buffer: its parent's plus a share of its own training texts
    assert len((result.folder / "rehearsal.jsonl").read_text().splitlines()) > len(rehearsal)
    report = json.loads((result.folder / "update_report.json").read_text())
    assert set(report["validation"]["before"]) == {"old_task", "new_task", "all"}
    assert report["changed"]["of"] > 0 and report["method"] == "rehearsal"
    from edgedistill.runtime import TextClassifier

    assert TextClassifier.load(result.package).labels == ["negative", "positive"]


@pytest.mark.slow
def test_a_new_class_grows_the_shipped_head(tiny_build, tmp_path):
    rng = random.Random(3)
    rows = [(" ".join(rng.sample(FILLER[12:], 5)) + f" {i}", "neutral") for i in range(80)]
    rows += make_sentences(80, seed=11)
    result = update(tiny_build, UpdateConfig(data=str(_write(tmp_path / "neutral.csv", rows)), method="lwf",
                                             epochs=20.0, evals_per_epoch=1, batch_size=16, learning_rate=1e-3,
                                             forget_budget=100.0), output=tmp_path / "v-neutral")
    from edgedistill.runtime import TextClassifier

    clf = TextClassifier.load(result.package)
    assert clf.labels == ["negative", "positive", "neutral"]
    assert result.report["new_labels"] == ["neutral"]
    assert result.report["validation"]["after"]["new_task"] > result.report["validation"]["before"]["new_task"]
    # on both tasks' texts together, every label counts: the old model never predicts the new one
    assert result.report["test"]["after"]["all"] > result.report["test"]["before"]["all"]


@pytest.mark.slow
def test_an_update_that_forgets_beyond_the_budget_is_refused_and_nothing_changes(tiny_build, tmp_path, monkeypatch):
    import torch

    import edgedistill.compress.update as upd

    def forgetful(model, *args, **kwargs):  # training that ends with the old classes' rows swapped
        with torch.no_grad():
            model.classifier.weight[[0, 1]] = model.classifier.weight[[1, 0]].clone()
            model.classifier.bias[[0, 1]] = model.classifier.bias[[1, 0]].clone()
        return {"best": {"score": 0.0, "step": 0}, "history": [], "steps": 0}

    monkeypatch.setattr(upd, "train", forgetful)
    before, root_before = _tree(tiny_build / "package"), sorted(p.name for p in tiny_build.iterdir())
    with pytest.raises(UpdateRefused,
                       match=r"forgets \d+\.\d+ macro-F1 points of the old tasks, beyond the budget of 1"):
        update(tiny_build, UpdateConfig(data=str(_new_domain(tmp_path)), method="naive"), output=tmp_path / "v-bad")
    assert _tree(tiny_build / "package") == before  # byte for byte
    assert sorted(p.name for p in tiny_build.iterdir()) == root_before
    assert (tmp_path / "v-bad.refused" / "update_report.md").is_file() and not (tmp_path / "v-bad").exists()
    report = json.loads((tmp_path / "v-bad.refused" / "update_report.json").read_text())
    assert not report["shipped"] and report["changed"]["n"] > 0


@pytest.mark.slow
def test_new_data_may_bring_one_class_alone(tiny_build, tmp_path):
    rng = random.Random(4)
    rows = [(" ".join(rng.sample(FILLER[12:], 5)) + f" {i}", "neutral") for i in range(60)]
    try:  # shipped or refused, the update runs through every stage (the targets check samples the old task)
        result = update(tiny_build, UpdateConfig(data=str(_write(tmp_path / "only-neutral.csv", rows)),
                                                 method="rehearsal", epochs=2.0, batch_size=16, learning_rate=1e-3,
                                                 forget_budget=100.0), output=tmp_path / "v-one")
        folder = result.folder
    except UpdateRefused:
        folder = tmp_path / "v-one.refused"
    report = json.loads((folder / "update_report.json").read_text())
    assert report["labels"] == ["negative", "positive", "neutral"] and report["new_labels"] == ["neutral"]
