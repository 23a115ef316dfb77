"""Publishing a finished output folder: the one way every stage replaces its previous result."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


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
