"""The quantize report: every :class:`Attempt` of a run, the variant chosen to ship, and their Markdown."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgedistill.compress.errors import ConfigError
from edgedistill.runtime.fsutil import write_text_atomic
from edgedistill.compress.layout import QUANTIZE_REPORT
from edgedistill.runtime.cpu import isa_name

REPORT_JSON = QUANTIZE_REPORT
REPORT_MD = "quantize_report.md"


def preset_text(preset: str | None, detected_isa: str | None) -> str:
    """``avx512_vnni (auto-detected: amx)``, ``avx2`` or ``none``: a preset and what chose it, for reports."""
    name = preset or "none"
    return f"{name} (auto-detected: {detected_isa})" if detected_isa else name


@dataclass
class Attempt:
    """One variant built and measured: what it is, how it scored, and whether it passed the gate."""

    name: str
    variant: str
    file: str
    settings: dict[str, Any] = field(default_factory=dict)
    fallback_for: str | None = None
    status: str = "pending"
    """passed, rejected, not-gated (built but not measurable here) or error (could not be built)."""
    reason: str = ""
    macro_f1: float | None = None
    accuracy: float | None = None
    agreement: float | None = None
    """Share of validation texts whose predicted label equals fp32's."""
    batch_flips: float | None = None
    """Share of the consistency texts whose label differs between classifying each text alone and in batches:
    dynamic int8 quantises activations with one range per batch, so its answers depend on the batch-mates."""
    batch_max_diff: float | None = None
    """Largest probability difference between a text classified alone and in a batch."""
    size_bytes: int | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    ops: dict[str, int] = field(default_factory=dict)
    """Quantisation operators in the graph (MatMulInteger, DynamicQuantizeLinear, QuantizeLinear, ...)."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class QuantizeReport:
    """Every attempt of one quantisation run and the variant chosen to ship."""

    onnx_dir: str
    config: dict[str, Any]
    dataset: str
    validation_examples: int
    budget: float
    reference_macro_f1: float
    chosen: str
    chosen_variant: str
    chosen_file: str
    chosen_why: str = ""
    """Set when variants tied on latency and something else decided
    (:func:`edgedistill.compress.quantize.gate.choose`)."""
    fused_ops: dict[str, int] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    @property
    def preset(self) -> str | None:
        return self.config.get("preset")

    @property
    def detected_isa(self) -> str | None:
        """The instruction set ``preset = "auto"`` chose the preset from; None when the preset was named."""
        return self.config.get("detected_isa")

    @property
    def isa(self) -> str | None:
        """The int8 instruction set of the machine the variants were timed and chosen on (read from the flags
        for a report written before the environment named it)."""
        env = self.environment
        if env.get("isa") or not env.get("cpu_flags"):
            return env.get("isa")
        return isa_name(set(env["cpu_flags"]), env.get("machine") or "")

    def preset_text(self) -> str:
        return preset_text(self.preset, self.detected_isa)

    @property
    def nothing_passed(self) -> bool:
        """No variant but the fp32 reference passed the gate."""
        return not any(a.passed for a in self.attempts if a.variant != "fp32")

    @property
    def int8_errored(self) -> bool:
        """int8 was attempted and every attempt raised an error (none was judged): fp32 ships by
        ``allow_fp32``, not on the gate's verdict."""
        int8 = [a for a in self.attempts if a.variant.startswith("int8")]
        return bool(int8) and all(a.status == "error" for a in int8)

    @property
    def no_int8_passed(self) -> bool:
        return not any(a.passed for a in self.attempts if a.variant.startswith("int8"))

    def attempt(self, name: str) -> Attempt:
        for a in self.attempts:
            if a.name == name:
                return a
        raise KeyError(name)

    def summary(self) -> str:
        ref = self.attempt("fp32")
        best = self.attempt(self.chosen)
        if self.nothing_passed and self.int8_errored:
            return ("No int8 variant could be built or run (the errors are in the table): shipping fp32, as "
                    "quantize.allow_fp32 allows.")
        if self.nothing_passed:
            return (f"Nothing passed the gate ({self.budget:g} macro-F1 points below fp32 {ref.macro_f1:.4f}): "
                    "shipping fp32.")
        text = (f"Chosen: {best.name} ({best.file}), macro-F1 {best.macro_f1:.4f} "
                f"({100 * (best.macro_f1 - ref.macro_f1):+.2f} points vs fp32), "
                f"{ref.size_bytes / best.size_bytes:.2f}x smaller, batch-1 p50 {best.latency_p50_ms:.2f} ms "
                f"vs {ref.latency_p50_ms:.2f} ms fp32.")
        if self.chosen_why:
            text += f" ({self.chosen_why}.)"
        if self.no_int8_passed:
            text += (" No int8 variant could be built or run (quantize.allow_fp32)." if self.int8_errored
                     else " No int8 variant passed the gate.")
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nothing_passed"] = self.nothing_passed
        d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantizeReport:
        names = {f.name for f in fields(cls)}
        if "test_examples" in d and "validation_examples" not in d:
            raise ConfigError("quantize report", d.get("onnx_dir"), "was written by an older edgedistill whose gate "
                              "read the test split; run the quantize stage again (--force quantize)")
        d = {k: v for k, v in d.items() if k in names}
        d["attempts"] = [Attempt(**a) for a in d.get("attempts", [])]
        return cls(**d)

    @classmethod
    def load(cls, onnx_dir: Path | str) -> QuantizeReport:
        return cls.from_dict(json.loads((Path(onnx_dir) / REPORT_JSON).read_text()))

    def save(self, folder: Path | str | None = None) -> Path:
        """Write ``quantize_report.json`` and ``quantize_report.md``; returns the JSON's path."""
        folder = Path(folder or self.onnx_dir)
        path = folder / REPORT_JSON
        (folder / REPORT_MD).write_text(self.to_markdown())
        # the JSON is what marks the run finished: it appears whole
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def to_markdown(self) -> str:
        ref = self.attempt("fp32")

        def f(v: float | None, fmt: str = ".4f") -> str:
            return "–" if v is None else format(v, fmt)

        env = self.environment
        floor, flips = self.config.get("min_agreement"), self.config.get("max_batch_flips")
        lines = [f"# Quantization report: {Path(self.onnx_dir).name}", "",
                 f"**{self.summary()}**", "",
                 f"- Gate: macro-F1 at most {self.budget:g} point{'' if self.budget == 1 else 's'} below fp32 "
                 f"({ref.macro_f1:.4f})"
                 + (f" and labels agreeing with fp32's on at least {floor:.2%} of texts" if floor is not None else "")
                 + f" on {self.dataset} validation, {self.validation_examples} texts, through "
                 "`edgedistill.runtime.TextClassifier` (the test split is never read here).",
                 f"- Preset: {self.preset_text()}; latency: batch 1, p50/p90 over "
                 f"{self.config.get('latency_samples')} validation texts x 2, "
                 f"{env.get('threads') or 'default'} threads.",
                 f"- Machine: {env.get('cpu', '?')} ({env.get('logical_cpus', '?')} cores; int8 instruction set "
                 f"{self.isa or 'unknown'}, flags: {', '.join(env.get('cpu_flags') or []) or 'unknown'}); onnxruntime "
                 f"{env.get('onnxruntime')}. Timings on a shared machine are noisy.", "",
                 f"- Batch flips: the share of {self.config.get('consistency_samples')} validation texts whose label "
                 "differs between classifying each alone and in batches of "
                 f"{self.config.get('batch_size')} (dynamic int8 sets activation ranges per batch)"
                 + (f"; at most {flips:.2%} allowed" if flips is not None else "")
                 + ("; every variant is run as it ships, and dynamic int8 ships one text per call (batch_invariant), "
                    "so its flips are 0" if self.config.get("batch_invariant", False) else "") + ".", "",
                 "| attempt | variant | fallback for | macro-F1 | vs fp32 (points) | agreement | batch flips | "
                 "size (MB) | p50 (ms) | p90 (ms) | status |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for a in self.attempts:
            delta = None if a.macro_f1 is None else 100 * (a.macro_f1 - ref.macro_f1)
            status = a.status + (f": {a.reason}" if a.reason else "")
            if a.name == self.chosen:
                status = "**chosen** · " + status
            lines.append(f"| {a.name} | {a.variant} | {a.fallback_for or ''} | {f(a.macro_f1)} | {f(delta, '+.2f')} | "
                         f"{f(a.agreement)} | {f(a.batch_flips, '.2%')} | "
                         f"{f(None if a.size_bytes is None else a.size_bytes / 1e6, '.2f')} | "
                         f"{f(a.latency_p50_ms, '.2f')} | {f(a.latency_p90_ms, '.2f')} | {status} |")
        if self.fused_ops:
            lines += ["", "Fused operators in model_optimized.onnx: "
                      + ", ".join(f"{k} {v}" for k, v in self.fused_ops.items() if v) + "."]
        lines += ["", "## Settings per attempt", ""]
        for a in self.attempts:
            ops = ", ".join(f"{k} {v}" for k, v in a.ops.items())
            lines.append(f"- **{a.name}** (`{a.file}`): {json.dumps(a.settings, sort_keys=True)}"
                         + (f"; quantised ops: {ops}" if ops else ""))
        return "\n".join(lines) + "\n"
