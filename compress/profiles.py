"""Profiles: ``quick`` (minutes on a CPU), ``full`` (all of the data) and ``planned`` (what the planner chose).

A stage config whose defaults depend on the profile (``TeacherConfig``, ``DistillConfig``) leaves those fields
None and keeps one table ``PROFILES[profile] -> {field: value}`` beside it for each fixed profile (:data:`NAMES`).
:func:`resolve` is the one way they are filled: it returns a copy with every None field taken from the table; a
key that names a ``DataConfig`` field (the subset sizes) fills the config's ``data`` the same way. Stages resolve
their config when they run, and the pipeline fingerprints the resolved config, so changing a profile's value
re-runs what it touches and ``dataclasses.replace(cfg, profile="full")`` never keeps a quick value.

The ``planned`` profile has no fixed table: the planner (:mod:`edgedistill.compress.plan`) fills one per build from the
data and this machine's throughput, the recipe puts it into the stage configs with :func:`fill` (so fingerprints and
reports see ordinary config values), and what it leaves None comes from the ``full`` table (:data:`BASE`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from edgedistill.compress.errors import ConfigError

NAMES = ("quick", "full")
"""The profiles with a fixed table in each stage module."""
PLANNED = "planned"
"""The profile the planner fills; the default of ``edgedistill build``."""
ALL = (*NAMES, PLANNED)
BASE = {PLANNED: "full"}
"""A planned build starts from all of the data: the full table under the planner's values."""

C = TypeVar("C")


def check(table: str, profile: str) -> None:
    """``<table>.profile`` must name a profile."""
    if profile not in ALL:
        raise ConfigError(f"{table}.profile", profile, f"must be one of {', '.join(ALL)}")


def table(profiles: dict[str, dict[str, Any]], profile: str) -> dict[str, Any]:
    """A stage module's table for ``profile`` (the base table for ``planned``)."""
    return profiles[BASE.get(profile, profile)]


def fill(cfg: C, values: dict[str, Any]) -> C:
    """``cfg`` with each field left None taken from ``values`` (its ``data`` too); a None value fills nothing."""
    own = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    given = {k: v for k, v in values.items() if k in own and getattr(cfg, k) is None and v is not None}
    data = getattr(cfg, "data", None)
    if data is not None:
        data_fields = {f.name for f in dataclasses.fields(data)}
        data_fill = {k: v for k, v in values.items()
                     if k not in own and k in data_fields and getattr(data, k) is None and v is not None}
        if data_fill:
            given["data"] = dataclasses.replace(data, **data_fill)
    return dataclasses.replace(cfg, **given) if given else cfg  # type: ignore[type-var]


def resolve(cfg: C, profiles: dict[str, dict[str, Any]]) -> C:
    """``cfg`` with each field left None filled from its profile's table (its ``data`` too)."""
    return fill(cfg, table(profiles, cfg.profile))  # type: ignore[attr-defined]
