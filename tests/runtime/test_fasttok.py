"""The classifier's tokenizer front end (edgedistill.runtime.fasttok): normalizing ahead of the tokenizer gives the
very ids, type ids and attention masks of the tokenizer as shipped, for every kind of text, alone or batched."""

from __future__ import annotations

import random
import string

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from edgedistill.runtime import TextClassifier
from edgedistill.runtime.fasttok import Encoder

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# single characters and their continuations: every normalized character shows in the ids
CHARS = sorted(set(string.ascii_letters + string.digits + string.punctuation + "éèàüßñçøÉÅ中文字日本語한국😀ｆｉ"))
VOCAB = SPECIALS + CHARS + ["##" + c for c in CHARS] + ["film", "##s", "good", "bad"]
# what users' texts hold: every ASCII character (controls included), accents, CJK, emoji, full-width letters, added
# tokens written in and around words, runs of spaces and newlines
ALPHABET = ([chr(c) for c in range(128)] * 2 + list("éèàüßñçøÉÅ中文字日本語한국😀ｆｉ\u00a0\u200b\u2028\ufffd\u0301")
            + ["[MASK]", "[CLS]", "[mask]", " film ", " GOOD ", "\n\n", "  "] * 3)


def tokenizer_json(normalizer=None, *, added=(), **bert) -> str:
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizer if normalizer is not None else normalizers.BertNormalizer(**bert)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", VOCAB.index("[SEP]")), ("[CLS]", VOCAB.index("[CLS]")))
    tok.add_special_tokens(SPECIALS)
    if added:
        tok.add_tokens(list(added))
    return tok.to_str()


def configured(tok: Tokenizer) -> None:
    tok.enable_truncation(max_length=24)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")


def encoders(raw: str) -> tuple[Encoder, Tokenizer]:
    enc = Encoder(Tokenizer.from_str(raw), raw)
    enc.configure(configured)
    shipped = Tokenizer.from_str(raw)
    configured(shipped)
    return enc, shipped


def texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(ALPHABET, k=rng.randint(0, 40))) for _ in range(n)]


def rows(encodings) -> list[tuple]:
    return [(e.ids, e.type_ids, e.attention_mask) for e in encodings]


@pytest.mark.parametrize("bert", [{}, {"lowercase": False}, {"lowercase": False, "strip_accents": True},
                                  {"clean_text": False}, {"handle_chinese_chars": False, "strip_accents": False}],
                         ids=["uncased", "cased", "cased-no-accents", "no-clean-up", "no-cjk-spacing"])
def test_normalizing_ahead_gives_the_shipped_tokenizer_s_ids(bert):
    enc, shipped = encoders(tokenizer_json(**bert))
    assert enc.fast
    sample = texts(400, seed=len(bert))
    ascii_share = sum(t.isascii() for t in sample) / len(sample)
    assert 0.1 < ascii_share < 0.9  # both paths are exercised
    for start in range(0, len(sample), 7):  # batches padded to their longest
        batch = sample[start:start + 7]
        assert rows(enc.encode(batch)) == rows(shipped.encode_batch(batch)), batch
    for t in sample:  # alone
        assert rows(enc.encode([t])) == rows([shipped.encode(t)]), t


def test_a_text_holding_an_added_token_goes_to_the_tokenizer_as_shipped():
    """``[MASK]`` is matched on the raw text: normalized first it would read as ``[mask]``, three tokens."""
    enc, shipped = encoders(tokenizer_json(added=["Film Noir"]))
    for t in ["a [MASK] film", "[CLS]", "FILM NOIR at night", "film noir", "plain text"]:
        assert rows(enc.encode([t, "x"])) == rows(shipped.encode_batch([t, "x"])), t
    assert enc.encode(["a [MASK] film"])[0].ids.count(VOCAB.index("[MASK]")) == 1


@pytest.mark.parametrize("normalizer", [normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]),
                                        normalizers.Lowercase()], ids=["sequence", "lowercase"])
def test_another_normalizer_runs_as_shipped(normalizer):
    enc, shipped = encoders(tokenizer_json(normalizer))
    assert not enc.fast and enc.tokenizer.normalizer is not None
    sample = texts(50, seed=3)
    assert rows(enc.encode(sample)) == rows(shipped.encode_batch(sample))


def test_without_the_tokenizer_json_text_it_runs_as_shipped():
    raw = tokenizer_json()
    enc = Encoder(Tokenizer.from_str(raw))
    assert not enc.fast and enc.tokenizer.normalizer is not None


def test_the_classifier_normalizes_ahead_and_answers_as_before(tiny_package):
    """The tiny package's BERT tokenizer takes the fast path; its probabilities are those of the tokenizer as
    shipped, texts with added tokens and non-ASCII ones included."""
    clf = TextClassifier.load(tiny_package)
    assert clf._encoder.fast
    sample = ["The FILM was good", "ÉCLATANT, très bon", "a [MASK] plot", "", "\t\x00bad\x7f", "中文 film"] + \
        texts(40, seed=5)
    plain = TextClassifier.load(tiny_package)
    plain._encoder = Encoder(Tokenizer.from_str((tiny_package / "tokenizer.json").read_text()))
    plain._configure_tokenizer()
    assert not plain._encoder.fast
    assert (clf.predict_proba(sample) == plain.predict_proba(sample)).all()
    assert (clf.predict_proba(sample, batch_size=1) == plain.predict_proba(sample, batch_size=1)).all()


def test_one_text_gets_the_type_ids_its_template_gives(tiny_package, tmp_path):
    """One text is fed zeros as type ids only where the one-sequence template gives zeros (checked at load)."""
    import json
    import shutil

    from edgedistill.runtime import write_manifest

    pkg = shutil.copytree(tiny_package, tmp_path / "pkg")
    spec = json.loads((pkg / "tokenizer.json").read_text())
    spec["post_processor"] = json.loads(processors.TemplateProcessing(
        single="[CLS]:0 $A:1 [SEP]:1", special_tokens=[("[CLS]", spec["model"]["vocab"]["[CLS]"]),
                                                       ("[SEP]", spec["model"]["vocab"]["[SEP]"])]).__getstate__())
    (pkg / "tokenizer.json").write_text(json.dumps(spec))
    write_manifest(pkg, opset=json.loads((pkg / "manifest.json").read_text())["opset"])
    shipped, changed = TextClassifier.load(tiny_package), TextClassifier.load(pkg)
    assert shipped._single_type_ids_zero and not changed._single_type_ids_zero
    assert changed.tokenize(["a good film"])["token_type_ids"].tolist() == [[0, 1, 1, 1, 1]]
    sample = ["a good film", "bad", "the plot was boring"]
    alone = [changed.predict_proba([t], batch_size=1)[0] for t in sample]
    assert (abs(changed.predict_proba(sample) - alone) < 1e-6).all()
    assert (abs(changed.predict_proba(sample) - shipped.predict_proba(sample)) > 1e-4).any()  # the type ids count
