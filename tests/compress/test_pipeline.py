"""Recipes and the resumable pipeline: every shipped recipe validates; a tiny recipe builds end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.compress.cli import app
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.layout import read_state
from edgedistill.compress.pipeline import STAGE_NAMES, fingerprint
from edgedistill.compress.recipe import load_recipe, parse_override, recipe_from_dict, restated_defaults
from tests.helpers import PACKAGE_FILES, tiny_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "models").glob("*.toml"))
runner = CliRunner()


def test_the_four_recipes_are_shipped():
    assert {p.stem for p in RECIPES} >= {"movie-sentiment", "sms-spam", "trec-questions", "bbc-news"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("profile", ["quick", "full", "planned"])
def test_every_shipped_recipe_loads_and_validates(path, profile, tmp_path):
    recipe = load_recipe(path, profile=profile, build_root=tmp_path)
    assert recipe.name == path.stem and recipe.profile == profile
    folder = tmp_path / (path.stem if profile == "quick" else f"{path.stem}-{profile}")
    assert recipe.build_dir == folder
    teacher, distill = recipe.teacher(), recipe.distill()
    assert teacher.profile == distill.profile == profile
    assert distill.teacher_dir == str(folder / "teacher")
    assert recipe.quantize().onnx_dir == str(folder / "onnx")
    assert recipe.export().checkpoint == str(folder / "student")


def test_a_recipe_without_a_preset_gets_this_machines(tmp_path, monkeypatch):
    from edgedistill.compress.quantize.config import ISA_PRESETS
    from edgedistill.runtime import cpu
    from tests.helpers import x86

    isa = cpu.detect()
    for path in RECIPES:  # the shipped recipes name no preset: they follow the machine
        q = load_recipe(path, build_root=tmp_path).quantize()
        assert (q.preset, q.detected_isa) == (ISA_PRESETS[isa.name], isa.name), path.stem
    raw = {"name": "x", "data": {"source": "movie-snippets"}, "quantize": {"budget": 0.5}}
    seen = cpu.detect(x86("avx2"), "x86_64")  # an AVX2 machine without VNNI
    monkeypatch.setattr(cpu, "detect", lambda *args: seen)
    q = recipe_from_dict(raw, build_root=tmp_path).quantize()
    assert (q.preset, q.detected_isa, q.reduce_range, q.budget) == ("avx2", "avx2", True, 0.5)
    q = recipe_from_dict({**raw, "quantize": {"preset": "auto"}}, build_root=tmp_path).quantize()
    assert (q.preset, q.detected_isa) == ("avx2", "avx2")
    # the detected set is part of the stage's fingerprint: a build resumed on another CPU quantizes again
    amx = cpu.detect(x86("avx2 avx512_vnni amx_tile amx_int8"), "x86_64")
    monkeypatch.setattr(cpu, "detect", lambda *args: amx)
    assert fingerprint("quantize", recipe_from_dict(raw, build_root=tmp_path).quantize(), []) != \
        fingerprint("quantize", q, [])
    monkeypatch.setattr(cpu, "detect", lambda *args: seen)
    q = recipe_from_dict(raw, overrides=["quantize.preset=arm64"], build_root=tmp_path).quantize()
    assert (q.preset, q.detected_isa) == ("arm64", None)  # a named preset wins, and nothing is detected
    with pytest.raises(ConfigError, match=r"quantize\.detected_isa.*set by the pipeline"):
        recipe_from_dict({**raw, "quantize": {"detected_isa": "amx"}}, build_root=tmp_path)


def test_the_build_report_names_the_instruction_set(tmp_path, tiny_quantized_dir):
    import shutil

    from edgedistill.compress.report import build_rows, to_markdown
    from edgedistill.runtime.cpu import detect

    (tmp_path / "onnx").mkdir()
    shutil.copy(tiny_quantized_dir / "quantize_report.json", tmp_path / "onnx")
    rows, meta = build_rows(tmp_path)
    assert (meta["isa"], meta["quantize_isa"], meta["preset"], meta["detected_isa"]) == \
        (detect().name, detect().name, "avx2", None)
    md = to_markdown("tiny", "quick", rows, meta)
    assert f"Measured on a CPU with int8 instruction set **{detect().name}**; quantized with the avx2 preset." in md
    moved = {**meta, "isa": "arm64-dotprod", "preset": "avx512_vnni", "detected_isa": "amx", "quantize_isa": "amx"}
    assert ("int8 instruction set **arm64-dotprod**; quantized with the avx512_vnni (auto-detected: amx) preset, "
            "its variants gated and timed on amx.") in to_markdown("tiny", "quick", rows, moved)


def test_bad_recipes_name_the_table_and_field(tmp_path):
    base = {"name": "x", "data": {"source": "movie-snippets"}}
    with pytest.raises(ConfigError, match=r"teacher\.epochz.*unknown field of TeacherConfig"):
        recipe_from_dict({**base, "teacher": {"epochz": 1}}, build_root=tmp_path)
    with pytest.raises(ConfigError, match=r"teacher\.output_dir.*set by the pipeline"):
        recipe_from_dict({**base, "teacher": {"output_dir": "/tmp/x"}}, build_root=tmp_path)
    with pytest.raises(ConfigError, match=r"teacher\.strategy"):
        recipe_from_dict({**base, "teacher": {"strategy": "most"}}, build_root=tmp_path)
    with pytest.raises(ConfigError, match="unknown recipe table"):
        recipe_from_dict({**base, "teachr": {}}, build_root=tmp_path)
    with pytest.raises(ConfigError, match="profile"):
        recipe_from_dict(base, profile="medium", build_root=tmp_path)
    with pytest.raises(ConfigError, match="name"):
        recipe_from_dict({"data": {}}, build_root=tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)


def test_profiles_and_overrides_merge_in_order(tmp_path):
    raw = {"name": "x", "data": {"source": "movie-snippets"}, "distill": {"alpha": 0.5},
           "profiles": {"full": {"distill": {"alpha": 0.7}}}}
    assert recipe_from_dict(raw, profile="quick", build_root=tmp_path).distill().alpha == 0.5
    assert recipe_from_dict(raw, profile="full", build_root=tmp_path).distill().alpha == 0.7
    # the two profiles build into folders of their own: neither overwrites the other
    assert recipe_from_dict(raw, profile="quick", build_root=tmp_path).build_dir == tmp_path / raw["name"]
    assert recipe_from_dict(raw, profile="full", build_root=tmp_path).build_dir == tmp_path / f"{raw['name']}-full"
    r = recipe_from_dict(raw, profile="full", overrides=["distill.alpha=0.9"], build_root=tmp_path)
    assert r.distill().alpha == 0.9
    assert parse_override("student.layers=[0, 2]") == ("student", "layers", [0, 2])
    assert parse_override("data.source=my.csv") == ("data", "source", "my.csv")
    with pytest.raises(ConfigError, match="TABLE.FIELD=VALUE"):
        parse_override("alpha=1")


def test_fingerprint_changes_with_config_and_upstream():
    a = fingerprint("student", {"alpha": 0.5}, ["run1"])
    assert a == fingerprint("student", {"alpha": 0.5}, ["run1"])
    assert a != fingerprint("student", {"alpha": 0.6}, ["run1"])
    assert a != fingerprint("student", {"alpha": 0.5}, ["run2"])
    # and with the content of what it reads (tests/compress/test_fingerprints.py)
    b = fingerprint("student", {"alpha": 0.5}, ["run1"], {"data file a.csv": "sha256:1"})
    assert b == fingerprint("student", {"alpha": 0.5}, ["run1"], {"data file a.csv": "sha256:1"})
    assert b != a and b != fingerprint("student", {"alpha": 0.5}, ["run1"], {"data file a.csv": "sha256:2"})


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_restate_no_default(path):
    import tomllib

    assert restated_defaults(tomllib.loads(path.read_text())) == []


def test_the_readme_recipe_validates_and_restates_no_default(tmp_path):
    import re
    import tomllib

    text = re.search(r'```toml\n(name = "tickets".*?)```', (ROOT / "README.md").read_text(), re.S).group(1)
    raw = tomllib.loads(text)
    assert restated_defaults(raw) == []
    assert recipe_from_dict(raw, build_root=tmp_path).student().builder == "teacher-layers"


def test_restated_defaults_are_found():
    raw = {"name": "x", "profile": "planned", "data": {"source": "sms-spam"}, "teacher": {"strategy": "full"},
           "distill": {"alpha": 0.7, "epochs": 2.0}, "package": {},
           "profiles": {"full": {"distill": {"alpha": 0.7, "max_length": 128}, "teacher": {"max_length": 96}}}}
    # distill.epochs 2.0 is the quick profile's but not the full one's, so it is a choice; the full profile's
    # distill.max_length 128 is what the full table gives anyway, and its alpha repeats the recipe's own
    assert restated_defaults(raw) == ["profile", "teacher.strategy", "[package] (empty)",
                                      "profiles.full.distill.alpha", "profiles.full.distill.max_length"]


def test_profile_tables_fill_fields_that_exist_and_only_one_way():
    from edgedistill.compress import profiles, teacher
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.distill import config as distill_config

    import dataclasses

    for module, cls in ((teacher, teacher.TeacherConfig), (distill_config, distill_config.DistillConfig)):
        assert tuple(module.PROFILES) == profiles.NAMES
        names = {f.name for f in dataclasses.fields(cls)} | {f.name for f in dataclasses.fields(DataConfig)}
        assert sorted({k for table in module.PROFILES.values() for k in table} - names) == []
    cfg = distill_config.DistillConfig(teacher_dir="t")
    assert cfg.epochs is None  # nothing is filled before the stage runs ...
    quick, full = cfg.resolved(), replace(cfg, profile="full").resolved()
    assert quick.epochs == distill_config.PROFILES["quick"]["epochs"]
    assert full.epochs == distill_config.PROFILES["full"]["epochs"]
    assert quick.data.max_train_samples == distill_config.PROFILES["quick"]["max_train_samples"]
    # ... so a profile changed afterwards never keeps the other profile's values
    assert replace(quick, profile="full").max_length == quick.max_length  # what was set stays set
    assert replace(teacher.TeacherConfig(), profile="full").resolved().max_length == \
        teacher.PROFILES["full"]["max_length"]
    # the fingerprint hashes the config as it runs: a profile's value is part of it
    assert fingerprint("student", cfg, []) == fingerprint("student", quick, [])
    assert fingerprint("student", cfg, []) != fingerprint("student", replace(cfg, profile="full"), [])


@pytest.mark.parametrize("section, table, field", [
    ("data", {"test_size": 1.5}, "data.test_size"), ("data", {"source": ""}, "data.source"),
    ("teacher", {"strategy": "most"}, "teacher.strategy"), ("teacher", {"epochs": 0}, "teacher.epochs"),
    ("student", {"builder": "x"}, "student.builder"), ("distill", {"alpha": 2}, "distill.alpha"),
    ("export", {"opset": 3}, "export.opset"), ("quantize", {"budget": 200}, "quantize.budget"),
    ("quantize", {"preset": "z80"}, "quantize.preset"), ("report", {"latency_samples": 0}, "report.latency_samples"),
])
def test_config_errors_name_the_table_and_the_field(section, table, field, tmp_path):
    raw = {"name": "x", "data": {"source": "movie-snippets"}}
    raw[section] = {**raw.get(section, {}), **table}
    with pytest.raises(ConfigError) as e:
        recipe_from_dict(raw, build_root=tmp_path)
    assert e.value.field == field


def test_one_value_grammar_for_set_grid_and_cell(tmp_path):
    from edgedistill.compress.ablate import parse_cell, parse_grid
    from edgedistill.compress.recipe import parse_value

    for text, value in (("0.5", 0.5), ("3", 3), ("true", True), ("none", None), ("[0, 2]", [0, 2]),
                        ("[0;2]", [0, 2]), ("[0 2]", [0, 2]), ('"a b"', "a b"), ("my.csv", "my.csv")):
        assert parse_value(text) == value
        if "," not in text and " " not in text:
            assert parse_override(f"distill.x={text}")[2] == value
            assert parse_grid([f"distill.alpha={text},{text}"])["distill.alpha"] == [value, value]
            assert parse_cell(f"distill.alpha={text}")["distill.alpha"] == value
    for bad in (["alpha=0.5"], ["distill.alhpa=0.5"], ["teacher.epochs=1"]):  # ablations vary distill tables
        with pytest.raises(ConfigError, match="grid"):
            parse_grid(bad)


def test_with_values_applies_flags_through_the_recipe_layer(tmp_path):
    from edgedistill.compress.recipe import default_recipe

    base = recipe_from_dict({"name": "x", "data": {"source": "sms-spam"}, "distill": {"alpha": 0.7}},
                            build_root=tmp_path)
    r = base.with_values({"distill.temperature": 4.0, "distill.alpha": None, "student.builder": "drop-layers",
                          "student.layers": [0, 2]})
    cfg = r.distill(output_dir=str(tmp_path / "out"))
    assert (cfg.alpha, cfg.temperature, cfg.student.layers) == (0.7, 4.0, [0, 2])  # None: not given
    assert cfg.output_dir == str(tmp_path / "out") and cfg.teacher_dir == str(r.layout.teacher)
    assert r.overrides == ["distill.temperature=4.0", 'student.builder="drop-layers"', "student.layers=[0, 2]"]
    assert base.overrides == []
    with pytest.raises(ConfigError, match="distill.alpha"):
        base.with_values({"distill.alpha": 2.0})
    with pytest.raises(ConfigError, match="no field"):
        base.with_values({"distill.alhpa": 0.1})
    assert default_recipe(profile="full").teacher().profile == "full"


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
    # teacher: training (the tiny recipe sets retries = 0), test; student: the teacher's labels, training, test;
    # report: the package and the baseline's package on test
    assert [line.split()[0] for line in bars] == ["training", "evaluating", "labelling", "training",
                                                 "evaluating", "evaluating", "evaluating"], r.stderr
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
