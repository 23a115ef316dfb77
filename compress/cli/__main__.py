"""``python -m compress.cli`` == ``edgedistill``."""

from compress.cli import main

main()
