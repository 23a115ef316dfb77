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
only the files :mod:`edgedistill.runtime.npm` lists are read out of the tarballs. :func:`make_server`
serves such a folder with the MIME types and the cross-origin isolation headers
that multi-threaded WASM needs. Standard library only (plus ``edgedistill.runtime.package``).
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgedistill.runtime import npm
from edgedistill.runtime.npm import WebExportError
from edgedistill.runtime.fsutil import publishing
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
NO_STRING_TENSORS = ("its model takes raw strings (the TF-IDF + logistic-regression baseline), and onnxruntime-web "
                     "has no string tensors: it cannot run in a browser")
"""Why a ``strings`` package has no web export and fails the wasm target (the targets check and the ship stage
say it with these words)."""


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
                         f"{npm.TRANSFORMERS_JS.spec} and is not the static student ({STATIC_MODEL_TYPE}); supported: "
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
    licenses = npm.write_vendor(out / VENDOR_DIR, cache)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {
        "format": WEB_FORMAT, "format_version": WEB_FORMAT_VERSION,
        "package": str(package), "package_model_sha256": manifest["files"][model_file]["sha256"],
        "package_model_file": model_file,
        "kind": kind, "labels": list(config.labels), "variant": variant, "dtype": dtype,
        "model": f"{MODEL_DIR}/onnx/{onnx_name}",
        "temperature": config.temperature, "biases": list(config.biases) if config.biases else None,
        "task": config.task, "runs_alone": config.runs_alone,
        "npm": {p.name: p.version for p in (npm.TRANSFORMERS_JS, npm.ONNXRUNTIME_WEB)}, "licenses": licenses,
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
