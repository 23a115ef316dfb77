"""Student builders: depth, width and vocabulary of each, a forward pass, and verified vocabulary trimming."""

from __future__ import annotations

import pytest
import torch

from edgedistill.compress.errors import ConfigError
from edgedistill.compress.student import StudentConfig, build_student, layer_indices, trim_vocabulary
from tests.helpers import build_tiny_bert, make_sentences

ID2LABEL = {0: "negative", 1: "positive"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def deep_teacher(tmp_path_factory, tiny_tokenizer_dir):
    """A random 4-layer BERT classifier (hidden 32): the teacher the layer builders cut down."""
    return build_tiny_bert(tmp_path_factory.mktemp("deep"), tiny_tokenizer_dir, layers=4, seed=1)


def _forward(model, tok, texts=("the film was great", "awful and boring plot")):
    batch = tok(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_layer_indices_keep_first_and_last():
    assert layer_indices(6, 12) == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert layer_indices(3, 6) == [0, 2, 5]
    assert layer_indices(1, 4) == [3]
    assert layer_indices([1, 3], 4) == [1, 3]
    with pytest.raises(ConfigError, match="only 4 layers"):
        layer_indices(5, 4)
    with pytest.raises(ConfigError, match="indices 0..3"):
        layer_indices([0, 4], 4)


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="student.builder"):
        StudentConfig(builder="prune")
    with pytest.raises(ConfigError, match="student.layers"):
        StudentConfig(builder="drop-layers")
    with pytest.raises(ConfigError, match="student.layers"):
        StudentConfig(builder="teacher-layers", layers=0)
    with pytest.raises(ConfigError, match="distinct"):
        StudentConfig(builder="drop-layers", layers=[1, 1])
    assert StudentConfig(builder="drop-layers", layers=[3, 0]).layers == [0, 3]


def test_pretrained_builder_gets_a_new_head(tiny_model_dir, tiny_tokenizer_dir):
    labels = {0: "a", 1: "b", 2: "c"}
    model, tok = build_student(StudentConfig(model=str(tiny_model_dir)), None, 3, labels)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert model.config.vocab_size == len(tok)
    assert model.classifier.out_features == 3 and model.config.id2label == labels
    assert _forward(model, tok).shape == (2, 3)


def test_teacher_layers_copies_every_kth_layer(deep_teacher):
    from transformers import AutoModelForSequenceClassification

    teacher = AutoModelForSequenceClassification.from_pretrained(deep_teacher)
    model, tok = build_student(StudentConfig(builder="teacher-layers", layers=2), deep_teacher, 2, ID2LABEL)
    assert model.config.num_hidden_layers == 2 and len(model.bert.encoder.layer) == 2
    assert model.config.hidden_size == 32 and model.config.vocab_size == teacher.config.vocab_size
    assert model.config.student["layers_kept"] == [0, 3]
    t_sd, s_sd = teacher.state_dict(), model.state_dict()
    for key in ("bert.embeddings.word_embeddings.weight", "classifier.weight"):
        assert torch.equal(t_sd[key], s_sd[key])
    q = "attention.self.query.weight"
    assert torch.equal(s_sd[f"bert.encoder.layer.1.{q}"], t_sd[f"bert.encoder.layer.3.{q}"])
    assert not torch.equal(s_sd[f"bert.encoder.layer.1.{q}"], t_sd[f"bert.encoder.layer.1.{q}"])
    assert _forward(model, tok).shape == (2, 2)
    # the default depth is half the teacher's
    half, _ = build_student(StudentConfig(builder="teacher-layers"), deep_teacher, 2, ID2LABEL)
    assert half.config.num_hidden_layers == 2


def test_teacher_layers_saves_and_reloads(deep_teacher, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model, tok = build_student(StudentConfig(builder="teacher-layers", layers=[1, 2, 3]), deep_teacher, 2,
                               ID2LABEL)
    model.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert again.config.num_hidden_layers == 3
    assert torch.allclose(_forward(model, tok), _forward(again, tok))


def test_drop_layers_keeps_the_chosen_subset(deep_teacher):
    model, tok = build_student(StudentConfig(builder="drop-layers", model=str(deep_teacher), layers=[1]),
                               None, 2, ID2LABEL)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 32
    assert model.config.student == {"builder": "drop-layers", "source": str(deep_teacher),
                                    "layers_kept": [1], "of_layers": 4}
    assert _forward(model, tok).shape == (2, 2)
    with pytest.raises(ConfigError, match="only 4 layers"):
        build_student(StudentConfig(builder="drop-layers", model=str(deep_teacher), layers=6), None, 2, ID2LABEL)


def test_trim_vocab_shrinks_embedding_and_tokenizer_with_identical_logits(tiny_model_dir, tmp_path):
    corpus = [t for t, _ in make_sentences(40)]
    full, full_tok = build_student(StudentConfig(model=str(tiny_model_dir)), None, 2, ID2LABEL)
    torch.manual_seed(0)
    trimmed, tok, report = trim_vocabulary(full, full_tok, corpus)
    assert report.vocab_before == len(full_tok) and report.vocab_after == len(tok) < len(full_tok)
    assert trimmed.config.vocab_size == len(tok) == trimmed.get_input_embeddings().weight.shape[0]
    assert report.params_saved == (report.vocab_before - report.vocab_after) * 32
    kept = tok.get_vocab()
    assert {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "film", "awful"} <= set(kept)
    used = set(full_tok.convert_ids_to_tokens(sum(full_tok(corpus)["input_ids"], [])))
    single = {t for t in full_tok.get_vocab() if len(t.removeprefix("##")) == 1}
    assert set(kept) - {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"} <= used | single
    assert "messy" not in used and "messy" not in kept  # a word of the vocabulary the corpus never uses
    # an unseen word falls back to character pieces, not [UNK]
    assert tok.convert_ids_to_tokens(tok("zq")["input_ids"]) == ["[CLS]", "z", "##q", "[SEP]"]
    assert torch.allclose(_forward(full, full_tok, corpus[:8]), _forward(trimmed, tok, corpus[:8]), atol=1e-5)
    # the trimmed tokenizer round-trips through save_pretrained and tokenizer.json alone
    trimmed.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert raw.encode(corpus[0]).ids == tok(corpus[0])["input_ids"]


def test_build_student_trims_when_asked(tiny_model_dir):
    corpus = [t for t, _ in make_sentences(20)]
    model, tok = build_student(StudentConfig(model=str(tiny_model_dir), trim_vocab=True), None, 2, ID2LABEL,
                               corpus=corpus)
    assert model.config.vocab_trim["vocab_after"] == len(tok) < model.config.vocab_trim["vocab_before"]
    assert _forward(model, tok).shape == (2, 2)
    with pytest.raises(ConfigError, match="trim_vocab"):
        build_student(StudentConfig(model=str(tiny_model_dir), trim_vocab=True), None, 2, ID2LABEL)


@pytest.mark.real
def test_minilm_drop_layers_and_trim(real_cache):
    corpus = [t for t, _ in make_sentences(30)]
    model, tok = build_student(StudentConfig(builder="drop-layers", layers=3, trim_vocab=True), None, 2,
                               ID2LABEL, corpus=corpus)
    assert model.config.num_hidden_layers == 3 and model.config.hidden_size == 384
    assert model.config.vocab_trim["vocab_before"] == 30522 and len(tok) == model.config.vocab_size < 500
    assert _forward(model, tok).shape == (2, 2)
