"""Load and soak: many threads share one ``TextClassifier`` for a long run; throughput, resident memory, errors.

    flock /tmp/edgedistill-heavy.lock .venv/bin/python benchmarks/soak.py models/movie-sentiment/package
    python benchmarks/soak.py PACKAGE --predictions 2000 --output-dir /tmp/soak      # a smoke run

Eight worker threads (``--workers``) share one classifier and classify ``--predictions`` texts between them
(one ``predict`` call per text by default, as a web server would; ``--batch`` groups them). The texts cycle
through real-looking reviews of every length plus the awkward inputs the fuzzers use (empty, whitespace,
emoji, right-to-left, control characters, 5,000 characters), so the soak also runs the edge cases under load.

What it reports:

- **throughput**: texts per second over the whole run (wall clock, all workers), and per-call latency
  p50 / p90 / p99 seen by the workers;
- **memory**: the process's resident set (RSS) after loading, after every worker has warmed up (the start:
  each thread's first calls allocate its own buffers), sampled about
  twenty times during the run, and at the end (after ``gc.collect``); the growth from start to end, and
  the slope of a straight line through the samples of the second half of the run (MB per 10,000
  predictions): the goal is no growth beyond noise;
- **errors**: exceptions raised by any call, and answers that differ from the single-threaded answer for the
  same text (a thread-safety bug would show here): the goal is zero.

Results go to ``benchmarks/results/<device>/soak.{json,md}`` with the environment and the load average
before and after (the machine is shared: a loaded machine gives a lower throughput, not a wrong count).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._paths import recorded  # noqa: E402
from edgedistill.runtime import TextClassifier  # noqa: E402
from edgedistill.runtime.bench import device_name, environment  # noqa: E402

REVIEWS = [
    "A warm, funny and beautifully acted film.",
    "Dull, predictable and far too long; I checked my watch twice.",
    "The plot is thin but the performances carry it.",
    "An ambitious mess with a handful of moments that almost work.",
    "One of the best thrillers of the decade: tense, clever and surprisingly moving.",
    "I wanted to like it, but the script gives the cast nothing to do.",
    "It is fine. Nothing more, nothing less.",
    ("The director's eye for detail is everywhere, from the costumes to the lighting, and the score lifts every "
     "scene it touches, even if the final act stumbles over its own ambitions and the ending feels rushed."),
]
AWKWARD = [
    "", "   ", "\t\n", "😀👍🏽👩‍👩‍👧‍👦 great!!!", "שלום, סרט נהדר", "فيلم رائع جدا", "\u202egnirob\u202c",
    "control\x00chars\x07and\x1bescapes", "ＦＵＬＬＷＩＤＴＨ ｆｉｌｍ", "[CLS] [SEP] [PAD] [MASK]",
    "good " * 1000,  # 5,000 characters: truncated to max_length
]


def rss_mb() -> float:
    """The resident set of this process now, in MB (psutil; /proc on Linux without it)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise


def texts_for(n_long: int = 1) -> list[str]:
    """The cycle of inputs: every review, longer reviews made by joining them, and the awkward inputs."""
    joined = [" ".join(REVIEWS[i:] + REVIEWS[:i]) for i in range(0, len(REVIEWS), 3)][:n_long + 2]
    return REVIEWS + joined + AWKWARD


def soak(package: Path, predictions: int, workers: int, batch: int, intra_threads: int | None,
         samples: int = 20) -> dict[str, Any]:
    load_before = os.getloadavg()
    clf = TextClassifier.load(package, threads=intra_threads)
    texts = texts_for()
    # The single-threaded answers, computed the way each call computes them: dynamic int8 quantises
    # activations with one range per tensor, over the whole batch, so a text's probabilities depend (by
    # up to about 1e-2) on the texts batched with it; a call's answer is compared with the same call's.
    n = len(texts)
    if batch == 1:
        expected = {i: clf.predict_proba([texts[i]]) for i in range(n)}
    else:  # one answer per distinct call: (first text's index, texts in the call)
        keys = {((c * batch) % n, min(batch, predictions - c * batch)) for c in range(-(-predictions // batch))}
        expected = {key: clf.predict_proba([texts[(key[0] + k) % n] for k in range(key[1])], batch_size=batch)
                    for key in sorted(keys)}
    gc.collect()
    loaded_rss = rss_mb()
    # warm up with every worker: each thread's first calls allocate its own buffers and arenas
    barrier_threads = [threading.Thread(target=lambda: [clf.predict(t) for t in texts * 4]) for _ in range(workers)]
    for t in barrier_threads:
        t.start()
    for t in barrier_threads:
        t.join()
    gc.collect()
    start_rss = rss_mb()

    calls = -(-predictions // batch)
    next_call = iter(range(calls))
    lock = threading.Lock()
    done = [0]
    errors: list[str] = []
    mismatches = [0]
    latencies = np.full(calls, np.nan)  # preallocated: a growing list would itself grow the RSS being measured
    memory: list[dict[str, float]] = [{"predictions": 0, "rss_mb": round(start_rss, 2), "seconds": 0.0}]
    stop = threading.Event()

    def worker() -> None:
        while True:
            with lock:
                c = next(next_call, None)
            if c is None:
                return
            first = c * batch
            idx = [(first + k) % len(texts) for k in range(min(batch, predictions - first))]
            try:
                t0 = time.perf_counter()
                if batch == 1:
                    pred = clf.predict(texts[idx[0]], top_k=None)
                    got = np.array([[p["score"] for p in sorted(pred, key=lambda p: clf.labels.index(p["label"]))]])
                else:
                    got = clf.predict_proba([texts[i] for i in idx], batch_size=batch)
                latencies[c] = time.perf_counter() - t0
                want = expected[idx[0]] if batch == 1 else expected[(first % len(texts), len(idx))]
                if got.shape != (len(idx), clf.num_labels) or not np.allclose(got, want, atol=1e-4):
                    with lock:
                        mismatches[0] += 1
            except Exception as e:  # counted and reported: the soak's point is to find any
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
            with lock:
                done[0] += len(idx)

    def sampler(t_start: float) -> None:
        step = max(predictions // samples, 1)
        mark = step
        while not stop.wait(0.05):
            if done[0] >= mark:
                memory.append({"predictions": done[0], "rss_mb": round(rss_mb(), 2),
                               "seconds": round(time.perf_counter() - t_start, 2)})
                mark += step

    threads = [threading.Thread(target=worker, name=f"soak-{w}") for w in range(workers)]
    t_start = time.perf_counter()
    watch = threading.Thread(target=sampler, args=(t_start,), daemon=True)
    watch.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    stop.set()
    watch.join()
    gc.collect()
    end_rss = rss_mb()
    memory.append({"predictions": done[0], "rss_mb": round(end_rss, 2), "seconds": round(wall, 2)})

    half = [m for m in memory if m["predictions"] >= predictions / 2]
    slope = None
    if len(half) >= 3:
        x = np.array([m["predictions"] for m in half], dtype=np.float64)
        y = np.array([m["rss_mb"] for m in half], dtype=np.float64)
        if np.ptp(x) > 0:
            slope = float(np.polyfit(x, y, 1)[0] * 10_000)
    lat_ms = latencies[~np.isnan(latencies)] * 1000
    return {
        "package": recorded(package),
        "variant": clf.config.variant,
        "model_type": clf.config.model_type,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "settings": {"predictions": predictions, "workers": workers, "batch": batch,
                     "intra_op_threads": intra_threads, "distinct_texts": len(texts), "memory_samples": samples,
                     "warmup_predictions": workers * len(texts) * 4},
        "predictions_done": done[0],
        "calls": int(lat_ms.size) + len(errors),
        "seconds": round(wall, 2),
        "throughput_per_s": round(done[0] / wall, 1),
        "latency_ms": {q: round(float(np.percentile(lat_ms, p)), 3) for q, p in
                       (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} if lat_ms.size else None,
        "memory": {"after_load_rss_mb": round(loaded_rss, 2), "start_rss_mb": round(start_rss, 2),
                   "end_rss_mb": round(end_rss, 2),
                   "growth_mb": round(end_rss - start_rss, 2),
                   "growth_pct": round(100 * (end_rss - start_rss) / start_rss, 2),
                   "second_half_slope_mb_per_10k": None if slope is None else round(slope, 3),
                   "samples": memory},
        "errors": {"exceptions": len(errors), "wrong_answers": mismatches[0],
                   "total": len(errors) + mismatches[0], "first": sorted(set(errors))[:5]},
        "load_average": {"before": [round(v, 2) for v in load_before],
                         "after": [round(v, 2) for v in os.getloadavg()]},
        "environment": environment("cpu", intra_threads),
    }


def markdown(r: dict[str, Any]) -> str:
    m, e, s, lat = r["memory"], r["errors"], r["settings"], r["latency_ms"] or {}
    samples = ", ".join(f"{x['rss_mb']:.1f}" for x in m["samples"])
    return "\n".join([
        f"# Soak: {s['workers']} threads sharing one TextClassifier",
        "",
        f"Package `{r['package']}` ({r['model_type']}, {r['variant']}), {r['created']}, "
        f"{r['environment']['cpu']} ({r['environment']['available_cpus']} CPUs available), onnxruntime "
        f"{r['environment']['onnxruntime']}, intra-op threads {s['intra_op_threads']}, batch {s['batch']}. "
        f"Load average before {r['load_average']['before']}, after {r['load_average']['after']} "
        "(a shared machine: throughput is noisy, the counts are not).",
        "",
        "| predictions | seconds | throughput /s | p50 ms | p90 ms | p99 ms | RSS start MB | RSS end MB | growth MB "
        "| slope MB/10k (2nd half) | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['predictions_done']:,} | {r['seconds']} | {r['throughput_per_s']} | {lat.get('p50')} | "
        f"{lat.get('p90')} | {lat.get('p99')} | {m['start_rss_mb']} | {m['end_rss_mb']} | {m['growth_mb']} | "
        f"{m['second_half_slope_mb_per_10k']} | {e['total']} ({e['exceptions']} exceptions, "
        f"{e['wrong_answers']} wrong answers) |",
        "",
        f"RSS after loading {m['after_load_rss_mb']} MB; after every worker's warm-up (the start) and then "
        f"during the run (MB, start to end): {samples}",
        "",
        f"Inputs cycle through {s['distinct_texts']} texts: reviews of every length and the awkward inputs "
        "(empty, whitespace, emoji, right-to-left, control characters, 5,000 characters). A wrong answer is a "
        "result that differs by more than 1e-4 from the same call (the same texts in the same batch) made "
        "single-threaded before the run: dynamic int8 sets activation ranges per batch, so the batch is part "
        "of the input.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, help="a package folder or .zip")
    ap.add_argument("--predictions", type=int, default=100_000, help="texts to classify in all (default 100000)")
    ap.add_argument("--workers", type=int, default=8, help="threads sharing the classifier (default 8)")
    ap.add_argument("--batch", type=int, default=1, help="texts per call (default 1: one predict() per text)")
    ap.add_argument("--intra-threads", type=int, default=1,
                    help="onnxruntime intra-op threads of the shared session (default 1: the workers are the "
                         "parallelism)")
    ap.add_argument("--output-dir", type=Path, help="default: benchmarks/results/<device>/")
    args = ap.parse_args(argv)
    if args.predictions < 1 or args.workers < 1 or args.batch < 1:
        ap.error("--predictions, --workers and --batch must be >= 1")
    result = soak(args.package, args.predictions, args.workers, args.batch, args.intra_threads)
    out = args.output_dir or ROOT / "benchmarks" / "results" / device_name(result["environment"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (out / "soak.md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out / 'soak.json'} and {out / 'soak.md'}", file=sys.stderr)
    return 0 if result["errors"]["total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
