"""Write docs/recipe.md: every field of every recipe table, from the config dataclasses and their docstrings.

    python docs/gen_recipe.py           # rewrite docs/recipe.md
    python docs/gen_recipe.py --check   # exit 1 when docs/recipe.md is not what the dataclasses give now

A recipe's tables map one to one onto the stage configs (``edgedistill.compress.recipe.SECTIONS``); a field's
docstring is the string literal right after it in the class body, read here with ``ast`` from the class's source
(its base dataclasses' too). The fields the pipeline fills in are listed, not described: a recipe may not set them.
tests/properties/test_docs.py holds docs/recipe.md to this output and to every field of every table.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "recipe.md"
COMMAND = "python docs/gen_recipe.py"

ROLE = re.compile(r":(?:mod|func|class|attr|meth|data|obj|exc):`~?([^`]+)`")
CODE = re.compile(r"(``?[^`]+``?)")


@dataclasses.dataclass
class Field:
    table: str
    name: str
    type: str
    default: str
    doc: str
    profiles: list[tuple[str, dict[str, Any]]]  # (the stage whose PROFILES fill it, {profile: value})


def field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """``{field: (annotation, docstring)}`` of ``cls`` and its base classes, the nearest class's winning."""
    out: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
        for node, after in zip(body, [*body[1:], None]):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            doc = ""
            if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                doc = inspect.cleandoc(after.value.value)
            out[node.target.id] = (ast.unparse(node.annotation), doc)
    return out


def class_doc(cls: type) -> str:
    """The class's own docstring (not the signature ``dataclass`` writes where there is none)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    return ast.get_docstring(next(n for n in tree.body if isinstance(n, ast.ClassDef))) or ""


def toml_value(value: Any) -> str:
    """A default as a recipe would write it (None has no TOML form: ``--set`` writes ``none``)."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if dataclasses.is_dataclass(value):
        return type(value).__name__ + "()"
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def default_of(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return toml_value(f.default)
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return toml_value(f.default_factory())  # type: ignore[misc]
    return "required"


def markdown(doc: str) -> str:
    """A docstring as Markdown: Sphinx roles and double backticks become code spans; ``<`` outside code is
    escaped (``models/<name>/`` is no HTML tag)."""
    doc = ROLE.sub(r"`\1`", doc)
    parts = CODE.split(doc)
    for i, part in enumerate(parts):
        if i % 2:
            parts[i] = "`" + part.strip("`") + "`"
        else:
            parts[i] = part.replace("<", "&lt;").replace("*", r"\*")
    return "".join(parts)


def profile_tables() -> dict[str, dict[str, dict[str, Any]]]:
    """The stage modules' ``PROFILES`` tables, by recipe table: what fills the fields they leave None."""
    from edgedistill.compress import teacher, update
    from edgedistill.compress.distill import config as distill_config

    return {"teacher": teacher.PROFILES, "distill": distill_config.PROFILES, "update": {"every": update.DEFAULTS}}


def collect() -> dict[str, tuple[type, list[Field], tuple[str, ...]]]:
    """``{table: (config class, its recipe fields, the fields the pipeline sets)}`` in the recipe's order."""
    from edgedistill.compress import recipe

    tables = profile_tables()
    data_fields = {f.name for f in dataclasses.fields(recipe.config_class("data"))}
    out = {}
    for table, (_, _, owned) in recipe.SECTIONS.items():
        cls = recipe.config_class(table)
        docs = field_docs(cls)
        fields = []
        for f in dataclasses.fields(cls):
            if f.name in owned:
                continue
            annotation, doc = docs[f.name]
            filled = []
            for stage, by_profile in tables.items():
                # a stage's table fills its own fields, and the DataConfig subset sizes of the data it reads
                if stage == table or (table == "data" and f.name in data_fields):
                    values = {p: t[f.name] for p, t in by_profile.items() if f.name in t}
                    if values:
                        filled.append((stage, values))
            fields.append(Field(table, f.name, annotation, default_of(f), doc, filled))
        out[table] = (cls, fields, owned)
    return out


HEADER = f"""\
<!-- Generated by `{COMMAND}` from the config dataclasses; do not edit by hand. -->

# Recipe reference

A recipe is a TOML file whose tables map one to one onto the stage configs (`compress/recipe.py`): this page lists
every field a recipe may set, table by table, with its type, its default and its docstring, as the config
dataclasses hold them. A recipe states only what differs from the defaults; any field can also be set on the
command line, `edgedistill build RECIPE --set TABLE.FIELD=VALUE` (a value is read as TOML; `none` is None).

Top-level keys: `name` (the build folder, `models/<name>/` beside the recipe), `description`, `profile`, and
`[profiles.<profile>.<table>]` tables whose fields apply only when building with that profile.

Fields whose default is None and that list profile values are filled from their stage's profile table
(`PROFILES` in `compress/teacher.py` and `compress/distill/config.py`) when the recipe leaves them unset: `quick`
(`--profile quick`, `make demo`) or `full` (`--profile full`). A planned build (`edgedistill build` without
`--profile`) starts from the `full` values under what the planner chose for this data and machine
([How a build plans](own-data.md#how-a-build-plans)). An update's (`DEFAULTS` in `compress/update.py`) is the
same for `every` profile.

The fields every trainer shares (`epochs` to `seed` in `[teacher]`, `[distill]` and `[update]`) are declared once,
in `compress/training_settings.py` (`TrainingSettings`), and documented from there.
"""


def render() -> str:
    lines = [HEADER]
    for table, (cls, fields, owned) in collect().items():
        lines.append(f"## `[{table}]`\n")
        summary = markdown(class_doc(cls))
        lines.append(f"`{cls.__module__}.{cls.__qualname__}`" + (f": {summary}" if summary else "") + "\n")
        if owned:
            lines.append("Set by the pipeline, not by a recipe: " + ", ".join(f"`{n}`" for n in owned) + ".\n")
        for f in fields:
            lines.append(f"### `{table}.{f.name}`\n")
            line = f"Type `{f.type}`, default `{f.default}`."
            if f.profiles:
                line += " When unset, from the profile table of " + "; of ".join(
                    f"`[{stage}]`: " + ", ".join(f"{p} `{toml_value(v)}`" for p, v in values.items())
                    for stage, values in f.profiles) + "."
            lines.append(line + "\n")
            lines.append((markdown(f.doc) if f.doc else "(no docstring)") + "\n")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when docs/recipe.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
