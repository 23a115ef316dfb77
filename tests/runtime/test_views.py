"""Long texts in the runtime (issue #25 item 2): the views of runtime/views.py, config.json's ``long_texts``,
``chunk_stride`` and ``max_chunks``, the classifier's head+tail and chunks, and the web export's JavaScript.

The model is built here, in ONNX, with logits known in advance: a token table whose rows are summed over a window's
tokens (its special tokens included, padding excluded), plus a bias. So a window's logits are ``BIAS + TABLE[ids]
.sum(0)``, and every expected answer is computed with numpy from the window's ids.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgedistill.runtime import PackageConfig, PackageFormatError, TextClassifier, write_manifest
from edgedistill.runtime import npm
from edgedistill.runtime import webexport as web
from tests.helpers import REAL_CACHE, headless_page
from tests.tiny_onnx import node_or_skip, token_table_graph, wordpiece_tokenizer
from edgedistill.runtime.longtexts import special_ends
from edgedistill.runtime.package import STATIC_MODEL_TYPE, read_config
from edgedistill.runtime.views import (CHUNKS, DEFAULT_MAX_CHUNKS, DEFAULT_STRIDE, HEAD_TAIL, LONG_TEXTS, TRUNCATE,
                                       chunks, head_tail, truncate, view)

WEB_DIR = Path(web.__file__).parent / "web"

LABELS = ["a", "b", "c"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]"]
WORDS = [f"w{i}" for i in range(60)]
VOCAB = SPECIALS + WORDS
MAX_LENGTH = 16
TABLE = np.random.default_rng(0).normal(size=(len(VOCAB), len(LABELS))).astype(np.float32)
TABLE[0] = 0.0  # [PAD]: padding is masked anyway
BIAS = np.array([0.1, -0.2, 0.3], dtype=np.float32)
SHIFT = np.array([0.01, 0.0, -0.01], dtype=np.float32)  # the batch-dependent model's: times the batch's largest id
LONG = " ".join(WORDS[i % 60] for i in range(53))        # 53 words: 55 tokens with [CLS] and [SEP]
LONGER = " ".join(WORDS[(7 * i) % 60] for i in range(90))
SHORT = ["w1 w2", "", "w3", "w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w17"]  # the last: exactly 16 tokens


# --------------------------------------------------------------------------- views.py

BODY = list(range(100, 120))  # 20 text tokens


def _seq(n: int, lead: int = 1, trail: int = 1) -> list[int]:
    return list(range(1, lead + 1)) + BODY[:n] + list(range(-trail, 0))


@pytest.mark.parametrize("lead, trail", [(1, 1), (0, 0), (2, 2), (0, 1), (2, 0)])
def test_a_sequence_within_the_limit_is_one_unchanged_window_in_every_mode(lead, trail):
    for n in (0, 1, 10 - lead - trail):  # the last: exactly max_length
        ids = _seq(n, lead, trail)
        for mode in LONG_TEXTS:
            assert view(ids, 10, mode, lead, trail, stride=2, max_chunks=3) == [ids]


def test_one_token_over_the_limit():
    ids = _seq(9)  # 11 tokens, max_length 10: room 8
    start, body, end = [1], BODY[:9], [-1]
    assert truncate(ids, 10) == start + body[:8] + end
    assert head_tail(ids, 10) == start + body[:2] + body[3:] + end          # head round(8 / 4) = 2, tail 6
    assert chunks(ids, 10, stride=2) == [start + body[:8] + end, start + body[6:] + end]  # step 8 - 2 = 6


@pytest.mark.parametrize("lead, trail", [(0, 0), (2, 2), (0, 2), (2, 0)])
def test_special_tokens_kept_at_both_ends(lead, trail):
    ids = _seq(20, lead, trail)
    start, end = ids[:lead], ids[len(ids) - trail:] if trail else []
    room = 12 - lead - trail
    head = round(room * 0.25)
    assert truncate(ids, 12, lead, trail) == start + BODY[:room] + end
    assert head_tail(ids, 12, lead, trail) == start + BODY[:head] + BODY[20 - (room - head):] + end
    windows = chunks(ids, 12, lead, trail, stride=1, max_chunks=99)
    assert all(w[:lead] == start and w[len(w) - trail:] == end and len(w) <= 12 for w in windows)
    assert [x for x in windows[0][lead:lead + room]] == BODY[:room]
    assert windows[-1][lead:len(windows[-1]) - trail][-1] == BODY[-1]  # the text's end is read


def test_head_takes_a_quarter_rounded_half_to_even():
    for room, head in [(8, 2), (10, 2), (14, 4), (6, 2), (2, 0), (9, 2), (11, 3)]:  # 2.5 -> 2, 3.5 -> 4, 0.5 -> 0
        body = list(range(1000, 1000 + room + 5))
        assert head_tail([0] + body + [0], room + 2) == [0] + body[:head] + body[5 + head:] + [0]


def test_chunks_overlap_by_the_stride_and_stop_at_max_chunks():
    ids = _seq(20)                                                       # room 8 at max_length 10
    windows = chunks(ids, 10, stride=3, max_chunks=99)                   # step 5: 0, 5, 10, 15 (15 + 8 >= 20)
    assert [w[1:-1] for w in windows] == [BODY[0:8], BODY[5:13], BODY[10:18], BODY[15:20]]
    assert chunks(ids, 10, stride=3, max_chunks=2) == windows[:2]        # the first ones: the text's start
    assert [w[1:-1] for w in chunks(ids, 10, stride=0)] == [BODY[0:8], BODY[8:16], BODY[16:20]]
    for stride in (7, 8, 50):                                            # >= room - 1: windows slide by one token
        windows = chunks(ids, 10, stride=stride, max_chunks=99)
        assert [w[1:-1] for w in windows] == [BODY[s:s + 8] for s in range(13)]
    assert len(chunks(_seq(20), 10, stride=50)) == DEFAULT_MAX_CHUNKS


def test_chunks_read_the_whole_text_unless_capped():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, max_length = int(rng.integers(0, 60)), int(rng.integers(4, 20))
        stride = int(rng.integers(0, max_length))
        ids = _seq(min(n, 20)) if n <= 20 else [1] + list(range(200, 200 + n)) + [-1]
        windows = chunks(ids, max_length, stride=stride, max_chunks=1000)
        read = [t for w in windows for t in w[1:-1]]
        assert set(read) == set(ids[1:-1]) and all(len(w) <= max_length for w in windows)


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="long_texts='middle'"):
        view([1, 2], 10, "middle")


def test_special_ends_from_the_mask():
    assert special_ends([1, 0, 0, 1]) == (1, 1)
    assert special_ends([1, 1, 0, 1, 1]) == (2, 2)
    assert special_ends([0, 0]) == (0, 0)
    assert special_ends([1, 1]) == (2, 0)  # specials only: all open the sequence
    assert special_ends([]) == (0, 0)


# --------------------------------------------------------------------------- config.json

def _config(**changes) -> dict:
    return {k: v for k, v in {"labels": LABELS, "max_length": MAX_LENGTH, "input_names": ["input_ids",
                              "attention_mask"], "pad_token_id": 0, "model_type": STATIC_MODEL_TYPE,
                              "variant": "fp32", **changes}.items() if v is not None}


def test_config_defaults_and_what_to_dict_writes():
    plain = PackageConfig.from_dict(_config())
    assert (plain.long_texts, plain.chunk_stride, plain.max_chunks) == (TRUNCATE, DEFAULT_STRIDE, DEFAULT_MAX_CHUNKS)
    assert not {"long_texts", "chunk_stride", "max_chunks"} & set(plain.to_dict())  # existing configs: unchanged
    assert not {"long_texts", "chunk_stride", "max_chunks"} & set(
        PackageConfig.from_dict(_config(long_texts=TRUNCATE, chunk_stride=40, max_chunks=2)).to_dict())
    ht = PackageConfig.from_dict(_config(long_texts=HEAD_TAIL, chunk_stride=4))  # accepted, not written
    assert ht.to_dict()["long_texts"] == HEAD_TAIL and "chunk_stride" not in ht.to_dict()
    ch = PackageConfig.from_dict(_config(long_texts=CHUNKS, chunk_stride=4, max_chunks=3))
    d = ch.to_dict()
    assert (d["long_texts"], d["chunk_stride"], d["max_chunks"]) == (CHUNKS, 4, 3)
    assert PackageConfig.from_dict(d) == ch and not ch.extra
    default = PackageConfig.from_dict(_config(long_texts=CHUNKS, max_length=64))
    assert default.to_dict()["chunk_stride"] == DEFAULT_STRIDE


@pytest.mark.parametrize("changes, field", [
    ({"long_texts": "middle"}, "long_texts"),
    ({"long_texts": None, "chunk_stride": -1}, "chunk_stride"),
    ({"long_texts": CHUNKS, "chunk_stride": 1.5}, "chunk_stride"),
    ({"long_texts": CHUNKS, "chunk_stride": True}, "chunk_stride"),
    ({"long_texts": CHUNKS, "chunk_stride": MAX_LENGTH - 2}, "chunk_stride"),  # < max_length - 2
    ({"long_texts": CHUNKS, "max_length": 64}, None),                           # the default 32 < 62: fine
    ({"long_texts": CHUNKS}, "chunk_stride"),                                   # the default 32 >= 16 - 2
    ({"long_texts": CHUNKS, "chunk_stride": 4, "max_chunks": 0}, "max_chunks"),
    ({"long_texts": HEAD_TAIL, "max_chunks": "8"}, "max_chunks"),
    ({"long_texts": TRUNCATE, "chunk_stride": 100}, None),                      # only checked where it is used
])
def test_config_errors_name_the_field(changes, field):
    if field is None:
        PackageConfig.from_dict(_config(**changes))
        return
    with pytest.raises(PackageFormatError, match=rf"config.json: {field}="):
        PackageConfig.from_dict(_config(**changes))


def test_a_strings_package_reads_whole_texts_only():
    strings = {"labels": LABELS, "input_names": ["text"], "kind": "strings"}
    assert PackageConfig.from_dict({**strings, "long_texts": TRUNCATE}).long_texts == TRUNCATE
    for mode in (HEAD_TAIL, CHUNKS):
        with pytest.raises(PackageFormatError, match="long_texts="):
            PackageConfig.from_dict({**strings, "long_texts": mode})


# --------------------------------------------------------------------------- the tiny model, built here

def _tokenizer_json(path: Path, specials_each_side: int = 1) -> Path:
    """[CLS] $A [SEP], or with two special tokens opening a text and two closing it; its own saved truncation is
    one the runtime must override."""
    return wordpiece_tokenizer(path, VOCAB, SPECIALS, truncation=512,
                               single=None if specials_each_side == 1 else "[CLS] [BOS] $A [EOS] [SEP]")


def _token_graph(path: Path, batch_term: bool = False) -> Path:
    """logits = BIAS + the sum over the unmasked tokens of TABLE[input_ids] (+ SHIFT * the largest id of the whole
    batch, with ``batch_term``: a model whose answers depend on batch-mates)."""
    return token_table_graph(path, TABLE, BIAS, shift=SHIFT if batch_term else None, name="tiny-long-texts")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("long-texts-files")
    _token_graph(folder / "model.onnx")
    _token_graph(folder / "batchy.onnx", batch_term=True)
    _tokenizer_json(folder / "tokenizer.json")
    _tokenizer_json(folder / "two.json", specials_each_side=2)
    return folder


def _clf(files: Path, model: str = "model.onnx", tokenizer: str = "tokenizer.json", **changes) -> TextClassifier:
    return TextClassifier.from_files(files / model, files / tokenizer, _config(**changes), threads=1)


def _ids(files: Path, text: str, tokenizer: str = "tokenizer.json") -> tuple[list[int], int, int]:
    """The text's whole token ids and its special tokens before and after, as the tokenizer gives them."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(files / tokenizer))
    tok.no_truncation()
    e = tok.encode(text)
    return e.ids, *special_ends(e.special_tokens_mask)


def _window_logits(window: list[int], batch_top: int | None = None) -> np.ndarray:
    out = BIAS + TABLE[window].sum(axis=0)
    return out if batch_top is None else out + np.float32(batch_top) * SHIFT


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


# --------------------------------------------------------------------------- the classifier

def test_chunks_give_the_mean_of_the_windows_probabilities(files):
    clf = _clf(files, long_texts=CHUNKS, chunk_stride=4, max_chunks=5, temperature=2.0, biases=[0.5, 0.0, -0.5])
    assert clf.long_texts == CHUNKS and "long texts as chunks (stride 4, at most 5)" in repr(clf)
    texts = [LONG, SHORT[0], LONGER, SHORT[1]]
    expected, raw = [], []
    for text in texts:
        ids, lead, trail = _ids(files, text)
        windows = chunks(ids, MAX_LENGTH, lead, trail, stride=4, max_chunks=5)
        assert len(windows) == (1 if len(ids) <= MAX_LENGTH else 5)  # room 14, step 10: 55 tokens give 5 windows
        logits = np.stack([_window_logits(w) for w in windows])
        expected.append(_softmax(logits / 2.0 + np.array([0.5, 0.0, -0.5])).mean(axis=0))
        raw.append(logits.mean(axis=0))
    for batch_size in (1, 3, 32):
        np.testing.assert_allclose(clf.predict_proba(texts, batch_size=batch_size), expected, atol=1e-6)
        np.testing.assert_allclose(clf.predict_logits(texts, batch_size=batch_size), raw, atol=1e-5)
    logits, owner = clf.window_logits(texts)
    assert owner.tolist() == [0] * 5 + [1] + [2] * 5 + [3]
    assert [p["label"] for p in clf.predict(texts)] == [LABELS[int(np.argmax(p))] for p in expected]
    assert clf.tokenize([LONG, SHORT[0]])["input_ids"].shape == (6, MAX_LENGTH)  # one row a window
    assert clf.predict_proba([]).shape == (0, 3) and clf.window_logits([])[0].shape == (0, 3)


def test_a_multi_label_package_keeps_each_labels_largest_window_probability(files):
    clf = _clf(files, long_texts=CHUNKS, chunk_stride=0, task="multi_label", thresholds=[0.5, 0.6, 0.7])
    texts = [LONGER, LONG, SHORT[3]]
    expected = []
    for text in texts:
        ids, lead, trail = _ids(files, text)
        windows = chunks(ids, MAX_LENGTH, lead, trail, stride=0)
        expected.append(_sigmoid(np.stack([_window_logits(w) for w in windows])).max(axis=0))
    probs = clf.predict_proba(texts)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert len(clf.window_logits([LONGER])[0]) == 7  # 90 words, room 14, no overlap: ceil(90 / 14)
    np.testing.assert_array_equal(clf.predict_labels(texts), np.asarray(expected) >= [0.5, 0.6, 0.7])


@pytest.mark.parametrize("tokenizer", ["tokenizer.json", "two.json"])
def test_head_tail_feeds_exactly_the_views_ids(files, tokenizer):
    clf = _clf(files, tokenizer=tokenizer, long_texts=HEAD_TAIL)
    assert "long texts as head+tail" in repr(clf)
    fed = []
    session = clf._session

    class Recorder:
        def __getattr__(self, name):
            return getattr(session, name)

        def run(self, names, feed):
            fed.append({k: v.copy() for k, v in feed.items()})
            return session.run(names, feed)

    clf._session = Recorder()
    texts = [LONG, SHORT[0], LONGER]
    probs = clf.predict_proba(texts, batch_size=2)
    expected = []
    for text in texts:
        ids, lead, trail = _ids(files, text, tokenizer)
        assert (lead, trail) == ((1, 1) if tokenizer == "tokenizer.json" else (2, 2))
        expected.append(head_tail(ids, MAX_LENGTH, lead, trail))
    rows = [row[mask.astype(bool)].tolist() for f in fed for row, mask in zip(f["input_ids"], f["attention_mask"])]
    assert sorted(rows) == sorted(expected)
    assert [f["input_ids"].shape[0] for f in fed] == [2, 1]
    np.testing.assert_allclose(probs, [_softmax(_window_logits(w)) for w in expected], atol=1e-6)
    assert clf.tokenize([LONG])["input_ids"][0].tolist() == expected[0]


def test_texts_within_the_limit_read_the_same_in_every_mode(files):
    texts = SHORT + ["w9 w8 w7", "W1, w2!"]
    got = {mode: _clf(files, long_texts=mode, chunk_stride=2) for mode in LONG_TEXTS}
    for batch_size in (1, 2, 32):
        base = got[TRUNCATE].predict_proba(texts, batch_size)
        for clf in got.values():
            np.testing.assert_array_equal(clf.predict_proba(texts, batch_size), base)
            np.testing.assert_array_equal(clf.predict_logits(texts, batch_size),
                                          got[TRUNCATE].predict_logits(texts, batch_size))
    for clf in got.values():  # beside long texts too
        np.testing.assert_allclose(clf.predict_proba([LONG] + texts + [LONGER])[1:-1], base, atol=1e-6)
    ids = _ids(files, LONG)[0]
    assert got[TRUNCATE].tokenize([LONG])["input_ids"][0].tolist() == truncate(ids, MAX_LENGTH)


def test_a_model_that_runs_alone_runs_each_window_alone(files):
    """A batch-dependent model (its logits move with the largest id of the batch) gives each text the same answer
    alone or batched, and each window's answer is its own."""
    clf = _clf(files, model="batchy.onnx", long_texts=CHUNKS, chunk_stride=4, variant="int8-dynamic")
    assert clf.runs_alone
    texts = [LONG, SHORT[0], LONGER, SHORT[2]]
    expected = []
    for text in texts:
        ids, lead, trail = _ids(files, text)
        windows = chunks(ids, MAX_LENGTH, lead, trail, stride=4)
        expected.append(_softmax(np.stack([_window_logits(w, max(w)) for w in windows])).mean(axis=0))
    batched = clf.predict_proba(texts, batch_size=8)
    np.testing.assert_allclose(batched, expected, atol=1e-6)
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(clf.predict_proba([text])[0], batched[i])
    ht = _clf(files, model="batchy.onnx", long_texts=HEAD_TAIL, variant="int8-dynamic")
    alone = np.stack([ht.predict_proba([t])[0] for t in texts])
    np.testing.assert_array_equal(ht.predict_proba(texts), alone)
    mixed = TextClassifier.from_files(files / "batchy.onnx", files / "tokenizer.json",  # batched anyway: differs
                                      _config(long_texts=CHUNKS, chunk_stride=4, variant="int8-dynamic"),
                                      batch_invariant=False)
    assert not np.allclose(mixed.predict_proba(texts, batch_size=8), expected, atol=1e-4)


def test_a_package_reads_its_mode_from_config_json(tmp_path, files):
    folder = tmp_path / "pkg"
    folder.mkdir()
    shutil.copyfile(files / "model.onnx", folder / "model.onnx")
    shutil.copyfile(files / "tokenizer.json", folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps(_config(long_texts=CHUNKS, chunk_stride=3, max_chunks=2)))
    write_manifest(folder, opset=17)
    config = read_config(folder / "config.json")
    assert (config.long_texts, config.chunk_stride, config.max_chunks) == (CHUNKS, 3, 2)
    clf = TextClassifier.load(folder, threads=1)
    assert clf.long_texts == CHUNKS and len(clf.window_logits([LONG])[0]) == 2
    plain = _clf(files)
    assert plain.long_texts == TRUNCATE and "long texts" not in repr(plain)


# --------------------------------------------------------------------------- the web export

def test_the_web_config_carries_the_reading_of_long_texts(files):
    chunked = PackageConfig.from_dict(_config(long_texts=CHUNKS, chunk_stride=4, max_chunks=3))
    settings = web.transformersjs_config(chunked, "fp32", 2, web.KIND_STATIC, 2)["edgedistill"]
    assert {k: settings[k] for k in ("long_texts", "chunk_stride", "max_chunks", "special_tokens_before",
                                     "special_tokens_after")} == {"long_texts": CHUNKS, "chunk_stride": 4,
                                                                  "max_chunks": 3, "special_tokens_before": 2,
                                                                  "special_tokens_after": 2}
    ht = web.transformersjs_config(PackageConfig.from_dict(_config(long_texts=HEAD_TAIL)), "fp32", 1,
                                   web.KIND_STATIC)["edgedistill"]
    assert ht["long_texts"] == HEAD_TAIL and "chunk_stride" not in ht
    plain = web.transformersjs_config(PackageConfig.from_dict(_config()), "fp32", 1, web.KIND_STATIC)["edgedistill"]
    assert not {"long_texts", "chunk_stride", "max_chunks", "special_tokens_before"} & set(plain)


def test_the_javascript_cuts_and_pools_as_the_python_runtime(files):
    """edgedistill.mjs's windowsOf, roundHalfEven and poolRows under Node.js, against views.py and the classifier."""
    cases = []
    for n in (0, 9, 10, 11, 13, 19, 20, 47, 120):
        for max_length, lead, trail in ((10, 1, 1), (12, 2, 2), (16, 0, 1), (14, 2, 0), (7, 1, 1)):
            ids = list(range(1, lead + 1)) + list(range(100, 100 + n)) + list(range(-trail, 0))
            for mode in LONG_TEXTS:
                for stride, max_chunks in ((0, 8), (3, 4), (50, 3)):
                    cases.append({"ids": ids, "maxLength": max_length, "mode": mode, "lead": lead, "trail": trail,
                                  "stride": stride, "maxChunks": max_chunks})
    clf = _clf(files, long_texts=CHUNKS, chunk_stride=4, task="multi_label")
    single = _clf(files, long_texts=CHUNKS, chunk_stride=4)
    pools = []
    for model in (single, clf):
        logits, owner = model.window_logits([LONG, LONGER, SHORT[0]])
        rows = model._probabilities(logits)
        pools.append({"rows": [rows[owner == i].tolist() for i in range(3)], "multiLabel": model.multi_label,
                      "want": model.predict_proba([LONG, LONGER, SHORT[0]]).tolist()})
    script = f"""
        import fs from "node:fs";
        import {{ windowsOf, roundHalfEven, poolRows }} from {json.dumps((WEB_DIR / "edgedistill.mjs").as_uri())};
        const job = JSON.parse(fs.readFileSync(0, "utf8"));
        process.stdout.write(JSON.stringify({{
          windows: job.cases.map((c) => windowsOf(c.ids, c)),
          rounded: job.halves.map(roundHalfEven),
          pooled: job.pools.map((p) => p.rows.map((rows) => poolRows(rows, p))),
        }}));
    """
    halves = [0, 0.25, 0.5, 1.5, 2.5, 3.5, 4.75, 10.5, 11.5]
    proc = subprocess.run([node_or_skip(), "--input-type=module", "-e", script], capture_output=True, text=True,
                          timeout=60, input=json.dumps({"cases": cases, "halves": halves, "pools": pools}))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    want = [view(c["ids"], c["maxLength"], c["mode"], c["lead"], c["trail"], c["stride"], c["maxChunks"])
            for c in cases]
    assert got["windows"] == want
    assert got["rounded"] == [round(x) for x in halves]
    for p, pooled in zip(pools, got["pooled"]):
        np.testing.assert_allclose(pooled, p["want"], atol=1e-6)


def _package(folder: Path, files: Path, tokenizer: str = "tokenizer.json", **changes) -> Path:
    folder.mkdir(parents=True)
    shutil.copyfile(files / "model.onnx", folder / "model.onnx")
    shutil.copyfile(files / tokenizer, folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps(_config(**changes)))
    write_manifest(folder, opset=17)
    return folder


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("changes", [{"long_texts": CHUNKS, "chunk_stride": 4, "max_chunks": 4},
                                     {"long_texts": CHUNKS, "chunk_stride": 2, "task": "multi_label"},
                                     {"long_texts": HEAD_TAIL},
                                     {"long_texts": CHUNKS, "chunk_stride": 3, "tokenizer": "two.json"},
                                     {"long_texts": HEAD_TAIL, "tokenizer": "two.json"}])
def test_classify_script_reads_long_texts_as_python(files, tmp_path, changes):
    """The web folder of a head+tail or chunks package under Node.js (transformers.js + onnxruntime-node, the pinned
    packages from the user's cache), against the Python runtime within 1e-4."""
    node = node_or_skip()
    modules = npm.node_modules([npm.TRANSFORMERS_JS], REAL_CACHE / "npm" / "node")
    package = _package(tmp_path / "pkg", files, **changes)
    site = web.export_web(package, tmp_path / "site", cache=REAL_CACHE)
    settings = json.loads((site / "model" / "config.json").read_text())["edgedistill"]
    assert settings["long_texts"] == changes["long_texts"]
    assert settings["special_tokens_before"] == settings["special_tokens_after"] == (2 if "tokenizer" in changes else 1)
    texts = [LONG, "w1 w2", LONGER, "w3 " * 40, "w5"]
    proc = subprocess.run([node, str(site / "classify.mjs"), str(site), "--batch-size", "2", "--threads", "1"],
                          input="\n".join(texts) + "\n", capture_output=True, text=True, timeout=240,
                          env={**os.environ, "EDGEDISTILL_NODE_MODULES": str(modules)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    clf = TextClassifier.load(package, threads=1)
    probs = clf.predict_proba(texts, batch_size=2)
    js = np.array([[r["probs"][label] for label in LABELS] for r in got])
    assert float(np.abs(js - probs).max()) <= 1e-4


@pytest.mark.real
@pytest.mark.slow
def test_the_demo_page_in_headless_chromium_pools_chunks_as_python(files, tmp_path, browser_tools):
    """The page of a chunked multi-label package (onnxruntime-web's WASM in Chromium): its answers for long and
    short texts against the Python runtime within 1e-4."""
    package = _package(tmp_path / "pkg", files, long_texts=CHUNKS, chunk_stride=3, max_chunks=6, task="multi_label")
    site = web.export_web(package, tmp_path / "site", cache=REAL_CACHE)
    texts = [LONG, "w1 w2", LONGER, "w5"]
    result = headless_page(site, {"mode": "classify", "texts": texts, "batch_size": 3}, browser_tools)
    assert result["blocked"] == [] and result["errors"] == [] and result["info"]["multiLabel"] is True
    probs = TextClassifier.load(package, threads=1).predict_proba(texts, batch_size=3)
    js = np.array([[r["probs"][label] for label in LABELS] for r in result["results"]])
    assert float(np.abs(js - probs).max()) <= 1e-4
