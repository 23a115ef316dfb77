"""How the teacher labels the transfer texts fast: through a dynamic-int8 copy of its ONNX graph when that copy's
labels agree with the fp32 graph's on the validation texts, and on every process at once, each a shard of the texts.

:mod:`~edgedistill.compress.distill.teacher_outputs` decides what runs; this module holds the pieces: the int8
graph, the agreement measure, the record of how the texts were labelled, and the split of the texts into shards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INT8_MIN_AGREEMENT = 0.99
"""The share of validation labels (argmax; multi-label: each label's sign) on which the int8 graph must agree with
the fp32 graph for int8 to label the transfer texts. Why 0.99: the labels int8 flips are those of texts near the
decision boundary, whose soft targets it moves little, so 1 flip in 100 texts leaves the student's targets all but
the fp32 teacher's; a graph that quantisation harmed (outlier activations crushed into one per-batch int8 scale,
saturating kernels) flips several in 100 and labels in fp32 instead. The line guards the labels, not a measured
student: what a student distilled from int8 labels scores has not been measured. The movie-sentiment teacher's int8
copy and its agreement: benchmarks/results/cpu-x86_64/teacher-labelling-movie-sentiment.md."""
AGREEMENT_TEXTS = 1000
"""Validation texts the agreement is measured on (the first ones): 10 flips are the 1% the gate allows, and the two
graphs label them in about 15 s on 2 CPU cores for a base-size teacher."""
LABEL_BATCH = 32
"""Texts a batch: the teacher's batches, and the blocks the texts are dealt out to the processes in."""


@dataclass
class Labelling:
    """How the teacher labelled the transfer texts (written into ``distill.json`` under ``teacher_outputs``)."""

    graph: str
    """``onnx-int8``, ``onnx-fp32`` or ``torch``."""
    agreement: float | None = None
    """The int8 graph's label agreement with the fp32 graph on ``agreement_texts`` validation texts (None: not
    measured, the torch backend or no validation texts)."""
    agreement_texts: int = 0
    min_agreement: float = INT8_MIN_AGREEMENT
    graph_file: str = ""
    """The int8 graph's file name (its quantize preset in it), when int8 labelled."""
    texts_labelled: int = 0
    """Texts the teacher met in this run (cached rows excluded)."""
    seconds: float = 0.0
    """Wall time of labelling them, every process together."""
    texts_per_process: list[int] = field(default_factory=list)
    reason: str = ""
    """Why this graph labelled (the agreement against the line, or why int8 was not tried)."""

    @property
    def texts_per_second(self) -> float | None:
        return round(self.texts_labelled / self.seconds, 1) if self.texts_labelled and self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "texts_per_second": self.texts_per_second}


def agreement(a: np.ndarray, b: np.ndarray, multi_label: bool) -> float:
    """The share of texts two sets of logits label alike, as the quantize gate counts them: the same argmax
    (single-label), every label decided alike (multi-label, where a label is on at a positive logit)."""
    from edgedistill.compress.quantize.gate import _same

    if len(a) == 0:
        return 1.0
    return float(_same(a > 0, b > 0).mean() if multi_label else _same(a.argmax(1), b.argmax(1)).mean())


def int8_settings() -> tuple[str, dict[str, Any]]:
    """The dynamic-int8 settings of this machine's quantize preset (``QuantizeConfig.from_preset("auto")``: 7-bit
    weights on AVX2 without VNNI, ...), with the embedding table left fp32: a lookup, so its int8 copy would save
    memory only, and it costs agreement. Returns (a name for the settings, the settings)."""
    from edgedistill.compress.quantize.config import AUTO, QuantizeConfig

    q = QuantizeConfig.from_preset(AUTO, onnx_dir="teacher")
    settings = {"per_channel": q.per_channel, "reduce_range": q.reduce_range, "weight_type": q.weight_type,
                "embeddings": False, "exclude": []}
    return q.preset or "plain", settings


def int8_graph(folder: Path) -> Path:
    """A dynamic-int8 copy of ``folder``'s fp32 ``model.onnx`` (:func:`int8_settings`), built once beside it:
    ``model_int8_labelling-<preset>.onnx``. Written to a temporary file and renamed."""
    from edgedistill.compress.exportmeta import MODEL_FILE
    from edgedistill.compress.quantize.variants import quantize_dynamic_variant

    preset, settings = int8_settings()
    dest = folder / f"model_int8_labelling-{preset}.onnx"
    if dest.is_file():
        return dest
    log.info("quantising the teacher's ONNX graph to dynamic int8 for labelling (%s preset) -> %s", preset, dest)
    fd, tmp = tempfile.mkstemp(prefix=".int8.", suffix=".onnx", dir=folder)
    os.close(fd)
    try:
        quantize_dynamic_variant(folder / MODEL_FILE, Path(tmp), settings)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def agreement_file(int8: Path, texts: Sequence[str]) -> Path:
    """Where the agreement of the graph ``int8`` on ``texts`` is kept, beside the graph: it is measured once."""
    h = hashlib.sha256(f"{int8.name}|per-text".encode())  # per-text: agreement counted by text (not by label)
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return int8.with_name(f"{int8.stem}-agreement-{h.hexdigest()[:16]}.json")


def read_agreement(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_text())["agreement"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_agreement(path: Path, value: float, n: int) -> None:
    from edgedistill.runtime.fsutil import write_text_atomic

    write_text_atomic(path, json.dumps({"agreement": value, "texts": n}))


# --------------------------------------------------------------------------- many processes

def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes in the group ((0, 1) without one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def from_rank0(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (the others pass anything, e.g. None); ``obj`` in one process."""
    from edgedistill.compress import parallel

    return parallel.gather(obj)[0]


def shard_indices(n: int, rank: int, world: int, block: int = 1) -> np.ndarray:
    """The positions ``0..n-1`` that process ``rank`` of ``world`` takes: blocks of ``block`` consecutive positions
    dealt out in turn (block 0 to rank 0, block 1 to rank 1, ...). Every position goes to exactly one rank.

    Over texts in order of length with ``block`` the batch size, each rank runs the very batches that one process
    would (so a text's logits do not depend on how many processes labelled: dynamic int8 scales its activations per
    batch), and short and long batches alike."""
    if world < 1 or not 0 <= rank < world or block < 1 or n < 0:
        raise ValueError(f"shard_indices(n={n}, rank={rank}, world={world}, block={block}): needs n >= 0, "
                         "0 <= rank < world and block >= 1")
    idx = np.arange(n, dtype=np.int64)
    return idx[(idx // block) % world == rank]


def length_order(teacher_dir: Path | str, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Positions of ``texts`` from the fewest teacher tokens to the most (stable): the order its batches take."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(teacher_dir)
    ids = tok(list(texts), truncation=True, max_length=max_length)["input_ids"] if texts else []
    return np.argsort([len(x) for x in ids], kind="stable").astype(np.int64)


def onnx_threads() -> int:
    """onnxruntime's intra-op threads for the teacher: its own default (0) in one process, this machine's CPUs
    shared out among the processes the launcher started on it (``LOCAL_WORLD_SIZE``) otherwise."""
    from edgedistill.runtime.bench import available_cpus

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return 0 if local <= 1 else max(1, available_cpus() // local)
