"""The teacher's model and how much of it trains (:mod:`edgedistill.compress.teacher` runs it): loaded with a head for
the data's labels (:func:`load_model`), frozen as its transfer strategy says (:func:`freeze`: ``full``, ``partial``,
``features``), and for ``features`` the inputs of its classification head computed once and cached
(:func:`cached_features`), so that only the head trains on them (:func:`head_module`, :class:`FeatureDataset`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from edgedistill.compress import progress, sources
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.fingerprints import checkpoint_hash
from edgedistill.runtime.fsutil import cache_dir

log = logging.getLogger("edgedistill.compress.teacher")


def load_model(name: str, label_names: list[str], multi_label: bool = False):
    """Tokenizer and sequence classifier with our labels (a head of another size is re-initialised); a
    multi-label one gives one sigmoid per label (``problem_type``)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = sources.resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(label_names), id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)}, ignore_mismatched_sizes=True,
            problem_type="multi_label_classification" if multi_label else "single_label_classification")
    except OSError as e:
        raise ConfigError("teacher.model", name, f"cannot be loaded as a built-in model, a folder or a Hugging Face id "
                          f"({str(e).splitlines()[0]})") from None
    return tokenizer, model


def layer_stack(model):
    """The encoder's list of transformer layers, found generically (the longest ModuleList in base_model)."""
    import torch.nn as nn

    stacks = [m for _, m in model.base_model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not stacks:
        raise ConfigError("teacher.strategy", "partial", f"no layer list found in {type(model.base_model).__name__}")
    return max(stacks, key=len)


def freeze(model, strategy: str, freeze_layers: int | None) -> int | None:
    """Set ``requires_grad`` for the strategy; returns the number of frozen layers (partial)."""
    base = model.base_model
    if strategy == "full":
        return None
    if strategy == "features":
        for p in base.parameters():
            p.requires_grad_(False)
        return None
    layers = layer_stack(model)
    n = len(layers) // 2 if freeze_layers is None else freeze_layers
    if n > len(layers):
        raise ConfigError("teacher.freeze_layers", freeze_layers, f"the model has only {len(layers)} layers")
    # trainable in the encoder: the top layers and a pooler; frozen: embeddings, bottom layers and anything
    # shared by all layers (MPNet's relative attention bias), so frozen layers compute what they did
    keep = {id(p) for layer in list(layers)[n:] for p in layer.parameters()}
    for name, module in base.named_children():
        if "pooler" in name:
            keep |= {id(p) for p in module.parameters()}
    for p in base.parameters():
        p.requires_grad_(id(p) in keep)
    return n


def count_parameters(model) -> tuple[int, int]:
    ps = list(model.parameters())
    return sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps)


def fingerprint_split(split) -> str:
    h = hashlib.sha256()
    for t, y in zip(split.texts, split.labels):
        h.update(t.encode())
        h.update(f"\0{y}\0".encode())
    return h.hexdigest()


def feature_cache_path(model_path: str, data, max_length: int, long_texts: str = "truncate") -> Path:
    view = {"long_texts": long_texts} if long_texts != "truncate" else {}
    key = hashlib.sha256(json.dumps({
        "model": checkpoint_hash(model_path), "max_length": max_length, "version": 1,
        "train": fingerprint_split(data.train), "validation": fingerprint_split(data.validation), **view,
    }).encode()).hexdigest()[:24]
    return cache_dir() / "features" / f"{key}.safetensors"


def head_inputs(model, tokenizer, texts: list[str], *, max_length: int, batch_size: int):
    """The exact input of ``model.classifier`` for each text (N, ...), float32, in input order.

    Heads that read a token sequence (MPNet, RoBERTa: they take position 0) keep only the first token,
    so the cache stays small; the head is checked to give the model's own logits on these inputs.
    """
    import numpy as np
    import torch

    from edgedistill.compress.evaluate import long_texts_of, model_inputs
    from edgedistill.compress.textviews import TextViews

    head = getattr(model, "classifier", None)
    if long_texts_of(model) == "chunks":
        raise ConfigError("data.long_texts", "chunks", "the features strategy caches one input a text; read long "
                          "texts as head+tail, or fine-tune (strategy full or partial)")
    if head is None:
        raise ConfigError("teacher.strategy", "features", f"{type(model).__name__} has no .classifier head")
    seen: list = []
    hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    out: np.ndarray | None = None
    model.eval()
    try:
        with torch.inference_mode(), progress.bar("encoding", len(texts)) as bar:
            for idx, batch in TextViews(tokenizer, texts, max_length, long_texts_of(model)).batches(batch_size):
                batch = batch.to(model.device)
                seen.clear()
                logits = model(**model_inputs(model, batch)).logits
                x = seen[0]
                if x.dim() == 3:
                    x = x[:, :1, :]
                if out is None:  # the first batch: the head must reproduce the model's logits from the cached inputs
                    diff = (head(x).float() - logits.float()).abs().max().item()
                    if diff > 1e-4:
                        raise ConfigError("teacher.strategy", "features",
                                          f"{model.config.model_type}: the head does not "
                                          f"read only the first token (max diff {diff:.2g}); use full or partial")
                x = x.float().cpu().numpy()
                if out is None:
                    out = np.zeros((len(texts),) + x.shape[1:], dtype=np.float32)
                out[idx] = x
                bar.advance(len(idx))
    finally:
        hook.remove()
    assert out is not None
    return out


def cached_features(model, tokenizer, data, model_path: str, max_length: int, batch_size: int, args) -> Path:
    """Compute (on the main process) or reuse the head inputs of train and validation; returns the file."""
    from safetensors.numpy import save_file

    from edgedistill.compress.evaluate import long_texts_of

    path = feature_cache_path(model_path, data, max_length, long_texts_of(model))
    with args.main_process_first(desc="feature cache"):
        if not path.is_file() and args.process_index == 0:
            log.info("computing frozen-encoder features for %d texts (once; cached in %s)",
                     len(data.train) + len(data.validation), path)
            feats = {s: head_inputs(model, tokenizer, data.split(s).texts, max_length=max_length,
                                    batch_size=batch_size) for s in ("train", "validation")}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            save_file(feats, str(tmp))
            os.replace(tmp, path)
        else:
            log.info("reusing cached features %s", path)
    return path


class FeatureDataset:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return {"features": torch.from_numpy(self.x[i]), "labels": torch.tensor(self.y[i])}


def head_module(head, multi_label: bool = False):
    """Wrap ``model.classifier`` as a Trainer model that takes cached features (shares its weights)."""
    import torch.nn as nn
    import torch.nn.functional as F

    class HeadOnly(nn.Module):
        def __init__(self, classifier: nn.Module):
            super().__init__()
            self.classifier = classifier

        def forward(self, features, labels=None):
            logits = self.classifier(features)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = F.binary_cross_entropy_with_logits(logits, labels.float()) if multi_label else \
                    F.cross_entropy(logits, labels)
            return out

    return HeadOnly(head)
