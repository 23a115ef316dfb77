"""``edgedistill`` / ``python -m edgedistill``: the command line (``edgedistill.compress.cli``).

The base install is the runtime alone (onnxruntime, tokenizers, numpy); the command line's libraries, typer and rich,
come with the ``cli`` extra (and with ``compress`` and ``serve``). Without them this says what to install instead of
showing a traceback.
"""

from __future__ import annotations

import sys

CLI_LIBRARIES = {"typer", "rich", "click", "shellingham"}


def main() -> int | None:
    try:
        from edgedistill.compress.cli import main as cli_main
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in CLI_LIBRARIES:
            raise
        print(f"edgedistill: the command line needs {e.name}, which the base install (the runtime alone) leaves "
              "out: pip install 'edgedistill[cli]'", file=sys.stderr)
        return 1
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
