"""``edgedistill``: the command line. ``--help`` imports neither torch nor transformers."""

from edgedistill.compress.cli._app import app, command, console  # noqa: F401
# One file per command (or command group), named after it; imported in the order --help lists them.
from edgedistill.compress.cli import sources_cmd  # noqa: F401,E402  (edgedistill sources list / fetch)
from edgedistill.compress.cli import data_cmd  # noqa: F401,E402  (edgedistill data show)
from edgedistill.compress.cli import teacher_cmd  # noqa: F401,E402  (edgedistill teacher)
from edgedistill.compress.cli import predict_cmd  # noqa: F401,E402  (edgedistill predict)
from edgedistill.compress.cli import export_cmd  # noqa: F401,E402  (edgedistill export)
from edgedistill.compress.cli import quantize_cmd  # noqa: F401,E402  (edgedistill quantize)
from edgedistill.compress.cli import package_cmd  # noqa: F401,E402  (edgedistill package)
from edgedistill.compress.cli import web_cmd  # noqa: F401,E402  (edgedistill web)
from edgedistill.compress.cli import targets_cmd  # noqa: F401,E402  (edgedistill targets)
from edgedistill.compress.cli import build_cmd  # noqa: F401,E402  (edgedistill build)
from edgedistill.compress.cli import distill_cmd  # noqa: F401,E402  (edgedistill distill)
from edgedistill.compress.cli import ablate_cmd  # noqa: F401,E402  (edgedistill ablate)
from edgedistill.compress.cli import bench_cmd  # noqa: F401,E402  (edgedistill bench)
from edgedistill.compress.cli import serve_cmd  # noqa: F401,E402  (edgedistill serve)
from edgedistill.compress.cli import update_cmd  # noqa: F401,E402  (edgedistill update)


def main() -> None:
    """The ``edgedistill`` console script. Its own Rich handler prints the toolchain's and the runtime's log
    records; they do not also travel to the root logger, where a library's ``logging.basicConfig()``
    (onnxruntime's transformer optimiser calls it on import) would print each one a second time."""
    import logging

    for name in ("edgedistill.compress", "edgedistill.runtime"):
        logging.getLogger(name).propagate = False
    app()
