"""The runtime on emulated aarch64: QEMU user mode, one process per CPU model, only ``runtime/`` on board.

``arm64_setup.sh`` (cached, idempotent, no root) unpacks a static QEMU 10.x, an aarch64 sysroot with Python
3.11 and the aarch64 wheels of onnxruntime, numpy and tokenizers at the host's versions. :func:`run_worker`
runs ``arm64_worker.py`` there against a staging folder that holds a copy of ``runtime/`` and nothing else of
the project. Emulated times are 50 to 300 times slower and distorted: correctness only, never a benchmark.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SETUP = HERE / "arm64_setup.sh"
WORKER = HERE / "arm64_worker.py"
WORKER_TIMEOUT_S = 3600  # fp32 MiniLM on 256 texts under the slowest CPU model stays well below

log = logging.getLogger(__name__)


class EmulatorUnavailable(RuntimeError):
    """The emulated environment cannot be set up on this machine (no apt-get, no network, ...)."""


class WorkerError(RuntimeError):
    """The worker ran and failed (the runtime refused the model, a crash): the message has its stderr."""


def setup(cache: Path | None = None) -> dict[str, str]:
    """Run ``arm64_setup.sh`` (cached and idempotent) and return its env.sh variables (QEMU, SYSROOT, SITE,
    ARM64_PYTHON); raises :class:`EmulatorUnavailable` with the script's last lines when it cannot."""
    for tool in ("bash", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise EmulatorUnavailable(f"the emulated environment is built from Debian packages and needs {tool}")
    cmd = ["bash", str(SETUP)] + ([str(cache)] if cache else [])
    env = {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable)}  # pip for the aarch64 wheels
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise EmulatorUnavailable(f"{SETUP.name} failed (exit {proc.returncode}): {tail}")
    env_file = Path(proc.stdout.strip().splitlines()[-1])
    values = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            values[key] = value.strip('"')
    return values


def stage_runtime(dest: Path) -> Path:
    """A folder holding a copy of ``runtime/`` (as ``edgedistill/runtime/``, beside the top package's
    ``__init__.py``) and the worker, nothing else of the project."""
    import edgedistill.runtime

    (dest / "edgedistill").mkdir(parents=True)
    shutil.copy(edgedistill.__file__, dest / "edgedistill" / "__init__.py")
    shutil.copytree(Path(edgedistill.runtime.__file__).parent, dest / "edgedistill" / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "web"))
    shutil.copy(WORKER, dest / "worker.py")
    return dest


def run_worker(stage: Path, texts_file: Path, packages: list[Path], env: dict[str, str] | None = None,
               cpu: str | None = None, timeout: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    """The worker's JSON: on the host (``env`` None) or under QEMU with the CPU model ``cpu``."""
    pyenv = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_"))}
    pyenv.update(PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    # absolute: the worker runs in the staged folder, not where the caller named the files from; its results come
    # back keyed by the caller's names
    named = {str(Path(p).resolve()): str(p) for p in packages}
    args = [str(stage / "worker.py"), str(Path(texts_file).resolve()), *named]
    if env is None:
        pyenv["PYTHONPATH"] = str(stage)  # the staged copy comes before any installed checkout
        cmd = [sys.executable, *args]
    else:
        cmd = [env["QEMU"], "-L", env["SYSROOT"], env["ARM64_PYTHON"], *args]
        pyenv.update(QEMU_CPU=cpu or "max", PYTHONPATH=f"{stage}{os.pathsep}{env['SITE']}")
    proc = subprocess.run(cmd, env=pyenv, cwd=stage, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise WorkerError(f"the worker on {cpu or 'the host'} failed (exit {proc.returncode}): "
                          f"{proc.stderr.strip()[-1500:]}")
    result = json.loads(proc.stdout)
    result["results"] = {named.get(k, k): v for k, v in result["results"].items()}
    if env is not None and result["machine"] != "aarch64":
        raise WorkerError(f"QEMU_CPU={cpu}: the worker ran on {result['machine']}, not aarch64")
    return result


def run_emulated(stage: Path, texts_file: Path, packages: list[Path], cpus: list[str],
                 env: dict[str, str]) -> dict[str, dict[str, Any] | Exception]:
    """The worker under each CPU model, side by side (each is one single-threaded process): cpu -> its JSON,
    or the exception it raised."""
    def one(cpu: str) -> dict[str, Any] | Exception:
        log.info("emulated aarch64, QEMU_CPU=%s: %d package(s)", cpu, len(packages))
        try:
            return run_worker(stage, texts_file, packages, env=env, cpu=cpu)
        except (WorkerError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, min(len(cpus), os.cpu_count() or 1))) as pool:
        return dict(zip(cpus, pool.map(one, cpus)))
