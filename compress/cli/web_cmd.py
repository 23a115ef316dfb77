"""``edgedistill web``: a model package as a web folder (transformers.js), and a local server for it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console
from edgedistill.compress.errors import EdgeDistillError


@app.command("web")
@command
def web(
    paths: Annotated[Optional[list[Path]], typer.Argument(
        help="PACKAGE OUTDIR to build a web folder; with --serve: OUTDIR alone (or PACKAGE OUTDIR: build, then "
             "serve).", show_default=False)] = None,
    serve: Annotated[bool, typer.Option("--serve", help="Serve OUTDIR on a local static server.")] = False,
    port: Annotated[Optional[int], typer.Option(help="Port for --serve (0: any free port).")] = None,
    host: Annotated[Optional[str], typer.Option(help="Address for --serve; 0.0.0.0 exposes it to the network.")]
    = None,
) -> None:
    """Run the classifier in a web page or Node.js: transformers.js + ONNX Runtime Web, offline.

    Writes OUTDIR (new, empty, or an earlier web folder, which is replaced): the demo page (index.html),
    model/ for transformers.js, vendor/ (transformers.js and the WASM runtime from npm at pinned versions,
    cached) and classify.mjs for Node.js.
    """
    from edgedistill.runtime.errors import RuntimeBaseError

    paths = paths or []
    if len(paths) not in ((1, 2) if serve else (2,)):
        raise typer.BadParameter("give PACKAGE OUTDIR to build, or --serve OUTDIR to serve a built folder")
    if not serve and (port is not None or host is not None):
        raise typer.BadParameter("--port and --host go with --serve")
    try:
        from edgedistill.runtime import npm, webexport

        if len(paths) == 2:
            package, outdir = paths
            with console.status(f"writing the web folder of {package} (npm files are fetched once, then cached)"):
                out = webexport.export_web(package, outdir)
            build = (out / webexport.BUILD_FILE).read_text()
            console.print(f"[green]✓[/] {out}: index.html, model/ ({_dtype(build)}), vendor/, classify.mjs")
            if not serve:
                console.print(f"  serve it:        edgedistill web --serve {out}\n"
                              f"  Node.js:         cd {out} && {npm.NODE_INSTALL} && "
                              "node classify.mjs < texts.txt")
        if serve:
            _serve(webexport, paths[-1], host, port)
    except RuntimeBaseError as e:  # the runtime's package and web errors: one line, exit 1
        raise EdgeDistillError(str(e)) from e


def _dtype(build_json: str) -> str:
    import json

    return f"dtype {json.loads(build_json)['dtype']}"


def _serve(webexport, folder: Path, host: str | None, port: int | None) -> None:  # noqa: ANN001 (a module)
    kw = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    server = webexport.make_server(folder, **kw)
    url = webexport.server_url(server)
    console.print(f"serving {folder} at [bold]{url}[/] (cross-origin isolated: multi-threaded WASM); Ctrl+C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        server.server_close()
