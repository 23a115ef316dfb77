"""Where a build keeps what: the one description of a build folder's layout.

    models/<name>[-<profile>]/
      teacher/            the fine-tuned teacher checkpoint
      student/            the distilled student checkpoint
      onnx/               the exported student, its optimised / quantized variants, quantize_report.json and
                          targets.json (the per-target checks)
      candidates/student/ the student's package (its chosen quantized variant)
      candidates/baseline/ the TF-IDF + logistic-regression baseline's package (ONNX, raw strings in)
      package/            what ships: a copy of the candidate the ship stage chose (the runtime loads it)
      ship.json           the ship stage's record: every candidate's validation figures, the budget, the choice
      report/             report.md, report.json, plot.png: the build report
      .state.json         the stage records (fingerprints and what they hash, run ids) that make builds resumable
      plan.json           a planned build's plan: its key, the values it chose, the estimate, what it left out
      ladder/<rung>/      one build folder per ladder rung (student/ onwards; the teacher and the baseline are the
                          ones above); its package/ is its own student's, a candidate of the build above
      ladder/             ladder.md, ladder.json, ladder.png
      build.log           every run's full log: the toolchain's records, the libraries' and Python's warnings

The recipe, the pipeline, the report, the CLI and the benchmarks all take paths from :class:`BuildLayout`;
:func:`read_state` reads ``.state.json`` (the pipeline writes it) for the planner and the ladder too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

QUANTIZE_REPORT = "quantize_report.json"
"""Written by the quantize stage into the ONNX folder, last (so its presence means the stage finished)."""
TARGETS_REPORT = "targets.json"
TARGETS_REPORT_MD = "targets.md"
"""Written by the targets stage into the ONNX folder: each target's checks and the attempt it ships."""


@dataclass(frozen=True)
class BuildLayout:
    """The folders and files of one build, under ``root``."""

    root: Path
    shared_teacher: Path | None = None
    """A teacher built elsewhere (a ladder rung uses its recipe's): then ``teacher`` is that folder."""
    shared_baseline: Path | None = None
    """A baseline package built elsewhere (a ladder rung's is its recipe's): then ``baseline_package`` is it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def teacher(self) -> Path:
        return Path(self.shared_teacher) if self.shared_teacher else self.root / "teacher"

    @property
    def student(self) -> Path:
        return self.root / "student"

    @property
    def onnx(self) -> Path:
        return self.root / "onnx"

    @property
    def quantize_report(self) -> Path:
        return self.onnx / QUANTIZE_REPORT

    @property
    def targets_report(self) -> Path:
        return self.onnx / TARGETS_REPORT

    @property
    def candidates(self) -> Path:
        return self.root / "candidates"

    @property
    def student_package(self) -> Path:
        """The student's package, written by the package stage: a candidate."""
        return self.candidates / "student"

    @property
    def baseline_package(self) -> Path:
        """The baseline's package, written by the baseline stage: a candidate."""
        return Path(self.shared_baseline) if self.shared_baseline else self.candidates / "baseline"

    @property
    def package(self) -> Path:
        """What ships: the ship stage's copy of the chosen candidate."""
        return self.root / "package"

    @property
    def ship_record(self) -> Path:
        return self.root / "ship.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def report_md(self) -> Path:
        return self.report / "report.md"

    @property
    def report_json(self) -> Path:
        return self.report / "report.json"

    @property
    def ladder(self) -> Path:
        return self.root / "ladder"

    @property
    def state(self) -> Path:
        return self.root / ".state.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def log(self) -> Path:
        return self.root / "build.log"


def read_state(build_dir: Path) -> dict[str, Any]:
    """A build's stage records (``.state.json``); none when it is missing or unreadable (every stage runs again)."""
    path = BuildLayout(build_dir).state
    if not path.is_file():
        return {"stages": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is unreadable; every stage will run again", path)
        return {"stages": {}}


def forced_stages(force: tuple[str, ...], stages: tuple[str, ...]) -> set[str]:
    """The stages of ``stages`` (in build order) that ``--force`` reruns: each named stage and every stage after
    it; ``all``: every stage."""
    if "all" in force:
        return set(stages)
    first = min((stages.index(n) for n in force if n in stages), default=len(stages))
    return set(stages[first:])
