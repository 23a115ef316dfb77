"""The web folder (transformers.js): layout, config, npm integrity and the server's headers (fast); the demo page
in headless Chromium and classify.mjs under Node.js against the Python runtime (marked real + slow), for a
transformer (a tiny BERT) and for the static student (compress/static.py), each in fp32 and int8.

The fast tests use small npm tarballs built here (real tarballs, pinned by their own sha512) in place of the
35 MB of transformers.js + onnxruntime-web, so they need no network. The slow tests use the real pinned
packages from the user's cache (fetched once), Debian's chromium (installed when missing) and playwright-core.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.runtime import TextClassifier, sha256_file, write_manifest
from edgedistill.runtime import npm
from edgedistill.runtime import webexport as web
from edgedistill.runtime.fsutil import cache_dir
from tests.helpers import REAL_CACHE, build_tiny_bert, headless_page, make_sentences

WEB_DIR = Path(web.__file__).parent / "web"


def _repackage(src: Path, dest: Path, *, onnx: Path | None = None, **config_changes) -> Path:
    """A copy of a package with another model.onnx and/or config fields, with a fresh manifest."""
    shutil.copytree(src, dest)
    (dest / "manifest.json").unlink()
    if onnx is not None:
        shutil.copyfile(onnx, dest / "model.onnx")
    config = json.loads((dest / "config.json").read_text())
    config.update(config_changes)
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    write_manifest(dest, opset=17, quantization={"mode": "dynamic"} if "int8" in config["variant"] else None)
    return dest


def _int8(src: Path, tmp: Path) -> Path:
    """Dynamic int8 as ``QuantizeConfig.avx2()`` makes it: per-channel 7-bit weights.

    On x86 without VNNI (AVX2 only) onnxruntime multiplies u8 x s8 with VPMADDUBSW, whose int16 pair sums
    saturate on full-range 8-bit weights; WASM's kernels do not. With 7-bit weights both are exact, so
    the Python runtime and the browser can be compared at 1e-3.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = tmp / "model-int8.onnx"
    quantize_dynamic(src / "model.onnx", out, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    return _repackage(src, tmp / "int8-package", onnx=out, variant="int8-dynamic", batch_dependent=True)


# --------------------------------------------------------------------------- fast: the folder

def test_web_folder_layout_and_config(tiny_package, tmp_path, fake_npm):
    out = web.export_web(tiny_package, tmp_path / "site")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted([
        "index.html", "edgedistill.mjs", "classify.mjs", "edgedistill-web.json",
        "model/config.json", "model/tokenizer.json", "model/tokenizer_config.json", "model/special_tokens_map.json",
        "model/onnx/model.onnx",
        "vendor/transformers.min.js", "vendor/LICENSE.transformers.js.txt",
        "vendor/ort-wasm-simd-threaded.asyncify.mjs", "vendor/ort-wasm-simd-threaded.asyncify.wasm"])
    assert (out / "model/onnx/model.onnx").read_bytes() == (tiny_package / "model.onnx").read_bytes()
    assert (out / "model/tokenizer.json").read_bytes() == (tiny_package / "tokenizer.json").read_bytes()

    config = json.loads((out / "model/config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["transformers.js_config"] == {"dtype": "fp32"}
    assert config["edgedistill"] == {"kind": "transformer", "input_names": ["input_ids", "attention_mask",
                                                                             "token_type_ids"],
                                     "output_name": "logits",
                                     "labels": ["negative", "positive"], "max_length": 64, "pad_token_id": 0,
                                     "special_tokens_after": 1, "variant": "fp32", "dtype": "fp32",
                                     "temperature": 1.0, "biases": None, "runs_alone": False}
    tok = json.loads((out / "model/tokenizer_config.json").read_text())
    assert tok["tokenizer_class"] == "BertTokenizer" and tok["model_max_length"] == 64
    specials = json.loads((out / "model/special_tokens_map.json").read_text())
    assert specials == {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                        "mask_token": "[MASK]"}

    build = json.loads((out / web.BUILD_FILE).read_text())
    assert build["kind"] == "transformer" and build["dtype"] == "fp32" and build["model"] == "model/onnx/model.onnx"
    assert build["licenses"] == {f"{npm.TRANSFORMERS_JS.spec}": "Apache-2.0", f"{npm.ONNXRUNTIME_WEB.spec}": "MIT"}
    assert set(build["files"]) == set(files) - {web.BUILD_FILE}
    assert build["files"]["model/onnx/model.onnx"]["sha256"] == sha256_file(out / "model/onnx/model.onnx")
    for name in web.TEMPLATE_FILES:
        assert (out / name).read_bytes() == (WEB_DIR / name).read_bytes()


def test_int8_package_becomes_model_quantized_loaded_as_q8(tiny_package, tmp_path, fake_npm):
    pkg = _int8(tiny_package, tmp_path)
    out = web.export_web(pkg, tmp_path / "site")
    assert sorted(p.name for p in (out / "model/onnx").iterdir()) == ["model_quantized.onnx"]
    assert (out / "model/onnx/model_quantized.onnx").read_bytes() == (pkg / "model.onnx").read_bytes()
    config = json.loads((out / "model/config.json").read_text())
    assert config["transformers.js_config"] == {"dtype": "q8"}
    assert config["edgedistill"]["variant"] == "int8-dynamic"
    assert config["edgedistill"]["runs_alone"] is True  # the page runs one text per call, as Python does
    assert json.loads((out / web.BUILD_FILE).read_text())["runs_alone"] is True


def test_static_package_runs_through_the_generic_model(static_packages, tmp_path, fake_npm):
    pkg = static_packages["static"]
    out = web.export_web(pkg, tmp_path / "site")
    assert (out / "model/onnx/model.onnx").read_bytes() == (pkg / "model.onnx").read_bytes()
    assert (out / "model/tokenizer.json").read_bytes() == (pkg / "tokenizer.json").read_bytes()
    config = json.loads((out / "model/config.json").read_text())
    assert config["model_type"] == "edgedistill-static"
    assert config["architectures"] == ["StaticForSequenceClassification"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    settings = config["edgedistill"]
    assert settings["kind"] == "static"  # edgedistill.mjs loads it with PreTrainedModel, not by model_type
    assert settings["input_names"] == ["input_ids", "attention_mask"]  # no token types: the graph takes none
    assert settings["output_name"] == "logits" and settings["special_tokens_after"] == 1
    assert json.loads((out / web.BUILD_FILE).read_text())["kind"] == "static"

    out8 = web.export_web(static_packages["static-int8"], tmp_path / "site-int8")
    config = json.loads((out8 / "model/config.json").read_text())
    assert config["transformers.js_config"] == {"dtype": "q8"}
    assert config["edgedistill"]["kind"] == "static" and config["edgedistill"]["runs_alone"] is True
    assert config["edgedistill"]["temperature"] == 2.0


def test_zipped_package_and_rebuild_in_place(tiny_package, tmp_path, fake_npm):
    from edgedistill.runtime import zip_package

    archive = zip_package(tiny_package, tmp_path / "tiny.zip")
    out = web.export_web(archive, tmp_path / "site")
    (out / "stale.txt").write_text("left over from an earlier build")
    web.export_web(tiny_package, out)  # an earlier web folder is replaced as a whole
    assert not (out / "stale.txt").exists() and (out / "model/onnx/model.onnx").is_file()


def test_refuses_a_folder_that_is_not_a_web_folder(tiny_package, tmp_path, fake_npm):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(web.WebExportError, match="not a web folder"):
        web.export_web(tiny_package, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_refuses_a_tampered_package(tiny_package, tmp_path, fake_npm):
    from edgedistill.runtime import PackageIntegrityError

    pkg = Path(shutil.copytree(tiny_package, tmp_path / "pkg"))
    (pkg / "tokenizer.json").write_text((pkg / "tokenizer.json").read_text().replace("[UNK]", "[UNX]"))
    with pytest.raises(PackageIntegrityError, match="tokenizer.json"):
        web.export_web(pkg, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_refuses_a_model_type_transformersjs_cannot_classify_with(tiny_package, tmp_path, fake_npm):
    pkg = _repackage(tiny_package, tmp_path / "gpt", model_type="gpt2")
    with pytest.raises(web.WebExportError, match="model_type='gpt2' .* not the static student"):
        web.export_web(pkg, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_webexport_is_torch_free():
    code = ("import sys, edgedistill.runtime.webexport, edgedistill.compress.cli.web_cmd; "
            "print(sorted(m for m in ('torch', 'transformers', 'onnx', 'optimum') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


# --------------------------------------------------------------------------- fast: npm files

def test_tampered_npm_tarball_is_refused(tiny_package, tmp_path, fake_npm):
    pins = fake_npm()
    tgz = cache_dir() / "npm" / pins[npm.ONNXRUNTIME_WEB.name].tarball
    data = bytearray(tgz.read_bytes())
    data[-20] ^= 0xFF
    tgz.write_bytes(bytes(data))
    with pytest.raises(web.WebExportError, match="integrity .* does not match the pinned"):
        web.export_web(tiny_package, tmp_path / "site")


def test_link_in_npm_tarball_is_refused(tiny_package, tmp_path, fake_npm):
    fake_npm(link=True)
    with pytest.raises(web.WebExportError, match="not a regular file"):
        web.export_web(tiny_package, tmp_path / "site")


def test_onnxruntime_web_must_be_the_one_transformersjs_depends_on(tiny_package, tmp_path, fake_npm):
    fake_npm(ort_dependency="1.0.0")
    with pytest.raises(web.WebExportError, match=r"depends on onnxruntime-web@1\.0\.0"):
        web.export_web(tiny_package, tmp_path / "site")


def test_offline_without_cached_tarball_says_so(tiny_package, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDISTILL_OFFLINE", "1")
    with pytest.raises(web.WebExportError, match="EDGEDISTILL_OFFLINE"):
        web.export_web(tiny_package, tmp_path / "site")


def test_pins_agree_with_each_other():
    assert npm.TRANSFORMERS_JS.tarball == "huggingface-transformers-4.3.1.tgz"
    for pkg in (npm.TRANSFORMERS_JS, npm.ONNXRUNTIME_WEB, npm.PLAYWRIGHT_CORE):
        assert pkg.integrity.startswith("sha512-") and len(pkg.integrity) == 95
    assert npm.TRANSFORMERS_JS.spec in npm.NODE_INSTALL
    assert npm.TRANSFORMERS_JS.spec in (WEB_DIR / "classify.mjs").read_text()  # its install line
    assert npm.PLAYWRIGHT_CORE.spec in (WEB_DIR / "headless.mjs").read_text()


# --------------------------------------------------------------------------- fast: tokenizer side files

def _config(**kw):
    from edgedistill.runtime import PackageConfig

    base = {"labels": ("a", "b"), "max_length": 128, "pad_token_id": 1, "model_type": "mpnet"}
    return PackageConfig(**{**base, **kw})


def test_sidecars_of_a_roberta_style_tokenizer():
    tokenizer = {
        "added_tokens": [{"id": i, "content": c, "special": True} for i, c in
                         enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])],
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0]},
        "model": {"type": "WordPiece", "unk_token": "<unk>", "vocab": {"<s>": 0, "<pad>": 1}},
    }
    tok_config, specials, after = web.tokenizer_sidecars(tokenizer, _config())
    assert specials == {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>",
                        "bos_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>"}
    assert tok_config["tokenizer_class"] == "MPNetTokenizer" and tok_config["model_max_length"] == 128
    assert after == 1


def test_sidecars_without_post_processor_and_unigram_unk():
    tokenizer = {"added_tokens": [], "post_processor": None,
                 "model": {"type": "Unigram", "unk_id": 2, "vocab": [["<pad>", 0.0], ["x", -1.0], ["<unk>", 0.0]]}}
    _, specials, after = web.tokenizer_sidecars(tokenizer, _config(pad_token_id=0, model_type="albert"))
    assert specials == {"pad_token": "<pad>", "unk_token": "<unk>"} and after == 0


def test_sidecars_refuse_an_unknown_pad_id():
    tokenizer = {"added_tokens": [], "model": {"type": "WordPiece", "vocab": {"[PAD]": 0}}}
    with pytest.raises(web.WebExportError, match="pad_token_id=7"):
        web.tokenizer_sidecars(tokenizer, _config(pad_token_id=7))


# --------------------------------------------------------------------------- fast: the server and the CLI

class Served:
    def __init__(self, folder: Path):
        self.server = web.make_server(folder, port=0)
        self.url = web.server_url(self.server)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_server_mime_types_and_isolation_headers(tiny_package, tmp_path, fake_npm):
    out = web.export_web(tiny_package, tmp_path / "site")
    expected = {"index.html": "text/html", "edgedistill.mjs": "text/javascript",
                "vendor/ort-wasm-simd-threaded.asyncify.mjs": "text/javascript",
                "vendor/transformers.min.js": "text/javascript",
                "vendor/ort-wasm-simd-threaded.asyncify.wasm": "application/wasm",
                "model/config.json": "application/json", "model/onnx/model.onnx": "application/octet-stream"}
    with Served(out) as s:
        assert s.url.startswith("http://localhost:") and s.server.server_address[0] == "127.0.0.1"
        for path, mime in expected.items():
            with urllib.request.urlopen(s.url + path) as r:
                assert r.headers["Content-Type"].split(";")[0] == mime, path
                assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
                assert r.read() == (out / path).read_bytes()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(s.url + "model/onnx/nothing.onnx")
        assert e.value.code == 404


def test_server_refuses_a_folder_without_a_page(tmp_path):
    with pytest.raises(web.WebExportError, match="no index.html"):
        web.make_server(tmp_path, port=0)


def test_cli_web(tiny_package, tmp_path, fake_npm):
    from edgedistill.compress.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["web", str(tiny_package), str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "site/model/onnx/model.onnx").is_file() and "edgedistill web --serve" in r.output
    r = runner.invoke(app, ["web", str(tmp_path / "missing"), str(tmp_path / "other")])
    assert r.exit_code == 1 and "no such package" in r.output and "Traceback" not in r.output
    assert runner.invoke(app, ["web", "--serve"]).exit_code == 2
    assert runner.invoke(app, ["web", str(tiny_package), str(tmp_path / "x"), "--port", "9"]).exit_code == 2
    r = runner.invoke(app, ["web", "--serve", str(tmp_path)])  # not a web folder: one line, exit 1
    assert r.exit_code == 1 and "no index.html" in r.output


# --------------------------------------------------------------------------- real: Chromium and Node.js

def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    return proc


@pytest.fixture(scope="module")
def node_env(browser_tools) -> dict[str, str]:
    """Chromium and Node.js (:func:`tests.conftest.browser_tools`) and the pinned npm packages (cached)."""
    folder = npm.node_modules([npm.TRANSFORMERS_JS, npm.PLAYWRIGHT_CORE], REAL_CACHE / "npm" / "node")
    return {**os.environ, "EDGEDISTILL_NODE_MODULES": str(folder)}


def _train_tiny_bert(path: Path, tokenizer_dir: Path) -> Path:
    """The tiny BERT after a few seconds of training on the sentiment sentences: texts get different labels."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    build_tiny_bert(path, tokenizer_dir)
    tok, model = AutoTokenizer.from_pretrained(path), BertForSequenceClassification.from_pretrained(path)
    rows = make_sentences(240, seed=1)
    texts, labels = [t for t, _ in rows], torch.tensor([int(y == "positive") for _, y in rows])
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(3):
        for i in range(0, len(texts), 24):
            loss = model(**tok(texts[i:i + 24], padding=True, return_tensors="pt"), labels=labels[i:i + 24]).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained_packages(tmp_path_factory, tiny_tokenizer_dir, tiny_package) -> dict[str, Path]:
    """fp32 and int8 (dynamic, calibrated) packages of a briefly trained tiny BERT (the tiny package's files
    otherwise)."""
    from edgedistill.compress.export import ExportConfig, export

    tmp = tmp_path_factory.mktemp("web-trained")
    model = _train_tiny_bert(tmp / "bert", tiny_tokenizer_dir)
    export(ExportConfig(checkpoint=str(model), output=str(tmp / "onnx"), opset=17, max_length=64))
    fp32 = _repackage(tiny_package, tmp / "fp32", onnx=tmp / "onnx" / "model.onnx")
    # int8 with a temperature: the page must divide the logits by it as the Python runtime does,
    # and class biases, added after the temperature as the Python runtime adds them
    return {"fp32": fp32, "int8": _repackage(_int8(fp32, tmp), tmp / "int8-calibrated", temperature=0.5,
                                             biases=[0.4, -0.3])}


def _train_static(path: Path, teacher: Path) -> Path:
    """The static student (compress/static.py: token table from the teacher, masked mean, head), trained for a
    second on the sentiment sentences so that texts get different labels, saved as distill saves it."""
    import torch

    from edgedistill.compress.student import StudentConfig, build_student

    rows = make_sentences(240, seed=1)
    texts, labels = [t for t, _ in rows], torch.tensor([int(y == "positive") for _, y in rows])
    model, tok = build_student(StudentConfig(builder="static", static_dim=16), teacher, 2,
                               {0: "negative", 1: "positive"}, corpus=texts)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        for i in range(0, len(texts), 24):
            model(**tok(texts[i:i + 24], padding=True, return_tensors="pt"), labels=labels[i:i + 24]).loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def static_packages(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """The static student packaged as the pipeline packages it: fp32, and int8 (dynamic, with a temperature)."""
    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.compress.package import PackagingConfig, build_package

    tmp = tmp_path_factory.mktemp("web-static")
    model = _train_static(tmp / "student", tiny_model_dir)
    onnx_dir = export(ExportConfig(checkpoint=str(model), output=str(tmp / "onnx"), opset=17, max_length=64))
    fp32 = build_package(PackagingConfig(onnx_dir=str(onnx_dir), output=str(tmp / "static"), name="tiny-static"))
    return {"static": fp32, "static-int8": _repackage(_int8(fp32, tmp), tmp / "static-int8", temperature=2.0)}


PACKAGES = {"fp32": "trained_packages", "int8": "trained_packages",  # kind -> the fixture that builds it
            "static": "static_packages", "static-int8": "static_packages"}
TOLERANCE = {"fp32": 1e-4, "int8": 1e-3, "static": 1e-4, "static-int8": 1e-3}
DTYPES = {"fp32": "fp32", "int8": "q8", "static": "fp32", "static-int8": "q8"}


def _package(request, kind: str) -> Path:
    return request.getfixturevalue(PACKAGES[kind])[kind]


def _parity_texts() -> list[str]:
    texts = [t for t, _ in make_sentences(14, seed=7)]
    return texts + [
        "",                                                   # [CLS] [SEP]
        "Café NAÏVE, très BIEN!!",                             # accents, case
        "GREAT film 😀 but a dull, messy plot?",                # emoji ([UNK])
        " ".join(["boring"] * 50 + ["superb"] * 50),           # > max_length: truncated, closing [SEP] kept
        "\tthe acting\nwas warm\u200b and fun",                # control and zero-width characters
    ]


def _python_probs(pkg: Path, texts: list[str], batch_size: int) -> np.ndarray:
    return TextClassifier.load(pkg).predict_proba(texts, batch_size=batch_size)


def _compare(kind: str, labels: list[str], expected: np.ndarray, got: list[dict]) -> None:
    probs = np.array([[r["probs"][label] for label in labels] for r in got])
    assert probs.shape == expected.shape
    assert [r["label"] for r in got] == [labels[i] for i in expected.argmax(1)]
    diff = float(np.abs(probs - expected).max())
    assert diff <= TOLERANCE[kind], f"{kind}: max |p_js - p_python| = {diff:.2e} > {TOLERANCE[kind]}"
    assert [r["score"] for r in got] == pytest.approx(expected.max(1), abs=TOLERANCE[kind])


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("kind", list(PACKAGES))
def test_page_in_headless_chromium_matches_python_runtime(kind, request, browser_tools, tmp_path):
    package = _package(request, kind)
    texts = _parity_texts()
    expected = _python_probs(package, texts, batch_size=len(texts))  # one padded batch
    labels = ["negative", "positive"]
    assert len({labels[i] for i in expected.argmax(1)}) == 2, "the trained model should predict both labels"
    site = web.export_web(package, tmp_path / "site", cache=REAL_CACHE)
    result = headless_page(site, {"mode": "classify", "texts": texts, "batch_size": len(texts), "ui_text": texts[0]},
                           browser_tools, query="?threads=2")
    assert result["blocked"] == [] and result["errors"] == []  # nothing asked of the outside world
    info = result["info"]
    assert info["labels"] == labels and info["dtype"] == DTYPES[kind]
    assert info["kind"] == ("static" if kind.startswith("static") else "transformer")
    assert info["crossOriginIsolated"] is True and info["threads"] == 2
    _compare(kind, labels, expected, result["results"])
    ui = result["ui"]  # what a user sees after typing the first text: its label, a bar per class, the latency
    single = _python_probs(package, texts[:1], batch_size=1)[0]
    assert ui["label"] == labels[int(single.argmax())]
    assert [(b["name"], b["best"]) for b in ui["bars"]] == [(lab, lab == ui["label"]) for lab in labels]
    assert [float(b["pct"].rstrip("%")) for b in ui["bars"]] == pytest.approx(100 * single, abs=0.1)
    assert re.fullmatch(r"\d+\.\d ms", ui["latency"])


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("kind", list(PACKAGES))
def test_node_classify_script_matches_python_runtime(kind, request, node_env, tmp_path):
    package = _package(request, kind)
    texts = [t for t in _parity_texts() if t.strip() and "\n" not in t]  # one text a line
    texts += [t for t, _ in make_sentences(30, seed=11)]  # more than one batch of 16
    site = web.export_web(package, tmp_path / "site", cache=REAL_CACHE)
    proc = _run(["node", str(site / "classify.mjs"), str(site), "--batch-size", "16", "--threads", "1"],
                "classify.mjs", input="\n".join(texts) + "\n", env=node_env, timeout=240)
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in got] == texts
    expected = _python_probs(package, texts, batch_size=16)  # the same batches, the same padding
    _compare(kind, ["negative", "positive"], expected, got)
