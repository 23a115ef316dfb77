"""``edgedistill serve``: model packages behind HTTP, with dynamic batching (the optional extra ``serve``).

An ASGI app on Starlette, run by uvicorn. Routes: the KServe / Open Inference Protocol v2 ones, so that its clients
work unchanged, and one plain route:

- ``GET /v2/health/live``, ``GET /v2/health/ready`` (503 once shutdown has begun), ``GET /v2`` (server metadata);
- ``GET /v2/models/{name}`` (model metadata: its input and outputs), ``GET /v2/models/{name}/ready``;
- ``POST /v2/models/{name}/infer``: one ``BYTES`` input of shape ``[n]`` (or ``[n, 1]``), any name; outputs
  ``label`` (``BYTES [n]``), ``score`` (``FP32 [n]``) and ``probabilities`` (``FP32 [n, labels]``, row-major), or
  those the request's ``outputs`` names; in JSON, or in the binary tensor data extension (Triton's; what
  tritonclient sends and asks for by default) where the request uses it. A multi-label package (config.json's
  ``task``) gives ``label`` (``BYTES [n]``: the labels that reach their thresholds, best first, joined by ``|``;
  empty for none), ``predicted`` (``BOOL [n, labels]``) and ``probabilities`` (its sigmoids), and no ``score``;
- ``POST /predict`` ``{"texts": [...], "model": name, "top_k": k}`` -> ``{"model", "predictions"}``, each prediction
  as :meth:`TextClassifier.predict <edgedistill.runtime.classifier.TextClassifier.predict>` gives it (``model`` may
  be left out when one model is served; a multi-label package: a list of labels per text, as ``predict`` says);
- ``GET /metrics``: Prometheus text format (requests, latency, texts per batch, texts waiting).

**Dynamic batching.** Each model has one queue and one inference thread. While a batch runs, requests queue; the
next batch takes them, up to ``max_batch_size`` texts, once the queue holds that many or the oldest has waited
``max_wait_ms`` (default 0: at once), whichever comes first; each request gets its own rows back. A request is never
split, and one larger than the batch runs alone (the classifier batches it). A batch-dependent package (dynamic
int8) still runs one text per session call, as the :class:`TextClassifier` it is loaded in decides: batching then
saves only the queueing, never changes an answer.

**Bounds.** At most ``max_queue`` texts wait per model: a request that would pass it gets 503 with ``Retry-After``
(no unbounded backlog). A request of more than ``max_texts`` texts, a text of more than ``max_chars`` characters,
or a body of more than ``max_body_bytes`` gets 413; malformed JSON or shapes 400; texts that are not strings 422;
an unknown model 404. Every error is ``{"error": "..."}``, one line naming what to change.

**Shutdown.** On SIGTERM / SIGINT, uvicorn stops accepting connections and waits for the requests it accepted; the
batchers keep running until those are answered, then finish what is left in their queues and stop. Readiness turns
503 as soon as shutdown begins, so a load balancer stops sending.

**Threads.** Each model runs on ``threads`` intra-op threads in its one inference thread; ``threads`` x models is
kept at or under the cores (default: the cores shared out), so that sessions do not fight for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.runtime.batching import Batcher, Metrics, ServeConfig, ServeError
from edgedistill.runtime.classifier import TextClassifier

__all__ = ["Batcher", "Metrics", "ServeConfig", "ServeError", "Server", "load_models", "model_name", "thread_plan"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("edgedistill.serve.access")


def thread_plan(models: int, threads: int | None, cores: int | None = None) -> int:
    """Intra-op threads per model: ``threads``, or the cores shared out; raises where models x threads would
    oversubscribe the cores."""
    if cores is None:
        from edgedistill.runtime.bench import available_cpus

        cores = available_cpus()
    if threads is None:
        return max(1, cores // max(1, models))
    if threads * models > cores:
        raise ValueError(f"threads={threads} x {models} model(s) = {threads * models} intra-op threads on {cores} "
                         f"cores: they would fight for them; give --threads {max(1, cores // models)} or fewer")
    return threads


# ---------------------------------------------------------------------------------------------------- the app
def _texts(value: Any, cfg: ServeConfig, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ServeError(400, f"{where} must be a list of strings")
    if len(value) > cfg.max_texts:
        raise ServeError(413, f"{where}: {len(value)} texts; at most {cfg.max_texts} per request (max_texts)")
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise ServeError(422, f"{where}[{i}] is {type(text).__name__}, not a string")
        if len(text) > cfg.max_chars:
            raise ServeError(413, f"{where}[{i}] has {len(text):,} characters; at most {cfg.max_chars:,} "
                             "(max_chars)")
    return value


def _flatten(data: Any) -> list[Any]:
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _unpack_bytes(binary: bytes, size: Any) -> list[str]:
    """A BYTES tensor of the binary data extension: each element a 4-byte little-endian length, then its bytes."""
    if not isinstance(size, int) or size != len(binary):
        raise ServeError(400, f"binary_data_size {size!r} does not match the {len(binary)} bytes after the JSON header")
    out, at = [], 0
    while at < len(binary):
        if at + 4 > len(binary):
            raise ServeError(400, "a BYTES element is cut short in the binary data")
        length = int.from_bytes(binary[at:at + 4], "little")
        element = binary[at + 4:at + 4 + length]
        if len(element) != length:
            raise ServeError(400, "a BYTES element is cut short in the binary data")
        try:
            out.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise ServeError(422, f"text {len(out)} is not UTF-8") from None
        at += 4 + length
    return out


def _pack_bytes(values: Sequence[str]) -> bytes:
    return b"".join(len(b).to_bytes(4, "little") + b for b in (v.encode("utf-8") for v in values))


def _output_specs(clf: TextClassifier, n: int) -> dict[str, tuple[str, list[int]]]:
    """The v2 outputs a model gives for ``n`` texts (-1: any), ``{name: (datatype, shape)}``: label, score and
    probabilities; a multi-label one: label (its labels joined by ``|``), predicted and probabilities."""
    k = clf.num_labels
    if clf.multi_label:
        return {"label": ("BYTES", [n]), "predicted": ("BOOL", [n, k]), "probabilities": ("FP32", [n, k])}
    return {"label": ("BYTES", [n]), "score": ("FP32", [n]), "probabilities": ("FP32", [n, k])}


def _output_values(clf: TextClassifier, probs: np.ndarray) -> dict[str, Any]:
    """Each v2 output of :func:`_output_types` for rows of ``predict_proba``."""
    if clf.multi_label:
        return {"label": ["|".join(p["label"] for p in preds) for preds in clf.rank(probs)],
                "predicted": clf.decide(probs), "probabilities": probs}
    n = len(probs)
    best = probs.argmax(axis=1) if n else np.empty(0, dtype=np.int64)
    return {"label": [clf.labels[j] for j in best], "score": probs[np.arange(n), best], "probabilities": probs}


class Server:
    """The served models and the ASGI app around them (:meth:`app`)."""

    def __init__(self, models: Mapping[str, TextClassifier], cfg: ServeConfig | None = None):
        if not models:
            raise ValueError("serve at least one model package")
        self.cfg = cfg or ServeConfig()
        self.metrics = Metrics()
        self.models = dict(models)
        self.batchers = {name: Batcher(name, clf, self.cfg, self.metrics) for name, clf in self.models.items()}
        self.ready = False

    # -------------------------------------------------------------------------------- lifecycle
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any):
        for b in self.batchers.values():
            b.start()
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            await asyncio.gather(*(b.close() for b in self.batchers.values()))

    def begin_shutdown(self) -> None:
        """Readiness answers 503 from now on (uvicorn then stops accepting and drains)."""
        self.ready = False

    # -------------------------------------------------------------------------------- handlers
    def _model(self, name: str | None) -> tuple[str, Batcher]:
        if name is None:
            if len(self.batchers) == 1:
                return next(iter(self.batchers.items()))
            raise ServeError(400, f"name the model: one of {', '.join(self.batchers)}")
        if name not in self.batchers:
            raise ServeError(404, f"no model {name!r}; served: {', '.join(self.batchers)}")
        return name, self.batchers[name]

    async def predict(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or "texts" not in body:
            raise ServeError(400, 'the body must be {"texts": [...]} (and optionally "model", "top_k")')
        name, batcher = self._model(body.get("model"))
        top_k = body.get("top_k", 1)
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ServeError(400, f"top_k={top_k!r}: must be an int >= 1, or null for every label")
        texts = _texts(body["texts"], self.cfg, "texts")
        return {"model": name, "predictions": batcher.clf.rank(await batcher.submit(texts), top_k)}

    def metadata(self, name: str) -> dict[str, Any]:
        name, b = self._model(name)
        clf = b.clf
        multi = {"thresholds": clf.thresholds.tolist()} if clf.multi_label else {}
        return {"name": name, "versions": [str((clf.manifest or {}).get("version", "1"))], "platform": "onnxruntime",
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": key, "datatype": datatype, "shape": shape}
                            for key, (datatype, shape) in _output_specs(clf, -1).items()],
                "parameters": {"labels": clf.labels, "max_length": clf.max_length, "variant": clf.config.variant,
                               "task": clf.config.task, **multi}}

    async def infer(self, name: str, body: Any, binary: bytes = b"") -> tuple[dict[str, Any], bytes]:
        """An Open Inference Protocol v2 request -> its JSON response and the binary data after it (empty
        unless an output asks for the binary tensor data extension, as tritonclient does by default)."""
        name, batcher = self._model(name)
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or len(body["inputs"]) != 1:
            raise ServeError(400, 'an inference request has "inputs": one BYTES tensor of texts')
        tensor = body["inputs"][0]
        size = (tensor.get("parameters") or {}).get("binary_data_size") if isinstance(tensor, dict) else None
        if not isinstance(tensor, dict) or tensor.get("datatype") != "BYTES" or ("data" not in tensor and size is None):
            raise ServeError(400, 'the input must be {"name", "shape", "datatype": "BYTES", "data": [...]}')
        data = _flatten(tensor["data"]) if size is None else _unpack_bytes(binary, size)
        shape = tensor.get("shape")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
                or int(np.prod(shape)) != len(data) or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1)):
            raise ServeError(400, f"input shape {shape!r} must be [n] or [n, 1], with n = the {len(data)} texts given")
        texts = _texts(data, self.cfg, f"inputs[0].data ({tensor.get('name', 'text')})")
        requested = [o for o in body.get("outputs") or [] if isinstance(o, dict)]
        clf = batcher.clf
        specs = _output_specs(clf, len(texts))
        known = tuple(specs)
        if unknown := [o.get("name") for o in requested if o.get("name") not in known]:
            raise ServeError(400, f"unknown outputs {unknown}; this model gives {', '.join(known)}")
        all_binary = bool((body.get("parameters") or {}).get("binary_data_output"))
        wanted = {o["name"]: bool((o.get("parameters") or {}).get("binary_data", all_binary)) for o in requested} \
            or dict.fromkeys(known, all_binary)
        probs = await batcher.submit(texts)
        values = _output_values(clf, probs)
        outputs, blobs = [], []
        for key, as_binary in wanted.items():
            datatype, shape = specs[key]
            out: dict[str, Any] = {"name": key, "datatype": datatype, "shape": shape}
            if as_binary:
                blob = _pack_bytes(values[key]) if key == "label" else np.ascontiguousarray(
                    values[key], dtype="<f4" if datatype == "FP32" else np.bool_).tobytes()
                out["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            else:
                out["data"] = values[key] if key == "label" else (
                    np.asarray(values[key]).reshape(-1).tolist() if datatype == "BOOL"
                    else np.asarray(values[key], dtype=np.float32).reshape(-1).astype(float).tolist())
            outputs.append(out)
        response = {"model_name": name, "outputs": outputs}
        if "id" in body:
            response["id"] = body["id"]
        return response, b"".join(blobs)

    # -------------------------------------------------------------------------------- the ASGI app
    def app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        cfg = self.cfg

        async def raw_body(request: Request) -> bytes:
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cfg.max_body_bytes:
                raise ServeError(413, f"the body is {int(declared):,} bytes; at most {cfg.max_body_bytes:,}")
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > cfg.max_body_bytes:
                    raise ServeError(413, f"the body is over {cfg.max_body_bytes:,} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        async def body_of(request: Request) -> Any:
            return _json(await raw_body(request))

        async def infer(request: Request) -> Response:
            raw = await raw_body(request)
            header = request.headers.get("inference-header-content-length")
            if header is not None and (not header.isdigit() or int(header) > len(raw)):
                raise ServeError(400, f"Inference-Header-Content-Length {header!r} does not fit the body")
            cut = int(header) if header is not None else len(raw)
            out, blobs = await self.infer(request.path_params["name"], _json(raw[:cut]), raw[cut:])
            if not blobs:
                return JSONResponse(out)
            head = json.dumps(out).encode()
            return Response(head + blobs, media_type="application/octet-stream",
                            headers={"Inference-Header-Content-Length": str(len(head))})

        def handler(route: str, fn):
            async def endpoint(request: Request) -> Response:
                start = time.perf_counter()
                try:
                    result = fn(request)
                    result = await result if inspect.isawaitable(result) else result
                    response: Response = result if isinstance(result, Response) else JSONResponse(result)
                except ServeError as e:
                    response = JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)
                self.metrics.requests.labels(route, str(response.status_code)).inc()
                self.metrics.latency.labels(route).observe(time.perf_counter() - start)
                return response
            return endpoint

        async def ready(request: Request) -> Response:
            return JSONResponse({"ready": self.ready}, status_code=200 if self.ready else 503)

        async def model_ready(request: Request) -> dict[str, Any]:
            name, _ = self._model(request.path_params["name"])
            if not self.ready:
                raise ServeError(503, "the server is not ready")
            return {"name": name, "ready": True}

        async def metrics(request: Request) -> Response:
            payload, content_type = self.metrics.render()
            return Response(payload, media_type=content_type)

        from edgedistill import __version__

        routes = [
            Route("/v2/health/live", lambda r: JSONResponse({"live": True})),
            Route("/v2/health/ready", ready),
            Route("/v2", lambda r: JSONResponse({"name": "edgedistill", "version": __version__, "extensions": []})),
            Route("/v2/models/{name}", handler("metadata", lambda r: self.metadata(r.path_params["name"]))),
            Route("/v2/models/{name}/versions/{version}",
                  handler("metadata", lambda r: self.metadata(r.path_params["name"]))),
            Route("/v2/models/{name}/ready", handler("ready", model_ready)),
            Route("/v2/models/{name}/infer", handler("infer", infer), methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", handler("infer", infer), methods=["POST"]),
            Route("/predict", handler("predict", lambda r: self._predict(r, body_of)), methods=["POST"]),
            Route("/metrics", metrics),
        ]
        return AccessLog(Starlette(routes=routes, lifespan=self.lifespan))

    async def _predict(self, request, body_of) -> dict[str, Any]:
        return await self.predict(await body_of(request))


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ServeError(400, f"the body is not JSON: {e}") from None


class AccessLog:
    """ASGI middleware: one structured (JSON) access-log line per HTTP request."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [0]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("", 0)
            access_log.info(json.dumps({"method": scope["method"], "path": scope["path"], "status": status[0],
                                        "ms": round((time.perf_counter() - start) * 1000, 2), "client": client[0]}))


# ---------------------------------------------------------------------------------------------------- loading
def model_name(spec: str) -> tuple[str, Path]:
    """``NAME=PATH`` or ``PATH`` (the name: the package folder's or zip's name)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
    else:
        path = spec
        name = Path(spec).name.removesuffix(".zip")
    if not name or "/" in name:
        raise ValueError(f"{spec!r}: a model name is a plain word (give NAME=PATH)")
    return name, Path(path)


def load_models(specs: Sequence[str], threads: int | None = None) -> tuple[dict[str, TextClassifier], int]:
    """The packages of ``specs`` (``NAME=PATH`` or ``PATH``), each on its share of the cores; returns them and the
    intra-op threads each got."""
    named = [model_name(s) for s in specs]
    names = [n for n, _ in named]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"two packages are named {', '.join(dupes)}: give NAME=PATH")
    per_model = thread_plan(len(named), threads)
    return {name: TextClassifier.load(path, threads=per_model) for name, path in named}, per_model
