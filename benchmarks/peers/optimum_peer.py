"""The optimum peer of ``benchmarks/suite.py``, run by the suite in the peers' own environment (``make peers``).

optimum's ``ORTModelForSequenceClassification`` inside a transformers ``pipeline("text-classification")``
(what users pick today) on the package's ONNX file. optimum-onnx 0.1.0, its newest release, requires
transformers < 4.58 while the toolchain is on transformers 5, so this runs in ``.venv-peers`` and the suite
drives it through its stdin and stdout, one JSON object a line, one call at a time, so that its calls
interleave with the suite's other rows as if it were one of them::

    {"cmd": "load", "onnx_dir": ..., "file": ..., "threads": 2, "device": "cpu", "max_length": 128,
     "batch": 32, "fixed": [texts], "batches": [[texts], ...], "real": [texts]}
        -> {"ok": true, "engine": "...", "versions": {"optimum": ..., "transformers": ..., ...}}
    {"cmd": "one" | "many" | "stream", "i": 3}
        -> {"ok": true, "seconds": 0.0123}           the call alone, timed here
    {"cmd": "proba", "texts": [...]}
        -> {"ok": true, "probs": [[p of each output index], ...]}     (its macro-F1 is computed in the suite)
    {"cmd": "quit"}, or the end of input: exits.

A failed command answers ``{"ok": false, "error": "..."}``. Nothing else goes to stdout (logs go to stderr).
It imports nothing from this repository: the peers' environment has no edgedistill in it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from importlib import metadata
from typing import Any


class Peer:
    def __init__(self, msg: dict[str, Any]):
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer, pipeline

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(msg["threads"])
        cuda = msg.get("device") == "cuda"
        model = ORTModelForSequenceClassification.from_pretrained(
            msg["onnx_dir"], file_name=msg["file"], session_options=so,
            provider="CUDAExecutionProvider" if cuda else "CPUExecutionProvider", use_io_binding=cuda)
        tok = AutoTokenizer.from_pretrained(msg["onnx_dir"])
        self.pipe = pipeline("text-classification", model=model, tokenizer=tok, device="cuda:0" if cuda else None)
        self.label2id = {str(k): int(v) for k, v in (model.config.label2id or {}).items()}
        self.num_labels = int(model.config.num_labels)
        self.kw = {"truncation": True, "max_length": int(msg["max_length"])}
        self.batch = int(msg["batch"])
        self.fixed, self.batches, self.real = msg["fixed"], msg["batches"], msg["real"]
        self.versions = {name: _version(name) for name in ("optimum", "optimum-onnx", "transformers", "onnxruntime",
                                                           "torch")}

    def one(self, i: int) -> Any:
        return self.pipe(self.fixed[i % len(self.fixed)], **self.kw)

    def many(self, i: int) -> Any:
        return self.pipe(self.batches[i % len(self.batches)], batch_size=self.batch, **self.kw)

    def stream(self, i: int) -> Any:
        return self.pipe(self.real, batch_size=self.batch, **self.kw)

    def proba(self, texts: list[str]) -> list[list[float]]:
        """Every label's score (the pipeline's softmax) per text, in the model's output order."""
        out = []
        for scores in self.pipe(texts, batch_size=self.batch, top_k=None, **self.kw):
            row = [0.0] * self.num_labels
            for s in scores:
                row[self._index(s["label"])] = float(s["score"])
            out.append(row)
        return out

    def _index(self, label: str) -> int:
        if label in self.label2id:
            return self.label2id[label]
        if label.startswith("LABEL_") and label[6:].isdigit():
            return int(label[6:])
        raise ValueError(f"the pipeline answered label {label!r}, which the model's config does not name")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def serve(stdin: Any, stdout: Any) -> None:
    peer: Peer | None = None
    for line in stdin:
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
            cmd = msg.get("cmd")
            if cmd == "quit":
                return
            if cmd == "load":
                peer = Peer(msg)
                reply: dict[str, Any] = {"engine": f"optimum {peer.versions['optimum']} "
                                                   "ORTModelForSequenceClassification + pipeline",
                                         "versions": peer.versions}
            elif peer is None:
                raise RuntimeError(f"{cmd!r} before 'load'")
            elif cmd in ("one", "many", "stream"):
                fn = getattr(peer, cmd)
                t0 = time.perf_counter()
                fn(int(msg["i"]))
                reply = {"seconds": time.perf_counter() - t0}
            elif cmd == "proba":
                reply = {"probs": peer.proba(list(msg["texts"]))}
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply["ok"] = True
        except Exception as e:  # the suite gets every failure as an answer and decides
            traceback.print_exc(file=sys.stderr)
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever a library prints must not corrupt the answers
    serve(sys.stdin, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
