"""Publishing a finished output folder, and the cache folder: :mod:`edgedistill.runtime.fsutil` (standard library only,
shared with the torch-free runtime) is the one implementation; the stages import it from here."""

from edgedistill.runtime.fsutil import cache_dir, publishing, replace_folder, write_text_atomic

__all__ = ["cache_dir", "publishing", "replace_folder", "write_text_atomic"]
