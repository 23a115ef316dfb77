"""Dynamic batching for ``edgedistill serve`` (:mod:`edgedistill.runtime.serve`): one model's bounded queue and
inference thread (:class:`Batcher`), the request errors and limits (:class:`ServeError`, :class:`ServeConfig`) and the
server's Prometheus metrics (:class:`Metrics`). The module docstring of ``serve`` says how a batch forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from edgedistill.runtime.classifier import TextClassifier

log = logging.getLogger("edgedistill.runtime.serve")

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServeError(Exception):
    """A request the server refuses: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


@dataclass(frozen=True)
class ServeConfig:
    """How requests are batched and bounded (``edgedistill serve`` options)."""

    max_batch_size: int = 32
    """Texts per session call, at most (a single larger request runs alone)."""
    max_wait_ms: float = 0.0
    """How long the oldest waiting text may wait for batch-mates. 0 (Triton's default too): a batch is what queued
    while the previous one ran, so a lone request never waits and a loaded server still batches; a few ms buys
    fuller batches of a batch-invariant package at that cost in latency."""
    max_queue: int = 1024
    """Texts that may wait per model; past it, 503 with ``Retry-After``."""
    max_texts: int = 256
    """Texts per request."""
    max_chars: int = 100_000
    """Characters per text (the tokenizer truncates to the package's tokens anyway; this bounds the work)."""
    max_body_bytes: int = 8 * 1024 * 1024
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "max_texts", "max_chars", "max_body_bytes", "retry_after_s"):
            if not isinstance(v := getattr(self, name), int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r}: must be an int >= 1")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms={self.max_wait_ms!r}: must be >= 0")
        if self.max_queue < self.max_texts:
            raise ValueError(f"max_queue={self.max_queue} is below max_texts={self.max_texts}: a full-size request "
                             "could never be queued")


# ---------------------------------------------------------------------------------------------------- metrics
class Metrics:
    """The server's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("edgedistill_requests", "HTTP requests answered", ["route", "code"],
                                registry=self.registry)
        self.latency = Histogram("edgedistill_request_seconds", "Time from request to response", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.texts = Counter("edgedistill_texts", "Texts classified", ["model"], registry=self.registry)
        self.batch = Histogram("edgedistill_batch_texts", "Texts per session call batch", ["model"],
                               buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue = Gauge("edgedistill_queue_texts", "Texts waiting for a batch", ["model"], registry=self.registry)
        self.rejected = Counter("edgedistill_rejected", "Requests refused because the queue was full", ["model"],
                                registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------------------------------------------- batching
@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """One model's queue and inference thread (see the module docstring: dynamic batching, bounds, shutdown)."""

    def __init__(self, name: str, clf: TextClassifier, cfg: ServeConfig, metrics: Metrics,
                 run: Callable[[list[str]], np.ndarray] | None = None):
        self.name, self.clf, self.cfg, self.metrics = name, clf, cfg, metrics
        self._run = run or (lambda texts: clf.predict_proba(texts, batch_size=cfg.max_batch_size))
        self._pending: deque[_Job] = deque()
        self.waiting = 0
        """Texts queued, not yet taken into a batch."""
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{name}")

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Probabilities of ``texts`` (rows in their order), once their batch has run."""
        if self._closing:
            raise ServeError(503, "the server is shutting down", {"Retry-After": str(self.cfg.retry_after_s)})
        if self.waiting + len(texts) > self.cfg.max_queue:
            self.metrics.rejected.labels(self.name).inc()
            raise ServeError(503, f"{self.name}: {self.waiting} texts are already waiting (max_queue "
                             f"{self.cfg.max_queue}); retry later", {"Retry-After": str(self.cfg.retry_after_s)})
        if not texts:
            return np.empty((0, self.clf.num_labels), dtype=np.float32)
        job = _Job(texts, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self.waiting += len(texts)
        self.metrics.queue.labels(self.name).set(self.waiting)
        self._wakeup.set()
        return await job.future

    async def close(self) -> None:
        """Answer what is queued, then stop."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            deadline = self._pending[0].arrived + self.cfg.max_wait_ms / 1000
            while (self.waiting < self.cfg.max_batch_size and not self._closing
                   and (left := deadline - time.monotonic()) > 0):
                self._wakeup.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), left)
            batch = self._take()
            texts = [t for job in batch for t in job.texts]
            self.metrics.batch.labels(self.name).observe(len(texts))
            try:
                probs = await loop.run_in_executor(self._executor, self._run, texts)
            except Exception as e:  # noqa: BLE001 - every waiting request hears of it; the loop goes on
                log.exception("%s: a batch of %d texts failed", self.name, len(texts))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(ServeError(500, f"{self.name}: inference failed: {e}"))
                continue
            self.metrics.texts.labels(self.name).inc(len(texts))
            start = 0
            for job in batch:
                if not job.future.done():  # a client that went away leaves a cancelled future
                    job.future.set_result(probs[start:start + len(job.texts)])
                start += len(job.texts)

    def _take(self) -> list[_Job]:
        """The oldest jobs, up to ``max_batch_size`` texts (at least one job, whatever its size)."""
        batch, n = [self._pending.popleft()], 0
        n = len(batch[0].texts)
        while self._pending and n + len(self._pending[0].texts) <= self.cfg.max_batch_size:
            job = self._pending.popleft()
            batch.append(job)
            n += len(job.texts)
        self.waiting -= n
        self.metrics.queue.labels(self.name).set(self.waiting)
        return batch
