"""Recipes (edgedistill.compress.recipe): every shipped recipe loads and validates in every profile and restates no
default, the machine's preset when a recipe names none, errors that name the table and the field, profiles and
overrides merged in order, and one value grammar for --set, ablation grids and cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgedistill.compress.errors import ConfigError
from edgedistill.compress.pipeline import fingerprint
from edgedistill.compress.recipe import load_recipe, parse_override, recipe_from_dict, restated_defaults

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "models").glob("*.toml"))


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
