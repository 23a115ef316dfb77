"""What the runtime costs over bare onnxruntime, how fast it starts, and how big its install is.

    python benchmarks/runtime_overhead.py PACKAGE [--threads 2] [--seconds 20]

For one model package (folder or .zip) it measures, and writes as JSON and Markdown
under ``benchmarks/results/cpu-<machine>/runtime_overhead.{json,md}``:

1. Overhead. ``TextClassifier.predict_proba(texts)`` (tokenize, sort, pad, run, softmax)
   against a bare ``onnxruntime.InferenceSession.run`` fed the very same token ids,
   tokenized beforehand. Both sessions get the runtime's options (``edgedistill.runtime.classifier``)
   and the CPU provider. Calls alternate A B B A in one process after a warm-up by time;
   each call is timed with perf_counter. Batch 1 and batch 32, texts of review length (8 to
   60 words). The runtime batches as the bare session does (``batch_invariant=False``: the wrapper's cost,
   not that of running a dynamic-int8 model one text at a time). The goal (under 5%) is judged per batch
   size from the pairs (each A call beside its B call on the same input) with a 95% bootstrap interval
   (``edgedistill.runtime.timing.paired_ratio``): met only when the interval's upper bound is under 1.05.
2. Cold start: a fresh interpreter that imports ``runtime``, loads the package (with its
   sha256 checks) and predicts one text; the median of several runs, split by phase.
3. Installed size: a temporary venv with ``pip install .`` (the runtime alone, no extras, dependencies from
   PyPI) against the toolchain venv ``.venv``. The cold start also runs in the base venv, to show that it needs
   nothing else.

The machine may be shared: the load average before and after is recorded with the rows.
Run heavy benchmarks under the shared lock: ``flock /tmp/edgedistill-heavy.lock python ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks._paths import recorded, recorded_argv  # noqa: E402
from edgedistill.runtime import TextClassifier  # noqa: E402
from edgedistill.runtime.bench import environment  # noqa: E402
from edgedistill.runtime.timing import OVERHEAD_GOAL, overall_verdict, paired_ratio, summarize, verdict  # noqa: E402
from edgedistill.runtime.classifier import _session_options  # noqa: E402
from edgedistill.runtime.package import MODEL_FILE, open_package  # noqa: E402

WORDS = ("the film movie story plot acting cast director script ending scene scenes characters performance "
         "was is are were be felt seemed looked quite very really rather too so not never always just "
         "good great bad awful dull boring brilliant moving funny smart warm cold messy flat tedious superb "
         "lovely weak poor fine slow fast long short beautiful ugly clever stupid charming predictable "
         "and but or yet with without of in on at for about from into over after before than as like "
         "i it this that its their his her we you they who which what when while because although "
         "two hours minutes first second third half whole end beginning middle music score camera").split()


def review_texts(n: int, seed: int = 0, min_words: int = 8, max_words: int = 60) -> list[str]:
    """Deterministic review-like texts; movie review snippets run about 8 to 60 words."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(min_words, max_words))
        words[0] = words[0].capitalize()
        texts.append(" ".join(words) + rng.choice([".", "!", "...", "."]))
    return texts


def bare_session(model: bytes, threads: int) -> ort.InferenceSession:
    """The same model with the same session options as the runtime, and nothing around it."""
    return ort.InferenceSession(model, sess_options=_session_options(threads), providers=["CPUExecutionProvider"])


def overhead_case(clf: TextClassifier, bare: ort.InferenceSession, batch: int, seconds: float,
                  warmup: float) -> dict:
    """Interleaved A (runtime predict_proba on texts) / B (bare run on the same pre-tokenized ids)."""
    pools = 64 if batch == 1 else 16
    texts = review_texts(pools * batch, seed=batch)
    batches = [texts[i * batch:(i + 1) * batch] for i in range(pools)]
    feeds = [clf.tokenize(b) for b in batches]  # the ids predict_proba builds: one batch padded to its longest
    output = clf.config.output_name

    def a(i: int) -> float:
        t = time.perf_counter()
        clf.predict_proba(batches[i], batch_size=batch)
        return time.perf_counter() - t

    def b(i: int) -> float:
        t = time.perf_counter()
        bare.run([output], feeds[i])
        return time.perf_counter() - t

    end = time.perf_counter() + warmup
    i = 0
    while time.perf_counter() < end:
        a(i % pools), b(i % pools)
        i += 1
    ta, tb = [], []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end or i < 20:
        k = i % pools
        if i % 2 == 0:
            ta.append(a(k)), tb.append(b(k))
        else:
            tb.append(b(k)), ta.append(a(k))
        i += 1
    sa, sb = summarize(ta, batch), summarize(tb, batch)
    interval = paired_ratio(ta, tb)
    # the tokenizer's share, as predict_proba meets it: right after a session run (its tables out of the caches)
    tok = []
    for i in range(max(200, len(ta) // 4)):
        bare.run([output], feeds[i % pools])
        t = time.perf_counter()
        clf.tokenize(batches[i % pools])
        tok.append(time.perf_counter() - t)
    lengths = [f["input_ids"].shape[1] for f in feeds]
    return {"batch": batch, "padded_tokens_mean": float(np.mean(lengths)),
            "padded_tokens_range": [int(min(lengths)), int(max(lengths))],
            "words_mean": float(np.mean([len(t.split()) for t in texts])),
            "runtime": sa, "bare": sb,
            "overhead_p50_pct": 100 * (sa["p50_ms"] / sb["p50_ms"] - 1),
            "overhead_mean_pct": 100 * (sa["mean_ms"] / sb["mean_ms"] - 1),
            "overhead_p50_ms": sa["p50_ms"] - sb["p50_ms"],
            # each A call sits next to its B call on the same input: the median of the pairs' ratios and
            # differences is robust to the bursts of a shared machine
            "overhead_paired_pct": 100 * (float(np.median(np.asarray(ta) / np.asarray(tb))) - 1),
            "overhead_paired_ms": 1e3 * float(np.median(np.asarray(ta) - np.asarray(tb))),
            "tokenize_after_run_ms": 1e3 * float(np.median(tok)),
            "time_ratio": interval, "verdict": verdict(interval, OVERHEAD_GOAL, "lower")}


COLD_GOAL_S = 0.150
BATCH1_GOAL = 1.03
COLD = r"""
import json, sys, time
t0 = time.perf_counter()
from edgedistill.runtime import TextClassifier
t1 = time.perf_counter()
clf = TextClassifier.load(sys.argv[1], threads=int(sys.argv[2]))
t2 = time.perf_counter()
clf.predict("A warm and funny film with a clever script.")
t3 = time.perf_counter()
heavy = [m for m in ("torch", "transformers") if m in sys.modules]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "total_s": t3 - t0,
                  "heavy_modules": heavy}))
"""


def cold_start(python: str, package: Path, threads: int, runs: int, env: dict | None = None) -> dict:
    """Median over ``runs`` fresh interpreters; ``process_s`` includes the interpreter's own start.

    Python caches compiled modules (``__pycache__``) unless ``PYTHONDONTWRITEBYTECODE`` is set, as it may be in a
    sandbox: it is unset here, as on a user's machine, and one discarded process first writes the cache."""
    env = {k: v for k, v in (os.environ if env is None else env).items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([python, "-c", COLD, str(package), str(threads)], capture_output=True, env=env,
                   cwd=tempfile.gettempdir(), check=False)
    rows = []
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run([python, "-c", COLD, str(package), str(threads)], capture_output=True, text=True,
                             env=env, cwd=tempfile.gettempdir(), check=False)
        wall = time.perf_counter() - t
        if out.returncode != 0:
            raise RuntimeError(f"cold start failed with {python}:\n{out.stderr}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]) | {"process_s": wall})
    med = {k: float(np.median([r[k] for r in rows])) for k in ("import_s", "load_s", "first_predict_s", "total_s",
                                                                "process_s")}
    return {"python": recorded(python), "runs": runs, **med, "heavy_modules": rows[0]["heavy_modules"],
            "bytecode_cached": True, "samples": rows}


def dir_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def largest(site: Path, n: int = 8) -> list[tuple[str, float]]:
    sizes = [(p.name, dir_size(p) / 1e6) for p in site.iterdir() if p.is_dir() and not p.name.endswith("-info")]
    return [(name, round(mb, 1)) for name, mb in sorted(sizes, key=lambda x: -x[1])[:n]]


def install_sizes(package: Path, threads: int, runs: int) -> dict:
    """Base install in a temporary venv vs the toolchain venv; the base venv also predicts once."""
    toolchain = REPO / ".venv"
    with tempfile.TemporaryDirectory(prefix="edgedistill-base-venv-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        empty = dir_size(venv)
        py = str(venv / "bin" / "python")
        build = Path(tmp) / "src"  # a clean copy: no build/ or egg-info of the checkout leaks in
        shutil.copytree(REPO, build, ignore=shutil.ignore_patterns(".venv", ".git", "models", "*.egg-info", "build",
                                                                   "__pycache__", ".pytest_cache", "benchmarks"))
        t = time.perf_counter()
        pip = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(build)],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install of the base package failed:\n{pip.stdout}\n{pip.stderr}")
        install_s = time.perf_counter() - t
        base = dir_size(venv)
        site = next((venv / "lib").glob("python*/site-packages"))
        freeze = subprocess.run([py, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                                capture_output=True, text=True, check=True).stdout.split()
        cold = cold_start(py, package, threads, runs, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        result = {"base_venv_mb": base / 1e6, "empty_venv_mb": empty / 1e6, "base_install_s": install_s,
                  "base_packages": freeze, "base_largest_mb": largest(site),
                  "base_has_torch": any(p.lower().startswith("torch==") for p in freeze),
                  "cold_start_base_venv": cold}
    if toolchain.is_dir():
        tsite = next((toolchain / "lib").glob("python*/site-packages"))
        result |= {"toolchain_venv_mb": dir_size(toolchain) / 1e6, "toolchain_largest_mb": largest(tsite)}
        result["ratio"] = result["toolchain_venv_mb"] / result["base_venv_mb"]
    return result


def markdown(r: dict) -> str:
    e = r["environment"]
    p = r["package"]
    lines = [f"# Runtime overhead: {p['name']} ({p['variant']}, {p['model_mb']:.1f} MB model.onnx, "
             f"max_length {p['max_length']})", "",
             f"{r['created']} · {e['cpu']} ({', '.join(e['cpu_flags'])}) · int8 instruction set "
             f"{e.get('isa') or 'unknown'} · {e['logical_cpus']} logical CPUs · {e['threads']} intra-op threads · "
             f"onnxruntime {e['onnxruntime']} · tokenizers {e['tokenizers']} · "
             f"Python {e['python']} · {e['provider']}", "",
             f"Load average before / after: {r['loadavg_before']} / {r['loadavg_after']}"
             + (" (a shared machine: other jobs ran alongside; read the ratios, not the absolute times)"
                if max(r["loadavg_before"][0], r["loadavg_after"][0]) > 0.5 * (e["logical_cpus"] or 1) else ""), "",
             "## Overhead of `TextClassifier.predict_proba` over a bare session on the same token ids", "",
             "Interleaved A/B (ABBA) in one process, after a timed warm-up; the bare session gets ids tokenized "
             "beforehand and the same session options.", "",
             "| batch | tokens (mean padded) | bare p50 / p90 / p99 ms | runtime p50 / p90 / p99 ms | "
             "overhead p50 | overhead mean | overhead, median of pairs | runtime / bare, 95% interval | "
             f"under {OVERHEAD_GOAL - 1:.0%}? | of which tokenizing (after a run) | runtime texts/s | calls |",
             "|---:|---:|---|---|---:|---:|---:|---|---|---:|---:|---:|"]
    for c in r["overhead"]:
        a, b, ci = c["runtime"], c["bare"], c["time_ratio"]
        lines.append(f"| {c['batch']} | {c['padded_tokens_mean']:.1f} | {b['p50_ms']:.3f} / {b['p90_ms']:.3f} / "
                     f"{b['p99_ms']:.3f} | {a['p50_ms']:.3f} / {a['p90_ms']:.3f} / {a['p99_ms']:.3f} | "
                     f"{c['overhead_p50_pct']:+.1f}% ({c['overhead_p50_ms'] * 1e3:+.0f} µs) | "
                     f"{c['overhead_mean_pct']:+.1f}% | {c['overhead_paired_pct']:+.1f}% "
                     f"({c['overhead_paired_ms'] * 1e3:+.0f} µs) | {ci['ratio']:.3f} [{ci['low']:.3f}, "
                     f"{ci['high']:.3f}] | {c['verdict']} | "
                     + (f"{c['tokenize_after_run_ms'] * 1e3:.0f} µs" if "tokenize_after_run_ms" in c else "")
                     + f" | {a['throughput_per_s']:.0f} | {a['runs']} |")
    lines += ["", f"**Verdict: {r['verdict']}** — under {OVERHEAD_GOAL - 1:.0%} overhead counts as met only when the "
              "upper bound of every batch size's interval (geometric mean of the paired call-time ratios, percentile "
              "bootstrap over the pairs) is at most "
              f"{OVERHEAD_GOAL:g}; not met when a lower bound is above it; otherwise inconclusive."]
    one = next((c for c in r["overhead"] if c["batch"] == 1), None)
    if one is not None:
        high = one["time_ratio"]["high"]
        lines += ["", f"Batch 1 against the tighter goal of {BATCH1_GOAL:g} (issue 27, judged on the interval's upper "
                  f"end {high:.3f}): **{'met' if high <= BATCH1_GOAL else 'not met'}**"
                  + (f", by {100 * (high - BATCH1_GOAL):.1f} points; tokenizing alone takes "
                     f"{one['tokenize_after_run_ms'] * 1e3:.0f} µs of the "
                     f"{(one['runtime']['p50_ms'] - one['bare']['p50_ms']) * 1e3:.0f} µs difference of medians"
                     if high > BATCH1_GOAL and "tokenize_after_run_ms" in one else "") + "."]
    cs = r["cold_start"]
    lines += ["", "## Cold start (fresh interpreter: import edgedistill.runtime, load with sha256 checks, "
              "one prediction)", "",
              "| environment | import s | load s | first predict s | in-process total s | process wall s | "
              "torch/transformers imported |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, c in cs.items():
        lines.append(f"| {name} | {c['import_s']:.3f} | {c['load_s']:.3f} | {c['first_predict_s']:.3f} | "
                     f"{c['total_s']:.3f} | {c['process_s']:.3f} | {', '.join(c['heavy_modules']) or 'no'} |")
    lines.append(f"\nMedian of {next(iter(cs.values()))['runs']} fresh processes each, after one that writes Python's "
                 "bytecode cache (as on a user's machine; PYTHONDONTWRITEBYTECODE unset). Goal: in-process total "
                 f"(import + load + first prediction) ≤ {COLD_GOAL_S * 1e3:.0f} ms in the base install: "
                 + ("met" if cs.get("base install venv", {}).get("total_s", 1.0) <= COLD_GOAL_S else "not met") + ".")
    s = r.get("install_size")
    if s:
        lines += ["", "## Installed size", "",
                  "| venv | size MB | largest packages (MB) |", "|---|---:|---|",
                  f"| empty (`python -m venv`) | {s['empty_venv_mb']:.0f} | |",
                  f"| base install (`pip install .`, no extras) | {s['base_venv_mb']:.0f} | "
                  + ", ".join(f"{n} {m}" for n, m in s["base_largest_mb"]) + " |"]
        if "toolchain_venv_mb" in s:
            lines.append(f"| toolchain (`.venv`: compress + dev extras) | {s['toolchain_venv_mb']:.0f} | "
                         + ", ".join(f"{n} {m}" for n, m in s["toolchain_largest_mb"]) + " |")
            lines.append(f"\nThe toolchain venv is {s['ratio']:.1f}x the base install. ")
        lines.append(f"The base venv holds {len(s['base_packages'])} packages, torch: "
                     f"{'yes' if s['base_has_torch'] else 'no'}; the cold starts above ran in it (the runtime "
                     "alone: the CLI is the `cli` extra).")
    lines += ["", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, help="a model package folder or .zip")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads for both sessions")
    ap.add_argument("--seconds", type=float, default=20.0, help="measuring time per batch size")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up time per batch size")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--no-install-size", action="store_true", help="skip the venv install and size measurement")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results" / f"cpu-{platform.machine()}")
    ap.add_argument("--name", default="runtime_overhead", help="file stem of the results")
    ap.add_argument("--label", default=None, help="what the package is, for the report (default: its folder name)")
    args = ap.parse_args()

    load_before = [round(x, 2) for x in os.getloadavg()]
    # batched like the bare session, so both do the same work and the difference is the wrapper's; what running a
    # dynamic-int8 model one text at a time (the default, for batch-invariant answers) costs is
    # benchmarks/batch_invariance.py's measurement
    clf = TextClassifier.load(args.package, threads=args.threads, batch_invariant=False)
    with open_package(args.package) as folder:
        bare = bare_session((folder / MODEL_FILE).read_bytes(), args.threads)
    overhead = []
    for batch in args.batches:
        c = overhead_case(clf, bare, batch, args.seconds, args.warmup)
        ci = c["time_ratio"]
        print(f"batch {batch}: bare p50 {c['bare']['p50_ms']:.3f} ms, runtime p50 {c['runtime']['p50_ms']:.3f} ms, "
              f"overhead p50 {c['overhead_p50_pct']:+.1f}%, mean {c['overhead_mean_pct']:+.1f}%, "
              f"paired {c['overhead_paired_pct']:+.1f}%; runtime / bare {ci['ratio']:.3f} "
              f"[{ci['low']:.3f}, {ci['high']:.3f}] ({ci['pairs']} pairs): {c['verdict']}", flush=True)
        overhead.append(c)
    cold = {"toolchain venv (.venv)": cold_start(sys.executable, args.package.resolve(), args.threads,
                                                 args.cold_runs, env=os.environ | {"PYTHONPATH": str(REPO)})}
    print(f"cold start: {cold['toolchain venv (.venv)']['total_s']:.3f} s in process", flush=True)
    sizes = None
    if not args.no_install_size:
        sizes = install_sizes(args.package.resolve(), args.threads, args.cold_runs)
        cold["base install venv"] = sizes.pop("cold_start_base_venv")
        print(f"base venv {sizes['base_venv_mb']:.0f} MB vs toolchain {sizes.get('toolchain_venv_mb', 0):.0f} MB",
              flush=True)
    manifest = clf.manifest or {}
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "command": shlex.join(["python", *recorded_argv(sys.argv)]),
        "package": {"path": recorded(args.package), "name": args.label or Path(args.package).name.removesuffix(".zip"),
                    "variant": clf.config.variant, "model_type": clf.config.model_type,
                    "max_length": clf.max_length, "labels": clf.labels,
                    "model_mb": manifest.get("files", {}).get(MODEL_FILE, {}).get("size", 0) / 1e6,
                    "model_sha256": manifest.get("files", {}).get(MODEL_FILE, {}).get("sha256")},
        "environment": environment("cpu", args.threads),
        "loadavg_before": load_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "overhead": overhead, "verdict": overall_verdict(c["verdict"] for c in overhead),
        "cold_start": cold, "install_size": sizes,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / f"{args.name}.md").write_text(markdown(result))
    print(f"wrote {args.out_dir / (args.name + '.json')} and .md")


if __name__ == "__main__":
    main()
