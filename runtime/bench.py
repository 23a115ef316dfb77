"""Benchmark a model package on the machine at hand: latency, throughput, cold start, memory, size.

Torch-free (onnxruntime, tokenizers, numpy and the standard library), so it runs on any device
that has the base install, an ARM board included::

    from edgedistill.runtime.bench import BenchConfig, bench
    result = bench("movie-sentiment.zip", BenchConfig(threads=(1, 2)))   # a JSON-ready dict
    # or: edgedistill bench movie-sentiment.zip --threads 1,2 --output bench.json

What is measured, for every thread count, sequence length and batch size:

- each call is ``TextClassifier.predict_proba(texts)`` end to end (tokenize, run, softmax),
  timed with ``perf_counter`` after a warm-up *by time* (not by a count of calls);
- inputs have exactly ``length`` tokens (special tokens included) and no padding: review-like
  sentences cut at a word boundary, topped up with one-token words; lengths above the package's
  ``max_length`` are capped to it (and listed under ``capped_lengths``);
- p50 / p90 / p99 per-call latency and throughput (texts per second) for every batch size;
- cold start: a fresh interpreter that imports ``runtime``, loads the package (sha256 checks
  included) and predicts one text, split by phase, median of a few runs, with its peak resident
  memory (the clean number: nothing but the runtime in that process);
- the model file and package size.

Every row carries its environment (CPU model, int8 instruction set and flags, cores, OS, Python, onnxruntime version,
provider, threads), so rows from several devices can be merged into one report (:func:`merge`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.runtime.cpu import cpu_info, isa_name
from edgedistill.runtime.timing import summarize, time_calls

log = logging.getLogger(__name__)

FORMAT = "edgedistill-bench"
FORMAT_VERSION = 1
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# CPU features that decide which onnxruntime kernels run (x86 /proc/cpuinfo "flags", ARM "Features")
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "asimdhp", "i8mm", "bf16",
             "sve", "sve2")
FILLERS = ("the", "a", "and", ".", "of", "it")  # one-token words (in any English WordPiece/BPE vocabulary)

# Review-like sentences (written for this file): the text every length is cut from.
SENTENCES = (
    "A warm and often very funny film that knows exactly when to let its quiet moments breathe.",
    "The plot is thin, the dialogue is worse, and the ending arrives long after you have stopped caring.",
    "Its cast is superb, especially in the second half, where the story finally finds its footing.",
    "I wanted to like this movie more than I did; the pacing is uneven and the score never lets up.",
    "A smart, moving drama about two brothers who have not spoken in years and a farm neither of them wants.",
    "Tedious, overlong and strangely cold, despite a few lovely scenes near the beginning.",
    "The director keeps the camera close and the stakes small, and it works better than any explosion could.",
    "Not every joke lands, but the ones that do are clever enough to carry the weaker stretches.",
    "A messy script and flat performances make this one of the more forgettable sequels of the year.",
    "Beautifully shot, sharply written and anchored by a lead performance that is simply brilliant.",
    "Predictable from the first scene, it still manages a handful of genuine surprises in the last act.",
    "The characters feel like sketches rather than people, and the story never earns its big finish.",
)


@dataclass
class BenchConfig:
    """What to measure and for how long; defaults give a full run in a few minutes on a laptop CPU."""

    threads: tuple[int, ...] | None = None
    """Intra-op thread counts to measure (None: 1 and every available core)."""
    lengths: tuple[int, ...] = (16, 64, 128, 256)
    """Sequence lengths in tokens (special tokens included); capped at the package's max_length."""
    batches: tuple[int, ...] = (1, 8, 32)
    """Batch sizes: 1 for latency, larger ones for throughput."""
    provider: str = "cpu"
    """Execution provider: cpu, or cuda (needs the onnxruntime-gpu wheel; never a silent fallback)."""
    warmup_s: float = 1.0
    """Seconds of untimed calls before each row is timed."""
    measure_s: float = 3.0
    """Seconds of timed calls per row (at least ``min_runs`` calls)."""
    min_runs: int = 10
    """Fewest timed calls per row, however slow."""
    max_runs: int = 5000
    """Most timed calls per row, however fast."""
    cold_start_runs: int = 3
    """Fresh interpreters timed for the cold start (0: skip it)."""
    texts: tuple[str, ...] | None = None
    """Text the inputs are cut from (default: built-in review-like sentences)."""

    def __post_init__(self) -> None:
        if self.threads is None:
            self.threads = tuple(sorted({1, available_cpus()}))
        for name, low in (("threads", 1), ("lengths", 2), ("batches", 1)):
            value = getattr(self, name)
            if isinstance(value, (int, str)) or not value:
                raise ValueError(f"{name}={value!r}: must be a non-empty list of ints")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in value):
                raise ValueError(f"{name}={value!r}: every value must be an int >= {low}")
            setattr(self, name, tuple(dict.fromkeys(value)))
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider={self.provider!r}: choose one of {', '.join(PROVIDERS)}")
        for name in ("warmup_s", "measure_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be >= 0 seconds")
        if not isinstance(self.min_runs, int) or self.min_runs < 1:
            raise ValueError(f"min_runs={self.min_runs!r}: must be an int >= 1")
        if not isinstance(self.max_runs, int) or self.max_runs < self.min_runs:
            raise ValueError(f"max_runs={self.max_runs!r}: must be an int >= min_runs ({self.min_runs})")
        if not isinstance(self.cold_start_runs, int) or self.cold_start_runs < 0:
            raise ValueError(f"cold_start_runs={self.cold_start_runs!r}: must be an int >= 0")
        if self.texts is not None:
            self.texts = tuple(t for t in self.texts if isinstance(t, str) and t.strip())
            if not self.texts:
                raise ValueError("texts: no non-empty text to build inputs from")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """A smoke run in seconds (tests, CI): short warm-up and timing, one cold start."""
        return cls(**{"warmup_s": 0.05, "measure_s": 0.2, "min_runs": 5, "cold_start_runs": 1, **overrides})


# --------------------------------------------------------------------------- the environment

def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def environment(provider: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """The machine and software a row was measured on; ``isa`` is the int8 instruction set
    (:func:`edgedistill.runtime.cpu.detect`: ``avx512-vnni``, ``avx2``, ``arm64-dotprod``...)."""
    import onnxruntime as ort
    import tokenizers

    model, flags, cores = cpu_info()
    env = {
        "cpu": model,
        "machine": platform.machine(),
        "isa": isa_name(flags, platform.machine()),
        "cpu_flags": sorted(f for f in flags if f in CPU_FLAGS),
        "avx2": "avx2" in flags,
        "avx512_vnni": "avx512_vnni" in flags or "avx_vnni" in flags,
        "amx": "amx_int8" in flags or "amx_tile" in flags,
        "dotprod": "asimddp" in flags,
        "i8mm": "i8mm" in flags,
        "physical_cores": cores,
        "logical_cpus": os.cpu_count(),
        "available_cpus": available_cpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "provider": PROVIDERS.get(provider, provider),
        "threads": threads,
    }
    if provider == "cuda":
        env["gpu"] = _gpu_name()
    return env


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(env: dict[str, Any]) -> str:
    """The results folder of a device: ``cpu-x86_64``, ``cpu-aarch64``, ``cuda-nvidia-h100-80gb-hbm3``..."""
    if env.get("provider") == PROVIDERS["cuda"]:
        gpu = re.sub(r"[^a-z0-9]+", "-", str(env.get("gpu") or "gpu").lower()).strip("-")
        return f"cuda-{gpu}"
    return f"cpu-{env.get('machine') or platform.machine()}"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB (VmHWM on Linux, ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


# --------------------------------------------------------------------------- inputs of exact length

def exact_length_texts(clf: Any, length: int, n: int, source: Sequence[str] = SENTENCES) -> list[str]:
    """``n`` different texts that each tokenize to exactly ``length`` tokens (special tokens included).

    Each starts at a different word of ``source``, is cut at the longest word boundary a token
    short of ``length`` and topped up with one-token words, so the runtime never truncates it (a
    truncated text would make the tokenizer pay for words the model never sees). Raises
    ``ValueError`` if no text of that length can be made.
    """
    if length > clf.max_length:
        raise ValueError(f"length={length} is above the package's max_length={clf.max_length}")

    def count(text: str) -> int:
        return int(clf.tokenize([text])["input_ids"].shape[1])

    words_all = " ".join(source).split()
    texts = []
    for i in range(n):
        start = (i * 7) % len(words_all)
        words = (words_all[start:] + words_all[:start]) * (1 + 4 * length // max(1, len(words_all)))
        lo, hi = 0, len(words)  # the longest word prefix a token short of `length` (never truncated)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(" ".join(words[:mid])) < length:
                lo = mid
            else:
                hi = mid - 1
        text = " ".join(words[:lo])
        have = count(text)
        for filler in FILLERS:
            while have < length:
                longer = f"{text} {filler}".strip()
                got = count(longer)
                if got > length or got == have:
                    break
                text, have = longer, got
            if have == length:
                break
        if have != length:
            raise ValueError(f"cannot build a text of exactly {length} tokens with this tokenizer (got {have})")
        texts.append(text)
    return texts


# --------------------------------------------------------------------------- cold start

_COLD_START = r"""
import json, sys, time
t0 = time.perf_counter()
from edgedistill.runtime import TextClassifier
t1 = time.perf_counter()
clf = TextClassifier.load(sys.argv[1], providers=json.loads(sys.argv[2]), threads=json.loads(sys.argv[3]))
t2 = time.perf_counter()
clf.predict_proba([sys.argv[4]])
t3 = time.perf_counter()
from edgedistill.runtime.bench import peak_rss_mb
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "total_s": t3 - t0,
                  "peak_rss_mb": peak_rss_mb(), "torch_imported": "torch" in sys.modules}))
"""


def cold_start(package: Path | str, provider: str = "cpu", threads: int | None = None, runs: int = 3,
               text: str = SENTENCES[0]) -> dict[str, Any]:
    """Fresh interpreters: import the runtime, load the package, predict one text. Medians of ``runs``."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    providers = [PROVIDERS[provider]]
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _COLD_START, str(package), json.dumps(providers),
                               json.dumps(threads), text], capture_output=True, text=True, env=env, timeout=600)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"the cold-start process failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        sample = json.loads(proc.stdout.strip().splitlines()[-1])
        sample["process_wall_s"] = wall
        samples.append(sample)
    keys = ("import_s", "load_s", "first_predict_s", "total_s", "process_wall_s", "peak_rss_mb")
    return {"runs": runs, **{k: float(np.median([s[k] for s in samples])) for k in keys},
            "torch_imported": any(s["torch_imported"] for s in samples), "samples": samples}


# --------------------------------------------------------------------------- the benchmark

def _package_sizes(package: Path) -> dict[str, int]:
    """The model file's size and the whole package's (the .zip, or every file of the folder)."""
    from edgedistill.runtime.package import MODEL_FILE, open_package

    with open_package(package) as folder:
        model_bytes = (folder / MODEL_FILE).stat().st_size
        folder_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"model_bytes": model_bytes, "package_bytes": package.stat().st_size if package.is_file() else folder_bytes}


def _providers(provider: str) -> list[Any]:
    """The provider list for a session; a missing provider is an error, never a silent CPU run."""
    import onnxruntime as ort

    from edgedistill.runtime.errors import ProviderUnavailableError

    name = PROVIDERS[provider]
    if name not in ort.get_available_providers():
        raise ProviderUnavailableError([name], ort.get_available_providers(), why="asked for by the benchmark")
    return [name]


def bench(package: Path | str, cfg: BenchConfig | None = None) -> dict[str, Any]:
    """Measure ``package`` (folder or .zip) as ``cfg`` says; returns the JSON-ready result (see the module doc)."""
    from edgedistill.runtime import TextClassifier

    cfg = cfg or BenchConfig()
    package = Path(package)
    providers = _providers(cfg.provider)
    started = datetime.now(timezone.utc)
    env = environment(cfg.provider, None)  # read once: every row gets a copy with its thread count
    rows: list[dict[str, Any]] = []
    capped: list[int] = []
    load_s: dict[int, float] = {}
    variant, max_length = None, None
    for threads in cfg.threads:
        t0 = time.perf_counter()
        clf = TextClassifier.load(package, providers=providers, threads=threads)
        load_s[threads] = time.perf_counter() - t0
        if clf.takes_strings:
            raise ValueError(f"{package}: its model takes raw strings (the TF-IDF baseline), and the benchmark's "
                             "inputs are texts of exact token lengths; the build report times it on test texts")
        variant, max_length = clf.config.variant, clf.max_length
        row_env = {**env, "threads": threads}
        lengths = []
        for length in cfg.lengths:
            if length > clf.max_length:
                capped.append(length)
                length = clf.max_length
            if length not in lengths:
                lengths.append(length)
        for length in lengths:
            texts = exact_length_texts(clf, length, max(cfg.batches), cfg.texts or SENTENCES)
            for batch in cfg.batches:
                chunk = texts[:batch]
                got = clf.tokenize(chunk)["input_ids"].shape
                assert got == (batch, length), f"inputs of shape {got}, expected {(batch, length)}"
                times = time_calls(lambda clf=clf, chunk=chunk, batch=batch: clf.predict_proba(chunk, batch_size=batch),
                                   cfg.warmup_s, cfg.measure_s, cfg.min_runs, cfg.max_runs)
                row = {"threads": threads, "length": length, "batch": batch, **summarize(times, batch), "env": row_env}
                rows.append(row)
                log.debug("threads %d, length %d, batch %d: p50 %.2f ms, p99 %.2f ms, %.1f texts/s", threads,
                         length, batch, row["p50_ms"], row["p99_ms"], row["throughput_per_s"])
        del clf
    cold = None
    if cfg.cold_start_runs:
        cold = cold_start(package, cfg.provider, cfg.threads[-1], cfg.cold_start_runs)
    config = asdict(cfg)
    if cfg.texts is not None:
        config["texts"] = f"{len(cfg.texts)} texts"
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "device": device_name(env),
        "package": str(package), "variant": variant, "max_length": max_length, **_package_sizes(package),
        "created": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "config": config, "environment": env,
        "capped_lengths": sorted(set(capped)),
        "load_s": {str(k): v for k, v in load_s.items()},
        "cold_start": cold,
        "memory": {"cold_start_peak_rss_mb": cold["peak_rss_mb"] if cold else None,
                   "bench_process_peak_rss_mb": peak_rss_mb()},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "rows": rows,
    }


# --------------------------------------------------------------------------- files and merging

def write_json(result: dict[str, Any], path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def read_json(path: Path | str) -> dict[str, Any]:
    """A bench result written by :func:`bench` (on any device); checks its format."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable bench result ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path}: not an {FORMAT} result (written by `edgedistill bench --output`)")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {data['format_version']} is newer than this reader's "
                         f"{FORMAT_VERSION}")
    return data


def merge(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Results from several devices (or packages) as one ``{"devices": {device: [result, ...]}}`` report."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        merged.setdefault(r.get("device") or device_name(r.get("environment", {})), []).append(r)
    return {"format": FORMAT + "-merged", "format_version": FORMAT_VERSION, "devices": merged}


def markdown_table(result: dict[str, Any]) -> str:
    """The rows of one result as a Markdown table, with its environment in one line above."""
    env = result["environment"]
    flags = ", ".join(env.get("cpu_flags") or []) or "unknown"
    cold = result.get("cold_start") or {}
    lines = [f"**{result['device']}** — {env['cpu']} ({env.get('physical_cores') or '?'} cores, "
             f"{env['available_cpus']} available), {env['os']}, Python {env['python']}, onnxruntime "
             f"{env['onnxruntime']}, {env['provider']}; int8 instruction set {env.get('isa') or 'unknown'}, flags: "
             f"{flags}", "",
             f"Package `{Path(result['package']).name}` ({result.get('variant')}): model "
             f"{result['model_bytes'] / 1e6:.1f} MB"
             + (f"; cold start {cold['total_s']:.2f} s (import {cold['import_s']:.2f}, load {cold['load_s']:.2f}, "
                f"first prediction {cold['first_predict_s'] * 1e3:.0f} ms), peak RSS {cold['peak_rss_mb']:.0f} MB"
                if cold else ""), "",
             "| threads | tokens | batch | p50 ms | p90 ms | p99 ms | texts/s | runs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['threads']} | {r['length']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {r['throughput_per_s']:.1f} | {r['runs']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgedistill.runtime.bench PACKAGE --output FILE``: the benchmark where only ``runtime/`` is
    installed."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m edgedistill.runtime.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path)
    ap.add_argument("--threads", help="comma-separated thread counts (default: 1 and all)")
    ap.add_argument("--lengths", help="comma-separated token counts (default: 16,64,128,256)")
    ap.add_argument("--batches", help="comma-separated batch sizes (default: 1,8,32)")
    ap.add_argument("--provider", choices=sorted(PROVIDERS))
    ap.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    ap.add_argument("--output", "-o", type=Path, help="write the JSON result here (default: stdout)")
    args = ap.parse_args(argv)

    def ints(v: str | None) -> tuple[int, ...] | None:
        return tuple(int(x) for x in v.split(",") if x.strip()) if v else None

    given = {k: v for k, v in (("threads", ints(args.threads)), ("lengths", ints(args.lengths)),
                               ("batches", ints(args.batches)), ("provider", args.provider)) if v is not None}
    result = bench(args.package, BenchConfig.quick(**given) if args.quick else BenchConfig(**given))
    if args.output:
        write_json(result, args.output)
    else:
        print(json.dumps(result, indent=2))
    print(markdown_table(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
