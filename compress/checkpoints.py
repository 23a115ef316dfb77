"""Loading a saved checkpoint, a teacher's or a student's, as a sequence classifier.

The stages that read a checkpoint (evaluate, export, report, update) load it here, a module that imports nothing of
the toolchain but the static student's model (which registers it): :mod:`edgedistill.compress.student` builds
students, and loading through it made the stages and the builders import each other. A checkpoint's fingerprint is
:func:`edgedistill.compress.fingerprints.checkpoint_hash`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_classifier(path: Path | str, **kwargs: Any):
    """A saved student or teacher checkpoint as a sequence classifier (the static student included: importing
    :mod:`edgedistill.compress.static` registers it with transformers' Auto classes first)."""
    from transformers import AutoModelForSequenceClassification

    import edgedistill.compress.static  # noqa: F401

    return AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
