"""``python -m edgedistill.compress.distill --config recipe.toml``: one distillation from a recipe, also under
torchrun / accelerate launch (see the package's doc)."""

from __future__ import annotations

import edgedistill.compress.distill as package
from edgedistill.compress import parallel
from edgedistill.compress.distill.run import distill


def main(argv: list[str] | None = None) -> None:
    """``python -m edgedistill.compress.distill --config recipe.toml`` (also under torchrun / accelerate launch)."""
    parallel.script_main(
        argv, prog="python -m edgedistill.compress.distill", description=package.__doc__.splitlines()[0],
        tables="data, student, distill",
        owned={"--teacher": ("teacher_dir", "The teacher checkpoint (default: the recipe's build folder's)."),
               "--output-dir": ("output_dir", "Where the student goes (default: the recipe's build folder).")},
        config=lambda recipe, **owned: recipe.distill(**owned), run=distill)


if __name__ == "__main__":
    main()
