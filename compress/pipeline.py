"""The one place that knows the order of the stages, their fingerprints and how to resume.

``build(recipe)`` runs teacher -> student -> export -> quantize -> targets -> package ->
report into ``models/<name>/``. Each finished stage is recorded in
``.state.json`` with a fingerprint of its config and of the runs it consumed;
running again skips a stage whose fingerprint is unchanged and whose output is
there, redoes one whose config (or any upstream run) changed, and ``force``
redoes a stage (and so everything after it). Every stage writes its output
through a temporary folder renamed at the end, and the state is written after
the rename, so a run killed at any point resumes at the stage it was in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compress import __version__
from compress.errors import ConfigError
from compress.layout import BuildLayout
from compress.recipe import Recipe

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Stage:
    name: str
    output: Callable[[Recipe], Path]
    config: Callable[[Recipe], Any]
    run: Callable[[Recipe, Any], Any]
    what: str


def _teacher(recipe: Recipe, cfg) -> Path:
    from compress.teacher import finetune_teacher

    return finetune_teacher(cfg)


def _student(recipe: Recipe, cfg) -> Path:
    from compress.distill import distill

    return distill(cfg)


def _export(recipe: Recipe, cfg) -> Path:
    from compress.export import export

    return export(dataclasses.replace(cfg, overwrite=True))


def _quantize(recipe: Recipe, cfg):
    from compress.quantize import quantize

    return quantize(cfg)


def _targets(recipe: Recipe, cfg):
    from compress.targets import check_targets

    return check_targets(cfg)


def _package(recipe: Recipe, cfg) -> Path:
    from compress.package import build_package

    return build_package(dataclasses.replace(cfg, overwrite=True))


def _report(recipe: Recipe, cfg) -> Path:
    from compress.report import write_report

    return write_report(recipe, cfg)


STAGES: tuple[Stage, ...] = (
    Stage("teacher", lambda r: r.layout.teacher, lambda r: r.teacher(), _teacher,
          "fine-tune the teacher"),
    Stage("student", lambda r: r.layout.student, lambda r: r.distill(), _student,
          "distil the student"),
    Stage("export", lambda r: r.layout.onnx, lambda r: r.export(), _export,
          "export the student to ONNX"),
    # quantize writes its variants and, last, its report into the export's folder
    Stage("quantize", lambda r: r.layout.quantize_report, lambda r: r.quantize(), _quantize,
          "optimise and quantize behind the accuracy gate"),
    Stage("targets", lambda r: r.layout.targets_report, lambda r: r.targets(), _targets,
          "check the variant on every declared target (x86, arm64, wasm, cuda)"),
    Stage("package", lambda r: r.layout.package, lambda r: r.package(), _package,
          "write the model package"),
    Stage("report", lambda r: r.layout.report, lambda r: r.report(), _report,
          "evaluate the package and write the report"),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def fingerprint(stage: str, cfg: Any, upstream: list[str]) -> str:
    """A hash of what a stage depends on: its config as it will run (profile defaults filled in, so changing a
    profile's table re-runs the stages it touches), the runs it consumes, the toolchain version."""
    if hasattr(cfg, "resolved"):
        cfg = cfg.resolved()
    blob = json.dumps({"stage": stage, "config": _jsonable(cfg), "upstream": upstream, "version": __version__},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class StageResult:
    name: str
    status: str  # "done", "skipped", "borrowed" (done by another build)
    seconds: float
    output: Path


@dataclass
class BuildResult:
    recipe: Recipe
    stages: list[StageResult] = field(default_factory=list)

    @property
    def package(self) -> Path:
        return self.recipe.layout.package

    @property
    def report(self) -> Path:
        return self.recipe.layout.report_md


def read_state(build_dir: Path) -> dict[str, Any]:
    path = BuildLayout(build_dir).state
    if not path.is_file():
        return {"stages": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is unreadable; every stage will run again", path)
        return {"stages": {}}


def _write_state(build_dir: Path, state: dict[str, Any]) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=build_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, BuildLayout(build_dir).state)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean_leftovers(build_dir: Path) -> None:
    """Remove the temporary and moved-aside folders a killed run left behind (outputs are only ever renamed
    into place, see ``compress.fsutil.replace_folder``)."""
    if not build_dir.is_dir():
        return
    for p in build_dir.iterdir():
        if p.name.startswith(".") and (".tmp" in p.name or ".old-" in p.name):
            log.info("removing %s left by an interrupted run", p.name)
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _run_stage(stage: Stage, recipe: Recipe, cfg: Any, state: dict[str, Any], out: Path) -> None:
    """Run one stage with its record (and every later one) struck from the saved state while it runs.

    A stage that is killed half-way (SIGKILL, power loss) may have rewritten part of its output in place, so the
    next build must not trust the old record: it stays struck and the stage runs again. A stage that fails with
    an exception leaves its previous output whole (outputs are renamed into place), so the record comes back.
    An OSError that names no file (a full disk seen by ``sendfile``, a ``write``) is given the stage's output
    folder, so the message says where the disk ran out.
    """
    build_dir, records = recipe.build_dir, state["stages"]
    saved = dict(records)
    for name in STAGE_NAMES[STAGE_NAMES.index(stage.name):]:
        records.pop(name, None)
    struck = records != saved
    try:
        if struck:
            _write_state(build_dir, state)
        stage.run(recipe, cfg)
    except BaseException as e:
        if struck:
            records.clear()
            records.update(saved)
            try:
                _write_state(build_dir, state)
            except OSError:  # the disk may still be full: the struck record only costs a re-run
                log.warning("could not restore %s; the %s stage will run again", BuildLayout(build_dir).state, stage.name)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(out)
        raise


def build(recipe: Recipe, *, force: tuple[str, ...] = (), until: str | None = None,
          on_stage: Callable[[Stage, str], None] | None = None, after: dict[str, str] | None = None) -> BuildResult:
    """Run (or resume) every stage of ``recipe`` in order; see the module docstring. ``after`` maps stages done
    by another build to their run ids (a ladder rung's teacher is its recipe's): they are not run here, and their
    run ids feed the later stages' fingerprints."""
    after = after or {}
    for name in (*force, *([until] if until else [])):
        if name not in STAGE_NAMES and name != "all":
            raise ConfigError("stage", name, f"must be one of {', '.join(STAGE_NAMES)}")
    force_from = min((STAGE_NAMES.index(n) for n in force if n != "all"), default=None)
    if "all" in force:
        force_from = 0
    build_dir = recipe.build_dir
    build_dir.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(build_dir)
    state = read_state(build_dir)
    result = BuildResult(recipe)
    upstream: list[str] = []
    for i, stage in enumerate(STAGES):
        if stage.name in after:
            upstream.append(after[stage.name])
            result.stages.append(StageResult(stage.name, "borrowed", 0.0, stage.output(recipe)))
            continue
        cfg = stage.config(recipe)
        fp = fingerprint(stage.name, cfg, upstream)
        out = stage.output(recipe)
        done = state["stages"].get(stage.name)
        forced = force_from is not None and i >= force_from
        if done and done.get("fingerprint") == fp and out.exists() and not forced:
            if on_stage:
                on_stage(stage, "skipped")
            result.stages.append(StageResult(stage.name, "skipped", 0.0, out))
            upstream.append(done["run_id"])
        else:
            if on_stage:
                on_stage(stage, "running")
            started = time.perf_counter()
            _run_stage(stage, recipe, cfg, state, out)
            seconds = time.perf_counter() - started
            run_id = uuid.uuid4().hex[:12]
            state["stages"][stage.name] = {
                "fingerprint": fp, "run_id": run_id, "seconds": round(seconds, 1),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            # later stages consumed the old run: they are stale now
            for later in STAGE_NAMES[i + 1:]:
                state["stages"].pop(later, None)
            _write_state(build_dir, state)
            if on_stage:
                on_stage(stage, "done")
            result.stages.append(StageResult(stage.name, "done", seconds, out))
            upstream.append(run_id)
        if until == stage.name:
            break
    return result
