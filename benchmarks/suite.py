"""The side-by-side suite: teacher, student and every shipped variant, and two peers, in one interleaved run.

    flock /tmp/edgedistill-heavy.lock .venv/bin/python benchmarks/suite.py --build models/movie-sentiment
    python benchmarks/suite.py --merge bench-raspberrypi5.json      # add another device's `edgedistill bench`

Rows, measured in ONE process, interleaved (every row once per round, in a new seeded random order each
round, so a slow-down of the shared machine hits every row alike and no row always runs first or right after
the same neighbour), on the same test texts:

- ``teacher (torch fp32)`` and ``student (torch fp32)``: transformers models, tokenizer included in
  the timed call (what a torch user runs);
- ``student ONNX <variant>`` for fp32, optimized, int8-dynamic and int8-static: through the runtime
  (``edgedistill.runtime.TextClassifier``: tokenize, run, softmax), the code that ships;
- two peers on the package's ONNX file: a bare ``onnxruntime.InferenceSession`` fed pre-tokenised
  ids (same session options as the runtime: the runtime's overhead is runtime / bare - 1) and
  optimum's ``ORTModelForSequenceClassification`` inside a transformers
  ``pipeline("text-classification")`` (what users pick today). optimum needs transformers < 4.58 and
  the toolchain is on 5.x, so that peer runs in its own environment (``make peers``: ``.venv-peers``),
  a child process (``benchmarks/peers/optimum_peer.py``) that this one drives call by call in the same
  interleaved rounds, each call timed in the child; without that environment its row says
  "skipped: run `make peers`".

Measurements, all with the same intra-op thread count (``torch.set_num_threads`` too):

- latency p50 / p90 / p99 at batch 1 on real test texts cut to exactly 128 tokens (whole words
  from consecutive test texts; torch models pad / truncate to 128 with their own tokenizer);
- throughput at batch 32 on the same 128-token texts, and at batch 32 on real test texts at their
  natural lengths (each engine pads as it does by default: the runtime and the toolchain sort by
  length first, the optimum pipeline pads each batch to its longest);
- macro-F1 on the whole test split: the torch stages' ``metrics.json`` where made on the same split,
  otherwise evaluated here (torch models with ``edgedistill.compress.evaluate.evaluate_torch``); every ONNX row through
  the runtime here (the quantize report holds validation scores); every peer from its own outputs on the
  test split (the bare session's logits, the optimum pipeline's probabilities, the TF-IDF + LR baseline's
  (``edgedistill.compress.baseline``) probabilities), scored here by ``edgedistill.compress.evaluate.compute_metrics``;
- the goals, each judged from paired calls (same round) with a 95% bootstrap interval
  (``edgedistill.runtime.timing.paired_ratio``, ``verdict``): an extra interleaved pass of only the rows the goals
  compare gives the pairs (``goal_latency_rounds``, ``goal_rounds``);
- the physical limit: multiply-adds per 128-token sequence (student: counted on its fp32 ONNX graph;
  teacher: from its config), a large dense fp32 GEMM's GFLOP/s and an int8 GEMM's GOP/s measured in this
  run with the same threads (benchmarks/gemm_peak.py), and the fraction of the matching peak each row
  reaches (int8 rows against the int8 one).

Outputs ``benchmarks/results/<device>/suite.{json,md,png}`` (device: ``cpu-x86_64``, ``cuda-...``).
``--device cuda`` runs the torch models in fp16 on the GPU and the ONNX rows on onnxruntime's CUDA
provider (fp32 and the fp16 variant; the bare peer with I/O binding); without CUDA it stops with
:class:`edgedistill.runtime.errors.ProviderUnavailableError`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]  # run from a checkout: `python benchmarks/suite.py`

from benchmarks._paths import recorded_paths  # noqa: E402
from gemm_peak import config_macs, gemm_peak, graph_macs  # noqa: E402
from peers.process import PeerError, PeerProcess  # noqa: E402
from edgedistill.compress.baseline import margin_kept  # noqa: E402
from edgedistill.compress.quantize.config import VARIANT_FILES  # noqa: E402
from edgedistill.compress.layout import BuildLayout  # noqa: E402
from edgedistill.runtime.bench import (available_cpus, device_name, environment, exact_length_texts,  # noqa: E402
                                       markdown_table, read_json, write_json)
from edgedistill.runtime.timing import OVERHEAD_GOAL, overall_verdict, paired_ratio, summarize, verdict  # noqa: E402

log = logging.getLogger("suite")

RESULTS = HERE / "results"
CPU_VARIANTS = ("fp32", "optimized", "int8-dynamic", "int8-static")
CUDA_VARIANTS = ("fp32", "optimized", "fp16")
TEACHER, OPTIMUM, BARE = "teacher (torch fp32)", "optimum pipeline", "bare onnxruntime session"
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"  # `make peers`
OPTIMUM_PEER = HERE / "peers" / "optimum_peer.py"
BASELINE = "baseline TF-IDF + LR"


@dataclass
class SuiteConfig:
    """What to compare and how long to measure; defaults take about five minutes on two cores."""

    build: str | None = None
    """A build folder (``models/<name>``) holding teacher/, student/, onnx/ and package/."""
    teacher: str | None = None
    """Teacher checkpoint (default: BUILD/teacher)."""
    student: str | None = None
    """Student checkpoint (default: BUILD/student)."""
    onnx_dir: str | None = None
    """Export folder with the variants and quantize_report.json (default: BUILD/onnx)."""
    package: str | None = None
    """The shipped package; the peers run its model file (default: BUILD/package)."""
    data: str | None = None
    """Dataset (built-in name or file) whose test split is used (default: the package's recipe)."""
    device: str = "cpu"
    """cpu, or cuda (torch fp16 on the GPU, onnxruntime's CUDA provider; an error without CUDA)."""
    threads: int | None = None
    """Intra-op threads for every engine (default: every available core)."""
    length: int = 128
    """Tokens per text for the latency and batch-32 comparison."""
    batch: int = 32
    """Batch size of the throughput rows."""
    latency_rounds: int = 100
    """Interleaved rounds of batch-1 calls (one call per row per round)."""
    batch_rounds: int = 5
    """Interleaved rounds of batch calls on the 128-token texts."""
    stream_rounds: int = 4
    """Interleaved passes over ``stream_texts`` real test texts at their natural lengths."""
    stream_texts: int = 256
    """Real test texts per stream pass."""
    goal_latency_rounds: int = 200
    """Interleaved rounds of batch-1 calls of the rows the goals compare (the shipped file through the runtime,
    the bare session, the optimum pipeline): the pairs behind the goals' confidence intervals."""
    goal_rounds: int = 30
    """Interleaved rounds of batch calls, and of stream passes, of those rows, for the same intervals."""
    seed: int = 0
    """Seed of the rounds' random row order and of the bootstrap."""
    cooldown_s: float = 0.1
    """Seconds of idle before each row's turn in a round: onnxruntime's workers spin for about 30 ms of CPU
    after a call (unless the session says ``session.force_spinning_stop``, as the runtime's does), and that
    would be charged to whichever engine runs next."""
    warmup_s: float = 2.0
    """Seconds of warm-up per row and measurement (at least one call)."""
    gemm_n: int = 1024
    """Side of the square fp32 GEMM measured for the peak."""
    output: str = str(RESULTS)
    """Results root; the run writes into OUTPUT/<device>/."""
    peers_python: str | None = None
    """Python of the optimum peer's environment (default: .venv-peers/bin/python, made by `make peers`)."""

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device={self.device!r}: choose cpu or cuda")
        self.threads = self.threads or available_cpus()
        for name in ("threads", "length", "batch", "latency_rounds", "batch_rounds", "stream_rounds", "stream_texts",
                     "goal_latency_rounds", "goal_rounds", "gemm_n"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be an int >= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r}: must be an int >= 0")
        if not (isinstance(self.cooldown_s, (int, float)) and 0 <= self.cooldown_s <= 10):
            raise ValueError(f"cooldown_s={self.cooldown_s!r}: must be between 0 and 10 seconds")
        layout = BuildLayout(self.build) if self.build else None
        for name, attr in (("teacher", "teacher"), ("student", "student"), ("onnx_dir", "onnx"),
                           ("package", "package")):
            if getattr(self, name) is None and layout is not None:
                setattr(self, name, str(getattr(layout, attr)))
        if self.onnx_dir is None or not (Path(self.onnx_dir) / "model.onnx").is_file():
            raise ValueError(f"onnx_dir={self.onnx_dir!r}: no model.onnx there (pass --build or --onnx-dir)")


# --------------------------------------------------------------------------- rows

@dataclass
class Row:
    """One thing measured: a name, an engine, three callables (batch 1, batch N, a stream pass)."""

    name: str
    engine: str
    file: str | None
    size_bytes: int
    macs: int
    one: Callable[[int], Any] = field(repr=False)
    many: Callable[[int], Any] = field(repr=False)
    stream: Callable[[int], Any] = field(repr=False)
    macro_f1: float | None = None
    f1_source: str = ""
    variant: str | None = None
    self_timed: bool = False
    """The callables return the seconds their call took, measured where it ran (a peer's own process)."""


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return (sum(p.stat().st_size for p in path.glob("*.safetensors"))
            or sum(p.stat().st_size for p in path.glob("*.bin")))


def _stage_f1(folder: Path, n: int) -> float | None:
    """macro-F1 from a stage's metrics.json when it was measured on the whole test split (n texts)."""
    path = folder / "metrics.json"
    if path.is_file():
        m = json.loads(path.read_text())
        if m.get("n") == n:
            return float(m["macro_f1"])
    return None


class Suite:
    def __init__(self, cfg: SuiteConfig):
        from edgedistill.compress.exportmeta import read_export

        self.cfg = cfg
        self.onnx_dir = Path(cfg.onnx_dir)
        self.meta = read_export(self.onnx_dir)
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.skipped: list[dict[str, str]] = []
        self.peer_processes: list[PeerProcess] = []
        self.peer_versions: dict[str, Any] | None = None
        self.rounds_run: list[str] = []  # one seed stream per interleaved pass

    # ----------------------------------------------------------------- data
    def load_data(self) -> None:
        from edgedistill.compress.data import DataConfig, load_data

        data_cfg = None
        if self.cfg.data:
            data_cfg = DataConfig(source=self.cfg.data)
        else:
            manifest = Path(self.cfg.package or "") / "manifest.json"
            if manifest.is_file():
                recipe = json.loads(manifest.read_text()).get("recipe") or {}
                if recipe.get("data"):
                    data_cfg = DataConfig(**recipe["data"])
            if data_cfg is None:
                report = self.onnx_dir / "quantize_report.json"
                if report.is_file():
                    data_cfg = DataConfig(**json.loads(report.read_text())["config"]["data"])
        if data_cfg is None:
            raise ValueError("cannot tell which dataset this build used: pass --data")
        data = load_data(data_cfg)
        self.data = data
        self.data_name, self.test, self.labels = data.name, data.test, list(data.label_names)
        log.info("test split of %s: %d texts", self.data_name, len(self.test))

    def classifier(self, variant: str, providers: Any = None, file: str | None = None):
        from edgedistill.compress.exportmeta import runtime_config
        from edgedistill.runtime import TextClassifier

        return TextClassifier.from_files(self.onnx_dir / (file or VARIANT_FILES[variant]),
                                         self.onnx_dir / "tokenizer.json", runtime_config(self.meta, variant),
                                         providers=providers, threads=self.cfg.threads)

    def make_inputs(self) -> None:
        """Texts of exactly ``length`` student tokens cut from the test split, and real texts for the stream."""
        clf = self.classifier("fp32")
        length = min(self.cfg.length, clf.max_length)
        if length != self.cfg.length:
            self.notes.append(f"length {self.cfg.length} is above the package's max_length: {length} used")
        self.length = length
        n = 2 * self.cfg.batch
        self.fixed = exact_length_texts(clf, length, n, source=self.test.texts[:400])
        self.batches = [self.fixed[i:i + self.cfg.batch] for i in range(0, n, self.cfg.batch)]
        self.real = list(self.test.texts[:self.cfg.stream_texts])
        self.reference_clf = clf

    # ----------------------------------------------------------------- the rows
    def torch_row(self, name: str, folder: Path, macs: int) -> Row:
        import torch
        from transformers import AutoTokenizer

        from edgedistill.compress.evaluate import align_columns, evaluate_torch, model_labels, predict_proba_torch
        from edgedistill.compress.checkpoints import load_classifier

        cuda = self.cfg.device == "cuda"
        model = load_classifier(folder).eval()
        if cuda:
            model = model.half().to("cuda")
        tok = AutoTokenizer.from_pretrained(folder)
        dev = "cuda" if cuda else "cpu"
        L = self.length

        def forward(texts: list[str], pad: Any) -> np.ndarray:
            enc = tok(texts, padding=pad, truncation=True, max_length=L, return_tensors="pt").to(dev)
            with torch.inference_mode():
                probs = torch.softmax(model(**enc).logits.float(), dim=-1).cpu().numpy()
            return probs  # .cpu() waits for the GPU

        f1 = _stage_f1(folder, len(self.test))
        source = "stage metrics.json"
        if f1 is None:
            m = evaluate_torch(model, self.test, self.labels, tokenizer=tok, max_length=self.meta.max_length,
                               device=dev)
            f1, source = m.macro_f1, "evaluated here (edgedistill.compress.evaluate.evaluate_torch)"
        real_labels = model_labels(model)

        def stream(_: int) -> np.ndarray:
            p = predict_proba_torch(model, tok, self.real, max_length=self.meta.max_length, batch_size=self.cfg.batch,
                                    device=dev)
            return align_columns(p, real_labels, self.labels)

        engine = f"torch {torch.__version__} {'fp16 cuda' if cuda else 'fp32 cpu'}"
        return Row(name, engine, str(folder), _size(folder), macs,
                   one=lambda i: forward([self.fixed[i % len(self.fixed)]], "max_length"),
                   many=lambda i: forward(self.batches[i % len(self.batches)], "max_length"),
                   stream=stream, macro_f1=f1, f1_source=source)

    def runtime_row(self, variant: str, macs: int, report: dict[str, Any] | None, file: str | None = None,
                    name: str | None = None) -> Row:
        from edgedistill.compress.evaluate import evaluate_package

        providers = ["CUDAExecutionProvider"] if self.cfg.device == "cuda" else None
        file = file or VARIANT_FILES[variant]
        clf = self.classifier(variant, providers, file)
        path = self.onnx_dir / file
        # the quantize report holds validation scores (it chose on them): the test split is scored here
        f1, source = evaluate_package(clf, self.test, self.labels).macro_f1, "evaluated here (runtime)"
        b = self.cfg.batch
        return Row(name or f"student ONNX {variant}", f"runtime ({', '.join(clf.providers[:1])})", str(path),
                   path.stat().st_size, macs, variant=variant,
                   one=lambda i: clf.predict_proba([self.fixed[i % len(self.fixed)]]),
                   many=lambda i: clf.predict_proba(self.batches[i % len(self.batches)], batch_size=b),
                   stream=lambda i: clf.predict_proba(self.real, batch_size=b), macro_f1=f1, f1_source=source)

    def baseline_row(self) -> Row:
        """TF-IDF + logistic regression trained on the build's training split (C chosen on validation): the
        cheapest strong classifier, scored on the test split from its own predictions."""
        from edgedistill.compress.report import baseline_row

        row, base = baseline_row(self.data)
        f1 = row["macro_f1"]
        return Row(BASELINE, "scikit-learn (TF-IDF + logistic regression)", None, base.size_bytes, 0,
                   one=lambda i: base.predict_proba([self.fixed[i % len(self.fixed)]]),
                   many=lambda i: base.predict_proba(self.batches[i % len(self.batches)]),
                   stream=lambda i: base.predict_proba(self.real), macro_f1=f1,
                   f1_source=f"evaluated here (C={base.C:g} chosen on validation)")

    def bare_row(self, peer: Row) -> Row:
        """onnxruntime alone, fed the ids the runtime would build (tokenised beforehand, not timed), with the
        runtime's session options (so runtime / bare - 1 is what the runtime adds around the session). Its
        macro-F1 comes from its own logits on the test split."""
        import onnxruntime as ort

        from edgedistill.compress.evaluate import align_columns, compute_metrics
        from edgedistill.runtime.classifier import _session_options

        path, variant, macs = Path(peer.file), peer.variant, peer.macs
        so = _session_options(self.cfg.threads)
        cuda = self.cfg.device == "cuda"
        sess = ort.InferenceSession(str(path), so, providers=["CUDAExecutionProvider"] if cuda else
                                    ["CPUExecutionProvider"])
        tok = self.reference_clf
        ones = [tok.tokenize([t]) for t in self.fixed]
        manys = [tok.tokenize(bt) for bt in self.batches]
        order = np.argsort([len(t) for t in self.real], kind="stable")  # the runtime's own batching
        streams = [tok.tokenize([self.real[j] for j in order[s:s + self.cfg.batch]])
                   for s in range(0, len(self.real), self.cfg.batch)]
        out = self.meta.output_name
        if cuda:
            run = _io_binding_runner(sess, out)
        else:
            def run(feed: dict[str, np.ndarray]) -> Any:
                return sess.run([out], feed)[0]

        def stream(_: int) -> None:
            for feed in streams:
                run(feed)

        texts = list(self.test.texts)
        probs = np.empty((len(texts), len(self.meta.labels)), dtype=np.float64)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for s in range(0, len(texts), self.cfg.batch):  # batched and padded as the runtime does
            idx = order[s:s + self.cfg.batch]
            got = run(tok.tokenize([texts[j] for j in idx]))
            logits = np.asarray(got.numpy() if hasattr(got, "numpy") else got, dtype=np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs[idx] = e / e.sum(axis=1, keepdims=True)
        f1 = compute_metrics(self.test.labels, align_columns(probs, self.meta.labels, self.labels),
                             self.labels).macro_f1
        return Row(BARE, f"onnxruntime {ort.__version__}" + (" + I/O binding" if cuda else ""), str(path),
                   path.stat().st_size, macs, variant=variant, one=lambda i: run(ones[i % len(ones)]),
                   many=lambda i: run(manys[i % len(manys)]), stream=stream, macro_f1=f1,
                   f1_source="evaluated here (the bare session's own logits)")

    def optimum_row(self, peer: Row) -> Row | None:
        """optimum's pipeline on the shipped file, in the peers' own environment: a child process
        (``benchmarks/peers/optimum_peer.py``) driven call by call, each call timed there. Its macro-F1 is
        scored here from the pipeline's own predictions. None (and a skipped row) without that environment."""
        from edgedistill.compress.evaluate import align_columns, compute_metrics

        python = Path(self.cfg.peers_python) if self.cfg.peers_python else PEERS_PYTHON
        if not python.is_file():
            return self._skip(OPTIMUM, f"skipped: run `make peers` (no {python})")
        path, variant, macs = Path(peer.file), peer.variant, peer.macs
        proc = PeerProcess(python, OPTIMUM_PEER)
        self.peer_processes.append(proc)
        try:
            hello = proc.call(cmd="load", onnx_dir=str(self.onnx_dir.resolve()), file=path.name,
                              threads=self.cfg.threads, device=self.cfg.device, max_length=self.meta.max_length,
                              batch=self.cfg.batch, fixed=self.fixed, batches=self.batches, real=self.real)
            log.info("optimum peer loaded in %s: %s", python, hello["engine"])
            probs = np.asarray(proc.call(cmd="proba", texts=list(self.test.texts))["probs"], dtype=np.float64)
        except PeerError as e:
            proc.close()
            return self._skip(OPTIMUM, f"skipped: the optimum peer failed: {e}")
        self.peer_versions = hello["versions"]
        f1 = compute_metrics(self.test.labels, align_columns(probs, self.meta.labels, self.labels),
                             self.labels).macro_f1
        return Row(OPTIMUM, hello["engine"], str(path), path.stat().st_size, macs, variant=variant,
                   one=lambda i: proc.call(cmd="one", i=i)["seconds"],
                   many=lambda i: proc.call(cmd="many", i=i)["seconds"],
                   stream=lambda i: proc.call(cmd="stream", i=i)["seconds"], macro_f1=f1,
                   f1_source=f"evaluated here (the pipeline's own probabilities, in {python.parent.parent.name})",
                   self_timed=True)

    def _skip(self, name: str, reason: str) -> None:
        log.warning("%s: %s", name, reason)
        self.skipped.append({"name": name, "reason": reason})
        return None

    def close(self) -> None:
        for proc in self.peer_processes:
            proc.close()
        self.peer_processes = []

    # ----------------------------------------------------------------- running
    def build_rows(self) -> None:
        cfg = self.cfg
        student_macs = graph_macs(self.onnx_dir / "model.onnx", self.length)["macs"]
        self.macs = {"student": student_macs}
        report_path = self.onnx_dir / "quantize_report.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else None
        if cfg.teacher and (Path(cfg.teacher) / "config.json").is_file():
            teacher_cfg = json.loads((Path(cfg.teacher) / "config.json").read_text())
            self.macs["teacher"] = config_macs(teacher_cfg, self.length)
            log.info("loading the teacher %s", cfg.teacher)
            self.rows.append(self.torch_row(TEACHER if cfg.device == "cpu" else "teacher (torch fp16)",
                                            Path(cfg.teacher), self.macs["teacher"]))
        else:
            self.notes.append(f"no teacher checkpoint at {cfg.teacher}: no teacher row, no ratios against it")
        self.rows.append(self.baseline_row())
        if cfg.student and (Path(cfg.student) / "config.json").is_file():
            self.rows.append(self.torch_row("student (torch fp32)" if cfg.device == "cpu" else "student (torch fp16)",
                                            Path(cfg.student), student_macs))
        variants = CPU_VARIANTS if cfg.device == "cpu" else CUDA_VARIANTS
        by_variant = {}
        for v in variants:
            if (self.onnx_dir / VARIANT_FILES[v]).is_file():
                log.info("loading student ONNX %s", v)
                by_variant[v] = self.runtime_row(v, student_macs, report)
                self.rows.append(by_variant[v])
            else:
                self.notes.append(f"no {VARIANT_FILES[v]} in {self.onnx_dir}: no {v} row")
        peer = self._shipped(by_variant, report, student_macs)
        self.peer_row, self.peer_file = peer.name, Path(peer.file).name
        self.rows.append(self.bare_row(peer))
        if (row := self.optimum_row(peer)) is not None:
            self.rows.append(row)

    def _shipped(self, by_variant: dict[str, Row], report: dict[str, Any] | None, macs: int) -> Row:
        """The row of the file that ships (the package's model.onnx, found in the export folder by its sha256).

        The quantize stage may ship a fallback attempt (``model_int8_static_fb4.onnx``, say) rather
        than one of the plain variant files: it then gets a runtime row of its own. Without a
        package, the fp32 row.
        """
        from edgedistill.runtime.package import sha256_file

        model = Path(self.cfg.package or "") / "model.onnx"
        if not model.is_file():
            self.notes.append("no package: the peers run the fp32 file")
            return by_variant["fp32"]
        digest = sha256_file(model)
        for row in by_variant.values():
            if sha256_file(row.file) == digest:
                return row
        for path in sorted(self.onnx_dir.glob("*.onnx")):
            if sha256_file(path) == digest:
                variant = json.loads((model.parent / "config.json").read_text()).get("variant") or "fp32"
                attempt = next((a["name"] for a in (report or {}).get("attempts", []) if a.get("file") == path.name),
                               path.stem)
                log.info("loading the shipped file %s (%s)", path.name, attempt)
                row = self.runtime_row(variant, macs, report, file=path.name, name=f"student ONNX {attempt} (shipped)")
                self.rows.append(row)
                return row
        raise ValueError(f"{model}: the package's model is none of the files in {self.onnx_dir}")

    def interleave(self, kind: str, rounds: int, rows: list[Row] | None = None) -> dict[str, list[float]]:
        """Warm every row up by time, then time one call per row per round, in a new random order each round.

        onnxruntime's and OpenMP's worker threads spin for a while after a call (onnxruntime's for about
        30 ms of CPU unless told to stop); on a small machine that spinning slows whichever engine runs
        next. So each row's turn starts after ``cooldown_s`` of idle, its timed call follows one untimed
        batch-1 call of its own, and the order is shuffled: with a fixed order (A B C, then C B A) the
        rows at the ends ran twice in a row at every turn, never right after another engine, and the
        optimum peer, last, looked faster than the same file run by the others. The ``i``-th call of
        every row is in the same round: ``times[a][i]`` and ``times[b][i]`` are a pair.
        """
        rows = self.rows if rows is None else rows
        rng = np.random.default_rng([self.cfg.seed, len(self.rounds_run)])
        self.rounds_run.append(kind)
        for row in rows:
            fn = getattr(row, kind)
            end = time.perf_counter() + self.cfg.warmup_s
            fn(0)
            i = 1
            while time.perf_counter() < end:
                fn(i)
                i += 1
        times: dict[str, list[float]] = {r.name: [] for r in rows}
        for r in range(rounds):
            for k in rng.permutation(len(rows)):
                row = rows[k]
                fn = getattr(row, kind)
                time.sleep(self.cfg.cooldown_s)  # the previous engine's spinning workers go to sleep
                row.one(r + 1)  # untimed: warms this engine's own threads and caches
                t0 = time.perf_counter()
                out = fn(r)
                times[row.name].append(out if row.self_timed else time.perf_counter() - t0)
            if rounds >= 10 and (r + 1) % max(1, rounds // 5) == 0:
                log.info("%s: round %d of %d", kind, r + 1, rounds)
        return times

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:
            self.close()

    def _run(self) -> dict[str, Any]:
        cfg = self.cfg
        started = datetime.now(timezone.utc)
        if cfg.device == "cuda":
            _require_cuda()
        load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
        log.info("GEMM peak: %d x %d fp32, %d threads", cfg.gemm_n, cfg.gemm_n, cfg.threads)
        peak = gemm_peak(cfg.threads, cfg.gemm_n) if cfg.device == "cpu" else None
        self.load_data()
        self.make_inputs()
        _set_torch_threads(cfg.threads)
        self.build_rows()
        log.info("rows: %s", ", ".join(r.name for r in self.rows))
        log.info("batch 1, %d tokens: %d interleaved rounds", self.length, cfg.latency_rounds)
        lat = self.interleave("one", cfg.latency_rounds)
        log.info("batch %d, %d tokens: %d interleaved rounds", cfg.batch, self.length, cfg.batch_rounds)
        thr = self.interleave("many", cfg.batch_rounds)
        log.info("stream of %d real texts: %d interleaved passes", len(self.real), cfg.stream_rounds)
        stream = self.interleave("stream", cfg.stream_rounds)
        goal_rows = [r for r in self.rows if r.name in (self.peer_row, BARE, OPTIMUM)]
        log.info("the goals' pairs: %s, %d batch-1 rounds, %d batch and stream rounds",
                 ", ".join(r.name for r in goal_rows), cfg.goal_latency_rounds, cfg.goal_rounds)
        goal_samples = {"rows": [r.name for r in goal_rows],
                        "one": self.interleave("one", cfg.goal_latency_rounds, goal_rows),
                        "many": self.interleave("many", cfg.goal_rounds, goal_rows),
                        "stream": self.interleave("stream", cfg.goal_rounds, goal_rows)}
        load1 = os.getloadavg() if hasattr(os, "getloadavg") else None

        env = environment("cuda" if cfg.device == "cuda" else "cpu", cfg.threads)
        env.update(_versions())
        if self.peer_versions:
            v = self.peer_versions
            env["optimum"] = v.get("optimum")
            env["optimum_peer"] = {"python": str(self.cfg.peers_python or PEERS_PYTHON), **v}
        rows = []
        for row in self.rows:
            one, many = summarize(lat[row.name], 1), summarize(thr[row.name], cfg.batch)
            st = summarize(stream[row.name], len(self.real))
            rows.append({"name": row.name, "engine": row.engine, "variant": row.variant, "file": row.file,
                         "size_bytes": row.size_bytes, "macro_f1": row.macro_f1, "f1_source": row.f1_source,
                         "macs_per_sequence": row.macs, "batch1": one, f"batch{cfg.batch}": many,
                         "stream": st, "env": env})
        result = {
            "format": "edgedistill-suite", "format_version": 1, "device": device_name(env),
            "created": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "config": asdict(cfg), "environment": env, "dataset": self.data_name, "test_texts": len(self.test),
            "length": self.length, "batch": cfg.batch, "stream_texts": len(self.real),
            "stream_tokens_mean": float(np.mean([self.reference_clf.tokenize([t])["input_ids"].shape[1]
                                                 for t in self.real])),
            "peer_row": self.peer_row, "peer_file": self.peer_file, "gemm": peak, "macs": self.macs, "rows": rows,
            "load_average": {"before": load0, "after": load1}, "notes": self.notes, "skipped_rows": self.skipped,
            # every call's seconds, by pass and row: the i-th entries of two rows are a pair (one round)
            "samples": {"one": lat, "many": thr, "stream": stream}, "goal_samples": goal_samples,
        }
        add_ratios(result)
        return result


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _versions() -> dict[str, str | None]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "optimum": None}


def _require_cuda() -> None:
    import onnxruntime as ort
    import torch

    from edgedistill.runtime.errors import ProviderUnavailableError

    missing = []
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        missing.append("CUDAExecutionProvider")
    if not torch.cuda.is_available():
        missing.append("torch CUDA")
    if missing:
        raise ProviderUnavailableError(missing, ort.get_available_providers(),
                                       why="--device cuda needs onnxruntime-gpu and a CUDA build of torch with a GPU")


def _io_binding_runner(sess: Any, output: str) -> Callable[[dict[str, np.ndarray]], Any]:
    """Run with I/O binding: inputs copied to the GPU once per call, the output left there, then synchronised."""
    import onnxruntime as ort

    def run(feed: dict[str, np.ndarray]) -> Any:
        binding = sess.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        binding.bind_output(output, "cuda")
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.get_outputs()[0]

    return run


# --------------------------------------------------------------------------- ratios and goals

def add_ratios(result: dict[str, Any]) -> None:
    """Ratios of every row against the teacher and the optimum pipeline, the peak fraction, and the goals."""
    rows = {r["name"]: r for r in result["rows"]}
    batch = f"batch{result['batch']}"
    teacher = next((r for n, r in rows.items() if n.startswith("teacher")), None)
    optimum_row = rows.get(OPTIMUM)
    baseline = rows.get(BASELINE)
    gemm = result.get("gemm") or {}
    for r in result["rows"]:
        ratios: dict[str, float | None] = {}
        if teacher:
            ratios["speedup_vs_teacher_batch1_p50"] = teacher["batch1"]["p50_ms"] / r["batch1"]["p50_ms"]
            ratios["throughput_vs_teacher"] = r[batch]["throughput_per_s"] / teacher[batch]["throughput_per_s"]
            if r["macro_f1"] is not None and teacher["macro_f1"]:
                ratios["macro_f1_vs_teacher"] = r["macro_f1"] / teacher["macro_f1"]
            if baseline and r is not baseline and baseline["macro_f1"] is not None:
                ratios["margin_kept"] = margin_kept(r["macro_f1"], teacher["macro_f1"], baseline["macro_f1"])
        if optimum_row:
            ratios["throughput_vs_optimum"] = r[batch]["throughput_per_s"] / optimum_row[batch]["throughput_per_s"]
            ratios["stream_vs_optimum"] = r["stream"]["throughput_per_s"] / optimum_row["stream"]["throughput_per_s"]
            ratios["speedup_vs_optimum_batch1_p50"] = optimum_row["batch1"]["p50_ms"] / r["batch1"]["p50_ms"]
        r["ratios"] = ratios
        # an int8 variant against the int8 GEMM peak (its matrix products are int8), the rest against fp32
        r["peak_dtype"] = "int8" if (r.get("variant") or "").startswith("int8") and gemm.get("int8_peak_gops") \
            else "fp32"
        peak = gemm.get("int8_peak_gops" if r["peak_dtype"] == "int8" else "peak_gflops")
        if peak and r["macs_per_sequence"]:  # the baseline's sparse n-grams do no dense multiply-adds
            flops = 2 * r["macs_per_sequence"]
            r["gflops_batch1"] = flops / (r["batch1"]["p50_ms"] / 1e3) / 1e9
            r[f"gflops_{batch}"] = flops * r[batch]["throughput_per_s"] / 1e9
            r["peak_fraction_batch1"] = r["gflops_batch1"] / peak
            r[f"peak_fraction_{batch}"] = r[f"gflops_{batch}"] / peak
    result["goals"] = goals(result)


SPEEDUP_GOAL, F1_SHARE_GOAL, OPTIMUM_GOAL = 20.0, 0.97, 1.3


def _interval(samples: dict[str, Any] | None, kind: str, a: str, b: str, seed: int) -> dict[str, Any] | None:
    """How many times b's time a's calls took in pass ``kind`` (:func:`edgedistill.runtime.timing.paired_ratio` on the
    rounds' pairs), or None when either row has no samples there."""
    times = (samples or {}).get(kind) or {}
    if len(times.get(a) or ()) < 2 or len(times.get(b) or ()) < 2:
        return None
    return paired_ratio(times[a], times[b], seed=seed)


def _judge(goal: dict[str, Any], parts: dict[str, tuple[dict[str, Any] | None, float, str]]) -> dict[str, Any]:
    """Put each part's interval in ``goal`` and the verdict: met only when every interval's bound meets its target
    (:func:`edgedistill.runtime.timing.verdict`); ``not judged`` when a part has no paired samples (a result from before
    them)."""
    verdicts = []
    for key, (ci, target, better) in parts.items():
        goal[key] = ci
        if ci is not None:
            verdicts.append(verdict(ci, target, better))
    goal["verdict"] = overall_verdict(verdicts) if len(verdicts) == len(parts) else "not judged"
    return goal


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's three goals, each judged from paired, interleaved calls with a 95% bootstrap interval: ``met``
    only when the interval's bound meets the goal, ``not met`` when it lies wholly on the wrong side, else
    ``inconclusive``. Point estimates (from the table's p50s and throughputs) are given beside them."""
    rows = {r["name"]: r for r in result["rows"]}
    batch = f"batch{result['batch']}"
    seed = int((result.get("config") or {}).get("seed") or 0)
    samples, paired = result.get("samples"), result.get("goal_samples")
    out = []
    teacher = next((r for n, r in rows.items() if n.startswith("teacher")), None)
    int8 = [r for r in result["rows"]
            if (r.get("variant") or "").startswith("int8") and r["name"].startswith("student")]
    if teacher and int8:
        best = min(int8, key=lambda r: r["batch1"]["p50_ms"])
        rel = best["macro_f1"] / teacher["macro_f1"] if best["macro_f1"] and teacher["macro_f1"] else None
        goal = {"goal": f"int8 student >= {SPEEDUP_GOAL:g}x faster than the torch teacher at batch 1, "
                        f"{result['length']} tokens, within {1 - F1_SHARE_GOAL:.0%} of its macro-F1",
                "row": best["name"], "speedup_p50": teacher["batch1"]["p50_ms"] / best["batch1"]["p50_ms"],
                "macro_f1": best["macro_f1"], "teacher_macro_f1": teacher["macro_f1"], "macro_f1_ratio": rel}
        _judge(goal, {"speedup": (_interval(samples, "one", teacher["name"], best["name"], seed), SPEEDUP_GOAL,
                                  "higher")})
        if goal["verdict"] != "not judged" and (rel is None or rel < F1_SHARE_GOAL):
            goal["verdict"] = "not met"  # macro-F1 is measured once on the whole test split: no interval
        out.append(goal)
    peer = result["peer_row"]
    optimum_goal = f"runtime >= {OPTIMUM_GOAL:g}x the optimum pipeline's throughput on the same file"
    if OPTIMUM in rows and peer in rows:
        r, o = rows[peer], rows[OPTIMUM]
        goal = {"goal": optimum_goal, "row": peer,
                f"ratio_{batch}_{result['length']}_tokens": r[batch]["throughput_per_s"] / o[batch]["throughput_per_s"],
                "ratio_real_texts": r["stream"]["throughput_per_s"] / o["stream"]["throughput_per_s"]}
        _judge(goal, {f"throughput_{batch}": (_interval(paired, "many", OPTIMUM, peer, seed), OPTIMUM_GOAL, "higher"),
                      "throughput_real_texts": (_interval(paired, "stream", OPTIMUM, peer, seed), OPTIMUM_GOAL,
                                                "higher")})
        goal["latency_batch1_vs_optimum"] = _interval(paired, "one", peer, OPTIMUM, seed)  # shown, not judged
        out.append(goal)
    elif skipped := next((s for s in result.get("skipped_rows", []) if s["name"] == OPTIMUM), None):
        out.append({"goal": optimum_goal, "row": peer, "skipped": skipped["reason"], "verdict": "not measured"})
    if BARE in rows and peer in rows:
        r, bare = rows[peer], rows[BARE]
        goal = {"goal": f"under {OVERHEAD_GOAL - 1:.0%} overhead over the bare onnxruntime session", "row": peer,
                "overhead_batch1_p50": r["batch1"]["p50_ms"] / bare["batch1"]["p50_ms"] - 1,
                f"overhead_{batch}": bare[batch]["throughput_per_s"] / r[batch]["throughput_per_s"] - 1,
                "overhead_real_texts": bare["stream"]["throughput_per_s"] / r["stream"]["throughput_per_s"] - 1}
        _judge(goal, {"time_ratio_batch1": (_interval(paired, "one", peer, BARE, seed), OVERHEAD_GOAL, "lower"),
                      f"time_ratio_{batch}": (_interval(paired, "many", peer, BARE, seed), OVERHEAD_GOAL, "lower"),
                      "time_ratio_real_texts": (_interval(paired, "stream", peer, BARE, seed), OVERHEAD_GOAL,
                                                "lower")})
        out.append(goal)
    return out


def goal_verdict(goal: dict[str, Any]) -> str:
    """A goal's verdict, also for results written before verdicts had intervals (``met``: true / false / null)."""
    if "verdict" in goal:
        return goal["verdict"]
    return "not measured" if goal.get("met") is None else "met (one run, no interval)" if goal["met"] else "not met"


# --------------------------------------------------------------------------- reports

def _fmt(v: Any, spec: str = ".2f", none: str = "–") -> str:
    return none if v is None else format(v, spec)


def _fmt_value(v: Any) -> str:
    """A goal's number: a float, an interval (``paired_ratio``'s dict) as ``ratio [low, high] (n pairs)``, or text."""
    if isinstance(v, dict) and {"ratio", "low", "high"} <= set(v):
        return f"{v['ratio']:.3f} [{v['low']:.3f}, {v['high']:.3f}] ({v['pairs']} pairs)"
    if v is None:
        return "no paired samples"
    return _fmt(v, ".3f") if isinstance(v, float) else str(v)


def to_markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    batch = f"batch{result['batch']}"
    L = result["length"]
    peak = result.get("gemm") or {}
    lines = [f"# Side-by-side suite: {result['device']}", "",
             f"{result['created']} · {env['cpu']} · {env['threads']} threads · {env['os']} · Python {env['python']} · "
             f"onnxruntime {env['onnxruntime']} · torch {env.get('torch')} · transformers {env.get('transformers')} · "
             f"optimum {env.get('optimum') or 'not run'} · int8 instruction set {env.get('isa') or 'unknown'} · "
             f"CPU flags: {', '.join(env['cpu_flags']) or 'unknown'}", "",
             f"Test split of **{result['dataset']}** ({result['test_texts']} texts) for macro-F1. Latency: batch 1, "
             f"real test texts cut to exactly {L} tokens. Throughput: batch {result['batch']} of the same {L}-token "
             f"texts, and batch {result['batch']} over {result['stream_texts']} real test texts at their natural "
             f"length (mean {result['stream_tokens_mean']:.0f} tokens). All rows measured in one process, "
             "interleaved round by round. The peers run the shipped file "
             f"(`{result['peer_file']}`, row \"{result['peer_row']}\").", "",
             f"| model | size MB | macro-F1 | margin kept | p50 ms | p90 ms | p99 ms | texts/s b{result['batch']}×{L} "
             f"| texts/s real | × teacher (p50) | × optimum (b{result['batch']}) | MMAC/seq "
             f"| % GEMM peak b1 / b{result['batch']} |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ra = r.get("ratios", {})
        lines.append(
            f"| {r['name']} | {r['size_bytes'] / 1e6:.1f} | {_fmt(r['macro_f1'], '.4f')} | "
            f"{_fmt(ra.get('margin_kept'), '.0%')} | {r['batch1']['p50_ms']:.2f} | "
            f"{r['batch1']['p90_ms']:.2f} | {r['batch1']['p99_ms']:.2f} | {r[batch]['throughput_per_s']:.1f} | "
            f"{r['stream']['throughput_per_s']:.1f} | {_fmt(ra.get('speedup_vs_teacher_batch1_p50'), '.1f')} | "
            f"{_fmt(ra.get('throughput_vs_optimum'), '.2f')} | {r['macs_per_sequence'] / 1e6:,.1f} | "
            f"{_fmt(100 * r['peak_fraction_batch1'] if 'peak_fraction_batch1' in r else None, '.1f')} / "
            f"{_fmt(100 * r[f'peak_fraction_{batch}'] if f'peak_fraction_{batch}' in r else None, '.1f')}"
            f"{' (int8)' if r.get('peak_dtype') == 'int8' and 'peak_fraction_batch1' in r else ''} |")
    for sk in result.get("skipped_rows", []):
        lines.append(f"| {sk['name']} | {sk['reason']} |" + " – |" * 11)
    lines += ["", "## Goals", ""]
    lines += ["Each verdict comes from paired calls (the same round of the interleaved passes) and a 95% bootstrap "
              "interval on the geometric mean of the pairs' ratios: **met** only when the whole interval meets the "
              "goal, **NOT met** when none of it does, **inconclusive** otherwise. Intervals: ratio [low, high] over "
              "the pairs; the other numbers are point estimates from the table.", ""]
    for g in result["goals"]:
        numbers = ", ".join(f"{k} {_fmt_value(v)}" for k, v in g.items() if k not in ("goal", "met", "verdict"))
        v = goal_verdict(g)
        lines.append(f"- **{'NOT met' if v == 'not met' else v}**: {g['goal']} — {numbers}")
    if peak:
        e = peak["engines"]
        lines += ["", "## Physical limit", "",
                  f"Dense GEMMs {peak['n']}×{peak['n']}, {peak['threads']} threads, measured in this run: "
                  + ", ".join(f"{k} {v['gflops_best']:.1f} {'GOP/s' if v.get('dtype') == 'int8' else 'GFLOP/s'} "
                              f"(median {v['gflops_median']:.1f})" for k, v in e.items())
                  + f"; fp32 peak = {peak['peak_gflops']:.1f} GFLOP/s"
                  + (f", int8 peak = {peak['int8_peak_gops']:.1f} GOP/s" if peak.get("int8_peak_gops") else "")
                  + f". Multiply-adds per {L}-token sequence: "
                  + ", ".join(f"{k} {v / 1e6:,.1f} MMAC" for k, v in result.get("macs", {}).items())
                  + ". A row's fraction = 2 × MACs × sequences per second / peak: int8 rows against the int8 peak "
                    "(their weight products run in int8; a dynamic-int8 graph keeps its attention scores in fp32, so "
                    "their fraction is a lower bound), the others against the fp32 peak"
                  + ("" if peak.get("int8_peak_gops") else " (no int8 peak in this result: every row against fp32)")
                  + "."]
    lines += ["", "## Notes", "",
              f"- Load average before / after: {result['load_average']['before']} / {result['load_average']['after']}. "
              "The machine is shared by several engineers: absolute numbers are noisy, the ratios (same process, "
              "interleaved) much less so.",
              "- The torch rows include their tokenizer (as a torch user runs them); the runtime rows tokenize, run "
              "and softmax; the bare session is fed ids tokenised beforehand (its time is the session alone).",
              *[f"- {n}" for n in result["notes"]],
              "- F1 sources: " + "; ".join(f"{r['name']}: {r['f1_source']}" for r in result["rows"])]
    root = REPO / result.get("results_root", RESULTS)  # recorded relative to the repository
    lines += browser_section(root / result["device"])
    merged = sorted(p for p in root.glob("*/bench.json"))
    if merged:
        lines += ["", "## Other devices (`edgedistill bench`, merged with `--merge`)", ""]
        for p in merged:
            lines += [markdown_table(read_json(p)), ""]
    return "\n".join(lines) + "\n"


def browser_section(folder: Path) -> list[str]:
    """The browser rows (``benchmarks/web_bench.py``: transformers.js WASM at 1 and 2 threads, with the Python
    runtime on the same texts beside them) found in this device's results folder."""
    runs = sorted(folder.glob("web-*.json"))
    if not runs:
        return []
    lines = ["", "## In a browser (`benchmarks/web_bench.py`: transformers.js WASM beside the Python runtime)", "",
             "Batch 1 on review-like texts of 8 to 60 words (not the 128-token texts above), headless Chromium on "
             "this machine; load = navigation start to classifier ready (browser), `TextClassifier.load` (Python).",
             "", "| package | runtime | threads | p50 ms/text | p90 ms | load ms | max abs(Δp) vs Python | measured |",
             "|---|---|---|---|---|---|---|---|"]
    for path in runs:
        w = json.loads(path.read_text())
        parity = (w.get("parity") or {}).get("max_abs_diff")
        for r in w["rows"]:
            lines.append(f"| {w.get('package_name', path.stem)} ({w.get('variant')}) | {r['runtime']} "
                         f"| {r['threads']} | "
                         f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['load_ms']:.0f} | "
                         f"{'' if parity is None or r['runtime'].startswith('python') else f'{parity:.2g}'} | "
                         f"{str(w.get('created', ''))[:16]} |")
    return lines


def plot(result: dict[str, Any], path: Path) -> Path:
    """Latency (batch 1, log scale) against macro-F1, marker area by file size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    rows = [r for r in result["rows"] if r["macro_f1"] is not None]
    sizes = np.array([r["size_bytes"] / 1e6 for r in rows])
    area = 40 + 1200 * sizes / max(sizes.max(), 1e-9)
    for r, a in zip(rows, area):  # peers on the shipped file land on one spot: a legend, not labels that overlap
        ax.scatter(r["batch1"]["p50_ms"], r["macro_f1"], s=a, alpha=0.6, edgecolors="black", linewidths=0.5,
                   marker="s" if r["name"].startswith(("teacher", "student (")) else "o",
                   label=f"{r['name']} ({r['size_bytes'] / 1e6:.1f} MB)")
    legend = ax.legend(fontsize=7, loc="best", title="marker area ∝ file size", title_fontsize=7)
    for handle in legend.legend_handles:
        handle.set_sizes([40])
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, batch 1, {result['length']} tokens (ms, log scale)")
    ax.set_ylabel(f"macro-F1 ({result['dataset']} test)")
    ax.set_title(f"{result['device']}: {result['environment']['cpu']}, {result['environment']['threads']} threads",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_results(result: dict[str, Any], root: Path) -> Path:
    folder = root / result["device"]
    folder.mkdir(parents=True, exist_ok=True)
    result["results_root"] = str(root)
    # every path in the file (the build's folders, each row's file, the peer's Python) relative to the repository
    (folder / "suite.json").write_text(json.dumps(recorded_paths(result), indent=2, default=str) + "\n")
    (folder / "suite.md").write_text(to_markdown(result))
    plot(result, folder / "suite.png")
    return folder


def merge_bench(path: Path, root: Path) -> Path:
    """File another device's ``edgedistill bench`` JSON under ``root/<device>/bench.{json,md}``."""
    data = read_json(path)
    folder = root / data["device"]
    folder.mkdir(parents=True, exist_ok=True)
    write_json(data, folder / "bench.json")
    (folder / "bench.md").write_text(markdown_table(data))
    for suite_json in root.glob("*/suite.json"):  # refresh every suite report's "other devices" section
        refresh_report(suite_json, root)
    return folder


def refresh_report(suite_json: Path, root: Path) -> Path:
    """Rewrite ``suite.md`` beside ``suite_json``, re-reading what the results folders under ``root`` hold now
    (other devices' bench results, this device's browser rows)."""
    result = json.loads(suite_json.read_text())
    result["results_root"] = str(root)
    md = suite_json.parent / "suite.md"
    md.write_text(to_markdown(result))
    return md


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", help="build folder: models/<name> (teacher/, student/, onnx/, package/)")
    ap.add_argument("--teacher")
    ap.add_argument("--student")
    ap.add_argument("--onnx-dir")
    ap.add_argument("--package")
    ap.add_argument("--data", help="dataset name or file (default: the package's recipe)")
    ap.add_argument("--device", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int)
    ap.add_argument("--latency-rounds", type=int)
    ap.add_argument("--batch-rounds", type=int)
    ap.add_argument("--stream-rounds", type=int)
    ap.add_argument("--stream-texts", type=int)
    ap.add_argument("--warmup-s", type=float)
    ap.add_argument("--goal-latency-rounds", type=int, help="batch-1 rounds of the goals' paired pass (default 200)")
    ap.add_argument("--goal-rounds", type=int, help="batch and stream rounds of the goals' paired pass (default 30)")
    ap.add_argument("--cooldown-s", type=float, help="idle seconds before each row's turn (default 0.1)")
    ap.add_argument("--seed", type=int, help="seed of the row order and the bootstrap (default 0)")
    ap.add_argument("--output", help=f"results root (default {RESULTS})")
    ap.add_argument("--peers-python", help=f"Python of the optimum peer's environment (default {PEERS_PYTHON}, "
                                           "made by `make peers`)")
    ap.add_argument("--merge", type=Path, action="append", default=[],
                    help="a JSON from `edgedistill bench --output` on another device (repeatable)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[suite] %(message)s")
    root = Path(args.output) if args.output else RESULTS
    for path in args.merge:
        print(f"merged {path} into {merge_bench(path, root)}")
    if not (args.build or args.onnx_dir):
        if args.merge:
            return 0
        ap.error("give --build (or --onnx-dir), or --merge FILE")
    given = {k: v for k, v in vars(args).items() if k not in ("merge",) and v is not None}
    cfg = SuiteConfig(**given)
    from edgedistill.runtime.errors import ProviderUnavailableError

    try:
        result = Suite(cfg).run()
    except ProviderUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    folder = write_results(result, root)
    print((folder / "suite.md").read_text())
    print(f"wrote {folder}/suite.json, suite.md, suite.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
