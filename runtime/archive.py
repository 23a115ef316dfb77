"""A package's ``.zip``, unpacked without trusting it: no member may land outside the folder (absolute names,
``..``, backslashes), be a link or a special file, or appear twice, and the whole may not unpack to more than
:data:`MAX_ARCHIVE_BYTES` (a zip bomb). The package reader (:mod:`edgedistill.runtime.package`) unpacks through here.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from edgedistill.runtime.errors import PackageIntegrityError, UnsafeArchiveError

if TYPE_CHECKING:
    import zipfile

MAX_ARCHIVE_BYTES = 8 << 30  # a .zip package that unpacks to more than this is refused (a zip bomb, not a model)
_CHUNK = 1 << 20


def member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute name"
    if "\\" in name:
        return "a backslash in its name"
    if ".." in PurePosixPath(name).parts:
        return "a '..' component"
    kind = stat.S_IFMT(info.external_attr >> 16)  # Unix file type; 0 when the archiver did not record one
    if kind == stat.S_IFLNK:
        return "a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a special file type (not a plain file)"
    return None


def safe_extract(zip_path: Path, dest: Path, max_bytes: int = MAX_ARCHIVE_BYTES) -> None:
    """Extract ``zip_path`` into ``dest``, refusing any member that could land outside it."""
    import shutil  # here, not at the top: loading a package folder never unzips (a faster start)
    import zipfile
    import zlib

    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise PackageIntegrityError(zip_path, f"is not a readable zip archive ({e})") from None
    with zf:
        infos = zf.infolist()
        seen: set[str] = set()
        for info in infos:
            problem = member_problem(info)
            if problem:
                raise UnsafeArchiveError(zip_path, f"archive member has {problem}; refusing to extract",
                                         file=info.filename)
            key = info.filename.rstrip("/")
            if key in seen:
                raise UnsafeArchiveError(zip_path, "archive member appears twice", file=info.filename)
            seen.add(key)
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise UnsafeArchiveError(zip_path, f"unpacks to {total} bytes, more than the limit of {max_bytes}")
        root = dest.resolve()
        for info in infos:
            target = (dest / info.filename).resolve()
            if target != root and root not in target.parents:  # belt and braces after the name checks
                raise UnsafeArchiveError(zip_path, "archive member escapes the folder", file=info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise PackageIntegrityError(zip_path, f"archive member is corrupt ({e})", file=info.filename) from None
