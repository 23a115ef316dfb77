"""``edgedistill build RECIPE``: recipe to shipped package, resumable."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import _state, app, command, console, err_console, table

log = logging.getLogger(__name__)


@app.command("build")
@command
def build_cmd(
    recipe: Annotated[Path, typer.Argument(help="A recipe file, e.g. models/movie-sentiment.toml.")],
    profile: Annotated[Optional[str], typer.Option(
        help="quick (the demo's fixed subset: minutes on a CPU) or full (all of the data, fixed settings); "
             "default: the recipe's, else a build planned from the data and this machine (--time-budget).")] = None,
    time_budget: Annotated[Optional[str], typer.Option(
        "--time-budget", help='Plan the build to fit this wall-clock time: "90s", "45m", "2h", "1h30m" '
                              "(default: the recipe's [plan] time_budget, else all of the data).")] = None,
    force: Annotated[Optional[list[str]], typer.Option(
        help="Redo this stage (and every later one) even if it is up to date; 'all' redoes everything.")] = None,
    until: Annotated[Optional[str], typer.Option(help="Stop after this stage.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a recipe field: TABLE.FIELD=VALUE (e.g. distill.alpha=0.9).")] = None,
) -> None:
    """Run teacher -> student -> export -> quantize -> package -> baseline -> ship -> report into
    models/<name>-planned/.

    The student's package, the ladder's rungs and the TF-IDF baseline's package compete: the most accurate on the
    validation split (within the [ladder] budget) ships as the build's package/.

    A build is planned from the data and this machine's measured throughput (what fits --time-budget; all of the
    data without one), and the plan printed with an estimated finish before anything trains; --profile quick or
    full builds with a fixed table instead. The console shows a header per stage, progress bars and the result; the
    full log (the libraries' messages and warnings too) goes to build.log in the build folder."""
    from edgedistill import __version__
    from edgedistill.compress import profiles
    from edgedistill.compress.cli._logs import log_to_file
    from edgedistill.compress.errors import ConfigError
    from edgedistill.compress.pipeline import NO_PREVIOUS_RUN, STAGE_NAMES, build
    from edgedistill.compress.plan import plan_build
    from edgedistill.compress.recipe import BUILD_PROFILE, load_recipe

    rec = load_recipe(recipe, profile=profile, overrides=list(set_ or []), default_profile=BUILD_PROFILE)
    if time_budget is not None:
        if rec.profile != profiles.PLANNED:
            raise ConfigError("--time-budget", time_budget, f"plans a build; the {rec.profile} profile is fixed "
                                                            f"(build with --profile {profiles.PLANNED})")
        rec = rec.with_values({"plan.time_budget": time_budget})
    console.print(f"[bold]{rec.name}[/] ({rec.profile} profile) -> {rec.build_dir}")
    started = time.perf_counter()
    clock: dict[str, float] = {}

    def on_stage(stage, status: str, why: str) -> None:
        n = STAGE_NAMES.index(stage.name) + 1
        if status == "skipped":
            console.print(f"[dim][{n}/{len(STAGE_NAMES)}] {stage.name}: up to date, skipped[/]")
        elif status == "running":
            clock[stage.name] = time.perf_counter()
            console.rule(f"[{n}/{len(STAGE_NAMES)}] {stage.name}: {stage.what}")
            if why != NO_PREVIOUS_RUN:
                console.print(f"[dim]{stage.name}: reruns because {why}[/]", highlight=False)
        else:
            console.print(f"[green]✓[/] {stage.name} in {time.perf_counter() - clock[stage.name]:.0f} s")

    try:
        with log_to_file(rec.layout.log, debug=_state["debug"], verbose=_state["verbose"]):
            log.info("edgedistill %s: build %s (%s profile%s) into %s", __version__, recipe, rec.profile,
                     "".join(f", --set {o}" for o in rec.overrides), rec.build_dir)
            rec, planned = plan_build(rec)
            if planned is not None:
                _print_plan(rec, planned, until, tuple(force or ()))
            ships = until is None or (until in STAGE_NAMES and STAGE_NAMES.index(until) >= STAGE_NAMES.index("ship"))
            if rec.ladder().rungs and ships:  # the rungs are built before the recipe's ship stage
                _ladder(rec, tuple(force or ()), on_stage, until)
            else:
                build(rec, force=tuple(force or ()), until=until, on_stage=on_stage)
            _summary(rec)
    except BaseException:
        err_console.print(f"[dim]full log: {rec.layout.log}[/]", highlight=False)
        raise
    if planned is not None:
        from edgedistill.compress.plan.build import actual_seconds, plan_rows

        console.print(table(f"{rec.name}: plan against the stages' actual times", ["stage", "planned", "estimated",
                                                                                   "actual"],
                            plan_rows(planned, actual_seconds(rec.build_dir))))
    console.print(f"package: {rec.layout.package}\nreport:  {rec.layout.report_md}\nlog:     {rec.layout.log}\n"
                  f"total {time.perf_counter() - started:.0f} s")


def _print_plan(rec, planned, until: str | None, force: tuple[str, ...] = ()) -> None:
    """The plan as a table, what it leaves out and when the build should finish, before anything trains."""
    from datetime import datetime, timedelta

    from edgedistill.compress.plan.build import plan_rows, remaining_seconds
    from edgedistill.compress.plan.shapes import format_duration

    shape = planned.shape
    kinds = (f"{shape['labels']} labels, multi-label (by each text's rarest label: the smallest, "
             if shape.get("labels") else f"{shape['classes']} classes (the smallest, ")
    console.print(f"data: {shape['train']:,} training texts in {kinds}"
                  f"{shape['smallest_class'][0]}, has {shape['smallest_class'][1]}; imbalance {shape['imbalance']}:1), "
                  f"{shape['validation']:,} validation, {shape['test']:,} test; tokens p50 {shape['tokens']['p50']}, "
                  f"p99 {shape['tokens']['p99']}, max {shape['tokens']['max']}", highlight=False)
    where = planned.speeds.get("machine") or {}
    if where.get("cores"):
        console.print(f"machine: {where.get('cpu')}, {where['cores']} cores"
                      + (f", {where['gpu']}" if where.get("gpu") else "")
                      + (f"; load average {where['load_average']} when planned, {measured} when the teacher's "
                         "throughput was measured (other jobs slow the build and the measurement alike)"
                         if (measured := planned.speeds["teacher"].get("load_average")) is not None else ""),
                      highlight=False)
    console.print(table(f"{rec.name}: plan ({rec.layout.plan})", ["stage", "planned", "estimated"],
                        [row[:3] for row in plan_rows(planned)]))
    for item in planned.left_out:
        console.print(f"[yellow]left out:[/] {item}", highlight=False)
    left = remaining_seconds(planned, rec.build_dir, until, force)
    finish = datetime.now() + timedelta(seconds=left)
    console.print(f"[bold]estimated finish {finish:%H:%M}[/] (about {format_duration(left)} from now"
                  + (f", up to the {until} stage" if until else "")
                  + ("; stages already built not counted" if left < planned.total_s and not until else "") + ")")


def _summary(rec) -> None:
    """What shipped and why (validation), the build report's test-split table and the headline."""
    from edgedistill.compress.ship import read_record

    ship = read_record(rec.layout.ship_record)
    if ship:
        console.print(table(f"{rec.name}: candidates (validation split)",
                            ["candidate", "variant", "val macro-F1", "val p50 ms", "size MB", "ships"],
                            [(c["name"], c["variant"], _f(c["validation_macro_f1"], ".4f"),
                              _f(c["validation_latency_ms"], ".2f"), _f(c["size_mb"], ".1f"),
                              "✓" if c["name"] == ship["chosen"] else (c.get("excluded") or ""))
                             for c in ship["candidates"]]))
        console.print(ship["why"], highlight=False)
    summary = rec.layout.report_json
    if summary.is_file():
        from edgedistill.compress.report import headline_text

        report = json.loads(summary.read_text())

        def pct(v, spec):
            return None if v is None else format(v, spec)

        console.print(table(f"{rec.name}: test split ({rec.profile} profile)",
                            ["model", "macro-F1", "of teacher", "margin kept", "size MB", "p50 ms (b=1)",
                             "× faster", "shipped"],
                            [(r["model"], r.get("macro_f1"), pct(r.get("share_of_teacher"), ".1%"),
                              pct(r.get("margin_kept"), ".0%"), r.get("size_mb"), r.get("latency_p50_ms"),
                              pct(r.get("speedup_vs_teacher"), ".1f"), "✓" if r.get("shipped") else "")
                             for r in report["rows"]]))
        console.print(f"[bold]Shipped {report['chosen']}:[/] {headline_text(report.get('headline') or {})}")


def _ladder(rec, force: tuple[str, ...], on_stage, until: str | None) -> Path:
    """Build the recipe with its ladder rungs (before its ship stage), print the table and say what the budget
    chose (its package, returned)."""
    from edgedistill.compress.ladder_build import build_ladder

    def on_rung(spec, folder) -> None:
        console.rule(f"[bold]ladder rung {spec}[/] -> {folder} (a student from the same teacher)")

    try:
        package, chosen = build_ladder(rec, on_stage=on_stage, force=force, on_rung=on_rung, until=until)
    finally:
        saved = rec.layout.ladder / "ladder.json"
        if saved.is_file():
            d = json.loads(saved.read_text())
            console.print(table(f"{rec.name}: student ladder ({rec.layout.ladder / 'ladder.md'})",
                                ["rung", "variant", "val macro-F1", "val p50 ms", "size MB", "test macro-F1",
                                 "texts/s b=32", "ships"],
                                [(r["name"], r["variant"], _f(r["validation_macro_f1"], ".4f"),
                                  _f(r["validation_latency_ms"], ".2f"), _f(r["size_mb"], ".1f"),
                                  _f(r["test_macro_f1"], ".4f"), _f(r["throughput_b32"], ",.0f"),
                                  "✓" if r["name"] == d["chosen"] else "") for r in d["rungs"]]))
    console.print(f"[bold]Ships {chosen.name}[/] ({chosen.variant}): {package}")
    return package


def _f(v, spec: str) -> str | None:
    return None if v is None else format(v, spec)
