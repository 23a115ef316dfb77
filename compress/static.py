"""The static student: a token-embedding table, a masked mean and a small head. No attention, no layers.

A text's vector is the mean of its tokens' rows (padding masked out); a one-hidden-layer head maps it to the
labels. The ONNX graph is a Gather, a masked mean and two MatMuls, so it runs at tens of thousands of texts a
second on a CPU core, where a transformer runs hundreds.

The table starts from the teacher, one of two ways (``student.static_init``), then PCA to ``static_dim``
dimensions and SIF weights ``a / (a + p(token))`` from the token frequencies of the training and transfer texts
(model2vec uses Zipf's law over the vocabulary order instead):

- ``embeddings`` (the default): the fine-tuned teacher's input embedding table, no forward pass;
- ``teacher``: model2vec's way (MinishLab/model2vec, ``distill/inference.py``), run on the *fine-tuned*
  encoder: every vocabulary token through it on its own, between the special tokens (``[SEP] token [CLS]``,
  the order model2vec found better), the mean of the outputs as the token's vector (minutes; cached).

Distillation then trains every weight on the teacher's soft targets. On movie-snippets the embeddings start
trained longer before validation stopped improving and led by about 3 points of validation macro-F1.

Importing this module registers the model with transformers' Auto classes (``model_type`` below), so
checkpoints load through :func:`edgedistill.compress.checkpoints.load_classifier` like any other.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from edgedistill.runtime.package import STATIC_MODEL_TYPE

log = logging.getLogger(__name__)

MODEL_TYPE = STATIC_MODEL_TYPE  # the runtime reads packages by it
SIF_A = 1e-3
"""The SIF coefficient (Arora, Liang and Ma, ICLR 2017): a token as frequent as ``a`` keeps half its weight."""


class StaticConfig(PreTrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, vocab_size: int = 30522, hidden_size: int = 256, head_hidden_size: int = 256,
                 classifier_dropout: float = 0.1, pad_token_id: int = 0, bigram_buckets: int = 0,
                 bigram_size: int = 64, token_dropout: float = 0.0, **kwargs):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.head_hidden_size = head_hidden_size
        self.classifier_dropout = classifier_dropout
        self.bigram_buckets = bigram_buckets
        """Hashed token-bigram rows (fastText's n-gram trick: "not good" is not the mean of "not" and "good");
        0 keeps tokens alone."""
        self.bigram_size = bigram_size
        self.token_dropout = token_dropout
        """Training only: the share of tokens left out of each text's mean (a bag model's dropout)."""
        self.num_hidden_layers = 0  # read by reports: no transformer layers at all


class StaticForSequenceClassification(PreTrainedModel):
    config_class = StaticConfig
    base_model_prefix = "static"
    main_input_name = "input_ids"

    def __init__(self, config: StaticConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        width = config.hidden_size
        if config.bigram_buckets:
            self.bigrams = nn.Embedding(config.bigram_buckets, config.bigram_size)
            width += config.bigram_size
        self.dropout = nn.Dropout(config.classifier_dropout)
        if config.head_hidden_size:
            self.head = nn.Sequential(nn.Linear(width, config.head_hidden_size), nn.GELU(),
                                      nn.Linear(config.head_hidden_size, config.num_labels))
        else:
            self.head = nn.Linear(width, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mean of the tokens' rows, padding left out (and beside it the mean of the bigrams' rows)."""
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        if self.training and self.config.token_dropout > 0:
            keep = torch.rand(attention_mask.shape, device=attention_mask.device) >= self.config.token_dropout
            attention_mask = attention_mask * keep.to(attention_mask.dtype)
        pooled = _masked_mean(self.embeddings(input_ids), attention_mask)
        if not self.config.bigram_buckets:
            return pooled
        # each pair of neighbouring tokens hashed into a bucket: integer ops the ONNX graph keeps (Mul, Add, Mod)
        pairs = (input_ids[:, :-1] * BIGRAM_PRIME + input_ids[:, 1:]) % self.config.bigram_buckets
        both = attention_mask[:, :-1] * attention_mask[:, 1:]
        return torch.cat([pooled, _masked_mean(self.bigrams(pairs), both)], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **_: object) -> SequenceClassifierOutput:
        pooled = self.pool(input_ids, attention_mask)
        logits = self.head(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=(pooled,) if output_hidden_states else None)


BIGRAM_PRIME = 1_000_003  # id * prime + next id stays far inside int64 for any vocabulary


def _masked_mean(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(rows.dtype)
    return (rows * m).sum(1) / m.sum(1).clamp(min=1.0)


AutoConfig.register(MODEL_TYPE, StaticConfig, exist_ok=True)
AutoModelForSequenceClassification.register(StaticConfig, StaticForSequenceClassification, exist_ok=True)


# ------------------------------------------------------------------------------- the table's start
def teacher_token_vectors(teacher_dir: Path | str, tokenizer, *, batch_size: int = 512) -> np.ndarray:
    """One vector per vocabulary id: the fine-tuned teacher's encoder outputs for ``[SEP] id [CLS]``, averaged
    over the three positions (model2vec's recipe, run on the fine-tuned encoder). Minutes for MPNet-base's
    30,527 tokens on 2 cores, so cached under the checkpoint's hash (every ladder run reuses them)."""
    from edgedistill.compress.fingerprints import checkpoint_hash
    from edgedistill.runtime.fsutil import cache_dir

    key = hashlib.sha256(checkpoint_hash(teacher_dir).encode()).hexdigest()[:24]
    path = cache_dir() / "static-init" / f"{key}-{len(tokenizer)}.npy"
    if path.is_file():
        log.info("teacher token vectors from the cache: %s", path)
        return np.load(path)
    vectors = _token_vectors(teacher_dir, tokenizer, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def _token_vectors(teacher_dir: Path | str, tokenizer, batch_size: int) -> np.ndarray:
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(teacher_dir)).eval()
    n = len(tokenizer)
    ids = torch.arange(n)
    first = torch.full((n,), tokenizer.sep_token_id if tokenizer.sep_token_id is not None else 0)
    last = torch.full((n,), tokenizer.cls_token_id if tokenizer.cls_token_id is not None else 0)
    batch_ids = torch.stack([first, ids, last], dim=1)
    out = np.zeros((n, encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            chunk = batch_ids[i:i + batch_size]
            hidden = encoder(input_ids=chunk, attention_mask=torch.ones_like(chunk)).last_hidden_state
            out[i:i + batch_size] = hidden.float().mean(1).numpy()
    del encoder
    return out


def pca(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` centred and projected onto their ``dim`` leading principal directions (all of them if fewer),
    scaled to unit variance per dimension on average."""
    x = vectors.astype(np.float64) - vectors.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    y = x @ vt[:dim].T
    return (y / (y.std() or 1.0)).astype(np.float32)


def sif_weights(tokenizer, corpus: Sequence[str], vocab_size: int, a: float = SIF_A) -> np.ndarray:
    """``a / (a + p(token))`` with ``p`` the token's share of the corpus's tokens (1 for tokens it never uses):
    the special tokens every text carries and the commonest words weigh least."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for ids in tokenizer(list(corpus), add_special_tokens=True, truncation=False)["input_ids"]:
        np.add.at(counts, ids, 1.0)
    p = counts / max(counts.sum(), 1.0)
    return (a / (a + p)).astype(np.float32)


def with_bigrams(model: StaticForSequenceClassification, buckets: int) -> StaticForSequenceClassification:
    """An untrained static model with ``buckets`` hashed-bigram rows added (and a head to match), its token table
    kept. Added after vocabulary trimming, which renumbers the tokens the buckets are hashed from."""
    if not buckets:
        return model
    config = StaticConfig(**{**model.config.to_dict(), "bigram_buckets": buckets})
    out = StaticForSequenceClassification(config)
    with torch.no_grad():
        out.embeddings.weight.copy_(model.embeddings.weight)
    for key in ("student", "vocab_trim"):
        if hasattr(model.config, key):
            setattr(out.config, key, getattr(model.config, key))
    return out


def build_static(teacher_dir: Path | str, num_labels: int, id2label: dict[int, str], corpus: Sequence[str], *,
                 dim: int = 256, init: str = "embeddings", token_dropout: float = 0.0):
    """The static student ``(model, tokenizer)``: the teacher's tokenizer, a table started from the teacher
    (``init``: ``teacher`` token outputs or its input ``embeddings``), PCA to ``dim``, SIF-weighted."""
    from transformers import AutoTokenizer

    # no token types: the graph takes none (saved with the tokenizer, so the runtime feeds none either)
    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir), model_input_names=["input_ids", "attention_mask"])
    if init == "teacher":
        vectors = teacher_token_vectors(teacher_dir, tokenizer)
    else:
        teacher = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir))
        vectors = teacher.get_input_embeddings().weight.detach().float().numpy()[:len(tokenizer)]
        del teacher
    table = pca(vectors, dim) * sif_weights(tokenizer, corpus, len(vectors))[:, None]
    config = StaticConfig(vocab_size=len(table), hidden_size=table.shape[1], token_dropout=token_dropout,
                          head_hidden_size=table.shape[1], pad_token_id=tokenizer.pad_token_id,
                          num_labels=num_labels, id2label=id2label,
                          label2id={v: k for k, v in id2label.items()})
    model = StaticForSequenceClassification(config)
    with torch.no_grad():
        model.embeddings.weight.copy_(torch.from_numpy(table))
        if tokenizer.pad_token_id is not None:
            model.embeddings.weight[tokenizer.pad_token_id].zero_()
    log.info("static student: %d tokens x %d dimensions from the teacher's %s (%.1fM parameters)", len(table),
             table.shape[1], "token outputs" if init == "teacher" else "input embeddings",
             sum(p.numel() for p in model.parameters()) / 1e6)
    return model, tokenizer
