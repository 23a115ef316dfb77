"""A command's full log in a file, and a console that shows what the toolchain means to say.

Inside :func:`log_to_file` the file gets every record of the toolchain (DEBUG and up), transformers' and
datasets' records, whatever logs to the root logger (onnxruntime's quantizer does), Python's warnings and
ONNX Runtime's own messages, with a traceback if the command fails. The console keeps the toolchain's
warnings and errors (and its INFO records with ``--verbose``), the stage headers, the progress bars of
:mod:`edgedistill.compress.progress` and the tables; the libraries' tqdm bars are switched off. With ``--debug`` the
console shows everything as it did before, and the file is written all the same.

Everything is put back on the way out: the CLI's tests run many commands in one process.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"
_LIBRARIES = ("transformers", "datasets")  # loggers with a stderr handler of their own that do not propagate
_ORT_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def _set(stack: ExitStack, obj: Any, attr: str, value: Any) -> None:
    """``obj.attr = value`` until ``stack`` closes."""
    stack.callback(setattr, obj, attr, getattr(obj, attr))
    setattr(obj, attr, value)


@contextmanager
def log_to_file(path: Path, *, debug: bool = False, verbose: bool = False) -> Iterator[None]:
    """Append this block's full log to ``path``; keep the libraries' output off the console unless ``debug``."""
    import datasets
    import transformers.utils.logging as hf_logging

    path.parent.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(path, encoding="utf-8")
    file.setFormatter(logging.Formatter(FORMAT))
    with ExitStack() as stack:
        stack.callback(file.close)

        # the toolchain: all of it to the file; to the console its warnings, or what it showed before with
        # --verbose or --debug
        for name in ("edgedistill.compress", "edgedistill.runtime"):
            logger = logging.getLogger(name)
            shown = logger.getEffectiveLevel() if debug or verbose else logging.WARNING
            for h in logger.handlers:
                _set(stack, h, "level", max(h.level, shown))
            _set(stack, logger, "handlers", [*logger.handlers, file])
            _set(stack, logger, "level", logging.DEBUG)
            _set(stack, logger, "propagate", False)

        # the libraries: to the file only (to the console as well with --debug)
        root = logging.getLogger()
        console = []
        if debug:
            console = root.handlers or [logging.StreamHandler()]  # what logging's last resort would have printed
            if not root.handlers:
                console[0].setLevel(logging.WARNING)
        _set(stack, root, "handlers", [*console, file])
        _set(stack, root, "level", min(root.level, logging.INFO))
        hf_logging.get_logger()  # transformers adds its stderr handler on first use: let it, then set it aside
        for name in _LIBRARIES:
            logger = logging.getLogger(name)
            _set(stack, logger, "handlers", [*(logger.handlers if debug else []), file])
            _set(stack, logger, "propagate", False)
        stack.enter_context(warnings.catch_warnings())
        logging.captureWarnings(True)  # to the "py.warnings" logger, so to the root's handlers
        stack.callback(logging.captureWarnings, False)

        if not debug:
            if hf_logging.is_progress_bar_enabled():  # "Loading weights", "Writing model shards", downloads
                hf_logging.disable_progress_bar()
                stack.callback(hf_logging.enable_progress_bar)
            if not datasets.are_progress_bars_disabled():  # map() and filter()
                datasets.disable_progress_bars()
                stack.callback(datasets.enable_progress_bars)
            _onnxruntime_to_logging(stack)
        try:
            yield
        except BaseException:
            file.handle(logging.makeLogRecord({"name": __name__, "levelno": logging.ERROR, "levelname": "ERROR",
                                               "msg": "the command failed", "exc_info": sys.exc_info()}))
            raise


def _onnxruntime_to_logging(stack: ExitStack) -> None:
    """ONNX Runtime's own messages (written to stderr by its C++ logger) to the "onnxruntime" logger."""
    import onnxruntime as ort

    hook = getattr(ort, "set_default_logger_callback", None)
    if hook is None:  # an ONNX Runtime without the hook: they stay on stderr
        return
    logger = logging.getLogger("onnxruntime")

    def forward(severity: int, category: str, logid: str, location: str, message: str) -> None:
        logger.log(_ORT_LEVELS[min(max(severity, 0), 4)], "%s (%s)", message, location)

    hook(forward, 2)  # 2: warnings and up, ONNX Runtime's default
    stack.callback(hook, None)
