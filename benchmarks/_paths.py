"""Paths as the committed results record them: relative to the repository, never a path of the machine that ran
the benchmark (issue 28, item 9: results that stay true in any checkout).

    recorded("/home/me/edgedistill/models/movie-sentiment/package")  -> "models/movie-sentiment/package"
    recorded("/root/.cache/edgedistill/adapted/47371c1ffcd0")        -> "$EDGEDISTILL_CACHE/adapted/47371c1ffcd0"
    recorded("/tmp/edgedistill-arm64-pkg-ioiwf3en/int8-dynamic")     -> "int8-dynamic"   (anywhere else: its name)

``recorded_argv`` does the same to the absolute arguments of a command line, ``recorded_paths`` to every absolute
path string in a result (dicts and lists, at any depth). ``relative`` is a path to hand a command run from the
repository root (``../`` where it lies outside). Every benchmark writer imports them from here:
``from benchmarks._paths import recorded`` (the scripts put the repository on ``sys.path``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePath, PureWindowsPath
from typing import Any

from edgedistill.runtime.fsutil import cache_dir

REPO = Path(__file__).resolve().parents[1]
CACHE = "$EDGEDISTILL_CACHE"
"""How a path in the model and data cache (``edgedistill.runtime.fsutil.cache_dir()``) is recorded."""

_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def is_absolute(path: str | os.PathLike[str]) -> bool:
    """An absolute path of this machine or of a Windows one (``C:\\...``, ``\\\\server\\...``)."""
    s = os.fspath(path)
    return os.path.isabs(s) or bool(_WINDOWS.match(s))


def relative(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the repository root, for a command run there: never absolute (``../`` outside it)."""
    return Path(os.path.relpath(Path(path).resolve(), REPO)).as_posix()


def recorded(path: str | os.PathLike[str]) -> str:
    """``path`` as a committed result records it: relative to the repository (POSIX) inside it, ``$EDGEDISTILL_CACHE/
    <rest>`` inside the cache, else (a temporary folder, another checkout, an interpreter) its name alone. A relative
    ``path`` is taken from the current folder."""
    s = os.fspath(path)
    if _WINDOWS.match(s):
        return PureWindowsPath(s).name
    given = Path(os.path.abspath(Path(s).expanduser()))  # the path as named; then with its links resolved
    for p in dict.fromkeys((given, given.resolve())):
        if p.is_relative_to(REPO):
            return p.relative_to(REPO).as_posix()
        for cache in dict.fromkeys((cache_dir().expanduser().absolute(), cache_dir().expanduser().resolve())):
            if p.is_relative_to(cache):
                rest = p.relative_to(cache).as_posix()
                return CACHE if rest == "." else f"{CACHE}/{rest}"
    return given.name or "."


def recorded_argv(argv: Sequence[str]) -> list[str]:
    """A command line with each absolute path in it (an argument, or an ``--option=`` value) ``recorded``; the other
    arguments as they are."""
    out = []
    for a in argv:
        a = os.fspath(a)
        option, eq, value = a.partition("=")
        if is_absolute(a):
            a = recorded(a)
        elif a.startswith("-") and eq and is_absolute(value):
            a = f"{option}={recorded(value)}"
        out.append(a)
    return out


def recorded_paths(value: Any) -> Any:
    """``value`` (a result: dicts, lists, strings, numbers) with every string that is an absolute path, and every
    ``Path``, ``recorded``; a copy, ``value`` is left as it is. Paths inside longer strings (a command, a sentence) are
    the writer's to record."""
    if isinstance(value, dict):
        return {k: recorded_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(recorded_paths(v) for v in value)
    if isinstance(value, PurePath):
        return recorded(value) if value.is_absolute() else value.as_posix()
    if isinstance(value, str) and is_absolute(value):
        return recorded(value)
    return value
