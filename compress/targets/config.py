"""The targets stage's settings: :class:`TargetsConfig` (the recipe's ``[targets]`` table)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError
from edgedistill.runtime import cpu
from edgedistill.runtime.package import TARGETS

ARM64_CPUS = ("cortex-a72", "neoverse-n1", "neoverse-v1")
"""QEMU CPU models, each of which makes onnxruntime pick other kernels: plain NEON, dot product (sdot/udot),
i8mm (smmla) + SVE."""


def build_machine() -> str:
    """The target this machine is: ``x86`` or ``arm64`` (``unknown`` elsewhere)."""
    return cpu.architecture(cpu.detect().machine)


@dataclass
class TargetsConfig:
    """Where the package must give the same answers, and how close "the same" is.

    Before a variant ships, it runs on each declared target's kernels over (a stratified sample of) the
    validation texts and is compared with the fp32 reference, fp32 ``model.onnx`` on the build machine. A
    variant that fails on a target is not shipped there: the next variant that passed the accuracy gate is
    checked instead (ending at fp32), and the package carries one model file per target when they differ.
    """

    onnx_dir: str = ""
    """The export folder (with its quantize report); ``targets.json`` is written into it."""
    data: DataConfig = field(default_factory=DataConfig)
    """The labelled data: the texts come from its validation split, as the accuracy gate's do."""
    platforms: tuple[str, ...] | None = None
    """The targets the package must run on: x86 (checked natively), arm64 (natively, or under QEMU with each
    of ``arm64_cpus``), wasm (headless Chromium, through the web export), cuda (onnxruntime's CUDA provider;
    ships the fp16 variant). None: the build machine only."""
    allow_unverified: tuple[str, ...] = ()
    """Targets that may ship although they could not be checked here (no GPU, no QEMU, no Chromium): their
    manifest entry says ``verified: false``. Any other target that cannot be checked stops the build."""
    min_agreement: float = 0.995
    """Of the texts the variant labels as fp32 does on the build machine (the answers the gate accepted), the
    share it must also label so on the target. 0.995 on the default 256 texts allows one text to change."""
    prob_tolerance: float = 0.05
    """How much further from fp32 the target's probabilities may land than the build machine's do (the largest
    |p - p_fp32| over the texts; 0 for fp32 variants). Correct kernels differ far less: ARM and x86 int8 within
    2e-3 of each other, WASM and x86 int8 0.019 on the real MiniLM student; a wrong kernel moves it by 0.1 and
    more and flips labels."""
    max_texts: int | None = 256
    """A stratified sample (the data seed) of this many validation texts; None: all. Emulated aarch64 is about
    100x slower: the int8 MiniLM-L6 student took 0.28 s a text under QEMU (neoverse-n1, one thread), so 256
    texts take about 70 s per CPU model, the three running side by side."""
    arm64_cpus: tuple[str, ...] = ARM64_CPUS
    """The QEMU CPU models arm64 is checked under when this machine is not arm64."""

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = DataConfig(source=self.data)
        for name in ("platforms", "allow_unverified", "arm64_cpus"):
            value = getattr(self, name)
            if value is None and name == "platforms":
                continue
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"targets.{name}", value, "must be a list of names")
            setattr(self, name, tuple(value))
        if self.platforms is not None:
            if not self.platforms:
                raise ConfigError("targets.platforms", list(self.platforms), "name at least one target (or leave it "
                                  "unset: the build machine)")
            if len(set(self.platforms)) != len(self.platforms):
                raise ConfigError("targets.platforms", list(self.platforms), "names a target twice")
        for name in ("platforms", "allow_unverified"):
            if bad := [t for t in getattr(self, name) or () if t not in TARGETS]:
                raise ConfigError(f"targets.{name}", list(getattr(self, name)),
                                  f"unknown {bad}; choose from {list(TARGETS)}")
        if extra := [t for t in self.allow_unverified if t not in self.resolved_platforms()]:
            raise ConfigError("targets.allow_unverified", list(self.allow_unverified),
                              f"{extra} not among the declared targets {list(self.resolved_platforms())} "
                              "(targets.platforms)")
        if not self.arm64_cpus:
            raise ConfigError("targets.arm64_cpus", [], "name at least one QEMU CPU model")
        if not (isinstance(self.min_agreement, (int, float)) and 0.0 <= self.min_agreement <= 1.0):
            raise ConfigError("targets.min_agreement", self.min_agreement, "must be a share in [0, 1]")
        if not (isinstance(self.prob_tolerance, (int, float)) and 0.0 <= self.prob_tolerance <= 1.0):
            raise ConfigError("targets.prob_tolerance", self.prob_tolerance, "must be in [0, 1]")
        if self.max_texts is not None and (not isinstance(self.max_texts, int) or self.max_texts < 2):
            raise ConfigError("targets.max_texts", self.max_texts, "must be an int >= 2 (or unset: every text)")

    def resolved_platforms(self) -> tuple[str, ...]:
        """The declared targets, or the build machine's when none are."""
        return self.platforms if self.platforms is not None else (build_machine(),)

    def resolved(self) -> TargetsConfig:
        """A copy with ``platforms`` filled in (the fingerprint then names the targets checked)."""
        return dataclasses.replace(self, platforms=self.resolved_platforms())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("data")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
