"""Hashing a package's files: :func:`sha256_file`, and :class:`PinnedFile`, a file verified in place for a reader that
opens it by path (the loader's model file), checked unchanged after the read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from edgedistill.runtime.errors import PackageIntegrityError

T = TypeVar("T")
_CHUNK = 1 << 20


def sha256_file(path: Path | str, stop: threading.Event | None = None) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks into one buffer (hashlib releases the GIL on each). Reading,
    not memory-mapping: a file truncated meanwhile ends the read instead of the process. ``stop``: once set, the
    reading ends early and gives ``""``."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            if stop is not None and stop.is_set():
                return ""
            h.update(view[:n])
    return h.hexdigest()


def _stat_key(path: Path) -> tuple[int, ...]:
    """What changes when a file is replaced or written: its device and inode, size, and modification and
    status-change times (``st_ctime_ns`` moves on every write and cannot be set back by the writer; a write within
    one tick of the file system's clock is not seen)."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@contextlib.contextmanager
def _alone(path: Path) -> Iterator[str | None]:
    """``path`` seen alone in a private temporary folder, as a symbolic link to it; None where no folder or link can
    be made (a read-only temporary folder; Windows without the privilege). Removed after the block."""
    import tempfile  # here, not at the top: a faster import

    try:
        tmp = tempfile.mkdtemp(prefix="edgedistill-load-")
    except OSError:
        yield None
        return
    link = os.path.join(tmp, path.name)
    try:
        try:
            os.symlink(path.resolve(), link)
        except OSError:
            yield None
            return
        yield link
    finally:
        if os.path.lexists(link):
            os.unlink(link)
        os.rmdir(tmp)


class PinnedFile:
    """A package file verified in place, for a reader that opens it by path (onnxruntime opens a model file much
    faster than it parses the same bytes handed over from Python). Its sha256 is computed on a thread of its own, so
    that the loader parses the tokenizer meanwhile; :meth:`read` waits for it and refuses a mismatch before the
    reader sees the file, then checks the file unchanged (:func:`_stat_key`). :meth:`close` stops the hashing of a
    load that failed elsewhere."""

    def __init__(self, path: Path, where: Path, name: str, expected: str, key: tuple[int, ...]):
        self.path, self.where, self.name, self.expected, self.key = path, where, name, expected, key
        self._digest: str | OSError | None = None
        self._stop = threading.Event()
        self._hashing = threading.Thread(target=self._hash, name=f"sha256 {name}", daemon=True)
        self._hashing.start()

    def _hash(self) -> None:
        try:
            self._digest = sha256_file(self.path, self._stop)
        except OSError as e:  # handed to the thread that reads the file
            self._digest = e

    def close(self) -> None:
        """Stop hashing (a load that failed before :meth:`read`) and wait for the thread; harmless after a read."""
        self._stop.set()
        self._hashing.join()

    def _changed(self) -> PackageIntegrityError:
        return PackageIntegrityError(self.where, "changed while it was being loaded", file=self.name)

    def verify(self) -> None:
        """Wait for the file's sha256; raise :class:`PackageIntegrityError` unless it is the manifest's."""
        self._hashing.join()
        digest = self._digest
        if isinstance(digest, OSError):
            raise PackageIntegrityError(self.where, f"cannot be read ({digest})", file=self.name) from digest
        if digest != self.expected:
            raise PackageIntegrityError(
                self.where, f"sha256 {digest} does not match the manifest's {self.expected} (modified or corrupt)",
                file=self.name)

    def read(self, reader: Callable[[str | bytes], T]) -> T:
        """:meth:`verify`, then ``reader(source)``. ``source`` is the file's path alone in a private temporary folder
        (a symbolic link to it), so that a reader resolving other files beside it (an ONNX graph's external weights)
        finds none: the file is all it reads; the file's :func:`_stat_key` must be the one it had before hashing.
        Where no link can be made, ``source`` is the file's bytes, hashed again."""
        self.verify()
        with _alone(self.path) as link:
            if link is not None:
                result = reader(link)
                try:
                    unchanged = _stat_key(self.path) == self.key
                except OSError:
                    unchanged = False
                if not unchanged:
                    raise self._changed()
                return result
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise PackageIntegrityError(self.where, f"cannot be read ({e})", file=self.name) from e
        if hashlib.sha256(data).hexdigest() != self.expected:
            raise self._changed()
        return reader(data)
