"""The model package format: what a package holds, how it is hashed, how it is checked and opened.

A package is a folder, or one ``.zip`` of that folder::

    model.onnx      the classifier (inputs input_ids, attention_mask[, token_type_ids]; output logits)
    tokenizer.json  read by the ``tokenizers`` library (only in a package of the ``tokens`` kind)
    config.json     labels in output order, max_length, input names, pad token id, temperature, ...
    manifest.json   format + version, and the sha256 and size of every other file
    README.md       the model card
    model.*.onnx    optional: another target's model file, when targets differ (the manifest's ``targets``)

config.json's ``kind`` says what the graph takes: ``tokens`` (the default; a transformer or the static
student, fed token ids made with tokenizer.json) or ``strings`` (one string tensor of raw texts, no tokenizer:
the TF-IDF + logistic-regression baseline, whose n-grams are counted inside the graph).

A package is valid only if every file the manifest lists is there with its size
and sha256; readers refuse a newer major ``format_version``. The toolchain
(``compress/package.py``) assembles the folder and calls :func:`write_manifest`;
the runtime calls :func:`open_package` and checks every file before using it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

from edgedistill.runtime.archive import MAX_ARCHIVE_BYTES, safe_extract  # noqa: F401 (MAX_ARCHIVE_BYTES: re-exported)
from edgedistill.runtime.errors import PackageError, PackageFormatError, PackageIntegrityError
from edgedistill.runtime.integrity import PinnedFile, _stat_key, sha256_file  # noqa: F401 (sha256_file: re-exported)
from edgedistill.runtime.tasks import TASK_MULTI, TASK_SINGLE, TASKS, scoring_problem  # noqa: F401 (TASKS: re-exported)
from edgedistill.runtime.tasks import long_texts_fields, long_texts_problem
from edgedistill.runtime.views import DEFAULT_MAX_CHUNKS, DEFAULT_STRIDE, TRUNCATE

log = logging.getLogger(__name__)

FORMAT = "edgedistill-package"
FORMAT_VERSION = "1.1"  # bump the minor for additions old readers may ignore, the major for anything else
# 1.1: the optional ``targets`` table (a reader of 1.0 loads model.onnx, the build machine's file); config.json's
# temperature, batch_dependent, batch_invariant
# config.json's kind: a graph fed token ids made with tokenizer.json (the default), or the raw texts as one string
# tensor (the TF-IDF baseline, whose output is log-probabilities)
KIND_TOKENS, KIND_STRINGS = "tokens", "strings"
KINDS = (KIND_TOKENS, KIND_STRINGS)
# A strings package is a new major (2), so that a 1.x reader refuses it with "upgrade edgedistill" (not a missing
# tokenizer.json); a multi-label package, or one that reads long texts as head+tail or chunks (runtime/tasks.py,
# runtime/views.py), is the next (3): a 2.x reader would apply a softmax to sigmoid logits, or cut a long text where
# the model learned to read its end. The others stay readable by older readers.
KIND_FORMAT_VERSIONS = {KIND_TOKENS: FORMAT_VERSION, KIND_STRINGS: "2.0"}
READER_3_FORMAT_VERSION = "3.0"  # multi-label, head+tail or chunks: what a 2.x reader would misread
READ_MAJOR = 3  # the newest major this runtime reads
STRINGS_INPUT = "text"  # the one input of a ``strings`` graph: a 1-D string tensor
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
README_FILE = "README.md"
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE)  # what the runtime loads; the manifest must list them
KIND_FILES = {KIND_TOKENS: REQUIRED_FILES, KIND_STRINGS: (MODEL_FILE, CONFIG_FILE)}  # what each kind loads
VARIANTS = ("fp32", "optimized", "int8-dynamic", "int8-static", "fp16")
TARGETS = ("x86", "arm64", "wasm", "cuda")
"""What a package may be checked and shipped for: x86 and arm64 CPUs (onnxruntime), wasm (onnxruntime-web in a
browser), cuda (onnxruntime's CUDA provider)."""
# Variants whose answer for a text depends on the other texts of a session run: dynamic int8 computes one
# activation scale per tensor (DynamicQuantizeLinear), so over the whole padded batch.
BATCH_DEPENDENT_VARIANTS = ("int8-dynamic",)
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
STATIC_MODEL_TYPE = "edgedistill-static"
"""The ``model_type`` of the static student (``compress/static.py``): a token table, a masked mean and a head,
no transformer; runtimes that pick a model class by ``model_type`` (transformers.js) need to know it."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --------------------------------------------------------------------------- hashing and the manifest

def _package_files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the manifest, as sorted POSIX relative names; links are refused."""
    names = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            raise PackageIntegrityError(folder, "is a symbolic link; a package holds plain files only", file=rel)
        if p.is_file() and rel != MANIFEST_FILE:
            names.append(rel)
    return names


def _edgedistill_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("edgedistill")
    except metadata.PackageNotFoundError:
        return "unknown"


def write_manifest(folder: Path | str, *, opset: int, quantization: Mapping[str, Any] | None = None,
                   metrics: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None,
                   edgedistill_version: str | None = None, onnxruntime_version: str | None = None,
                   created: str | None = None, **extra: Any) -> Path:
    """Hash every file in ``folder`` and write ``manifest.json`` beside them; returns the manifest's path.

    The folder must already hold a valid config.json and the files its kind loads (model.onnx, and tokenizer.json
    for the ``tokens`` kind), checked here, so that a bad package fails when it is built rather than when it is
    loaded. ``extra`` fields are written after the standard ones.
    """
    from datetime import datetime, timezone  # here: the loader never writes a manifest (a faster start)

    folder = Path(folder)
    if not folder.is_dir():
        raise PackageError(folder, "is not a folder")
    names = _package_files(folder)
    if CONFIG_FILE not in names:
        raise PackageIntegrityError(folder, "is missing; a package needs " + ", ".join(REQUIRED_FILES),
                                    file=CONFIG_FILE)
    kind = (config := read_config(folder / CONFIG_FILE, where=folder)).kind
    for name in KIND_FILES[kind]:
        if name not in names:
            raise PackageIntegrityError(folder, f"is missing; a package of kind {kind} needs "
                                        + ", ".join(KIND_FILES[kind]), file=name)
    if not isinstance(opset, int) or isinstance(opset, bool) or opset < 1:
        raise PackageFormatError(folder, f"opset={opset!r}: must be a positive int", file=MANIFEST_FILE)
    if onnxruntime_version is None:
        import onnxruntime

        onnxruntime_version = onnxruntime.__version__
    manifest = {
        "format": FORMAT,
        "format_version": READER_3_FORMAT_VERSION if config.task == TASK_MULTI or config.long_texts != "truncate"
        else KIND_FORMAT_VERSIONS[kind],
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "edgedistill_version": edgedistill_version or _edgedistill_version(),
        "onnxruntime_version": onnxruntime_version,
        "opset": opset,
        "files": {n: {"sha256": sha256_file(folder / n), "size": (folder / n).stat().st_size} for n in names},
        "quantization": dict(quantization) if quantization is not None else None,
        "metrics": dict(metrics or {}),
        "recipe": dict(recipe) if recipe is not None else None,
        **extra,
    }
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.debug("wrote %s (%d files)", path, len(names))
    return path


def _check_manifest(manifest: Any, where: Path) -> dict[str, dict[str, Any]]:
    """Check the manifest's shape and version; returns its ``files`` table."""
    def bad(msg: str) -> PackageIntegrityError:
        return PackageIntegrityError(where, msg, file=MANIFEST_FILE)

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise bad(f"not an {FORMAT} manifest "
                  f"(format={manifest.get('format') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("format_version")
    m = re.fullmatch(r"(\d+)\.(\d+)", version) if isinstance(version, str) else None
    if m is None:
        raise bad(f"format_version={version!r}: expected 'MAJOR.MINOR'")
    if int(m.group(1)) > READ_MAJOR:
        raise PackageFormatError(
            where, f"format_version {version} is newer than this runtime reads ({READ_MAJOR}.x); "
            "upgrade edgedistill to load it", file=MANIFEST_FILE)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise bad("has no 'files' table")
    for name, entry in files.items():
        parts = PurePosixPath(name).parts
        if (not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or ".." in parts
                or name == MANIFEST_FILE):
            raise bad(f"lists an unsafe file name {name!r}")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _SHA256.match(entry["sha256"]) or not isinstance(entry.get("size"), int)
                or entry["size"] < 0):
            raise bad(f"entry for {name!r} needs a hex 'sha256' and an int 'size', got {entry!r}")
    for name in (MODEL_FILE, CONFIG_FILE):  # tokenizer.json too, for the tokens kind: _verify_folder
        if name not in files:
            raise bad(f"does not list {name}; every file the runtime loads must be hashed")
    return files


def _verify_folder(folder: Path, where: Path, keep: Iterable[str] = (),
                   pin: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check every file of the package in ``folder``; return the manifest and the bytes of the ``keep`` files
    (config.json's always), and a :class:`PinnedFile` for each ``pin`` file, to be read by path.

    The kept files are hashed from the very bytes returned, and a pinned file is hashed (on a thread, once every
    other file has passed) before :meth:`PinnedFile.read` lets its reader open it and checked unchanged after, so
    what is checked is what is used.
    ``where`` is the name shown in errors (the ``.zip`` rather than its temporary folder).
    """
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise PackageIntegrityError(where, "is missing: not a model package", file=MANIFEST_FILE)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackageIntegrityError(where, f"is not valid JSON ({e})", file=MANIFEST_FILE) from None
    files = _check_manifest(manifest, where)
    keep, pin = set(keep), set(pin)
    blobs: dict[str, Any] = {}
    pinned: dict[str, tuple[int, ...]] = {}
    for name, entry in files.items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise PackageIntegrityError(where, "is listed in the manifest but missing", file=name)
        key = _stat_key(path)
        if key[2] != entry["size"]:
            raise PackageIntegrityError(
                where, f"is {key[2]} bytes, the manifest says {entry['size']} (truncated or replaced)", file=name)
        if name in pin and name != CONFIG_FILE:  # hashed last, beside the caller's next steps
            pinned[name] = key
            continue
        if name in keep or name == CONFIG_FILE:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            blobs[name] = data
        else:
            digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise PackageIntegrityError(
                where, f"sha256 {digest} does not match the manifest's {entry['sha256']} (modified or corrupt)",
                file=name)
    kind = read_config(blobs[CONFIG_FILE], where=where).kind
    for name in KIND_FILES[kind]:
        if name not in files:
            raise PackageIntegrityError(where, f"does not list {name}; every file the runtime loads must be hashed "
                                        f"(a package of kind {kind} loads {', '.join(KIND_FILES[kind])})",
                                        file=MANIFEST_FILE)
    unlisted = sorted(set(_package_files(folder)) - set(files))
    if unlisted:
        log.warning("%s: files not in the manifest are ignored: %s", where, ", ".join(unlisted))
    blobs |= {name: PinnedFile(folder / name, where, name, files[name]["sha256"], key) for name, key in pinned.items()}
    return manifest, blobs


def target_model(manifest: Mapping[str, Any], target: str | None,
                 where: Path | str = "<package>") -> tuple[str, dict[str, Any] | None]:
    """The model file a package ships for ``target`` and its entry in the manifest's ``targets`` table
    (``{"file", "variant", "verified", ...}``); ``model.onnx`` and None when the package names no file for it.

    The table is written when the package was checked on its targets (``edgedistill build``); a package whose
    targets got different variants holds one file per variant.
    """
    targets = manifest.get("targets") if isinstance(manifest, Mapping) else None
    entry = targets.get(target) if isinstance(targets, Mapping) and target is not None else None
    if not isinstance(entry, Mapping):
        return MODEL_FILE, None
    name = entry.get("file")
    files = manifest.get("files")
    if not isinstance(name, str) or not isinstance(files, Mapping) or name not in files:
        raise PackageIntegrityError(where, f"targets.{target} names the file {name!r}, which the manifest "
                                    "does not list", file=MANIFEST_FILE)
    return name, dict(entry)


def verify_package(path: Path | str) -> dict[str, Any]:
    """Check a package folder or ``.zip``: every listed file present with its size and sha256.

    Returns the manifest. Raises :class:`~edgedistill.runtime.errors.PackageIntegrityError` naming the file
    at fault, or :class:`~edgedistill.runtime.errors.PackageFormatError` for a newer major format.
    """
    with open_package(path) as folder:
        return _verify_folder(folder, Path(path))[0]


# --------------------------------------------------------------------------- zip archives

def _package_root(folder: Path, where: Path) -> Path:
    """The folder holding manifest.json: the archive's top level, or its single top-level folder."""
    if (folder / MANIFEST_FILE).exists():
        return folder
    entries = [p for p in folder.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / MANIFEST_FILE).exists():
        return entries[0]
    raise PackageIntegrityError(where, "has no manifest.json at its top level: not a model package",
                                file=MANIFEST_FILE)


@contextlib.contextmanager
def open_package(path: Path | str) -> Iterator[Path]:
    """Yield the folder of a package: the folder itself, or a ``.zip`` safely extracted into a temporary folder.

    The temporary folder is removed when the ``with`` block ends. Files are not
    verified here (see :func:`verify_package`).
    """
    path = Path(path)
    if path.is_dir():
        yield _package_root(path, path)
    elif path.is_file():
        import tempfile  # here, not at the top: a package folder (the usual case) needs neither (a faster start)
        import zipfile

        if not zipfile.is_zipfile(path):
            raise PackageIntegrityError(path, "is neither a package folder nor a .zip archive")
        with tempfile.TemporaryDirectory(prefix="edgedistill-package-") as tmp:
            safe_extract(path, Path(tmp))
            yield _package_root(Path(tmp), path)
    else:
        raise PackageError(path, "no such package folder or .zip file")


def zip_package(folder: Path | str, dest: Path | str) -> Path:
    """Zip a package folder (files at the archive's top level, deflated, fixed member order); returns ``dest``."""
    import zipfile

    folder, dest = Path(folder), Path(dest)
    names = _package_files(folder) + ([MANIFEST_FILE] if (folder / MANIFEST_FILE).is_file() else [])
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(names):
            zf.write(folder / name, name)
    return dest


# --------------------------------------------------------------------------- config.json

@dataclass(frozen=True)
class PackageConfig:
    """The validated ``config.json`` of a package: how to feed the model and read its output."""

    labels: tuple[str, ...]
    max_length: int | None = None
    """Tokens kept per text (the ``tokens`` kind; None for ``strings``, whose graph reads the whole text)."""
    pad_token_id: int | None = None
    """The ``tokens`` kind's padding id (None for ``strings``)."""
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    output_name: str = "logits"
    uses_token_type_ids: bool = False
    model_type: str | None = None
    variant: str | None = None
    temperature: float = 1.0
    """Logits are divided by it before the softmax, or the sigmoid of a multi-label package (fitted on the
    validation split; 1.0: not calibrated). Single-label answers never change with it: it rescales confidences."""
    biases: tuple[float, ...] | None = None
    """Per-class decision biases added to ``logits / temperature`` before the softmax (logit adjustment fitted on
    the validation split where it raised macro-F1 on held-out halves of it); None: none. Single-label only."""
    task: str = TASK_SINGLE
    """:data:`TASK_SINGLE` (a softmax: one label a text) or :data:`TASK_MULTI` (a sigmoid a label, each kept where it
    reaches its ``thresholds`` entry: in (0, 1), in label order; None: 0.5 each). See runtime/tasks.py."""
    thresholds: tuple[float, ...] | None = None
    batch_dependent: bool = False
    """The model's answer for a text depends on its batch-mates (see :data:`BATCH_DEPENDENT_VARIANTS`)."""
    batch_invariant: bool = True
    """Every text must get the same answer alone or batched: a batch-dependent model then runs one text per
    session call. False: batch it anyway (faster; answers can change with batch-mates)."""
    kind: str = KIND_TOKENS
    """What the graph takes: :data:`KIND_TOKENS` (token ids from tokenizer.json) or :data:`KIND_STRINGS` (the raw
    texts as one string tensor)."""
    long_texts: str = TRUNCATE  # a text over max_length tokens: truncate, head+tail or chunks (runtime/views.py)
    chunk_stride: int = DEFAULT_STRIDE  # chunks: tokens shared by neighbouring windows
    max_chunks: int = DEFAULT_MAX_CHUNKS  # chunks: windows read per text at most
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields this runtime does not use
    where: str = field(default="<config>", compare=False, repr=False)  # the file or package, for error messages

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, why: str) -> PackageFormatError:
            return PackageFormatError(self.where, f"{name}={value!r}: {why}", file=CONFIG_FILE)

        if not self.labels or not all(isinstance(x, str) and x for x in self.labels):
            raise bad("labels", self.labels, "must be a non-empty list of non-empty strings, in output order")
        if len(set(self.labels)) != len(self.labels):
            raise bad("labels", self.labels, "has duplicates")
        if self.kind not in KINDS:
            raise bad("kind", self.kind, f"must be one of {', '.join(KINDS)}")
        if self.kind == KIND_STRINGS:
            self._check_strings(bad)
        else:
            self._check_tokens(bad)
        if not isinstance(self.output_name, str) or not self.output_name:
            raise bad("output_name", self.output_name, "must be a non-empty string")
        if problem := (scoring_problem(self.task, self.temperature, self.thresholds, self.biases, len(self.labels))
                       or long_texts_problem(self.long_texts, self.chunk_stride, self.max_chunks, self.max_length,
                                             whole_texts=self.kind == KIND_STRINGS)):
            raise bad(*problem)
        for name in ("batch_dependent", "batch_invariant"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, getattr(self, name), "must be true or false")
        if self.variant is not None and self.variant not in VARIANTS:
            log.warning("%s: unknown variant %r (known: %s)", self.where, self.variant, ", ".join(VARIANTS))

    def _check_strings(self, bad: Any) -> None:
        if tuple(self.input_names) != (STRINGS_INPUT,):
            raise bad("input_names", list(self.input_names), f"a {KIND_STRINGS} graph takes one input, "
                      f"[{STRINGS_INPUT!r}]")
        if self.uses_token_type_ids:
            raise bad("uses_token_type_ids", self.uses_token_type_ids, f"a {KIND_STRINGS} graph takes no token ids")

    def _check_tokens(self, bad: Any) -> None:
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 2:
            raise bad("max_length", self.max_length, "must be an int >= 2 (room for the special tokens)")
        if not isinstance(self.pad_token_id, int) or isinstance(self.pad_token_id, bool) or self.pad_token_id < 0:
            raise bad("pad_token_id", self.pad_token_id, "must be an int >= 0")
        unknown = set(self.input_names) - set(INPUT_NAMES)
        if unknown or len(set(self.input_names)) != len(self.input_names) or \
                not {"input_ids", "attention_mask"} <= set(self.input_names):
            raise bad("input_names", list(self.input_names),
                      "must hold input_ids and attention_mask, and optionally token_type_ids (nothing else)")
        if self.uses_token_type_ids != ("token_type_ids" in self.input_names):
            raise bad("uses_token_type_ids", self.uses_token_type_ids, "disagrees with input_names")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: Path | str = "<config>") -> PackageConfig:
        if not isinstance(d, Mapping):
            raise PackageFormatError(where, f"must be a JSON object, got {type(d).__name__}", file=CONFIG_FILE)
        kind = d.get("kind", KIND_TOKENS)
        needed = ("labels", "input_names") if kind == KIND_STRINGS else ("labels", "max_length", "input_names",
                                                                          "pad_token_id")
        missing = [k for k in needed if k not in d]
        if missing:
            raise PackageFormatError(where, f"lacks the field(s) {', '.join(missing)}", file=CONFIG_FILE)
        labels, names = d["labels"], d["input_names"]
        if not isinstance(labels, (list, tuple)) or not isinstance(names, (list, tuple)):
            raise PackageFormatError(where, "labels and input_names must be lists", file=CONFIG_FILE)
        known = {f.name for f in fields(cls)} - {"extra", "where"}  # config.json's keys are the field names
        tuples = {k: tuple(d[k]) if isinstance(d.get(k), list) else d.get(k) for k in ("biases", "thresholds")}
        return cls(labels=tuple(labels), max_length=d.get("max_length"), pad_token_id=d.get("pad_token_id"),
                   input_names=tuple(names), output_name=d.get("output_name", "logits"),
                   uses_token_type_ids=d.get("uses_token_type_ids", "token_type_ids" in names),
                   model_type=d.get("model_type"), variant=d.get("variant"),
                   temperature=d.get("temperature", 1.0),
                   task=d.get("task", TASK_SINGLE), **tuples,
                   # packages from before these fields: the variant says whether batch-mates matter
                   batch_dependent=d.get("batch_dependent", d.get("variant") in BATCH_DEPENDENT_VARIANTS),
                   batch_invariant=d.get("batch_invariant", True), kind=kind,
                   **{k: d[k] for k in ("long_texts", "chunk_stride", "max_chunks") if k in d},
                   extra={k: v for k, v in d.items() if k not in known}, where=str(where))

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "max_length": self.max_length, "input_names": list(self.input_names),
                "output_name": self.output_name, "uses_token_type_ids": self.uses_token_type_ids,
                "pad_token_id": self.pad_token_id, "model_type": self.model_type, "variant": self.variant,
                "temperature": self.temperature, **({"biases": list(self.biases)} if self.biases else {}),
                "batch_dependent": self.batch_dependent, "batch_invariant": self.batch_invariant, "kind": self.kind,
                **({"task": self.task} if self.task != TASK_SINGLE else {}),
                **({"thresholds": list(self.thresholds)} if self.thresholds else {}),
                **long_texts_fields(self.long_texts, self.chunk_stride, self.max_chunks), **self.extra}

    @property
    def runs_alone(self) -> bool:
        """Whether the runtime runs each text in its own session call (a batch-dependent model kept invariant)."""
        return self.batch_dependent and self.batch_invariant


def read_config(source: Path | str | bytes, where: Path | str | None = None) -> PackageConfig:
    """Parse and validate a ``config.json`` given as a path or as its bytes."""
    if isinstance(source, bytes):
        raw, where = source, where or "<config>"
    else:
        raw, where = Path(source).read_bytes(), where or source
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PackageFormatError(where, f"is not valid JSON ({e})", file=CONFIG_FILE) from None
    return PackageConfig.from_dict(d, where)
