"""Export a fine-tuned classifier checkpoint to ONNX and prove that the graph reproduces the torch model.

Any ``save_pretrained`` sequence-classification checkpoint with its tokenizer works
(BERT, MPNet, ...): ``torch.onnx.export`` (the TorchScript exporter) writes ``model.onnx``
(output ``logits``, dynamic batch and sequence axes, opset 17 or newer) beside the
tokenizer and config files. The model is traced with eager attention: transformers 5's
default (sdpa) traces to a mask pattern that onnxruntime's transformer optimiser no longer
fuses into its Attention op, and that fusion is what makes the optimized and int8 variants
fast. ``token_type_ids`` is an input only when the tokenizer makes it (BERT does, MPNet
does not); ``export.json`` records which inputs the graph takes, so that every later
stage feeds it the same way. Later stages read it as an :class:`~edgedistill.compress.exportmeta.ExportMeta`
through :func:`~edgedistill.compress.exportmeta.read_export`, by attribute::

    onnx_dir = export(ExportConfig(checkpoint="models/x/student", output="models/x/onnx"))
    read_export(onnx_dir).input_names   # ("input_ids", "attention_mask", "token_type_ids")

Every export checks itself (:func:`check_parity`): torch and onnxruntime run the same
fixed inputs of several shapes (batch 1, 3 and 8; 8, 64 and the maximum number of
tokens; rows of different lengths, so padding is exercised) and the export fails
with :class:`~edgedistill.compress.errors.ExportParityError`, giving the largest absolute
difference per output, when they disagree beyond ``atol``. The folder is written
under a temporary name and renamed only once the check has passed.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress.errors import ConfigError, ExportError, ExportParityError
from edgedistill.compress.exportmeta import META_FILE, MODEL_FILE, OUTPUT_NAME, ExportMeta, Parity
from edgedistill.runtime.fsutil import publishing
from edgedistill.compress.layout import BuildLayout

log = logging.getLogger(__name__)

KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PARITY_BATCHES = (1, 3, 8)
PARITY_LENGTHS = (8, 64)  # plus the maximum length
MIN_OPSET = 17
# Architectures whose position ids start after the padding index (so max_position_embeddings - pad - 1 usable).
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text")


@dataclass
class ExportConfig:
    """What to export, where to, and how closely the graph must match torch."""

    checkpoint: str = ""
    """A fine-tuned sequence-classification checkpoint folder (``save_pretrained`` + tokenizer)."""
    output: str | None = None
    """The ONNX folder to write; default: ``onnx/`` beside the checkpoint folder."""
    opset: int = 18
    """ONNX opset (17 or newer; 18 is what optimum chose for BERT-style encoders)."""
    max_length: int = 128
    """Tokens per text at inference (longer texts are truncated); capped at the model's positions."""
    atol: float = 1e-4
    """Largest absolute logit difference between torch and onnxruntime the export accepts."""
    overwrite: bool = False
    """Replace an existing output folder."""

    def __post_init__(self) -> None:
        if not str(self.checkpoint):
            raise ConfigError("export.checkpoint", self.checkpoint, "name a fine-tuned classifier checkpoint folder")
        if not isinstance(self.opset, int) or self.opset < MIN_OPSET:
            raise ConfigError("export.opset", self.opset, f"must be an int >= {MIN_OPSET}")
        if not isinstance(self.max_length, int) or self.max_length < 8:
            raise ConfigError("export.max_length", self.max_length, "must be an int >= 8")
        if not self.atol > 0:
            raise ConfigError("export.atol", self.atol, "must be > 0")

    @property
    def output_dir(self) -> Path:
        return Path(self.output) if self.output else BuildLayout(Path(self.checkpoint).resolve().parent).onnx


# --------------------------------------------------------------------------- the public function

def export(cfg: ExportConfig) -> Path:
    """Export ``cfg.checkpoint`` to ``cfg.output_dir`` (model.onnx + tokenizer + export.json); returns the folder."""
    from transformers import AutoTokenizer

    from edgedistill.compress.checkpoints import load_classifier

    ckpt = Path(cfg.checkpoint)
    if not (ckpt / "config.json").is_file():
        raise ConfigError("export.checkpoint", str(ckpt),
                          "no config.json there: not a save_pretrained checkpoint folder")
    out = cfg.output_dir
    if out.exists() and not cfg.overwrite:
        raise ConfigError("export.output", str(out), "already exists; pass overwrite=True (--overwrite) to replace it")

    tokenizer = AutoTokenizer.from_pretrained(ckpt)
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{ckpt}: the tokenizer has no fast (tokenizers) version; the runtime needs tokenizer.json")
    model = load_classifier(ckpt).eval()
    max_length = _max_length(cfg.max_length, model.config, tokenizer)

    with publishing(out) as tmp:
        _torch_export(ckpt, tmp, cfg.opset)
        tokenizer.save_pretrained(tmp)
        model.config.save_pretrained(tmp)  # the folder loads as a checkpoint (optimum's ORTModel does)
        inputs = _check_graph(tmp / MODEL_FILE)
        parity = check_parity(model, tmp / MODEL_FILE, tokenizer=tokenizer, max_length=max_length, atol=cfg.atol)
        meta = _metadata(cfg, ckpt, model.config, tokenizer, inputs, max_length, parity)
        (tmp / META_FILE).write_text(meta.to_json())
    log.info("exported %s to %s (opset %d, inputs %s, max |torch - onnx| %.2g)", ckpt, out / MODEL_FILE,
             cfg.opset, inputs, max(meta.parity.max_abs_diff.values()))
    return out


def _torch_export(ckpt: Path, dest: Path, opset: int) -> None:
    """``dest/model.onnx`` from the checkpoint: torch.onnx's TorchScript exporter, eager attention, dynamic axes.

    Not the dynamo exporter (torch.onnx's default now): onnxruntime's BERT optimiser fuses neither
    Attention nor EmbedLayerNormalization in its graphs (torch 2.13, onnxruntime 1.32, eager attention
    either way); nor sdpa attention (see the module's docstring).
    """
    import torch
    from transformers import AutoTokenizer

    from edgedistill.compress.checkpoints import load_classifier

    try:
        tokenizer = AutoTokenizer.from_pretrained(ckpt)
        model = load_classifier(ckpt, attn_implementation="eager").eval()
    except (ValueError, OSError) as e:
        raise ExportError(f"could not load {ckpt} for export: {e}") from e
    names = ["input_ids", "attention_mask"] + (
        ["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else [])
    sample = tokenizer(["a short text", "and a somewhat longer second text for the padding"], padding=True,
                       return_tensors="pt")
    args = tuple(sample[n] if n in sample else torch.zeros_like(sample["input_ids"]) for n in names)
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names} | {OUTPUT_NAME: {0: "batch_size"}}

    # The model itself is the traced module (so the graph's names are the checkpoint's: bert.encoder...),
    # called with positional inputs and returning the logits tensor alone.
    forward = model.forward
    model.forward = lambda *inputs: forward(**dict(zip(names, inputs)), return_dict=True).logits
    try:
        with warnings.catch_warnings():
            # TracerWarnings (shape checks traced as constants) and torch.onnx's deprecation notice for
            # the TorchScript exporter: the parity check that follows is what says whether the graph is right
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(dest / MODEL_FILE), dynamo=False, opset_version=opset,
                              do_constant_folding=True, input_names=names, output_names=[OUTPUT_NAME],
                              dynamic_axes=axes)
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        raise ExportError(f"torch.onnx could not export {ckpt}: {e}") from e
    finally:
        del model.forward
    if not (dest / MODEL_FILE).is_file():
        raise ExportError(f"torch.onnx wrote no {MODEL_FILE} for {ckpt} (files: {sorted(os.listdir(dest))})")


def _max_length(wanted: int, config: Any, tokenizer: Any) -> int:
    """``wanted``, capped at what the model's position embeddings and the tokenizer allow."""
    limits = []
    if (pos := getattr(config, "max_position_embeddings", None)) is not None:
        offset = (config.pad_token_id or 0) + 1 if config.model_type in _OFFSET_POSITIONS else 0
        limits.append(pos - offset)
    if (tml := getattr(tokenizer, "model_max_length", None)) and tml < 1_000_000:
        limits.append(int(tml))
    if limits and wanted > min(limits):
        log.warning("max_length=%d exceeds what the model takes; using %d", wanted, min(limits))
        return min(limits)
    return wanted


def _check_graph(onnx_path: Path) -> list[str]:
    """The graph's input names; its axes must be dynamic and its output ``logits``."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    names = [i.name for i in graph.input]
    unknown = [n for n in names if n not in KNOWN_INPUTS]
    if unknown or not {"input_ids", "attention_mask"} <= set(names):
        raise ExportError(f"{onnx_path}: unexpected inputs {names}; expected input_ids, attention_mask"
                          "[, token_type_ids]")
    for i in graph.input:
        dims = i.type.tensor_type.shape.dim
        if len(dims) != 2 or any(not d.dim_param for d in dims):
            raise ExportError(f"{onnx_path}: input {i.name} has static axes {[d.dim_value for d in dims]}; "
                              "batch and sequence must be dynamic")
    outputs = [o.name for o in graph.output]
    if OUTPUT_NAME not in outputs:
        raise ExportError(f"{onnx_path}: no '{OUTPUT_NAME}' output (outputs: {outputs})")
    return names


def _metadata(cfg: ExportConfig, ckpt: Path, config: Any, tokenizer: Any, inputs: list[str], max_length: int,
              parity: dict[str, Any]) -> ExportMeta:
    import onnxruntime
    import torch
    import transformers

    return ExportMeta(
        checkpoint=str(ckpt.resolve()),
        model_type=config.model_type,
        labels=tuple(_labels(config, ckpt)),
        max_length=max_length,
        input_names=tuple(inputs),
        output_name=OUTPUT_NAME,
        uses_token_type_ids="token_type_ids" in inputs,
        pad_token_id=int(tokenizer.pad_token_id),
        opset=cfg.opset,
        num_attention_heads=getattr(config, "num_attention_heads", None),
        hidden_size=getattr(config, "hidden_size", None),
        num_hidden_layers=getattr(config, "num_hidden_layers", None),
        parity=Parity.from_dict(parity),
        config=asdict(cfg),
        exporter="torch.onnx.export (TorchScript, eager attention)",
        versions={"torch": torch.__version__, "transformers": transformers.__version__,
                  "onnxruntime": onnxruntime.__version__},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        task="multi_label" if getattr(config, "problem_type", None) == "multi_label_classification" else "single_label",
        long_texts=getattr(config, "long_texts", None) or "truncate",
    )


def _labels(config: Any, ckpt: Path) -> list[str]:
    """Label names in output order: the model's id2label, or the checkpoint's labels.json for LABEL_<i> names."""
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if all(lab == f"LABEL_{i}" for i, lab in enumerate(labels)) and (ckpt / "labels.json").is_file():
        saved = json.loads((ckpt / "labels.json").read_text()).get("labels")
        if isinstance(saved, list) and len(saved) == len(labels):
            return [str(s) for s in saved]
    return labels


# --------------------------------------------------------------------------- parity

def parity_inputs(tokenizer: Any, batch: int, length: int, input_names: list[str],
                  seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed batch of ``length`` tokens: row 0 fills it, later rows are shorter and padded.

    Token ids are random non-special ids wrapped in the tokenizer's own special tokens;
    row 0 of a multi-row batch marks its second half as segment 1 where the model has segments.
    """
    rng = np.random.default_rng(seed + 1000 * batch + length)
    special = set(tokenizer.all_special_ids)
    pool = np.array([i for i in range(len(tokenizer)) if i not in special])
    prefix, suffix = _special_wrapping(tokenizer)
    body_max = max(1, length - len(prefix) - len(suffix))
    ids = np.full((batch, length), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros((batch, length), dtype=np.int64)
    for row in range(batch):
        body = max(1, body_max - row * body_max // batch)
        seq = (prefix + rng.choice(pool, size=body).tolist() + suffix)[:length]
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        types = np.zeros_like(ids)
        if batch > 1:
            full = int(mask[0].sum())
            types[0, full // 2:full] = 1
        feed["token_type_ids"] = types
    return feed


def _special_wrapping(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after one text ([CLS] ... [SEP], <s> ... </s>).

    What ``build_inputs_with_special_tokens`` gave before transformers 5: read off the encoding of one
    special token (its unknown token, else its padding token), which the tokenizer keeps whole.
    """
    probe = tokenizer.unk_token or tokenizer.pad_token
    probe_id = tokenizer.convert_tokens_to_ids(probe)
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    if probe_id not in full:
        raise ExportError(f"cannot tell where {type(tokenizer).__name__} puts the text among its special tokens")
    k = full.index(probe_id)
    return full[:k], full[k + 1:]


def check_parity(model_or_checkpoint: Any, onnx_path: Path | str, *, tokenizer: Any = None, max_length: int = 128,
                 atol: float = 1e-4, batches: tuple[int, ...] = PARITY_BATCHES,
                 lengths: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Run torch and onnxruntime on the same fixed inputs; raise ExportParityError beyond ``atol``.

    Returns ``{"atol", "max_abs_diff": {output: diff}, "cases": [{"batch", "length", output: diff}]}``.
    """
    import onnxruntime as ort
    import torch

    if isinstance(model_or_checkpoint, (str, Path)):
        from transformers import AutoTokenizer

        from edgedistill.compress.checkpoints import load_classifier

        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_or_checkpoint)
        model = load_classifier(model_or_checkpoint).eval()
    else:
        model = model_or_checkpoint.eval()
        if tokenizer is None:
            raise ConfigError("tokenizer", None, "pass the tokenizer along with a model object")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    lengths = tuple(dict.fromkeys(n for n in (lengths or PARITY_LENGTHS + (max_length,)) if n <= max_length))

    worst: dict[str, float] = {}
    where: dict[str, str] = {}
    cases = []
    for batch in batches:
        for length in lengths:
            feed = parity_inputs(tokenizer, batch, length, input_names)
            with torch.inference_mode():
                ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
            got = dict(zip(output_names, session.run(output_names, feed)))
            case: dict[str, Any] = {"batch": batch, "length": length}
            for name in output_names:
                if name not in ref:
                    continue
                expected = ref[name].float().numpy()
                if got[name].shape != expected.shape:
                    raise ExportParityError({name: float("inf")}, atol, {name: f"batch {batch}, length {length}: "
                                            f"shape {got[name].shape} vs torch {expected.shape}"})
                diff = float(np.max(np.abs(got[name].astype(np.float64) - expected)))
                case[name] = diff
                if diff >= worst.get(name, -1.0):
                    worst[name], where[name] = diff, f"batch {batch}, length {length}"
            cases.append(case)
    if not worst:
        raise ExportError(f"{onnx_path}: none of the graph's outputs {output_names} is an output of the torch model")
    result = {"atol": atol, "max_abs_diff": worst, "cases": cases}
    if any(d > atol or not np.isfinite(d) for d in worst.values()):
        raise ExportParityError(worst, atol, where)
    log.info("parity: max |torch - onnx| %s over %d input shapes (atol %g)",
             {k: f"{v:.2g}" for k, v in worst.items()}, len(cases), atol)
    return result
