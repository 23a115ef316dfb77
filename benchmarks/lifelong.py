"""Lifelong updates and domain adaptation, measured on real data (issue: updates without forgetting).

    python benchmarks/lifelong.py domain --build models/movie-sentiment --data tweet-snippets
    python benchmarks/lifelong.py class --recipe models/trec-questions.toml --new-class LOC
    python benchmarks/lifelong.py adapt --data tweets-sentiment --data sms-spam

- ``domain``: the build updated with new-domain data by each method (naive, lwf, rehearsal, lwf+rehearsal), each
  from the same parent into ``<build>/updates/<data>-<method>/``; the table gives old-task and new-task macro-F1
  before and after (test splits, reported; validation decided what ships) and the gate's verdict.
- ``class``: the recipe built on all classes but one (``data.labels``), then updated with the examples of that
  class alone.
- ``adapt``: the teacher fine-tuned at the quick profile with and without masked-LM adaptation on the dataset's own
  unlabelled texts (its training texts beyond the quick profile's labelled subset; validation and test left out).

Results: ``benchmarks/results/cpu-<machine>/lifelong-<what>.{json,md}``. Accuracy only: the machine may be busy.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks._paths import recorded_argv, recorded_paths  # noqa: E402
from edgedistill.compress.update import METHODS, REPORT_JSON  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / f"cpu-{platform.machine()}"
log = logging.getLogger("lifelong")


def _run_update(build: Path, data: str, method: str, output: Path, **values: Any) -> dict[str, Any]:
    from edgedistill.compress.errors import UpdateRefused
    from edgedistill.compress.update import UpdateConfig, update

    cfg = UpdateConfig(data=data, method=method, **values)
    try:
        result = update(build, cfg, output=output)
        folder = result.folder
    except UpdateRefused as e:
        log.warning("%s", e)
        folder = output.with_name(output.name + ".refused")
    return json.loads((folder / REPORT_JSON).read_text())


def _row(r: dict[str, Any]) -> dict[str, Any]:
    t, v = r["test"], r["validation"]
    return {"method": r["method"], "shipped": r["shipped"], "reason": r["reason"],
            "old_test_before": t["before"]["old_task"], "old_test_after": t["after"]["old_task"],
            "new_test_before": t["before"]["new_task"], "new_test_after": t["after"]["new_task"],
            "all_test_before": t["before"].get("all"), "all_test_after": t["after"].get("all"),
            "old_val_after": v["after"]["old_task"], "new_val_after": v["after"]["new_task"],
            "changed": r["changed"]["n"], "of": r["changed"]["of"], "seconds": r["seconds"],
            "steps": r["training"]["steps"], "replayed": r["training"]["replayed"]}


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| method | old task, before | old task, after | new data, before | new data, after | both, every label, "
             "before | after | old test texts changed | shipped |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        both = (f"{r['all_test_before']:.4f} | {r['all_test_after']:.4f}" if r.get("all_test_before") is not None
                else "– | –")
        lines.append(f"| {r['method']} | {r['old_test_before']:.4f} | {r['old_test_after']:.4f} | "
                     f"{r['new_test_before']:.4f} | {r['new_test_after']:.4f} | {both} | {r['changed']} of {r['of']} | "
                     f"{'yes' if r['shipped'] else 'no: ' + r['reason'].split(' (')[0]} |")
    return lines


def _write(name: str, payload: dict[str, Any], lines: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    # the paths in it (the build, the adapted encoder in the cache) relative to the repository or the cache
    (RESULTS / f"{name}.json").write_text(json.dumps(recorded_paths(payload), indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def domain(args) -> None:
    build = Path(args.build)
    rows = []
    for method in args.method or METHODS:
        out = build / "updates" / f"{args.data}-{method.replace('+', '-')}"
        rows.append(_row(_run_update(build, args.data, method, out, **dict(args.values))))
    cmd = (f"python benchmarks/lifelong.py domain --build {recorded_argv([args.build])[0]} --data {args.data}"
           + "".join(f" --set {k}={v}" for k, v in args.values))
    lines = [f"# Updating {build.name} with {args.data}", "",
             "Macro-F1 on the test splits (reported only; the update's own validation splits decided what ships). "
             "Old task: the build's own data; new data: the update's. Each method starts from the same parent.", "",
             *_table(rows), "", f"`{cmd}`"]
    _write(f"lifelong-domain-{args.data}", {"build": str(build), "data": args.data, "rows": rows, "command": cmd},
           lines)


def klass(args) -> None:
    from edgedistill.compress.data import load_data
    from edgedistill.compress.pipeline import build
    from edgedistill.compress.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    everything = load_data(recipe.data())
    kept = [lab for lab in everything.label_names if lab != args.new_class]
    # the student ships (an update fine-tunes it), whatever the TF-IDF baseline scores
    base = load_recipe(args.recipe, overrides=[f"data.labels={json.dumps(kept)}", "ship.baseline=false"])
    base = replace(base, build_dir=base.build_dir.with_name(base.build_dir.name + f"-without-{args.new_class}"))
    started = time.perf_counter()
    build(base, until="ship")
    build_seconds = time.perf_counter() - started
    new = {"source": recipe.data().source, "labels": [args.new_class]}
    rows = []
    for method in args.method or ["naive", "lwf+rehearsal"]:
        out = base.build_dir / "updates" / f"add-{args.new_class}-{method.replace('+', '-')}"
        rows.append(_row(_run_update(base.build_dir, new, method, out, **dict(args.values))))
    cmd = f"python benchmarks/lifelong.py class --recipe {recorded_argv([args.recipe])[0]} --new-class {args.new_class}"
    lines = [f"# Adding the class {args.new_class} to {recipe.name}", "",
             f"Built on {len(kept)} classes ({', '.join(kept)}) in {build_seconds:.0f} s, then updated with the "
             f"examples of {args.new_class} alone. Old task: the {len(kept)} classes; new data: {args.new_class} "
             "(its macro-F1 is its F1; before the update the model cannot predict it). Test splits.", "",
             *_table(rows), "", f"`{cmd}`"]
    _write(f"lifelong-class-{recipe.name}", {"kept": kept, "new_class": args.new_class, "rows": rows,
                                             "build_seconds": build_seconds, "command": cmd}, lines)


def adapt(args) -> None:
    """Each dataset's teacher fine-tuned without adaptation and after each objective; rows merge into the result file
    as they finish (keyed by dataset and adaptation), so one dataset or objective can be run, or re-run, alone."""
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.teacher import TeacherConfig, finetune_teacher

    path = RESULTS / "lifelong-adapt.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    for source in args.data:
        for objective in (None, *args.objective):
            lr = f"-lr{args.learning_rate:g}" if objective and args.learning_rate else ""
            name = f"{source}-{objective or 'plain'}{lr}"
            out = Path(args.work) / name
            extra = {"adapt_texts": [source], "adapt_steps": args.steps, "adapt_objective": objective,
                     **({"adapt_learning_rate": args.learning_rate} if args.learning_rate else {})} if objective else {}
            cfg = TeacherConfig(data=DataConfig(source=source), profile="quick", output_dir=str(out), **extra)
            key = _adaptation_label(cfg)
            done = out / "training.json"
            started = time.perf_counter()
            wanted = json.loads(json.dumps(cfg.resolved().to_dict(), default=str))
            if done.is_file() and json.loads(done.read_text())["config"] == wanted and (out / "metrics.json").is_file():
                log.info("%s: fine-tuned with these settings already, reusing it", out)
            else:
                finetune_teacher(cfg)
            metrics = json.loads((out / "metrics.json").read_text())
            record = json.loads(done.read_text())
            row = {"data": source, "adaptation": key, "adapted": bool(objective), "macro_f1": metrics["macro_f1"],
                   "accuracy": metrics["accuracy"], "validation": record.get("best_validation_macro_f1"),
                   "seconds": round(record.get("wall_time_s") or time.perf_counter() - started),
                   "adapt_record": record.get("adaptation"),
                   "command": _command()}
            rows = [r for r in rows if (r["data"], r.get("adaptation")) != (source, key)] + [row]
            _write_adapt(rows)


def _command() -> str:
    """This run's command, less ``--work`` (where the models went is not how the figures were made)."""
    argv, keep = sys.argv[1:], []
    while argv:
        a = argv.pop(0)
        if a == "--work":
            argv.pop(0)
        elif not a.startswith("--work="):
            keep.append(a)
    return "python benchmarks/lifelong.py " + " ".join(recorded_argv(keep))


def _adaptation_label(cfg) -> str:
    if not cfg.adapt_texts:
        return "none"
    s = cfg.adapt_settings()
    from edgedistill.compress.adapt import AdaptSettings

    head = f", fresh head alone first for {s.head_steps} steps" if s.objective == "mlm" else ""
    lr = "" if s.learning_rate == AdaptSettings.learning_rate else f", learning rate {s.learning_rate:g}"
    return f"{s.objective}, {s.steps} steps of {s.batch_size}{lr}{head}"


def _write_adapt(rows: list[dict[str, Any]]) -> None:
    cmds = sorted({r["command"] for r in rows})
    lines = ["# The teacher with and without adaptation on unlabelled in-domain text (quick profile)", "",
             "MPNet-base; adaptation on the dataset's own texts (validation and test left out; the quick profile "
             "labels 1,600 of them), then the same fine-tuning. Test split; the gain is against the same dataset's "
             "row without adaptation. The loss is the adaptation's, its first and last tenth of the steps (MLM: "
             "after the head's own steps). Seconds: adaptation, fine-tuning and evaluation together, beside other "
             "jobs at times.", "",
             "| data | adaptation | test macro-F1 | validation macro-F1 | gain (points) | adaptation loss | "
             "adaptation s | seconds |", "|---|---|---|---|---|---|---|---|"]
    plain = {r["data"]: r["macro_f1"] for r in rows if not r["adapted"]}
    for r in sorted(rows, key=lambda r: (r["data"], r["adapted"], r["adaptation"])):
        gain = 100 * (r["macro_f1"] - plain[r["data"]]) if r["adapted"] and r["data"] in plain else None
        a = r.get("adapt_record") or {}
        loss = f"{a['losses'][0]:.4f} -> {a['losses'][-1]:.4f}" if a.get("losses") else ""
        lines.append(f"| {r['data']} | {r['adaptation']} | {r['macro_f1']:.4f} | {r['validation']:.4f} | "
                     f"{'' if gain is None else f'{gain:+.2f}'} | {loss} | {a.get('seconds', '')} | {r['seconds']} |")
    lines += ["", *(f"`{c}`" for c in cmds)]
    _write("lifelong-adapt", {"rows": rows}, lines)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)

    def values(item: str) -> tuple[str, Any]:
        from edgedistill.compress.recipe import parse_value

        key, _, value = item.partition("=")
        return key.removeprefix("update."), parse_value(value)

    d = sub.add_parser("domain")
    d.add_argument("--build", required=True)
    d.add_argument("--data", required=True)
    d.add_argument("--method", action="append", choices=METHODS)
    d.add_argument("--set", dest="values", action="append", type=values, default=[])
    c = sub.add_parser("class")
    c.add_argument("--recipe", required=True)
    c.add_argument("--new-class", required=True)
    c.add_argument("--method", action="append", choices=METHODS)
    c.add_argument("--set", dest="values", action="append", type=values, default=[])
    a = sub.add_parser("adapt")
    a.add_argument("--data", action="append", required=True)
    a.add_argument("--steps", type=int, default=200)
    a.add_argument("--objective", action="append", choices=["mlm", "contrastive"], required=True)
    a.add_argument("--learning-rate", type=float, default=None, help="the adaptation's (default: the teacher's)")
    a.add_argument("--work", default=str(REPO / "models" / "adapt-ablation"))
    args = p.parse_args()
    {"domain": domain, "class": klass, "adapt": adapt}[args.what](args)


if __name__ == "__main__":
    main()
