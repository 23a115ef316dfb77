"""``edgedistill predict``: classify texts with a model package, on the base install (no torch)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
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
        "--input", "-i", help="A file of texts: .txt (one a line), .jsonl, .csv or .parquet.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write one JSON line per input text here (.parquet: a Parquet file); an interrupted "
        "run resumes (default with --input: stdout).")] = None,
    text_column: Annotated[Optional[str], typer.Option(help="The text column (.csv) or field (.jsonl).")] = None,
    encoding: Annotated[Optional[str], typer.Option(help="Encoding of the --input file.")] = None,
    top_k: Annotated[Optional[int], typer.Option(
        help="How many labels to give per text, best first (a multi-label package: at most this many of those that "
        "reach their thresholds).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Texts per model call.")] = None,
    chunk_size: Annotated[Optional[int], typer.Option(
        help="Texts read and written at a time (--engine ray: the rows a worker is handed at a time).")] = None,
    threads: Annotated[Optional[int], typer.Option(
        help="onnxruntime intra-op threads (--engine ray: a worker's, and the CPUs it reserves).")] = None,
    provider: Annotated[Optional[list[str]], typer.Option(
        help="onnxruntime execution provider, in order of preference (repeatable); default CPU.")] = None,
    fallback: Annotated[bool, typer.Option(help="Run on what is available if a --provider is missing.")] = False,
    engine: Annotated[str, typer.Option(
        help="local: this process; ray: a Ray Data job over a cluster (the ray extra), the package loaded once per "
        "worker, --input a file or folder, --output a folder of Parquet files.")] = "local",
    address: Annotated[Optional[str], typer.Option(
        help="--engine ray: the cluster (auto, HEAD:6379, ray://HEAD:10001); default: a new local one.")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="--engine ray: workers, each with its own copy of the package and --threads CPUs (default: as many as "
        "the cluster holds).")] = None,
    keep_column: Annotated[Optional[list[str]], typer.Option(
        help="--engine ray: an input column written beside each prediction, e.g. an id (repeatable).")] = None,
) -> None:
    """Classify texts given on the command line, or a whole file streamed to JSON Lines (or a dataset scored by a
    Ray Data job: --engine ray)."""
    from edgedistill.runtime.errors import RuntimeBaseError

    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine {engine}: choose local or ray")
    if engine == "ray":
        from edgedistill.compress.cli._ray import predict_with_ray

        return predict_with_ray(package, input, output, texts=texts, text_column=text_column, top_k=top_k,
                                batch_size=batch_size, chunk_size=chunk_size, threads=threads, address=address,
                                workers=workers, keep_columns=keep_column, encoding=encoding, provider=provider,
                                fallback=fallback)
    if address or workers or keep_column:
        raise typer.BadParameter("--address, --workers and --keep-column go with --engine ray")
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


def _ranked(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A line's labels with their scores, best first (a row each in the terminal's table)."""
    if "labels" in record:
        return [{"label": label, "score": score} for label, score in zip(record["labels"], record["scores"])]
    return record.get("top_k", [record])


def _predict_texts(clf: Any, texts: list[str], output: Path | None, kw: dict[str, Any]) -> None:
    from edgedistill.runtime.inputs import prediction_records

    preds = prediction_records(clf, clf.predict(texts, **kw))
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
        for rank, r in enumerate(_ranked(p)):
            rows.append((short if rank == 0 else "", escape(r["label"]), f"{r['score']:.4f}"))
        if not _ranked(p):  # a multi-label package: no label reaches its threshold
            rows.append((short, "[dim](none)[/]", ""))
    labels = ", ".join(clf.labels)
    console.print(table(escape(f"{Path(clf.source).name} ({labels})"), ["text", "label", "score"], rows))


def _predict_file(clf: Any, path: Path, output: Path | None, kw: dict[str, Any], *, text_column: str | None,
                  encoding: str | None, chunk_size: int | None) -> None:
    """Stream ``path`` through ``clf`` to JSON Lines (or Parquet, for an ``output`` named ``*.parquet``), one line a
    text as :func:`~edgedistill.runtime.inputs.prediction_records` writes it.

    With ``output``, lines go to ``OUTPUT.partial`` first and the file appears under its name only when every text
    is done. An interrupted run (Ctrl+C, SIGTERM, a full disk) keeps the partial file and, beside it,
    ``OUTPUT.partial.json``: what it was classifying (the input's size and time, the package, the options). The
    same command then resumes after the last whole line. A bad input file leaves nothing behind."""
    import signal

    from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    from edgedistill.runtime import inputs
    from edgedistill.runtime.errors import InputFileError

    fmt = inputs.input_format(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    to_parquet = output is not None and output.suffix.lower() == ".parquet"
    encoding = encoding or inputs.DEFAULT_ENCODING
    column = text_column or inputs.DEFAULT_TEXT_COLUMN
    partial = output.with_name(output.name + ".partial") if output is not None else None
    done = 0
    if partial is not None:
        done = _resumable(partial, _run_key(clf, path, column, kw))
        if done:
            err_console.print(f"resuming: {done:,} texts of {path.name} already classified in {partial}")
    out = open(partial, "a" if done else "w", encoding="utf-8") if partial is not None else sys.stdout
    rows = fmt == "parquet"
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn() if rows else DownloadColumn(),
                        TextColumn("{task.fields[texts]} texts"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err_console, redirect_stdout=False, redirect_stderr=False)
    previous = signal.signal(signal.SIGTERM, _interrupt) if partial is not None else None
    try:
        with progress, contextlib.ExitStack() as stack:
            if rows:
                task = progress.add_task(f"classifying {path.name}", total=inputs.parquet_rows(path), texts=done)
                texts = inputs.iter_parquet(path, column)
            else:
                task = progress.add_task(f"classifying {path.name}", total=path.stat().st_size, texts=done)
                f = stack.enter_context(progress.open(path, "rt", encoding=encoding, newline=inputs.NEWLINE[fmt],
                                                      task_id=task))
                texts = inputs.iter_texts(f, fmt, path, column)
            texts = itertools.islice(texts, done, None)
            if rows:
                progress.update(task, completed=done)
            for chunk in inputs.chunks(texts, chunk_size or inputs.CHUNK_SIZE):
                out.write("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                  for r in inputs.prediction_records(clf, clf.predict(chunk, **kw))))
                out.flush()
                done += len(chunk)
                progress.update(task, texts=done, **({"advance": len(chunk)} if rows else {}))
    except (InputFileError, UnicodeDecodeError) as e:
        if partial is not None:  # a bad input: nothing half-written is kept (a fixed file is another input)
            out.close()
            partial.unlink(missing_ok=True)
            _key_file(partial).unlink(missing_ok=True)
        if isinstance(e, UnicodeDecodeError):
            raise InputFileError(path, f"is not {encoding} text ({e.reason}); pass --encoding") from None
        raise
    except (KeyboardInterrupt, OSError) as e:
        if partial is None:
            raise
        out.close()
        err_console.print(f"[yellow]stopped[/]: {done:,} predictions kept in {partial}; the same command resumes "
                          "from there", highlight=False)
        if isinstance(e, KeyboardInterrupt):
            raise typer.Exit(130) from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if partial is None:
        out.flush()
        return
    out.close()
    if to_parquet:
        tmp = output.with_name(output.name + ".tmp")
        inputs.write_parquet(partial, tmp)
        os.replace(tmp, output)
        partial.unlink()
    else:
        os.replace(partial, output)
    _key_file(partial).unlink(missing_ok=True)
    err_console.print(f"[green]✓[/] {done} predictions written to {output}")


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops a long run as Ctrl+C does: the partial output is kept for a resume."""
    raise KeyboardInterrupt


def _key_file(partial: Path) -> Path:
    return partial.with_name(partial.name + ".json")


def _run_key(clf: Any, path: Path, column: str, kw: dict[str, Any]) -> dict[str, Any]:
    """What a partial output was made from: the input file (by size and modification time), the package (its
    manifest, which holds every file's sha256) and the options that change a line."""
    st = path.stat()
    manifest = json.dumps(clf.manifest, sort_keys=True) if clf.manifest is not None else clf.source
    return {"input": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "package": hashlib.sha256(manifest.encode()).hexdigest(), "target": clf.target,
            "text_column": column, "top_k": kw.get("top_k")}


def _resumable(partial: Path, key: dict[str, Any]) -> int:
    """Whole lines already in ``partial`` when it was made from ``key`` (its torn last line cut off); else 0, and
    ``key`` is recorded for the run that starts."""
    key_file = _key_file(partial)
    try:
        same = json.loads(key_file.read_text()) == key and partial.is_file()
    except (OSError, json.JSONDecodeError):
        same = False
    if not same:
        key_file.write_text(json.dumps(key) + "\n")
        return 0
    data = partial.read_bytes()
    whole = data.rfind(b"\n") + 1
    if whole < len(data):
        with open(partial, "r+b") as f:
            f.truncate(whole)
    return data.count(b"\n", 0, whole)
