"""A peer in another Python environment, driven from this one: the benchmarks' side of the peers' protocol.

The optimum peer (``optimum_peer.py``) runs in ``.venv-peers`` because optimum needs transformers < 4.58 while the
toolchain is on 5.x; ``benchmarks/suite.py`` and ``benchmarks/ladder.py`` start it with :class:`PeerProcess` and
send it one JSON object a line, reading one answer a line. The model2vec peer (``model2vec_peer.py``, in
``.venv-model2vec``) runs once over a build's splits: :func:`model2vec_row`, for ``benchmarks/ladder.py`` and
``benchmarks/many_datasets.py``. Every peer's macro-F1 is scored on this side (:func:`score_peer`).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
M2V_PYTHON = HERE.parents[1] / ".venv-model2vec" / "bin" / "python"  # `make peers`
M2V_PEER = HERE / "model2vec_peer.py"


class PeerError(RuntimeError):
    """A peer process failed, or answered a request with an error."""


class PeerProcess:
    """A peer in another Python environment: a child process that answers one JSON line per request line."""

    def __init__(self, python: Path, script: Path):
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([str(python), str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)

    def call(self, **request: Any) -> dict[str, Any]:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as e:
            raise PeerError(f"{request.get('cmd')}: {e}; {self._stderr_tail()}") from e
        if not line:
            raise PeerError(f"{request.get('cmd')}: the peer exited ({self.proc.poll()}); {self._stderr_tail()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise PeerError(f"{request.get('cmd')}: {reply.get('error')}")
        return reply

    def _stderr_tail(self, n: int = 1500) -> str:
        self.stderr.flush()
        self.stderr.seek(0)
        text = self.stderr.read().strip()
        return f"its stderr ends: {text[-n:]}" if text else "it wrote nothing to stderr"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def model2vec_row(recipe, data, python: Path) -> dict[str, Any] | None:
    """The model2vec peer's row on ``data``'s splits (``model2vec_peer.py`` run by ``python``, the teacher's base
    encoder of ``recipe`` distilled), its macro-F1 scored here (:func:`score_peer`) from the probabilities it gave on
    the validation and test splits. None when ``python`` is missing; :class:`PeerError` when the peer fails."""
    from edgedistill.compress import sources
    from edgedistill.compress.teacher import TeacherConfig

    if not python.is_file():
        return None
    base = sources.resolve_model(recipe.tables["teacher"].get("model", TeacherConfig.model))
    names = data.label_names
    def named(y):  # a label, or a multi-label text's list of labels
        return [names[i] for i in y] if isinstance(y, tuple) else names[y]

    splits = {s: {"texts": list(data.split(s).texts), "labels": [named(y) for y in data.split(s).labels]}
              for s in ("train", "validation", "test")}
    with tempfile.TemporaryDirectory() as tmp:
        spath, out = Path(tmp) / "splits.json", Path(tmp) / "row.json"
        spath.write_text(json.dumps(splits))
        proc = subprocess.run([str(python), str(M2V_PEER), "--base", str(base), "--splits", str(spath),
                               "--out", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise PeerError(f"the model2vec peer failed:\n{proc.stderr[-3000:]}")
        return score_peer(json.loads(out.read_text()), data)


def score_peer(row: dict[str, Any], data) -> dict[str, Any]:
    """A peer's row with its test (and validation, where given) probabilities (``{"classes", "probs"}``, columns by
    label name) replaced by the macro-F1 they score (``edgedistill.compress.evaluate.compute_metrics``, the toolchain's
    one metric)."""
    from edgedistill.compress.evaluate import align_columns, compute_metrics

    from edgedistill.compress.multilabel import fit_thresholds

    names = list(data.label_names)
    row = dict(row)
    thresholds = None
    for split, key in (("validation", "validation_macro_f1"), ("test", "macro_f1")):
        if split not in row:
            continue
        given = row.pop(split)
        probs = align_columns(np.asarray(given["probs"], dtype=np.float64), [str(c) for c in given["classes"]], names)
        if data.multi_label and split == "validation":  # fitted there, as every candidate's are
            thresholds = fit_thresholds(data.validation.labels, probs)[0]
        metrics = compute_metrics(data.split(split).labels, probs, names, thresholds)
        row[key] = metrics.macro_f1
        if data.multi_label:
            row["validation_micro_f1" if split == "validation" else "micro_f1"] = metrics.micro_f1
    return row
