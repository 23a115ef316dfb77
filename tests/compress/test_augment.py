"""Augmented transfer texts: embedding neighbours of the teacher, the five families of perturbed copies, never a
held-out text."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import pytest

from edgedistill.compress import augment
from edgedistill.compress.augment import METHODS, augment_texts, embedding_neighbours, teacher_mask_token, words_of
from edgedistill.compress.data import DataConfig, Split, load_data
from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.distill.transfer import build_transfer_set
from edgedistill.compress.errors import ConfigError


def test_neighbours_come_from_the_teacher_vocabulary_and_skip_stop_words(tiny_model_dir):
    nb = embedding_neighbours(tiny_model_dir, {"good", "boring", "the", "zzzz"}, k=3)
    assert set(nb) == {"good", "boring"}  # "the" is a stop word, "zzzz" no whole token
    vocab = set((tiny_model_dir / "vocab.txt").read_text().split())
    for word, options in nb.items():
        assert len(options) == 3 and word not in options and set(options) <= vocab
        assert not {"the", "and", "but", "with"} & set(options)


def test_copies_are_new_deterministic_and_never_held_out():
    texts = ["the film was good and the plot was fun to watch", "a dull and boring movie with a cold ending",
             "great cast"]
    neighbours = {"good": ["great"], "dull": ["flat"], "boring": ["tedious"], "film": ["movie"], "fun": ["warm"],
                  "great": ["superb"], "cast": ["acting"]}
    held_out = ["the movie was good and the plot was fun to watch"]
    a = augment_texts(texts, 3, neighbours=neighbours, p=0.5, exclude=held_out, seed=1)
    assert a == augment_texts(texts, 3, neighbours=neighbours, p=0.5, exclude=held_out, seed=1)
    assert a != augment_texts(texts, 3, neighbours=neighbours, p=0.5, exclude=held_out, seed=2)
    assert 0 < len(a) <= 9 and len(set(a)) == len(a)
    assert not set(a) & (set(texts) | set(held_out))
    only_delete = augment_texts(texts[:2], 2, neighbours=neighbours, methods=["delete"], seed=0)
    for new in only_delete:  # a span is cut, nothing else changes
        assert any(set(new.split()) <= set(t.split()) and len(new.split()) < len(t.split()) for t in texts)
    with pytest.raises(ConfigError, match="augment_methods"):
        augment_texts(texts, 1, neighbours=neighbours, methods=["shuffle"])


def test_augmented_texts_join_the_transfer_set_unlabelled(tiny_csv, tiny_model_dir):
    data = load_data(DataConfig(source=str(tiny_csv)))
    cfg = DistillConfig(teacher_dir=str(tiny_model_dir), data=DataConfig(source=str(tiny_csv)), augment=2)
    ts = build_transfer_set(cfg, data)
    assert ts.n_labelled == len(data.train) and ts.n_augmented == ts.n_unlabelled > len(data.train)
    assert ts.labels[ts.n_labelled:] == [-100] * ts.n_augmented
    assert not set(ts.texts) & (set(data.validation.texts) | set(data.test.texts))
    augmented = ts.texts[ts.n_labelled:]
    # words swapped in place (as many words as a training text, yet a new text) and spans cut (fewer)
    assert any(len(t.split()) == 7 for t in augmented) and any(len(t.split()) < 7 for t in augmented)
    neighbours = embedding_neighbours(tiny_model_dir, words_of(data.train.texts))
    assert words_of(augmented) <= words_of(data.train.texts) | {w for ws in neighbours.values() for w in ws}


@pytest.mark.parametrize("field, value", [("augment", -1), ("augment", 1.5), ("augment_p", 0.0),
                                          ("augment_mask_p", 0.0), ("augment_mask_p", 1.5),
                                          ("augment_methods", ["shuffle"]), ("augment_methods", ["mask", "swap"]),
                                          ("augment_methods", [])])
def test_bad_augmentation_settings_name_the_field(field, value, tiny_model_dir):
    with pytest.raises(ConfigError, match=f"distill.{field}"):
        DistillConfig(teacher_dir=str(tiny_model_dir), **{field: value})


def test_every_family_is_a_valid_setting(tiny_model_dir):
    cfg = DistillConfig(teacher_dir=str(tiny_model_dir), augment_methods=list(METHODS))
    assert cfg.augment_methods == ["replace", "delete", "mask", "ngram", "mix"] and cfg.augment_mask_p == 0.1


# ------------------------------------------------------------------------------ the two original families, pinned

PIN_TEXTS = ["the film was good and the plot was fun to watch", "a dull and boring movie with a cold ending",
             "Great cast, really moving story", "fine"]
PIN_NEIGHBOURS = {"good": ["great", "fine"], "dull": ["flat"], "boring": ["tedious", "dull"], "film": ["movie"],
                  "fun": ["warm"], "great": ["superb"], "cast": ["acting"], "moving": ["warm", "lovely"],
                  "story": ["plot"], "fine": ["good"]}
# made by the two-family module (before mask, ngram and mix) with p=0.4, 3 copies, seed 0: the committed ablation
# results were augmented this way, so these copies must not move
PINNED = {
    ("replace", "delete"): ["the film was good and the plot was watch", "the film was good and was fun to watch",
                            "the film and the plot was fun to watch", "a dull movie with a cold ending",
                            "a flat and boring movie with a cold ending", "a dull and dull movie with a cold",
                            "Great cast, really warm plot", "Great really moving story", "good"],
    ("replace",): ["the movie was good and the plot was fun to watch",
                   "the movie was great and the plot was fun to watch", "a flat and boring movie with a cold ending",
                   "a flat and tedious movie with a cold ending", "Great acting, really warm story",
                   "Great cast, really warm plot", "good"],
    ("delete",): ["the film was good and the fun to watch", "the film was good the plot was fun to watch",
                  "a dull and boring movie with a", "a dull and with a cold ending",
                  "a dull and boring with a cold ending", "cast, really moving story", "Great cast, really moving",
                  "Great cast, moving story"],
}


@pytest.mark.parametrize("methods", list(PINNED))
def test_the_original_families_make_the_same_copies_as_before(methods):
    got = augment_texts(PIN_TEXTS, 3, neighbours=PIN_NEIGHBOURS, p=0.4, methods=list(methods),
                        exclude=["a dull and boring movie with a cold"], seed=0)
    assert got == PINNED[methods]
    # the default is still the two original families
    assert augment_texts(PIN_TEXTS, 3, neighbours=PIN_NEIGHBOURS, p=0.4, seed=0) == PINNED[("replace", "delete")]


# ------------------------------------------------------------------------------ mask, ngram, mix

def _texts(tiny_csv) -> list[str]:
    return list(load_data(DataConfig(source=str(tiny_csv))).train.texts)[:40]


def _tokenizer_copy(src, dst, **settings):
    """The tiny teacher's tokenizer.json with a tokenizer_config.json of our own (no special_tokens_map.json)."""
    dst.mkdir()
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    (dst / "tokenizer_config.json").write_text(json.dumps(settings))
    return dst


def test_the_mask_token_comes_from_the_teacher_tokenizer(tiny_model_dir, tmp_path):
    assert teacher_mask_token(tiny_model_dir) == "[MASK]"
    # MPNet's files write the token as a dict
    as_dict = _tokenizer_copy(tiny_model_dir, tmp_path / "dict", mask_token={"content": "[MASK]", "lstrip": True})
    assert teacher_mask_token(as_dict) == "[MASK]"
    # no mask token: the unknown token; a token the tokenizer does not hold as one special id does not count
    assert teacher_mask_token(_tokenizer_copy(tiny_model_dir, tmp_path / "unk", unk_token="[UNK]")) == "[UNK]"
    assert teacher_mask_token(_tokenizer_copy(tiny_model_dir, tmp_path / "odd", mask_token="<mask>",
                                              unk_token="<unk>")) is None
    assert teacher_mask_token(_tokenizer_copy(tiny_model_dir, tmp_path / "none")) is None


def test_mask_copies_hide_words_behind_one_special_id(tiny_csv, tiny_model_dir):
    from transformers import AutoTokenizer

    texts = _texts(tiny_csv)
    token = teacher_mask_token(tiny_model_dir)
    copies = augment_texts(texts, 2, methods=["mask"], mask_token=token, mask_p=0.2, seed=0)
    assert len(copies) > len(texts)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    mask_id = tok.convert_tokens_to_ids(token)
    assert mask_id in tok.all_special_ids
    for new in copies:
        hidden = new.split().count(token)
        assert hidden >= 1 and tok(new)["input_ids"].count(mask_id) == hidden
        # the other words are those of one training text, in place
        assert any(len(t.split()) == len(new.split())
                   and all(a == b for a, b in zip(t.split(), new.split()) if b != token) for t in texts)


def test_a_teacher_without_a_mask_token_skips_the_family_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="edgedistill.compress.augment"):
        with pytest.raises(ConfigError, match="distill.augment_methods.*no family left"):  # not zero copies, silently
            augment_texts(PIN_TEXTS, 2, methods=["mask"], mask_token=None)
        only_ngram = augment_texts(PIN_TEXTS, 2, methods=["mask", "ngram"], mask_token=None, seed=0)
    assert "mask family is skipped" in caplog.text
    assert only_ngram == augment_texts(PIN_TEXTS, 2, methods=["ngram"], seed=0)


def _is_window(new: list[str], words: list[str]) -> bool:
    return any(words[i:i + len(new)] == new for i in range(len(words) - len(new) + 1))


def test_ngram_copies_are_windows_of_one_to_five_words(tiny_csv):
    texts = _texts(tiny_csv)
    copies = augment_texts(texts, 4, methods=["ngram"], seed=0)
    assert copies and {len(c.split()) for c in copies} == {1, 2, 3, 4, 5}
    for new in copies:
        assert any(_is_window(new.split(), t.split()) and len(new.split()) < len(t.split()) for t in texts)


def test_mix_copies_start_with_one_training_text_and_end_with_another(tiny_csv):
    texts = _texts(tiny_csv)
    copies = augment_texts(texts, 2, methods=["mix"], seed=0)
    assert len(copies) > len(texts)

    def joins(new: list[str], head: list[str], tail: list[str]) -> bool:
        return any(new[:a] == head[:a] and new[a:] == tail[len(tail) - (len(new) - a):]
                   for a in range(1, min(len(head), len(new) - 1) + 1))

    for new in copies:
        assert any(joins(new.split(), h.split(), t.split()) for h in texts for t in texts if t != h)


def test_each_text_s_copies_take_the_families_in_turn(tiny_csv):
    texts = _texts(tiny_csv)
    copies = augment_texts(texts, 2, methods=["mask", "ngram"], mask_token="[MASK]", seed=0)
    masked = [c for c in copies if "[MASK]" in c.split()]
    # one masked copy of each text (all differ: each text ends with its own number), the rest windows
    assert len(masked) == len(texts)
    assert all(any(_is_window(c.split(), t.split()) for t in texts) for c in copies if c not in masked)


def test_new_families_are_seeded_new_and_never_held_out(tiny_csv):
    texts = _texts(tiny_csv)
    neighbours = {"good": ["great"], "boring": ["tedious"], "film": ["movie"]}
    kw = dict(neighbours=neighbours, methods=list(METHODS), mask_token="[MASK]", mask_p=0.2)
    a = augment_texts(texts, 4, seed=1, **kw)
    assert a == augment_texts(texts, 4, seed=1, **kw)
    assert a != augment_texts(texts, 4, seed=2, **kw)
    assert len(set(a)) == len(a) and not set(a) & set(texts)
    held_out = a[::5]  # copies that would come out again are dropped, nothing else changes
    b = augment_texts(texts, 4, seed=1, exclude=held_out, **kw)
    assert b == [t for t in a if t not in held_out] and not set(b) & set(held_out)


def test_new_families_never_let_a_held_out_text_into_the_transfer_set(tiny_csv, tiny_model_dir, monkeypatch):
    def no_embeddings(*args, **kwargs):
        raise AssertionError("the embedding table is read only for replace")

    monkeypatch.setattr(augment, "embedding_neighbours", no_embeddings)
    data = load_data(DataConfig(source=str(tiny_csv)))
    cfg = DistillConfig(teacher_dir=str(tiny_model_dir), data=DataConfig(source=str(tiny_csv)), augment=3,
                        augment_methods=["mask", "ngram", "mix"])
    ts = build_transfer_set(cfg, data)
    augmented = ts.texts[ts.n_labelled:]
    assert ts.n_augmented == len(augmented) > len(data.train) and any("[MASK]" in t for t in augmented)
    # held-out texts equal to copies the set would hold: they stay out, and the rest is unchanged
    held = augmented[::7]
    data = dataclasses.replace(data, validation=Split(held, [0] * len(held)))
    again = build_transfer_set(cfg, data)
    assert not set(again.texts) & set(held)
    assert again.texts[again.n_labelled:] == [t for t in augmented if t not in set(held)]
