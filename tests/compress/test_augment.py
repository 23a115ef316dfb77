"""Augmented transfer texts: embedding neighbours of the teacher, perturbed copies, never a held-out text."""

from __future__ import annotations

import pytest

from edgedistill.compress.augment import augment_texts, embedding_neighbours, words_of
from edgedistill.compress.data import DataConfig, load_data
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
                                          ("augment_methods", ["shuffle"]), ("augment_methods", [])])
def test_bad_augmentation_settings_name_the_field(field, value, tiny_model_dir):
    with pytest.raises(ConfigError, match=f"distill.{field}"):
        DistillConfig(teacher_dir=str(tiny_model_dir), **{field: value})
