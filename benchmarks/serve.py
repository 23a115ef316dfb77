"""Load test of ``edgedistill serve`` over loopback: closed-loop clients at 1, 8 and 64, an open-loop overload, a
shutdown under load, and the v2 protocol's labels against ``TextClassifier``.

    flock /tmp/edgedistill-heavy.lock .venv/bin/python benchmarks/serve.py models/movie-sentiment/package
    python benchmarks/serve.py PACKAGE --seconds 2 --overload-seconds 1 --output-dir /tmp/serve   # a smoke run

What it does, each part bounded in time:

1. **in-process**: the runtime's own throughput, ``TextClassifier.predict_proba(texts, batch_size=32)`` on the
   same texts, same threads (the bar the server is held to: 0.9x of it at 64 clients);
2. **closed loop**: the server in a child process (``edgedistill serve PACKAGE``, access log off); ``c`` clients
   (1, 8, 64), each sending one text per ``POST /predict`` and the next as soon as the answer comes, for
   ``--seconds``: throughput, latency p50 / p99, the texts per batch (from the server's ``/metrics``), errors;
3. **overload**: a server with a short queue (``--max-queue 32``) gets requests at 3x the throughput measured at 64
   clients, on time whatever the answers (open loop), for ``--overload-seconds``: each answer is a 200 or a 503;
   a connection error, a timeout, another status or a dead server counts as a failure; afterwards the server must
   still answer;
4. **drain**: 64 requests in flight, then SIGTERM: every one of them must be answered;
5. **protocol**: ``POST /v2/models/NAME/infer``, a request built from the Open Inference Protocol v2 by hand,
   gives ``TextClassifier.predict``'s labels on every test text; so does NVIDIA's ``tritonclient`` (a stock v2
   client, in its own environment: ``make peers``), with its binary tensor data and in JSON.

The load generator is a small HTTP/1.1 keep-alive client on asyncio streams (no client library: on 2 cores every
client microsecond is taken from the server), run in this process; the server is another. Results:
``benchmarks/results/<device>/serve.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._paths import recorded  # noqa: E402
from edgedistill.runtime import TextClassifier  # noqa: E402
from edgedistill.runtime.bench import SENTENCES, available_cpus, device_name, environment  # noqa: E402

NAME = "model"
CONCURRENCY = (1, 8, 64)
GOAL = 0.9
"""Throughput at 64 clients against the in-process batch-32 throughput (issue 27)."""


# ----------------------------------------------------------------------------------------------- the client
class Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read the status and the JSON answer."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        self.writer.write(head + payload)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, json.loads(data) if data else None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _get_json(port: int, path: str, body: Any = None) -> tuple[int, Any]:
    c = Connection(port)
    try:
        return await c.request("POST" if body is not None else "GET", path, body)
    finally:
        await c.close()


async def _metrics(port: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    raw = (await reader.read()).decode()
    writer.close()
    out = {}
    for m in re.finditer(r"^(edgedistill_batch_texts_(?:sum|count))\{[^}]*\} ([0-9.e+]+)$", raw, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


# ----------------------------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(package: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    cmd = [sys.executable, "-m", "edgedistill.compress.cli", "serve", f"{NAME}={package}", "--port", str(port),
           "--no-access-log", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stdout.read()}")
        try:
            if asyncio.run(_get_json(port, "/v2/health/ready"))[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not get ready in 120 s")


def stop_server(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return out


# ----------------------------------------------------------------------------------------------- the runs
async def closed_loop(port: int, clients: int, seconds: float, texts: list[str]) -> dict[str, Any]:
    """``clients`` connections, each with one request in flight at a time, for ``seconds`` (after 1 s warm-up)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    stop_warm = time.perf_counter() + 1.0
    before: dict[str, float] = {}
    end = stop_warm + seconds

    async def client(k: int) -> None:
        nonlocal errors
        conn, i = Connection(port), k
        try:
            while (now := time.perf_counter()) < end:
                start = now
                try:
                    status, _ = await conn.request("POST", "/predict", {"texts": [texts[i % len(texts)]]})
                except (OSError, asyncio.IncompleteReadError, ConnectionError):
                    errors += 1
                    await conn.close()
                    continue
                i += clients
                if start >= stop_warm:
                    latencies.append(time.perf_counter() - start)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            await conn.close()

    async def snapshot() -> None:
        await asyncio.sleep(max(0.0, stop_warm - time.perf_counter()))
        before.update(await _metrics(port))

    await asyncio.gather(snapshot(), *(client(k) for k in range(clients)))
    after = await _metrics(port)
    n = len(latencies)
    batches = after["edgedistill_batch_texts_count"] - before.get("edgedistill_batch_texts_count", 0)
    batch_texts = after["edgedistill_batch_texts_sum"] - before.get("edgedistill_batch_texts_sum", 0)
    lat = np.array(latencies) * 1000
    return {"clients": clients, "requests": n, "seconds": seconds, "texts_per_s": n / seconds,
            "p50_ms": float(np.percentile(lat, 50)) if n else None,
            "p99_ms": float(np.percentile(lat, 99)) if n else None,
            "mean_batch": batch_texts / batches if batches else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": errors}


async def open_loop(port: int, rate: float, seconds: float, texts: list[str]) -> dict[str, Any]:
    """Requests sent at ``rate`` per second on schedule, each on its own connection, whatever the answers."""
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    start = time.perf_counter()
    total = int(rate * seconds)

    async def one(i: int) -> None:
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        t0 = time.perf_counter()
        try:
            status, _ = await asyncio.wait_for(_get_json(port, "/predict", {"texts": [texts[i % len(texts)]]}), 30)
            key = str(status)
            if status == 200:
                latencies.append(time.perf_counter() - t0)
        except asyncio.TimeoutError:
            key = "timeout"
        except (OSError, asyncio.IncompleteReadError, ConnectionError) as e:
            key = f"error: {type(e).__name__}"
        statuses[key] = statuses.get(key, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    lat = np.array(latencies) * 1000
    failures = sum(v for k, v in statuses.items() if k not in ("200", "503"))
    return {"rate_per_s": rate, "seconds": seconds, "sent": total, "statuses": dict(sorted(statuses.items())),
            "answered_200": statuses.get("200", 0), "refused_503": statuses.get("503", 0), "failures": failures,
            "p50_ms_200": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms_200": float(np.percentile(lat, 99)) if len(lat) else None}


async def drain(proc: subprocess.Popen, port: int, texts: list[str], in_flight: int = 64) -> dict[str, Any]:
    """``in_flight`` requests sent, SIGTERM while they wait: how many were answered, and how."""
    conns = [Connection(port) for _ in range(in_flight)]
    for c in conns:  # connected before the signal: uvicorn refuses new connections once it has it
        await c.request("GET", "/v2/health/live")
    tasks = [asyncio.ensure_future(c.request("POST", "/predict", {"texts": [texts[i % len(texts)]] * 4}))
             for i, c in enumerate(conns)]
    await asyncio.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    statuses: dict[str, int] = {}
    for r in results:
        key = str(r[0]) if isinstance(r, tuple) else f"error: {type(r).__name__}"
        statuses[key] = statuses.get(key, 0) + 1
    for c in conns:
        await c.close()
    return {"in_flight": in_flight, "statuses": statuses, "answered": statuses.get("200", 0)}


def in_process(package: Path, texts: list[str], seconds: float, threads: int) -> dict[str, Any]:
    clf = TextClassifier.load(package, threads=threads)
    batch = (texts * (1 + 256 // len(texts)))[:256]
    clf.predict_proba(batch, batch_size=32)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        clf.predict_proba(batch, batch_size=32)
        n += len(batch)
    return {"texts_per_s": n / elapsed, "batch_size": 32, "threads": threads, "runs_alone": clf.runs_alone,
            "variant": clf.config.variant}


def tritonclient_check(python: Path, port: int, want: list[str], texts: list[str]) -> dict[str, Any]:
    """NVIDIA's tritonclient (its own environment: ``make peers``), binary and JSON, against ``want``."""
    script = ROOT / "benchmarks" / "peers" / "tritonclient_check.py"
    run = subprocess.run([str(python), str(script), str(port), NAME], input=json.dumps(texts), capture_output=True,
                         text=True, timeout=300)
    if run.returncode:
        return {"error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"}
    got = json.loads(run.stdout)
    return {"ready": got["ready"], "labels_equal_binary": got["binary"] == want,
            "labels_equal_json": got["json"] == want}


def protocol_check(port: int, package: Path, texts: list[str]) -> dict[str, Any]:
    clf = TextClassifier.load(package, threads=1)
    want = [p["label"] for p in clf.predict(texts)]
    got: list[str] = []
    for start in range(0, len(texts), 64):
        part = texts[start:start + 64]
        body = {"inputs": [{"name": "text", "shape": [len(part), 1], "datatype": "BYTES", "data": part}]}
        status, out = asyncio.run(_get_json(port, f"/v2/models/{NAME}/infer", body))
        assert status == 200, out
        got += next(o for o in out["outputs"] if o["name"] == "label")["data"]
    return {"texts": len(texts), "labels_equal": got == want, "agreement": float(np.mean([a == b for a, b in
                                                                                          zip(got, want)])),
            "want": want}


# ----------------------------------------------------------------------------------------------- reporting
def write(result: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    base = result["in_process"]["texts_per_s"]
    lines = [
        "# edgedistill serve: load test over loopback",
        "",
        f"Written by `{result['command']}` on {result['environment'].get('cpu', '?')}, {result['created']}. "
        f"Package: `{result['package']}` ({result['in_process']['variant']}"
        + (", batch-dependent: one text per session call" if result["in_process"]["runs_alone"] else "")
        + f"); server and clients share the machine's {result['cores']} cores.",
        "",
        f"In-process `TextClassifier.predict_proba(batch_size=32)`: **{base:.0f} texts/s** (the bar: "
        f"{GOAL:g}x of it at 64 clients).",
        "",
        "| run | clients | requests | texts/s | of in-process | p50 ms | p99 ms | texts per batch | non-200 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["closed_loop"]:
        non200 = sum(v for k, v in r["statuses"].items() if k != "200")
        lines.append(f"| closed loop | {r['clients']} | {r['requests']:,} | {r['texts_per_s']:.0f} | "
                     f"{r['texts_per_s'] / base:.2f}x | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['mean_batch']:.1f} | {non200} | {r['errors']} |")
    o, d, p = result["overload"], result["drain"], result["protocol"]
    at64 = next(r for r in result["closed_loop"] if r["clients"] == max(CONCURRENCY))
    lines += [
        "",
        f"- **64 clients**: {at64['texts_per_s'] / base:.2f}x the in-process throughput "
        f"({'meets' if at64['texts_per_s'] >= GOAL * base else 'misses'} the {GOAL:g}x goal), p99 "
        f"{at64['p99_ms']:.1f} ms.",
        f"- **overload** (open loop, {o['rate_per_s']:.0f} requests/s for {o['seconds']:g} s, `--max-queue 32`): "
        f"{o['sent']:,} sent, {o['answered_200']:,} answered 200 (p99 {o['p99_ms_200'] or 0:.1f} ms), "
        f"{o['refused_503']:,} refused 503 with Retry-After, **{o['failures']} failures** (timeouts, connection "
        f"errors, other statuses); the server answered afterwards: {result['alive_after_overload']}.",
        f"- **drain**: {d['in_flight']} requests in flight at SIGTERM, {d['answered']} answered 200 "
        f"({d['statuses']}); exit status {result['drain_exit']}.",
        f"- **protocol**: `POST /v2/models/{NAME}/infer` (a v2 request built by hand) on {p['texts']} texts: labels "
        f"equal to `TextClassifier.predict`: {p['labels_equal']} ({p['agreement']:.1%}).",
    ]
    t = result.get("tritonclient")
    lines.append("- **tritonclient** (NVIDIA's stock v2 client over HTTP, `benchmarks/peers/tritonclient_check.py`): "
                 + ("not run (no `.venv-tritonclient`: `make peers`)" if t is None else
                    f"failed: {t['error']}" if "error" in t else
                    f"server and model ready: {t['ready']}; labels equal to `TextClassifier.predict` with its "
                    f"default binary tensor data: {t['labels_equal_binary']}, in JSON: {t['labels_equal_json']}")
                 + ".")
    lines.append("")
    (out_dir / "serve.md").write_text("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    xs = [str(r["clients"]) for r in result["closed_loop"]]
    ax[0].bar(xs, [r["texts_per_s"] for r in result["closed_loop"]], color="#4c72b0")
    ax[0].axhline(base, color="k", ls="--", lw=1, label="in-process, batch 32")
    ax[0].axhline(GOAL * base, color="r", ls=":", lw=1, label=f"{GOAL:g}x of it")
    ax[0].set(xlabel="concurrent clients", ylabel="texts/s", title="throughput")
    ax[0].legend(fontsize=8)
    ax[1].bar(xs, [r["p99_ms"] for r in result["closed_loop"]], color="#dd8452", label="p99")
    ax[1].bar(xs, [r["p50_ms"] for r in result["closed_loop"]], color="#55a868", label="p50")
    ax[1].set(xlabel="concurrent clients", ylabel="ms", title="latency per request")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "serve.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path, nargs="?", default=ROOT / "models" / "movie-sentiment" / "package")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per closed-loop run")
    ap.add_argument("--overload-seconds", type=float, default=5.0)
    ap.add_argument("--output-dir", type=Path, default=None, help="default: benchmarks/results/<device>/")
    ap.add_argument("--tritonclient-python", type=Path, default=ROOT / ".venv-tritonclient" / "bin" / "python",
                    help="Python of an environment with tritonclient[http] (`make peers`); skipped where missing")
    args = ap.parse_args(argv)
    cores = available_cpus()
    texts = list(SENTENCES)
    out_dir = args.output_dir or ROOT / "benchmarks" / "results" / device_name(environment())
    print(f"in-process throughput ({cores} threads) ...", flush=True)
    result: dict[str, Any] = {
        "command": "python benchmarks/serve.py " + " ".join(recorded(a) for a in (argv or sys.argv[1:])),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "package": recorded(args.package),
        "cores": cores, "environment": environment(),
        "in_process": in_process(args.package, texts, args.seconds, cores)}
    proc, port = start_server(args.package)
    try:
        result["protocol"] = protocol_check(port, args.package, texts)
        want = result["protocol"].pop("want")
        if args.tritonclient_python.exists():
            result["tritonclient"] = tritonclient_check(args.tritonclient_python, port, want, texts)
        result["closed_loop"] = []
        for c in CONCURRENCY:
            print(f"closed loop, {c} clients ...", flush=True)
            result["closed_loop"].append(asyncio.run(closed_loop(port, c, args.seconds, texts)))
            print(f"  {result['closed_loop'][-1]}", flush=True)
    finally:
        stop_server(proc)
    capacity = result["closed_loop"][-1]["texts_per_s"]
    proc, port = start_server(args.package, "--max-queue", "32", "--max-texts", "8")
    try:
        print(f"overload at {3 * capacity:.0f} requests/s ...", flush=True)
        result["overload"] = asyncio.run(open_loop(port, 3 * capacity, args.overload_seconds, texts))
        status, _ = asyncio.run(_get_json(port, "/predict", {"texts": ["still there?"]}))
        result["alive_after_overload"] = status == 200 and proc.poll() is None
    finally:
        stop_server(proc)
    proc, port = start_server(args.package)
    result["drain"] = asyncio.run(drain(proc, port, texts))
    proc.communicate(timeout=60)
    result["drain_exit"] = proc.returncode
    write(result, out_dir)
    print((out_dir / "serve.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
