"""The classifier in headless Chromium: the web export (transformers.js, onnxruntime-web WASM) of a package,
served on localhost and driven by ``runtime/web/headless.mjs`` (playwright-core and the system's Chromium;
every request not to localhost is blocked)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
PAGE_TIMEOUT_S = 1800
WASM_THREADS = 1  # one thread: deterministic reductions, as the ARM workers run
BATCH_SIZE = 1  # each text alone, as the demo page classifies what a user types


class BrowserUnavailable(RuntimeError):
    """Node.js, Chromium or the pinned npm packages cannot be had on this machine."""


class PageError(RuntimeError):
    """The page ran and failed (the model did not load in WASM, a script error, a request to the outside)."""


def chromium() -> Path:
    """The system's Chromium (playwright drives it; it never downloads a browser)."""
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return Path(found)
    raise BrowserUnavailable("no Chromium here (Debian/Ubuntu: apt-get install -y chromium)")


def browser_env() -> dict[str, str]:
    """The environment ``headless.mjs`` runs in: the pinned playwright-core (and transformers.js) installed."""
    from edgedistill.runtime import npm
    from edgedistill.runtime import webexport as web

    if shutil.which("node") is None:
        raise BrowserUnavailable("Node.js is not installed (Debian/Ubuntu: apt-get install -y nodejs npm)")
    try:
        for pkg in (npm.TRANSFORMERS_JS, npm.ONNXRUNTIME_WEB):  # what every web folder is built from
            npm.npm_tarball(pkg)
        folder = npm.node_modules([npm.TRANSFORMERS_JS, npm.PLAYWRIGHT_CORE])
    except web.WebExportError as e:
        raise BrowserUnavailable(str(e)) from None
    return {**os.environ, "EDGEDISTILL_NODE_MODULES": str(folder)}


def classify(packages: list[Path], texts: list[str], work: Path) -> list[np.ndarray]:
    """Each package's probabilities (in its label order) for ``texts`` in headless Chromium."""
    from edgedistill.runtime import webexport as web
    from edgedistill.runtime.package import open_package, read_config

    browser, env = chromium(), browser_env()
    out = []
    for i, package in enumerate(packages):
        try:
            site = web.export_web(package, work / f"site-{i}")
        except web.WebExportError as e:  # this model cannot be put on a page (its type, its variant)
            raise PageError(str(e)) from None
        with open_package(package) as folder:
            labels = list(read_config(folder / "config.json").labels)
        server = web.make_server(site, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            job = {"mode": "classify", "chromium": str(browser), "texts": texts, "batch_size": BATCH_SIZE,
                   "url": web.server_url(server) + f"index.html?threads={WASM_THREADS}"}
            proc = subprocess.run(["node", str(Path(web.TEMPLATE_DIR) / "headless.mjs")], input=json.dumps(job),
                                  capture_output=True, text=True, env=env, timeout=PAGE_TIMEOUT_S)
        finally:
            server.shutdown()
            server.server_close()
        if proc.returncode != 0:
            raise PageError(f"headless Chromium failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
        result = json.loads(proc.stdout)
        if result["blocked"] or result["errors"]:
            raise PageError(f"the page reached outside or failed: blocked={result['blocked'][:3]} "
                            f"errors={result['errors'][:3]}")
        out.append(np.array([[r["probs"][lab] for lab in labels] for r in result["results"]], dtype=np.float64))
        shutil.rmtree(site, ignore_errors=True)
    return out
