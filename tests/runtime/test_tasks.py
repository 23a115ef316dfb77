"""Multi-label packages in the runtime (config.json's ``task`` and ``thresholds``, runtime/tasks.py): sigmoid
probabilities, the labels that reach their thresholds, ``top_k``, config validation, single-label packages
unchanged, the server, the ``predict`` command and the web export's JavaScript (under Node.js).

The model is built here, in ONNX, with logits known in advance: a token table whose rows are summed over the
text's tokens (special tokens and padding add nothing), plus a bias. So ``logits(text) = BIAS + sum of the rows
of its words``, and every expected answer is computed with numpy from :data:`ROWS`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.runtime import PackageConfig, PackageFormatError, TextClassifier, write_manifest
from edgedistill.runtime import npm
from edgedistill.runtime import webexport as web
from tests.helpers import REAL_CACHE, headless_page
from tests.tiny_onnx import node_or_skip, token_table_graph, wordpiece_tokenizer
from edgedistill.runtime.package import STATIC_MODEL_TYPE, TASK_MULTI, TASK_SINGLE, read_config

WEB_DIR = Path(web.__file__).parent / "web"

LABELS = ["sport", "politics", "tech"]
BIAS = np.array([-2.0, -2.0, -2.0], dtype=np.float32)
ROWS = {  # each word's contribution to the logits
    "goal": [4.0, 0.0, 0.0], "vote": [0.0, 3.0, 0.0], "chip": [0.0, 0.0, 2.5], "meh": [0.5, 0.5, 0.5],
    "match": [1.5, -1.0, 0.0], "law": [-1.0, 2.5, 0.5],
}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
VOCAB = SPECIALS + sorted(ROWS) + ["the", "a", "and"]  # the, a, and: rows of zeros
THRESHOLDS = [0.5, 0.7, 0.3]
TEXTS = [
    "",                              # every label at sigmoid(-2) = 0.12: none
    "goal",                          # sport 0.88
    "goal vote",                     # sport 0.88, politics 0.73 (>= 0.7)
    "goal vote chip",                # all three
    "the chip and a meh",            # tech sigmoid(1) = 0.73; sport, politics sigmoid(-1.5): none of them
    "law law match",                 # politics sigmoid(2) = 0.88; sport sigmoid(-2.5), tech sigmoid(-1) = 0.27 < 0.3
    "GOAL, Goal! unknown words",     # lower-cased, punctuation split off; unknown words add nothing
]


def _logits(text: str) -> np.ndarray:
    words = [w for w in text.lower().replace(",", " ").replace("!", " ").split()]
    return BIAS + sum((np.array(ROWS[w], dtype=np.float32) for w in words if w in ROWS), np.zeros(3, np.float32))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


# --------------------------------------------------------------------------- the tiny model, built here

def _tokenizer_json(path: Path) -> Path:
    return wordpiece_tokenizer(path, VOCAB, SPECIALS)


def _token_graph(path: Path) -> Path:
    """logits = BIAS + sum over the unmasked tokens of each word's ROWS entry."""
    table = np.zeros((len(VOCAB), len(LABELS)), dtype=np.float32)
    for word, row in ROWS.items():
        table[VOCAB.index(word)] = row
    return token_table_graph(path, table, BIAS, name="tiny-multilabel")


def _strings_graph(path: Path) -> Path:
    """A ``strings`` graph: each whole text -> its row (LabelEncoder), unknown texts -> the bias row."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    keys = sorted(ROWS)
    table = np.stack([BIAS] + [BIAS + np.array(ROWS[k], np.float32) for k in keys]).astype(np.float32)
    nodes = [helper.make_node("LabelEncoder", ["text"], ["index"], domain="ai.onnx.ml", keys_strings=keys,
                              values_int64s=list(range(1, len(keys) + 1)), default_int64=0),
             helper.make_node("Gather", ["table", "index"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny-strings",
                              [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
                              [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)],
                              ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _config(**changes) -> dict:
    return {"labels": LABELS, "max_length": 16, "input_names": ["input_ids", "attention_mask"], "pad_token_id": 0,
            "model_type": STATIC_MODEL_TYPE, "variant": "fp32", "task": TASK_MULTI, "thresholds": THRESHOLDS,
            **changes}


def _package(folder: Path, files: Path, **changes) -> Path:
    folder.mkdir(parents=True)
    shutil.copyfile(files / "model.onnx", folder / "model.onnx")
    shutil.copyfile(files / "tokenizer.json", folder / "tokenizer.json")
    config = {k: v for k, v in _config(**changes).items() if v is not None}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    write_manifest(folder, opset=17)
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("multilabel-files")
    _token_graph(folder / "model.onnx")
    _tokenizer_json(folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="module")
def package(tmp_path_factory, files) -> Path:
    return _package(tmp_path_factory.mktemp("multilabel") / "tags", files)


@pytest.fixture(scope="module")
def clf(package) -> TextClassifier:
    return TextClassifier.load(package, threads=1)


def _expected_labels(texts: list[str], thresholds=THRESHOLDS) -> list[list[str]]:
    out = []
    for text in texts:
        p = _sigmoid(_logits(text))
        out.append([LABELS[j] for j in np.argsort(-p, kind="stable") if p[j] >= thresholds[j]])
    return out


# --------------------------------------------------------------------------- probabilities and labels

def test_probabilities_are_sigmoids_of_the_logits(clf):
    assert clf.multi_label and clf.config.task == TASK_MULTI
    np.testing.assert_allclose(clf.predict_logits(TEXTS), np.stack([_logits(t) for t in TEXTS]), atol=1e-6)
    probs = clf.predict_proba(TEXTS)
    assert probs.dtype == np.float32 and probs.shape == (len(TEXTS), 3)
    np.testing.assert_allclose(probs, np.stack([_sigmoid(_logits(t)) for t in TEXTS]), atol=1e-6)
    assert not np.allclose(probs.sum(axis=1), 1.0)  # no softmax: each label on its own
    np.testing.assert_allclose(clf.predict_proba(TEXTS, batch_size=2), probs, atol=1e-6)  # batching changes nothing


def test_extreme_logits_give_finite_probabilities(clf):
    big = np.array([[-200.0, 0.0, 200.0]], dtype=np.float32)
    with np.errstate(over="raise"):
        from edgedistill.runtime.probabilities import sigmoid as runtime_sigmoid

        p = runtime_sigmoid(big)
    assert p.dtype == np.float32 and p.tolist() == [[0.0, 0.5, 1.0]]


def test_labels_at_or_above_their_thresholds_best_first(clf):
    assert clf.thresholds.dtype == np.float32 and clf.thresholds.tolist() == pytest.approx(THRESHOLDS)
    preds = clf.predict(TEXTS)
    assert [[p["label"] for p in pred] for pred in preds] == _expected_labels(TEXTS)
    assert preds[0] == []  # nothing reaches its threshold
    assert [p["label"] for p in preds[3]] == ["sport", "politics", "tech"]  # several, best first
    assert [p["label"] for p in preds[4]] == ["tech"] and [p["label"] for p in preds[5]] == ["politics"]
    assert preds[2][1]["score"] == pytest.approx(float(_sigmoid(np.float32(1.0))), abs=1e-6)
    probs = clf.predict_proba(TEXTS)
    for pred, row in zip(preds, probs):
        assert [p["score"] for p in pred] == sorted((p["score"] for p in pred), reverse=True)
        assert all(p["score"] == float(row[LABELS.index(p["label"])]) for p in pred)
    # the thresholds are the rule: the same answer from predict_proba and the public thresholds
    assert [[LABELS[j] for j in np.flatnonzero(row >= clf.thresholds)] for row in probs] == \
        [sorted(x, key=LABELS.index) for x in _expected_labels(TEXTS)]
    np.testing.assert_array_equal(clf.predict_labels(TEXTS), probs >= clf.thresholds)


def test_one_string_gives_one_list(clf):
    assert clf.predict("goal vote") == clf.predict(["goal vote"])[0]
    assert [p["label"] for p in clf.predict("goal vote")] == ["sport", "politics"]
    assert clf.predict("") == []


def test_top_k_caps_the_labels_and_none_gives_every_label(clf):
    assert clf.predict(TEXTS, top_k=1) == clf.predict(TEXTS)  # 1, the default: every label over its threshold
    capped = clf.predict(TEXTS, top_k=2)
    assert [[p["label"] for p in pred] for pred in capped] == [x[:2] for x in _expected_labels(TEXTS)]
    every = clf.predict(TEXTS, top_k=None)
    probs = clf.predict_proba(TEXTS)
    for pred, row in zip(every, probs):
        assert [p["label"] for p in pred] == [LABELS[j] for j in np.argsort(-row, kind="stable")]
        assert [p["score"] for p in pred] == [float(row[LABELS.index(p["label"])]) for p in pred]
    assert len(every[0]) == 3  # below every threshold, still there
    with pytest.raises(ValueError, match="top_k"):
        clf.predict(TEXTS, top_k=0)


def test_default_thresholds_and_a_temperature(tmp_path, files):
    pkg = _package(tmp_path / "plain", files, thresholds=None, temperature=2.0)
    clf = TextClassifier.load(pkg)
    assert clf.thresholds.tolist() == [0.5, 0.5, 0.5] and clf.temperature == 2.0
    want = np.stack([_sigmoid(_logits(t) / 2.0) for t in TEXTS])
    np.testing.assert_allclose(clf.predict_proba(TEXTS), want, atol=1e-6)
    for pred, row in zip(clf.predict(TEXTS), want):  # 0.5 each, on the halved logits
        assert {p["label"] for p in pred} == {LABELS[j] for j in range(3) if row[j] >= 0.5}
    assert "multi-label (thresholds 0.5 0.5 0.5)" in repr(clf) and "temperature=2" in repr(clf)


def test_a_strings_package_gives_logits_to_the_sigmoid(tmp_path):
    graph = _strings_graph(tmp_path / "model.onnx")
    config = {"labels": LABELS, "input_names": ["text"], "kind": "strings", "task": TASK_MULTI,
              "thresholds": THRESHOLDS}
    clf = TextClassifier.from_files(graph, None, config)
    texts = ["goal", "vote", "chip", "meh", "something else"]
    np.testing.assert_allclose(clf.predict_proba(texts), np.stack([_sigmoid(_logits(t)) for t in texts]), atol=1e-6)
    assert [[p["label"] for p in pred] for pred in clf.predict(texts)] == _expected_labels(texts)


# --------------------------------------------------------------------------- config.json

def test_config_round_trip_and_the_manifest_major(package, clf):
    config = read_config(package / "config.json")
    assert config.task == TASK_MULTI and config.thresholds == tuple(THRESHOLDS)
    d = config.to_dict()
    assert d["task"] == TASK_MULTI and d["thresholds"] == THRESHOLDS
    assert PackageConfig.from_dict(d) == config
    assert "task" not in config.extra and "thresholds" not in config.extra
    # a 1.x reader would softmax these logits: the package is a 2.x one, which it refuses
    assert json.loads((package / "manifest.json").read_text())["format_version"] == "3.0"


def _bad(**changes):
    return PackageConfig.from_dict({k: v for k, v in _config(**changes).items() if v is not None})


@pytest.mark.parametrize("changes, field", [
    ({"thresholds": [0.5, 0.5]}, "thresholds"),                 # one per label
    ({"thresholds": [0.5, 0.5, 0.5, 0.5]}, "thresholds"),
    ({"thresholds": [0.5, float("nan"), 0.5]}, "thresholds"),
    ({"thresholds": [0.5, float("inf"), 0.5]}, "thresholds"),
    ({"thresholds": [0.0, 0.5, 0.5]}, "thresholds"),           # in (0, 1): 0 and 1 excluded
    ({"thresholds": [0.5, 1.0, 0.5]}, "thresholds"),
    ({"thresholds": [0.5, -0.2, 0.5]}, "thresholds"),
    ({"thresholds": [0.5, "0.5", 0.5]}, "thresholds"),
    ({"thresholds": [0.5, True, 0.5]}, "thresholds"),
    ({"thresholds": 0.5}, "thresholds"),
    ({"task": None, "thresholds": THRESHOLDS}, "thresholds"),   # absent task: single-label, which has none
    ({"task": TASK_SINGLE}, "thresholds"),
    ({"biases": [0.1, 0.2, 0.3]}, "biases"),                    # a multi-label package has no class biases
    ({"task": "multi", "thresholds": None}, "task"),
    ({"task": "multilabel"}, "task"),
    ({"temperature": 0}, "temperature"),
])
def test_config_errors_name_the_field(changes, field):
    with pytest.raises(PackageFormatError, match=rf"config.json: {field}="):
        _bad(**changes)


def test_a_single_label_package_is_unchanged(tmp_path, files):
    pkg = _package(tmp_path / "single", files, task=None, thresholds=None)
    config = read_config(pkg / "config.json")
    assert config.task == TASK_SINGLE and config.thresholds is None
    assert "task" not in config.to_dict() and "thresholds" not in config.to_dict()  # config.json as before
    assert json.loads((pkg / "manifest.json").read_text())["format_version"] == "1.1"
    clf = TextClassifier.load(pkg)
    assert not clf.multi_label and clf.thresholds is None and "multi-label" not in repr(clf)
    logits = np.stack([_logits(t) for t in TEXTS])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = clf.predict_proba(TEXTS)
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-6)
    preds = clf.predict(TEXTS)
    assert all(isinstance(p, dict) for p in preds)
    assert [p["label"] for p in preds] == [LABELS[j] for j in probs.argmax(axis=1)]
    assert clf.predict("goal") == preds[1]
    assert [len(p) for p in clf.predict(TEXTS, top_k=2)] == [2] * len(TEXTS)
    assert [len(p) for p in clf.predict(TEXTS, top_k=None)] == [3] * len(TEXTS)
    np.testing.assert_array_equal(clf.predict_labels(TEXTS), np.eye(3, dtype=bool)[probs.argmax(axis=1)])


# --------------------------------------------------------------------------- the server

def test_serve_predict_and_v2_infer(clf):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from edgedistill.runtime.serve import ServeConfig, Server

    with TestClient(Server({"tags": clf}, ServeConfig()).app()) as c:
        r = c.post("/predict", json={"texts": TEXTS})
        assert r.status_code == 200, r.text
        assert r.json() == {"model": "tags", "predictions": json.loads(json.dumps(clf.predict(TEXTS)))}
        assert r.json()["predictions"][0] == [] and len(r.json()["predictions"][3]) == 3
        every = c.post("/predict", json={"texts": TEXTS, "top_k": None}).json()["predictions"]
        assert [len(p) for p in every] == [3] * len(TEXTS)
        capped = c.post("/predict", json={"texts": TEXTS, "top_k": 2}).json()["predictions"]
        assert [[p["label"] for p in pred] for pred in capped] == [x[:2] for x in _expected_labels(TEXTS)]

        meta = c.get("/v2/models/tags").json()
        assert meta["parameters"]["task"] == TASK_MULTI
        assert meta["parameters"]["thresholds"] == pytest.approx(THRESHOLDS)
        assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
            ("label", "BYTES", [-1]), ("predicted", "BOOL", [-1, 3]), ("probabilities", "FP32", [-1, 3])]

        body = {"inputs": [{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}]}
        r = c.post("/v2/models/tags/infer", json=body)
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["label"]["data"] == ["|".join(x) for x in _expected_labels(TEXTS)]
        assert out["label"]["data"][0] == "" and out["label"]["data"][2] == "sport|politics"
        probs = clf.predict_proba(TEXTS)
        assert out["predicted"]["shape"] == [len(TEXTS), 3]
        assert out["predicted"]["data"] == (probs >= clf.thresholds).reshape(-1).tolist()
        np.testing.assert_allclose(np.array(out["probabilities"]["data"]).reshape(-1, 3), probs, atol=1e-6)

        binary = {**body, "outputs": [{"name": "predicted", "parameters": {"binary_data": True}}]}
        r = c.post("/v2/models/tags/infer", json=binary)
        n = int(r.headers["Inference-Header-Content-Length"])
        head = json.loads(r.content[:n])
        mask = np.frombuffer(r.content[n:], dtype=np.bool_).reshape(head["outputs"][0]["shape"])
        np.testing.assert_array_equal(mask, probs >= clf.thresholds)

        r = c.post("/v2/models/tags/infer", json={**body, "outputs": [{"name": "score"}]})
        assert r.status_code == 400 and "score" in r.json()["error"] and "predicted" in r.json()["error"]


# --------------------------------------------------------------------------- edgedistill predict

def test_predict_command_writes_the_labels_and_their_scores(package, clf, tmp_path):
    from edgedistill.compress.cli import app

    runner = CliRunner()
    texts = [t for t in TEXTS if t]  # the command line takes no empty text here
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["predict", str(package), *texts, "--output", str(out)])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["labels"] for x in lines] == _expected_labels(texts)
    for line, pred in zip(lines, clf.predict(texts)):
        assert set(line) == {"labels", "scores"}
        assert line["scores"] == pytest.approx([p["score"] for p in pred], abs=1e-6)

    (tmp_path / "texts.txt").write_text("\n".join(["meh", "goal vote chip", "law law match"]) + "\n")
    r = runner.invoke(app, ["predict", str(package), "--input", str(tmp_path / "texts.txt"), "--top-k", "2",
                            "--output", str(tmp_path / "capped.jsonl")])
    assert r.exit_code == 0, r.output
    capped = [json.loads(line) for line in (tmp_path / "capped.jsonl").read_text().splitlines()]
    assert [x["labels"] for x in capped] == [[], ["sport", "politics"], ["politics"]]

    r = runner.invoke(app, ["predict", str(package), "meh", "goal vote"])  # the terminal's table
    assert r.exit_code == 0, r.output
    assert "(none)" in r.stdout and "sport" in r.stdout and "politics" in r.stdout


def test_predict_command_to_parquet_lists(package, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from edgedistill.compress.cli import app

    (tmp_path / "texts.txt").write_text("\n".join(["goal vote", "meh", "chip"]) + "\n")
    out = tmp_path / "out.parquet"
    r = CliRunner().invoke(app, ["predict", str(package), "--input", str(tmp_path / "texts.txt"), "--output",
                                 str(out)])
    assert r.exit_code == 0, r.output
    table = pq.read_table(out).to_pylist()
    assert [row["labels"] for row in table] == [["sport", "politics"], [], ["tech"]]
    assert [len(row["scores"]) for row in table] == [2, 0, 1]


# --------------------------------------------------------------------------- the web export

def test_web_config_asks_transformersjs_for_a_sigmoid(package, clf):
    config = web.transformersjs_config(clf.config, "fp32", 1, web.KIND_STATIC)
    assert config["problem_type"] == "multi_label_classification"
    assert config["edgedistill"]["task"] == TASK_MULTI and config["edgedistill"]["thresholds"] == THRESHOLDS
    plain = PackageConfig.from_dict(_config(thresholds=None))
    assert web.transformersjs_config(plain, "fp32", 1, web.KIND_STATIC)["edgedistill"]["thresholds"] == [0.5] * 3
    single = PackageConfig.from_dict(_config(task=TASK_SINGLE, thresholds=None))
    settings = web.transformersjs_config(single, "fp32", 1, web.KIND_STATIC)
    assert settings["problem_type"] == "single_label_classification"
    assert "task" not in settings["edgedistill"] and "thresholds" not in settings["edgedistill"]


def test_the_javascript_scores_as_the_python_runtime(clf):
    """edgedistill.mjs's probabilitiesOf and labelsOf on the model's logits, under Node.js, against Python."""
    logits = clf.predict_logits(TEXTS)
    script = f"""
        import {{ probabilitiesOf, labelsOf }} from {json.dumps((WEB_DIR / "edgedistill.mjs").as_uri())};
        const job = JSON.parse(process.argv[1]);
        const out = job.logits.map((row) => {{
          const multi = probabilitiesOf(row, {{ temperature: job.temperature, multiLabel: true }});
          const single = probabilitiesOf(row, {{ temperature: job.temperature }});
          return {{ multi, single, labels: labelsOf(multi, job.labels, job.thresholds) }};
        }});
        process.stdout.write(JSON.stringify(out));
    """
    for temperature in (1.0, 2.0):
        job = {"logits": logits.tolist(), "temperature": temperature, "labels": LABELS, "thresholds": THRESHOLDS}
        proc = subprocess.run([node_or_skip(), "--input-type=module", "-e", script, json.dumps(job)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        scaled = logits / temperature
        np.testing.assert_allclose([g["multi"] for g in got], _sigmoid(scaled), atol=1e-6)
        e = np.exp(scaled - scaled.max(axis=1, keepdims=True))
        np.testing.assert_allclose([g["single"] for g in got], e / e.sum(axis=1, keepdims=True), atol=1e-6)
        if temperature == 1.0:
            assert [[r["label"] for r in g["labels"]] for g in got] == _expected_labels(TEXTS)
            for g, pred in zip(got, clf.predict(TEXTS)):
                assert [r["score"] for r in g["labels"]] == pytest.approx([p["score"] for p in pred], abs=1e-6)


@pytest.mark.real
@pytest.mark.slow
def test_classify_script_on_the_exported_folder_matches_python(package, clf, tmp_path):
    """The web folder of the multi-label package under Node.js (transformers.js + onnxruntime-node, the pinned
    packages from the user's cache), against the Python runtime within 1e-4."""
    node = node_or_skip()
    modules = npm.node_modules([npm.TRANSFORMERS_JS], REAL_CACHE / "npm" / "node")
    site = web.export_web(package, tmp_path / "site", cache=REAL_CACHE)
    texts = [t for t in TEXTS if t.strip()]
    proc = subprocess.run([node, str(site / "classify.mjs"), str(site), "--batch-size", "4", "--threads", "1"],
                          input="\n".join(texts) + "\n", capture_output=True, text=True, timeout=240,
                          env={**os.environ, "EDGEDISTILL_NODE_MODULES": str(modules)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in got] == texts
    probs = clf.predict_proba(texts, batch_size=4)
    js = np.array([[r["probs"][label] for label in LABELS] for r in got])
    assert float(np.abs(js - probs).max()) <= 1e-4
    assert [[x["label"] for x in r["labels"]] for r in got] == _expected_labels(texts)
    for r, pred in zip(got, clf.predict(texts)):
        assert [x["score"] for x in r["labels"]] == pytest.approx([p["score"] for p in pred], abs=1e-4)


@pytest.mark.real
@pytest.mark.slow
def test_the_demo_page_in_headless_chromium_shows_every_label_over_its_threshold(package, clf, tmp_path, browser_tools):
    """The page of the multi-label package: its answers against Python within 1e-4, and what a user sees: the
    labels that reach their thresholds, each one's bar marked."""
    site = web.export_web(package, tmp_path / "site", cache=REAL_CACHE)
    texts = [t for t in TEXTS if t.strip()]
    result = headless_page(site, {"mode": "classify", "texts": texts, "batch_size": len(texts),
                                  "ui_text": "goal vote"}, browser_tools)
    assert result["blocked"] == [] and result["errors"] == [] and result["info"]["multiLabel"] is True
    probs = clf.predict_proba(texts, batch_size=len(texts))
    js = np.array([[r["probs"][label] for label in LABELS] for r in result["results"]])
    assert float(np.abs(js - probs).max()) <= 1e-4
    assert [[x["label"] for x in r["labels"]] for r in result["results"]] == _expected_labels(texts)
    ui = result["ui"]
    assert ui["label"] == "sport | politics"
    assert [(b["name"], b["best"]) for b in ui["bars"]] == [("sport", True), ("politics", True), ("tech", False)]


def test_parquet_output_types_the_label_lists_when_a_first_row_group_has_none(tmp_path):
    import pyarrow.parquet as pq

    from edgedistill.runtime.inputs import write_parquet

    rows = [{"labels": [], "scores": []}] * 3 + [{"labels": ["a", "b"], "scores": [0.9, 0.6]}]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert write_parquet(jsonl, tmp_path / "p.parquet", rows_per_group=2) == 4
    table = pq.read_table(tmp_path / "p.parquet")
    assert str(table.schema.field("labels").type) == "list<element: string>"
    assert table.to_pylist() == rows
