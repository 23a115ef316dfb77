"""``python -m edgedistill.compress.distill --config recipe.toml``: one distillation from a recipe, also under
torchrun / accelerate launch (see the package's doc)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import edgedistill.compress.distill as package
from edgedistill.compress.distill.run import distill


def main(argv: list[str] | None = None) -> None:
    """``python -m edgedistill.compress.distill --config recipe.toml`` (also under torchrun / accelerate launch)."""
    from edgedistill.compress.recipe import load_recipe

    parser = argparse.ArgumentParser(prog="python -m edgedistill.compress.distill",
                                     description=package.__doc__.splitlines()[0])
    parser.add_argument("--config", required=True,
                        help="A recipe, or a TOML / JSON file of its tables (data, student, distill).")
    parser.add_argument("--profile", help="quick | full (default: the recipe's).")
    parser.add_argument("--teacher", help="The teacher checkpoint (default: the recipe's build folder's).")
    parser.add_argument("--output-dir", help="Where the student goes (default: the recipe's build folder).")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                        help="Override a recipe value, as `edgedistill build --set` does (repeatable).")
    a = parser.parse_args(argv)
    recipe = load_recipe(a.config, profile=a.profile, overrides=a.set, default_name=Path(a.config).stem)
    owned = {k: v for k, v in (("teacher_dir", a.teacher), ("output_dir", a.output_dir)) if v}
    cfg = recipe.distill(**owned)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    print(distill(cfg))  # noqa: T201 (the script's one result line)


if __name__ == "__main__":
    main()
