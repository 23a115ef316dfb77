"""Lifelong updates (edgedistill.compress.update): LwF's loss, a growing head, new versions that name their parent,
refusals."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError, UpdateRefused
from edgedistill.compress.update import UpdateConfig, update
from edgedistill.compress.update_train import grow_head, lwf_loss
from tests.helpers import FILLER, TAGS, make_sentences, multilabel_rows, tiny_multilabel_recipe, tiny_recipe


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


def test_multilabel_lwf_loss_is_bce_on_the_gold_sets_plus_the_binary_kd_on_the_old_labels():
    import torch

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0]])  # three labels: the last is new
    old = torch.tensor([[1.0, -2.0], [-0.5, 0.5]])                # the old model's sigmoid outputs on two
    gold = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    alpha, t = 0.3, 2.0

    def bce(z, target):  # mean binary cross-entropy of sigmoid(z) against target, by hand
        p = 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))
        return float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))

    soft = bce(logits[:, :2].numpy() / t, 1 / (1 + np.exp(-old.numpy() / t)))
    want = (1 - alpha) * bce(logits.numpy(), gold.numpy()) + alpha * t * t * soft
    assert lwf_loss(logits, old, gold, alpha, t, multi_label=True).item() == pytest.approx(want, rel=1e-5)
    assert lwf_loss(logits, None, gold, alpha, t, multi_label=True).item() == pytest.approx(
        bce(logits.numpy(), gold.numpy()), rel=1e-5)  # naive
    # the old model's outputs pull only the old labels' logits: the new label learns from its gold column alone
    x = logits.clone().requires_grad_(True)
    lwf_loss(x, old, gold, 1.0, t, multi_label=True).backward()
    assert torch.all(x.grad[:, 2] == 0) and torch.all(x.grad[:, :2] != 0)


def test_label_sets_are_remapped_by_name_and_a_single_label_becomes_a_set_of_one():
    from edgedistill.compress.data import Split
    from edgedistill.compress.update import label_ids, label_names, remap

    labels = ["b", "c", "a", "d"]  # the old labels first, the new one ("d") after them
    multi = remap(Split(["x", "y"], [(0, 3), (2,)]), ["a", "b", "c", "d"], labels, multi_label=True)
    assert multi.labels == [(2, 3), (1,)]
    single = remap(Split(["x", "y"], [1, 0]), ["a", "b"], labels, multi_label=True)
    assert single.labels == [(0,), (2,)]
    assert remap(Split(["x"], [1]), ["a", "b"], labels).labels == [0]  # single-label builds: ids as before
    # rehearsal.jsonl stores names: one, or a list for a text with a set of labels
    assert label_names(labels, (0, 3)) == ["b", "d"] and label_names(labels, 1) == "c"
    assert label_ids(["d", "b"], labels, True) == (0, 3) and label_ids("c", labels, True) == (1,)
    assert label_ids("c", labels, False) == 1


def test_the_verdict_reads_validation_only():
    from edgedistill.compress.update_gate import verdict

    cfg = UpdateConfig(forget_budget=1.0)
    val = {"before": {"old_task": 0.80, "new_task": 0.50, "all": 0.6},
           "after": {"old_task": 0.795, "new_task": 0.70, "all": 0.7}}
    ship = verdict({"validation": val, "test": {"before": val["before"], "after": val["after"]}}, cfg)
    assert ship[0] and "(validation)" in ship[1]
    for test in ({"before": {"old_task": 1.0, "new_task": 1.0, "all": 1.0},  # a test split that would refuse it
                  "after": {"old_task": 0.0, "new_task": 0.0, "all": 0.0}},
                 {"before": {}, "after": {}}):
        assert verdict({"validation": val, "test": test}, cfg) == ship
    forgets = {**val, "after": {**val["after"], "old_task": 0.70}}
    assert not verdict({"validation": forgets, "test": {"before": val["before"], "after": val["after"]}}, cfg)[0]


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _build(recipe: Path, data_settings: str = "") -> Path:
    """Build ``recipe`` (the pipeline tests' tiny one) teacher to package, its student the recipe's model itself,
    one quantized variant; returns the build folder. ``data_settings``: lines added to its ``[data]`` table."""
    from edgedistill.compress.pipeline import build
    from edgedistill.compress.recipe import load_recipe

    text = (recipe.read_text().replace("[quantize]", '[quantize]\nvariants = ["int8-dynamic"]')
            .replace('builder = "drop-layers"', 'builder = "pretrained"').replace("layers = 1\n", "")
            .replace("[distill]", "[distill]\nalpha = 0.0").replace("[data]\n", f"[data]\n{data_settings}"))
    recipe.write_text(text)
    build(load_recipe(recipe), until="ship")  # package/ is what the ship stage copies there
    return recipe.parent / "tiny"


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory, tiny_csv, tiny_trained_model_dir) -> Path:
    """A tiny build, teacher to package, shared by the update tests (they write updates/ beside it)."""
    # a student that already tells the labels apart
    return _build(tiny_recipe(tmp_path_factory.mktemp("update-build"), tiny_csv, tiny_trained_model_dir))


NEW_POSITIVE, NEW_NEGATIVE = FILLER[:6], FILLER[6:12]


def _new_domain(folder: Path, n: int = 200, times: int = 1) -> Path:
    """The same two labels told by other words (no sentiment word at all): a domain the old model cannot read.
    ``times``: each text's words that many times over (a long text)."""
    rng = random.Random(7)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 else "negative"
        words = rng.sample(NEW_POSITIVE if label == "positive" else NEW_NEGATIVE, 3) + rng.sample(FILLER[12:], 2)
        rng.shuffle(words)
        rows.append((" ".join(words * times) + f" {i}", label))
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


# ---------------------------------------------------------------------------------- multi-label and long-text builds
@pytest.fixture(scope="module")
def multilabel_build(tmp_path_factory, multilabel_csv, tiny_model_dir) -> Path:  # noqa: F811 (the fixture)
    """A tiny multi-label build (TAGS: sentiment, performance, story), its package's thresholds fitted on
    validation. From the random tiny BERT: the trained one's features have settled on the sentiment alone, from
    which a few steps cannot learn a new label."""
    return _build(tiny_multilabel_recipe(tmp_path_factory.mktemp("update-ml"), multilabel_csv, tiny_model_dir))


def _loud(folder: Path, n: int = 240) -> DataConfig:
    """Multi-label data like the build's (other texts), a third of it with a new label, ``loud``, told by "!" (a
    token no old text holds)."""
    rows = []
    for i, (text, labels) in enumerate(multilabel_rows(n, seed=9)):
        if i % 3 == 0:
            text, labels = f"{text} ! !", [*labels, "loud"]
        rows.append((text, "|".join(labels)))
    return DataConfig(source=str(_write(folder / "loud.csv", rows)), label_separator="|")


@pytest.fixture(scope="module")
def loud_update(multilabel_build, tmp_path_factory):
    """The multi-label build updated with LwF on data that brings a new label."""
    cfg = UpdateConfig(data=_loud(tmp_path_factory.mktemp("loud")), method="lwf", epochs=10.0, evals_per_epoch=1,
                       batch_size=16, learning_rate=1e-3, forget_budget=100.0)
    return update(multilabel_build, cfg), cfg


@pytest.mark.slow
def test_a_multilabel_build_learns_a_new_label_with_lwf_and_ships_its_threshold(multilabel_build, loud_update):
    from edgedistill.compress.data import load_data
    from edgedistill.runtime import TextClassifier

    result, cfg = loud_update
    assert result.shipped and result.report["task"] == "multi_label" and result.report["new_labels"] == ["loud"]
    config = json.loads((result.package / "config.json").read_text())
    assert config["task"] == "multi_label" and config["labels"] == [*TAGS, "loud"]
    assert len(config["thresholds"]) == 5 and all(0 < t < 1 for t in config["thresholds"])
    clf = TextClassifier.load(result.package)
    assert clf.multi_label and clf.labels == [*TAGS, "loud"]
    # through the runtime, the texts with "!" get the new label and the others do not
    new = load_data(cfg.data)
    loud = new.label_names.index("loud")
    said = np.array([any(a["label"] == "loud" for a in answer) for answer in clf.predict(new.test.texts)])
    gold = np.array([loud in y for y in new.test.labels])
    assert said[gold].mean() > 0.8 and said[~gold].mean() < 0.2
    val = result.report["validation"]
    assert val["after"]["new_task"] > val["before"]["new_task"]
    # the old package never predicts the new label: before, the new data's macro-F1 counts it as missed
    assert result.report["test"]["after"]["all"] > result.report["test"]["before"]["all"]
    # the next update replays label sets: rehearsal rows store a list of names
    rows = [json.loads(line) for line in (result.folder / "rehearsal.jsonl").read_text().splitlines()]
    assert rows and all(isinstance(r["label"], list) for r in rows)
    assert any("loud" in r["label"] for r in rows)


@pytest.mark.slow
def test_the_multilabel_gate_reads_validation_at_the_thresholds_each_package_ships(multilabel_build, loud_update):
    from edgedistill.compress.multilabel import as_matrix, fit_thresholds
    from edgedistill.compress.update import UpdateData, UpdateSource
    from edgedistill.compress.update_gate import task_macro_f1, verdict
    from edgedistill.runtime import TextClassifier

    result, cfg = loud_update
    d = UpdateData.load(UpdateSource.open(multilabel_build), cfg.data)  # the splits the update read
    after, before = TextClassifier.load(result.package), TextClassifier.load(multilabel_build / "package")
    # the new package's thresholds are fitted on both tasks' validation texts, never on a test text
    probs = after.predict_proba(d.validation.texts)
    shipped = json.loads((result.package / "config.json").read_text())["thresholds"]
    assert fit_thresholds(as_matrix(d.validation.labels, 5), probs)[0] == shipped
    # the gate's figures: each package on the validation texts, at the thresholds it ships
    val = result.report["validation"]
    k = len(d.old_val)
    assert val["after"]["old_task"] == pytest.approx(task_macro_f1(d.old_val.labels, probs[:k], d.old_ids,
                                                                   after.thresholds))
    assert val["after"]["new_task"] == pytest.approx(task_macro_f1(d.new_val.labels, probs[k:], d.new_ids,
                                                                   after.thresholds))
    old_probs = np.pad(before.predict_proba(d.old_val.texts), [(0, 0), (0, 1)])  # no column for the new label
    assert val["before"]["old_task"] == pytest.approx(task_macro_f1(d.old_val.labels, old_probs, d.old_ids,
                                                                    [*before.thresholds, np.inf]))
    # and the verdict does not move when the test figures do
    garbled = {**result.report, "test": {"before": {"old_task": 1.0, "new_task": 1.0, "all": 1.0},
                                         "after": {"old_task": 0.0, "new_task": 0.0, "all": 0.0}}}
    assert verdict(garbled, cfg) == verdict(result.report, cfg) == (True, result.reason)


@pytest.mark.slow
def test_single_label_data_onto_a_multilabel_build_reads_each_label_as_a_set_of_one(loud_update, tmp_path):
    result, _ = loud_update
    data = _write(tmp_path / "sentiment.csv", make_sentences(120, seed=21))  # one label a text, old labels only
    try:  # shipped or refused (the build already reads sentiment), an update of the update runs every stage
        folder = update(result.folder, UpdateConfig(data=str(data), method="lwf+rehearsal", epochs=2.0,
                                                    batch_size=16, learning_rate=1e-3, forget_budget=100.0)).folder
    except UpdateRefused:
        folder = result.folder.with_name(f"v{result.version + 1}.refused")
    report = json.loads((folder / "update_report.json").read_text())
    assert report["task"] == "multi_label" and report["labels"] == [*TAGS, "loud"] and report["new_labels"] == []
    assert report["parent_version"] == result.version and report["training"]["replayed"] > 0
    assert json.loads((folder / "package" / "config.json").read_text())["task"] == "multi_label"


@pytest.mark.slow
def test_multilabel_data_onto_a_single_label_build_is_refused(tiny_build, tmp_path):
    with pytest.raises(ConfigError, match="is multi-label .* gives one label a text"):
        update(tiny_build, UpdateConfig(data=_loud(tmp_path), method="lwf"), output=tmp_path / "v-ml")
    assert not (tmp_path / "v-ml").exists()


@pytest.mark.slow
def test_a_package_that_reads_long_texts_otherwise_than_its_student_is_refused(tiny_build, tmp_path):
    import shutil

    build = shutil.copytree(tiny_build, tmp_path / "tiny", ignore=shutil.ignore_patterns("updates"))
    config = json.loads((build / "student" / "config.json").read_text())
    (build / "student" / "config.json").write_text(json.dumps({**config, "long_texts": "chunks"}))
    with pytest.raises(ConfigError, match="reads long texts as truncate, but its student/ reads them as chunks"):
        update(build, UpdateConfig(data=str(_new_domain(tmp_path)), method="lwf"))


@pytest.mark.slow
def test_a_chunks_build_updates_reading_each_text_by_its_windows(tmp_path_factory, tiny_csv, tiny_model_dir, tmp_path):
    from edgedistill.compress.update_gate import task_macro_f1
    from edgedistill.runtime import TextClassifier

    build = _build(tiny_recipe(tmp_path_factory.mktemp("update-chunks"), tiny_csv, tiny_model_dir),
                   'long_texts = "chunks"\n')
    new = _new_domain(tmp_path, times=8)  # about 40 words a text: more than the 32 tokens of a window
    result = update(build, UpdateConfig(data=str(new), method="lwf+rehearsal", epochs=4.0, evals_per_epoch=1,
                                        batch_size=16, learning_rate=1e-3, forget_budget=100.0))
    for config in (result.folder / "student" / "config.json", result.package / "config.json"):
        assert json.loads(config.read_text())["long_texts"] == "chunks"
    training = result.report["training"]
    assert training["long_texts"] == "chunks" and training["windows"] > training["texts"]
    assert "training windows" in (result.folder / "update_report.md").read_text()
    # the report's figures are the package's, each long text's windows pooled by the runtime
    clf = TextClassifier.load(result.package)
    assert clf.long_texts == "chunks"
    from edgedistill.compress.data import load_data

    new_val = load_data(DataConfig(source=str(new)), min_classes=1).validation
    labels = result.report["labels"]
    ids = [labels.index(clf.labels[y]) for y in range(len(clf.labels))]
    assert result.report["validation"]["after"]["new_task"] == pytest.approx(
        task_macro_f1([ids[y] for y in new_val.labels], clf.predict_proba(new_val.texts), ids))
    assert result.report["validation"]["after"]["new_task"] > result.report["validation"]["before"]["new_task"]
