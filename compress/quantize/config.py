"""The quantize stage's settings: :class:`QuantizeConfig`, its hardware presets, and the names they accept."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.exportmeta import MODEL_FILE
from edgedistill.runtime import cpu

VARIANT_FILES = {"fp32": MODEL_FILE, "optimized": "model_optimized.onnx", "int8-dynamic": "model_int8_dynamic.onnx",
                 "int8-static": "model_int8_static.onnx", "fp16": "model_fp16.onnx"}
BUILDABLE = ("optimized", "int8-dynamic", "int8-static", "fp16")
PRESETS = ("avx2", "avx512_vnni", "arm64")
AUTO = "auto"
"""The preset that follows the machine: what a recipe or ``edgedistill quantize`` gets when it names none."""
# The preset "auto" takes for each int8 instruction set edgedistill.runtime.cpu.detect() can name.
ISA_PRESETS: dict[str, str | None] = {
    # AMX's TDPBUSD and AVX-VNNI's VEX-encoded VPDPBUSD accumulate u8 x s8 products in int32, as AVX-512
    # VNNI does: nothing saturates, so they take its full 8-bit weight range
    "amx": "avx512_vnni", "avx512-vnni": "avx512_vnni", "avx-vnni": "avx512_vnni",
    "avx2": "avx2",
    # an x86 CPU whose flags could not be read may lack VNNI: 7-bit weights never saturate on any x86 kernel
    "x86": "avx2",
    "arm64-i8mm": "arm64", "arm64-dotprod": "arm64", "arm64": "arm64",
    # another architecture: no preset, the plain defaults (full range; its kernels are not x86's)
    "unknown": None,
}
assert set(ISA_PRESETS) == set(cpu.ISAS), "every instruction set edgedistill.runtime.cpu names needs a preset"
QTYPES = ("qint8", "quint8")
CALIBRATIONS = ("minmax", "entropy", "percentile")


@dataclass
class QuantizeConfig:
    """Which variants to build from an export, how to quantise them, and the accuracy gate."""

    onnx_dir: str = ""
    """A folder written by ``edgedistill export``; variants and the report are written into it."""
    data: DataConfig = field(default_factory=DataConfig)
    """The labelled data: its validation split gates and chooses every variant, its training texts calibrate static
    int8. The test split is never read here: the build report scores the shipped package on it."""
    preset: str | None = None
    """The hardware preset these settings came from (set by the named constructors; informational). A recipe's
    or the CLI's ``preset`` picks the constructor (:meth:`from_preset`); ``"auto"``, their default, is resolved
    there to a preset of :data:`PRESETS`, so this field always names a concrete one (or None)."""
    detected_isa: str | None = None
    """Set by ``preset = "auto"``: the int8 instruction set :func:`edgedistill.runtime.cpu.detect` found on the machine
    the config was made on, which chose ``preset`` (``avx512-vnni``, ``avx2``, ``arm64-dotprod``...). None when the
    preset was named."""
    variants: tuple[str, ...] = BUILDABLE
    """Variants to build besides fp32: optimized, int8-dynamic, int8-static, fp16."""
    per_channel: bool = True
    """One weight scale per output channel (more accurate, slightly bigger) rather than per tensor."""
    reduce_range: bool = False
    """7-bit weights: avoids int16 saturation of u8 x s8 products on AVX2/AVX512 without VNNI."""
    weight_type: str = "qint8"
    """Weight type: qint8 (s8) or quint8 (u8)."""
    activation_type: str = "quint8"
    """Activation type of static QDQ (dynamic quantisation always uses u8 activations)."""
    symmetric_activations: bool = False
    """Static only: symmetric activation ranges (zero point 0), which s8 kernels on ARM prefer."""
    quantize_embeddings: bool = True
    """Quantise the word-embedding table too (Gather / EmbedLayerNormalization): about half of a small model."""
    calibration: str = "minmax"
    """Static calibration: minmax, entropy or percentile."""
    calibration_samples: int = 128
    """Training texts run through the model to calibrate static activation ranges."""
    percentile: float = 99.999
    """Percentile calibration: the share of each activation histogram kept inside the range."""
    budget: float = 1.0
    """Largest macro-F1 drop, in points (1.0 = 0.01), below fp32 that a variant may have."""
    consistency_samples: int = 512
    """Validation texts also classified one at a time, to measure how much a variant's answers depend on batching."""
    max_batch_flips: float | None = None
    """Reject a variant whose labels change between batch 1 and batched runs on more than this share of the
    consistency texts (0.0: every text must always get the same label; dynamic int8 batched usually fails it, static
    int8 and fp32 pass). None: measured and reported only."""
    batch_invariant: bool = True
    """Ship answers that never depend on batch-mates: the runtime runs a batch-dependent variant (dynamic int8, one
    activation scale per batch) one text per call, and the gate measures it so. False: batch it (faster; a text's
    label can then change with its batch-mates). The package inherits this setting from the report."""
    min_agreement: float | None = None
    """Also reject a variant whose predicted labels agree with fp32's on fewer than this share of the validation texts
    (e.g. 0.97): a macro-F1 within budget can hide errors that cancel out. None: macro-F1 alone decides."""
    fallbacks: bool = True
    """Try the fallbacks when an int8 variant fails the gate."""
    allow_fp32: bool = False
    """Ship fp32 when int8 was asked for but every int8 attempt raised an error while being built or measured. False:
    the stage fails, listing each attempt's error. Variants the gate rejects fall back to fp32 either way."""
    sensitive_nodes: int = 4
    """How many of the most sensitive weight nodes the last fallback keeps in fp32."""
    max_validation_samples: int | None = None
    """Gate on a stratified subsample of the validation split; None = the whole split."""
    latency_samples: int = 32
    """Validation texts timed one at a time (batch 1) through the runtime, twice each after a warm-up."""
    threads: int | None = None
    """Intra-op threads for evaluation and timing (None: onnxruntime's default, one per core)."""
    batch_size: int = 32
    """Batch size of the accuracy evaluation."""

    def __post_init__(self) -> None:
        if not str(self.onnx_dir):
            raise ConfigError("quantize.onnx_dir", self.onnx_dir, "name a folder written by `edgedistill export`")
        if isinstance(self.data, str):
            self.data = DataConfig(source=self.data)
        self.variants = tuple(self.variants)
        if bad := [v for v in self.variants if v not in BUILDABLE]:
            raise ConfigError("quantize.variants", list(self.variants), f"unknown {bad}; choose from {list(BUILDABLE)}")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError("quantize.preset", self.preset, f"choose one of {list(PRESETS)}" + (
                " ('auto' is resolved by QuantizeConfig.from_preset, as recipes and the CLI do)"
                if self.preset == AUTO else ""))
        if self.detected_isa is not None and self.detected_isa not in ISA_PRESETS:
            raise ConfigError("quantize.detected_isa", self.detected_isa, f"choose one of {list(ISA_PRESETS)}")
        for name in ("weight_type", "activation_type"):
            if getattr(self, name) not in QTYPES:
                raise ConfigError(f"quantize.{name}", getattr(self, name), f"choose one of {list(QTYPES)}")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError("quantize.calibration", self.calibration, f"choose one of {list(CALIBRATIONS)}")
        if not 0 <= self.budget <= 100:
            raise ConfigError("quantize.budget", self.budget, "must be in [0, 100] macro-F1 points")
        if not isinstance(self.batch_invariant, bool):
            raise ConfigError("quantize.batch_invariant", self.batch_invariant, "must be true or false")
        for name in ("min_agreement", "max_batch_flips"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0):
                raise ConfigError(f"quantize.{name}", v, "must be a share in [0, 1] (or unset)")
        if not 90.0 < self.percentile < 100.0:
            raise ConfigError("quantize.percentile", self.percentile, "must be in (90, 100)")
        for name, low in (("calibration_samples", 1), ("latency_samples", 1), ("batch_size", 1),
                          ("consistency_samples", 0),
                          ("sensitive_nodes", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or v < low:
                raise ConfigError(f"quantize.{name}", v, f"must be an int >= {low}")
        if self.max_validation_samples is not None and self.max_validation_samples < 2:
            raise ConfigError("quantize.max_validation_samples", self.max_validation_samples,
                              "must be at least 2 (or unset)")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("quantize.threads", self.threads, "must be >= 1 (or unset)")

    # Hardware presets. Dynamic int8 always multiplies u8 activations by the weights; the presets
    # choose the weight type, the range and the static activation type for the target's kernels.
    @classmethod
    def avx2(cls, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        # x86 without VNNI computes u8 x s8 with VPMADDUBSW, which adds pairs of products into int16 and
        # saturates on large weights: 7-bit weights (reduce_range) keep every pair sum inside int16.
        # u8 activations / s8 weights is MLAS's fast x86 path; per-channel scales win back the accuracy
        # the lost weight bit costs.
        return cls(onnx_dir=onnx_dir, **{"preset": "avx2", "weight_type": "qint8", "activation_type": "quint8",
                                         "per_channel": True, "reduce_range": True, **overrides})

    @classmethod
    def avx512_vnni(cls, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        # VNNI's VPDPBUSD accumulates u8 x s8 products straight into int32: no saturation, so the full
        # 8-bit weight range is safe and faster to reach than 7 bits; u8 activations / s8 weights is
        # the layout the instruction takes; per-channel for accuracy at no measurable cost.
        return cls(onnx_dir=onnx_dir, **{"preset": "avx512_vnni", "weight_type": "qint8",
                                         "activation_type": "quint8", "per_channel": True, "reduce_range": False,
                                         **overrides})

    @classmethod
    def arm64(cls, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        # ARM64 NEON / dot-product (SDOT/UDOT) kernels accumulate in int32 without saturation: full range.
        # Dynamic: u8 activations / s8 weights (optimum's arm64 preset: faster than u8/u8 on lower-end
        # cores, the same on higher-end ones). Static QDQ: s8 activations with symmetric ranges, which
        # onnxruntime's guidance gives for ARM's s8 kernels; per-channel for accuracy.
        return cls(onnx_dir=onnx_dir, **{"preset": "arm64", "weight_type": "qint8", "activation_type": "qint8",
                                         "symmetric_activations": True, "per_channel": True, "reduce_range": False,
                                         **overrides})

    @classmethod
    def from_preset(cls, preset: str | None, onnx_dir: str = "", **overrides: Any) -> QuantizeConfig:
        """The named preset with ``overrides`` applied. ``"auto"``, or None (no preset named, as in a recipe
        without one), detects this machine's int8 instruction set and takes its preset (:data:`ISA_PRESETS`),
        recording the instruction set in ``detected_isa``."""
        if preset is None or preset == AUTO:
            isa = cpu.detect().name
            preset, overrides = ISA_PRESETS[isa], {**overrides, "detected_isa": isa}
            if preset is None:
                return cls(onnx_dir=onnx_dir, **overrides)
        if preset not in PRESETS:
            raise ConfigError("quantize.preset", preset, f"choose one of {[AUTO, *PRESETS]}")
        return getattr(cls, preset)(onnx_dir, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["variants"] = list(self.variants)
        return d

