"""Profiles: ``quick`` (minutes on a CPU) and ``full`` (all of the data), one table of defaults per stage.

A stage config whose defaults depend on the profile (``TeacherConfig``, ``DistillConfig``) leaves those fields
None and keeps one table ``PROFILES[profile] -> {field: value}`` beside it. :func:`resolve` is the one way they
are filled: it returns a copy with every None field taken from the table; a key that names a ``DataConfig``
field (the subset sizes) fills the config's ``data`` the same way. Stages resolve their config when they run,
and the pipeline fingerprints the resolved config, so changing a profile's value re-runs what it touches and
``dataclasses.replace(cfg, profile="full")`` never keeps a quick value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from edgedistill.compress.errors import ConfigError

NAMES = ("quick", "full")

C = TypeVar("C")


def check(table: str, profile: str) -> None:
    """``<table>.profile`` must name a profile."""
    if profile not in NAMES:
        raise ConfigError(f"{table}.profile", profile, f"must be one of {', '.join(NAMES)}")


def resolve(cfg: C, profiles: dict[str, dict[str, Any]]) -> C:
    """``cfg`` with each field left None filled from ``profiles[cfg.profile]`` (its ``data`` too)."""
    table = profiles[cfg.profile]  # type: ignore[attr-defined]
    own = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    fill = {k: v for k, v in table.items() if k in own and getattr(cfg, k) is None and v is not None}
    data = getattr(cfg, "data", None)
    if data is not None:
        data_fields = {f.name for f in dataclasses.fields(data)}
        data_fill = {k: v for k, v in table.items()
                     if k not in own and k in data_fields and getattr(data, k) is None and v is not None}
        if data_fill:
            fill["data"] = dataclasses.replace(data, **data_fill)
    return dataclasses.replace(cfg, **fill) if fill else cfg  # type: ignore[type-var]
