"""Every error the toolchain raises on purpose. The CLI turns these into one clear line."""

from __future__ import annotations

from pathlib import Path


class EdgeDistillError(Exception):
    """Base class of the errors a user can act on (the CLI prints them without a traceback)."""


class ConfigError(EdgeDistillError, ValueError):
    """A configuration field holds a value that cannot work."""

    def __init__(self, field: str, value: object, why: str):
        self.field, self.value, self.why = field, value, why
        super().__init__(f"{field}={value!r}: {why}")


class SourceError(EdgeDistillError):
    """A built-in source cannot be fetched or extracted."""


class IntegrityError(SourceError):
    """A downloaded or cached file does not have the pinned sha256."""

    def __init__(self, path: Path | str, expected: str, actual: str):
        self.path, self.expected, self.actual = Path(path), expected, actual
        super().__init__(f"{path}: sha256 {actual} does not match the pinned {expected}")


class UnsafeArchiveError(SourceError):
    """An archive member would be written outside the target folder."""


class DataError(EdgeDistillError, ValueError):
    """Labelled data that cannot be used; names the file, column and row where known."""

    def __init__(self, message: str, *, path: Path | str | None = None,
                 column: str | None = None, row: int | None = None):
        self.path, self.column, self.row = path, column, row
        where = []
        if path is not None:
            where.append(str(path))
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class VocabTrimError(EdgeDistillError):
    """A trimmed vocabulary does not reproduce the untrimmed model on the texts it was trimmed for."""


class TransferSetError(EdgeDistillError, ValueError):
    """A distillation transfer set that would leak evaluation texts or cannot be used."""


class VariantBuildError(EdgeDistillError):
    """Every int8 variant asked for failed to build or run (errors, not gate rejections): only fp32 could ship."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        listed = "; ".join(f"{name}: {why}" for name, why in self.errors.items())
        super().__init__(f"no int8 variant could be built or run ({listed}); fix the cause, or set "
                         "quantize.allow_fp32 = true to ship fp32")


class ExportError(EdgeDistillError):
    """A checkpoint cannot be exported to ONNX, or an exported folder is incomplete."""


class ExportMetaError(ExportError):
    """An export folder's ``export.json`` is missing, unreadable, or lacks a field (or holds a bad one)."""

    def __init__(self, path: Path | str, key: str | None, why: str):
        self.path, self.key, self.why = Path(path), key, why
        super().__init__(f"{path}: {key}: {why}" if key else f"{path}: {why}")


class ExportParityError(ExportError):
    """The ONNX graph does not reproduce its source model (torch, or scikit-learn for the baseline): the largest
    absolute difference per output."""

    def __init__(self, diffs: dict[str, float], atol: float, worst: dict[str, str] | None = None,
                 source: str = "torch"):
        self.diffs, self.atol, self.worst, self.source = dict(diffs), atol, dict(worst or {}), source
        parts = [f"{name}: max |{source} - onnx| = {d:.3g}"
                 + (f" (at {self.worst[name]})" if name in self.worst else "") for name, d in self.diffs.items()]
        super().__init__(f"the exported graph differs from the {source} model beyond atol={atol:g}: "
                         + "; ".join(parts))


class UpdateRefused(EdgeDistillError):
    """An update the gate would not ship (it forgets too much, or does not help): the old package stays."""


class TargetsError(EdgeDistillError):
    """A declared target cannot be shipped: no variant gives fp32's answers there, or its check is stale."""


class PlanError(EdgeDistillError):
    """A time budget that cannot hold the smallest plan of a build; the message names the budget that would."""

    def __init__(self, message: str, *, needed_s: float):
        self.needed_s = needed_s
        super().__init__(message)
