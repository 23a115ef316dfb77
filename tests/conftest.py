"""Shared fixtures: a tiny tokenizer, a tiny random BERT classifier and tiny data, all built in code.

Nothing here touches the network or the real weights; a fast test runs a whole
stage in seconds. Tests that need the real built-in sources are marked ``real``.
The plain functions behind these fixtures, which tests call too, are in tests/helpers.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers import VOCAB, build_tiny_bert, make_sentences, multilabel_rows, train_tiny_bert


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's cache unless they say so (the ``real`` tests do)."""
    if os.environ.get("EDGEDISTILL_TEST_REAL_CACHE"):
        return
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """A 240-row, two-class CSV with columns ``text,label``."""
    path = tmp_path_factory.mktemp("data") / "tiny.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(make_sentences(240))
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A BERT WordPiece tokenizer over a ~70-token vocabulary, saved with ``save_pretrained``."""
    from transformers import BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-tokenizer")
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = BertTokenizerFast(vocab=str(d / "vocab.txt"), do_lower_case=True, model_max_length=64)
    tok.save_pretrained(d)  # tokenizer.json, tokenizer_config.json (transformers 5 writes no vocab.txt)
    return d


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A random 2-layer BERT classifier (hidden 32) with its tokenizer: a stand-in for any checkpoint."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tiny_tokenizer_dir)


_USER_CACHE = os.environ.get("EDGEDISTILL_CACHE")


@pytest.fixture
def real_cache(monkeypatch):
    """The user's real cache (the built-in wheels are fetched once and reused across runs)."""
    if _USER_CACHE:
        monkeypatch.setenv("EDGEDISTILL_CACHE", _USER_CACHE)
    else:
        monkeypatch.delenv("EDGEDISTILL_CACHE", raising=False)


def _redraw(module) -> None:
    """BERT's initialisation at std 0.5, as transformers 4's ``_init_weights`` drew it (same order, same draws)."""
    import torch

    with torch.no_grad():
        if isinstance(module, torch.nn.Linear):
            module.weight.normal_(0.0, 0.5)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, torch.nn.Embedding):
            module.weight.normal_(0.0, 0.5)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, torch.nn.LayerNorm):
            module.bias.zero_()
            module.weight.fill_(1.0)


@pytest.fixture(scope="session")
def tiny_wide_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny BERT with its weights redrawn at std 0.5 (BERT's 0.02 gives every text nearly the same
    probability), so that a test mixing up texts or batches sees a difference."""
    import torch
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_model_dir)
    model.config.initializer_range = 0.5
    torch.manual_seed(0)
    model.apply(_redraw)  # not model._init_weights: transformers 5 skips weights that were loaded
    wide = tmp_path_factory.mktemp("tiny-bert-wide")
    model.save_pretrained(wide)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (tiny_model_dir / name).is_file():  # transformers 5 writes no special_tokens_map.json
            shutil.copy(tiny_model_dir / name, wide / name)
    return wide


@pytest.fixture(scope="session")
def tiny_onnx_dir(tmp_path_factory, tiny_wide_model_dir) -> Path:
    """``edgedistill.compress.export`` of the wide tiny BERT (opset 17, max_length 64, parity checked). Shared: copy it
    before writing into it (quantize writes its variants and report beside model.onnx)."""
    from edgedistill.compress.export import ExportConfig, export

    out = tmp_path_factory.mktemp("tiny-export") / "onnx"
    return export(ExportConfig(checkpoint=str(tiny_wide_model_dir), output=str(out), opset=17, max_length=64))


@pytest.fixture(scope="session")
def tiny_trained_model_dir(tmp_path_factory, tiny_tokenizer_dir, tiny_csv) -> Path:
    """The tiny BERT (2 layers) trained on tiny_csv's training split; see :func:`train_tiny_bert`."""
    return train_tiny_bert(tmp_path_factory.mktemp("tiny-bert-trained"), tiny_tokenizer_dir, tiny_csv)


@pytest.fixture(scope="session")
def tiny_quantized_dir(tmp_path_factory, tiny_trained_model_dir, tiny_csv) -> Path:
    """The trained tiny BERT exported and quantized (avx2 preset, every variant, gated on tiny_csv's validation
    split)."""
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.compress.quantize import QuantizeConfig, quantize

    folder = export(ExportConfig(checkpoint=str(tiny_trained_model_dir),
                                 output=str(tmp_path_factory.mktemp("tiny-quantized") / "onnx"), max_length=64))
    quantize(QuantizeConfig.avx2(str(folder), data=DataConfig(source=str(tiny_csv)), latency_samples=4,
                                 calibration_samples=32))
    return folder


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory, tiny_onnx_dir) -> Path:
    """The fp32 model package of the wide tiny BERT, built by ``edgedistill.compress.package.build_package`` from
    ``edgedistill.compress.export``'s output: model.onnx + tokenizer.json + config.json + README.md + manifest.json.
    Session-scoped and shared: copy it before changing a byte."""
    from edgedistill.compress.package import PackagingConfig, build_package

    out = tmp_path_factory.mktemp("tiny-package") / "tiny-bert"
    return build_package(PackagingConfig(onnx_dir=str(tiny_onnx_dir), output=str(out), name="tiny-bert"))


@pytest.fixture(scope="session")
def multilabel_csv(tmp_path_factory) -> Path:
    """A 300-row multi-label CSV with columns ``text,tags`` (labels joined by ``|``; see ``multilabel_rows``)."""
    path = tmp_path_factory.mktemp("ml") / "tags.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "tags"])
        w.writerows((t, "|".join(labels)) for t, labels in multilabel_rows(300))
    return path


@pytest.fixture(scope="module")
def student_init(tmp_path_factory, tiny_tokenizer_dir):
    """Another random tiny BERT (seed 3): a student's starting point that is not the teacher."""
    return build_tiny_bert(tmp_path_factory.mktemp("student-init"), tiny_tokenizer_dir, seed=3)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine extra threads only spin. A module that
    trains them asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- fake npm packages (fast web tests)

FAKE_ORT = "9.9.9-test"


def _tarball(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(f"package/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)


@pytest.fixture
def fake_npm(monkeypatch, tmp_path):
    """Pins pointing at small tarballs already in the (temporary) cache; returns a function to rebuild them."""
    from edgedistill.runtime import npm
    from edgedistill.runtime.fsutil import cache_dir

    cache = cache_dir()
    (cache / "npm").mkdir(parents=True, exist_ok=True)

    def build(*, ort_dependency: str = FAKE_ORT, link: bool = False) -> dict[str, npm.NpmPackage]:
        tjs = npm.NpmPackage(npm.TRANSFORMERS_JS.name, "0.0.1-test", "")
        ort = npm.NpmPackage(npm.ONNXRUNTIME_WEB.name, FAKE_ORT, "")
        bundle = f'/* fake transformers.js */ const versions = {{web: "{FAKE_ORT}"}};'.encode()
        tjs_files = {"package.json": json.dumps({"name": tjs.name, "version": tjs.version, "license": "Apache-2.0",
                                                 "dependencies": {ort.name: ort_dependency}}).encode(),
                     "LICENSE": b"Apache License 2.0 (test)\n"}
        if not link:
            tjs_files["dist/transformers.min.js"] = bundle
        _tarball(cache / "npm" / tjs.tarball, tjs_files,
                 {"dist/transformers.min.js": "/etc/passwd"} if link else None)
        _tarball(cache / "npm" / ort.tarball, {
            "package.json": json.dumps({"name": ort.name, "version": ort.version, "license": "MIT"}).encode(),
            "dist/ort-wasm-simd-threaded.asyncify.mjs": b"export default {};\n",
            "dist/ort-wasm-simd-threaded.asyncify.wasm": b"\0asm\1\0\0\0"})
        pins = {p.name: npm.NpmPackage(p.name, p.version, npm.sri_sha512(cache / "npm" / p.tarball))
                for p in (tjs, ort)}
        monkeypatch.setattr(npm, "TRANSFORMERS_JS", pins[tjs.name])
        monkeypatch.setattr(npm, "ONNXRUNTIME_WEB", pins[ort.name])
        monkeypatch.setattr(npm, "VENDOR_FILES", tuple((pins[p.name], m, n) for p, m, n in npm.VENDOR_FILES))
        monkeypatch.setenv("EDGEDISTILL_OFFLINE", "1")  # a fast test never reaches npm
        return pins

    build()
    return build


CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_tools() -> Path:
    """Debian's chromium, Node.js and npm, installed when missing (as CI runs: root, apt-get), so that every real
    browser test runs on a fresh machine whichever of them runs first; the chromium executable."""
    missing = [pkg for exe, pkg in ((str(CHROMIUM) if CHROMIUM.exists() else None, "chromium"),
                                    (shutil.which("npm"), "npm"), (shutil.which("node"), "nodejs")) if not exe]
    if missing:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.fail(f"{', '.join(missing)} missing; install as root: apt-get install -y {' '.join(missing)}")
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if proc.returncode != 0:
                pytest.fail(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    return CHROMIUM
