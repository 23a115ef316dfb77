"""The baseline as a candidate that can ship: its ONNX package gives scikit-learn's probabilities, the runtime runs
it (no tokenizer), its manifest verifies, the web export refuses it, and the ship rule picks whichever candidate
wins on validation. Tiny data made in code (tests/conftest.py's tiny_csv); no network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.compress.baseline import train_baseline
from edgedistill.compress.baseline_package import (EDGE_TEXTS, BaselineConfig, check_parity, package_baseline,
                                                  strings_config, to_onnx)
from edgedistill.compress.data import DataConfig, load_data
from edgedistill.compress.errors import ExportParityError
from edgedistill.compress.ladder import BudgetError
from edgedistill.compress.ship import ShipConfig, ship
from edgedistill.runtime import PackageIntegrityError, TextClassifier, verify_package
from edgedistill.runtime.package import MANIFEST_FILE, write_manifest

BASELINE_FILES = {"model.onnx", "config.json", "manifest.json", "README.md"}
ODD = ["", " ", "##", "a#b ## c", "café NAÏVE 😀 日本語", "GREAT\nfilm\t\twith  spaces", "x" * 4000,
       "good " * 600, "Hello, world! How's it going?"]


@pytest.fixture(scope="module")
def data(tiny_csv):
    return load_data(DataConfig(source=str(tiny_csv)))


@pytest.fixture(scope="module")
def baseline_package(tmp_path_factory, tiny_csv, data) -> Path:
    """The baseline stage's package of tiny_csv (shared: copy it before changing a byte)."""
    out = tmp_path_factory.mktemp("baseline") / "baseline"
    return package_baseline(BaselineConfig(data=DataConfig(source=str(tiny_csv)), output=str(out)), data)


def test_the_onnx_baseline_package_gives_scikit_learns_probabilities(baseline_package, data):
    base = train_baseline(data.train, data.validation)  # deterministic: the stage's own fit
    clf = TextClassifier.load(baseline_package)
    assert clf.labels == [data.label_names[i] for i in base.label_ids]
    texts = list(data.test.texts) + ODD + list(EDGE_TEXTS)
    ref = base.predict_proba(texts)
    got = clf.predict_proba(texts)  # batched, sorted by length: padding inside the graph's tokenizers
    assert np.abs(got - ref).max() < 1e-5
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    alone = np.vstack([clf.predict_proba([t]) for t in ODD])
    np.testing.assert_allclose(alone, got[len(data.test):len(data.test) + len(ODD)], atol=1e-6)
    parity = clf.manifest["metrics"]["parity"]
    assert parity["max_abs_diff"] < 1e-5 and parity["texts"] == len(data.validation) + len(EDGE_TEXTS)


def test_the_runtime_loads_the_baseline_package_without_a_tokenizer(baseline_package, data):
    assert {p.name for p in baseline_package.iterdir()} == BASELINE_FILES
    manifest = verify_package(baseline_package)
    assert set(manifest["files"]) == BASELINE_FILES - {MANIFEST_FILE} and manifest["format_version"] == "2.0"
    config = json.loads((baseline_package / "config.json").read_text())
    assert (config["kind"], config["input_names"]) == ("strings", ["text"])
    metrics = manifest["metrics"]
    assert metrics["split"] == "validation" and metrics["n"] == len(data.validation)
    assert 0.5 < metrics["macro_f1"] <= 1 and metrics["latency_p50_ms"] > 0
    clf = TextClassifier.load(baseline_package)
    pred = clf.predict("a wonderful and brilliant film")
    assert set(pred) == {"label", "score"} and pred["label"] in data.label_names and 0 < pred["score"] <= 1
    assert [p["label"] for p in clf.predict(["", "dull"], top_k=None)[0]] != []
    assert clf.predict_proba([]).shape == (0, 2)
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode"):
        clf.predict(["fine", "bad \ud800"])
    with pytest.raises(TypeError, match=r"\[0\] is None"):
        clf.predict([None])
    assert "raw strings" in repr(clf)


def test_the_baseline_package_runs_without_torch_or_scikit_learn(baseline_package):
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        from edgedistill import TextClassifier
        clf = TextClassifier.load({str(baseline_package)!r})
        assert clf.predict_proba(["the film was good", "", "bad"]).shape == (3, 2)
        heavy = ("torch", "transformers", "sklearn", "skl2onnx", "edgedistill.compress")
        print("HEAVY=" + ",".join(sorted(m for m in heavy if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout, out.stdout


def test_a_tampered_baseline_package_is_refused(baseline_package, tmp_path):
    pkg = shutil.copytree(baseline_package, tmp_path / "pkg")
    model = pkg / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    with pytest.raises(PackageIntegrityError, match="model.onnx.*sha256"):
        TextClassifier.load(pkg)
    pkg2 = shutil.copytree(baseline_package, tmp_path / "pkg2")
    config = json.loads((pkg2 / "config.json").read_text())
    (pkg2 / "config.json").write_text(json.dumps({**config, "kind": "tokens", "max_length": 8, "pad_token_id": 0,
                                                  "input_names": ["input_ids", "attention_mask"]}))
    with pytest.raises(PackageIntegrityError, match="config.json: is .* bytes, the manifest says"):
        TextClassifier.load(pkg2)
    with pytest.raises(PackageIntegrityError, match="tokenizer.json.*a package of kind tokens needs"):
        write_manifest(pkg2, opset=17)  # rehashed, it would still lack the tokenizer its kind loads


def test_the_predict_command_runs_the_baseline_package(baseline_package, tmp_path):
    from edgedistill.compress.cli import app

    r = CliRunner().invoke(app, ["predict", str(baseline_package), "a brilliant film", ""])
    assert r.exit_code == 0, r.output
    texts = tmp_path / "in.txt"
    texts.write_text("a brilliant film\n\ndull and boring\n")
    r = CliRunner().invoke(app, ["predict", str(baseline_package), "--input", str(texts), "-o",
                                 str(tmp_path / "out.jsonl")])
    assert r.exit_code == 0, r.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3


def test_the_export_fails_with_the_max_difference(data):
    base = train_baseline(data.train, data.validation)

    class Off:  # a graph that drifts: every probability moved by 0.01
        def predict_proba(self, texts):
            p = base.predict_proba(texts) + np.array([0.01, -0.01])
            return p

    with pytest.raises(ExportParityError, match=r"scikit-learn model beyond atol=0.0001.*max \|scikit-learn - onnx\| "
                                                r"= 0.01"):
        check_parity(base, Off(), list(data.validation.texts), 1e-4)


def test_padding_never_counts_as_an_n_gram(data, tmp_path):
    """skl2onnx pads a batch's short rows with '#', a character n-gram of texts with '##' in them."""
    texts = [*data.train.texts[:50], "great ## film", "## ## ##"]
    base = train_baseline(type(data.train)(texts, [0, 1] * 26), data.validation)
    model = to_onnx(base)
    pads = [a.s for n in model.graph.node if n.op_type == "Tokenizer" for a in n.attribute if a.name == "pad_value"]
    assert pads and all(p != b"#" for p in pads)
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    clf = TextClassifier.from_files(tmp_path / "model.onnx", None, strings_config(["negative", "positive"]))
    batch = ["##", "a much longer text than the one before it, with ## inside"]
    np.testing.assert_allclose(clf.predict_proba(batch), base.predict_proba(batch), atol=1e-6)


def test_the_web_export_refuses_the_baseline(baseline_package, tmp_path):
    from edgedistill.compress.cli import app
    from edgedistill.runtime.webexport import WebExportError, export_web

    with pytest.raises(WebExportError, match="onnxruntime-web has no string tensors"):
        export_web(baseline_package, tmp_path / "web")
    assert not (tmp_path / "web").exists()
    r = CliRunner().invoke(app, ["web", str(baseline_package), str(tmp_path / "web2")])
    assert r.exit_code == 1 and "no string tensors" in r.output and "Traceback" not in r.output


# --------------------------------------------------------------------------- the ship rule

def _with_validation_f1(folder: Path, macro_f1: float) -> Path:
    """A candidate whose manifest says it scored ``macro_f1`` on validation (rehashed: it still verifies)."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    keep = {k: v for k, v in manifest.items() if k not in ("format", "format_version", "created", "files", "opset",
                                                            "edgedistill_version", "onnxruntime_version")}
    keep["metrics"] = {**keep["metrics"], "split": "validation", "macro_f1": macro_f1,
                       "latency_p50_ms": keep["metrics"].get("latency_p50_ms") or 1.0}
    (folder / MANIFEST_FILE).unlink()
    write_manifest(folder, opset=manifest["opset"], **keep)
    verify_package(folder)
    return folder


@pytest.fixture
def candidates(tmp_path, baseline_package, tiny_quantized_dir):
    from edgedistill.compress.package import PackagingConfig, build_package

    student = build_package(PackagingConfig(str(tiny_quantized_dir), output=str(tmp_path / "student"),
                                            calibrate=False))
    return {"student": student, "baseline": shutil.copytree(baseline_package, tmp_path / "baseline")}


def _ship(tmp_path, candidates, **kw):
    cfg = ShipConfig(candidates={k: str(v) for k, v in candidates.items()}, output=str(tmp_path / "package"),
                     record=str(tmp_path / "ship.json"), **kw)
    return ship(cfg), json.loads((tmp_path / "ship.json").read_text())


def test_the_ship_rule_picks_the_baseline_when_it_wins_on_validation(tmp_path, candidates):
    _with_validation_f1(candidates["student"], 0.80)
    _with_validation_f1(candidates["baseline"], 0.90)
    package, record = _ship(tmp_path, candidates)
    assert record["chosen"] == "baseline" and record["split"] == "validation"
    assert "baseline ships" in record["why"] and "student 0.8000" in record["why"]
    assert {p.name for p in package.iterdir()} == BASELINE_FILES  # what ships is the baseline's package, whole
    assert verify_package(package)["files"] == verify_package(candidates["baseline"])["files"]
    assert TextClassifier.load(package).config.kind == "strings"
    assert candidates["student"].is_dir()  # the loser stays where the report scores it


def test_the_ship_rule_picks_the_student_when_it_wins_on_validation(tmp_path, candidates):
    _with_validation_f1(candidates["student"], 0.95)
    _with_validation_f1(candidates["baseline"], 0.90)
    package, record = _ship(tmp_path, candidates)
    assert record["chosen"] == "student"
    assert "tokenizer.json" in {p.name for p in package.iterdir()}
    assert [c["validation_macro_f1"] for c in record["candidates"]] == [0.95, 0.90]


def test_the_budget_and_the_wasm_target_apply_to_the_baseline(tmp_path, candidates):
    _with_validation_f1(candidates["student"], 0.80)
    _with_validation_f1(candidates["baseline"], 0.90)
    _, record = _ship(tmp_path, candidates, budget={"min_macro_f1": 0.85})
    assert record["chosen"] == "baseline"
    _, record = _ship(tmp_path, candidates, platforms=("x86", "wasm"))
    assert record["chosen"] == "student"
    assert "no string tensors" in next(c for c in record["candidates"] if c["name"] == "baseline")["excluded"]
    with pytest.raises(BudgetError, match="closest is baseline"):
        _ship(tmp_path, candidates, budget={"min_macro_f1": 0.99})
    assert json.loads((tmp_path / "ship.json").read_text())["chosen"] is None
    assert (tmp_path / "package").is_dir()  # the last choice stays until a new one is made


def test_the_targets_check_says_wasm_cannot_run_the_baseline(baseline_package, tiny_quantized_dir, tiny_csv):
    from edgedistill.compress.targets import TargetsConfig, check_package

    cfg = TargetsConfig(onnx_dir=str(tiny_quantized_dir), data=DataConfig(source=str(tiny_csv)),
                        platforms=("x86", "wasm"))
    report = check_package(baseline_package, tiny_quantized_dir, cfg)
    rows = {r.target: r for r in report.rows}
    assert rows["wasm"].status == "failed" and "onnxruntime-web has no string tensors" in rows["wasm"].reason
    assert rows["x86"].status == "not checked" and "scikit-learn" in rows["x86"].reason


def test_a_build_ships_the_baseline_when_it_wins_and_reports_why(tmp_path, tiny_csv, tiny_model_dir):
    """The tiny students learn little in one epoch; the baseline, on the same texts, wins on validation."""
    from edgedistill.compress.cli import app
    from edgedistill.compress.recipe import load_recipe
    from tests.helpers import tiny_recipe

    path = tiny_recipe(tmp_path, tiny_csv, tiny_model_dir)
    r = CliRunner().invoke(app, ["build", str(path), "--set", "ship.baseline=true"])
    assert r.exit_code == 0, r.output
    layout = load_recipe(path, overrides=["ship.baseline=true"]).layout
    record = json.loads(layout.ship_record.read_text())
    scores = {c["name"]: c["validation_macro_f1"] for c in record["candidates"]}
    assert record["chosen"] == "baseline" and scores["baseline"] > scores["student"]
    assert "baseline ships" in r.output and "candidates (validation split)" in r.output
    assert {p.name for p in layout.package.iterdir()} == BASELINE_FILES
    report = json.loads(layout.report_json.read_text())
    rows = {row["model"]: row for row in report["rows"]}
    assert rows["package (shipped)"]["macro_f1"] == rows["baseline TF-IDF + LR"]["macro_f1"]
    assert rows["student package"]["shipped"] is False and rows["student package"]["macro_f1"] is not None
    assert report["chosen"].startswith("baseline")
    md = layout.report_md.read_text()
    assert "## What shipped and why: validation split" in md and record["why"] in md
    assert {c["name"]: c["reads"] for c in record["candidates"]} == {"student": "truncate", "baseline": "whole text"}
    assert "| baseline | tfidf-logistic-regression | whole text |" in md and "`view-*` candidates" not in md
    assert (layout.student_package / "tokenizer.json").is_file()  # the loser stays, scored on test above


def test_the_benchmark_refuses_the_baseline_in_one_line(baseline_package):
    from edgedistill.compress.cli import app

    r = CliRunner().invoke(app, ["bench", str(baseline_package)])
    assert r.exit_code == 1 and "takes raw strings" in r.output and "Traceback" not in r.output
