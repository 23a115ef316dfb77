"""Ablation studies (edgedistill.compress.ablate): a grid of distillation cells run and tabulated, cells that vary
one lever each, the grid's and the cell's grammar, and base configs read from TOML or JSON."""

from __future__ import annotations

import json

import pytest

from edgedistill.compress.ablate import ablate, apply, load_base, parse_grid
from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.errors import ConfigError
from tests.helpers import tiny_distill_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_two_cell_ablation(tiny_csv, tiny_model_dir, student_init, tmp_path):
    base = tiny_distill_config(tiny_csv, tiny_model_dir, tmp_path / "unused", student_init, epochs=0.5)
    grid = parse_grid(["distill.alpha=0,0.7"])
    assert grid == {"distill.alpha": [0, 0.7]}
    rows = ablate(base, grid, tmp_path / "abl")
    assert [r["distill.alpha"] for r in rows] == [0, 0.7]
    assert all(0 <= r["macro_f1"] <= 1 and r["params"] > 0 and r["size_mb"] > 0 for r in rows)
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "\n| 0 | " in table and "\n| 0.7 | " in table
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert len(saved["rows"]) == 2 and {r["cell"] for r in saved["rows"]} == {"alpha=0", "alpha=0.7"}
    assert all(0 <= r["validation_macro_f1"] <= 1 for r in saved["rows"])
    # the winner has the best validation macro-F1 (a tie goes to the faster cell, so compare scores, not names)
    winner = next(r for r in saved["rows"] if r["cell"] == saved["winner"])
    assert winner["validation_macro_f1"] == max(r["validation_macro_f1"] for r in saved["rows"])
    assert 0 <= saved["references"]["baseline"] <= 1  # the TF-IDF baseline, trained on the same split


def test_ablation_cells_one_lever_per_row(tiny_csv, tiny_model_dir, student_init, tmp_path):
    from edgedistill.compress.ablate import parse_cell

    assert parse_cell("distill.alpha=0.9 distill.temperature=4") == {"distill.alpha": 0.9,
                                                                     "distill.temperature": 4}
    with pytest.raises(ConfigError, match="cell"):
        parse_cell("alpha")
    base = tiny_distill_config(tiny_csv, tiny_model_dir, tmp_path / "unused", student_init, epochs=0.3)
    rows = ablate(base, None, tmp_path / "abl", cells=[{}, {"distill.temperature": 4.0}], references=False)
    assert [r["cell"] for r in rows] == ["base", "temperature=4.0"]
    assert [r["distill.temperature"] for r in rows] == ["·", 4.0]


def test_grid_parsing_and_base_files(tmp_path, tiny_model_dir):
    assert parse_grid(["student.layers=3,6", "distill.temperature=1,2.5"]) == {
        "student.layers": [3, 6], "distill.temperature": [1, 2.5]}
    assert parse_grid(["student.layers=[0;5],[0;2;5]"]) == {"student.layers": [[0, 5], [0, 2, 5]]}
    with pytest.raises(ConfigError, match="grid"):
        parse_grid(["alpha"])
    base = DistillConfig(teacher_dir=str(tiny_model_dir))
    cell = apply(base, {"student.builder": "drop-layers", "student.layers": 3, "distill.alpha": 0.9})
    assert cell.student.layers == 3 and cell.alpha == 0.9 and base.alpha == 0.5
    with pytest.raises(ConfigError, match="no field"):
        apply(base, {"student.depth": 3})
    path = tmp_path / "base.toml"
    path.write_text('[data]\nsource = "movie-snippets"\n[student]\nbuilder = "drop-layers"\nlayers = 3\n'
                    '[distill]\nalpha = 0.7\ntransfer = ["snippets-unlabelled"]\n')
    cfg = load_base(path, teacher_dir=str(tiny_model_dir))
    assert (cfg.alpha, cfg.student.layers, cfg.transfer, cfg.teacher_dir) == (
        0.7, 3, ["snippets-unlabelled"], str(tiny_model_dir))
    jpath = tmp_path / "base.json"
    jpath.write_text(json.dumps({"distill": {"alpha": 0.2}, "student": {"trim_vocab": True}}))
    assert load_base(jpath, teacher_dir="t").student.trim_vocab is True
