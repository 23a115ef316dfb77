"""The documentation: a short README, the docs/ site that MkDocs builds, and the recipe reference generated from
the config dataclasses' field docstrings (docs/gen_recipe.py)."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.compress.recipe import SECTIONS, config_class

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README_MAX_LINES = 250


def _generator():
    """docs/gen_recipe.py as a module (registered first: its dataclass looks its module up)."""
    if (module := sys.modules.get("gen_recipe")) is None:
        spec = importlib.util.spec_from_file_location("gen_recipe", DOCS / "gen_recipe.py")
        module = sys.modules["gen_recipe"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def test_the_recipe_reference_is_what_the_dataclasses_give_now():
    gen = _generator()
    assert (DOCS / "recipe.md").read_text() == gen.render(), \
        f"docs/recipe.md is out of date with the config dataclasses: run `{gen.COMMAND}` and commit docs/recipe.md"


def test_every_field_of_every_recipe_table_is_documented_from_its_docstring():
    gen = _generator()
    text = (DOCS / "recipe.md").read_text()
    for table, (_, _, owned) in SECTIONS.items():
        cls = config_class(table)
        docs = gen.field_docs(cls)
        assert f"## `[{table}]`" in text, table
        for f in dataclasses.fields(cls):
            if f.name in owned:
                continue
            assert docs[f.name][1], f"{cls.__name__}.{f.name} ([{table}] {f.name}) has no docstring: add a string " \
                                    f"literal right after the field, then run `{gen.COMMAND}`"
            assert f"### `{table}.{f.name}`" in text, f"{table}.{f.name} is missing from docs/recipe.md"
    assert "(no docstring)" not in text


def test_field_docstrings_are_read_from_the_class_source_bases_included():
    gen = _generator()

    @dataclasses.dataclass
    class Base:
        a: int = 1
        """The first."""
        b: "list[str] | None" = None  # noqa: UP037 (the generator shows a quoted annotation as written)

    @dataclasses.dataclass
    class Child(Base):
        c: str = "x"
        """The third,
        on two lines."""

    docs = gen.field_docs(Child)
    assert docs == {"a": ("int", "The first."), "b": ("'list[str] | None'", ""),
                    "c": ("str", "The third,\non two lines.")}
    assert gen.markdown(":func:`pick` keeps ``models/<name>/`` and <name>") == \
        "`pick` keeps `models/<name>/` and &lt;name>"


def test_the_docs_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (it is in the dev extra: pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                           str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    pages = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    assert {"index.html", "recipe/index.html", "results/index.html", "own-data/index.html"} <= pages


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}: " \
                                           "move the details to docs/"


def _anchors(page: Path) -> set[str]:
    """The heading ids of a Markdown page, as GitHub and MkDocs's toc both make them for these headings."""
    out, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.*)", line)):
            text = re.sub(r"[^\w\s-]", "", m.group(1).replace("`", "")).strip().lower()
            out.add(re.sub(r"\s+", "-", text))
    return out


def test_the_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if "://" in link:
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README.md links to {link}, which does not exist"
        if anchor:
            assert anchor in _anchors(target), f"README.md links to {link}: {path} has no heading {anchor!r}"
    # every docs page is linked from the README
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name}" in text, f"README.md's Documentation list misses docs/{page.name}"
