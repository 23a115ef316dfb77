"""The onnxruntime session a :class:`~edgedistill.runtime.classifier.TextClassifier` runs: the execution
providers asked for (an error for a missing one, unless the caller accepts a fallback), the package target this
machine runs (its model file, where a package ships one per target), and deliberate session options.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from edgedistill.runtime import cpu
from edgedistill.runtime.errors import ProviderUnavailableError
from edgedistill.runtime.package import MANIFEST_FILE, MODEL_FILE, target_model

log = logging.getLogger(__name__)

Provider = str | tuple[str, Mapping[str, Any]]


def _resolve_providers(requested: Sequence[Provider] | str | None, fallback: bool) -> list[Provider]:
    """The providers to open the session with: CPU when none is asked for, an error for a missing one."""
    available = ort.get_available_providers()
    if requested is None:
        return ["CPUExecutionProvider"]
    if isinstance(requested, str):
        requested = [requested]
    names = [p[0] if isinstance(p, tuple) else p for p in requested]
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"providers={requested!r}: expected a list of provider names or (name, options) pairs")
    missing = [n for n in names if n not in available]
    if missing and not fallback:
        raise ProviderUnavailableError(missing, available)
    if missing:
        log.warning("execution provider(s) %s not available; falling back to %s (fallback=True)",
                    ", ".join(missing), ", ".join(n for n in names if n in available) or "CPUExecutionProvider")
    chosen = [p for p, n in zip(requested, names) if n in available]
    if "CPUExecutionProvider" not in [p[0] if isinstance(p, tuple) else p for p in chosen]:
        chosen.append("CPUExecutionProvider")  # runs the nodes the other providers cannot
    return chosen


def machine_target(providers: Sequence[Provider] = ()) -> str:
    """The package target a session on ``providers`` runs: cuda when the CUDA (or TensorRT) provider is among
    them, else this CPU's architecture (x86, arm64)."""
    names = {p[0] if isinstance(p, tuple) else p for p in providers}
    if names & {"CUDAExecutionProvider", "TensorrtExecutionProvider"}:
        return "cuda"
    return cpu.architecture(platform.machine())


def _manifest_target_file(folder: Path, target: str) -> str:
    """The model file the (not yet verified) manifest names for ``target``; model.onnx when it cannot tell.
    The manifest is then verified with that file, and the choice checked against the verified copy."""
    try:
        return target_model(json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8")), target)[0]
    except Exception:  # a broken manifest: _verify_folder names the fault
        return MODEL_FILE


def _session_options(threads: int | None) -> ort.SessionOptions:
    """Deliberate settings: every graph optimisation, ``threads`` intra-op threads, one inter-op thread, and
    worker threads that stop spinning when a call returns.

    ``threads=None`` leaves the intra-op count to onnxruntime (one per physical core).
    Inter-op parallelism only helps graphs with independent branches; an encoder is a chain.
    onnxruntime's workers otherwise spin for tens of milliseconds after each ``run`` (2^20 pause
    loops), holding a core that the caller's next step, or another model in the same process, then
    waits for; they still spin within a call, where it pays.
    """
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads={threads!r}: must be None (onnxruntime decides) or an int >= 1")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads or 0
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.force_spinning_stop", "1")
    return so
