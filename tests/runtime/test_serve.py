"""``edgedistill serve`` (runtime/serve.py): the routes against TextClassifier, dynamic batching, the queue bound
and the request limits, shutdown that drains, metrics, thread settings, and the command itself over a socket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from starlette.testclient import TestClient  # noqa: E402

from edgedistill.runtime.classifier import TextClassifier  # noqa: E402
from edgedistill.runtime.serve import (Batcher, Metrics, ServeConfig, ServeError, Server, load_models,  # noqa: E402
                                       model_name, thread_plan)

TEXTS = ["a wonderful, moving film", "dull and far too long", "", "ok", "the best thing I saw this year " * 20]


@pytest.fixture(scope="module")
def clf(tiny_package) -> TextClassifier:
    return TextClassifier.load(tiny_package, threads=1)


def client(models, **cfg) -> TestClient:
    return TestClient(Server(models, ServeConfig(**cfg)).app())


# ------------------------------------------------------------------------------------------------ the routes
def test_predict_and_the_v2_infer_route_give_the_runtimes_answers(clf):
    want = clf.predict(TEXTS)
    with client({"tiny": clf}) as c:
        r = c.post("/predict", json={"texts": TEXTS})
        assert r.status_code == 200 and r.json()["model"] == "tiny"
        got = r.json()["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert np.allclose([p["score"] for p in got], [p["score"] for p in want], atol=1e-5)
        top = c.post("/predict", json={"texts": TEXTS[:2], "model": "tiny", "top_k": None}).json()["predictions"]
        assert [len(p) for p in top] == [clf.num_labels] * 2
        # Open Inference Protocol v2: a BYTES tensor of shape [n] or [n, 1] (what tritonclient sends)
        for shape, data in (([len(TEXTS)], TEXTS), ([len(TEXTS), 1], [[t] for t in TEXTS])):
            body = {"id": "42", "inputs": [{"name": "text", "shape": shape, "datatype": "BYTES", "data": data}]}
            out = c.post("/v2/models/tiny/infer", json=body).json()
            assert out["model_name"] == "tiny" and out["id"] == "42"
            tensors = {o["name"]: o for o in out["outputs"]}
            assert tensors["label"]["data"] == [p["label"] for p in want]
            assert tensors["label"]["datatype"] == "BYTES" and tensors["label"]["shape"] == [len(TEXTS)]
            probs = np.array(tensors["probabilities"]["data"]).reshape(tensors["probabilities"]["shape"])
            assert np.allclose(probs, clf.predict_proba(TEXTS), atol=1e-5)
        only = c.post("/v2/models/tiny/infer", json={**body, "outputs": [{"name": "label"}]}).json()
        assert [o["name"] for o in only["outputs"]] == ["label"]
        meta = c.get("/v2/models/tiny").json()
        assert meta["name"] == "tiny" and meta["inputs"][0]["datatype"] == "BYTES"
        assert meta["parameters"]["labels"] == clf.labels
        assert c.get("/v2/health/ready").json() == {"ready": True} and c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/models/tiny/ready").status_code == 200 and c.get("/v2").json()["name"] == "edgedistill"


def _bytes_tensor(texts: list[str]) -> bytes:
    return b"".join(len(b).to_bytes(4, "little") + b for b in (t.encode() for t in texts))


def test_the_binary_tensor_data_extension_in_and_out(clf):
    """What tritonclient sends and asks for by default: a JSON header, then each BYTES element as a 4-byte length
    and its bytes; FP32 outputs as little-endian floats."""
    blob = _bytes_tensor(TEXTS)
    header = json.dumps({"inputs": [{"name": "text", "shape": [len(TEXTS), 1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "outputs": [{"name": "label", "parameters": {"binary_data": True}},
                                     {"name": "probabilities", "parameters": {"binary_data": True}},
                                     {"name": "score", "parameters": {"binary_data": False}}]}).encode()
    with client({"tiny": clf}) as c:
        r = c.post("/v2/models/tiny/infer", content=header + blob,
                   headers={"Inference-Header-Content-Length": str(len(header))})
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        cut = int(r.headers["inference-header-content-length"])
        head, rest = json.loads(r.content[:cut]), r.content[cut:]
        label, probs, score = head["outputs"]
        assert "data" not in label and score["data"] and len(score["data"]) == len(TEXTS)
        n = label["parameters"]["binary_data_size"]
        assert rest[:n] == _bytes_tensor([p["label"] for p in clf.predict(TEXTS)])
        got = np.frombuffer(rest[n:n + probs["parameters"]["binary_data_size"]], dtype="<f4").reshape(probs["shape"])
        assert np.allclose(got, clf.predict_proba(TEXTS), atol=1e-5)
        torn = c.post("/v2/models/tiny/infer", content=header + blob[:-3],
                      headers={"Inference-Header-Content-Length": str(len(header))})
        assert torn.status_code == 400 and "does not match" in torn.json()["error"]


@pytest.mark.parametrize("route, body, status, words", [
    ("/predict", {"texts": ["x"] * 5}, 413, "at most 4 per request"),
    ("/predict", {"texts": ["x" * 101]}, 413, "at most 100 (max_chars)"),
    ("/predict", {"texts": ["fine", 3]}, 422, "texts[1] is int"),
    ("/predict", {"texts": "one string"}, 400, "must be a list of strings"),
    ("/predict", {"text": ["x"]}, 400, '{"texts": [...]}'),
    ("/predict", {"texts": ["x"], "model": "other"}, 404, "no model 'other'"),
    ("/predict", {"texts": ["x"], "top_k": 0}, 400, "top_k=0"),
    ("/v2/models/nope/infer", {"inputs": []}, 404, "no model 'nope'"),
    ("/v2/models/tiny/infer", {"inputs": [{"name": "t", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}, 400,
     "must be [n] or [n, 1]"),
    ("/v2/models/tiny/infer", {"inputs": [{"name": "t", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, 400,
     '"datatype": "BYTES"'),
    ("/v2/models/tiny/infer", {"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
                               "outputs": [{"name": "logits"}]}, 400, "unknown outputs ['logits']"),
])
def test_each_bad_request_gets_its_status_and_one_line_saying_why(clf, route, body, status, words):
    with client({"tiny": clf}, max_texts=4, max_chars=100, max_queue=8) as c:
        r = c.post(route, json=body)
        assert r.status_code == status and words in r.json()["error"], r.json()


def test_a_body_that_is_not_json_or_too_big_is_refused(clf):
    with client({"tiny": clf}, max_body_bytes=1000) as c:
        r = c.post("/predict", content=b"{not json")
        assert r.status_code == 400 and "not JSON" in r.json()["error"]
        r = c.post("/predict", content=json.dumps({"texts": ["x" * 2000]}).encode())
        assert r.status_code == 413 and "at most 1,000" in r.json()["error"]


def test_two_models_each_at_their_own_route(clf):
    with client({"a": clf, "b": clf}) as c:
        assert c.post("/predict", json={"texts": ["x"]}).status_code == 400  # which one?
        assert c.post("/predict", json={"texts": ["x"], "model": "b"}).json()["model"] == "b"
        assert c.post("/v2/models/a/infer", json={"inputs": [{"name": "t", "shape": [1], "datatype": "BYTES",
                                                              "data": ["x"]}]}).status_code == 200


# ------------------------------------------------------------------------------------------------ batching
class Recorder:
    """``predict_proba`` that records each call's texts, and can be held until released."""

    def __init__(self, clf: TextClassifier, hold: bool = False):
        self.clf, self.calls = clf, []
        self.gate = threading.Event()
        if not hold:
            self.gate.set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        assert self.gate.wait(30)
        return self.clf.predict_proba(texts)


def batcher(clf, run, **cfg) -> Batcher:
    return Batcher("tiny", clf, ServeConfig(**cfg), Metrics(), run=run)


def test_concurrent_requests_run_together_and_each_gets_its_own_rows(clf):
    rec = Recorder(clf)
    requests = [TEXTS[i % len(TEXTS):i % len(TEXTS) + 1 + i % 3] for i in range(12)]

    async def main():
        b = batcher(clf, rec, max_batch_size=64, max_wait_ms=200)
        b.start()
        answers = await asyncio.gather(*(b.submit(r) for r in requests))
        await b.close()
        return answers

    answers = asyncio.run(main())
    assert len(rec.calls) < len(requests)  # batched: fewer session calls than requests
    assert sum(map(len, rec.calls)) == sum(map(len, requests))
    for texts, got in zip(requests, answers):
        assert got.shape == (len(texts), clf.num_labels)
        assert np.allclose(got, clf.predict_proba(texts), atol=1e-5)  # its own rows, in its own order


def test_a_batch_holds_at_most_max_batch_size_texts_and_a_larger_request_runs_alone(clf):
    rec = Recorder(clf)

    async def main():
        b = batcher(clf, rec, max_batch_size=4, max_wait_ms=100)
        b.start()
        got = await asyncio.gather(*(b.submit(["x", "y"]) for _ in range(4)), b.submit(["z"] * 9))
        await b.close()
        return got

    asyncio.run(main())
    assert sorted(map(len, rec.calls)) == [4, 4, 9]


def test_by_default_a_lone_request_runs_at_once_and_what_queues_behind_a_batch_runs_as_the_next(clf):
    rec = Recorder(clf, hold=True)

    async def main():
        b = batcher(clf, rec)  # max_wait_ms 0
        b.start()
        first = asyncio.ensure_future(b.submit(["alone"]))
        while not rec.calls:  # taken at once, without waiting for batch-mates
            await asyncio.sleep(0.001)
        behind = [asyncio.ensure_future(b.submit([f"text {i}"])) for i in range(5)]
        await asyncio.sleep(0.05)
        rec.gate.set()
        await asyncio.gather(first, *behind)
        await b.close()

    asyncio.run(main())
    assert rec.calls == [["alone"], [f"text {i}" for i in range(5)]]


def test_past_the_queue_bound_a_request_gets_503_and_every_accepted_one_is_answered(clf):
    rec = Recorder(clf, hold=True)

    async def main():
        b = batcher(clf, rec, max_batch_size=4, max_wait_ms=0, max_queue=4, max_texts=4)
        b.start()
        first = asyncio.ensure_future(b.submit(["a"] * 4))  # taken into a batch, which is held
        while not rec.calls:
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(b.submit(["b"] * 4))  # waits: the queue is now full
        await asyncio.sleep(0.05)
        with pytest.raises(ServeError) as e:
            await b.submit(["c"])
        assert e.value.status == 503 and e.value.headers == {"Retry-After": "1"} and "max_queue 4" in e.value.message
        rec.gate.set()
        done = await asyncio.gather(first, second)
        await b.close()
        return done, b.metrics.rejected.labels("tiny")._value.get()

    (first, second), rejected = asyncio.run(main())
    assert first.shape == second.shape == (4, clf.num_labels) and rejected == 1


def test_shutdown_answers_what_was_accepted_and_refuses_what_comes_after(clf):
    rec = Recorder(clf, hold=True)

    async def main():
        b = batcher(clf, rec, max_batch_size=2, max_wait_ms=0)
        b.start()
        accepted = [asyncio.ensure_future(b.submit([f"text {i}"] * 2)) for i in range(5)]
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(b.close())
        await asyncio.sleep(0.05)
        with pytest.raises(ServeError, match="shutting down"):
            await b.submit(["late"])
        rec.gate.set()
        await closing
        return [a.result() for a in accepted]

    answers = asyncio.run(main())
    assert len(answers) == 5 and all(a.shape == (2, clf.num_labels) for a in answers)


def test_a_failed_batch_fails_its_requests_with_500_and_the_server_goes_on(clf):
    calls = []

    def flaky(texts):
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return clf.predict_proba(texts)

    async def main():
        b = batcher(clf, flaky, max_wait_ms=0)
        b.start()
        with pytest.raises(ServeError) as e:
            await b.submit(["x"])
        assert e.value.status == 500 and "boom" in e.value.message
        again = await b.submit(["x"])
        await b.close()
        return again

    assert asyncio.run(main()).shape == (1, clf.num_labels)


def test_metrics_count_requests_batches_and_the_queue(clf):
    with client({"tiny": clf}) as c:
        c.post("/predict", json={"texts": TEXTS})
        c.post("/predict", json={"texts": [1]})
        text = c.get("/metrics").text
    assert 'edgedistill_requests_total{code="200",route="predict"} 1.0' in text
    assert 'edgedistill_requests_total{code="422",route="predict"} 1.0' in text
    assert 'edgedistill_texts_total{model="tiny"} 5.0' in text
    assert 'edgedistill_batch_texts_count{model="tiny"} 1.0' in text and "edgedistill_queue_texts" in text
    assert "edgedistill_request_seconds_bucket" in text


# ------------------------------------------------------------------------------------------------ settings
def test_threads_are_shared_out_and_oversubscription_is_refused():
    assert thread_plan(1, None, cores=8) == 8 and thread_plan(3, None, cores=8) == 2 and thread_plan(4, None, 2) == 1
    assert thread_plan(2, 2, cores=4) == 2
    with pytest.raises(ValueError, match="give --threads 2 or fewer"):
        thread_plan(2, 3, cores=4)
    with pytest.raises(ValueError, match="max_queue=4 is below max_texts=8"):
        ServeConfig(max_queue=4, max_texts=8)
    with pytest.raises(ValueError, match="max_batch_size=0"):
        ServeConfig(max_batch_size=0)


def test_model_names_come_from_the_folder_or_name_equals_path(tiny_package, tmp_path):
    assert model_name(str(tiny_package)) == ("tiny-bert", tiny_package)
    assert model_name(f"spam={tiny_package}") == ("spam", tiny_package)
    assert model_name("x/pkg.zip")[0] == "pkg"
    with pytest.raises(ValueError, match="two packages are named tiny-bert"):
        load_models([str(tiny_package), str(tiny_package)])


# ------------------------------------------------------------------------------------------------ the command
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_the_serve_command_answers_over_a_socket_and_stops_cleanly_on_sigterm(tiny_package, clf):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgedistill.compress.cli", "serve", f"tiny={tiny_package}",
                             "--port", str(port), "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if _get(base + "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        status, out = _get(base + "/v2/models/tiny/infer",
                           {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS[:2]}]})
        assert status == 200
        assert out["outputs"][0]["data"] == [p["label"] for p in clf.predict(TEXTS[:2])]
        assert _get(base + "/predict", {"texts": ["x"] * 300})[0] == 413
    finally:
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=60)
    # uvicorn drains, runs the shutdown, then re-raises the signal: the exit status says SIGTERM ended it
    assert proc.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log and "Traceback" not in log
    assert "1 model(s) x 1 intra-op thread(s)" in log
    access = [json.loads(line) for line in log.splitlines() if line.startswith('{"method"')]
    assert {(a["path"], a["status"]) for a in access} >= {("/v2/models/tiny/infer", 200), ("/predict", 413)}
