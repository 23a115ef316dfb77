"""The shared Typer app, its error handling and small printing helpers.

Command modules register on :data:`app` (or on a sub-app added to it). Every
command is wrapped by :func:`command`: a known error (``EdgeDistillError``)
becomes one red line and exit code 1; ``--debug`` or ``EDGEDISTILL_DEBUG=1``
shows the traceback instead. While a command runs, the library's progress bars
(:mod:`edgedistill.compress.progress`) are drawn on stderr. Heavy imports happen inside
command bodies.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from edgedistill.compress import progress
from edgedistill.compress.errors import EdgeDistillError
from edgedistill.runtime.errors import RuntimeBaseError

app = typer.Typer(
    name="edgedistill",
    help="Distil a large transformer into a small, fast text classifier and ship it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _width(stream) -> int | None:
    """Rich's own width on a terminal or with $COLUMNS; 140 columns when piped (a log, make, CI), where Rich
    would fold the result tables into 80."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return None if tty or os.environ.get("COLUMNS") else 140


console = Console(width=_width(sys.stdout))
err_console = Console(stderr=True, width=_width(sys.stderr))

_state = {"debug": False, "verbose": False}


def _env_debug() -> bool:
    return os.environ.get("EDGEDISTILL_DEBUG", "") not in ("", "0")


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the library's progress messages.")] = False,
) -> None:
    _state["debug"] = debug or _env_debug()
    _state["verbose"] = verbose
    _setup_logging(logging.DEBUG if verbose else logging.INFO)


def _setup_logging(level: int) -> None:
    from rich.logging import RichHandler

    root = logging.getLogger("edgedistill.compress")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        root.addHandler(RichHandler(console=err_console, show_path=False, show_time=False))
    root.setLevel(level)
    logging.getLogger("edgedistill.runtime").handlers = root.handlers
    logging.getLogger("edgedistill.runtime").setLevel(level)


F = TypeVar("F", bound=Callable[..., Any])


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def command(fn: F) -> F:
    """Turn known errors (toolchain and runtime) into one clear line and exit code 1 (traceback with --debug);
    draw the library's progress bars while the command runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with progress.attached(err_console):
                return fn(*args, **kwargs)
        except (EdgeDistillError, RuntimeBaseError) as e:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as e:  # a full disk or an unwritable folder: the message names the path
            if _state["debug"] or e.errno not in _DISK_ERRNOS:
                raise
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


T = TypeVar("T")


def make_config(cls: type[T], **given: Any) -> T:
    """Build ``cls`` from the flags the user gave (None = not given): defaults stay in the dataclass."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(given) - names
    assert not unknown, f"{cls.__name__} has no fields {unknown}"
    return cls(**{k: v for k, v in given.items() if v is not None})


def stage_recipe(config: Path | None, profile: str | None):
    """The recipe a lone stage command starts from: ``--config`` (a recipe, or a file of its tables), else one
    that states nothing (build folder ``models/edgedistill/``). Its flags go on top with ``with_values``."""
    from edgedistill.compress.recipe import default_recipe, load_recipe

    return load_recipe(config, profile=profile, default_name=config.stem) if config else default_recipe(profile)


def stage_paths(**paths: Path | None) -> dict[str, str]:
    """The path flags a user gave (``--teacher``, ``--output``); the others stay the recipe's build folder."""
    return {k: str(v) for k, v in paths.items() if v is not None}


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r))
    return t
