"""The torch-free runtime: TextClassifier on a real (tiny) ONNX package, inputs, threads, providers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgedistill.runtime import PackageFormatError, ProviderUnavailableError, TextClassifier
from edgedistill.runtime.package import read_config

TEXTS = ["the film was good", "bad", "a very boring plot and flat acting but the cast was superb", "",
         "it was fun", "cold and messy story with a weak ending, really tedious", "great", "the movie is ok"]


@pytest.fixture(scope="module")
def clf(tiny_package) -> TextClassifier:
    return TextClassifier.load(tiny_package, threads=1)


@pytest.fixture(scope="module")
def bare(tiny_package) -> ort.InferenceSession:
    """A plain onnxruntime session on the package's model, with default options."""
    return ort.InferenceSession(str(tiny_package / "model.onnx"), providers=["CPUExecutionProvider"])


def bare_proba(session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> np.ndarray:
    logits = session.run(["logits"], feed)[0]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_load_exposes_the_package(clf, tiny_package):
    assert clf.labels == ["negative", "positive"]
    assert clf.max_length == 64
    assert clf.providers == ["CPUExecutionProvider"]
    assert set(clf.manifest["files"]) == {"model.onnx", "tokenizer.json", "config.json", "README.md"}
    assert clf.config == read_config(tiny_package / "config.json", where=tiny_package)
    assert "2 labels" in repr(clf)


def test_torch_free_in_a_subprocess(tiny_package):
    code = textwrap.dedent(f"""
        import sys
        import edgedistill.runtime
        from edgedistill import TextClassifier
        clf = TextClassifier.load({str(tiny_package)!r})
        p = clf.predict_proba(["the film was good", "bad"])
        assert p.shape == (2, 2), p.shape
        heavy = sorted(m for m in ("torch", "transformers", "edgedistill.compress", "optimum") if m in sys.modules)
        print("HEAVY=" + ",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout, out.stdout


def test_tokenize_matches_the_transformers_tokenizer(clf, tiny_model_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_model_dir)
    long = " ".join(["good"] * 300)
    texts = TEXTS + [long]
    want = hf(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    got = clf.tokenize(texts)
    assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
    for name in got:
        np.testing.assert_array_equal(got[name], want[name])
    assert got["input_ids"].shape == (len(texts), 64)


def test_probabilities_equal_a_bare_session_on_the_same_ids(clf, bare):
    feed = clf.tokenize(TEXTS)  # one batch, padded to the longest
    got = clf.predict_proba(TEXTS, batch_size=len(TEXTS))
    np.testing.assert_allclose(got, bare_proba(bare, feed), rtol=0, atol=1e-6)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-6)


def test_length_sorted_batches_come_back_in_input_order(clf, bare):
    """Batches of 3 regroup the texts by length; each row must still be its own text's answer."""
    got = clf.predict_proba(TEXTS, batch_size=3)
    for i, text in enumerate(TEXTS):
        alone = bare_proba(bare, clf.tokenize([text]))[0]  # unpadded: padding must not change fp32 results
        np.testing.assert_allclose(got[i], alone, rtol=0, atol=1e-5, err_msg=text)


def test_predict_shapes_and_top_k(clf):
    one = clf.predict("the film was good")
    assert set(one) == {"label", "score"} and one["label"] in clf.labels and 0.5 <= one["score"] <= 1
    many = clf.predict(TEXTS)
    assert len(many) == len(TEXTS) and all(isinstance(p, dict) for p in many)
    probs = clf.predict_proba(TEXTS)
    assert [p["label"] for p in many] == [clf.labels[j] for j in probs.argmax(axis=1)]
    ranked = clf.predict("bad", top_k=2)
    assert [r["label"] for r in ranked] == sorted(clf.labels, key=lambda lab: -clf.predict_proba(["bad"])[
        0, clf.labels.index(lab)])
    assert ranked[0]["score"] >= ranked[1]["score"]
    assert len(clf.predict("bad", top_k=5)) == 2  # clamped to the number of labels
    assert len(clf.predict(["a", "b"], top_k=None)[1]) == 2
    for bad_k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="top_k"):
            clf.predict("bad", top_k=bad_k)
    for bad_bs in (0, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            clf.predict_proba(["a"], batch_size=bad_bs)


# ---------------------------------------------------------------------- every kind of input

def test_empty_and_whitespace_text_is_the_empty_sequence(clf):
    ids = clf.tokenize(["", "   \t\n "])["input_ids"]
    assert ids.tolist() == [[2, 3], [2, 3]]  # [CLS] [SEP]
    p = clf.predict_proba(["", "   \t\n ", "good"])
    np.testing.assert_array_equal(p[0], p[1])
    assert np.isfinite(p).all()


def test_a_100k_character_text_is_truncated(clf):
    huge = ("great acting but a dull plot " * 4000)[:100_000]
    assert len(huge) == 100_000
    assert clf.tokenize([huge])["input_ids"].shape == (1, 64)
    p = clf.predict_proba([huge, "bad"])
    assert p.shape == (2, 2) and np.isfinite(p).all()
    # truncation keeps the start: the same as the text cut to its first few hundred characters
    np.testing.assert_allclose(p[0], clf.predict_proba([huge[:1000]])[0], atol=1e-6)


@pytest.mark.parametrize("text", ["😀🎬👍", "שלום עולם, הסרט היה טוב", "مرحبا بالعالم",
                                  "good\x00\x07\x1b[31m film\r\x7f", "\u200b\u200e\u202e reversed", "ﬁlm é ñ",
                                  "\ufeffbom"])
def test_unusual_characters_give_a_prediction(clf, text):
    p = clf.predict_proba([text, "good"])
    assert p.shape == (2, 2) and np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
    assert clf.predict(text)["label"] in clf.labels


def test_a_lone_surrogate_is_a_value_error_naming_the_index(clf):
    with pytest.raises(ValueError, match=r"texts\[1\] is not valid Unicode"):
        clf.predict_proba(["good", "bad \ud800 text"])


@pytest.mark.parametrize("bad, where", [([None], r"texts\[0\] is None"), (["ok", 5], r"texts\[1\] is int"),
                                        (["ok", b"bytes"], r"texts\[1\] is bytes"), (None, "texts is None"),
                                        ("one string", "single str"), (42, "texts is int")])
def test_non_strings_are_type_errors(clf, bad, where):
    with pytest.raises(TypeError, match=where):
        clf.predict_proba(bad)


def test_predict_names_the_bad_item(clf):
    with pytest.raises(TypeError, match=r"text_or_texts\[2\] is None"):
        clf.predict(["a", "b", None])
    with pytest.raises(TypeError, match="text_or_texts is None"):
        clf.predict(None)


def test_an_empty_list_gives_an_empty_result(clf):
    p = clf.predict_proba([])
    assert p.shape == (0, 2) and p.dtype == np.float32
    assert clf.predict([]) == []
    assert clf.predict(iter([])) == []


def test_tuples_and_generators_are_accepted(clf):
    want = clf.predict_proba(["good", "bad"])
    np.testing.assert_array_equal(clf.predict_proba(("good", "bad")), want)
    np.testing.assert_array_equal(clf.predict_proba(t for t in ["good", "bad"]), want)
    np.testing.assert_array_equal(clf.predict_proba(np.array(["good", "bad"])), want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=300), max_size=12), st.integers(1, 5))
def test_any_unicode_gives_one_probability_row_per_text(clf, texts, batch_size):
    p = clf.predict_proba(texts, batch_size=batch_size)
    assert p.shape == (len(texts), 2)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)


# ---------------------------------------------------------------------- sharing across threads

def test_eight_threads_give_the_single_thread_answers(tiny_package):
    clf = TextClassifier.load(tiny_package, threads=2)
    texts = TEXTS + [f"the plot was {w} {i}" for i, w in enumerate(["good", "bad", "dull", "superb"] * 3)]
    calls = [texts[i % len(texts)] if i % 3 else texts[i % len(texts):i % len(texts) + 4] for i in range(500)]
    want = [clf.predict_proba(c if isinstance(c, list) else [c]) for c in calls]

    def worker(shift: int) -> list[np.ndarray]:
        order = [(i + shift * 61) % len(calls) for i in range(len(calls))]  # each thread its own order
        got = [None] * len(calls)
        for i in order:
            c = calls[i]
            got[i] = clf.predict_proba(c if isinstance(c, list) else [c])
        return got

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    for got in results:
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------- providers

@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA is available here")
def test_a_missing_provider_is_a_clear_error(tiny_package):
    with pytest.raises(ProviderUnavailableError, match="CUDAExecutionProvider.*CPUExecutionProvider") as e:
        TextClassifier.load(tiny_package, providers=["CUDAExecutionProvider"])
    assert e.value.missing == ["CUDAExecutionProvider"]
    assert "CPUExecutionProvider" in e.value.available
    assert "fallback=True" in str(e.value)


def test_fallback_is_explicit_and_logged(tiny_package, caplog):
    with caplog.at_level(logging.WARNING, logger="edgedistill.runtime"):
        clf = TextClassifier.load(tiny_package, providers=["NoSuchExecutionProvider"], fallback=True)
    assert clf.providers == ["CPUExecutionProvider"]
    assert "NoSuchExecutionProvider" in caplog.text
    with pytest.raises(ProviderUnavailableError, match="NoSuchExecutionProvider"):
        TextClassifier.load(tiny_package, providers="NoSuchExecutionProvider")


def test_explicit_cpu_provider_with_options(tiny_package):
    clf = TextClassifier.load(tiny_package, providers=[("CPUExecutionProvider", {})])
    assert clf.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2"])
def test_bad_thread_counts(tiny_package, threads):
    with pytest.raises(ValueError, match="threads"):
        TextClassifier.load(tiny_package, threads=threads)


# ---------------------------------------------------------------------- from_files and config checks

def test_from_files_equals_load(clf, tiny_package):
    config = json.loads((tiny_package / "config.json").read_text())
    loose = TextClassifier.from_files(tiny_package / "model.onnx", tiny_package / "tokenizer.json", config, threads=1)
    assert loose.manifest is None
    np.testing.assert_array_equal(loose.predict_proba(TEXTS), clf.predict_proba(TEXTS))


@pytest.mark.parametrize("change, match", [
    ({"input_names": ["input_ids", "attention_mask"], "uses_token_type_ids": False}, "token_type_ids"),
    ({"labels": ["a", "b", "c"]}, "3 labels but model.onnx gives 2"),
    ({"pad_token_id": 10_000}, "pad_token_id=10000"),
    ({"output_name": "scores"}, "output_name='scores'"),
    ({"labels": []}, "labels="),
    ({"labels": ["a", "a"]}, "duplicates"),
    ({"max_length": 1}, "max_length=1"),
    ({"input_names": ["input_ids"]}, "input_names="),
    ({"uses_token_type_ids": False}, "uses_token_type_ids=False"),
])
def test_config_that_does_not_fit_the_model(tiny_package, change, match):
    config = json.loads((tiny_package / "config.json").read_text()) | change
    with pytest.raises(PackageFormatError, match=match) as e:
        TextClassifier.from_files(tiny_package / "model.onnx", tiny_package / "tokenizer.json", config)
    assert e.value.file == "config.json"


def test_config_missing_fields():
    with pytest.raises(PackageFormatError, match="max_length, input_names"):
        read_config(json.dumps({"labels": ["a"], "pad_token_id": 0}).encode())


def test_runtime_session_stops_spinning_after_a_call():
    """onnxruntime's workers otherwise spin for tens of ms after each run, slowing the next engine or the caller."""
    import onnxruntime as ort

    from edgedistill.runtime.classifier import _session_options

    so = _session_options(2)
    assert so.get_session_config_entry("session.force_spinning_stop") == "1"
    assert so.intra_op_num_threads == 2 and so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
