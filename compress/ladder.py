"""The student ladder: several students distilled from one teacher, one table, and a budget that picks what ships.

A recipe's ``[ladder]`` table names rungs beside the recipe's own student::

    [ladder]
    rungs = ["drop-layers:3", "static"]     # the recipe's own student is always the first rung
    max_latency_ms = 2.0                    # the budget, on validation texts (any of the three, or none)
    min_macro_f1 = 0.85
    max_size_mb = 30

A rung is a student spec: ``static`` (:mod:`edgedistill.compress.static`), ``drop-layers:N`` (N layers of the recipe's
student model), ``teacher-layers:N`` (N of the teacher's own layers), a model name (``minilm-l6``, pretrained), or
``view:MODE``: the recipe's own student reading a long text another way (``[data] long_texts``: ``truncate``,
``head+tail``, ``chunks``; the planner adds these where the data's texts are long, so that the mode is chosen on
validation like any candidate).
Each rung builds into ``<build>/ladder/<rung>/`` through the same stages as the recipe's own student (distil,
export, quantize behind the gate, package, report), from the recipe's teacher and its cached outputs
(:func:`edgedistill.compress.ladder_build.build_ladder`; a rung's recipe is
:func:`edgedistill.compress.recipe.rung_recipe`). This module runs no stage: the recipe and the ship stage read it.

The budget reads only validation figures: each rung's shipped variant's validation macro-F1, its batch-1 p50
latency on validation texts (both from its quantize report) and its package size. The rungs are candidates of the
recipe's ship stage (:mod:`edgedistill.compress.ship`) beside its own student and the TF-IDF baseline: the most
accurate candidate within the budget (:func:`pick`) is copied to ``<build>/package/``; when none fits,
:class:`BudgetError` names the closest and what it misses, after the table is written. Test-split figures are only
reported.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.compress.errors import ConfigError, EdgeDistillError
from edgedistill.runtime.views import LONG_TEXTS

log = logging.getLogger(__name__)

# Rung defaults that differ from a transformer student's: an epoch of the static student costs seconds, so it
# gets 10 (validation early-stops it after 3 to 8); 5e-4 led 2e-3 and 1e-2 on validation
# (benchmarks/results/cpu-x86_64/static-student.md).
RUNG_DEFAULTS: dict[str, dict[str, Any]] = {
    "static": {"distill.learning_rate": 5e-4, "distill.epochs": 10},
}
BUDGET_FIELDS = ("max_latency_ms", "min_macro_f1", "max_size_mb")
VIEW = "view:"
"""A rung spec's prefix for the recipe's own student reading long texts another way: ``view:chunks``."""


class BudgetError(EdgeDistillError):
    """No rung of the ladder meets the budget."""


@dataclass
class LadderConfig:
    """The recipe's ``[ladder]`` table: more students from the same teacher, and the budget that picks what ships."""

    rungs: list[str] = field(default_factory=list)
    """Students built beside the recipe's own, one spec each: ``static``, ``drop-layers:N`` (N layers of the
    recipe's student model), ``teacher-layers:N`` (N of the teacher's own layers), a model name (``minilm-l6``,
    pretrained) or ``view:MODE`` (the recipe's student reading long texts in ``[data] long_texts`` MODE)."""
    max_latency_ms: float | None = None
    """Budget: batch-1 p50 latency of the shipped variant on validation texts, in milliseconds."""
    min_macro_f1: float | None = None
    """Budget: validation macro-F1 of the shipped variant."""
    max_size_mb: float | None = None
    """Budget: size of the model package on disk, in MB."""

    def __post_init__(self) -> None:
        self.rungs = list(self.rungs)
        for spec in self.rungs:
            rung_overrides(spec)  # raises on a bad spec
        if len({rung_name(s) for s in self.rungs}) != len(self.rungs):
            raise ConfigError("ladder.rungs", self.rungs, "names a rung twice")
        for name in BUDGET_FIELDS:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"ladder.{name}", v, "must be a number > 0 (or unset)")

    @property
    def budget(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in BUDGET_FIELDS if getattr(self, k) is not None}


def rung_name(spec: str) -> str:
    """The rung's folder name: ``drop-layers:3`` -> ``drop-layers-3``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", spec.strip())


def rung_overrides(spec: str) -> dict[str, Any]:
    """The ``TABLE.FIELD`` values a rung spec sets on the recipe (then :data:`RUNG_DEFAULTS` under them)."""
    kind, _, arg = spec.strip().partition(":")
    if f"{kind}:" == VIEW:  # the recipe's own student, reading long texts another way
        if arg not in LONG_TEXTS:
            raise ConfigError("ladder.rungs", spec, f"write view:MODE with MODE one of {', '.join(LONG_TEXTS)}")
        return {"data.long_texts": arg}
    if kind == "static" and not arg:
        values: dict[str, Any] = {"student.builder": "static", "student.layers": None}
    elif kind in ("drop-layers", "teacher-layers"):
        if not arg.isdigit() or int(arg) < 1:
            raise ConfigError("ladder.rungs", spec, f"write {kind}:N with N a layer count >= 1")
        values = {"student.builder": kind, "student.layers": int(arg)}
    elif kind and not arg and kind not in ("static", "pretrained"):
        values = {"student.builder": "pretrained", "student.model": kind, "student.layers": None}
    else:
        raise ConfigError("ladder.rungs", spec, "write static, drop-layers:N, teacher-layers:N, view:MODE or a model "
                          "name")
    return {**RUNG_DEFAULTS.get(kind, {}), **values}


# ------------------------------------------------------------------------------- measuring a rung
@dataclass
class Rung:
    """One candidate's figures (a rung of the ladder, the recipe's own student, or the baseline): validation (what
    the budget and :func:`pick` read) and test (only reported)."""

    name: str
    spec: str
    build_dir: str
    variant: str
    validation_macro_f1: float | None
    validation_latency_ms: float | None
    size_mb: float
    params_m: float | None
    test_macro_f1: float | None
    test_latency_ms: float | None
    throughput_b32: float | None = None
    share_of_teacher: float | None = None
    margin_kept: float | None = None
    speedup_vs_teacher: float | None = None
    package: str | None = None
    """The candidate's package folder (None: ``<build_dir>/package``)."""
    kind: str = "tokens"
    """What its graph takes (``edgedistill.runtime.package.KIND_TOKENS`` or ``KIND_STRINGS``)."""
    reads: str | None = None
    """How it reads a text over its token limit (``truncate``, ``head+tail``, ``chunks``; ``whole text`` for the
    baseline); None: not recorded."""

    def misses(self, budget: dict[str, float]) -> dict[str, float]:
        """Each budget line this rung misses, with by how much (in the line's unit)."""
        out = {}
        if "max_latency_ms" in budget and (self.validation_latency_ms or float("inf")) > budget["max_latency_ms"]:
            out["max_latency_ms"] = (self.validation_latency_ms or float("inf")) - budget["max_latency_ms"]
        if "min_macro_f1" in budget and (self.validation_macro_f1 or 0.0) < budget["min_macro_f1"]:
            out["min_macro_f1"] = budget["min_macro_f1"] - (self.validation_macro_f1 or 0.0)
        if "max_size_mb" in budget and self.size_mb > budget["max_size_mb"]:
            out["max_size_mb"] = self.size_mb - budget["max_size_mb"]
        return out


def package_mb(folder: Path) -> float:
    """A package's size on disk in MB, as the budget's ``max_size_mb`` counts it."""
    return round(sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6, 2)


def package_candidate(name: str, spec: str, folder: Path) -> Rung:
    """A candidate read from its package alone: the validation figures the stage that wrote it measured through the
    runtime (the quantize gate's for a student, the baseline stage's for the baseline; in the manifest's
    ``metrics``) and its size on disk."""
    from edgedistill.runtime.package import CONFIG_FILE, KIND_STRINGS, read_config, verify_package

    metrics = verify_package(folder).get("metrics") or {}
    config = read_config(Path(folder) / CONFIG_FILE)
    validation = metrics.get("split") == "validation"
    variant = config.model_type if config.kind == KIND_STRINGS else config.variant  # the baseline: what model
    return Rung(name=name, spec=spec, build_dir=str(Path(folder).parent), variant=variant or "fp32",
                validation_macro_f1=metrics.get("macro_f1") if validation else None,
                validation_latency_ms=metrics.get("latency_p50_ms") if validation else None,
                size_mb=package_mb(folder), params_m=None, test_macro_f1=None, test_latency_ms=None,
                package=str(folder), kind=config.kind,
                reads="whole text" if config.kind == KIND_STRINGS else config.long_texts)


def read_rung(name: str, spec: str, build_dir: Path, *, texts: list[str] | None = None) -> Rung:
    """A rung's figures from its build folder (quantize report, package, build report); ``texts`` (test texts)
    time the package at batch 32 through the runtime."""
    from edgedistill.compress.layout import BuildLayout
    from edgedistill.compress.quantize.report import QuantizeReport

    layout = BuildLayout(build_dir)
    q = QuantizeReport.load(layout.onnx)
    chosen = q.attempt(q.chosen)
    report = json.loads(layout.report_json.read_text())
    # the student's package: the report's shipped row, or its own row when another candidate shipped
    row = next((r for r in report["rows"] if r["model"] == "student package"), None) or \
        next((r for r in report["rows"] if r.get("shipped")), {})
    package = layout.student_package if layout.student_package.is_dir() else layout.package  # older builds: one
    return Rung(name=name, spec=spec, build_dir=str(build_dir), variant=q.chosen,
                validation_macro_f1=chosen.macro_f1, validation_latency_ms=chosen.latency_p50_ms,
                size_mb=package_mb(package), params_m=row.get("params_m"),
                test_macro_f1=row.get("macro_f1"),
                test_latency_ms=row.get("latency_p50_ms"),
                throughput_b32=_package_throughput(package, texts) if texts else None,
                share_of_teacher=row.get("share_of_teacher"), margin_kept=row.get("margin_kept"),
                speedup_vs_teacher=row.get("speedup_vs_teacher"), package=str(package))


def throughput(predict: Callable[[list[str]], Any], texts: list[str], batch: int = 32, seconds: float = 3.0,
               self_timed: bool = False) -> float:
    """Texts per second of ``predict`` at ``batch`` over ``texts`` (tokenising included, for the runtime): the
    best of the full passes timed in about ``seconds``, after one untimed pass. ``self_timed``: ``predict``
    returns the seconds its call took, timed where it ran (a peer in another process, whose round trip is not
    its work), and a pass takes the sum of those instead of the clock around it."""
    from edgedistill.runtime.timing import time_calls

    summed: list[float] = []

    def one_pass() -> None:
        took = [predict(texts[i:i + batch]) for i in range(0, len(texts), batch)]
        if self_timed:
            summed.append(sum(took))

    clocked = time_calls(one_pass, 0.0, seconds, 1, 10**6)
    return round(len(texts) / min(summed[1:] if self_timed else clocked), 1)  # summed[0]: the untimed pass


def _package_throughput(package: Path, texts: list[str]) -> float:
    from edgedistill.runtime import TextClassifier

    return throughput(TextClassifier.load(package).predict_proba, texts)


def pick(rungs: list[Rung], budget: dict[str, float]) -> Rung:
    """The most accurate candidate on validation within ``budget`` (ties: the faster): ladder rungs, the recipe's
    student and the baseline alike (:mod:`edgedistill.compress.ship`). :class:`BudgetError` naming the closest
    candidate and the lines it misses when none fits. No budget: the most accurate."""
    fits = [r for r in rungs if not r.misses(budget)]
    if fits:
        return max(fits, key=lambda r: (r.validation_macro_f1 or 0.0, -(r.validation_latency_ms or 0.0)))

    def distance(r: Rung) -> float:  # relative misses, summed: the rung that is least far off
        return sum(v / budget[k] for k, v in r.misses(budget).items())

    if not rungs:
        raise BudgetError("no candidate may ship")
    near = min(rungs, key=distance)
    misses = "; ".join(f"{k.replace('_', ' ')} {budget[k]:g} missed by {v:.3g}" for k, v in near.misses(budget).items())
    raise BudgetError(f"no candidate meets the budget; the closest is {near.name} ({misses})")


# ------------------------------------------------------------------------------- the report
def write_table(out: Path, rungs: list[Rung], refs: dict[str, Any], budget: dict[str, float],
                chosen: Rung | None, why: str, baseline: Rung | None = None) -> None:
    """``out/ladder.md``, ``ladder.json`` and ``ladder.png`` (macro-F1 against latency, log scale, frontier);
    ``baseline``: the baseline as a candidate (a row of the table, the ``baseline`` entry of the JSON)."""
    from edgedistill.runtime.bench import environment

    env = environment("cpu")
    out.mkdir(parents=True, exist_ok=True)
    (out / "ladder.json").write_text(json.dumps(
        {"rungs": [asdict(r) for r in rungs], "baseline": asdict(baseline) if baseline else None,
         "references": refs, "budget": budget,
         "chosen": chosen.name if chosen else None, "why": why, "environment": env}, indent=2) + "\n")

    def f(v: Any, spec: str) -> str:
        return "–" if v is None else format(v, spec)

    lines = ["# Student ladder", "",
             f"Teacher test macro-F1 {f(refs.get('teacher'), '.4f')}, TF-IDF + LR baseline "
             f"{f(refs.get('baseline'), '.4f')}; {env['cpu']}, {env['available_cpus']} CPUs "
             f"({', '.join(env['cpu_flags'])}).",
             "The budget reads the validation columns only; test columns are reported. Latency: batch 1, p50; "
             "throughput: batch 32 through the runtime on the test texts, tokenising included.", "",
             f"Budget: {', '.join(f'{k} {v:g}' for k, v in budget.items()) or 'none (the most accurate ships)'}. "
             f"{why}", "",
             "| rung | variant | validation macro-F1 | validation latency ms | size MB | test macro-F1 | of teacher "
             "| margin kept | test latency ms | texts/s at batch 32 | faster than teacher | ships |",
             "|" + "---|" * 12]
    for r in [*rungs, *([baseline] if baseline else [])]:
        lines.append(f"| {r.name} | {r.variant} | {f(r.validation_macro_f1, '.4f')} | "
                     f"{f(r.validation_latency_ms, '.2f')} | {r.size_mb:.1f} | {f(r.test_macro_f1, '.4f')} | "
                     f"{f(r.share_of_teacher, '.1%')} | {f(r.margin_kept, '.0%')} | {f(r.test_latency_ms, '.2f')} | "
                     f"{f(r.throughput_b32, ',.0f')} | {f(r.speedup_vs_teacher, '.1f')}x | "
                     f"{'✓' if chosen is r else ''} |")
    (out / "ladder.md").write_text("\n".join(lines) + "\n")
    plot(rungs, refs, out / "ladder.png")


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, macro-F1) points no other point beats on both, by latency."""
    best, out = -1.0, []
    for lat, f1 in sorted(points):
        if f1 > best:
            out.append((lat, f1))
            best = f1
    return out


def plot(rungs: list[Rung], refs: dict[str, Any], path: Path) -> None:
    """The ladder's rungs with the teacher and the baseline (test macro-F1 against test latency)."""
    points = [(r.test_latency_ms, r.test_macro_f1, r.name, "rung") for r in rungs
              if r.test_latency_ms and r.test_macro_f1]
    points += [(refs[f"{k}_latency_ms"], refs[k], k, "reference") for k in ("teacher", "baseline")
               if refs.get(f"{k}_latency_ms") and refs.get(k)]
    plot_points(points, path, "student ladder: test macro-F1 against batch-1 latency")


def plot_points(points: list[tuple[float, float, str, str]], path: Path, title: str) -> None:
    """``(latency ms, macro-F1, label, kind)`` points on a log latency axis, the frontier drawn, every point
    labelled; kind ``rung``, ``reference`` or ``peer`` picks the colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"rung": "tab:blue", "reference": "tab:gray", "peer": "tab:red"}
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (lat, f1, name, kind) in enumerate(sorted(points)):
        ax.scatter(lat, f1, color=colors.get(kind, "tab:blue"), zorder=3)
        # neighbours by latency take turns above and below their point, so close points stay readable
        ax.annotate(name, (lat, f1), textcoords="offset points", xytext=(5, 5 if i % 2 == 0 else -12), fontsize=8)
    front = frontier([(lat, f1) for lat, f1, _, _ in points])
    if front:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:orange", label="frontier")
        ax.legend(loc="lower right")
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 p50 latency, ms (log scale)")
    ax.set_ylabel("test macro-F1")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
