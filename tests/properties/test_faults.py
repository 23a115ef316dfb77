"""Faults: a build killed (SIGKILL) in the middle of each stage resumes with nothing lost and nothing half-written;
a full disk or an unwritable output folder fails with a clear error and leaves the previous package intact.

One tiny build runs once per session; a copy of it as it stood after each stage (a snapshot) is the starting
point of every test, so that only the killed stage and the later ones run again.

The kill: a child process resumes the build from a snapshot; when the stage under test is running and has
written part of its output, a hook *in the child* (installed by this file, not by the pipeline) writes a marker
file and blocks. The test polls for the marker and SIGKILLs the child's process group, so every kill lands at a
known point inside the stage rather than wherever a timer happens to fall:

    teacher, student  the third training step (the Trainer's scratch folder is half filled)
    export            the parity check (torch.onnx has written the graph into the temporary folder)
    quantize          the first int8 attempt (model_optimized.onnx is in the work folder, the report is not)
    package           the manifest (model, tokenizer, config and card are in the temporary folder)
    baseline          the manifest (its model, config and card are in the temporary folder)
    ship              the copy of the chosen package (the temporary folder is made)
    report            the plot (report.json and report.md are in the temporary folder)

A full disk is a real 'No space left on device' where tmpfs can be mounted (root on Linux), and a write that
raises ENOSPC half-way otherwise; an unwritable folder is a read-only bind mount (root), chmod 0o500 (not
root), or a PermissionError from the temporary folder's creation (always).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.compress.cli import app
from edgedistill.compress.layout import read_state
from edgedistill.compress.pipeline import STAGE_NAMES, STAGES, build
from edgedistill.compress.recipe import load_recipe
from edgedistill.runtime import TextClassifier, verify_package
from tests.helpers import PACKAGE_FILES, report_line, tiny_recipe

TEXTS = ["good great film", "dull boring plot", "the story was fun", "cold and flat", ""]
LEFTOVER_MARKS = (".tmp", ".partial", ".old-")
INJECTED: list[str] = []  # faults injected and survived in this run (a figure for the note)

# What the child patches for each stage: (module, attribute path, which call stops it)
KILL_POINTS = {
    "teacher": ("transformers", "Trainer.training_step", 3),
    "student": ("transformers", "Trainer.training_step", 3),
    "export": ("edgedistill.compress.export", "check_parity", 1),
    "quantize": ("edgedistill.compress.quantize.variants", "quantize_dynamic_variant", 1),
    "targets": ("edgedistill.compress.targets.check", "compare", 1),
    "package": ("edgedistill.runtime.package", "write_manifest", 1),
    "baseline": ("edgedistill.runtime.package", "write_manifest", 1),
    "ship": ("edgedistill.compress.ship", "_link_or_copy", 1),
    "report": ("edgedistill.compress.report", "plot", 1),
}
# What a stage killed at its kill point has left half-written in the build folder
HALF_WRITTEN = {
    "teacher": lambda b: [p.name for p in b.glob(".teacher.partial")],
    "student": lambda b: [p.name for p in b.glob(".student.partial")],
    "export": lambda b: [p.name for p in b.glob(".onnx.tmp-*")],
    "quantize": lambda b: [p.name for p in (b / "onnx").glob(".quantize.tmp-*/model_optimized.onnx")],
    "targets": lambda b: [p.name for p in (b / "onnx").glob(".targets.tmp-*/pkg-*")],
    "package": lambda b: [p.name for p in b.glob("candidates/.student.tmp-*")],
    "baseline": lambda b: [p.name for p in b.glob("candidates/.baseline.tmp-*")],
    "ship": lambda b: [p.name for p in b.glob(".package.tmp-*")],
    "report": lambda b: [p.name for p in b.glob(".report.tmp-*")],
}

CHILD = r"""
import importlib, os, sys, time
from pathlib import Path
from edgedistill.compress.pipeline import build
from edgedistill.compress.recipe import load_recipe

recipe_path, target, marker, module, attr, nth = sys.argv[1:7]
nth = int(nth)
force = tuple(sys.argv[7:])

def arm():
    owner = importlib.import_module(module)
    *parents, name = attr.split(".")
    for p in parents:
        owner = getattr(owner, p)
    real = getattr(owner, name)
    calls = [0]

    def stop(*args, **kwargs):
        calls[0] += 1
        if calls[0] == nth:
            Path(marker).write_text(target)
            time.sleep(600)  # the test SIGKILLs the process group here
        return real(*args, **kwargs)

    setattr(owner, name, stop)

def on_stage(stage, status, why):
    if stage.name == target and status == "running":
        arm()

build(load_recipe(recipe_path), force=force, on_stage=on_stage)
sys.exit(3)  # never reached: the build is killed first
"""


def tree(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative name (an empty dict for a missing folder)."""
    if not folder.exists():
        return {}
    if folder.is_file():
        return {folder.name: hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(build_dir: Path) -> list[str]:
    return sorted(p.relative_to(build_dir).as_posix() for p in build_dir.rglob("*")
                  if any(m in p.name for m in LEFTOVER_MARKS))


class Builds:
    """A finished tiny build and snapshots of its folder after each stage; ``restore`` puts one in place."""

    def __init__(self, root: Path, tiny_csv: Path, tiny_model_dir: Path):
        self.root = root
        self.recipe_path = tiny_recipe(root, tiny_csv, tiny_model_dir)
        self.build_dir = root / "tiny"  # every test builds here: the fingerprints hold the build folder's path
        self.snapshots = root / "snapshots"
        self.snapshots.mkdir()
        (self.snapshots / "none").mkdir()

        def on_stage(stage, status, why):
            if status == "done":
                shutil.copytree(self.build_dir, self.snapshots / stage.name, symlinks=True)

        build(self.recipe(), on_stage=on_stage)
        self.reference = self.snapshots / "reference"
        shutil.copytree(self.build_dir, self.reference, symlinks=True)
        self.reference_probs = TextClassifier.load(self.reference / "package").predict_proba(TEXTS)

    def recipe(self):
        return load_recipe(self.recipe_path)

    def restore(self, after: str) -> Path:
        """The build folder as it stood right after stage ``after`` ('none': before the first stage)."""
        if self.build_dir.exists():
            shutil.rmtree(self.build_dir)
        shutil.copytree(self.snapshots / after, self.build_dir, symlinks=True)
        return self.build_dir


@pytest.fixture(scope="module")
def builds(tmp_path_factory, tiny_csv, tiny_model_dir) -> Builds:
    return Builds(tmp_path_factory.mktemp("faults"), tiny_csv, tiny_model_dir)


@pytest.fixture(scope="module", autouse=True)
def _report_faults(request):
    yield
    report_line(request, f"[faults] {len(INJECTED)} faults injected and survived: {', '.join(INJECTED)}")


# Training on CPU is not bit-reproducible from run to run (a re-run student differs from the first by up to
# ~2e-3 in probability on this tiny model), so a package whose student was retrained is compared loosely; the
# stages after training are deterministic and must give the reference package to float precision.
RETRAINED_ATOL, ATOL = 1e-2, 1e-5


def assert_package_is_the_reference(builds: Builds, package: Path, atol: float = ATOL) -> None:
    """The package is whole and predicts like the reference build's. quantize ships the fastest variant that
    passed its gate, and which of fp32 / optimized is faster by a hair is measurement noise, so the shipped
    variant may differ between two builds: then only the variant field and float noise may differ."""
    assert {p.name for p in package.iterdir()} == PACKAGE_FILES
    verify_package(package)
    config = json.loads((package / "config.json").read_text())
    reference = json.loads((builds.reference / "package" / "config.json").read_text())
    if config["variant"] != reference["variant"]:
        atol = max(atol, RETRAINED_ATOL if "int8" in config["variant"] + reference["variant"] else 1e-4)
    fitted = ("variant", "batch_dependent", "temperature")  # the temperature is fitted on the variant's logits
    assert {k: v for k, v in config.items() if k not in fitted} == {k: v for k, v in reference.items()
                                                                    if k not in fitted}
    assert config["temperature"] == pytest.approx(reference["temperature"], rel=1e-6 if atol == ATOL else 0.2)
    np.testing.assert_allclose(TextClassifier.load(package).predict_proba(TEXTS), builds.reference_probs, atol=atol)


# ---------------------------------------------------------------------- SIGKILL in each stage

@contextlib.contextmanager
def _stopped_at(builds: Builds, stage: str, marker: Path, force: tuple[str, ...] = ()):
    """A child build (forcing ``force``) stopped at ``stage``'s kill point; SIGKILLed when the block ends."""
    module, attr, nth = KILL_POINTS[stage]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(builds.recipe_path), stage, str(marker), module, attr,
                             str(nth), *force], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the build ended (exit {proc.returncode}) before reaching {stage}'s kill point:\n"
                            + proc.stderr.read().decode(errors="replace")[-3000:])
            assert time.monotonic() < deadline, f"{stage}'s kill point was not reached in 240 s"
            time.sleep(0.05)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_build_killed_in_any_stage_resumes_with_nothing_lost(builds, stage, tmp_path):
    i = STAGE_NAMES.index(stage)
    before = STAGE_NAMES[:i]
    build_dir = builds.restore(before[-1] if before else "none")
    state_before = read_state(build_dir)["stages"]
    outputs_before = {s.name: tree(s.output(builds.recipe())) for s in STAGES[:i]}
    with _stopped_at(builds, stage, tmp_path / "stopped") as proc:
        assert read_state(build_dir)["stages"] == state_before  # still running `stage`
        half = HALF_WRITTEN[stage](build_dir)
        assert half, f"the kill point of {stage} left nothing half-written: the kill would prove nothing"
    assert proc.returncode == -signal.SIGKILL

    # nothing lost: every finished stage is still recorded, its output byte for byte as it was
    assert read_state(build_dir)["stages"] == state_before
    for s in STAGES[:i]:
        now = tree(s.output(builds.recipe()))
        assert {k: v for k, v in now.items() if k in outputs_before[s.name]} == outputs_before[s.name], s.name

    # resume: the finished stages are skipped, the killed one and the later ones run
    statuses = {}
    build(builds.recipe(), on_stage=lambda st, status, why: statuses.__setitem__(st.name, status))
    assert statuses == {s: ("skipped" if s in before else "done") for s in STAGE_NAMES}
    assert list(read_state(build_dir)["stages"]) == list(STAGE_NAMES)
    for s in before:
        assert read_state(build_dir)["stages"][s] == state_before[s]

    # nothing half-written: no temporary folder or partial file is left, every graph loads, the package is whole
    assert leftovers(build_dir) == []
    import onnx

    for path in (build_dir / "onnx").glob("*.onnx"):
        onnx.load(str(path))
    report = json.loads((build_dir / "onnx" / "quantize_report.json").read_text())
    assert (build_dir / "onnx" / report["chosen_file"]).is_file()
    assert_package_is_the_reference(builds, build_dir / "package",
                                    RETRAINED_ATOL if i <= STAGE_NAMES.index("student") else ATOL)
    assert {"report.md", "report.json", "plot.png"} <= {p.name for p in (build_dir / "report").iterdir()}
    INJECTED.append(f"SIGKILL in {stage} (left mid-stage: {', '.join(half)})")


def test_a_forced_rerun_killed_half_way_is_not_trusted_next_time(builds, tmp_path):
    """`--force quantize` writes into onnx/: once killed there, its old record must not make the next build
    skip a half-rewritten stage. The state keeps every record while the stage runs and marks it as running; the
    next build sees that onnx/ changed and reruns quantize and what follows. The stages before it keep their
    records and outputs."""
    build_dir = builds.restore("report")
    state_before = read_state(build_dir)["stages"]
    with _stopped_at(builds, "quantize", tmp_path / "stopped", force=("quantize",)) as proc:
        pass
    assert proc.returncode == -signal.SIGKILL
    killed = read_state(build_dir)
    assert killed["stages"] == state_before and killed["running"]["stage"] == "quantize"
    statuses = {}
    build(builds.recipe(), on_stage=lambda st, status, why: statuses.__setitem__(st.name, status))
    assert statuses == {"teacher": "skipped", "student": "skipped", "export": "skipped",
                        "quantize": "done", "targets": "done", "package": "done", "baseline": "done", "ship": "done",
                        "report": "done"}
    assert leftovers(build_dir) == []
    assert_package_is_the_reference(builds, build_dir / "package")
    INJECTED.append("SIGKILL in a forced quantize re-run")


def test_a_forced_rerun_that_fails_keeps_every_record(builds, monkeypatch):
    """An exception (not a kill) leaves the previous output whole, so the records come back as they were."""
    import edgedistill.compress.quantize.gate

    build_dir = builds.restore("report")
    state_before = read_state(build_dir)["stages"]

    def broken(*args, **kwargs):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(edgedistill.compress.quantize.gate._Run, "int8", broken)
    with pytest.raises(RuntimeError, match="injected failure"):
        build(builds.recipe(), force=("quantize",))
    assert read_state(build_dir)["stages"] == state_before
    assert leftovers(build_dir) == []


# ---------------------------------------------------------------------- a full disk, an unwritable folder

def _rebuild_package(builds: Builds) -> BaseException:
    """Force the package stage; return the error it fails with."""
    with pytest.raises(OSError) as e:
        build(builds.recipe(), force=("package",))
    return e.value


def _assert_previous_package_intact(builds: Builds, build_dir: Path, package_before: dict[str, str],
                                    state_before: dict) -> None:
    assert tree(build_dir / "package") == package_before  # byte for byte
    assert_package_is_the_reference(builds, build_dir / "package")
    assert leftovers(build_dir) == []
    assert read_state(build_dir)["stages"] == state_before


@pytest.fixture
def finished(builds):
    build_dir = builds.restore("report")
    return build_dir, tree(build_dir / "package"), read_state(build_dir)["stages"]


def _mount(*args: str) -> bool:
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def tiny_disk(builds):
    """The finished build on a tmpfs just big enough for it: a real full disk for the next package."""
    build_dir = builds.restore("report")
    used = sum(-(-p.stat().st_size // 4096) * 4096 for p in build_dir.rglob("*") if p.is_file())
    dirs = sum(1 for p in build_dir.rglob("*") if p.is_dir())
    content = Path(shutil.copytree(build_dir, builds.root / "tiny-disk-copy", symlinks=True))
    shutil.rmtree(build_dir)
    build_dir.mkdir()
    if not _mount("-t", "tmpfs", "-o", f"size={used + dirs * 4096 + 32 * 1024}", "tmpfs", str(build_dir)):
        shutil.rmtree(build_dir)
        shutil.move(content, build_dir)
        pytest.skip("cannot mount a tmpfs here (needs root on Linux); the ENOSPC write below covers it")
    try:
        for p in content.iterdir():
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, build_dir / p.name)
        shutil.rmtree(content)
        # fill the disk to two free pages: room for the state file's rewrite, none for a new package
        free = os.statvfs(build_dir).f_bavail * os.statvfs(build_dir).f_frsize
        package_pages = sum(-(-p.stat().st_size // 4096) for p in (build_dir / "package").iterdir())
        assert package_pages > 2, "the tiny package must need more than the free space left"
        with open(build_dir / "filler.bin", "wb") as f:
            f.write(b"\0" * max(0, free - 2 * 4096))
        yield build_dir
    finally:
        subprocess.run(["umount", "-l", str(build_dir)], check=True)


def test_a_really_full_disk_fails_clearly_and_keeps_the_package(builds, tiny_disk):
    build_dir = tiny_disk
    package_before, state_before = tree(build_dir / "package"), read_state(build_dir)["stages"]
    err = _rebuild_package(builds)
    assert err.errno == errno.ENOSPC and str(build_dir) in str(err.filename)
    _assert_previous_package_intact(builds, build_dir, package_before, state_before)
    INJECTED.append("full disk (tmpfs)")


@pytest.mark.parametrize("where", ["copying model.onnx", "writing manifest.json"])
def test_a_write_failing_with_enospc_keeps_the_package(builds, finished, monkeypatch, where):
    build_dir, package_before, state_before = finished
    real_copy, real_write = shutil.copyfile, Path.write_text

    def full(dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    def copy_half_then_fail(src, dst, *a, **k):
        if Path(dst).name == "model.onnx":
            Path(dst).write_bytes(Path(src).read_bytes()[: Path(src).stat().st_size // 2])  # half a file
            full(dst)
        return real_copy(src, dst, *a, **k)

    def write_then_fail(self, data, *a, **k):
        if self.name == "manifest.json":
            real_write(self, data[: len(data) // 2], *a, **k)
            full(self)
        return real_write(self, data, *a, **k)

    if where == "copying model.onnx":
        monkeypatch.setattr(shutil, "copyfile", copy_half_then_fail)
    else:
        monkeypatch.setattr(Path, "write_text", write_then_fail)
    err = _rebuild_package(builds)
    monkeypatch.undo()
    assert err.errno == errno.ENOSPC and Path(err.filename).name in ("model.onnx", "manifest.json")
    _assert_previous_package_intact(builds, build_dir, package_before, state_before)
    INJECTED.append(f"ENOSPC {where}")


@pytest.fixture
def read_only(finished):
    build_dir = finished[0]
    if not _mount("--bind", str(build_dir), str(build_dir)):
        pytest.skip("cannot bind-mount here (needs root on Linux); chmod and EACCES below cover it")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(build_dir)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        yield finished
    finally:
        subprocess.run(["umount", "-l", str(build_dir)], check=True)


def test_a_read_only_output_folder_fails_clearly_and_keeps_the_package(builds, read_only):
    build_dir, package_before, state_before = read_only
    err = _rebuild_package(builds)
    assert err.errno == errno.EROFS and str(build_dir) in str(err.filename)
    _assert_previous_package_intact(builds, build_dir, package_before, state_before)
    INJECTED.append("read-only output folder (bind mount)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions; the read-only mount covers it")
def test_an_unwritable_output_folder_fails_clearly_and_keeps_the_package(builds, finished):
    build_dir, package_before, state_before = finished
    build_dir.chmod(0o500)
    try:
        err = _rebuild_package(builds)
    finally:
        build_dir.chmod(0o755)
    assert err.errno == errno.EACCES
    _assert_previous_package_intact(builds, build_dir, package_before, state_before)
    INJECTED.append("unwritable output folder (chmod 0o500)")


def test_permission_denied_fails_clearly_and_keeps_the_package(builds, finished, monkeypatch):
    build_dir, package_before, state_before = finished
    real = tempfile.mkdtemp
    candidates = build_dir / "candidates"  # where the package stage writes the student's package

    def denied(suffix=None, prefix=None, dir=None):
        if dir is not None and Path(dir) == candidates:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
        return real(suffix, prefix, dir)

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    err = _rebuild_package(builds)
    monkeypatch.undo()
    assert err.errno == errno.EACCES and err.filename == str(candidates)
    _assert_previous_package_intact(builds, build_dir, package_before, state_before)
    INJECTED.append("EACCES on the output folder")


def test_the_cli_reports_a_full_disk_in_one_line(builds, finished, monkeypatch):
    build_dir, package_before, state_before = finished

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(shutil, "copyfile", full)
    r = CliRunner().invoke(app, ["build", str(builds.recipe_path), "--force", "package"])
    monkeypatch.undo()
    assert r.exit_code == 1
    assert "No space left on device" in r.output and "model.onnx" in r.output
    assert "Traceback" not in r.output and not isinstance(r.exception, OSError)
    _assert_previous_package_intact(builds, build_dir, package_before, state_before)
