"""Helpers the tests of every folder import: tiny data, tiny models, tiny recipes and configs, all made in code.

Fixtures live in tests/conftest.py; the plain functions and constants they and the tests share live here, so that
no test module imports from conftest.py or from another test module.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgedistill.compress.distill.config import DistillConfig
    from edgedistill.compress.sources import Wheel
    from edgedistill.compress.teacher import TeacherConfig

from edgedistill.runtime.fsutil import cache_dir

REPO = Path(__file__).resolve().parents[1]
REAL_CACHE = cache_dir()
"""The user's cache, read when the tests are collected, before the autouse fixture points the cache at a temporary
folder: the real tests' downloads (npm packages, built-in sources) are fetched once and kept there."""

# ------------------------------------------------------------------------------ tiny data

POSITIVE = ["good", "great", "fine", "superb", "lovely", "brilliant", "moving", "fun", "smart", "warm"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "weak", "messy", "flat", "tedious", "cold"]
FILLER = ["the", "film", "movie", "was", "is", "a", "very", "really", "plot", "acting", "and", "but",
          "story", "cast", "ending", "quite", "this", "it", "of", "with"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = list(dict.fromkeys(SPECIALS + sorted(set(POSITIVE + NEGATIVE + FILLER))
                           + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
                           + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]))
TAGS = ["negative", "performance", "positive", "story"]  # the labels of multilabel_rows (the CSV column "tags")


def make_sentences(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Sentences whose label is decided by the sentiment words they contain (learnable by a tiny model)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if label == "positive" else NEGATIVE, 2)
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", label))  # the number keeps texts unique
    return rows


def multilabel_rows(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """Sentences with a sentiment label and, by the words they hold, ``performance`` and ``story`` labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if i % 2 == 0 else NEGATIVE, 2)
        labels = ["positive" if i % 2 == 0 else "negative"]
        if {"acting", "cast"} & set(words):
            labels.append("performance")
        if {"plot", "story", "ending"} & set(words):
            labels.append("story")
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {i}", labels))
    return rows


# ------------------------------------------------------------------------------ tiny models

def build_tiny_bert(path: Path, tokenizer_dir: Path, labels=("negative", "positive"), layers: int = 2,
                    hidden: int = 32, seed: int = 0) -> Path:
    """Save a random BERT sequence classifier (hidden 32, 2 layers, 2 heads) with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64, type_vocab_size=2,
                     num_labels=len(labels), id2label=dict(enumerate(labels)),
                     label2id={n: i for i, n in enumerate(labels)})
    model = BertForSequenceClassification(cfg).eval()
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    shutil.copy(tokenizer_dir / "vocab.txt", path / "vocab.txt")  # the word list, for tests that read it
    return path


def train_tiny_bert(path: Path, tokenizer_dir: Path, csv_path: Path, layers: int = 2, steps: int = 40) -> Path:
    """A tiny BERT trained for ``steps`` steps on the training split of ``csv_path`` (about a second):
    unlike the random models its predictions have margins, so int8 noise does not flip them."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from edgedistill.compress.data import DataConfig, load_data

    build_tiny_bert(path, tokenizer_dir, layers=layers)
    data = load_data(DataConfig(source=str(csv_path)))
    tok = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path)
    enc = tok(data.train.texts, padding=True, return_tensors="pt")
    labels = torch.tensor(data.train.labels)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only thrashes with more threads on a busy machine
    try:
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(labels), (32,))
            model(**{k: v[idx] for k, v in enc.items()}, labels=labels[idx]).loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.eval().save_pretrained(path)
    return path


def saved_state(model_dir: Path) -> dict:
    """The weights a checkpoint folder holds (model.safetensors), by name."""
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


# ------------------------------------------------------------------------------ tiny stage configs and recipes

def tiny_teacher_config(model_dir: Path, csv: Path, out: Path, strategy: str, **kw) -> TeacherConfig:
    """A ``TeacherConfig`` that fine-tunes ``model_dir`` on ``csv`` in seconds."""
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.teacher import TeacherConfig

    args = dict(model=str(model_dir), data=DataConfig(source=str(csv)), strategy=strategy, output_dir=str(out),
                epochs=1, head_epochs=3, batch_size=16, max_length=32, learning_rate=5e-3, head_learning_rate=5e-3)
    return TeacherConfig(**{**args, **kw})


def tiny_distill_config(csv: Path, teacher: Path, out: Path, init: Path | None, **kw) -> DistillConfig:
    """A ``DistillConfig`` that distils ``teacher`` into ``init`` (or the default student) on ``csv`` in seconds;
    a field given as None is left to its default."""
    from edgedistill.compress.data import DataConfig
    from edgedistill.compress.distill.config import DistillConfig
    from edgedistill.compress.student import StudentConfig

    base = dict(teacher_dir=str(teacher), data=DataConfig(source=str(csv)),
                student=StudentConfig(model=str(init)) if init else None, output_dir=str(out), epochs=1.0,
                batch_size=16, max_length=32, learning_rate=1e-3)
    base.update(kw)
    return DistillConfig(**{k: v for k, v in base.items() if v is not None})


PACKAGE_FILES = {"model.onnx", "tokenizer.json", "config.json", "manifest.json", "README.md"}


def tiny_recipe(folder: Path, tiny_csv: Path, tiny_model_dir: Path) -> Path:
    path = folder / "tiny.toml"
    path.write_text(f"""
name = "tiny"
description = "tiny end-to-end build"
profile = "quick"  # the tests build the fixed quick table; `edgedistill build` plans by default
[data]
source = "{tiny_csv}"
[teacher]
model = "{tiny_model_dir}"
epochs = 1.0
batch_size = 16
max_length = 32
retries = 0  # the tiny teacher never beats TF-IDF (1.0 here) on validation: one run, so each stage runs once
[student]
builder = "drop-layers"
model = "{tiny_model_dir}"
layers = 1
[distill]
epochs = 1.0
batch_size = 16
max_length = 32
[export]
max_length = 32
[quantize]
calibration_samples = 16
latency_samples = 4
[package]
[ship]
baseline = false  # the student ships, so these tests exercise its package (tests/compress/test_ship.py: the baseline)
""")
    return path


def tiny_multilabel_recipe(folder: Path, data: Path, model: Path, builder: str = "drop-layers") -> Path:
    """The pipeline tests' tiny recipe (builds into ``folder / "tiny"``) on the multi-label CSV, two epochs a
    stage, with ``builder``'s student."""
    path = tiny_recipe(folder, data, model)
    text = path.read_text().replace("[data]\n", '[data]\nlabel_column = "tags"\nlabel_separator = "|"\n')
    text = text.replace("epochs = 1.0", "epochs = 2.0")
    if builder != "drop-layers":
        text = re.sub(r"\[student\]\n.*?\n(?=\[distill\])", f'[student]\nbuilder = "{builder}"\n', text, flags=re.S)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ /proc/cpuinfo texts

X86_BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat sse sse2 ssse3 sse4_1 sse4_2 avx fma f16c"


def x86(flags: str, model: str = "AMD EPYC") -> str:
    """Two logical CPUs of an x86 /proc/cpuinfo."""
    return "".join(f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nmodel name\t: {model}\nphysical id\t: 0\n"
                   f"core id\t\t: {i}\nflags\t\t: {X86_BASE} {flags}\n\n" for i in range(2))


def arm(features: str) -> str:
    """Two CPUs of an ARM64 /proc/cpuinfo (no model name; implementer and part number instead)."""
    return "".join(f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                   f"atomics fphp asimdhp cpuid asimdrdm {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
                   f"CPU part\t: 0xd0c\n\n" for i in range(2))


# ------------------------------------------------------------------------------ wheels for the built-in sources

def make_wheel(folder: Path, name: str, version: str, members: dict[str, bytes],
               symlinks: dict[str, str] | None = None) -> Wheel:
    """Write a minimal, valid wheel holding ``members``; return its catalog entry."""
    from edgedistill.compress.sources import Wheel

    folder.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        for member, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(member)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
        zf.writestr(f"{dist}-{version}.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist}-{version}.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{dist}-{version}.dist-info/RECORD", "")
    return Wheel(name, version, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size / 1e6)


def local_index_args(index: Path) -> list[str]:
    """pip's arguments for installing from the wheels in ``index`` alone."""
    return ["--no-index", "--find-links", str(index)]


# ------------------------------------------------------------------------------ benchmarks/ and the report

def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (a folder of scripts, not a package) as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def report_line(request, line: str) -> None:
    """Write ``line`` to the terminal past pytest's output capture (a figure for the report, not a check)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(line)


def headless_page(site: Path, job: dict, chromium: Path, *, query: str = "") -> dict:
    """``runtime/web/headless.mjs`` on ``site`` (served on loopback) in headless Chromium, with the pinned npm
    packages from the user's real cache: the page's JSON result for ``job`` (its url and chromium filled in)."""
    import json
    import os
    import subprocess
    import threading

    from edgedistill.runtime import npm
    from edgedistill.runtime import webexport as web
    modules = npm.node_modules([npm.TRANSFORMERS_JS, npm.PLAYWRIGHT_CORE], REAL_CACHE / "npm" / "node")
    server = web.make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job = {**job, "chromium": str(chromium), "url": web.server_url(server) + "index.html" + query}
        proc = subprocess.run(["node", str(Path(web.__file__).parent / "web" / "headless.mjs")], input=json.dumps(job),
                              capture_output=True, text=True, timeout=240,
                              env={**os.environ, "EDGEDISTILL_NODE_MODULES": str(modules)})
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)
