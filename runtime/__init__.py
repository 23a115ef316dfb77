"""edgedistill's torch-free runtime: onnxruntime, tokenizers and numpy only.

Nothing here imports ``edgedistill.compress``, torch or transformers; the base install
(``pip install edgedistill``) is enough::

    from edgedistill import TextClassifier

    clf = TextClassifier.load("movie-sentiment.zip")        # checks every file's sha256
    clf.predict("A warm, funny film.")                       # {"label": "positive", "score": 0.97}
    clf.predict_proba(["dull", "superb"])                     # (2, num_labels) float32 array
    clf.predict_logits(["dull", "superb"])                    # the same before the package's temperature

Each text gets the same answer alone or batched (a dynamic-int8 model runs one text per call;
``TextClassifier.load(..., batch_invariant=False)`` batches it anyway), and scores are calibrated
with the temperature the package was built with.

Names are imported on first use, so ``import edgedistill.runtime.errors`` (or ``edgedistill.runtime.package``)
does not pay for onnxruntime's import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TextClassifier": "edgedistill.runtime.classifier",
    "PackageConfig": "edgedistill.runtime.package",
    "open_package": "edgedistill.runtime.package",
    "sha256_file": "edgedistill.runtime.package",
    "verify_package": "edgedistill.runtime.package",
    "write_manifest": "edgedistill.runtime.package",
    "zip_package": "edgedistill.runtime.package",
    "RuntimeBaseError": "edgedistill.runtime.errors",
    "PackageError": "edgedistill.runtime.errors",
    "PackageIntegrityError": "edgedistill.runtime.errors",
    "PackageFormatError": "edgedistill.runtime.errors",
    "UnsafeArchiveError": "edgedistill.runtime.errors",
    "ProviderUnavailableError": "edgedistill.runtime.errors",
    "InputFileError": "edgedistill.runtime.errors",
}
__all__ = list(_EXPORTS)

# For type checkers only; F401 (unused import): __getattr__ imports them when first used, and __all__ lists them.
if TYPE_CHECKING:
    from edgedistill.runtime.classifier import TextClassifier  # noqa: F401
    from edgedistill.runtime.errors import (  # noqa: F401
        InputFileError, PackageError, PackageFormatError, PackageIntegrityError, ProviderUnavailableError,
        RuntimeBaseError, UnsafeArchiveError)
    from edgedistill.runtime.package import (  # noqa: F401
        PackageConfig, open_package, sha256_file, verify_package, write_manifest, zip_package)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgedistill.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
