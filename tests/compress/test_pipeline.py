"""The resumable pipeline: stage fingerprints; a tiny recipe builds end to end, skips what is done, resumes what was
killed (the recipes it reads: test_recipe.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.compress.cli import app
from edgedistill.compress.layout import read_state
from edgedistill.compress.pipeline import STAGE_NAMES, fingerprint
from tests.helpers import PACKAGE_FILES, tiny_recipe

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_fingerprint_changes_with_config_and_upstream():
    a = fingerprint("student", {"alpha": 0.5}, ["run1"])
    assert a == fingerprint("student", {"alpha": 0.5}, ["run1"])
    assert a != fingerprint("student", {"alpha": 0.6}, ["run1"])
    assert a != fingerprint("student", {"alpha": 0.5}, ["run2"])
    # and with the content of what it reads (tests/compress/test_fingerprints.py)
    b = fingerprint("student", {"alpha": 0.5}, ["run1"], {"data file a.csv": "sha256:1"})
    assert b == fingerprint("student", {"alpha": 0.5}, ["run1"], {"data file a.csv": "sha256:1"})
    assert b != a and b != fingerprint("student", {"alpha": 0.5}, ["run1"], {"data file a.csv": "sha256:2"})


def _predict(package: Path, texts: list[str]) -> np.ndarray:
    from edgedistill.runtime import TextClassifier

    return TextClassifier.load(package).predict_proba(texts)


@pytest.mark.slow
def test_tiny_recipe_builds_end_to_end_then_skips_everything(tmp_path, tiny_csv, tiny_model_dir):
    recipe = tiny_recipe(tmp_path, tiny_csv, tiny_model_dir)
    r = runner.invoke(app, ["build", str(recipe)])
    assert r.exit_code == 0, r.output
    build = tmp_path / "tiny"
    assert {p.name for p in (build / "package").iterdir()} == PACKAGE_FILES
    manifest = json.loads((build / "package" / "manifest.json").read_text())
    assert set(manifest["files"]) == PACKAGE_FILES - {"manifest.json"}
    assert {"report.md", "report.json", "plot.png"} <= {p.name for p in (build / "report").iterdir()}
    report = json.loads((build / "report" / "report.json").read_text())
    rows = {row["model"]: row for row in report["rows"]}
    assert list(rows)[0] == "baseline TF-IDF + LR" and rows["package (shipped)"]["shipped"]
    assert {row["split"] for row in report["rows"]} == {"test"}
    assert {v["split"] for v in report["variants"]} == {"validation"}
    h, teacher, base = report["headline"], rows["teacher"], rows["baseline TF-IDF + LR"]
    assert teacher["latency_p50_ms"] > 0 and base["latency_p50_ms"] > 0 and h["speedup_vs_teacher"] > 0
    assert rows["student"]["latency_p50_ms"] > 0 and rows["package (shipped)"]["latency_p50_ms"] > 0
    if h["share_withheld"]:  # the tiny teacher failed its check (or the baseline beats it): no share, no margin
        assert h["share_of_teacher"] is None and h["margin_kept"] is None
    else:
        if teacher["macro_f1"] > base["macro_f1"]:  # the margin is defined only then
            assert h["margin_kept"] == pytest.approx((h["macro_f1"] - base["macro_f1"])
                                                     / (teacher["macro_f1"] - base["macro_f1"]))
        assert h["share_of_teacher"] == pytest.approx(h["macro_f1"] / teacher["macro_f1"])
    assert "margin kept" in (build / "report" / "report.md").read_text()
    calibration = {c["model"]: c for c in report["calibration"]}  # test ECE before / after the fitted temperatures
    assert set(calibration) == {"package (shipped)", "student"} and calibration["student"]["n"] == rows["student"]["n"]
    from edgedistill.runtime.cpu import detect

    assert report["isa"] == report["quantize_isa"] == report["detected_isa"] == detect().name
    assert f"int8 instruction set **{detect().name}**" in (build / "report" / "report.md").read_text()
    state = read_state(build)
    assert list(state["stages"]) == list(STAGE_NAMES)
    for stage in ("teacher", "student", "onnx", "package", "report"):  # published folders read like any other
        assert (build / stage).stat().st_mode & 0o777 == 0o755, stage
    probs = _predict(build / "package", ["a good film", "a dull plot"])
    assert probs.shape == (2, 2)

    again = runner.invoke(app, ["build", str(recipe)])
    assert again.exit_code == 0, again.output
    assert again.output.count("up to date, skipped") == len(STAGE_NAMES)
    assert read_state(build) == state

    # a changed export setting redoes export and everything after it, not the training stages
    changed = runner.invoke(app, ["build", str(recipe), "--set", "export.max_length=24"])
    assert changed.exit_code == 0, changed.output
    new = read_state(build)["stages"]
    assert new["teacher"] == state["stages"]["teacher"] and new["student"] == state["stages"]["student"]
    assert new["export"]["run_id"] != state["stages"]["export"]["run_id"]


@pytest.mark.slow
def test_a_build_prints_headers_bars_and_the_table_and_logs_the_rest_to_a_file(tmp_path, tiny_csv, tiny_model_dir):
    """What a person sees: the console script in a process of its own, as `make demo` runs it (Python's warnings
    and the libraries' tqdm bars reach the real stderr there, not pytest's capture)."""
    recipe = tiny_recipe(tmp_path, tiny_csv, tiny_model_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "EDGEDISTILL_CACHE": str(tmp_path / "cache")}  # an empty cache: the teacher labels the transfer set
    env.pop("EDGEDISTILL_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "edgedistill.compress.cli", "build", str(recipe)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    console = r.stdout + r.stderr
    assert not [line for line in console.splitlines() if "Warning" in line], console
    assert not re.search(r"\d+%\||it/s\]|examples/s\]", console), console  # no tqdm bar
    for n, name in enumerate(STAGE_NAMES, 1):
        assert r.stdout.count(f"[{n}/{len(STAGE_NAMES)}] {name}:") == 1, r.stdout
    bars = [line for line in r.stderr.splitlines() if "examples/s" in line]
    # teacher: training (the tiny recipe sets retries = 0), test; student: the fp32 and int8 teacher graphs on
    # validation (their agreement), the teacher's labels, training, test; report: the package and the baseline's
    # package on test
    assert [line.split()[0] for line in bars] == ["training", "evaluating", "agreement", "agreement", "labelling",
                                                 "training", "evaluating", "evaluating", "evaluating"], r.stderr
    assert "the teacher still fails its check after 1 run(s)" in r.stderr  # said on the console, not hidden
    assert "package (shipped)" in r.stdout
    log = tmp_path / "tiny" / "build.log"
    assert f"log:     {log}" in r.stdout
    text = log.read_text()
    # INFO: the file only
    assert "edgedistill.compress.teacher: teacher saved to" in text and "teacher saved to" not in console
    assert "edgedistill.compress.progress: training, step" in text


@pytest.mark.slow
def test_a_rerun_killed_mid_stage_forgets_nothing_once_the_inputs_are_restored(tmp_path, tiny_csv, tiny_model_dir):
    """A label renamed in the CSV starts a rebuild; killed while the teacher retrains, then the CSV restored byte
    for byte: the old build is up to date, every stage skipped (issue 28's 23 minutes run again)."""
    data = tmp_path / "data.csv"
    original = tiny_csv.read_bytes()
    data.write_bytes(original)
    recipe = tiny_recipe(tmp_path, data, tiny_model_dir)
    assert runner.invoke(app, ["build", str(recipe)]).exit_code == 0
    build = tmp_path / "tiny"
    before = read_state(build)["stages"]
    assert set(before) == set(STAGE_NAMES)
    data.write_bytes(original.replace(b",negative", b",neg"))  # a label renamed
    assert data.read_bytes() != original
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill.compress.cli", "build", str(recipe)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while read_state(build).get("running", {}).get("stage") != "teacher":  # the teacher is retraining
        assert proc.poll() is None, "the rebuild ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_state(build)["stages"] == before  # nothing struck while the teacher ran

    data.write_bytes(original)
    r = runner.invoke(app, ["build", str(recipe)])
    assert r.exit_code == 0, r.output
    assert r.output.count("up to date, skipped") == len(STAGE_NAMES), r.output
    after = read_state(build)
    assert after["stages"] == before and "running" not in after

    # a run killed after its stage published (the output is another object now): that stage runs again
    after["running"] = {"stage": "report", "output": "an output id from before"}
    (build / ".state.json").write_text(json.dumps(after))
    r = runner.invoke(app, ["build", str(recipe)])
    assert r.exit_code == 0, r.output
    assert r.output.count("up to date, skipped") == len(STAGE_NAMES) - 1, r.output
    assert read_state(build)["stages"]["report"]["run_id"] != before["report"]["run_id"]


@pytest.mark.slow
def test_a_build_killed_mid_stage_resumes_and_finishes_the_same(tmp_path, tiny_csv, tiny_model_dir):
    recipe = tiny_recipe(tmp_path, tiny_csv, tiny_model_dir)
    # quantize ships the fastest passing variant, measured: on a tiny model fp32, optimised and int8 tie
    # and any may win. Only fp32 and optimised (equal within float error) are built, so two builds compare.
    same_variants = ["--set", 'quantize.variants=["optimized"]']
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill.compress.cli", "build", str(recipe), *same_variants],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    build = tmp_path / "tiny"
    deadline = time.monotonic() + 300
    # kill it once the student is done, while a later stage is running
    while "student" not in read_state(build).get("stages", {}):
        assert proc.poll() is None, "the build ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = set(read_state(build)["stages"])
    assert "package" not in done_before

    r = runner.invoke(app, ["build", str(recipe), *same_variants])
    assert r.exit_code == 0, r.output
    assert r.output.count("up to date, skipped") == len(done_before)
    assert {p.name for p in (build / "package").iterdir()} == PACKAGE_FILES
    assert not [p for p in build.iterdir() if ".tmp" in p.name]

    # the same package as an uninterrupted build of the same recipe
    clean_root = tmp_path / "clean"
    clean_root.mkdir()
    clean = tiny_recipe(clean_root, tiny_csv, tiny_model_dir)
    assert runner.invoke(app, ["build", str(clean), *same_variants]).exit_code == 0
    texts = ["good great film", "dull boring plot", "the story was fun", "cold and flat"]
    np.testing.assert_allclose(_predict(build / "package", texts), _predict(clean_root / "tiny" / "package", texts),
                               atol=1e-5)
    resumed, uninterrupted = (json.loads((b / "package" / "config.json").read_text())
                              for b in (build, clean_root / "tiny"))
    assert {resumed.pop("variant"), uninterrupted.pop("variant")} <= {"fp32", "optimized"}
    assert resumed == uninterrupted
