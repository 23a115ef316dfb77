"""``edgedistill``: the command line. ``--help`` imports neither torch nor transformers."""

from compress.cli._app import app, command, console  # noqa: F401
from compress.cli import data_cmd  # noqa: F401,E402  (registers commands)
from compress.cli import train_cmd  # noqa: F401,E402  (edgedistill teacher)
from compress.cli import runtime_cmd  # noqa: F401,E402  (edgedistill predict)
from compress.cli import ship_cmd  # noqa: F401,E402  (edgedistill export / quantize / package)
from compress.cli import web_cmd  # noqa: F401,E402  (edgedistill web)
from compress.cli import build_cmd  # noqa: F401,E402  (edgedistill build)
from compress.cli import distill_cmd  # noqa: F401,E402  (edgedistill distill / ablate)
from compress.cli import bench_cmd  # noqa: F401,E402  (edgedistill bench)


def main() -> None:
    app()
