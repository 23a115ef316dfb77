"""Every error the runtime raises on purpose.

The runtime cannot import the toolchain (``compress``), so it has its own base
class, :class:`RuntimeBaseError`. Each error names the file, field, index or
provider it is about, so that one line of message is enough to act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class RuntimeBaseError(Exception):
    """Base class of the errors a user of the runtime can act on."""


class PackageError(RuntimeBaseError):
    """A model package cannot be used; ``path`` names the package, ``file`` the member at fault (if one is)."""

    def __init__(self, path: Path | str, message: str, *, file: str | None = None):
        self.path, self.file, self.message = Path(path), file, message
        where = f"{path}" if file is None else f"{path}: {file}"
        super().__init__(f"{where}: {message}")


class PackageIntegrityError(PackageError):
    """A package file is missing, has the wrong size or sha256, or the manifest is unreadable or lies.

    Never repaired silently: rebuild or re-download the package.
    """


class UnsafeArchiveError(PackageIntegrityError):
    """A ``.zip`` package has a member that would land outside its folder (``..``, an absolute name, a link)."""


class PackageFormatError(PackageError, ValueError):
    """The package is intact but this runtime cannot read it (a newer format, a bad ``config.json`` field)."""


class ProviderUnavailableError(RuntimeBaseError):
    """An onnxruntime execution provider was asked for and is not there (no silent fall-back to the CPU)."""

    def __init__(self, missing: Sequence[str], available: Sequence[str], why: str = ""):
        self.missing, self.available = list(missing), list(available)
        hint = ""
        if any(p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for p in self.missing):
            hint = " (CUDA needs the onnxruntime-gpu wheel in place of onnxruntime, and matching CUDA/cuDNN libraries)"
        super().__init__(
            f"execution provider(s) {', '.join(self.missing)} not available{': ' + why if why else ''}; "
            f"this onnxruntime offers {', '.join(self.available) or 'none'}{hint}. "
            f"Pass fallback=True to run on what is available instead.")


class InputFileError(RuntimeBaseError, ValueError):
    """A file of texts to classify cannot be read; names the file and the line or column."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None):
        self.path, self.line = Path(path), line
        super().__init__(f"{path}{f', line {line}' if line is not None else ''}: {message}")
