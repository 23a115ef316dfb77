"""``edgedistill``: the command line. ``--help`` imports neither torch nor transformers."""

from compress.cli._app import app, command, console  # noqa: F401
from compress.cli import data_cmd  # noqa: F401,E402  (registers commands)
from compress.cli import train_cmd  # noqa: F401,E402  (edgedistill teacher)
from compress.cli import runtime_cmd  # noqa: F401,E402  (edgedistill predict)
from compress.cli import ship_cmd  # noqa: F401,E402  (edgedistill export / quantize / package)
from compress.cli import web_cmd  # noqa: F401,E402  (edgedistill web)
from compress.cli import targets_cmd  # noqa: F401,E402  (edgedistill targets)
from compress.cli import build_cmd  # noqa: F401,E402  (edgedistill build)
from compress.cli import distill_cmd  # noqa: F401,E402  (edgedistill distill / ablate)
from compress.cli import bench_cmd  # noqa: F401,E402  (edgedistill bench)
from compress.cli import update_cmd  # noqa: F401,E402  (edgedistill update)


def main() -> None:
    """The ``edgedistill`` console script. Its own Rich handler prints the toolchain's and the runtime's log
    records; they do not also travel to the root logger, where a library's ``logging.basicConfig()``
    (onnxruntime's transformer optimiser calls it on import) would print each one a second time."""
    import logging

    for name in ("compress", "runtime"):
        logging.getLogger(name).propagate = False
    app()
