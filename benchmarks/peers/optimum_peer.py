"""The optimum peer of ``benchmarks/suite.py`` and ``benchmarks/ladder.py``, run in the peers' own environment
(``make peers``).

optimum's ``ORTModelForSequenceClassification`` inside a transformers ``pipeline("text-classification")``
(what users pick today), on an ONNX file: the package's (the suite), or one optimum made itself from the recipe's
fine-tuned student, its own export and dynamic int8 quantization (the ladder). optimum-onnx 0.1.0, its newest
release, requires transformers < 4.58 while the toolchain is on transformers 5, so this runs in ``.venv-peers``
and the benchmark drives it through its stdin and stdout (``peers/process.py``), one JSON object a line, one call
at a time, so that its calls interleave with the benchmark's other rows as if it were one of them::

    {"cmd": "quantize", "model": CHECKPOINT, "out": FOLDER, "preset": "avx512_vnni" | "avx2" | "arm64"}
        -> {"ok": true, "onnx_dir": ..., "file": ..., "size_bytes": ..., "export_seconds": ..., ...}
    {"cmd": "load", "onnx_dir": ..., "file": ..., "threads": 2, "device": "cpu", "max_length": 128,
     "batch": 32, "fixed": [texts], "batches": [[texts], ...], "real": [texts]}
        -> {"ok": true, "engine": "...", "labels": [...], "versions": {"optimum": ..., "transformers": ..., ...}}
    {"cmd": "one" | "many" | "stream", "i": 3}
        -> {"ok": true, "seconds": 0.0123}           the call alone, timed here
    {"cmd": "run", "texts": [...]}
        -> {"ok": true, "seconds": 0.0123}           the pipeline on these texts, timed here
    {"cmd": "proba", "texts": [...]}
        -> {"ok": true, "probs": [[p of each output index], ...]}     (its macro-F1 is computed by the benchmark)
    {"cmd": "quit"}, or the end of input: exits.

``threads`` null leaves the intra-op count to onnxruntime (as the runtime's default does); ``fixed``, ``batches``
and ``real`` (the texts of ``one``, ``many`` and ``stream``) may be left out by a caller that sends ``run``.
A failed command answers ``{"ok": false, "error": "..."}``. Nothing else goes to stdout (logs go to stderr).
It imports nothing from this repository: the peers' environment has no edgedistill in it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any


class Peer:
    def __init__(self, msg: dict[str, Any]):
        import onnxruntime as ort
        from optimum.onnxruntime import ORTModelForSequenceClassification
        from transformers import AutoTokenizer, pipeline

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(msg.get("threads") or 0)
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
        self.fixed, self.batches, self.real = msg.get("fixed", []), msg.get("batches", []), msg.get("real", [])
        id2label = model.config.id2label or {}
        self.labels = [str(id2label.get(i, f"LABEL_{i}")) for i in range(self.num_labels)]
        self.versions = {name: _version(name) for name in ("optimum", "optimum-onnx", "transformers", "onnxruntime",
                                                           "torch")}

    def one(self, i: int) -> Any:
        return self.pipe(self.fixed[i % len(self.fixed)], **self.kw)

    def many(self, i: int) -> Any:
        return self.pipe(self.batches[i % len(self.batches)], batch_size=self.batch, **self.kw)

    def stream(self, i: int) -> Any:
        return self.pipe(self.real, batch_size=self.batch, **self.kw)

    def run(self, texts: list[str]) -> Any:
        """One text the way ``one`` calls the pipeline (a string, its single-input path); more at ``batch``."""
        if len(texts) == 1:
            return self.pipe(texts[0], **self.kw)
        return self.pipe(texts, batch_size=self.batch, **self.kw)

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


def export_quantize(model: str, out: str, preset: str) -> dict[str, Any]:
    """optimum's own route from a fine-tuned checkpoint to an int8 file, what its user runs in place of the
    toolchain's export and quantize stages: ``ORTModelForSequenceClassification.from_pretrained(export=True)``,
    then ``ORTQuantizer`` with the dynamic ``AutoQuantizationConfig`` preset of the CPU (its other arguments at
    optimum's defaults). Writes ``out/export`` (fp32) and ``out/int8`` (what the pipeline loads: the quantized
    file, its configs and the tokenizer)."""
    if preset not in ("avx512_vnni", "avx2", "arm64"):
        raise ValueError(f"preset {preset!r}: optimum's dynamic presets are avx512_vnni, avx2 and arm64")
    from optimum.onnxruntime import ORTModelForSequenceClassification, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from transformers import AutoTokenizer

    exported, int8 = Path(out) / "export", Path(out) / "int8"
    t0 = time.perf_counter()
    ort_model = ORTModelForSequenceClassification.from_pretrained(model, export=True)
    ort_model.save_pretrained(exported)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.save_pretrained(exported)
    t1 = time.perf_counter()
    qconfig = getattr(AutoQuantizationConfig, preset)(is_static=False)
    ORTQuantizer.from_pretrained(exported).quantize(save_dir=int8, quantization_config=qconfig)
    tokenizer.save_pretrained(int8)
    t2 = time.perf_counter()
    files = [p for p in int8.rglob("*") if p.is_file()]
    onnx = [p.name for p in files if p.suffix == ".onnx"]
    if len(onnx) != 1:
        raise RuntimeError(f"ORTQuantizer wrote {onnx} into {int8}: expected one .onnx file")
    return {"onnx_dir": str(int8), "file": onnx[0], "size_bytes": sum(p.stat().st_size for p in files),
            "export_seconds": t1 - t0, "quantize_seconds": t2 - t1, "preset": preset,
            "per_channel": qconfig.per_channel, "reduce_range": qconfig.reduce_range}


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
            if cmd == "quantize":
                reply: dict[str, Any] = export_quantize(str(msg["model"]), str(msg["out"]), str(msg["preset"]))
            elif cmd == "load":
                peer = Peer(msg)
                reply = {"engine": f"optimum {peer.versions['optimum']} ORTModelForSequenceClassification + pipeline",
                         "labels": peer.labels, "versions": peer.versions}
            elif peer is None:
                raise RuntimeError(f"{cmd!r} before 'load'")
            elif cmd in ("one", "many", "stream"):
                fn = getattr(peer, cmd)
                t0 = time.perf_counter()
                fn(int(msg["i"]))
                reply = {"seconds": time.perf_counter() - t0}
            elif cmd == "run":
                texts = list(msg["texts"])
                t0 = time.perf_counter()
                peer.run(texts)
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
