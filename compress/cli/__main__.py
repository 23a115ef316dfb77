"""``python -m edgedistill.compress.cli`` == ``edgedistill``."""

from edgedistill.compress.cli import main

main()
