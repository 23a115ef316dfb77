"""The export's record: ``export.json`` beside ``model.onnx``, as a typed :class:`ExportMeta`.

The export stage writes it (what the graph takes, its labels, its token limit, opset, the parity check's
figures, the versions that made it); every later stage (quantize, package, report, the benchmarks) reads it
through :func:`read_export`, by attribute, and gets one clear :class:`~edgedistill.compress.errors.ExportMetaError`
naming the file and the key when it is missing or malformed. :func:`runtime_config` turns it into the package's
``config.json`` for the runtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgedistill.compress.errors import ExportError, ExportMetaError

MODEL_FILE = "model.onnx"
META_FILE = "export.json"
TOKENIZER_FILE = "tokenizer.json"
OUTPUT_NAME = "logits"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _diffs(d: Any, key: str, where: Path | str) -> dict[str, float]:
    if not isinstance(d, Mapping) or not all(isinstance(k, str) and _is_number(v) for k, v in d.items()):
        raise ExportMetaError(where, key, f"{d!r} is not a mapping of output name to number")
    return dict(d)


@dataclass(frozen=True)
class ParityCase:
    """One input shape of the parity check and the largest ``|torch - onnx|`` per output there."""

    batch: int
    length: int
    diffs: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "length": self.length, **self.diffs}


@dataclass(frozen=True)
class Parity:
    """What :func:`check_parity` found: the tolerance, the largest difference per output, every case."""

    atol: float
    max_abs_diff: Mapping[str, float]
    cases: tuple[ParityCase, ...] = ()

    @classmethod
    def from_dict(cls, d: Any, where: Path | str = META_FILE) -> Parity:
        """The ``parity`` record of ``export.json`` (as :func:`check_parity` returns it)."""
        if not isinstance(d, Mapping):
            raise ExportMetaError(where, "parity", f"{d!r} is not an object")
        if not _is_number(d.get("atol")):
            raise ExportMetaError(where, "parity.atol", f"{d.get('atol')!r} is not a number")
        cases = d.get("cases", [])
        if not isinstance(cases, list):
            raise ExportMetaError(where, "parity.cases", f"{cases!r} is not a list")
        parsed = []
        for i, c in enumerate(cases):
            if not isinstance(c, Mapping) or not (_is_int(c.get("batch")) and _is_int(c.get("length"))):
                raise ExportMetaError(where, f"parity.cases[{i}]", f"{c!r} has no int batch and length")
            rest = {k: v for k, v in c.items() if k not in ("batch", "length")}
            parsed.append(ParityCase(c["batch"], c["length"], _diffs(rest, f"parity.cases[{i}]", where)))
        return cls(d["atol"], _diffs(d.get("max_abs_diff"), "parity.max_abs_diff", where), tuple(parsed))

    def to_dict(self) -> dict[str, Any]:
        return {"atol": self.atol, "max_abs_diff": dict(self.max_abs_diff), "cases": [c.to_dict() for c in self.cases]}


# The fields later stages cannot do without; every export.json ever written holds them.
_REQUIRED = ("model_type", "labels", "max_length", "input_names", "output_name", "uses_token_type_ids",
             "pad_token_id", "opset")


@dataclass(frozen=True, kw_only=True)
class ExportMeta:
    """An export folder's record of itself (``export.json``): what the graph takes and gives, its labels and
    tokens per text, the parity check it passed, and where it came from.

    Written by :func:`export`, read by every later stage through :func:`read_export`. The fields are in the
    file's key order; keys this version does not know are kept in ``extra`` and written back after them.
    """

    checkpoint: str | None = None
    model_type: str
    labels: tuple[str, ...]
    max_length: int
    input_names: tuple[str, ...]
    output_name: str
    uses_token_type_ids: bool
    pad_token_id: int
    opset: int
    num_attention_heads: int | None = None
    hidden_size: int | None = None
    num_hidden_layers: int | None = None
    parity: Parity | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    """The :class:`ExportConfig` it was exported with, as a dict."""
    exporter: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str | None = None
    task: str = "single_label"
    """``multi_label``: the graph's logits are one sigmoid per label (the checkpoint's ``problem_type``)."""
    long_texts: str = "truncate"
    """How the model reads a text longer than ``max_length`` (the checkpoint's ``long_texts``,
    :mod:`edgedistill.runtime.views`)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    where: str = field(default=META_FILE, compare=False, repr=False)  # the file, for error messages

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ExportMetaError:
            return ExportMetaError(self.where, name, f"{getattr(self, name)!r} is not {want}")

        for name in ("labels", "input_names"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value or \
                    not all(isinstance(x, str) and x for x in value):
                raise bad(name, "a non-empty list of non-empty strings")
            object.__setattr__(self, name, tuple(value))
        for name in ("model_type", "output_name"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise bad(name, "a non-empty string")
        for name, low in (("max_length", 1), ("pad_token_id", 0), ("opset", 1)):
            if not _is_int(getattr(self, name)) or getattr(self, name) < low:
                raise bad(name, f"an int >= {low}")
        if not isinstance(self.uses_token_type_ids, bool):
            raise bad("uses_token_type_ids", "true or false")
        for name in ("num_attention_heads", "hidden_size", "num_hidden_layers"):
            if getattr(self, name) is not None and not _is_int(getattr(self, name)):
                raise bad(name, "an int or null")
        for name in ("checkpoint", "exporter", "created"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise bad(name, "a string or null")
        if self.task not in ("single_label", "multi_label"):
            raise bad("task", "single_label or multi_label")
        if self.long_texts not in ("truncate", "head+tail", "chunks"):
            raise bad("long_texts", "truncate, head+tail or chunks")
        for name in ("config", "versions"):
            if not isinstance(getattr(self, name), Mapping):
                raise bad(name, "an object")
        if self.parity is not None and not isinstance(self.parity, Parity):
            raise bad("parity", "a parity record")

    @classmethod
    def from_dict(cls, d: Any, where: Path | str = META_FILE) -> ExportMeta:
        """The record from the parsed ``export.json``; :class:`ExportMetaError` names the bad or missing key."""
        if not isinstance(d, Mapping):
            raise ExportMetaError(where, None, f"must hold a JSON object, not {type(d).__name__}")
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ExportMetaError(where, ", ".join(missing), "missing; re-run `edgedistill export` to rewrite the "
                                  "folder")
        names = {f.name for f in fields(cls)} - {"extra", "where"}
        known = {k: v for k, v in d.items() if k in names}
        if known.get("parity") is not None:
            known["parity"] = Parity.from_dict(known["parity"], where)
        return cls(**known, extra={k: v for k, v in d.items() if k not in names}, where=str(where))

    @classmethod
    def from_file(cls, path: Path | str) -> ExportMeta:
        """Read an ``export.json``; a missing, unreadable or malformed file raises :class:`ExportMetaError`."""
        path = Path(path)
        if not path.is_file():
            raise ExportMetaError(path, None, f"missing; {path.parent} is not a folder written by `edgedistill export`")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # ValueError: invalid JSON or UTF-8
            raise ExportMetaError(path, None, f"cannot be read as JSON ({e})") from e
        return cls.from_dict(d, where=path)

    def to_dict(self) -> dict[str, Any]:
        """The ``export.json`` object: every field (as :func:`export` writes them, in its order), then ``extra``."""
        return {"checkpoint": self.checkpoint, "model_type": self.model_type, "labels": list(self.labels),
                "max_length": self.max_length, "input_names": list(self.input_names),
                "output_name": self.output_name, "uses_token_type_ids": self.uses_token_type_ids,
                "pad_token_id": self.pad_token_id, "opset": self.opset,
                "num_attention_heads": self.num_attention_heads, "hidden_size": self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers,
                "parity": self.parity.to_dict() if self.parity is not None else None,
                "config": dict(self.config), "exporter": self.exporter, "versions": dict(self.versions),
                "created": self.created, **({"task": self.task} if self.task != "single_label" else {}),
                **({"long_texts": self.long_texts} if self.long_texts != "truncate" else {}), **self.extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def read_export(onnx_dir: Path | str) -> ExportMeta:
    """The ``export.json`` of an exported folder (what the graph takes, labels, max length, opset)."""
    meta = ExportMeta.from_file(Path(onnx_dir) / META_FILE)
    for name in (MODEL_FILE, TOKENIZER_FILE):
        if not (Path(onnx_dir) / name).is_file():
            raise ExportError(f"{Path(onnx_dir) / name} is missing: the export folder is incomplete")
    return meta


def runtime_config(meta: ExportMeta, variant: str, *, temperature: float = 1.0,
                   batch_invariant: bool = True, biases: Sequence[float] | None = None,
                   thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """The package ``config.json`` (what ``edgedistill.runtime.TextClassifier`` needs) for one variant of an export:
    ``temperature`` divides the logits before the softmax, ``biases`` (one per label) are added after it;
    ``batch_invariant`` makes the runtime run a batch-dependent variant (dynamic int8) one text per call; a
    multi-label export's ``thresholds`` (one per label, on its sigmoid probability; None: 0.5 each)."""
    from edgedistill.runtime.package import BATCH_DEPENDENT_VARIANTS
    from edgedistill.runtime.views import DEFAULT_MAX_CHUNKS, DEFAULT_STRIDE

    return {"labels": list(meta.labels), "max_length": meta.max_length, "input_names": list(meta.input_names),
            "output_name": meta.output_name, "uses_token_type_ids": meta.uses_token_type_ids,
            "pad_token_id": meta.pad_token_id, "model_type": meta.model_type, "variant": variant,
            "temperature": temperature, "batch_dependent": variant in BATCH_DEPENDENT_VARIANTS,
            "batch_invariant": batch_invariant, **({"biases": [float(b) for b in biases]} if biases else {}),
            **({"task": meta.task} if meta.task != "single_label" else {}),
            **({"long_texts": meta.long_texts} if meta.long_texts != "truncate" else {}),
            # the training windows' overlap: views.chunks keeps at most room - 1 tokens of it
            **({"chunk_stride": min(DEFAULT_STRIDE, meta.max_length - 3), "max_chunks": DEFAULT_MAX_CHUNKS}
               if meta.long_texts == "chunks" else {}),
            **({"thresholds": [float(t) for t in thresholds]} if thresholds is not None else {})}
