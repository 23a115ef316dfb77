"""Ablation studies: run a grid of distillation configs (quick profile) and tabulate them.

``ablate(base, {"distill.alpha": [0, 0.5, 0.9], "student.layers": [3, 6]}, out)`` runs the 6 cells of the
cartesian product, each one :func:`edgedistill.compress.distill.distill` with the base config changed in those fields,
and writes ``out/ablation.md`` and ``out/ablation.json``: per cell its values, test macro-F1, accuracy,
parameters, size and time. Keys name a config table and a field, as ``--set`` does: ``distill.<field>``,
``student.<field>``, ``data.<field>``. Cells share the teacher-output cache, so the teacher runs at most once
per distinct transfer set and ``max_length``.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgedistill.compress import recipe
from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.distill.run import distill
from edgedistill.compress.errors import ConfigError, EdgeDistillError

log = logging.getLogger(__name__)

# the tables a DistillConfig holds: what a grid or a cell may vary
TABLES = ("distill", "student", "data")


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``--grid`` values (:func:`edgedistill.compress.recipe.parse_grid`) over the tables an ablation varies."""
    return recipe.parse_grid(specs, TABLES)


def parse_cell(spec: str) -> dict[str, Any]:
    """One ``--cell`` (:func:`edgedistill.compress.recipe.parse_cell`) over the tables an ablation varies."""
    return recipe.parse_cell(spec, TABLES)


def apply(base: DistillConfig, changes: dict[str, Any]) -> DistillConfig:
    """``base`` with the dotted-key ``changes`` applied (every table re-validated)."""
    by_table: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
    for key, value in changes.items():
        table, name = recipe.split_key(key, TABLES, what="grid")
        by_table[table][name] = value
    student = replace(base.student, **by_table["student"]) if by_table["student"] else base.student
    data = replace(base.data, **by_table["data"]) if by_table["data"] else base.data
    return replace(base, student=student, data=data, **by_table["distill"])


def cell_name(changes: dict[str, Any]) -> str:
    def short(v: Any) -> str:
        return "-".join(map(str, v)) if isinstance(v, list) else str(v)

    name = "_".join(f"{k.rpartition('.')[2]}={short(v)}" for k, v in changes.items()) or "base"
    return re.sub(r"[^A-Za-z0-9_.=-]", "", name)


def ablate(base: DistillConfig, grid: dict[str, list[Any]] | None, output_dir: Path | str, *,
           cells: list[dict[str, Any]] | None = None, references: bool = True) -> list[dict[str, Any]]:
    """Run every cell of ``grid`` (their cartesian product) and then each of ``cells`` (one lever or a few per
    row; ``{}`` is the base itself) on ``base`` with the quick profile; returns one row per cell and writes
    ``ablation.md`` / ``ablation.json`` into ``output_dir`` (after each cell, so a long grid shows progress).
    ``references`` adds the teacher's and the TF-IDF baseline's test macro-F1 (share of teacher, margin kept)."""
    grid = grid or {}
    if not grid and not cells:
        raise ConfigError("grid", grid, "name at least one KEY=V1,V2,... to vary, or a cell")
    for key, values in grid.items():
        recipe.split_key(key, TABLES, what="grid")
        if not values:
            raise ConfigError("grid", key, "has no values")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(grid)
    cells = ([dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))] if grid else []) \
        + list(cells or [])
    for c in cells:
        keys += [k for k in c if k not in keys]
    cells = [{k: c[k] for k in keys if k in c} for c in cells]
    # validate every cell before the first one runs
    cfgs = [replace(apply(base, c), profile="quick", output_dir=str(out / cell_name(c))) for c in cells]
    refs = reference_rows(base) if references else {}
    rows: list[dict[str, Any]] = []
    for i, (changes, cfg) in enumerate(zip(cells, cfgs), start=1):
        log.info("ablation cell %d/%d: %s", i, len(cells), changes)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"cell": cell_name(changes), **{k: changes.get(k, "·") for k in keys}}
        try:
            path = distill(cfg)
        except EdgeDistillError as e:  # one bad cell (say, layers > depth) must not lose the others
            log.error("cell %s failed: %s", row["cell"], e)
            row.update({"error": str(e), "seconds": round(time.perf_counter() - t0, 1)})
        else:
            info = json.loads((path / "distill.json").read_text())
            row.update({"validation_macro_f1": info["best_validation_macro_f1"],
                        "macro_f1": info["test"]["macro_f1"], "accuracy": info["test"]["accuracy"],
                        "params": info["params"], "size_mb": info["size_mb"], "layers": info["layers"],
                        "vocab": info["vocab"], "seconds": round(time.perf_counter() - t0, 1),
                        "output": str(path)})
        rows.append(row)
        write_table(rows, keys, out, base, refs)
    return rows


def reference_rows(base: DistillConfig) -> dict[str, float]:
    """Test macro-F1 of the teacher (its metrics.json) and of the TF-IDF baseline trained on the recipe's whole
    training split: the two ends the share of the teacher and the margin kept are measured between."""
    from edgedistill.compress.data import load_data
    from edgedistill.compress.evaluate import read_metrics
    from edgedistill.compress.report import baseline_row

    refs: dict[str, float] = {}
    teacher_metrics = Path(base.teacher_dir or "") / "metrics.json"
    if base.teacher_dir and teacher_metrics.is_file():
        refs["teacher"] = read_metrics(teacher_metrics).macro_f1
    refs["baseline"] = baseline_row(load_data(base.data))[0]["macro_f1"]
    return refs


def pick_winner(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cell with the best validation macro-F1 (ties: the cheaper one). Test scores are only reported."""
    ok = [r for r in rows if r.get("validation_macro_f1") is not None]
    return max(ok, key=lambda r: (r["validation_macro_f1"], -r.get("seconds", 0.0))) if ok else None


def write_table(rows: list[dict[str, Any]], keys: list[str], out: Path, base: DistillConfig,
                references: dict[str, float] | None = None) -> tuple[Path, Path]:
    from edgedistill.compress.baseline import margin_kept, share_of_teacher

    from edgedistill.runtime.bench import environment

    refs = references or {}
    teacher, baseline = refs.get("teacher"), refs.get("baseline")
    winner = pick_winner(rows)
    env = environment("cpu")
    jpath, mpath = out / "ablation.json", out / "ablation.md"
    jpath.write_text(json.dumps({"grid_keys": keys, "base": base.to_dict(), "references": refs,
                                 "winner": winner["cell"] if winner else None, "environment": env, "rows": rows},
                                indent=2, default=str) + "\n")
    cols = keys + ["validation macro-F1", "test macro-F1", "of teacher", "margin kept", "params", "size MB",
                   "minutes", "winner"]
    lines = ["# Distillation ablation", "",
             f"Teacher: `{base.teacher_dir}` (test macro-F1 {teacher if teacher is None else format(teacher, '.4f')}); "
             f"TF-IDF + LR baseline {baseline if baseline is None else format(baseline, '.4f')}; data: "
             f"`{base.data.source}`; student: `{base.student.builder}` `{base.student.model}`.",
             "The winner (✓) is chosen on validation macro-F1; the test columns are only reported. "
             "A `·` keeps the base recipe's value. Minutes: the cell's wall time (teacher outputs for new texts "
             f"included) on {env['cpu']}, {env['available_cpus']} CPUs (int8 instruction set "
             f"{env.get('isa') or 'unknown'}; {', '.join(env['cpu_flags'])}).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def f(v: Any, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    for r in rows:
        if "error" in r:
            lines.append("| " + " | ".join(str(r.get(k)) for k in keys) + f" | failed: {r['error']} |"
                         + " |" * (len(cols) - len(keys) - 1))
            continue
        cells = [*(str(r[k]) for k in keys), f(r.get("validation_macro_f1"), ".4f"), f(r["macro_f1"], ".4f"),
                 f(share_of_teacher(r["macro_f1"], teacher), ".1%"),
                 f(margin_kept(r["macro_f1"], teacher, baseline), ".0%"), f"{r['params'] / 1e6:.2f}M",
                 f"{r['size_mb']:.1f}", f"{r['seconds'] / 60:.1f}", "✓" if r is winner else ""]
        lines.append("| " + " | ".join(cells) + " |")
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


def load_base(path: Path | str, **owned: Any) -> DistillConfig:
    """The quick-profile DistillConfig of a recipe or of a config file with the same tables (TOML or JSON, no
    ``name`` needed), through the recipe layer. ``owned`` (``teacher_dir``, ``output_dir``; None: the
    recipe's build folder) replaces the paths the build layout would give."""
    path = Path(path)
    base = recipe.load_recipe(path, profile="quick", default_name=path.stem)
    return base.distill(**{k: v for k, v in owned.items() if v is not None})
