"""Recipes: one TOML file per deployable classifier, mapped one to one onto the stage configs.

A recipe's tables are the stage configs' fields, nothing else::

    name = "movie-sentiment"          # the build folder: models/<name>/ beside the recipe (<name>-full/ for full)
    description = "..."
    [data]      -> edgedistill.compress.data.DataConfig
    [teacher]   -> edgedistill.compress.teacher.TeacherConfig   (data, output_dir, profile set by the pipeline)
    [student]   -> edgedistill.compress.student.StudentConfig
    [distill]   -> edgedistill.compress.distill.DistillConfig   (data, student, teacher_dir, output_dir, profile
                                                                 set here)
    [export]    -> edgedistill.compress.export.ExportConfig     (checkpoint, output set here)
    [quantize]  -> edgedistill.compress.quantize.QuantizeConfig (paths set here; no preset: "auto", this machine's)
    [targets]   -> edgedistill.compress.targets.TargetsConfig   (onnx_dir, data set here; platforms: the
                                                                 build machine's)
    [package]   -> edgedistill.compress.package.PackagingConfig   (paths set here)
    [baseline]  -> edgedistill.compress.baseline_package.BaselineConfig (data, output set here)
    [ship]      -> edgedistill.compress.ship.ShipConfig         (candidates, budget, platforms, paths set here)
    [report]    -> edgedistill.compress.report.ReportConfig
    [ladder]    -> edgedistill.compress.ladder.LadderConfig     (students beside the recipe's own, and the budget)
    [update]    -> edgedistill.compress.update.UpdateConfig     (how `edgedistill update` teaches the build new data)
    [plan]      -> edgedistill.compress.plan.PlanConfig         (the planned profile: time budget, token-limit
                                                                 percentile)
    [profiles.quick.teacher]  ... overrides applied when building with --profile quick

A planned build (the ``planned`` profile, the default of ``edgedistill build``) also carries ``planned``: the
values the planner chose, ``{"teacher": {...}, "distill": {...}, "ladder": {...}}``, a profile table filled per
build (:mod:`edgedistill.compress.profiles`). They fill the stage fields the recipe leaves None, so a value the recipe
states always wins; the ladder's planned ``rungs`` (those that fit the budget) replace the recipe's. The build records
them in its manifest, so ``edgedistill update`` rebuilds with the same values.

Defaults live in the config dataclasses (and, for what depends on the profile, in
their stage's ``PROFILES`` table, :mod:`edgedistill.compress.profiles`): a recipe states what
differs, and a test holds every shipped recipe to that. A field the pipeline owns
(paths, the nested data config) may not be set in a recipe; an unknown field is
an error naming the table and the key.

This is the one way in for configuration: ``edgedistill build`` and its ``--set``,
the lone-stage commands' ``--config`` files and flags (:meth:`Recipe.with_values`),
and ``edgedistill ablate``'s base, ``--grid`` and ``--cell`` all read values with
:func:`parse_value` and keys with :func:`split_key`.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.compress import profiles
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.layout import BuildLayout

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROFILES = profiles.ALL

# table -> (module, class, fields the pipeline fills in)
SECTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "data": ("edgedistill.compress.data", "DataConfig", ()),
    "teacher": ("edgedistill.compress.teacher", "TeacherConfig", ("data", "output_dir", "profile")),
    "student": ("edgedistill.compress.student", "StudentConfig", ()),
    "distill": ("edgedistill.compress.distill.config", "DistillConfig",
                ("data", "student", "teacher_dir", "output_dir", "profile")),
    "export": ("edgedistill.compress.export", "ExportConfig", ("checkpoint", "output")),
    "quantize": ("edgedistill.compress.quantize", "QuantizeConfig", ("onnx_dir", "data", "detected_isa")),
    "targets": ("edgedistill.compress.targets", "TargetsConfig", ("onnx_dir", "data")),
    "package": ("edgedistill.compress.package", "PackagingConfig", ("onnx_dir", "output", "recipe")),
    "baseline": ("edgedistill.compress.baseline_package", "BaselineConfig", ("data", "output")),
    "ship": ("edgedistill.compress.ship", "ShipConfig", ("candidates", "budget", "platforms", "output", "record")),
    "report": ("edgedistill.compress.report", "ReportConfig", ()),
    "ladder": ("edgedistill.compress.ladder", "LadderConfig", ()),
    "update": ("edgedistill.compress.update", "UpdateConfig", ()),
    "plan": ("edgedistill.compress.plan", "PlanConfig", ()),
}
TOP_LEVEL = {"name", "description", "profile", "profiles", "planned"}
PLANNED_SECTIONS = ("teacher", "distill", "export", "ladder")
"""The tables a plan may fill (:attr:`Recipe.planned`)."""
BUILD_PROFILE = profiles.PLANNED
"""What ``edgedistill build`` builds when neither ``--profile`` nor the recipe names a profile."""


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


def parse_value(text: str) -> Any:
    """One value of ``--set`` / ``--grid`` / ``--cell``, read as TOML (``0.5``, ``true``, ``[0, 2]``,
    ``"a b"``); ``none`` is None; ``[0;2;5]`` or ``[0 2 5]`` is a list too (no comma to split a grid at);
    anything else is a string (``data.source=my.csv``)."""
    t = text.strip()
    if t.lower() in ("none", "null"):
        return None
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if t.startswith("[") and t.endswith("]") and "," not in t:
        t = "[" + ", ".join(t[1:-1].replace(";", " ").split()) + "]"
    try:
        return tomllib.loads(f"v = {t}")["v"]
    except tomllib.TOMLDecodeError:
        return t


def split_key(key: str, tables: Sequence[str] = tuple(SECTIONS), *, what: str = "override") -> tuple[str, str]:
    """``"distill.alpha"`` -> ("distill", "alpha"): a table of ``tables`` and one of its config's fields."""
    section, dot, name = key.strip().partition(".")
    if not dot or section not in tables:
        raise ConfigError(what, key, f"expected TABLE.FIELD with TABLE one of {', '.join(tables)}")
    cls = config_class(section)
    if name not in {f.name for f in dataclasses.fields(cls)}:
        raise ConfigError(what, key, f"{cls.__name__} has no field {name!r}")
    return section, name


def parse_override(item: str) -> tuple[str, str, Any]:
    """``"distill.alpha=0.5"`` (CLI ``--set``) -> ("distill", "alpha", 0.5); the value as :func:`parse_value`."""
    key, sep, raw = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or section not in SECTIONS:
        raise ConfigError("override", item, f"expected TABLE.FIELD=VALUE with TABLE one of {', '.join(SECTIONS)}")
    return section, name.strip(), parse_value(raw)


def parse_grid(specs: Sequence[str], tables: Sequence[str] = tuple(SECTIONS)) -> dict[str, list[Any]]:
    """``["distill.alpha=0,0.5", "student.layers=3,6"]`` (CLI ``--grid``) -> ``{"distill.alpha": [0, 0.5],
    ...}``: the ``--set`` grammar with several values split at commas outside brackets
    (``student.layers=[0;5],[0;2;5]``)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ConfigError("grid", spec, "write TABLE.FIELD=V1,V2,... (e.g. distill.alpha=0,0.5,0.9)")
        split_key(key, tables, what="grid")
        grid[key.strip()] = [parse_value(p) for p in re.findall(r"\[[^\]]*\]|[^,]+", values)]
    return grid


def parse_cell(spec: str, tables: Sequence[str] = tuple(SECTIONS)) -> dict[str, Any]:
    """``"distill.alpha=0.9 distill.temperature=4"`` (CLI ``--cell``) -> ``{"distill.alpha": 0.9, ...}``."""
    cell: dict[str, Any] = {}
    for item in spec.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("cell", spec, "write TABLE.FIELD=VALUE pairs separated by spaces "
                                            "(e.g. distill.alpha=0.9)")
        split_key(key, tables, what="cell")
        cell[key] = parse_value(value)
    return cell


def _toml_value(value: Any) -> str:
    """How ``--set`` would write ``value`` (for the record of what a build was given)."""
    return "none" if value is None else json.dumps(value)


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
    teacher_dir: Path | None = None
    """A teacher built by another build (a ladder rung's is its recipe's); None: this build's own."""
    planned: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The planner's values for a planned build (see the module docstring); empty: none."""
    baseline_dir: Path | None = None
    """A baseline package built by another build (a ladder rung's is its recipe's); None: this build's own."""

    @property
    def layout(self) -> BuildLayout:
        """Where this build keeps each stage's output (:mod:`edgedistill.compress.layout`)."""
        return BuildLayout(self.build_dir, self.teacher_dir, self.baseline_dir)

    # ----------------------------------------------------------------- stage configs
    def data(self):
        return config_class("data")(**self.tables["data"])

    def teacher(self, **owned: Any):
        """The TeacherConfig; ``owned`` replaces what the layout decides (``output_dir``, for a lone stage)."""
        paths = {"output_dir": str(self.layout.teacher), **owned}
        cfg = config_class("teacher")(**self.tables["teacher"], data=self.data(), profile=self.profile, **paths)
        return profiles.fill(cfg, self.planned.get("teacher", {}))

    def student(self):
        return config_class("student")(**self.tables["student"])

    def distill(self, **owned: Any):
        """The DistillConfig; ``owned`` replaces what the layout decides (``teacher_dir``, ``output_dir``)."""
        paths = {"teacher_dir": str(self.layout.teacher), "output_dir": str(self.layout.student), **owned}
        cfg = config_class("distill")(**self.tables["distill"], data=self.data(), student=self.student(),
                                      profile=self.profile, **paths)
        return profiles.fill(cfg, self.planned.get("distill", {}))

    def export(self):
        """The ExportConfig; a plan's token limit (the student's) where the recipe states none."""
        table = {**self.planned.get("export", {}), **self.tables["export"]}
        return config_class("export")(**table, checkpoint=str(self.layout.student), output=str(self.layout.onnx))

    def quantize(self):
        """The recipe's ``preset`` goes through its named constructor, the other fields override it; a recipe
        naming none gets ``"auto"``, this machine's (:meth:`QuantizeConfig.from_preset`)."""
        cls, table = config_class("quantize"), dict(self.tables["quantize"])
        return cls.from_preset(table.pop("preset", None), str(self.layout.onnx), data=self.data(), **table)

    def targets(self):
        return config_class("targets")(**self.tables["targets"], onnx_dir=str(self.layout.onnx), data=self.data())

    def package(self):
        table = {"name": self.name, **self.tables["package"]}
        return config_class("package")(**table, onnx_dir=str(self.layout.onnx),
                                       output=str(self.layout.student_package), recipe=self.as_dict())

    def baseline(self):
        return config_class("baseline")(**self.tables["baseline"], data=self.data(),
                                        output=str(self.layout.baseline_package))

    def ship(self):
        """The ShipConfig: this build's student, its ladder's rungs (none for a rung) and the baseline (unless
        ``ship.baseline = false``), with the ladder's budget and the declared targets."""
        from edgedistill.compress.ladder import rung_name

        table = self.tables["ship"]
        rung = self.teacher_dir is not None  # a ladder rung (its teacher borrowed) ships its own student, always
        candidates = {"student": str(self.layout.student_package)}
        for spec in () if rung else self.ladder().rungs:
            candidates[rung_name(spec)] = str(BuildLayout(self.layout.ladder / rung_name(spec)).student_package)
        if table.get("baseline", True):
            candidates["baseline"] = str(self.layout.baseline_package)
        return config_class("ship")(**table, candidates=candidates, budget={} if rung else self.ladder().budget,
                                    platforms=self.targets().resolved_platforms(), output=str(self.layout.package),
                                    record=str(self.layout.ship_record))

    def report(self):
        return config_class("report")(**self.tables["report"])

    def ladder(self):
        """The LadderConfig; a plan's ``rungs`` (those that fit the budget) replace the recipe's."""
        return config_class("ladder")(**{**self.tables["ladder"], **self.planned.get("ladder", {})})

    def plan(self):
        return config_class("plan")(**self.tables["plan"])

    def update(self, **values: Any):
        """The UpdateConfig: the recipe's ``[update]`` table with ``values`` (the command's flags) on top."""
        return config_class("update")(**{**self.tables["update"], **values})

    def with_values(self, values: dict[str, Any]) -> Recipe:
        """This recipe with ``{"TABLE.FIELD": value}`` applied like ``--set`` (None: not given, skipped), validated
        again; the CLI's per-stage flags come in this way."""
        given = {k: v for k, v in values.items() if v is not None}
        tables = copy.deepcopy(self.tables)
        for key, value in given.items():
            section, name = split_key(key)
            tables[section][name] = value
        for section, table in tables.items():
            _check_keys(section, table)
        recipe = dataclasses.replace(self, tables=tables,
                                     overrides=[*self.overrides, *(f"{k}={_toml_value(v)}" for k, v in given.items())])
        validate(recipe)
        return recipe

    def with_plan(self, planned: dict[str, dict[str, Any]]) -> Recipe:
        """This recipe with the planner's values (:attr:`planned`), validated again."""
        recipe = dataclasses.replace(self, planned=copy.deepcopy(planned))
        _check_planned(recipe.profile, recipe.planned)
        validate(recipe)
        return recipe

    def as_dict(self) -> dict[str, Any]:
        """What went into the build (for the manifest and the fingerprints). The ladder and ship tables are left
        out: they choose among packages and change none of them, so a new budget rebuilds nothing; so is the update
        table, which changes only the versions ``edgedistill update`` writes beside the build, and the plan table,
        which changes the build only through the planned values (kept, when there are any)."""
        out = {"name": self.name, "profile": self.profile,
               **{k: copy.deepcopy(v) for k, v in self.tables.items() if k not in ("ladder", "ship", "update", "plan")}}
        if self.planned:
            out["planned"] = copy.deepcopy(self.planned)
        return out


def build_dir(root: Path, name: str, profile: str) -> Path:
    """Where a build lands: ``models/<name>/`` for the quick profile, ``models/<name>-<profile>/`` for the others
    (``-full``, ``-planned``), so no profile's build overwrites another's."""
    return root / (name if profile == "quick" else f"{name}-{profile}")


def load_recipe(path: Path | str, profile: str | None = None, overrides: Sequence[str] = (),
                build_root: Path | str | None = None, *, default_name: str | None = None,
                default_profile: str = "quick") -> Recipe:
    """Read and validate a recipe (TOML, or JSON with the same tables). ``overrides`` are ``TABLE.FIELD=VALUE``
    strings (CLI ``--set``). ``default_name`` names a file without ``name`` (a config for one stage).
    ``default_profile``: the profile when neither ``profile`` nor the file names one (``edgedistill build`` passes
    :data:`BUILD_PROFILE`; a lone stage keeps ``quick``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("recipe", str(path), "no such file")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError("recipe", str(path), f"not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError("recipe", str(path), "must hold an object of tables")
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError("recipe", str(path), f"not valid TOML ({e})") from None
    if default_name and "name" not in raw:
        raw = {"name": default_name, **raw}
    return recipe_from_dict(raw, profile=profile or raw.get("profile", default_profile), overrides=overrides,
                            build_root=Path(build_root) if build_root else path.parent, path=path)


def default_recipe(profile: str | None = None, build_root: Path | str = "models") -> Recipe:
    """A recipe that states nothing: every stage's defaults (the base of a lone stage's CLI flags)."""
    return recipe_from_dict({"name": "edgedistill"}, profile=profile, build_root=Path(build_root))


def recipe_from_dict(raw: dict[str, Any], *, profile: str | None = None, overrides: Sequence[str] = (),
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
    planned = copy.deepcopy(raw.get("planned", {}))
    _check_planned(profile, planned)
    recipe = Recipe(name, raw.get("description", ""), profile, tables, build_dir(build_root, name, profile), path, raw,
                    list(overrides), planned=planned)
    validate(recipe)
    return recipe


def _check_planned(profile: str, planned: dict[str, Any]) -> None:
    """The planner's values: only for a planned build, only fields of the tables a plan fills."""
    if not planned:
        return
    if profile != profiles.PLANNED:
        raise ConfigError("planned", planned, f"only a {profiles.PLANNED} build takes planned values")
    if not isinstance(planned, dict):
        raise ConfigError("planned", planned, "must be a table of tables")
    for section, values in planned.items():
        if section not in PLANNED_SECTIONS or not isinstance(values, dict):
            raise ConfigError(f"planned.{section}", values, f"a plan fills only {', '.join(PLANNED_SECTIONS)}")
        names = {f.name for f in dataclasses.fields(config_class(section))}
        if section in ("teacher", "distill"):
            names |= {f.name for f in dataclasses.fields(config_class("data"))}
        for key in values:
            if key not in names:
                raise ConfigError(f"planned.{section}.{key}", values[key], "is not a field a plan can fill")


def _default(section: str, name: str, profile: str) -> Any:
    """What a stage field is when a recipe leaves it out: the dataclass default, else the profile table's."""
    cls = config_class(section)
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
    if value is None:
        tables = getattr(importlib.import_module(SECTIONS[section][0]), "PROFILES", None)
        value = profiles.table(tables, profile).get(name) if tables else None
    return value


def restated_defaults(raw: dict[str, Any]) -> list[str]:
    """The ``table.field`` entries of a raw recipe that only repeat what they would be without it, and the tables
    that state nothing: a recipe states what differs (one test holds the shipped recipes to this)."""
    found = ["profile"] if raw.get("profile") == BUILD_PROFILE else []
    for section in SECTIONS:
        if section in raw and not raw[section]:
            found.append(f"[{section}] (empty)")
        for key, value in raw.get(section, {}).items():
            if (section, key) == ("data", "source"):  # a recipe always names what it learns from
                continue
            if all(value == _default(section, key, p) for p in PROFILES):
                found.append(f"{section}.{key}")
    for profile, tables in raw.get("profiles", {}).items():
        for section, over in tables.items():
            for key, value in over.items():
                before = raw.get(section, {}).get(key, _default(section, key, profile))
                if value == before:
                    found.append(f"profiles.{profile}.{section}.{key}")
    return found


def validate(recipe: Recipe) -> None:
    """Build every stage config once, so a bad value fails at load time, naming the table."""
    for section in SECTIONS:
        try:
            getattr(recipe, section)()
        except ConfigError as e:
            if e.field.startswith(f"{section}."):
                raise
            raise ConfigError(f"{section}.{e.field}", e.value, e.why) from None
        except TypeError as e:  # a value of the wrong shape for a field
            raise ConfigError(section, recipe.tables[section], str(e)) from None


def rung_recipe(recipe: Recipe, spec: str) -> Recipe:
    """The recipe of one ladder rung (:mod:`edgedistill.compress.ladder`): its student, built into
    ``<build>/ladder/<rung>/`` from the recipe's teacher.
    The recipe's own ``distill`` choices stay unless the rung has a default of its own for them (and the user's
    ``--set`` overrides win over both)."""
    from edgedistill.compress.ladder import rung_name, rung_overrides

    tables = copy.deepcopy(recipe.tables)
    given = {f"{s}.{k}" for s, k, _ in map(parse_override, recipe.overrides)}
    for key, value in rung_overrides(spec).items():
        section, name = split_key(key)
        if key in given:
            continue
        if value is None:
            tables[section].pop(name, None)
        else:
            tables[section][name] = value
    if tables["student"].get("builder") == "static":
        for name in ("hidden_loss_weight", "attention_loss_weight", "hidden_loss_layers"):
            tables["distill"].pop(name, None)
    tables["ship"]["baseline"] = False  # a rung's package is its own student's: a candidate of the recipe's ship
    rung = dataclasses.replace(recipe, tables=tables, build_dir=recipe.layout.ladder / rung_name(spec),
                               teacher_dir=recipe.layout.teacher, baseline_dir=recipe.layout.baseline_package)
    validate(rung)
    return rung
