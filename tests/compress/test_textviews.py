"""Long texts in training and evaluation: each mode's windows (``compress/textviews.py``, the runtime's views), the
pooling of chunks, a text under the limit read alike in every mode, and a tiny build whose package says its mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgedistill.compress.data import DataConfig, Split
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.textviews import TextViews, pooled_logits
from edgedistill.runtime.views import head_tail

LONG = " ".join(["the film was good and the plot was dull"] * 12) + " ending"  # about 110 tokens
SHORT = "a good film"


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def test_truncate_is_the_tokenizers_own_truncation(tok):
    views = TextViews(tok, [LONG, SHORT], 16)
    assert views.ids == tok([LONG, SHORT], truncation=True, max_length=16)["input_ids"]
    assert views.owner.tolist() == [0, 1]


def test_head_tail_keeps_the_start_the_end_and_the_special_tokens(tok):
    whole = tok(LONG)["input_ids"]
    views = TextViews(tok, [LONG], 34, "head+tail")
    assert views.ids == [head_tail(whole, 34)] and len(views.ids[0]) == 34
    ids = views.ids[0]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ids[1:9] == whole[1:9] and ids[-25:] == whole[-25:]  # 8 of the 32 from the head, 24 from the tail


def test_chunks_cover_the_text_with_overlap_and_a_cap(tok):
    whole = tok(LONG)["input_ids"]
    body = whole[1:-1]
    views = TextViews(tok, [LONG, SHORT], 34, "chunks")
    windows = [w for w, o in zip(views.ids, views.owner) if o == 0]
    assert all(w[0] == tok.cls_token_id and w[-1] == tok.sep_token_id and len(w) <= 34 for w in windows)
    inner = [w[1:-1] for w in windows]
    assert inner[0] == body[:32] and len(windows) <= 8
    capped = TextViews(tok, [LONG], 34, "chunks", stride=4, max_chunks=2)
    assert capped.n_windows == 2 and capped.ids[1][1:-1] == body[28:60]  # 32 tokens, 4 shared with the first
    full = TextViews(tok, [LONG], 34, "chunks", stride=4, max_chunks=100)
    covered = set()
    for k, w in enumerate(full.ids):
        covered.update(range(28 * k, 28 * k + len(w) - 2))
    assert covered == set(range(len(body)))  # every token is in a window


def test_a_text_under_the_limit_reads_the_same_in_every_mode(tok):
    ids = {mode: TextViews(tok, [SHORT], 34, mode).ids for mode in ("truncate", "head+tail", "chunks")}
    assert ids["truncate"] == ids["head+tail"] == ids["chunks"] == [tok(SHORT)["input_ids"]]


def test_pooling_is_the_mean_of_probabilities_or_the_max_per_label(tok):
    views = TextViews(tok, [LONG, SHORT], 34, "chunks", stride=4)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(views.n_windows, 3)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mine = views.owner == 0
    np.testing.assert_allclose(views.pool(p)[0], p[mine].mean(0), rtol=1e-6)
    pooled = pooled_logits(views, logits, multi_label=False)
    back = np.exp(pooled) / np.exp(pooled).sum(1, keepdims=True)
    np.testing.assert_allclose(back[0], p[mine].mean(0), rtol=1e-5)
    np.testing.assert_allclose(back[1], p[~mine][0], rtol=1e-5)
    sig = 1 / (1 + np.exp(-logits))
    multi = 1 / (1 + np.exp(-pooled_logits(views, logits, multi_label=True)))
    np.testing.assert_allclose(multi[0], sig[mine].max(0), rtol=1e-5)


def test_chunked_training_makes_one_example_a_window_with_its_texts_label(tok):
    from edgedistill.compress.data import tokenize

    ds = tokenize(Split([LONG, SHORT], [1, 0]), tok, 34, long_texts="chunks")
    views = TextViews(tok, [LONG, SHORT], 34, "chunks")
    assert len(ds) == views.n_windows > 2 and ds["labels"] == [1] * (views.n_windows - 1) + [0]
    assert ds["input_ids"] == views.ids


def test_torch_evaluation_reads_long_texts_as_the_model_learned_to(tok, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    from edgedistill.compress.evaluate import predict_proba_torch

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    plain = predict_proba_torch(model, tok, [LONG, SHORT], max_length=34)  # truncate: the checkpoint says nothing
    model.config.long_texts = "chunks"
    chunked = predict_proba_torch(model, tok, [LONG, SHORT], max_length=34)
    import torch

    views = TextViews(tok, [LONG], 34, "chunks")
    with torch.inference_mode():
        by_window = np.stack([torch.softmax(model(input_ids=torch.tensor([w])).logits, -1)[0].numpy()
                              for w in views.ids])
    np.testing.assert_allclose(chunked[0], by_window.mean(0), atol=1e-5)
    np.testing.assert_allclose(chunked[1], plain[1], atol=1e-6)  # the short text: the same in every mode
    assert views.n_windows > 1


def test_long_texts_is_checked_and_chunks_refuse_the_features_strategy():
    with pytest.raises(ConfigError, match="long_texts"):
        DataConfig(long_texts="middle")
    assert DataConfig(long_texts="head+tail").long_texts == "head+tail"


@pytest.mark.slow
def test_a_tiny_head_tail_build_ships_a_package_that_reads_long_texts_so(tmp_path, tiny_csv, tiny_model_dir):
    from typer.testing import CliRunner

    from edgedistill.compress.cli import app
    from tests.helpers import tiny_recipe

    recipe = tiny_recipe(tmp_path, tiny_csv, tiny_model_dir)
    recipe.write_text(recipe.read_text().replace("[data]\n", '[data]\nlong_texts = "head+tail"\n'))
    r = CliRunner().invoke(app, ["build", str(recipe)])
    assert r.exit_code == 0, r.output
    build = tmp_path / "tiny"
    for stage in ("teacher", "student"):
        assert json.loads((build / stage / "config.json").read_text())["long_texts"] == "head+tail"
    assert json.loads((build / "onnx" / "export.json").read_text())["long_texts"] == "head+tail"
    assert json.loads((build / "package" / "config.json").read_text())["long_texts"] == "head+tail"
    card = (build / "package" / "README.md").read_text()  # the model card says how a long text is read
    assert "first quarter and its last three quarters" in card and "loses its middle" in card
    assert "are truncated" not in card
