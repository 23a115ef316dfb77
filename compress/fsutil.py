"""Publishing a finished output folder: :mod:`runtime.fsutil` (standard library only, shared with the
torch-free runtime) is the one implementation; the stages import it from here."""

from runtime.fsutil import publishing, replace_folder

__all__ = ["publishing", "replace_folder"]
