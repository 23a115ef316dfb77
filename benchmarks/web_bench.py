"""The classifier in headless Chromium (transformers.js, WASM) beside the Python runtime, on the same texts.

    python benchmarks/web_bench.py PACKAGE [--threads 1 2] [--texts 32] [--rounds 3] [--loads 3] [--label TEXT]

For one model package it builds the web folder (``edgedistill.runtime.webexport.export_web``), serves it on
127.0.0.1 with cross-origin isolation, and for each WASM thread count opens the demo page in a
fresh headless Chromium (``runtime/web/headless.mjs``, Debian's /usr/bin/chromium driven by
playwright-core, every request not to localhost blocked), ``--loads`` times, interleaved
(1 2 2 1 ...). Each load records:

- load time: navigation start to the classifier ready (page, transformers.js, WASM compile,
  model and tokenizer), and ``loadClassifier``'s own share of it;
- latency per text: after a warm-up by time, each text classified alone (batch 1, as a page
  classifies what a user typed), ``--rounds`` times over the texts; p50 / p90 / p99.

The Python runtime (``TextClassifier``, onnxruntime CPU, the same thread counts) is measured on
the same texts in the same run: load time (``TextClassifier.load``, with its sha256 checks) and
batch-1 latency after the same warm-up. Parity: the page's probabilities for all texts in one
padded batch against ``predict_proba`` (max |difference|, labels equal), beside a yardstick: the
same onnxruntime with graph optimisations off against on.

Results go to ``benchmarks/results/cpu-<machine>/web.{json,md}``. The machine may be shared:
the load average before and after is recorded. Run it under the shared lock:
``flock /tmp/edgedistill-heavy.lock python benchmarks/web_bench.py PACKAGE``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks._paths import recorded  # noqa: E402
from benchmarks.runtime_overhead import review_texts  # noqa: E402
from edgedistill.runtime import TextClassifier  # noqa: E402
from edgedistill.runtime.bench import environment  # noqa: E402
from edgedistill.runtime import npm  # noqa: E402
from edgedistill.runtime import webexport as web  # noqa: E402
from edgedistill.runtime.fsutil import cache_dir  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
HEADLESS = REPO / "runtime" / "web" / "headless.mjs"


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "n": int(a.size)}


def browser_run(url: str, texts: list[str], *, warmup_s: float, rounds: int, parity: bool, env: dict) -> dict:
    job = {"url": url, "chromium": str(CHROMIUM), "mode": "bench", "texts": texts, "warmup_s": warmup_s,
           "rounds": rounds, "parity": parity, "batch_size": len(texts)}
    proc = subprocess.run(["node", str(HEADLESS)], input=json.dumps(job), capture_output=True, text=True, env=env,
                          timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"headless.mjs failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    if result["blocked"] or result["errors"]:
        raise SystemExit(f"the page reached outside or failed: blocked={result['blocked']} errors={result['errors']}")
    return result


def python_run(package: Path, texts: list[str], *, threads: int, warmup_s: float, rounds: int) -> dict:
    t0 = time.perf_counter()
    clf = TextClassifier.load(package, threads=threads)
    load_ms = 1000 * (time.perf_counter() - t0)
    w0, i = time.perf_counter(), 0
    while time.perf_counter() - w0 < warmup_s:
        clf.predict_proba([texts[i % len(texts)]])
        i += 1
    ms = []
    for _ in range(rounds):
        for t in texts:
            s = time.perf_counter()
            clf.predict_proba([t])
            ms.append(1000 * (time.perf_counter() - s))
    return {"load_ms": load_ms, "latencies_ms": ms}


def opt_level_diff(clf: TextClassifier, package: Path, texts: list[str], expected: np.ndarray) -> float:
    """max |Δp| of onnxruntime (CPU), graph optimisations off, against ``expected`` (``clf``: all on), same batch."""
    import onnxruntime as ort

    from edgedistill.runtime.package import MODEL_FILE, open_package

    order = np.argsort([len(t) for t in texts], kind="stable")
    feed = clf.tokenize([texts[i] for i in order])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with open_package(package) as folder:
        session = ort.InferenceSession(str(folder / MODEL_FILE), so, providers=["CPUExecutionProvider"])
    z = session.run([clf.config.output_name], feed)[0]
    e = np.exp(z - z.max(1, keepdims=True))
    probs = np.empty_like(expected)
    probs[order] = e / e.sum(1, keepdims=True)
    return float(np.abs(probs - expected).max())


def tool_versions() -> dict:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "unknown"

    return {"chromium": out([str(CHROMIUM), "--version"]), "node": out(["node", "--version"]),
            "transformers.js": npm.TRANSFORMERS_JS.version, "onnxruntime-web": npm.ONNXRUNTIME_WEB.version,
            "playwright-core": npm.PLAYWRIGHT_CORE.version}


def markdown(r: dict) -> str:
    e, v = r["environment"], r["versions"]
    busy = max(r["loadavg_before"][0], r["loadavg_after"][0]) > 0.5 * (e["logical_cpus"] or 1)
    lines = [
        f"# Browser (transformers.js, WASM) vs Python runtime: {r['package_name']}", "",
        f"{r['created']} · {e['cpu']} ({', '.join(e['cpu_flags'])}) · int8 instruction set "
        f"{e.get('isa') or 'unknown'} · {e['logical_cpus']} logical CPUs · {v['chromium']} (headless) · "
        f"transformers.js {v['transformers.js']} · onnxruntime-web "
        f"{v['onnxruntime-web']} · Node {v['node']} · onnxruntime (Python) {e.get('onnxruntime', '?')}", "",
        f"Package: {r['package']} (variant {r['variant']}, browser dtype {r['dtype']}, model "
        f"{r['model_mb']:.1f} MB, WASM {r['wasm_mb']:.1f} MB). {r['texts']} review-like texts of 8 to 60 words, each "
        f"classified alone (batch 1) {r['rounds']} times after a {r['warmup_s']} s warm-up; "
        f"{r['loads']} fresh page loads per row, interleaved.",
        f"Load average before/after: {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f}"
        + (" — **the machine was busy: latencies are noisy.**" if busy else "."), "",
        "| runtime | threads | p50 ms/text | p90 ms | p99 ms | load ms (median) | of which loadClassifier ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        model_ms = "" if row.get("model_load_ms") is None else f"{row['model_load_ms']:.0f}"
        lines.append(f"| {row['runtime']} | {row['threads']} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} | "
                     f"{row['p99_ms']:.2f} | {row['load_ms']:.0f} | {model_ms} |")
    p = r["parity"]
    lines += ["", f"Parity (all {r['texts']} texts in one padded batch, page vs `predict_proba`): labels equal: "
              f"{p['labels_equal']}, max |Δp| = {p['max_abs_diff']:.2e}."]
    if p.get("x86_opt_levels_max_abs_diff") is not None:
        lines += ["", f"Yardstick: onnxruntime on this CPU against itself, graph optimisations off vs all, same batch: "
                  f"max |Δp| = {p['x86_opt_levels_max_abs_diff']:.2e}."]
    if r["dtype"] == "q8":
        lines += ["", "int8 results depend on the kernels: dynamic quantization rounds activations to 8 bits at run "
                  "time, so tiny floating-point differences upstream flip some roundings (hence the yardstick). On x86 "
                  "without VNNI, onnxruntime's u8 x s8 kernels also saturate on full-range 8-bit weights and WASM's "
                  "do not; 7-bit weights (`reduce_range`, as `QuantizeConfig.avx2()` quantizes) avoid that."]
    lines += ["",
              "Browser load time runs from navigation start to the classifier ready, all from localhost; "
              "`loadClassifier` is its share after the page itself: importing transformers.js, compiling the WASM "
              "runtime, loading the model and the tokenizer. The Python load time is `TextClassifier.load` "
              "(sha256 checks, session, tokenizer) in a warm interpreter."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, help="a model package folder or .zip")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--texts", type=int, default=32, help="how many review-like texts")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the texts per page load")
    ap.add_argument("--loads", type=int, default=3, help="fresh page loads per thread count")
    ap.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before timing")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results" / f"cpu-{platform.machine()}")
    ap.add_argument("--name", default="web", help="file stem of the results")
    ap.add_argument("--label", default=None, help="what the package is, for the report (default: its folder name)")
    args = ap.parse_args()

    if not CHROMIUM.exists():
        raise SystemExit("needs Debian's chromium: apt-get install -y chromium")
    texts = review_texts(args.texts, seed=0)
    node_dir = npm.node_modules([npm.TRANSFORMERS_JS, npm.PLAYWRIGHT_CORE], cache_dir() / "npm" / "node")
    env = {**os.environ, "EDGEDISTILL_NODE_MODULES": str(node_dir)}
    loadavg_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="edgedistill-web-bench-"))
    try:
        site = web.export_web(args.package, tmp / "site")
        build = json.loads((site / web.BUILD_FILE).read_text())
        server = web.make_server(site, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = web.server_url(server) + "index.html"
        browser: dict[int, list[dict]] = {n: [] for n in args.threads}
        order = [n for i in range(args.loads) for n in (args.threads if i % 2 == 0 else args.threads[::-1])]
        for k, n in enumerate(order):
            print(f"browser, {n} thread(s), load {len(browser[n]) + 1}/{args.loads}", file=sys.stderr)
            browser[n].append(browser_run(f"{url}?threads={n}", texts, warmup_s=args.warmup, rounds=args.rounds,
                                          parity=k == 0, env=env))
        python: dict[int, dict] = {}
        for n in args.threads:
            print(f"python runtime, {n} thread(s)", file=sys.stderr)
            python[n] = python_run(args.package, texts, threads=n, warmup_s=args.warmup,
                                   rounds=args.rounds * args.loads)
        server.shutdown()
        server.server_close()

        rows = []
        for n in args.threads:
            runs = browser[n]
            assert all(r["info"]["threads"] == n and r["info"]["crossOriginIsolated"] for r in runs)
            rows.append({"runtime": "browser: transformers.js WASM", "threads": n,
                         **percentiles([ms for r in runs for ms in r["bench"]["latencies_ms"]]),
                         "load_ms": float(np.median([r["ready_ms"] for r in runs])),
                         "model_load_ms": float(np.median([r["info"]["loadMs"] for r in runs])),
                         "load_ms_all": [r["ready_ms"] for r in runs]})
        for n in args.threads:
            rows.append({"runtime": "python: TextClassifier (onnxruntime CPU)", "threads": n,
                         **percentiles(python[n]["latencies_ms"]), "load_ms": python[n]["load_ms"],
                         "model_load_ms": None})
        first = next(r for runs in browser.values() for r in runs if "results" in r)
        labels = first["info"]["labels"]
        clf = TextClassifier.load(args.package)
        expected = clf.predict_proba(texts, batch_size=len(texts))
        got = np.array([[res["probs"][lab] for lab in labels] for res in first["results"]])
        parity = {"x86_opt_levels_max_abs_diff": opt_level_diff(clf, args.package, texts, expected),
                  "labels_equal": [res["label"] for res in first["results"]] == [labels[i] for i in expected.argmax(1)],
                  "max_abs_diff": float(np.abs(got - expected).max()), "threads": first["info"]["threads"]}
        result = {
            "benchmark": "web", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "package": recorded(args.package), "package_name": args.label or args.package.name,
            "variant": build["variant"],
            "dtype": build["dtype"], "model_mb": (site / build["model"]).stat().st_size / 2**20,
            "wasm_mb": (site / "vendor/ort-wasm-simd-threaded.asyncify.wasm").stat().st_size / 2**20,
            "texts": len(texts), "rounds": args.rounds, "loads": args.loads, "warmup_s": args.warmup,
            "batch": 1, "environment": {**environment("cpu", max(args.threads)), "threads": args.threads},
            "versions": tool_versions(), "user_agent": first["user_agent"],
            "loadavg_before": loadavg_before, "loadavg_after": os.getloadavg(), "rows": rows, "parity": parity,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / f"{args.name}.md").write_text(markdown(result))
    suite_json = args.out_dir / "suite.json"
    if suite_json.is_file():  # the suite's report lists the browser rows: refresh it
        from benchmarks.suite import refresh_report

        refresh_report(suite_json, args.out_dir.parent)
    print(markdown(result))


if __name__ == "__main__":
    main()
