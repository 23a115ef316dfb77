"""Shared fixtures: a tiny tokenizer, a tiny random BERT classifier and tiny data, all built in code.

Nothing here touches the network or the real weights; a fast test runs a whole
stage in seconds. Tests that need the real built-in sources are marked ``real``.
"""

from __future__ import annotations

import csv
import os
import random
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
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True, model_max_length=64)
    tok.save_pretrained(d)
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


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory, tiny_model_dir) -> Path:
    """A model package of the tiny BERT (fp32 ONNX, opset 17) assembled by hand per the package contract.

    Stand-in until ``compress.export`` / ``compress.package`` exist: optimum's ``main_export``, then
    model.onnx + tokenizer.json + config.json + README.md and ``runtime.package.write_manifest``.
    The weights are redrawn with std 0.5 (BERT's 0.02 gives every text nearly the same probability),
    so that a test mixing up texts or batches sees a difference. Session-scoped and shared: copy it
    before changing a byte.
    """
    import json
    import shutil

    import torch
    from optimum.exporters.onnx import main_export
    from transformers import BertForSequenceClassification

    from runtime.package import write_manifest

    model = BertForSequenceClassification.from_pretrained(tiny_model_dir)
    model.config.initializer_range = 0.5
    torch.manual_seed(0)
    model.apply(model._init_weights)
    wide = tmp_path_factory.mktemp("tiny-bert-wide")
    model.save_pretrained(wide)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(tiny_model_dir / name, wide / name)
    onnx_dir = tmp_path_factory.mktemp("tiny-onnx")
    main_export(str(wide), onnx_dir, task="text-classification", opset=17)
    pkg = tmp_path_factory.mktemp("tiny-package")
    shutil.copy(onnx_dir / "model.onnx", pkg / "model.onnx")
    shutil.copy(tiny_model_dir / "tokenizer.json", pkg / "tokenizer.json")
    config = {"labels": ["negative", "positive"], "max_length": 64,
              "input_names": ["input_ids", "attention_mask", "token_type_ids"], "output_name": "logits",
              "uses_token_type_ids": True, "pad_token_id": 0, "model_type": "bert", "variant": "fp32"}
    (pkg / "config.json").write_text(json.dumps(config, indent=2))
    (pkg / "README.md").write_text("# tiny-bert\n\nA random 2-layer BERT (hidden 32) for tests; it knows nothing.\n")
    write_manifest(pkg, opset=17, metrics={}, recipe=None)
    return pkg
