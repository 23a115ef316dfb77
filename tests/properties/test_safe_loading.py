"""Safe loading: no pickle anywhere, remote code never trusted by default, no code from a model package executed.

- Source scan (AST, not regex): no module of compress/, runtime/ or benchmarks/ imports pickle (or dill, joblib,
  marshal, shelve), calls ``torch.load`` without ``weights_only=True``, ``np.load`` with ``allow_pickle=True``,
  passes ``trust_remote_code`` anything but ``False``, or calls ``eval``/``exec``/``compile``/``__import__``.
- A model folder whose config asks for remote code (``auto_map`` + a modeling_*.py that would leave a trace)
  is refused by the toolchain's loader and its code never runs; a ``pytorch_model.bin`` holding a malicious
  pickle is refused by ``torch.load(weights_only=True)`` (transformers' path) and its payload never runs.
- A package is data only: in a subprocess with an audit hook, loading and predicting opens only the files the
  manifest lists (plus the manifest), imports nothing and opens nothing else from the package folder, even
  with a planted ``model.py`` / ``__init__.py`` / ``tokenizer_config.json`` / ``sitecustomize.py``.
- An ONNX graph that needs a custom-op domain (code that would have to be registered from a shared library)
  fails cleanly: onnxruntime refuses it and the runtime raises ``PackageFormatError`` naming model.onnx; a graph
  whose weights point at an external file (``/etc/hostname``, ``../secret``) is refused and the file is never read.
"""

from __future__ import annotations

import ast
import json
import pickle  # noqa: S403  (only to *write* a malicious file for the test; the scan below skips tests/)
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgedistill.runtime import PackageFormatError, TextClassifier, write_manifest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = sorted(p for d in ("compress", "runtime", "benchmarks") for p in (ROOT / d).rglob("*.py"))
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}
DYNAMIC_CODE = {"eval", "exec", "compile", "__import__"}


def _call_name(node: ast.Call) -> str:
    f = node.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return k.value
    return None


def unsafe_calls(source: str, filename: str) -> list[str]:
    """Every use in ``source`` that could run code from a file: see the module docstring."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _call_name(node)
            if isinstance(node.func, ast.Name) and name in DYNAMIC_CODE:  # not model.eval()
                found.append(f"{where}: {name}()")
            if name.endswith("torch.load"):
                wo = _kw(node, "weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
            ap = _kw(node, "allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                found.append(f"{where}: allow_pickle={ast.unparse(ap)}")
            trc = _kw(node, "trust_remote_code")
            if trc is not None and not (isinstance(trc, ast.Constant) and trc.value is False):
                found.append(f"{where}: trust_remote_code={ast.unparse(trc)}")
            if name.endswith("register_custom_ops_library"):
                found.append(f"{where}: loads a custom-op library")
    return found


def test_the_scan_catches_what_it_looks_for():
    bad = """
import pickle
from joblib import load
import torch
torch.load("m.bin")
torch.load("m.bin", weights_only=False)
np.load("x.npy", allow_pickle=True)
AutoModel.from_pretrained("x", trust_remote_code=True)
AutoModel.from_pretrained("x", trust_remote_code=cfg.trust)
eval("1+1")
so.register_custom_ops_library("evil.so")
"""
    assert len(unsafe_calls(bad, "bad.py")) == 9
    ok = 'torch.load("m.pt", weights_only=True)\nmodel.eval()\nnp.load("x.npz")\nf(trust_remote_code=False)\n'
    assert unsafe_calls(ok, "ok.py") == []


def test_no_module_can_run_code_from_a_file():
    assert len(SCANNED) > 20
    found = [hit for p in SCANNED for hit in unsafe_calls(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert found == []


def test_weights_are_written_as_safetensors_only():
    """Every save_pretrained of a model in the toolchain writes safetensors (the default; never turned off)."""
    hits = [f"{p.relative_to(ROOT)}" for p in SCANNED if "safe_serialization=False" in p.read_text(encoding="utf-8")]
    assert hits == []


# ---------------------------------------------------------------------- model folders that carry code

def _remote_code_folder(folder: Path, tiny_model_dir: Path, sentinel: Path) -> Path:
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="evil-bert", architectures=["EvilModel"],
               auto_map={"AutoConfig": "configuration_evil.EvilConfig",
                         "AutoModelForSequenceClassification": "modeling_evil.EvilModel",
                         "AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]})
    (folder / "config.json").write_text(json.dumps(cfg))
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    tok["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    payload = f"from pathlib import Path\nPath({str(sentinel)!r}).write_text('executed')\n"
    for name in ("configuration_evil.py", "modeling_evil.py", "tokenization_evil.py", "__init__.py"):
        (folder / name).write_text(payload)
    return folder


def test_a_model_asking_for_remote_code_is_refused_and_its_code_never_runs(tmp_path, tiny_model_dir, monkeypatch):
    from edgedistill.compress.errors import ConfigError
    from edgedistill.compress.teacher_transfer import load_model

    sentinel = tmp_path / "EXECUTED"
    folder = _remote_code_folder(tmp_path / "evil", tiny_model_dir, sentinel)
    monkeypatch.setattr("builtins.input", lambda *a: (_ for _ in ()).throw(EOFError("no terminal")))
    with pytest.raises((ValueError, ConfigError, OSError), match="trust_remote_code|custom code|remote code"):
        load_model(str(folder), ["negative", "positive"])
    from transformers import AutoConfig, AutoModelForSequenceClassification

    for loader in (AutoConfig, AutoModelForSequenceClassification):
        with pytest.raises(ValueError, match="trust_remote_code"):
            loader.from_pretrained(folder)
    assert not sentinel.exists()


class _Payload:
    """Unpickling this runs ``exec``: what a malicious pytorch_model.bin does."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return exec, (f"open({str(self.sentinel)!r}, 'w').write('executed')",)


@pytest.mark.parametrize("loader", ["toolchain", "student-export"])
def test_a_pickled_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, tiny_model_dir, loader):
    sentinel = tmp_path / "EXECUTED"
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "pickled"))
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump({"bert.embeddings.word_embeddings.weight": _Payload(sentinel)}, f)
    with pytest.raises(Exception) as e:
        if loader == "toolchain":
            from edgedistill.compress.teacher_transfer import load_model

            load_model(str(folder), ["negative", "positive"])
        else:
            from edgedistill.compress.export import ExportConfig, export

            export(ExportConfig(checkpoint=str(folder), output=str(tmp_path / "onnx"), max_length=32))
    assert "weights_only" in str(e.value) or "Unpickl" in repr(e.value) or "pickle" in str(e.value).lower()
    assert not sentinel.exists()
    assert not (tmp_path / "onnx").exists()


# ---------------------------------------------------------------------- a package is data

AUDIT = r"""
import json, sys
pkg = sys.argv[1]
events = []
def hook(event, args):
    if event in ("open", "os.listdir", "os.scandir", "import", "exec", "compile", "ctypes.dlopen"):
        text = " ".join(str(a) for a in args[:1])
        if pkg in text:
            events.append([event, text])
sys.addaudithook(hook)
from edgedistill.runtime import TextClassifier
clf = TextClassifier.load(pkg)
clf.predict_proba(["a good film", "", "x" * 5000])
print("EVENTS" + json.dumps(events))
"""


def test_loading_a_package_touches_only_its_listed_files(tiny_package, tmp_path):
    pkg = Path(shutil.copytree(tiny_package, tmp_path / "pkg"))
    planted = {"model.py": "raise SystemExit(7)\n", "__init__.py": "raise SystemExit(7)\n",
               "sitecustomize.py": "raise SystemExit(7)\n", "tokenizer_config.json": '{"auto_map": {}}',
               "modeling_evil.py": "raise SystemExit(7)\n"}
    for name, text in planted.items():
        (pkg / name).write_text(text)
    r = subprocess.run([sys.executable, "-c", AUDIT, str(pkg)], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    events = json.loads(r.stdout.split("EVENTS", 1)[1])
    opened = {Path(e[1]).name for e in events if e[0] == "open"}
    listed = set(json.loads((pkg / "manifest.json").read_text())["files"]) | {"manifest.json"}
    assert "model.onnx" in opened and opened <= listed, opened
    assert not [e for e in events if e[0] in ("import", "exec", "compile", "ctypes.dlopen")]
    assert not opened & set(planted)


def _graph_with(node_domain: str | None = None, external: str | None = None) -> bytes:
    """A tiny classifier-shaped graph: a custom-domain op, or a weight stored in an external file."""
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 2], [0.1, -0.1])
    if external:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        for k, v in (("location", external), ("offset", "0"), ("length", "8")):
            entry = weight.external_data.add()
            entry.key, entry.value = k, v
    nodes = [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["m", "w"], ["raw"])]
    opsets = [helper.make_opsetid("", 17)]
    if node_domain:
        nodes.append(helper.make_node("Evil", ["raw"], ["logits"], domain=node_domain))
        opsets.append(helper.make_opsetid(node_domain, 1))
    else:
        nodes.append(helper.make_node("Identity", ["raw"], ["logits"]))
    graph = helper.make_graph(nodes, "g", inputs, [out], initializer=[weight])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _no_links(*args, **kwargs):
    raise OSError("symbolic links are not allowed here")


def _package_with_model(tiny_package: Path, dest: Path, model: bytes) -> Path:
    pkg = Path(shutil.copytree(tiny_package, dest))
    (pkg / "model.onnx").write_bytes(model)
    manifest = json.loads((pkg / "manifest.json").read_text())
    write_manifest(pkg, opset=manifest["opset"])  # the manifest vouches for it: only onnxruntime stands in the way
    return pkg


def test_the_probe_graph_itself_loads(tiny_package, tmp_path):
    """The graphs below differ from this one only in the custom op or the external weight."""
    pkg = _package_with_model(tiny_package, tmp_path / "plain", _graph_with())
    assert TextClassifier.load(pkg).predict_proba(["a good film", "bad"]).shape == (2, 2)


@pytest.mark.parametrize("domain", ["com.evil", "ai.onnx.contrib", "com.microsoft.extensions"])
def test_a_graph_with_a_custom_op_domain_fails_cleanly(tiny_package, tmp_path, domain):
    pkg = _package_with_model(tiny_package, tmp_path / "custom", _graph_with(node_domain=domain))
    with pytest.raises(PackageFormatError, match="model.onnx: onnxruntime cannot load it") as e:
        TextClassifier.load(pkg)
    assert e.value.file == "model.onnx"
    assert "Evil" in str(e.value) or domain in str(e.value)


@pytest.mark.parametrize("links", [True, False], ids=["by-link", "by-bytes"])
@pytest.mark.parametrize("location", ["/etc/hostname", "../secret.bin", "weights.bin"])
def test_a_graph_with_external_weights_is_refused_and_reads_nothing(tiny_package, tmp_path, location, links,
                                                                     monkeypatch):
    """The runtime hands onnxruntime the verified model alone in a private folder (a link to it; its bytes where
    no link can be made): external data has nothing to resolve against, so even a listed weights file beside the
    model (or a file outside the package) is never read."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.array([5.0, 5.0], np.float32).tobytes())
    pkg = _package_with_model(tiny_package, tmp_path / "pkg", _graph_with(external=location))
    if location == "weights.bin":
        shutil.copyfile(secret, pkg / "weights.bin")
        write_manifest(pkg, opset=17)
    if not links:  # as on Windows without the privilege to make symbolic links
        monkeypatch.setattr("os.symlink", _no_links)
    with pytest.raises(PackageFormatError, match="model.onnx: onnxruntime cannot load it"):
        TextClassifier.load(pkg)
