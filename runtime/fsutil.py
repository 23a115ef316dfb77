"""Publishing a finished output folder: the one way every stage (and the web export) replaces its result;
and the one cache folder.

    with publishing(dest) as tmp:      # a fresh folder beside dest, mode 0755
        (tmp / "model.onnx").write_bytes(...)
    # here dest holds the new files; on an exception tmp is removed and dest is untouched

Standard library only, so the torch-free runtime and the toolchain share it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MODE = 0o755
"""Published folders read like any other (``mkdtemp`` alone would leave them private, 0700)."""


def cache_dir() -> Path:
    """``$EDGEDISTILL_CACHE``, else ``$XDG_CACHE_HOME/edgedistill``, else ``~/.cache/edgedistill``: downloaded
    wheels and npm tarballs, extracted sources, cached teacher outputs and exports, the digests of the files builds
    read (``hashes.json``)."""
    if env := os.environ.get("EDGEDISTILL_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgedistill"


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed over it: a reader sees the old file or the new
    one, whole, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_folder(src: Path, dest: Path) -> None:
    """Move the finished folder ``src`` to ``dest``.

    An existing ``dest`` is first moved aside (a rename), then the new folder is renamed into place,
    and only then is the old one removed: at no moment is there neither the old nor the new result.
    """
    src, dest = Path(src), Path(dest)
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
    os.replace(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def publishing(dest: Path | str) -> Iterator[Path]:
    """A temporary folder ``.<name>.tmp-*`` beside ``dest`` to write into. When the block ends normally it
    replaces ``dest`` (:func:`replace_folder`) with mode 0755; when it raises, it is removed and ``dest``
    stays as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        tmp.chmod(MODE)
        yield tmp
        replace_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
