"""``edgedistill predict``: classify texts with a model package, on the base install (no torch)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, err_console, table
from edgedistill.compress.errors import EdgeDistillError


@app.command("predict")
@command
def predict(
    package: Annotated[Path, typer.Argument(help="A model package: its folder or its .zip.")],
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to classify (or use --input).")] = None,
    input: Annotated[Optional[Path], typer.Option(
        "--input", "-i", help="A file of texts: .txt (one a line), .jsonl or .csv.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write one JSON line per input text here (default with --input: stdout).")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="The text column (.csv) or field (.jsonl).")] = None,
    encoding: Annotated[Optional[str], typer.Option(help="Encoding of the --input file.")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="How many labels to give per text, best first.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Texts per model call.")] = None,
    chunk_size: Annotated[Optional[int], typer.Option(help="Texts read and written at a time.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="onnxruntime intra-op threads.")] = None,
    provider: Annotated[Optional[list[str]], typer.Option(
        help="onnxruntime execution provider, in order of preference (repeatable); default CPU.")] = None,
    fallback: Annotated[bool, typer.Option(help="Run on what is available if a --provider is missing.")] = False,
) -> None:
    """Classify texts given on the command line, or a whole file streamed to JSON Lines."""
    from edgedistill.runtime.errors import RuntimeBaseError

    if bool(texts) == (input is not None):
        raise typer.BadParameter("give either TEXTS or --input FILE (not both, not neither)")
    if input is None and (text_column or encoding or chunk_size):
        raise typer.BadParameter("--text-column, --encoding and --chunk-size go with --input")
    try:
        from edgedistill.runtime.classifier import TextClassifier  # a submodule: imports under any install layout

        with err_console.status(f"loading {package}"):
            clf = TextClassifier.load(package, providers=provider, threads=threads, fallback=fallback)
        predict_kw = {k: v for k, v in (("top_k", top_k), ("batch_size", batch_size)) if v is not None}
        if input is None:
            _predict_texts(clf, texts or [], output, predict_kw)
        else:
            _predict_file(clf, input, output, predict_kw, text_column=text_column, encoding=encoding,
                          chunk_size=chunk_size)
    except (RuntimeBaseError, ValueError) as e:  # the library's input and package errors: one line, exit 1
        raise EdgeDistillError(str(e)) from e


def _record(pred: Any) -> dict[str, Any]:
    """One output line: the best label and score, plus the ranked list when top_k > 1."""
    if isinstance(pred, dict):
        return pred
    return {"label": pred[0]["label"], "score": pred[0]["score"], "top_k": pred}


def _predict_texts(clf: Any, texts: list[str], output: Path | None, kw: dict[str, Any]) -> None:
    preds = [_record(p) for p in clf.predict(texts, **kw)]
    if output is not None:
        with open(output, "w", encoding="utf-8") as f:
            for p in preds:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        console.print(f"[green]✓[/] {len(preds)} predictions written to {output}")
        return
    from rich.markup import escape

    rows = []
    for text, p in zip(texts, preds):
        short = escape(text if len(text) <= 80 else text[:79] + "…") if text.strip() else "[dim](empty)[/]"
        for rank, r in enumerate(p.get("top_k", [p])):
            rows.append((short if rank == 0 else "", escape(r["label"]), f"{r['score']:.4f}"))
    labels = ", ".join(clf.labels)
    console.print(table(escape(f"{Path(clf.source).name} ({labels})"), ["text", "label", "score"], rows))


def _predict_file(clf: Any, path: Path, output: Path | None, kw: dict[str, Any], *, text_column: str | None,
                  encoding: str | None, chunk_size: int | None) -> None:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from edgedistill.runtime import inputs
    from edgedistill.runtime.errors import InputFileError

    fmt = inputs.input_format(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    encoding = encoding or inputs.DEFAULT_ENCODING
    partial = output.with_name(output.name + ".partial") if output is not None else None
    out = open(partial, "w", encoding="utf-8") if partial is not None else sys.stdout
    done = 0
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                        TextColumn("{task.fields[texts]} texts"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err_console, redirect_stdout=False, redirect_stderr=False)
    try:
        with progress:
            task = progress.add_task(f"classifying {path.name}", total=path.stat().st_size, texts=0)
            with progress.open(path, "rt", encoding=encoding, newline=inputs.NEWLINE[fmt], task_id=task) as f:
                texts = inputs.iter_texts(f, fmt, path, text_column or inputs.DEFAULT_TEXT_COLUMN)
                for chunk in inputs.chunks(texts, chunk_size or inputs.CHUNK_SIZE):
                    out.write("".join(json.dumps(_record(p), ensure_ascii=False) + "\n"
                                      for p in clf.predict(chunk, **kw)))
                    done += len(chunk)
                    progress.update(task, texts=done)
    except BaseException as e:
        if partial is not None:  # no half-written file under the name asked for
            out.close()
            partial.unlink(missing_ok=True)
        if isinstance(e, UnicodeDecodeError):
            raise InputFileError(path, f"is not {encoding} text ({e.reason}); pass --encoding") from None
        raise
    if partial is not None:
        out.close()
        os.replace(partial, output)
        err_console.print(f"[green]✓[/] {done} predictions written to {output}")
    else:
        out.flush()
