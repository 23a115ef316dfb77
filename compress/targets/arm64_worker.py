"""Run the torch-free runtime on model packages and print the probabilities as JSON (one process, any CPU).

Run by :mod:`edgedistill.compress.targets.arm64` with the emulated aarch64 Python (and by ``benchmarks/arm64/check.py``
with the host's too), against a staging folder holding only a copy of ``runtime/`` (as ``edgedistill.runtime``)::

    python worker.py TEXTS_JSON PACKAGE [PACKAGE ...]   -> JSON on stdout

Each package is loaded as a user loads it (``TextClassifier.load``: on aarch64 it picks the package's arm64
file) and classified through ``predict_proba``'s normal path, one intra-op thread.

Only the standard library, numpy, onnxruntime, tokenizers and ``edgedistill.runtime`` are imported, and the
worker fails if ``edgedistill.compress``, torch or transformers got imported along the way.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def _cpu_features() -> list[str]:
    """The CPU features the (emulated) kernel reports: what onnxruntime's kernel selection sees."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Features", "flags"):
                return sorted(value.split())
    except OSError:
        pass
    return []


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    import numpy as np
    import onnxruntime as ort

    from edgedistill.runtime import TextClassifier

    texts = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    results = {}
    for pkg in argv[1:]:
        clf = TextClassifier.load(pkg, threads=1)  # one thread: deterministic reductions on every CPU
        probs = clf.predict_proba(texts)
        results[pkg] = {"labels": clf.labels, "variant": clf.config.variant,
                        "probs": np.asarray(probs, dtype=np.float64).tolist()}
    leaked = sorted(m for m in ("edgedistill.compress", "torch", "transformers") if m in sys.modules)
    if leaked:
        print(f"the runtime imported {', '.join(leaked)}", file=sys.stderr)
        return 3
    json.dump({"machine": platform.machine(), "python": platform.python_version(),
               "onnxruntime": ort.__version__, "numpy": np.__version__, "cpu_features": _cpu_features(),
               "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
