"""The one place that knows the order of the stages, their fingerprints and how to resume.

``build(recipe)`` runs teacher -> student -> export -> quantize -> targets -> package -> baseline
-> ship -> report into ``models/<name>/`` (the package stage writes the student's package, the baseline stage
the TF-IDF baseline's, and the ship stage copies the one that wins on validation to ``package/``). Each finished
stage is recorded in
``.state.json`` with a fingerprint of its config, of the runs it consumed and
of the content of every file it reads (:mod:`edgedistill.compress.fingerprints`: the data file,
the test file, transfer files, model weights), and with those components, so a
later build can say why it reruns a stage ("data file tickets.csv changed",
"config changed (teacher.epochs)", "upstream student was rebuilt"). Running
again skips a stage whose fingerprint is unchanged and whose output is there,
redoes one whose config, inputs or upstream run changed, and ``force`` redoes a
stage (and so everything after it). Every stage writes its output through a
temporary folder renamed at the end, and the state is written after the
rename, so a run killed at any point resumes at the stage it was in.

A config field added after builds exist would change every stage fingerprint that holds it, and so redo work that
the new field does not touch (a re-distillation for a new student option nobody set). Such a field is declared
``field(..., metadata={"fingerprint": "when-set"})``: the fingerprint leaves it out while it equals its default,
so existing builds keep their fingerprints, and setting it reruns the stage with the field named in the reason.
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

from edgedistill import __version__
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.fingerprints import MISSING, HashCache, data_inputs, model_input, source_input
from edgedistill.compress.layout import BuildLayout, forced_stages, read_state
from edgedistill.compress.recipe import SECTIONS, Recipe

log = logging.getLogger(__name__)

NO_PREVIOUS_RUN = "no previous run"


def _reads_nothing(recipe: Recipe, cfg: Any, hashes: HashCache) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class Stage:
    name: str
    output: Callable[[Recipe], Path]
    config: Callable[[Recipe], Any]
    run: Callable[[Recipe, Any], Any]
    what: str
    section: str = ""
    """The recipe table of its config, for naming a changed field (default: the stage's name; the student
    stage's is ``distill``)."""
    reads: Callable[[Recipe, Any, HashCache], dict[str, str]] = _reads_nothing
    """The files it reads beyond its upstream stages' outputs: readable name -> digest
    (:mod:`edgedistill.compress.fingerprints`)."""


def _teacher_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    found = {**data_inputs(cfg.data, hashes), **model_input("teacher model", cfg.model, hashes)}
    if cfg.cross_dataset:
        found.update(source_input("cross-dataset file", cfg.cross_dataset, hashes))
    for source in cfg.adapt_texts:
        found.update(source_input("adaptation text", source, hashes))
    return found


def _student_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    found = data_inputs(cfg.data, hashes)
    for source in cfg.transfer:
        found.update(source_input("transfer file", source, hashes))
    if cfg.student.builder in ("pretrained", "drop-layers"):  # the others start from the teacher (upstream)
        found.update(model_input("student model", cfg.student.model, hashes))
    for source in cfg.student.adapt_texts:
        found.update(source_input("adaptation text", source, hashes))
    return found


def _quantize_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    return data_inputs(cfg.data, hashes)  # the gate's validation split, the calibration texts


def _targets_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    return data_inputs(cfg.data, hashes)  # the validation texts each target answers


def _package_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    return data_inputs(recipe.data(), hashes) if cfg.calibrate else {}  # the validation split fits the temperature


def _baseline_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    return data_inputs(cfg.data, hashes)  # trained on train, C chosen and measured on validation


def _ship_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    """Each ladder rung's manifest (which hashes every file of its package): a rebuilt rung, which is no upstream
    stage of this build (its student and baseline are), still reruns the choice."""
    from edgedistill.compress.ship import BASELINE, STUDENT
    from edgedistill.runtime.package import MANIFEST_FILE, sha256_file

    found = {}
    for name, folder in cfg.candidates.items():
        if name in (STUDENT, BASELINE):
            continue
        manifest = Path(folder) / MANIFEST_FILE
        found[f"candidate {name}"] = sha256_file(manifest) if manifest.is_file() else MISSING
    return found


def _report_reads(recipe: Recipe, cfg, hashes: HashCache) -> dict[str, str]:
    return data_inputs(recipe.data(), hashes)  # the test split, the baseline's training split


def _teacher(recipe: Recipe, cfg) -> Path:
    from edgedistill.compress.teacher import finetune_teacher

    return finetune_teacher(cfg)


def _student(recipe: Recipe, cfg) -> Path:
    from edgedistill.compress.distill.run import distill

    return distill(cfg)


def _export(recipe: Recipe, cfg) -> Path:
    from edgedistill.compress.export import export

    return export(dataclasses.replace(cfg, overwrite=True))


def _quantize(recipe: Recipe, cfg):
    from edgedistill.compress.quantize import quantize

    return quantize(cfg)


def _targets(recipe: Recipe, cfg):
    from edgedistill.compress.targets import check_targets

    return check_targets(cfg)


def _package(recipe: Recipe, cfg) -> Path:
    from edgedistill.compress.package import build_package

    return build_package(dataclasses.replace(cfg, overwrite=True))


def _baseline(recipe: Recipe, cfg) -> Path:
    from edgedistill.compress.baseline_package import package_baseline

    return package_baseline(cfg)


def _ship(recipe: Recipe, cfg) -> Path:
    from edgedistill.compress.ship import ship

    return ship(cfg)


def _report(recipe: Recipe, cfg) -> Path:
    from edgedistill.compress.report import write_report

    return write_report(recipe, cfg)


STAGES: tuple[Stage, ...] = (
    Stage("teacher", lambda r: r.layout.teacher, lambda r: r.teacher(), _teacher,
          "fine-tune the teacher", reads=_teacher_reads),
    Stage("student", lambda r: r.layout.student, lambda r: r.distill(), _student,
          "distil the student", section="distill", reads=_student_reads),
    Stage("export", lambda r: r.layout.onnx, lambda r: r.export(), _export,
          "export the student to ONNX"),
    # quantize writes its variants and, last, its report into the export's folder
    Stage("quantize", lambda r: r.layout.quantize_report, lambda r: r.quantize(), _quantize,
          "optimise and quantize behind the accuracy gate", reads=_quantize_reads),
    Stage("targets", lambda r: r.layout.targets_report, lambda r: r.targets(), _targets,
          "check the variant on every declared target (x86, arm64, wasm, cuda)", reads=_targets_reads),
    Stage("package", lambda r: r.layout.student_package, lambda r: r.package(), _package,
          "write the student's package", reads=_package_reads),
    Stage("baseline", lambda r: r.layout.baseline_package, lambda r: r.baseline(), _baseline,
          "train the TF-IDF baseline, export it to ONNX and package it", reads=_baseline_reads),
    Stage("ship", lambda r: r.layout.package, lambda r: r.ship(), _ship,
          "ship the most accurate candidate on validation", reads=_ship_reads),
    Stage("report", lambda r: r.layout.report, lambda r: r.report(), _report,
          "evaluate the package and write the report", reads=_report_reads),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _fingerprinted(f: dataclasses.Field, value: Any) -> bool:
    """False for a ``when-set`` field at its default (see the module docstring)."""
    return f.metadata.get("fingerprint") != "when-set" or value != _default(f)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        pairs = ((f, getattr(obj, f.name)) for f in dataclasses.fields(obj))
        return {f.name: _jsonable(v) for f, v in pairs if _fingerprinted(f, v)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def components(cfg: Any, upstream: list[str] | dict[str, str], inputs: dict[str, str]) -> dict[str, Any]:
    """What a stage's fingerprint hashes, kept in its record so that the next build can say what changed: its
    config as it will run (profile defaults filled in, so changing a profile's table re-runs the stages it
    touches), the runs it consumes, the digests of the files it reads, the toolchain version."""
    if hasattr(cfg, "resolved"):
        cfg = cfg.resolved()
    config = json.loads(json.dumps(_jsonable(cfg), sort_keys=True, default=str))  # as it reads back from JSON
    return {"config": config, "upstream": upstream, "inputs": dict(sorted(inputs.items())), "version": __version__}


def _digest(stage: str, parts: dict[str, Any]) -> str:
    blob = json.dumps({"stage": stage, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fingerprint(stage: str, cfg: Any, upstream: list[str] | dict[str, str],
                inputs: dict[str, str] | None = None) -> str:
    """A hash of what a stage depends on (:func:`components`)."""
    return _digest(stage, components(cfg, upstream, inputs or {}))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}."))
    return out or {prefix: d}


def _field_name(section: str, key: str) -> str:
    """A config key as a recipe names it: ``teacher.epochs``, ``data.source`` (a stage's nested data config),
    ``teacher.epochs`` again for the package stage (which records the whole recipe)."""
    head, _, rest = key.partition(".")
    if head == "recipe" and rest:
        return rest
    if head in SECTIONS and head != section and rest:
        return key
    return f"{section}.{key}"


def changed_fields(section: str, before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The fields of a stage's config (as :func:`components` keeps it) that differ, named as in a recipe."""
    a, b = _flatten(before), _flatten(now)
    return sorted({_field_name(section, k.rstrip(".")) for k in a.keys() | b.keys() if a.get(k) != b.get(k)})


def rerun_reason(stage: Stage, record: dict[str, Any] | None, now: dict[str, Any]) -> str:
    """Why ``stage`` runs again, in words: its last record's components against ``now``'s."""
    if not record:
        return NO_PREVIOUS_RUN
    before = record.get("components")
    if not isinstance(before, dict):
        return "built by an older version"
    if before.get("version") != now["version"]:
        return f"built by edgedistill {before.get('version')}"
    why = []
    old_in, new_in = before.get("inputs", {}), now["inputs"]
    for key, digest in new_in.items():
        if key in old_in and old_in[key] != digest:
            why.append(f"{key} is missing" if digest == MISSING else f"{key} changed")
    fields = changed_fields(stage.section or stage.name, before.get("config", {}), now["config"])
    if fields:
        more = f", +{len(fields) - 3} more" if len(fields) > 3 else ""
        why.append(f"config changed ({', '.join(fields[:3])}{more})")
    else:  # a new or dropped input comes with a config change, which says it better
        why += [f"reads {k} now" for k in new_in if k not in old_in]
        why += [f"no longer reads {k}" for k in old_in if k not in new_in]
    old_up, new_up = before.get("upstream", {}), now["upstream"]
    if isinstance(old_up, dict) and isinstance(new_up, dict):
        if rebuilt := [s for s, run in new_up.items() if old_up.get(s) != run]:
            why.append(f"upstream {rebuilt[0]} was rebuilt")
    return "; ".join(why) or "its fingerprint changed"


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
    into place, see ``edgedistill.runtime.fsutil.replace_folder``)."""
    if not build_dir.is_dir():
        return
    layout = BuildLayout(build_dir)
    for p in [*build_dir.iterdir(), *(layout.candidates.iterdir() if layout.candidates.is_dir() else ())]:
        if p.name.startswith(".") and (".tmp" in p.name or ".old-" in p.name):
            log.info("removing %s left by an interrupted run", p.name)
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def output_id(out: Path) -> str | None:
    """Which file-system object ``out`` is now and when it last changed (inode and modification time; for a
    file, its folder's too, which changes when a file is renamed into it). None when it does not exist."""
    try:
        ids = [out.stat()] + ([out.parent.stat()] if out.is_file() else [])
    except OSError:
        return None
    return ";".join(f"{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}" for st in ids)


def _settle_interrupted(state: dict[str, Any], recipe: Recipe) -> None:
    """A build interrupted while stage X ran left ``state["running"]``: X's output id when it started. Unchanged,
    X never published anything and every record still holds (restore the inputs and the old build is up to date);
    changed, X may have replaced part of its output, so X's record and the later ones go."""
    running = state.pop("running", None)
    if not running or running.get("stage") not in STAGE_NAMES:
        return
    stage = STAGES[STAGE_NAMES.index(running["stage"])]
    if output_id(stage.output(recipe)) != running.get("output"):
        log.info("%s: an interrupted run changed its output; it runs again", stage.name)
        for name in STAGE_NAMES[STAGE_NAMES.index(stage.name):]:
            state["stages"].pop(name, None)


def _run_stage(stage: Stage, recipe: Recipe, cfg: Any, state: dict[str, Any], out: Path) -> None:
    """Run one stage with the saved state marking it as running; its record (and the later ones) are replaced
    only once it has published its output.

    Every stage writes its output under a temporary name and renames it into place
    (:func:`edgedistill.runtime.fsutil.replace_folder`), so a run killed before that (Ctrl-C, SIGKILL, power
    loss) leaves the previous output whole and its record true: restore the inputs and the old build is up to
    date (:func:`_settle_interrupted`). An OSError that names no file (a full disk seen by ``sendfile``, a
    ``write``) is given the stage's output folder, so the message says where the disk ran out.
    """
    state["running"] = {"stage": stage.name, "output": output_id(out)}
    try:
        _write_state(recipe.build_dir, state)
        stage.run(recipe, cfg)
    except OSError as e:
        if e.filename is None:
            e.filename = str(out)
        raise
    finally:
        state.pop("running", None)  # on disk it stays until the record is written (or the next build settles it)


def build(recipe: Recipe, *, force: tuple[str, ...] = (), until: str | None = None,
          on_stage: Callable[[Stage, str, str], None] | None = None,
          after: dict[str, str] | None = None) -> BuildResult:
    """Run (or resume) every stage of ``recipe`` in order; see the module docstring. ``on_stage(stage, status,
    why)`` hears of each stage: status ``skipped``, ``running`` (``why``: the reason, :func:`rerun_reason`) or
    ``done``. ``after`` maps stages done by another build to their run ids (a ladder rung's teacher is its
    recipe's): they are not run here, and their run ids feed the later stages' fingerprints."""
    after = after or {}
    for name in (*force, *([until] if until else [])):
        if name not in STAGE_NAMES and name != "all":
            raise ConfigError("stage", name, f"must be one of {', '.join(STAGE_NAMES)}")
    forced_names = forced_stages(force, STAGE_NAMES)
    build_dir = recipe.build_dir
    build_dir.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(build_dir)
    state = read_state(build_dir)
    if "running" in state:
        _settle_interrupted(state, recipe)
        _write_state(build_dir, state)
    previous = dict(state["stages"])  # the records as this build found them (a rerun strikes the later ones)
    hashes = HashCache()
    result = BuildResult(recipe)
    upstream: dict[str, str] = {}
    for i, stage in enumerate(STAGES):
        if stage.name in after:
            upstream[stage.name] = after[stage.name]
            result.stages.append(StageResult(stage.name, "borrowed", 0.0, stage.output(recipe)))
            continue
        cfg = stage.config(recipe)
        parts = components(cfg, dict(upstream), stage.reads(recipe, cfg, hashes))
        hashes.save()
        fp = _digest(stage.name, parts)
        out = stage.output(recipe)
        done = state["stages"].get(stage.name)
        forced = stage.name in forced_names
        if done and done.get("fingerprint") == fp and out.exists() and not forced:
            if on_stage:
                on_stage(stage, "skipped", "")
            result.stages.append(StageResult(stage.name, "skipped", 0.0, out))
            upstream[stage.name] = done["run_id"]
        else:
            if forced:
                why = "it was forced (--force)"
            elif done and done.get("fingerprint") == fp:
                why = f"its output {out} is missing"
            else:
                why = rerun_reason(stage, previous.get(stage.name), parts)
            log.info("%s: runs because %s", stage.name, why)
            if on_stage:
                on_stage(stage, "running", why)
            started = time.perf_counter()
            _run_stage(stage, recipe, cfg, state, out)
            seconds = time.perf_counter() - started
            run_id = uuid.uuid4().hex[:12]
            state["stages"][stage.name] = {
                "fingerprint": fp, "run_id": run_id, "seconds": round(seconds, 1),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "components": parts,
            }
            # later stages consumed the old run: they are stale now
            for later in STAGE_NAMES[i + 1:]:
                state["stages"].pop(later, None)
            _write_state(build_dir, state)
            if on_stage:
                on_stage(stage, "done", "")
            result.stages.append(StageResult(stage.name, "done", seconds, out))
            upstream[stage.name] = run_id
        if until == stage.name:
            break
    return result
