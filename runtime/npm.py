"""The JavaScript a web folder and the Node.js checks run on: npm packages pinned at exact versions and sha512
integrities (:data:`TRANSFORMERS_JS`, :data:`ONNXRUNTIME_WEB`, :data:`PLAYWRIGHT_CORE`), fetched with ``npm pack``
into ``$EDGEDISTILL_CACHE/npm/`` and checked on every use (:func:`npm_tarball`), the files a page needs read out
of them (:func:`write_vendor`), and a ``node_modules`` folder for the Node.js runs (:func:`node_modules`).
``$EDGEDISTILL_OFFLINE=1`` forbids every fetch. Standard library only."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edgedistill.runtime.errors import RuntimeBaseError
from edgedistill.runtime.fsutil import cache_dir

log = logging.getLogger("edgedistill.runtime.webexport")

MAX_MEMBER_BYTES = 256 << 20  # a tarball member larger than this is not one of ours


class WebExportError(RuntimeBaseError):
    """A web folder cannot be built or served; the message names the package, file or npm package."""


@dataclass(frozen=True)
class NpmPackage:
    """One npm package at an exact version with the sha512 ``dist.integrity`` the registry publishes."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>", as `npm view NAME@VERSION dist.integrity` prints it

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:
        """The file name `npm pack` gives: '@scope/name' -> 'scope-name-VERSION.tgz'."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


# transformers.js: the page imports dist/transformers.min.js (it bundles onnxruntime-web's JavaScript).
TRANSFORMERS_JS = NpmPackage(
    "@huggingface/transformers", "4.3.1",
    "sha512-5+voSeUCFK6PCKlY15dPhNOKq3/zOTxDN7oC+Wy9dFb1QZ0TSQomZRRy7URRK8YRuUoE9fGMQTTPC5d/pWBJhA==")
# The WASM runtime: exactly the version transformers.js 4.3.1 depends on (its package.json; checked on use).
ONNXRUNTIME_WEB = NpmPackage(
    "onnxruntime-web", "1.31.0-dev.20260914-8d85527a0",
    "sha512-Iy7rtadoBgxS/LLvDr3QW38DB1PNXRnr0GJMcL0TAt7c9qjgVQl83UlGCVyeAnK2InpmW8Uc3PL8XIuqtDeF6g==")
# Drives the system's Chromium (/usr/bin/chromium) in the tests and the benchmark; never downloads a browser.
PLAYWRIGHT_CORE = NpmPackage(
    "playwright-core", "1.65.1",
    "sha512-hqPpz7blSMPxWVdoeE1yiBSzXsKiVOd2k+kjCvmUywD2GPO2Dd9HfcWnq9NN0GHbNZDFgZ9JfBFr+X5/BLo0qw==")

# (tarball, member inside it, file name under vendor/)
VENDOR_FILES = (
    (TRANSFORMERS_JS, "package/dist/transformers.min.js", "transformers.min.js"),
    (TRANSFORMERS_JS, "package/LICENSE", "LICENSE.transformers.js.txt"),
    (ONNXRUNTIME_WEB, "package/dist/ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.mjs"),
    (ONNXRUNTIME_WEB, "package/dist/ort-wasm-simd-threaded.asyncify.wasm", "ort-wasm-simd-threaded.asyncify.wasm"),
)  # onnxruntime-web's tarball has no LICENSE file: its package.json says MIT (recorded in edgedistill-web.json)

# The one npm line that makes classify.mjs run (onnxruntime-node's install script would reach for NuGet;
# its CPU binary is already in the npm package, so the scripts are skipped).
NODE_INSTALL = f"npm install --ignore-scripts --no-audit --no-fund {TRANSFORMERS_JS.spec}"


def _offline() -> bool:
    return os.environ.get("EDGEDISTILL_OFFLINE", "") not in ("", "0")


def sri_sha512(path: Path) -> str:
    """The Subresource-Integrity form npm uses: ``sha512-`` + base64 of the digest."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return "sha512-" + base64.b64encode(h.digest()).decode("ascii")


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise WebExportError("npm is not installed; it fetches transformers.js and onnxruntime-web "
                             "(Debian/Ubuntu: apt-get install -y npm; or install Node.js 20+ from nodejs.org)")
    return npm


def npm_tarball(pkg: NpmPackage, cache: Path | None = None) -> Path:
    """The verified tarball of ``pkg`` under ``cache/npm/``, fetched with ``npm pack`` when missing.

    The sha512 is checked on every use against the pinned integrity; a mismatch is never used.
    ``$EDGEDISTILL_OFFLINE=1`` forbids the fetch.
    """
    folder = (cache or cache_dir()) / "npm"
    path = folder / pkg.tarball
    if not path.is_file():
        if _offline():
            raise WebExportError(f"{pkg.spec} is not in the cache ({path}) and EDGEDISTILL_OFFLINE forbids "
                                 "fetching it")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=folder) as tmp:
            log.info("fetching %s from the npm registry", pkg.spec)
            proc = subprocess.run([_npm(), "pack", pkg.spec, "--pack-destination", tmp, "--ignore-scripts",
                                   "--silent"], capture_output=True, text=True, cwd=tmp)
            got = Path(tmp) / pkg.tarball
            if proc.returncode != 0 or not got.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise WebExportError(f"npm pack {pkg.spec} failed: {' | '.join(tail) or 'no tarball written'}")
            _check_integrity(pkg, got)  # before it enters the cache
            os.replace(got, path)
    _check_integrity(pkg, path)
    return path


def _check_integrity(pkg: NpmPackage, path: Path) -> None:
    actual = sri_sha512(path)
    if actual != pkg.integrity:
        raise WebExportError(f"{path}: integrity {actual} of {pkg.spec} does not match the pinned {pkg.integrity}; "
                             "delete the file to fetch it again")


def read_members(tgz: Path, members: Iterable[str]) -> dict[str, bytes]:
    """Regular files out of an npm tarball, in one pass; links, devices and oversized members are refused."""
    wanted, found = set(members), {}
    try:
        with tarfile.open(tgz, "r:gz") as tf:
            for info in tf:
                if info.name not in wanted:
                    continue
                if not info.isfile():
                    raise WebExportError(f"{tgz}: member {info.name} is not a regular file; refusing it")
                if info.size > MAX_MEMBER_BYTES:
                    raise WebExportError(f"{tgz}: member {info.name} is {info.size} bytes, over {MAX_MEMBER_BYTES}")
                f = tf.extractfile(info)
                assert f is not None  # a regular file always has a stream
                found[info.name] = f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise WebExportError(f"{tgz}: unreadable tarball ({e}); delete it to fetch it again") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise WebExportError(f"{tgz}: has no member {', '.join(missing)}")
    return found


def check_versions(transformers_files: Mapping[str, bytes]) -> None:
    """The pinned onnxruntime-web must be the one the pinned transformers.js depends on and bundles."""
    manifest = json.loads(transformers_files["package/package.json"])
    wanted = manifest.get("dependencies", {}).get(ONNXRUNTIME_WEB.name)
    if wanted != ONNXRUNTIME_WEB.version:
        raise WebExportError(f"{TRANSFORMERS_JS.spec} depends on {ONNXRUNTIME_WEB.name}@{wanted}, but "
                             f"{ONNXRUNTIME_WEB.spec} is pinned: pin both together in runtime/npm.py")
    if ONNXRUNTIME_WEB.version.encode() not in transformers_files["package/dist/transformers.min.js"]:
        raise WebExportError(f"{TRANSFORMERS_JS.spec}'s transformers.min.js does not bundle "
                             f"{ONNXRUNTIME_WEB.spec}: the WASM files would not match its JavaScript")


def write_vendor(dest: Path, cache: Path | None = None) -> dict[str, str]:
    """Write the JavaScript and WASM files the page needs into ``dest``; returns {npm package: license}."""
    dest.mkdir(parents=True, exist_ok=True)
    licenses = {}
    for pkg in (TRANSFORMERS_JS, ONNXRUNTIME_WEB):
        files = [(member, name) for p, member, name in VENDOR_FILES if p == pkg]
        blobs = read_members(npm_tarball(pkg, cache), [m for m, _ in files] + ["package/package.json"])
        if pkg == TRANSFORMERS_JS:
            check_versions(blobs)
        for member, name in files:
            (dest / name).write_bytes(blobs[member])
        licenses[pkg.spec] = json.loads(blobs["package/package.json"]).get("license", "unknown")
    return licenses


def node_modules(packages: Iterable[NpmPackage], dest: Path | None = None) -> Path:
    """An npm project folder whose ``node_modules`` holds ``packages`` at their pinned versions.

    Default ``cache/npm/node``. Installed with ``--ignore-scripts`` (onnxruntime-node's script
    downloads from NuGet; its CPU binary is in the npm package) and reused while the pins match.
    Point ``EDGEDISTILL_NODE_MODULES`` at the returned folder to run ``classify.mjs`` with it.
    """
    packages = sorted(packages, key=lambda p: p.name)
    dest = dest or cache_dir() / "npm" / "node"
    marker = dest / ".edgedistill-npm.json"
    want = {p.name: p.version for p in packages}
    if marker.is_file() and json.loads(marker.read_text()) == want and _installed(dest, packages):
        return dest
    if _offline():
        raise WebExportError(f"{', '.join(p.spec for p in packages)} are not installed in {dest} and "
                             "EDGEDISTILL_OFFLINE forbids installing them")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "package.json").write_text(json.dumps({"private": True, "dependencies": want}, indent=2) + "\n")
    log.info("installing %s into %s", ", ".join(p.spec for p in packages), dest)
    env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
    proc = subprocess.run([_npm(), "install", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact"],
                          cwd=dest, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not _installed(dest, packages):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise WebExportError(f"npm install in {dest} failed: {' | '.join(tail) or 'packages missing afterwards'}")
    marker.write_text(json.dumps(want, indent=2))
    return dest


def _installed(dest: Path, packages: Iterable[NpmPackage]) -> bool:
    """Every package there at its version, with the pinned integrity in package-lock.json."""
    lock_path = dest / "package-lock.json"
    lock = json.loads(lock_path.read_text()).get("packages", {}) if lock_path.is_file() else {}
    for p in packages:
        meta = dest / "node_modules" / p.name / "package.json"
        if not meta.is_file() or json.loads(meta.read_text()).get("version") != p.version:
            return False
        integrity = lock.get(f"node_modules/{p.name}", {}).get("integrity")
        if integrity != p.integrity:
            raise WebExportError(f"{lock_path}: {p.spec} has integrity {integrity}, not the pinned {p.integrity}")
    return True
