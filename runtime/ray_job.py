"""Score a dataset too large for one machine with Ray Data: one package load per worker (the optional extra ``ray``).

:func:`score` reads the texts (``.parquet``, ``.jsonl``, ``.csv`` or ``.txt`` files through Ray Data's readers, or
a ``ray.data.Dataset`` the caller built), cuts them into blocks of ``rows_per_batch`` rows, runs the blocks through
``map_batches`` on a pool of actors, each of which loads the package once
(:class:`~edgedistill.runtime.classifier.TextClassifier`) and keeps it for every block it is given, and writes
Parquet files::

    from edgedistill.runtime.ray_job import RayJobConfig, score

    result = score(RayJobConfig(package="/shared/movie-sentiment/package", input="s3://bucket/reviews/",
                                output="s3://bucket/scores/", address="auto"))

**Output.** One row a text: the text column, the ``keep_columns`` (an id to join on) and the prediction columns
of ``edgedistill predict --output X.parquet``: ``label`` and ``score`` (and ``top_k``, a list of ``{label, score}``,
where ``top_k > 1``); a multi-label package's ``labels`` and ``scores`` lists. Read from files, rows keep the
input's order: the folder read in file-name order (``pyarrow.parquet.read_table(folder)``,
``pandas.read_parquet(folder)``) gives the input's rows in order. A caller's dataset keeps the order its own
``DataContext`` says (``execution_options.preserve_order``); keep an id column to join on.

**Threads and CPUs.** Each actor reserves ``threads`` CPUs and runs its session on ``threads`` intra-op threads,
so threads x workers never passes the CPUs the cluster declares. ``workers`` defaults to as many as fit beside
:data:`IO_RESERVE`, one CPU left for Ray Data's own tasks (listing the files takes a task of one CPU; reading and
writing take :data:`IO_CPUS` each): actors holding every CPU would leave those tasks none, and the job would wait
forever. A local cluster this module starts declares the machine's cores plus that one, so that every core gets a
worker.

**Answers.** Every text gets what ``TextClassifier.predict`` gives it in one process: a batch-dependent package
(dynamic int8) still runs one text per session call, as the classifier decides, whatever blocks Ray hands it.

Ray is imported inside the functions only, so the base runtime never needs it; without it :func:`score` raises an
``ImportError`` naming ``pip install 'edgedistill[ray]'``.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedistill.runtime.inputs import DEFAULT_TEXT_COLUMN, FORMATS, input_format

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgedistill[ray]'"
IO_CPUS = 0.1
"""CPUs a read or write task reserves: it parses or encodes a block, light next to the model."""
IO_RESERVE = 1.0
"""CPUs the actors leave free for Ray Data's own tasks: listing the files (a task of one CPU), reading, writing.
Actors holding every CPU would leave them none, and the job would never start."""
PREDICTION_COLUMNS = ("label", "score", "top_k", "labels", "scores")


@dataclass
class RayJobConfig:
    """A scoring job: which package, which texts, where the answers go, and how many workers score them."""

    package: str
    """The model package (folder or ``.zip``), at a path every node can read (a shared filesystem, or the same
    path on each node)."""
    input: str = ""
    """A file or a folder of files of one format, on any filesystem Ray Data reads (``s3://``, ``gs://``, a local
    path every node sees). Unused where :func:`score` is given a dataset."""
    output: str = ""
    """The folder the Parquet files are written to; it must not hold any yet."""
    input_format: str | None = None
    """``parquet``, ``jsonl``, ``csv`` or ``txt``; None: from ``input``'s suffix, or its files' (a local folder)."""
    text_column: str = DEFAULT_TEXT_COLUMN
    """The column (``.parquet``, ``.csv``) or field (``.jsonl``) holding the texts; a ``.txt`` file's lines are its
    ``text`` column."""
    keep_columns: tuple[str, ...] = ()
    """Input columns written beside the text and the prediction (an id to join the answers back on)."""
    workers: int | None = None
    """Actors, each with its own copy of the package; None: as many as the cluster's CPUs hold at ``threads``
    each."""
    threads: int = 1
    """CPUs each actor reserves, and its session's intra-op threads."""
    rows_per_batch: int = 4096
    """Rows an actor is handed at a time (a block, one ``map_batches`` call): big enough that Ray's cost per call
    is small next to the model's, small enough that the last blocks spread over the workers."""
    batch_size: int = 32
    """Texts per session call, as ``TextClassifier.predict``'s ``batch_size``."""
    top_k: int | None = None
    """As ``edgedistill predict --top-k``: None or 1 gives the best label (a multi-label package: those that reach
    their thresholds); more adds the ranked ``top_k`` column (at most that many labels, multi-label)."""
    address: str | None = None
    """The Ray cluster: ``auto`` (the one ``ray start`` made this machine part of), ``HEAD:6379``, or
    ``ray://HEAD:10001`` (Ray Client); None: the one this process is connected to already, else a new local one."""

    def __post_init__(self) -> None:
        self.keep_columns = tuple(self.keep_columns)
        for name in ("workers", "threads", "rows_per_batch", "batch_size", "top_k"):
            value = getattr(self, name)
            if value is None and name in ("workers", "top_k"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an int >= 1" + (" or None" if name in ("workers", "top_k")
                                                                               else ""))
        if self.input_format is not None and self.input_format not in set(FORMATS.values()):
            raise ValueError(f"input_format={self.input_format!r}: must be one of "
                             f"{', '.join(sorted(set(FORMATS.values())))}, or None (from the suffix)")
        if clash := sorted(set(self.keep_columns) & {*PREDICTION_COLUMNS, self.text_column}):
            raise ValueError(f"keep_columns={list(self.keep_columns)}: {', '.join(clash)} would clash with the "
                             "text or the prediction's columns (the text column is always kept)")
        if not self.output:
            raise ValueError("output='': name the folder the Parquet files go to")


@dataclass(frozen=True)
class RayJobResult:
    """What :func:`score` did: rows written, by how many workers, in how long."""

    output: str
    rows: int
    workers: int
    threads: int
    seconds: float


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401  (ray[data]: pyarrow, pandas, fsspec)
    except ImportError as e:
        raise ImportError(f"scoring with Ray Data needs ray[data] ({e.name} is missing): {INSTALL}") from None
    return ray


class Scorer:
    """The ``map_batches`` callable: loads the package once per actor, then scores each batch (a pyarrow Table)."""

    def __init__(self, package: str, threads: int, text_column: str, keep_columns: Sequence[str], batch_size: int,
                 top_k: int | None):
        from edgedistill.runtime.classifier import TextClassifier

        self.clf = TextClassifier.load(package, threads=threads)
        self.text_column, self.keep_columns = text_column, list(keep_columns)
        self.batch_size, self.top_k = batch_size, top_k or 1

    def __call__(self, batch: Any) -> Any:
        from edgedistill.runtime.inputs import prediction_table

        if missing := [c for c in (self.text_column, *self.keep_columns) if c not in batch.column_names]:
            raise ValueError(f"the input has no column {missing[0]!r} (columns: {', '.join(batch.column_names)}); "
                             "name the text column with text_column (--text-column), the kept ones with keep_columns")
        texts = batch.column(self.text_column).to_pylist()
        preds = self.clf.predict(texts, batch_size=self.batch_size, top_k=self.top_k) if texts else []
        out = batch.select([self.text_column, *self.keep_columns])
        table = prediction_table(self.clf, preds, ranked=self.top_k > 1)
        for name in table.column_names:
            out = out.append_column(name, table.column(name))
        return out


def read(cfg: RayJobConfig) -> Any:
    """The dataset of ``cfg.input`` through Ray Data's reader for its format (the text column as strings), its
    rows kept in the input's order through the job."""
    ray = _ray()
    if not cfg.input:
        raise ValueError("input='': name the file or folder to score (or give score() a dataset)")
    fmt = cfg.input_format or _format_of(cfg.input)
    if fmt == "txt" and cfg.text_column != DEFAULT_TEXT_COLUMN:
        raise ValueError(f"text_column={cfg.text_column!r}: a .txt file's lines are its {DEFAULT_TEXT_COLUMN!r} column")
    context = ray.data.DataContext.get_current()  # a reader copies it into its dataset: changed for this one only
    saved = {"preserve_order": context.execution_options.preserve_order,
             "use_datasource_v2": getattr(context, "use_datasource_v2", None)}
    context.execution_options.preserve_order = True
    if saved["use_datasource_v2"] is not None:  # Ray >= 2.5x: a Parquet read task of that path reads its files
        context.use_datasource_v2 = False       # at once, their rows interleaved; the first path reads them in turn
    try:
        return _reader(ray, fmt, cfg)
    finally:
        context.execution_options.preserve_order = saved["preserve_order"]
        if saved["use_datasource_v2"] is not None:
            context.use_datasource_v2 = saved["use_datasource_v2"]


def _reader(ray: Any, fmt: str, cfg: RayJobConfig) -> Any:
    import pyarrow as pa
    from pyarrow import csv

    if fmt == "parquet":
        return ray.data.read_parquet(cfg.input, **_io_cpus(ray.data.read_parquet))
    if fmt == "jsonl":
        return ray.data.read_json(cfg.input, file_extensions=None, **_io_cpus(ray.data.read_json))
    if fmt == "csv":
        options = csv.ConvertOptions(column_types={cfg.text_column: pa.string()}, strings_can_be_null=False)
        return ray.data.read_csv(cfg.input, convert_options=options, **_io_cpus(ray.data.read_csv))
    # .txt as edgedistill predict reads it (Ray's read_text differs across versions on a file's last newline)
    files = ray.data.read_binary_files(cfg.input, file_extensions=None, include_paths=True,
                                       **_io_cpus(ray.data.read_binary_files))
    return files.map_batches(_txt_lines, batch_size=1, batch_format="pyarrow", num_cpus=IO_CPUS)


def _io_cpus(reader: Any) -> dict[str, Any]:
    """A reader's CPUs a task, :data:`IO_CPUS`: a named parameter from Ray 2.5x (``ray_remote_args`` is deprecated
    there, and gone in 2.64), ``ray_remote_args`` before."""
    if "num_cpus" in inspect.signature(reader).parameters:
        return {"num_cpus": IO_CPUS}
    return {"ray_remote_args": {"num_cpus": IO_CPUS}}


def _txt_lines(batch: Any) -> Any:
    """A .txt file's bytes -> its texts, one a line, as :func:`edgedistill.runtime.inputs.iter_texts` reads them."""
    import io

    import pyarrow as pa

    from edgedistill.runtime.inputs import DEFAULT_ENCODING, iter_texts

    texts: list[str] = []
    for data, path in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist()):
        texts.extend(iter_texts(io.StringIO(data.decode(DEFAULT_ENCODING), newline="\n"), "txt", path))
    return pa.table({DEFAULT_TEXT_COLUMN: pa.array(texts, pa.string())})


def _format_of(path: str) -> str:
    """The format of a file's suffix, or of the files in a local folder (one format, or an error)."""
    p = Path(path)
    if p.suffix.lower() in FORMATS:
        return input_format(p)
    if p.is_dir():
        found = sorted({FORMATS[f.suffix.lower()] for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FORMATS})
        if len(found) == 1:
            return found[0]
        held = f"holds files of {', '.join(found)}" if found else "holds no files of a known type"
        raise ValueError(f"{path}: {held}; name the format with input_format (--format)")
    return input_format(p)  # raises, naming the known suffixes


def connect(address: str | None) -> Any:
    """The Ray module, connected: to the cluster this process is connected to already, else to ``address``, else
    to a new local cluster of this machine's cores (plus :data:`IO_RESERVE` for Ray Data's own tasks)."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if address is None:
        from edgedistill.runtime.bench import available_cpus

        ray.init(address="local", num_cpus=available_cpus() + int(IO_RESERVE))
    else:
        ray.init(address=address)
    return ray


def plan_workers(cluster_cpus: float, threads: int, workers: int | None) -> int:
    """Actors of ``threads`` CPUs each: ``workers``, or as many as ``cluster_cpus`` hold beside :data:`IO_RESERVE`;
    raises where they would leave Ray Data's own tasks no room (the job would wait for CPUs that never come)."""
    fit = int((cluster_cpus - IO_RESERVE) // threads)
    if fit < 1:
        raise ValueError(f"threads={threads}: the cluster has {cluster_cpus:g} CPUs; one worker needs {threads} and "
                         f"Ray Data's listing, reading and writing {IO_RESERVE:g} more")
    if workers is None:
        return fit
    if workers > fit:
        raise ValueError(f"workers={workers} x threads={threads} = {workers * threads} CPUs: the cluster has "
                         f"{cluster_cpus:g}, and Ray Data's listing, reading and writing need {IO_RESERVE:g} beside "
                         f"the workers; give workers={fit} or fewer")
    return workers


def score(cfg: RayJobConfig, dataset: Any = None) -> RayJobResult:
    """Score ``cfg.input`` (or ``dataset``, a ``ray.data.Dataset``) into Parquet files under ``cfg.output``."""
    from edgedistill.runtime.package import verify_package

    _ray()
    verify_package(cfg.package)  # a missing or altered package fails here, once, not in every actor
    ray = connect(cfg.address)
    _check_output(cfg.output)
    workers = plan_workers(ray.cluster_resources().get("CPU", 0), cfg.threads, cfg.workers)
    ds = read(cfg) if dataset is None else dataset
    start = time.perf_counter()
    # a block goes to one actor whole: blocks of rows_per_batch keep every worker busy, however the files were cut
    scored = ds.repartition(target_num_rows_per_block=cfg.rows_per_batch).map_batches(
        Scorer, batch_format="pyarrow", batch_size=cfg.rows_per_batch, num_cpus=cfg.threads,
        compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_kwargs={"package": str(cfg.package), "threads": cfg.threads, "text_column": cfg.text_column,
                               "keep_columns": cfg.keep_columns, "batch_size": cfg.batch_size, "top_k": cfg.top_k})
    try:
        scored.write_parquet(cfg.output, ray_remote_args={"num_cpus": IO_CPUS})
    except ray.exceptions.RayError as e:
        if (line := worker_error(str(e))) is None:
            raise
        raise ValueError(f"a worker failed: {line}") from e
    seconds = time.perf_counter() - start
    rows = _rows_written(cfg.output)
    log.info("scored %d texts with %d worker(s) x %d thread(s) in %.1f s into %s", rows, workers, cfg.threads, seconds,
             cfg.output)
    return RayJobResult(output=cfg.output, rows=rows, workers=workers, threads=cfg.threads, seconds=seconds)


_ERROR_LINE = re.compile(r"^((?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception)): (.+)$", re.MULTILINE)


def worker_error(message: str) -> str | None:
    """The first ``SomeError: what`` line of a remote traceback that is not Ray's own (Ray passes the worker's
    exception on as text only): the one line that says what went wrong."""
    for kind, what in _ERROR_LINE.findall(message):
        if not kind.startswith("ray."):
            return f"{kind.rsplit('.', 1)[-1]}: {what}"
    return None


def _check_output(output: str) -> None:
    """A local output folder must hold no Parquet files yet (a second run would mix its files with the first's)."""
    p = Path(output)
    if "://" not in output and p.is_dir() and any(p.glob("*.parquet")):
        raise ValueError(f"output={output!r} already holds Parquet files; give an empty or new folder")


def _rows_written(output: str) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(output, format="parquet").count_rows()
