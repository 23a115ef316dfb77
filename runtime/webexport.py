"""A model package as a web folder: the classifier in a browser page or in Node.js, through transformers.js.

Two kinds of package run there (``edgedistill.kind`` in ``model/config.json``): a transformer, loaded by
transformers.js's sequence-classification class for its ``model_type``, and the static student (a token table,
a masked mean and a head: no class of transformers.js fits it), whose ONNX graph transformers.js's generic
``PreTrainedModel`` runs as it is, fed exactly the inputs the graph declares. The tokenizer, the truncation (or
config.json's other ``long_texts`` reading: head+tail, chunks), the batching and the softmax are the same for both
(a multi-label package: a sigmoid per label, and the labels that reach their thresholds, as the Python runtime).
A package of the ``strings`` kind (the TF-IDF baseline, whose graph takes the raw texts) is refused:
onnxruntime-web has no string tensors (:data:`NO_STRING_TENSORS`).

``export_web(package, outdir)`` writes a folder that needs no server-side code and
no network at page load::

    OUTDIR/
      index.html            the demo page: a text box, a bar per class, the latency of each prediction
      edgedistill.mjs       loadClassifier(): the page's and Node's way in (tokenize, truncate, pad, run, softmax)
      classify.mjs          Node.js: lines on stdin -> JSON lines on stdout
      model/                what transformers.js loads (``from_pretrained("model")``)
        config.json           model_type, id2label/label2id, problem_type, transformers.js_config.dtype, edgedistill
                              settings (the kind, labels, tokenization, input and output names, temperature, task)
        tokenizer.json        the package's, unchanged
        tokenizer_config.json, special_tokens_map.json   derived from tokenizer.json and config.json
        onnx/model.onnx       fp32 packages (dtype "fp32")
        onnx/model_quantized.onnx   int8 packages (dtype "q8")
      vendor/               transformers.min.js and the matching onnxruntime-web WASM files + licenses
      edgedistill-web.json  what was built from what (versions, sha256 of every file)

The JavaScript comes from the npm registry at exact pinned versions, checked
against pinned sha512 integrities and cached under ``$EDGEDISTILL_CACHE/npm/``;
only the files listed here are read out of the tarballs. :func:`make_server`
serves such a folder with the MIME types and the cross-origin isolation headers
that multi-threaded WASM needs. Standard library only (plus ``edgedistill.runtime.package``).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import http.server
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.runtime.errors import RuntimeBaseError
from edgedistill.runtime.fsutil import cache_dir, publishing
from edgedistill.runtime.package import CONFIG_FILE, KIND_STRINGS, STATIC_MODEL_TYPE, TOKENIZER_FILE, PackageConfig, \
    open_package, read_config, sha256_file, target_model, verify_package
from edgedistill.runtime.tasks import TASK_MULTI, label_thresholds, long_texts_fields
from edgedistill.runtime.views import TRUNCATE

log = logging.getLogger(__name__)

WEB_FORMAT = "edgedistill-web"
WEB_FORMAT_VERSION = "1.1"  # 1.1: the kind (transformer or static), input and output names
BUILD_FILE = "edgedistill-web.json"
MODEL_DIR = "model"  # the transformers.js model id, relative to the page
VENDOR_DIR = "vendor"
TEMPLATE_DIR = Path(__file__).parent / "web"
TEMPLATE_FILES = ("index.html", "edgedistill.mjs", "classify.mjs")  # copied into every web folder
MAX_MEMBER_BYTES = 256 << 20  # a tarball member larger than this is not one of ours
NO_STRING_TENSORS = ("its model takes raw strings (the TF-IDF + logistic-regression baseline), and onnxruntime-web "
                     "has no string tensors: it cannot run in a browser")
"""Why a ``strings`` package has no web export and fails the wasm target (the targets check and the ship stage
say it with these words)."""


class WebExportError(RuntimeBaseError):
    """A web folder cannot be built or served; the message names the package, file or npm package."""


# --------------------------------------------------------------------------- pinned npm packages

@dataclass(frozen=True)
class NpmPackage:
    """One npm package at an exact version with the sha512 ``dist.integrity`` the registry publishes."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>", as `npm view NAME@VERSION dist.integrity` prints it

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball(self) -> str:
        """The file name `npm pack` gives: '@scope/name' -> 'scope-name-VERSION.tgz'."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


# transformers.js: the page imports dist/transformers.min.js (it bundles onnxruntime-web's JavaScript).
TRANSFORMERS_JS = NpmPackage(
    "@huggingface/transformers", "4.3.1",
    "sha512-5+voSeUCFK6PCKlY15dPhNOKq3/zOTxDN7oC+Wy9dFb1QZ0TSQomZRRy7URRK8YRuUoE9fGMQTTPC5d/pWBJhA==")
# The WASM runtime: exactly the version transformers.js 4.3.1 depends on (its package.json; checked on use).
ONNXRUNTIME_WEB = NpmPackage(
    "onnxruntime-web", "1.31.0-dev.20260914-8d85527a0",
    "sha512-Iy7rtadoBgxS/LLvDr3QW38DB1PNXRnr0GJMcL0TAt7c9qjgVQl83UlGCVyeAnK2InpmW8Uc3PL8XIuqtDeF6g==")
# Drives the system's Chromium (/usr/bin/chromium) in the tests and the benchmark; never downloads a browser.
PLAYWRIGHT_CORE = NpmPackage(
    "playwright-core", "1.65.1",
    "sha512-hqPpz7blSMPxWVdoeE1yiBSzXsKiVOd2k+kjCvmUywD2GPO2Dd9HfcWnq9NN0GHbNZDFgZ9JfBFr+X5/BLo0qw==")

# (tarball, member inside it, file name under vendor/)
VENDOR_FILES = (
    (TRANSFORMERS_JS, "package/dist/transformers.min.js", "transformers.min.js"),
    (TRANSFORMERS_JS, "package/LICENSE", "LICENSE.transformers.js.txt"),
    (ONNXRUNTIME_WEB, "package/dist/ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.mjs"),
    (ONNXRUNTIME_WEB, "package/dist/ort-wasm-simd-threaded.asyncify.wasm", "ort-wasm-simd-threaded.asyncify.wasm"),
)  # onnxruntime-web's tarball has no LICENSE file: its package.json says MIT (recorded in edgedistill-web.json)

# The one npm line that makes classify.mjs run (onnxruntime-node's install script would reach for NuGet;
# its CPU binary is already in the npm package, so the scripts are skipped).
NODE_INSTALL = f"npm install --ignore-scripts --no-audit --no-fund {TRANSFORMERS_JS.spec}"

# model_type values transformers.js 4.3.1 maps to a *ForSequenceClassification class (encoder-only ones).
SEQUENCE_CLASSIFICATION_MODEL_TYPES = (
    "albert", "bert", "camembert", "convbert", "deberta", "deberta-v2", "distilbert", "electra", "esm", "eurobert",
    "mobilebert", "modernbert", "mpnet", "neobert", "roberta", "roformer", "squeezebert", "xlm", "xlm-roberta")

# What edgedistill.mjs loads a package's model with (config.json's edgedistill.kind):
# "transformer": AutoModelForSequenceClassification, by model_type (one of the above);
# "static": PreTrainedModel, transformers.js's generic ONNX model, for the static student (compress/static.py).
KIND_TRANSFORMER, KIND_STATIC = "transformer", "static"
STATIC_ARCHITECTURE = "StaticForSequenceClassification"  # compress/static.py's class, for the record

# tokenizer_config.json's tokenizer_class per model_type (transformers.js picks its tokenizer class by it).
_TOKENIZER_CLASSES = {
    "albert": "AlbertTokenizer", "bert": "BertTokenizer", "camembert": "CamembertTokenizer",
    "convbert": "ConvBertTokenizer", "deberta": "DebertaTokenizer", "deberta-v2": "DebertaV2Tokenizer",
    "distilbert": "DistilBertTokenizer", "electra": "ElectraTokenizer", "esm": "EsmTokenizer",
    "mobilebert": "MobileBertTokenizer", "mpnet": "MPNetTokenizer", "roberta": "RobertaTokenizer",
    "roformer": "RoFormerTokenizer", "squeezebert": "SqueezeBertTokenizer", "xlm": "XLMTokenizer",
    "xlm-roberta": "XLMRobertaTokenizer",
}

# package variant -> (file under model/onnx/, transformers.js dtype that loads it)
_VARIANT_FILES = {
    "fp32": ("model.onnx", "fp32"),
    "optimized": ("model.onnx", "fp32"),
    "int8-dynamic": ("model_quantized.onnx", "q8"),
    "int8-static": ("model_quantized.onnx", "q8"),
    "fp16": ("model_fp16.onnx", "fp16"),
}


def _offline() -> bool:
    return os.environ.get("EDGEDISTILL_OFFLINE", "") not in ("", "0")


def sri_sha512(path: Path) -> str:
    """The Subresource-Integrity form npm uses: ``sha512-`` + base64 of the digest."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return "sha512-" + base64.b64encode(h.digest()).decode("ascii")


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise WebExportError("npm is not installed; it fetches transformers.js and onnxruntime-web "
                             "(Debian/Ubuntu: apt-get install -y npm; or install Node.js 20+ from nodejs.org)")
    return npm


def npm_tarball(pkg: NpmPackage, cache: Path | None = None) -> Path:
    """The verified tarball of ``pkg`` under ``cache/npm/``, fetched with ``npm pack`` when missing.

    The sha512 is checked on every use against the pinned integrity; a mismatch is never used.
    ``$EDGEDISTILL_OFFLINE=1`` forbids the fetch.
    """
    folder = (cache or cache_dir()) / "npm"
    path = folder / pkg.tarball
    if not path.is_file():
        if _offline():
            raise WebExportError(f"{pkg.spec} is not in the cache ({path}) and EDGEDISTILL_OFFLINE forbids "
                                 "fetching it")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=folder) as tmp:
            log.info("fetching %s from the npm registry", pkg.spec)
            proc = subprocess.run([_npm(), "pack", pkg.spec, "--pack-destination", tmp, "--ignore-scripts",
                                   "--silent"], capture_output=True, text=True, cwd=tmp)
            got = Path(tmp) / pkg.tarball
            if proc.returncode != 0 or not got.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                raise WebExportError(f"npm pack {pkg.spec} failed: {' | '.join(tail) or 'no tarball written'}")
            _check_integrity(pkg, got)  # before it enters the cache
            os.replace(got, path)
    _check_integrity(pkg, path)
    return path


def _check_integrity(pkg: NpmPackage, path: Path) -> None:
    actual = sri_sha512(path)
    if actual != pkg.integrity:
        raise WebExportError(f"{path}: integrity {actual} of {pkg.spec} does not match the pinned {pkg.integrity}; "
                             "delete the file to fetch it again")


def read_members(tgz: Path, members: Iterable[str]) -> dict[str, bytes]:
    """Regular files out of an npm tarball, in one pass; links, devices and oversized members are refused."""
    wanted, found = set(members), {}
    try:
        with tarfile.open(tgz, "r:gz") as tf:
            for info in tf:
                if info.name not in wanted:
                    continue
                if not info.isfile():
                    raise WebExportError(f"{tgz}: member {info.name} is not a regular file; refusing it")
                if info.size > MAX_MEMBER_BYTES:
                    raise WebExportError(f"{tgz}: member {info.name} is {info.size} bytes, over {MAX_MEMBER_BYTES}")
                f = tf.extractfile(info)
                assert f is not None  # a regular file always has a stream
                found[info.name] = f.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise WebExportError(f"{tgz}: unreadable tarball ({e}); delete it to fetch it again") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise WebExportError(f"{tgz}: has no member {', '.join(missing)}")
    return found


def check_versions(transformers_files: Mapping[str, bytes]) -> None:
    """The pinned onnxruntime-web must be the one the pinned transformers.js depends on and bundles."""
    manifest = json.loads(transformers_files["package/package.json"])
    wanted = manifest.get("dependencies", {}).get(ONNXRUNTIME_WEB.name)
    if wanted != ONNXRUNTIME_WEB.version:
        raise WebExportError(f"{TRANSFORMERS_JS.spec} depends on {ONNXRUNTIME_WEB.name}@{wanted}, but "
                             f"{ONNXRUNTIME_WEB.spec} is pinned: pin both together in runtime/webexport.py")
    if ONNXRUNTIME_WEB.version.encode() not in transformers_files["package/dist/transformers.min.js"]:
        raise WebExportError(f"{TRANSFORMERS_JS.spec}'s transformers.min.js does not bundle "
                             f"{ONNXRUNTIME_WEB.spec}: the WASM files would not match its JavaScript")


def write_vendor(dest: Path, cache: Path | None = None) -> dict[str, str]:
    """Write the JavaScript and WASM files the page needs into ``dest``; returns {npm package: license}."""
    dest.mkdir(parents=True, exist_ok=True)
    licenses = {}
    for pkg in (TRANSFORMERS_JS, ONNXRUNTIME_WEB):
        files = [(member, name) for p, member, name in VENDOR_FILES if p == pkg]
        blobs = read_members(npm_tarball(pkg, cache), [m for m, _ in files] + ["package/package.json"])
        if pkg == TRANSFORMERS_JS:
            check_versions(blobs)
        for member, name in files:
            (dest / name).write_bytes(blobs[member])
        licenses[pkg.spec] = json.loads(blobs["package/package.json"]).get("license", "unknown")
    return licenses


# --------------------------------------------------------------------------- transformers.js model folder

def _vocab_token(tokenizer: Mapping[str, Any], token_id: int) -> str | None:
    for t in tokenizer.get("added_tokens") or []:
        if t.get("id") == token_id:
            return t.get("content")
    vocab = (tokenizer.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        return next((tok for tok, i in vocab.items() if i == token_id), None)
    if isinstance(vocab, list) and 0 <= token_id < len(vocab):  # Unigram: [[piece, score], ...]
        entry = vocab[token_id]
        return entry[0] if isinstance(entry, list) else None
    return None


def _template(post: Mapping[str, Any] | None) -> tuple[list[str], list[str]]:
    """The special tokens a single sequence gets before and after it, read from the post-processor."""
    if not post:
        return [], []
    kind = post.get("type")
    if kind == "Sequence":
        for p in post.get("processors") or []:
            before, after = _template(p)
            if before or after:
                return before, after
        return [], []
    if kind in ("BertProcessing", "RobertaProcessing"):
        return [post["cls"][0]], [post["sep"][0]]
    if kind == "TemplateProcessing":
        before, after, seen = [], [], False
        for piece in post.get("single") or []:
            if "Sequence" in piece:
                seen = True
            elif "SpecialToken" in piece:
                (after if seen else before).append(piece["SpecialToken"]["id"])
        return before, after
    return [], []


def tokenizer_sidecars(tokenizer: Mapping[str, Any], config: PackageConfig) -> tuple[dict, dict, int]:
    """``tokenizer_config.json``, ``special_tokens_map.json`` and the count of special tokens after the text.

    Derived from tokenizer.json (special tokens, post-processor, unknown token) and the
    package config (``pad_token_id``, ``max_length``). The suffix count lets the JavaScript side
    truncate the way the ``tokenizers`` library does: keep the closing ``[SEP]``.
    """
    before, after = _template(tokenizer.get("post_processor"))
    special: dict[str, str] = {}
    pad = _vocab_token(tokenizer, config.pad_token_id)
    if pad is None:
        raise WebExportError(f"pad_token_id={config.pad_token_id} of config.json is not in tokenizer.json")
    special["pad_token"] = pad
    model = tokenizer.get("model") or {}
    unk = model.get("unk_token")
    if unk is None and isinstance(model.get("unk_id"), int):
        unk = _vocab_token(tokenizer, model["unk_id"])
    if unk:
        special["unk_token"] = unk
    if before:
        special["cls_token"] = before[0]
    if after:
        special["sep_token"] = after[-1]
    if before and after and not before[0].startswith("["):  # <s> ... </s>: RoBERTa, MPNet, XLM-R
        special["bos_token"], special["eos_token"] = before[0], after[-1]
    masks = [t["content"] for t in tokenizer.get("added_tokens") or []
             if t.get("special") and "mask" in str(t.get("content", "")).lower()]
    if masks:
        special["mask_token"] = masks[0]
    tokenizer_config = {
        "tokenizer_class": _TOKENIZER_CLASSES.get(config.model_type or "", "PreTrainedTokenizer"),
        "model_max_length": config.max_length,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": True,
        **special,
    }
    return tokenizer_config, dict(special), len(after)


def web_kind(config: PackageConfig, where: Path | str) -> str:
    """How the page runs the package's model: :data:`KIND_TRANSFORMER` or :data:`KIND_STATIC`."""
    if config.kind == KIND_STRINGS:
        raise WebExportError(f"{where}: {NO_STRING_TENSORS}")
    if config.model_type == STATIC_MODEL_TYPE:
        return KIND_STATIC
    if config.model_type in SEQUENCE_CLASSIFICATION_MODEL_TYPES:
        return KIND_TRANSFORMER
    raise WebExportError(f"{where}: model_type={config.model_type!r} has no sequence-classification class in "
                         f"{TRANSFORMERS_JS.spec} and is not the static student ({STATIC_MODEL_TYPE}); supported: "
                         f"{', '.join(SEQUENCE_CLASSIFICATION_MODEL_TYPES + (STATIC_MODEL_TYPE,))}")


def transformersjs_config(config: PackageConfig, dtype: str, suffix_tokens: int, kind: str,
                          prefix_tokens: int = 1) -> dict[str, Any]:
    """The ``config.json`` transformers.js reads: model_type picks the class (``kind`` transformer), id2label
    names the outputs; the ``edgedistill`` section is what edgedistill.mjs reads. ``prefix_tokens`` and
    ``suffix_tokens``: the special tokens before and after a text (head+tail and chunks keep both)."""
    labels = list(config.labels)
    return {
        "model_type": config.model_type,
        "architectures": [STATIC_ARCHITECTURE if kind == KIND_STATIC else _architecture(config.model_type)],
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "num_labels": len(labels),
        # transformers.js's pipeline reads it: a sigmoid per label for multi_label_classification, else a softmax
        "problem_type": "multi_label_classification" if config.task == TASK_MULTI else "single_label_classification",
        "pad_token_id": config.pad_token_id,
        "transformers.js_config": {"dtype": dtype},
        "edgedistill": {  # read by edgedistill.mjs: tokenize exactly as the Python runtime does
            "kind": kind,  # which transformers.js class loads the model (see KIND_TRANSFORMER, KIND_STATIC)
            "input_names": list(config.input_names),  # what the ONNX graph takes, as the Python runtime feeds it
            "output_name": config.output_name,
            "labels": labels,
            "max_length": config.max_length,
            "pad_token_id": config.pad_token_id,
            "special_tokens_after": suffix_tokens,
            "variant": config.variant,
            "dtype": dtype,
            "temperature": config.temperature,  # logits / temperature before the softmax, as the Python runtime
            "biases": list(config.biases) if config.biases else None,  # then + biases, as the Python runtime
            "runs_alone": config.runs_alone,  # one text per session call: answers never depend on batch-mates
            # multi_label: sigmoid(logits / temperature), each label kept where it reaches its threshold
            **({"task": TASK_MULTI, "thresholds": list(label_thresholds(TASK_MULTI, config.thresholds, len(labels)))}
               if config.task == TASK_MULTI else {}),
            # how a text over max_length tokens is read (runtime/views.py); absent: truncated
            **({"special_tokens_before": prefix_tokens,
                **long_texts_fields(config.long_texts, config.chunk_stride, config.max_chunks)}
               if config.long_texts != TRUNCATE else {}),
        },
    }


def _architecture(model_type: str | None) -> str:
    name = _TOKENIZER_CLASSES.get(model_type or "", "Model").removesuffix("Tokenizer")
    return f"{name}ForSequenceClassification"


# --------------------------------------------------------------------------- the web folder

def export_web(package: Path | str, outdir: Path | str, *, cache: Path | None = None) -> Path:
    """Write the web folder of a model package (a folder or ``.zip``, verified first); returns ``outdir``.

    ``outdir`` must be new, empty, or an earlier web folder (it holds ``edgedistill-web.json``),
    which is replaced; nothing else is ever deleted. The new folder is assembled beside it and
    moved into place at the end, so a failure leaves the old one intact.
    """
    package, outdir = Path(package), Path(outdir)
    if outdir.exists():
        if not outdir.is_dir() or outdir.is_symlink():
            raise WebExportError(f"{outdir}: exists and is not a folder")
        if any(outdir.iterdir()) and not (outdir / BUILD_FILE).is_file():
            raise WebExportError(f"{outdir}: is not empty and is not a web folder of edgedistill (no {BUILD_FILE}); "
                                 "choose a new or empty folder")
    with publishing(outdir) as tmp:
        build = _assemble(package, tmp, cache)
        (tmp / BUILD_FILE).write_text(json.dumps(build, indent=2) + "\n")
    log.info("wrote the web folder %s (%s %s, dtype %s)", outdir, build["kind"], build["variant"], build["dtype"])
    return outdir


def _assemble(package: Path, out: Path, cache: Path | None) -> dict[str, Any]:
    with open_package(package) as folder:
        manifest = verify_package(folder)
        config = read_config(folder / CONFIG_FILE, where=package)
        model_file, entry = target_model(manifest, "wasm", package)  # the package's file for the browser
        kind = web_kind(config, package)  # first: a strings package stops here, before any file is read
        if entry is not None and entry.get("variant"):
            config = dataclasses.replace(config, variant=entry["variant"])
        variant = config.variant or "fp32"
        if variant not in _VARIANT_FILES:
            raise WebExportError(f"{package}: variant={variant!r} is not one transformers.js can load; "
                                 f"known: {', '.join(_VARIANT_FILES)}")
        onnx_name, dtype = _VARIANT_FILES[variant]
        tokenizer = json.loads((folder / TOKENIZER_FILE).read_text(encoding="utf-8"))
        tok_config, special_map, suffix = tokenizer_sidecars(tokenizer, config)
        model = out / MODEL_DIR
        (model / "onnx").mkdir(parents=True)
        shutil.copyfile(folder / model_file, model / "onnx" / onnx_name)
        shutil.copyfile(folder / TOKENIZER_FILE, model / "tokenizer.json")
    prefix = len(_template(tokenizer.get("post_processor"))[0])
    _write_json(model / "config.json", transformersjs_config(config, dtype, suffix, kind, prefix))
    _write_json(model / "tokenizer_config.json", tok_config)
    _write_json(model / "special_tokens_map.json", special_map)
    for name in TEMPLATE_FILES:
        shutil.copyfile(TEMPLATE_DIR / name, out / name)
    licenses = write_vendor(out / VENDOR_DIR, cache)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {
        "format": WEB_FORMAT, "format_version": WEB_FORMAT_VERSION,
        "package": str(package), "package_model_sha256": manifest["files"][model_file]["sha256"],
        "package_model_file": model_file,
        "kind": kind, "labels": list(config.labels), "variant": variant, "dtype": dtype,
        "model": f"{MODEL_DIR}/onnx/{onnx_name}",
        "temperature": config.temperature, "biases": list(config.biases) if config.biases else None,
        "task": config.task, "runs_alone": config.runs_alone,
        "npm": {p.name: p.version for p in (TRANSFORMERS_JS, ONNXRUNTIME_WEB)}, "licenses": licenses,
        "files": {p.relative_to(out).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size} for p in files},
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")



# --------------------------------------------------------------------------- the static server

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
# Cross-origin isolation: SharedArrayBuffer, hence more than one WASM thread, needs both.
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class WebFolderHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with the right MIME types, cross-origin isolation and no caching (a rebuilt folder shows)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)


def make_server(folder: Path | str, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A threaded static server for a web folder (``port=0`` picks a free port: see ``server.server_port``)."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise WebExportError(f"{folder}: has no index.html; build it first with `edgedistill web PACKAGE {folder}`")
    handler = functools.partial(WebFolderHandler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise WebExportError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def server_url(server: http.server.ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{'localhost' if host in ('127.0.0.1', '::1', 'localhost') else host}:{port}/"


# --------------------------------------------------------------------------- Node.js packages (tests, benchmarks)

def node_modules(packages: Iterable[NpmPackage], dest: Path | None = None) -> Path:
    """An npm project folder whose ``node_modules`` holds ``packages`` at their pinned versions.

    Default ``cache/npm/node``. Installed with ``--ignore-scripts`` (onnxruntime-node's script
    downloads from NuGet; its CPU binary is in the npm package) and reused while the pins match.
    Point ``EDGEDISTILL_NODE_MODULES`` at the returned folder to run ``classify.mjs`` with it.
    """
    packages = sorted(packages, key=lambda p: p.name)
    dest = dest or cache_dir() / "npm" / "node"
    marker = dest / ".edgedistill-npm.json"
    want = {p.name: p.version for p in packages}
    if marker.is_file() and json.loads(marker.read_text()) == want and _installed(dest, packages):
        return dest
    if _offline():
        raise WebExportError(f"{', '.join(p.spec for p in packages)} are not installed in {dest} and "
                             "EDGEDISTILL_OFFLINE forbids installing them")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "package.json").write_text(json.dumps({"private": True, "dependencies": want}, indent=2) + "\n")
    log.info("installing %s into %s", ", ".join(p.spec for p in packages), dest)
    env = {**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}
    proc = subprocess.run([_npm(), "install", "--ignore-scripts", "--no-audit", "--no-fund", "--save-exact"],
                          cwd=dest, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not _installed(dest, packages):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise WebExportError(f"npm install in {dest} failed: {' | '.join(tail) or 'packages missing afterwards'}")
    marker.write_text(json.dumps(want, indent=2))
    return dest


def _installed(dest: Path, packages: Iterable[NpmPackage]) -> bool:
    """Every package there at its version, with the pinned integrity in package-lock.json."""
    lock_path = dest / "package-lock.json"
    lock = json.loads(lock_path.read_text()).get("packages", {}) if lock_path.is_file() else {}
    for p in packages:
        meta = dest / "node_modules" / p.name / "package.json"
        if not meta.is_file() or json.loads(meta.read_text()).get("version") != p.version:
            return False
        integrity = lock.get(f"node_modules/{p.name}", {}).get("integrity")
        if integrity != p.integrity:
            raise WebExportError(f"{lock_path}: {p.spec} has integrity {integrity}, not the pinned {p.integrity}")
    return True
