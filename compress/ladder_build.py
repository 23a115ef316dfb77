"""Building a recipe with its student ladder: the recipe's own stages, one build per rung, then the recipe's ship
stage choosing among them, and the ladder table.

Apart from :mod:`edgedistill.compress.ladder` (the ``[ladder]`` table, the candidates' figures, the budget and the
table), which the recipe and the ship stage read and which so imports no stage: this module runs the pipeline.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from edgedistill.compress.ladder import BudgetError, Rung, read_rung, rung_name, write_table
from edgedistill.compress.layout import read_state
from edgedistill.compress.recipe import rung_recipe

log = logging.getLogger(__name__)


def build_ladder(recipe, *, on_stage: Callable | None = None, force: tuple[str, ...] = (),
                 on_rung: Callable[[str, Path], None] | None = None, until: str | None = None) -> tuple[Path, Rung]:
    """Build ``recipe`` with its ladder: the recipe's own stages up to its baseline (the teacher trains there), every
    rung from that teacher (each a full build of its own student, borrowing the teacher and the baseline), then the
    recipe's ship stage, which chooses among its student, the rungs and the baseline, and its report; write the
    ladder table. Returns ``<build>/package/`` and the candidate that ships; raises :class:`BudgetError` (after
    writing the table) when nothing fits. ``until``: the last stage of the recipe's own build (ship or report)."""
    from edgedistill.compress.baseline_package import NAME as BASELINE_ROW
    from edgedistill.compress.data import load_data
    from edgedistill.compress.pipeline import STAGE_NAMES, build
    from edgedistill.compress.ship import BASELINE, STUDENT, read_record

    cfg = recipe.ladder()
    build(recipe, force=force, on_stage=on_stage, until="baseline")
    runs = read_state(recipe.build_dir)["stages"]
    borrowed = {"teacher": runs["teacher"]["run_id"], "baseline": runs["baseline"]["run_id"]}
    texts = list(load_data(recipe.data()).test.texts)[:512]
    for spec in cfg.rungs:
        rung = rung_recipe(recipe, spec)
        log.info("ladder rung %s -> %s", spec, rung.build_dir)
        if on_rung:
            on_rung(spec, rung.build_dir)
        build(rung, force=force, on_stage=on_stage, after=borrowed)
    later = STAGE_NAMES.index("ship")  # the stages forced above are done; what is forced after them still is
    again = tuple("ship" if f == "all" else f for f in force if f == "all" or STAGE_NAMES.index(f) >= later)
    failed: BudgetError | None = None
    try:
        build(recipe, force=again, on_stage=on_stage, until=until)
    except BudgetError as e:
        failed = e
    shipped = read_record(recipe.layout.ship_record) or {}
    report = json.loads(recipe.layout.report_json.read_text()) if recipe.layout.report_json.is_file() else {}
    rows = {r["model"]: r for r in report.get("rows", [])}
    teacher, base = rows.get("teacher", {}), rows.get(BASELINE_ROW, {})
    refs = {"teacher": teacher.get("macro_f1"), "baseline": base.get("macro_f1"),
            "teacher_latency_ms": teacher.get("latency_p50_ms"), "baseline_latency_ms": base.get("latency_p50_ms")}
    rungs = [read_rung(f"recipe ({recipe.student().builder})", "recipe", recipe.build_dir, texts=texts)]
    rungs += [read_rung(rung_name(spec), spec, rung_recipe(recipe, spec).build_dir, texts=texts) for spec in cfg.rungs]
    baseline = next((c for c in shipped.get("candidates", []) if c["name"] == BASELINE), None)
    baseline_rung = Rung(**{**{k: v for k, v in baseline.items() if k != "excluded"},
                            "test_macro_f1": base.get("macro_f1"), "test_latency_ms": base.get("latency_p50_ms")}) \
        if baseline else None
    named = {STUDENT: rungs[0], BASELINE: baseline_rung, **{r.name: r for r in rungs[1:]}}
    chosen = named.get(shipped.get("chosen") or "")
    write_table(recipe.layout.ladder, rungs, refs, cfg.budget, chosen, shipped.get("why") or "Nothing ships.",
                baseline=baseline_rung)
    if failed is not None:
        raise failed
    assert chosen is not None
    return recipe.layout.package, chosen
