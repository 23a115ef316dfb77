"""A Ray Data job scores a large corpus on a local cluster of 2 workers, against the runtime in one process.

    flock /tmp/edgedistill-heavy.lock .venv/bin/python benchmarks/ray_scoring.py models/movie-sentiment/package
    python benchmarks/ray_scoring.py --baseline movie-snippets     # no built package: the TF-IDF baseline (seconds)
    python benchmarks/ray_scoring.py PACKAGE --texts 20000 --sample 5000 --output-dir /tmp/ray   # a smoke run

What it does (issue 27: at least 0.8x the single-process throughput per worker, the runtime's labels):

1. **texts**: ``--texts`` (1,000,000) drawn with replacement (seed 0) from a built-in dataset's texts (``--dataset``,
   default movie-snippets), written as ``--files`` Parquet files with an ``id`` column to a temporary folder;
2. **single process**: ``TextClassifier.predict(texts, batch_size=32)`` on 1 intra-op thread (what each worker
   gets) over the first ``--sample`` texts, timed before and after the job; their mean is the bar;
3. **the job**: a local Ray cluster of ``--workers`` CPUs plus the one the job leaves to Ray Data's own tasks
   (``ray.init(num_cpus=workers + 1)``), then ``edgedistill.runtime.ray_job.score`` (1 thread a worker): the wall
   time of ``score`` (read, actors started and the package loaded in each, score, write; the cluster's start is
   recorded apart), texts/s, texts/s per worker and its ratio to the single process;
4. **agreement**: every output row's label and score against the runtime's for its text, all rows (each distinct
   text classified once in this process: a text's answer does not depend on its batch-mates), and the rows' order
   (the ``id`` column).

Results: ``benchmarks/results/<device>/ray-scoring.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._paths import recorded, recorded_argv  # noqa: E402
from edgedistill.runtime import TextClassifier  # noqa: E402
from edgedistill.runtime.bench import available_cpus, device_name, environment  # noqa: E402

GOAL = 0.8
"""Texts/s per worker against the single process's (issue 27)."""
THREADS = 1
BATCH_SIZE = 32


def corpus(dataset: str, n: int, seed: int = 0) -> list[str]:
    """``n`` texts drawn with replacement from a built-in dataset's texts."""
    from edgedistill.compress.readers import read_rows

    pool = [t for t, _ in read_rows(dataset)]
    return [pool[i] for i in np.random.default_rng(seed).integers(0, len(pool), n)]


def write_input(texts: list[str], folder: Path, files: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bounds = np.linspace(0, len(texts), files + 1).astype(int)
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        pq.write_table(pa.table({"id": np.arange(a, b), "text": texts[a:b]}), folder / f"part-{k:03d}.parquet")


def single_process(package: Path, texts: list[str]) -> dict[str, Any]:
    """The runtime in this process, on THREADS intra-op threads: a warm-up, then ``texts`` timed."""
    clf = TextClassifier.load(package, threads=THREADS)
    clf.predict(texts[:1000], batch_size=BATCH_SIZE)
    start = time.perf_counter()
    clf.predict(texts, batch_size=BATCH_SIZE)
    seconds = time.perf_counter() - start
    return {"texts": len(texts), "seconds": round(seconds, 3), "texts_per_s": len(texts) / seconds}


def agreement(package: Path, texts: list[str], output: Path) -> dict[str, Any]:
    """The job's rows against the runtime's answer for each row's text, on every row, and the rows' order."""
    import pyarrow.parquet as pq

    got = pq.read_table(output)
    clf = TextClassifier.load(package)
    distinct = sorted(set(texts))
    answers = dict(zip(distinct, clf.predict(distinct, batch_size=BATCH_SIZE)))
    want_labels = [answers[t]["label"] for t in texts]
    want_scores = np.array([answers[t]["score"] for t in texts])
    labels = got.column("label").to_pylist()
    return {"rows": got.num_rows, "distinct_texts": len(distinct),
            "in_order": got.column("id").to_pylist() == list(range(len(texts))),
            "texts_equal": got.column("text").to_pylist() == texts,
            "labels_equal": labels == want_labels,
            "agreement": float(np.mean([a == b for a, b in zip(labels, want_labels)])),
            "max_abs_score_diff": float(np.abs(got.column("score").to_numpy() - want_scores).max())}


def run_job(package: Path, folder: Path, output: Path, workers: int) -> dict[str, Any]:
    import ray

    from edgedistill.runtime.ray_job import IO_RESERVE, RayJobConfig, score

    start = time.perf_counter()
    ray.init(address="local", num_cpus=workers + int(IO_RESERVE), include_dashboard=False, log_to_driver=False)
    started = time.perf_counter() - start
    try:
        result = score(RayJobConfig(package=str(package), input=str(folder), output=str(output),
                                    keep_columns=("id",), threads=THREADS))
    finally:
        ray.shutdown()
    assert result.workers == workers, result
    return {"ray": ray.__version__, "cluster_cpus": workers + int(IO_RESERVE), "cluster_start_s": round(started, 2),
            "workers": result.workers, "threads_per_worker": result.threads, "rows": result.rows,
            "seconds": round(result.seconds, 2), "texts_per_s": result.rows / result.seconds,
            "per_worker_texts_per_s": result.rows / result.seconds / result.workers}


def baseline_package(dataset: str) -> Path:
    """The TF-IDF + logistic-regression baseline of ``dataset``, trained and packaged once into models/."""
    from edgedistill.compress.baseline_package import BaselineConfig, package_baseline

    folder = ROOT / "models" / f"{dataset}-tfidf" / "package"
    if not (folder / "manifest.json").is_file():
        package_baseline(BaselineConfig(data=dataset, output=str(folder)))
    return folder


def write(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ray-scoring.json").write_text(json.dumps(result, indent=2) + "\n")
    job, one, agree = result["job"], result["single_process"], result["agreement"]
    ratio = result["ratio_per_worker"]
    lines = [
        "# Ray Data: scoring a large corpus on a local 2-worker cluster",
        "",
        f"Written by `{result['command']}` on {result['environment'].get('cpu', '?')} ({result['cores']} cores, "
        f"shared by the workers, the driver and Ray), {result['created']}. Package: `{result['package']}` "
        f"({result['model']}). Texts: {result['texts']:,} drawn with replacement from {result['dataset']} "
        f"({agree['distinct_texts']:,} distinct), in {result['files']} Parquet files. Ray {job['ray']}.",
        "",
        "| run | texts | workers x threads | wall s | texts/s | texts/s per worker | of single process |",
        "|---|---|---|---|---|---|---|",
        f"| single process, `TextClassifier.predict` (batch {BATCH_SIZE}; mean of before and after the job) | "
        f"{one['texts']:,} | 1 x {THREADS} | {one['seconds']:.1f} | {one['texts_per_s']:.0f} | "
        f"{one['texts_per_s']:.0f} | 1.00x |",
        f"| Ray Data job (`runtime/ray_job.py`: read, score, write Parquet) | {job['rows']:,} | "
        f"{job['workers']} x {job['threads_per_worker']} | {job['seconds']:.1f} | {job['texts_per_s']:.0f} | "
        f"{job['per_worker_texts_per_s']:.0f} | **{ratio:.2f}x** |",
        "",
        f"- **per worker**: {ratio:.2f}x the single process ({'meets' if ratio >= GOAL else 'misses'} the "
        f"{GOAL:g}x goal); single process before the job {result['single_runs'][0]['texts_per_s']:.0f} texts/s, "
        f"after {result['single_runs'][1]['texts_per_s']:.0f}.",
        f"- **labels**: equal to the runtime's on all {agree['rows']:,} rows: {agree['labels_equal']} "
        f"({agree['agreement']:.4%}); largest score difference {agree['max_abs_score_diff']:.1e}; rows in the "
        f"input's order: {agree['in_order']}; texts as written: {agree['texts_equal']}.",
        "- **load average** (1, 5, 15 min) before: " + ", ".join(f"{x:.2f}" for x in result["load_average_before"])
        + "; after: " + ", ".join(f"{x:.2f}" for x in result["load_average_after"]) + ".",
        f"- **cluster**: `ray.init(num_cpus={job['cluster_cpus']})` on this machine, started in "
        f"{job['cluster_start_s']:.1f} s (not in the job's wall time): {job['workers']} workers of "
        f"{job['threads_per_worker']} CPU and intra-op thread each, and 1 CPU left to Ray Data's listing, reading "
        "and writing tasks; the job's wall time includes starting the actors and loading the package in each.",
        "",
    ]
    (out_dir / "ray-scoring.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, nargs="?", help="a model package (or --baseline)")
    ap.add_argument("--baseline", metavar="DATASET", help="score with the TF-IDF baseline of this built-in dataset "
                    "(trained and packaged into models/DATASET-tfidf/package once)")
    ap.add_argument("--dataset", default="movie-snippets", help="the built-in dataset the texts are drawn from")
    ap.add_argument("--texts", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=50_000, help="texts timed in the single process, each time")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--output-dir", type=Path, default=None, help="default: benchmarks/results/<device>/")
    args = ap.parse_args(argv)
    if (args.package is None) == (args.baseline is None):
        ap.error("give a PACKAGE or --baseline DATASET")
    package = args.package or baseline_package(args.baseline)
    env = environment(threads=THREADS)
    out_dir = args.output_dir or ROOT / "benchmarks" / "results" / device_name(env)
    texts = corpus(args.dataset, args.texts)
    clf = TextClassifier.load(package)
    result: dict[str, Any] = {
        "command": "python benchmarks/ray_scoring.py " + " ".join(recorded_argv(argv or sys.argv[1:])),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "package": recorded(package),
        "model": f"{clf.config.model_type or clf.config.kind}, {clf.config.variant}, {clf.num_labels} labels",
        "dataset": args.dataset, "texts": len(texts), "files": args.files, "cores": available_cpus(),
        "environment": env, "goal": GOAL, "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="edgedistill-ray-") as tmp:
        folder, output = Path(tmp) / "in", Path(tmp) / "out"
        folder.mkdir()
        write_input(texts, folder, args.files)
        print(f"single process, {args.sample:,} texts ...", flush=True)
        runs = [single_process(package, texts[:args.sample])]
        print(f"  {runs[0]}\nRay Data job, {len(texts):,} texts on {args.workers} workers ...", flush=True)
        result["job"] = run_job(package, folder, output, args.workers)
        print(f"  {result['job']}\nsingle process again ...", flush=True)
        runs.append(single_process(package, texts[:args.sample]))
        print("agreement ...", flush=True)
        result["agreement"] = agreement(package, texts, output)
    result["load_average_after"] = os.getloadavg()
    result["single_runs"] = runs
    rate = float(np.mean([r["texts_per_s"] for r in runs]))
    result["single_process"] = {"texts": args.sample, "seconds": float(np.mean([r["seconds"] for r in runs])),
                                "texts_per_s": rate}
    result["ratio_per_worker"] = result["job"]["per_worker_texts_per_s"] / rate
    write(result, out_dir)
    print((out_dir / "ray-scoring.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
