"""The ship stage: the most accurate candidate on validation, within the budget, becomes ``<build>/package/``.

The candidates are packages, each measured on the validation split by the stage that wrote it:

- the recipe's student (``candidates/student/``: the quantize gate's choice, as before);
- each ladder rung's student (``ladder/<rung>/candidates/student/``), when the recipe has a ``[ladder]``;
- the TF-IDF + logistic-regression baseline (``candidates/baseline/``,
  :mod:`edgedistill.compress.baseline_package`), unless ``ship.baseline = false``, and never for a recipe that
  declares the wasm target (onnxruntime-web has no string tensors).

:func:`edgedistill.compress.ladder.pick` chooses among them: the highest validation macro-F1 within the recipe's
budget (``[ladder]`` ``max_latency_ms``, ``min_macro_f1``, ``max_size_mb``, read for every candidate alike), ties
going to the faster. The chosen folder is copied to ``package/`` (hard links where the file system allows: packages are
never changed in place), and ``ship.json`` records every candidate's figures, the budget and why; the candidates'
own folders stay, so the report can score each on the test split, which no choice here reads. When nothing fits
the budget, :class:`edgedistill.compress.ladder.BudgetError` names the closest candidate, after ``ship.json`` is
written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgedistill.compress.errors import ConfigError
from edgedistill.runtime.fsutil import publishing, write_text_atomic

log = logging.getLogger(__name__)

STUDENT, BASELINE = "student", "baseline"  # the candidates' names besides the rungs'


@dataclass
class ShipConfig:
    """Which candidates compete for ``package/`` (the pipeline fills in where they are and the budget)."""

    baseline: bool = True
    """The TF-IDF + logistic-regression baseline competes: it ships when it scores best on validation within the
    budget. False: only students compete (the baseline is still built and reported)."""
    candidates: dict[str, str] = field(default_factory=dict)
    """Set by the pipeline: candidate name -> its package folder, the recipe's student first."""
    budget: dict[str, float] = field(default_factory=dict)
    """Set by the pipeline: the recipe's ``[ladder]`` budget."""
    platforms: tuple[str, ...] = ()
    """Set by the pipeline: the declared targets (a ``strings`` package cannot ship where wasm is one)."""
    output: str = ""
    """Set by the pipeline: the folder that ships (``package/``)."""
    record: str = ""
    """Set by the pipeline: where the decision is written (``ship.json``)."""

    def __post_init__(self) -> None:
        if not isinstance(self.baseline, bool):
            raise ConfigError("ship.baseline", self.baseline, "must be true or false")
        self.platforms = tuple(self.platforms)


def unshippable(rung: Any, platforms: tuple[str, ...]) -> str | None:
    """Why a candidate may not ship on the declared targets (None: it may)."""
    from edgedistill.runtime.package import KIND_STRINGS
    from edgedistill.runtime.webexport import NO_STRING_TENSORS

    if rung.kind == KIND_STRINGS and "wasm" in platforms:
        return f"the wasm target is declared, and {NO_STRING_TENSORS}"
    return None


def ship(cfg: ShipConfig) -> Path:
    """Choose among ``cfg.candidates`` on validation within ``cfg.budget``, write ``cfg.record`` and publish the
    chosen package to ``cfg.output``; returns that folder."""
    from edgedistill.compress.ladder import BudgetError, package_candidate, pick

    if not cfg.candidates or not cfg.output or not cfg.record:
        raise ConfigError("ship", asdict(cfg), "needs candidates, an output folder and a record file")
    missing = [f"{name} ({folder})" for name, folder in cfg.candidates.items() if not Path(folder).is_dir()]
    if missing:
        raise ConfigError("ship.candidates", missing, "not built: a ladder's rungs are built by `edgedistill build` "
                          "before the ship stage (build the recipe without --until)")
    cands = [package_candidate(name, name, Path(folder)) for name, folder in cfg.candidates.items()]
    excluded = {c.name: why for c in cands if (why := unshippable(c, cfg.platforms))}
    eligible = [c for c in cands if c.name not in excluded]
    try:
        chosen = pick(eligible, cfg.budget)
    except BudgetError as e:
        _write_record(cfg, cands, excluded, None, f"Nothing ships: {e}.")
        raise
    why = reason(chosen, cands, cfg.budget, excluded)
    _write_record(cfg, cands, excluded, chosen, why)
    with publishing(Path(cfg.output)) as tmp:
        shutil.copytree(chosen.package, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
    log.info("ship: %s", why)
    return Path(cfg.output)


def reason(chosen: Any, cands: list[Any], budget: dict[str, float], excluded: dict[str, str]) -> str:
    """One paragraph: what ships, and each candidate's validation macro-F1 (and what kept it out)."""
    def f1(c: Any) -> str:
        return "–" if c.validation_macro_f1 is None else f"{c.validation_macro_f1:.4f}"

    others = []
    for c in cands:
        if c is chosen:
            continue
        misses = c.misses(budget)
        note = (f"; {excluded[c.name]}" if c.name in excluded else
                f"; misses {', '.join(k.replace('_', ' ') for k in misses)}" if misses else "")
        others.append(f"{c.name} {f1(c)}{note}")
    within = " within the budget" if budget else ""
    return (f"{chosen.name} ships: the highest validation macro-F1{within} ({f1(chosen)}"
            + (f"; against {', '.join(others)}" if others else "") + ").")


def _write_record(cfg: ShipConfig, cands: list[Any], excluded: dict[str, str], chosen: Any, why: str) -> None:
    record = {"chosen": chosen.name if chosen else None, "why": why, "budget": cfg.budget, "split": "validation",
              "candidates": [{**asdict(c), "excluded": excluded.get(c.name)} for c in cands]}
    write_text_atomic(Path(cfg.record), json.dumps(record, indent=2) + "\n")


def read_record(path: Path) -> dict[str, Any] | None:
    """A build's ``ship.json`` (None before the ship stage ran)."""
    return json.loads(Path(path).read_text()) if Path(path).is_file() else None


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links there
        shutil.copy2(src, dst)
    return dst
