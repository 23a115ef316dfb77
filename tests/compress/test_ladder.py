"""The student ladder: rung specs, the budget's choice, and a tiny ladder built end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgedistill.compress.errors import ConfigError
from edgedistill.compress.ladder import BudgetError, LadderConfig, Rung, frontier, pick, rung_name, rung_overrides
from edgedistill.compress.recipe import recipe_from_dict, rung_recipe


def _rung(name: str, f1: float, ms: float, mb: float) -> Rung:
    return Rung(name=name, spec=name, build_dir="", variant="int8-dynamic", validation_macro_f1=f1,
                validation_latency_ms=ms, size_mb=mb, params_m=None, test_macro_f1=None, test_latency_ms=None)


TABLE = [_rung("minilm-l6", 0.86, 6.0, 25.0), _rung("drop-layers-3", 0.84, 3.1, 20.0),
         _rung("static", 0.81, 0.3, 8.0)]


def test_the_budget_picks_the_most_accurate_rung_that_fits():
    assert pick(TABLE, {}).name == "minilm-l6"  # no budget: the most accurate
    assert pick(TABLE, {"max_latency_ms": 4.0}).name == "drop-layers-3"
    assert pick(TABLE, {"max_latency_ms": 4.0, "max_size_mb": 10}).name == "static"
    assert pick(TABLE, {"min_macro_f1": 0.85}).name == "minilm-l6"


def test_no_rung_fits_names_the_closest_and_what_it_misses():
    with pytest.raises(BudgetError, match=r"closest is static \(max latency ms 0.2 missed by 0.1\)"):
        pick(TABLE, {"max_latency_ms": 0.2})
    with pytest.raises(BudgetError, match=r"closest is drop-layers-3 .*min macro f1 0.9"):
        pick(TABLE, {"min_macro_f1": 0.9, "max_latency_ms": 3.05})


def test_frontier_keeps_the_points_nothing_beats():
    pts = [(0.3, 0.81), (1.2, 0.79), (3.1, 0.84), (6.0, 0.86), (50.0, 0.85)]
    assert frontier(pts) == [(0.3, 0.81), (3.1, 0.84), (6.0, 0.86)]


def test_rung_specs_and_their_recipes(tmp_path):
    assert rung_overrides("drop-layers:3") == {"student.builder": "drop-layers", "student.layers": 3}
    assert rung_overrides("static")["student.builder"] == "static"
    assert rung_overrides("minilm-l6") == {"student.builder": "pretrained", "student.model": "minilm-l6",
                                           "student.layers": None}
    for bad in ("drop-layers", "drop-layers:x", "static:2", "pretrained"):
        with pytest.raises(ConfigError, match="ladder.rungs"):
            rung_overrides(bad)
    with pytest.raises(ConfigError, match="ladder.rungs"):
        LadderConfig(rungs=["static", "static"])
    with pytest.raises(ConfigError, match="ladder.max_latency_ms"):
        LadderConfig(max_latency_ms=0)
    raw = {"name": "x", "data": {"source": "sms-spam"}, "student": {"builder": "teacher-layers"},
           "distill": {"hidden_loss_weight": 1.0, "epochs": 2}, "ladder": {"rungs": ["static", "drop-layers:3"]}}
    recipe = recipe_from_dict(raw, build_root=tmp_path, overrides=["distill.epochs=4"])
    static = rung_recipe(recipe, "static")
    assert static.build_dir == tmp_path / "x" / "ladder" / "static"
    assert static.layout.teacher == recipe.layout.teacher  # one teacher for every rung
    cfg = static.distill()
    assert cfg.student.builder == "static" and cfg.hidden_loss_weight == 0  # no layers to match
    assert cfg.epochs == 4  # --set wins over the rung's default
    assert rung_recipe(recipe, "drop-layers:3").distill().student.layers == 3


def test_a_view_rung_is_the_recipes_student_reading_long_texts_another_way(tmp_path):
    assert rung_overrides("view:chunks") == {"data.long_texts": "chunks"}
    assert rung_name("view:head+tail") == "view-head-tail"
    with pytest.raises(ConfigError, match="view:MODE"):
        rung_overrides("view:middle")
    raw = {"name": "x", "data": {"source": "bbc-news"}, "student": {"builder": "pretrained", "model": "minilm-l6"},
           "ladder": {"rungs": ["view:chunks"]}}
    recipe = recipe_from_dict(raw, build_root=tmp_path)
    rung = rung_recipe(recipe, "view:chunks")
    assert rung.distill().data.long_texts == "chunks" and rung.distill().student == recipe.distill().student
    assert recipe.distill().data.long_texts == "truncate"  # the recipe's own student still truncates
    assert rung.layout.teacher == recipe.layout.teacher  # the teacher (and how it reads) is borrowed
    assert "view-chunks" in recipe.ship().candidates


def test_a_tiny_ladder_builds_every_rung_from_one_teacher(tmp_path, tiny_csv, tiny_model_dir):
    from edgedistill.compress.ladder_build import build_ladder
    from edgedistill.compress.layout import read_state
    from edgedistill.compress.recipe import load_recipe
    from edgedistill.runtime import TextClassifier

    from tests.helpers import tiny_recipe

    path = tiny_recipe(tmp_path, tiny_csv, tiny_model_dir)
    path.write_text(path.read_text() + '[ladder]\nrungs = ["static", "view:chunks"]\nmax_size_mb = 1000\n'
                    "[profiles.quick.report]\nlatency_samples = 2\n")
    recipe = load_recipe(path, overrides=["distill.learning_rate=0.01"])
    package, chosen = build_ladder(recipe)
    ladder = json.loads((recipe.layout.ladder / "ladder.json").read_text())
    assert [r["name"] for r in ladder["rungs"]] == ["recipe (drop-layers)", "static", "view-chunks"]
    assert ladder["chosen"] == chosen.name and (recipe.layout.ladder / "ladder.png").is_file()
    assert all(r["throughput_b32"] > 0 and r["validation_macro_f1"] is not None for r in ladder["rungs"])
    # every rung is scored against the one teacher and the baseline, like the recipe's own student; the share of
    # the teacher is withheld for every rung alike when the tiny teacher failed its check
    from edgedistill.compress.report import teacher_check

    failed = teacher_check(recipe.layout.teacher) is not None
    assert all((r["share_of_teacher"] is None) == failed and r["speedup_vs_teacher"] for r in ladder["rungs"])
    assert ladder["references"]["teacher"] is not None and ladder["references"]["baseline"] is not None
    static_dir = recipe.layout.ladder / "static"
    assert "teacher" not in read_state(static_dir)["stages"]  # borrowed, never rebuilt
    assert not (static_dir / "teacher").exists()
    for folder in (package, static_dir / "package", recipe.layout.ladder / "view-chunks" / "package"):
        assert TextClassifier.load(folder).predict(["a fine film"])[0]["label"] in ("negative", "positive")
    # the view rung: the recipe's student distilled again, reading long texts in chunks, and packaged so
    chunks = json.loads((recipe.layout.ladder / "view-chunks" / "package" / "config.json").read_text())
    assert chunks["long_texts"] == "chunks" and "long_texts" not in json.loads(
        (recipe.layout.student_package / "config.json").read_text())
    # a budget nothing meets: one clear error, and the table is still written
    recipe = load_recipe(path, overrides=["distill.learning_rate=0.01", "ladder.max_size_mb=0.001"])
    with pytest.raises(BudgetError, match="closest is"):
        build_ladder(recipe)
    assert json.loads((recipe.layout.ladder / "ladder.json").read_text())["chosen"] is None
    assert Path(package).is_dir()
