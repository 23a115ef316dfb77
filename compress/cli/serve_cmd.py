"""``edgedistill serve``: model packages behind HTTP with dynamic batching (the ``serve`` extra; no torch)."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, err_console, make_config
from edgedistill.compress.errors import EdgeDistillError


@app.command("serve")
@command
def serve(
    packages: Annotated[list[str], typer.Argument(
        help="Model packages (folder or .zip), each PATH or NAME=PATH; served at /v2/models/NAME.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    threads: Annotated[Optional[int], typer.Option(
        help="onnxruntime intra-op threads per model (default: the cores shared out among the models).")] = None,
    max_batch_size: Annotated[Optional[int], typer.Option(help="Texts per session call, at most.")] = None,
    max_wait_ms: Annotated[Optional[float], typer.Option(
        help="How long the oldest waiting text waits for batch-mates.")] = None,
    max_queue: Annotated[Optional[int], typer.Option(
        help="Texts that may wait per model; past it: 503 with Retry-After.")] = None,
    max_texts: Annotated[Optional[int], typer.Option(help="Texts per request (413 past it).")] = None,
    max_chars: Annotated[Optional[int], typer.Option(help="Characters per text (413 past it).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log each request as one JSON line.")] = True,
) -> None:
    """Serve model packages over HTTP: Open Inference Protocol v2 routes, POST /predict, /metrics (Prometheus)."""
    try:
        import uvicorn

        from edgedistill.runtime.serve import ServeConfig, Server, load_models
    except ImportError as e:
        raise EdgeDistillError(f"edgedistill serve needs the serve extra ({e.name} is missing): "
                               "pip install 'edgedistill[serve]'") from None
    try:
        cfg = make_config(ServeConfig, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
                          max_texts=max_texts, max_chars=max_chars)
        with err_console.status(f"loading {len(packages)} package(s)"):
            models, per_model = load_models(packages, threads)
    except ValueError as e:
        raise EdgeDistillError(str(e)) from e
    server = Server(models, cfg)
    for name, clf in models.items():
        err_console.print(f"[bold]{name}[/]: {clf}", highlight=False, soft_wrap=True)
    err_console.print(f"{len(models)} model(s) x {per_model} intra-op thread(s), one inference thread each; batches "
                      f"of up to {cfg.max_batch_size} texts or {cfg.max_wait_ms:g} ms; up to {cfg.max_queue} texts "
                      f"waiting per model. http://{host}:{port}/v2/models/{next(iter(models))}/infer, /predict, "
                      "/metrics", highlight=False, soft_wrap=True)
    if access_log:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("edgedistill.serve.access")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    config = uvicorn.Config(server.app(), host=host, port=port, access_log=False, log_level="info",
                            timeout_graceful_shutdown=30)
    uv = uvicorn.Server(config)
    original = uv.handle_exit

    def handle_exit(sig, frame) -> None:  # readiness turns 503 the moment shutdown begins
        server.begin_shutdown()
        original(sig, frame)

    uv.handle_exit = handle_exit  # type: ignore[method-assign]
    uv.run()
