"""``edgedistill ablate``: a grid of distillations from one recipe, in one table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, table


@app.command("ablate")
@command
def ablate_command(
    recipe: Annotated[Path, typer.Argument(help="A recipe, or a TOML / JSON file of its tables.")],
    grid: Annotated[Optional[list[str]], typer.Option(
        help="TABLE.FIELD=V1,V2,... with TABLE distill, student or data (repeatable; values as --set reads "
             "them): every combination runs.")] = None,
    cell: Annotated[Optional[list[str]], typer.Option(
        help="One row: 'TABLE.FIELD=VALUE ...' (repeatable; 'base' is the recipe as it is). Runs after the grid.")]
    = None,
    teacher: Annotated[Optional[Path], typer.Option(help="The teacher checkpoint (overrides the recipe's).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder of the cells and the table.")]
    = None,
) -> None:
    """Run distillations (quick profile) and write one table: validation and test macro-F1, share of the teacher,
    margin kept over the TF-IDF baseline, size, minutes. The winner is chosen on validation."""
    from edgedistill.compress.ablate import ablate, load_base, parse_cell, parse_grid, pick_winner

    base = load_base(recipe, teacher_dir=str(teacher) if teacher else None)
    grid_cells = parse_grid(grid or [])
    cells = [{} if c.strip() == "base" else parse_cell(c) for c in (cell or [])]
    out = output or Path(base.output_dir).parent / "ablation"
    n = 1 if grid_cells else 0
    for v in grid_cells.values():
        n *= len(v)
    console.print(f"ablation: {n + len(cells)} cells -> {out}")
    rows = ablate(base, grid_cells, out, cells=cells)
    winner = pick_winner(rows)
    console.print(table(f"Ablation (quick profile): {out / 'ablation.md'}",
                        ["cell", "validation macro-F1", "test macro-F1", "size MB", "seconds"],
                        [(r["cell"], r.get("validation_macro_f1"), r.get("macro_f1", r.get("error", "failed")),
                          r.get("size_mb"), r["seconds"]) for r in rows]))
    if winner:
        console.print(f"winner on validation: {winner['cell']}")
