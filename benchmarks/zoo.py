"""The model zoo: one table of finished builds, each row what its build report measured.

    python benchmarks/zoo.py models/movie-sentiment-full models/movie-sentiment
    # -> benchmarks/results/<device>/zoo.{md,json}

For every build folder (``models/<name>`` or ``models/<name>-full``) it reads ``report/report.json``, written by
the build's report stage, and lists the teacher, the TF-IDF baseline, the student (fp32) and the shipped package:
test macro-F1, the share of the teacher's, the margin kept over the baseline, size, batch-1 p50 on real test
texts and the speed-up over the teacher in torch (all timed interleaved in that report's run), with the command
that rebuilds the row. Nothing is measured here: a figure without a build report behind it cannot appear.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]

from benchmarks._paths import recorded_argv  # noqa: E402
from edgedistill.compress.layout import BuildLayout  # noqa: E402
from edgedistill.runtime.bench import device_name, environment  # noqa: E402

ROWS = ("teacher", "baseline TF-IDF + LR", "student", "package (shipped)")


def zoo_rows(build: Path, command: str | None = None) -> list[dict[str, Any]]:
    """The rows of one build: ``build`` is a build folder or a ``report.json`` (a committed copy). ``command``
    replaces the derived rebuild command (for reports written before they recorded their ``--set`` overrides)."""
    path = build if build.is_file() else BuildLayout(build).report_json
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no build report (run `edgedistill build` for this recipe first)")
    report = json.loads(path.read_text())
    if "headline" not in report:
        raise ValueError(f"{path}: written by an older edgedistill; run `edgedistill build ... --force report`")
    command = command or rebuild_command(report)
    profile = report["profile"]
    student = next((r for r in report["rows"] if r["model"] == "student"), {})
    out = []
    known = [next((r for r in report["rows"] if r["model"] == name), None) for name in ROWS]
    # a shipped row of another name (a shipped baseline, say) comes last
    for r in [r for r in known if r] + [r for r in report["rows"] if r.get("shipped") and r["model"] not in ROWS]:
        out.append({"recipe": report["name"], "profile": profile, "dataset": report["dataset"], "model": r["model"],
                    "format": r["format"], "macro_f1": r["macro_f1"], "share_of_teacher": r.get("share_of_teacher"),
                    "margin_kept": r.get("margin_kept"), "size_mb": r.get("size_mb"),
                    "latency_p50_ms": r.get("latency_p50_ms"), "speedup_vs_teacher": r.get("speedup_vs_teacher"),
                    "test_texts": r.get("n"), "command": command, "chosen": report["chosen"],
                    "student_params_m": student.get("params_m"),
                    "shipped": bool(r.get("shipped"))})
    return out


def rebuild_command(report: dict[str, Any]) -> str:
    """The command that rebuilds a report's build: ``make demo`` for a quick or full build of the recipe as it
    stands; else ``edgedistill build`` with the build's ``--set`` overrides, and a planned build's time budget."""
    name, profile, overrides = report["name"], report["profile"], report.get("overrides") or []
    if profile in ("quick", "full") and not overrides:
        return f"make demo RECIPE=models/{name}.toml" + ("" if profile == "quick" else f" PROFILE={profile}")
    parts = [f"edgedistill build models/{name}.toml"]
    if profile in ("quick", "full"):
        parts.append(f"--profile {profile}")
    if budget := (report.get("plan") or {}).get("budget_s"):  # a planned build: edgedistill build's default
        parts.append(f"--time-budget {budget / 60:.0f}m" if budget % 60 == 0 else f"--time-budget {budget:.0f}s")
        overrides = [o for o in overrides if not o.startswith("plan.time_budget=")]  # --time-budget recorded it
    return " ".join(parts + [f"--set {o}" for o in overrides])


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def to_markdown(rows: list[dict[str, Any]], env: dict[str, Any], generated_by: str = "") -> str:
    lines = ["# Model zoo", "",
             f"Each build's own report (`models/<build>/report/report.json`, or its committed copy), on {env['cpu']} "
             f"({env.get('available_cpus')} CPUs, int8 instruction set {env.get('isa') or 'unknown'}, flags "
             f"{', '.join(env.get('cpu_flags') or [])}). macro-F1 on "
             "the recipe's test split; margin kept = (model - baseline) / (teacher - baseline); latency: batch 1, "
             "p50 on real test texts, every model timed interleaved in the report's run (teacher in torch, student "
             "as its fp32 ONNX graph, the package through the runtime).", "",
             "| recipe | profile | student | model | format | macro-F1 | of teacher | margin kept | size MB | "
             "p50 ms | × faster than teacher |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"**{r['model']}**" if r.get("shipped", r["model"] == "package (shipped)") else r["model"]
        student = "–" if r.get("student_params_m") is None else f"{r['student_params_m']:.1f}M"
        lines.append(f"| {r['recipe']} | {r['profile']} | {student} | {name} | {r['format']} "
                     f"| {_fmt(r['macro_f1'], '.4f')} | "
                     f"{_fmt(r['share_of_teacher'], '.1%')} | {_fmt(r['margin_kept'], '.0%')} | "
                     f"{_fmt(r['size_mb'], '.1f')} | {_fmt(r['latency_p50_ms'], '.2f')} | "
                     f"{_fmt(r['speedup_vs_teacher'], '.1f')} |")
    lines += ["", "Rebuild a recipe's rows:", ""]
    if generated_by:
        lines[2:2] = [f"Written by `{generated_by}`.", ""]
    for cmd in dict.fromkeys(r["command"] for r in rows):
        lines.append(f"- `{cmd}`")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", type=Path,
                    help="build folders (models/<name> or models/<name>-full) or report.json files")
    ap.add_argument("--command", action="append", default=[], metavar="BUILD=COMMAND",
                    help="the rebuild command of one build, where its report predates recording --set overrides")
    ap.add_argument("--output", type=Path, default=HERE / "results", help="results root (default: %(default)s)")
    args = ap.parse_args(argv)
    commands = dict(c.split("=", 1) for c in args.command)
    rows = [row for b in args.builds for row in zoo_rows(b, commands.get(str(b)))]
    env = environment("cpu")
    folder = args.output / device_name(env)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zoo.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
    argv = ["python benchmarks/zoo.py", *(f'"{a}"' if " " in a else a for a in recorded_argv(sys.argv[1:]))] \
        if argv is None else ["python benchmarks/zoo.py", *recorded_argv(argv)]
    (folder / "zoo.md").write_text(to_markdown(rows, env, " ".join(argv)))
    print(f"{folder / 'zoo.md'}: {len(rows)} rows from {len(args.builds)} builds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
