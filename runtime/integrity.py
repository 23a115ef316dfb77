"""Hashing a package's files: :func:`sha256_file`, and :class:`PinnedFile`, a file verified in place for a reader that
opens it by path (the loader's model file), with the proof that what was read is what was hashed.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edgedistill.runtime.errors import PackageIntegrityError

T = TypeVar("T")
_CHUNK = 1 << 20


def sha256_file(path: Path | str) -> str:
    """The hex sha256 of a file: hashed from a read-only memory map (no copy into Python; hashlib releases the
    GIL), or read in 1 MiB chunks where a file cannot be mapped (empty, or not a regular file)."""
    with open(path, "rb") as f:
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return hashlib.sha256(mapped).hexdigest()
        except (ValueError, OSError):  # an empty file cannot be mapped
            h = hashlib.sha256()
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
            return h.hexdigest()


def _stat_key(path: Path) -> tuple[int, ...]:
    """What changes whenever a file's bytes do: its device and inode (a replaced file), size, and modification
    and status-change times (``st_ctime_ns`` moves on every write and cannot be set back by the writer)."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class PinnedFile:
    """A package file verified in place, for a reader that opens it by path (onnxruntime opens a model file much
    faster than it parses the same bytes handed over from Python). Its sha256 is computed on a thread of its own
    (hashlib releases the GIL), so that the loader parses the tokenizer meanwhile; :meth:`read` waits for it and
    refuses a mismatch before the reader sees the file, then proves that what was read is what was hashed."""

    def __init__(self, path: Path, where: Path, name: str, expected: str, key: tuple[int, ...]):
        self.path, self.where, self.name, self.expected, self.key = path, where, name, expected, key
        self._digest: list[Any] = []
        started = threading.Event()
        self._hashing = threading.Thread(target=self._hash, args=(started,), name=f"sha256 {name}", daemon=True)
        self._hashing.start()
        started.wait()  # the thread is in hashlib, without the GIL: the caller's next steps run beside it

    def _hash(self, started: threading.Event) -> None:
        try:
            if self.key[2] == 0:  # an empty file cannot be mapped
                self._digest.append(hashlib.sha256(b"").hexdigest())
                return
            with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                started.set()
                self._digest.append(hashlib.sha256(mapped).hexdigest())
        except BaseException as e:  # handed to the thread that reads the file
            self._digest.append(e)
        finally:
            started.set()

    def verify(self) -> None:
        """Wait for the file's sha256; raise :class:`PackageIntegrityError` unless it is the manifest's."""
        self._hashing.join()
        digest = self._digest[0]
        if isinstance(digest, BaseException):
            raise PackageIntegrityError(self.where, f"cannot be read ({digest})", file=self.name) from digest
        if digest != self.expected:
            raise PackageIntegrityError(
                self.where, f"sha256 {digest} does not match the manifest's {self.expected} (modified or corrupt)",
                file=self.name)

    def check(self) -> None:
        """Raise :class:`PackageIntegrityError` when the file changed since it was hashed (its :func:`_stat_key`)."""
        try:
            same = _stat_key(self.path) == self.key
        except OSError:
            same = False
        if not same:
            raise PackageIntegrityError(self.where, "changed while it was being loaded", file=self.name)

    def read(self, reader: Callable[[str | bytes], T]) -> T:
        """``reader(source)``, then :meth:`check`. ``source`` is the file's path alone in a private temporary folder
        (a symbolic link to it), so that a reader resolving other files beside it (an ONNX graph's external
        weights) finds none: the file is all it reads. Where no link can be made (Windows without the privilege),
        ``source`` is the file's bytes, hashed again."""
        import tempfile  # here, not at the top: a faster import

        self.verify()
        tmp = tempfile.mkdtemp(prefix="edgedistill-load-")
        link = os.path.join(tmp, self.path.name)
        try:
            try:
                os.symlink(self.path.resolve(), link)
            except OSError:
                data = self.path.read_bytes()
                if hashlib.sha256(data).hexdigest() != self.expected:
                    raise PackageIntegrityError(self.where, "changed while it was being loaded",
                                                file=self.name) from None
                return reader(data)
            result = reader(link)
        finally:
            if os.path.lexists(link):
                os.unlink(link)
            os.rmdir(tmp)
        self.check()
        return result
