"""Recipes: one TOML file per deployable classifier, mapped one to one onto the stage configs.

A recipe's tables are the stage configs' fields, nothing else::

    name = "movie-sentiment"          # the build folder: models/<name>/ beside the recipe (<name>-full/ for full)
    description = "..."
    [data]      -> compress.data.DataConfig
    [teacher]   -> compress.teacher.TeacherConfig   (data, output_dir, profile set by the pipeline)
    [student]   -> compress.student.StudentConfig
    [distill]   -> compress.distill.DistillConfig   (data, student, teacher_dir, output_dir, profile set here)
    [export]    -> compress.export.ExportConfig     (checkpoint, output set here)
    [quantize]  -> compress.quantize.QuantizeConfig (paths set here)
    [package]   -> compress.package.PackagingConfig   (paths set here)
    [profiles.quick.teacher]  ... overrides applied when building with --profile quick

Defaults live in the config dataclasses only: a recipe states what differs.
A field the pipeline owns (paths, the nested data config) may not be set in a
recipe; an unknown field is an error naming the table and the key.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import ConfigError
from compress.layout import BuildLayout

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROFILES = ("quick", "full")

# table -> (module, class, fields the pipeline fills in)
SECTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "data": ("compress.data", "DataConfig", ()),
    "teacher": ("compress.teacher", "TeacherConfig", ("data", "output_dir", "profile")),
    "student": ("compress.student", "StudentConfig", ()),
    "distill": ("compress.distill", "DistillConfig", ("data", "student", "teacher_dir", "output_dir", "profile")),
    "export": ("compress.export", "ExportConfig", ("checkpoint", "output")),
    "quantize": ("compress.quantize", "QuantizeConfig", ("onnx_dir", "data")),
    "package": ("compress.package", "PackagingConfig", ("onnx_dir", "output", "recipe")),
    "report": ("compress.report", "ReportConfig", ()),
}
TOP_LEVEL = {"name", "description", "profile", "profiles"}


def config_class(section: str) -> type:
    module, cls, _ = SECTIONS[section]
    return getattr(importlib.import_module(module), cls)


def _check_keys(section: str, table: dict[str, Any]) -> None:
    cls = config_class(section)
    names = {f.name for f in dataclasses.fields(cls)}
    owned = set(SECTIONS[section][2])
    for key in table:
        if key in owned:
            raise ConfigError(f"{section}.{key}", table[key], "is set by the pipeline; remove it from the recipe")
        if key not in names:
            raise ConfigError(f"{section}.{key}", table[key],
                              f"unknown field of {cls.__name__}; known: {', '.join(sorted(names - owned))}")


def parse_override(item: str) -> tuple[str, str, Any]:
    """``"distill.alpha=0.5"`` -> ("distill", "alpha", 0.5); the value is read as TOML, else as a string."""
    key, sep, raw = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or section not in SECTIONS:
        raise ConfigError("override", item, f"expected TABLE.FIELD=VALUE with TABLE one of {', '.join(SECTIONS)}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return section, name.strip(), value


@dataclass
class Recipe:
    """A parsed recipe: the merged tables for one profile, validated against the configs."""

    name: str
    description: str
    profile: str
    tables: dict[str, dict[str, Any]]
    build_dir: Path
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    """The ``TABLE.FIELD=VALUE`` overrides (CLI ``--set``) applied over the recipe file, in order."""

    @property
    def layout(self) -> BuildLayout:
        """Where this build keeps each stage's output (:mod:`compress.layout`)."""
        return BuildLayout(self.build_dir)

    # ----------------------------------------------------------------- stage configs
    def data(self):
        return config_class("data")(**self.tables["data"])

    def teacher(self):
        return config_class("teacher")(**self.tables["teacher"], data=self.data(), profile=self.profile,
                                       output_dir=str(self.layout.teacher))

    def student(self):
        return config_class("student")(**self.tables["student"])

    def distill(self):
        return config_class("distill")(**self.tables["distill"], data=self.data(), student=self.student(),
                                       teacher_dir=str(self.layout.teacher), profile=self.profile,
                                       output_dir=str(self.layout.student))

    def export(self):
        return config_class("export")(**self.tables["export"], checkpoint=str(self.layout.student),
                                      output=str(self.layout.onnx))

    def quantize(self):
        """``preset = "avx2"`` in the recipe goes through the named constructor, other fields override it."""
        cls, table = config_class("quantize"), dict(self.tables["quantize"])
        onnx_dir, data = str(self.layout.onnx), self.data()
        if preset := table.pop("preset", None):
            return cls.from_preset(preset, onnx_dir, data=data, **table)
        return cls(onnx_dir=onnx_dir, data=data, **table)

    def package(self):
        table = {"name": self.name, **self.tables["package"]}
        return config_class("package")(**table, onnx_dir=str(self.layout.onnx),
                                       output=str(self.layout.package), recipe=self.as_dict())

    def report(self):
        return config_class("report")(**self.tables["report"])

    def as_dict(self) -> dict[str, Any]:
        """What went into the build (for the manifest and the fingerprints)."""
        return {"name": self.name, "profile": self.profile, **copy.deepcopy(self.tables)}


def build_dir(root: Path, name: str, profile: str) -> Path:
    """Where a build lands: ``models/<name>/`` for the quick profile, ``models/<name>-<profile>/`` for the others,
    so a full build never overwrites the quick one (or the reverse)."""
    return root / (name if profile == "quick" else f"{name}-{profile}")


def load_recipe(path: Path | str, profile: str | None = None, overrides: list[str] = (),
                build_root: Path | str | None = None) -> Recipe:
    """Read and validate a recipe. ``overrides`` are ``TABLE.FIELD=VALUE`` strings (CLI ``--set``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("recipe", str(path), "no such file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("recipe", str(path), f"not valid TOML ({e})") from None
    return recipe_from_dict(raw, profile=profile, overrides=overrides,
                            build_root=Path(build_root) if build_root else path.parent, path=path)


def recipe_from_dict(raw: dict[str, Any], *, profile: str | None = None, overrides: list[str] = (),
                     build_root: Path, path: Path | None = None) -> Recipe:
    for key in raw:
        if key not in TOP_LEVEL and key not in SECTIONS:
            raise ConfigError(key, raw[key], f"unknown recipe table; known: {', '.join([*TOP_LEVEL, *SECTIONS])}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError("name", name, "a recipe needs a plain folder name")
    profile = profile or raw.get("profile", "quick")
    if profile not in PROFILES:
        raise ConfigError("profile", profile, f"must be one of {', '.join(PROFILES)}")
    tables = {s: dict(raw.get(s, {})) for s in SECTIONS}
    for s, over in raw.get("profiles", {}).get(profile, {}).items():
        if s not in SECTIONS:
            raise ConfigError(f"profiles.{profile}.{s}", over, f"unknown table; known: {', '.join(SECTIONS)}")
        tables[s].update(over)
    for unknown in set(raw.get("profiles", {})) - set(PROFILES):
        raise ConfigError(f"profiles.{unknown}", "...", f"unknown profile; known: {', '.join(PROFILES)}")
    for item in overrides:
        section, key, value = parse_override(item)
        tables[section][key] = value
    for s, table in tables.items():
        _check_keys(s, table)
    recipe = Recipe(name, raw.get("description", ""), profile, tables, build_dir(build_root, name, profile), path, raw,
                    list(overrides))
    validate(recipe)
    return recipe


def validate(recipe: Recipe) -> None:
    """Build every stage config once, so a bad value fails at load time, naming the table."""
    for section in ("data", "teacher", "student", "distill", "export", "quantize", "package", "report"):
        try:
            getattr(recipe, section)()
        except ConfigError as e:
            if e.field.startswith(f"{section}."):
                raise
            raise ConfigError(f"{section}.{e.field}", e.value, e.why) from None
        except TypeError as e:  # a value of the wrong shape for a field
            raise ConfigError(section, recipe.tables[section], str(e)) from None
