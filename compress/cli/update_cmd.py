"""``edgedistill update BUILD --data NEW``: teach a shipped classifier new labelled data without forgetting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, stage_recipe, table


@app.command("update")
@command
def update_cmd(
    build: Annotated[Path, typer.Argument(help="A build folder (models/<name>/) or one of its updates/v<N>/.")],
    data: Annotated[Optional[str], typer.Option(
        help="The new labelled data: a built-in dataset or a CSV / JSONL / Parquet file with the recipe's columns.")]
    = None,
    method: Annotated[Optional[str], typer.Option(help="naive, lwf, rehearsal or lwf+rehearsal.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="A recipe (or a file of its tables) whose [update] table to "
                                                        "start from.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override an update field: update.FIELD=VALUE (e.g. update.forget_budget=0.5).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Where to write the new version; default "
                                                        "<build>/updates/v<N>/.")] = None,
) -> None:
    """Fine-tune the build's student on new data (naive, LwF, rehearsal or both), growing the head for new labels,
    then export, quantize and package it as a new version whose manifest names its parent. It ships only if the old
    tasks lose at most update.forget_budget macro-F1 points and the new data gains (validation); otherwise one line
    says why and the old package stays as it is."""
    from edgedistill.compress.recipe import parse_override
    from edgedistill.compress.update import update

    values = {"update.data": data, "update.method": method}
    for item in set_ or []:
        section, key, value = parse_override(item)
        values[f"{section}.{key}"] = value
    rec = stage_recipe(config, None).with_values(values)
    result = update(build, rec.update(), output=output)
    r = result.report
    console.print(table(f"update v{result.version}: {r['method']} on {r['new_data']}",
                        ["macro-F1", "old tasks before", "old tasks after", "new data before", "new data after"],
                        [[name, r[s]["before"]["old_task"], r[s]["after"]["old_task"], r[s]["before"]["new_task"],
                          r[s]["after"]["new_task"]] for name, s in (("validation", "validation"), ("test", "test"))]))
    console.print(f"{r['changed']['n']} of {r['changed']['of']} old test texts changed label\n"
                  f"shipped: {result.reason}\npackage: {result.package}\nreport:  {result.folder / 'update_report.md'}")
