"""edgedistill: distil a transformer into a small ONNX text classifier, and run it without torch.

    from edgedistill import TextClassifier      # the torch-free runtime, edgedistill.runtime

The toolchain is ``edgedistill.compress`` (``pip install 'edgedistill[compress]'``).

Why this file is alone here: the wheel installs one import name, ``edgedistill``, while the code stays in the
checkout's ``compress/`` and ``runtime/`` folders, which pyproject.toml's ``package-dir`` maps to
``edgedistill.compress`` and ``edgedistill.runtime``; this file is the top package itself. Not at the
checkout's root: an ``__init__.py`` there makes pytest name the test modules after the checkout's folder
(``main.tests.test_cli``) and put the folder above the checkout on ``sys.path``. Not in an ``edgedistill/``
folder at the root: wherever the checkout is on ``sys.path`` (pytest puts it there) that folder would shadow
an installed edgedistill and hide its subpackages. Under ``src/`` it is only ever imported as installed
(``pip install -e .`` for a checkout).

The runtime's names are imported on first use: ``import edgedistill`` imports neither onnxruntime nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgedistill import runtime

__version__ = "0.1.0"
__all__ = list(runtime.__all__)

if TYPE_CHECKING:
    from edgedistill.runtime import *  # noqa: F401,F403


def __getattr__(name: str) -> Any:
    if name in runtime.__all__:
        value = getattr(runtime, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgedistill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
