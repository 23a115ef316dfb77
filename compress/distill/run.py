"""One distillation, start to end: what happens in which order, and on which process (see the package's doc)."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgedistill.compress import parallel, sources
from edgedistill.compress.adapt import Adaptation, adapt_on
from edgedistill.compress.data import multi_hot
from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.distill.losses import layer_map
from edgedistill.compress.distill.teacher_outputs import TeacherOutputs, teacher_outputs
from edgedistill.compress.distill.training import _save, _train, training_arguments
from edgedistill.compress.distill.transfer import TransferSet, build_transfer_set, same_tokens
from edgedistill.compress.errors import ConfigError

log = logging.getLogger(__name__)


def _teacher_labels(teacher_dir: Path | str) -> list[str]:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(teacher_dir)
    return [c.id2label[i] for i in range(c.num_labels)]


def distill(cfg: DistillConfig) -> Path:
    """Distil ``cfg.teacher_dir`` into the student ``cfg.student`` on ``cfg.data``; returns the output folder.

    Under torchrun or accelerate launch every process calls this; see the module doc for who does what."""
    from transformers import set_seed

    from edgedistill.compress.data import load_data

    cfg = cfg.resolved()
    started = time.perf_counter()
    data = load_data(cfg.data)
    if cfg.needs_teacher:
        tdir = Path(cfg.teacher_dir)
        if not (tdir / "config.json").is_file():
            raise ConfigError("distill.teacher_dir", str(tdir), "is not a model checkpoint (no config.json)")
        tlabels = _teacher_labels(tdir)
        generic = all(n == f"LABEL_{i}" for i, n in enumerate(tlabels))
        if (tlabels != data.label_names and not generic) or len(tlabels) != data.num_labels:
            raise ConfigError("distill.teacher_dir", str(tdir),
                              f"the teacher's labels {tlabels} differ from the data's {data.label_names}")
    use_unlabelled = cfg.needs_teacher_outputs
    if (cfg.transfer or cfg.augment) and not use_unlabelled:
        log.warning("alpha=0 and no teacher losses: the unlabelled transfer texts would carry no signal; "
                    "they are not used")
    transfer = build_transfer_set(replace(cfg, transfer=cfg.transfer if use_unlabelled else [],
                                          augment=cfg.augment if use_unlabelled else 0), data)

    out = Path(cfg.output_dir)
    # the Trainer's checkpoints: one folder every process names alike (each reloads the best one at the end)
    work = out.with_name(f".{out.name}.partial")
    n_train = len(transfer.texts)
    if cfg.data.long_texts == "chunks" and cfg.teacher_dir:  # the Trainer counts windows (the teacher's tokenizer)
        from transformers import AutoTokenizer

        from edgedistill.compress.textviews import examples

        n_train = examples(AutoTokenizer.from_pretrained(cfg.teacher_dir), transfer.texts, cfg.max_length, "chunks")
    args = training_arguments(cfg, work, n_train)  # under a launcher, this joins the process group
    rank0 = args.process_index == 0
    with args.main_process_first(desc="checkpoint folder"):
        if rank0:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
    try:
        set_seed(cfg.seed)
        # rank 0 first: what it computes into the cache (the adapted encoder, a static student's token vectors), the
        # others then read
        with args.main_process_first(desc="student"):
            adaptation = _adapt(cfg, data)
            model, tokenizer, pairs, t_layers = _student(cfg, data, transfer, adaptation)
        # every process at once: each labels a shard of the transfer texts, and each gets all of them
        teacher = _teacher(cfg, data, transfer, model, pairs, t_layers)
        result = _train(cfg, args, data, transfer, model, tokenizer, teacher, pairs)
        parallel.barrier()  # every process has reloaded the best checkpoint before rank 0 removes it
        if rank0:
            _save(cfg, data, transfer, result, teacher, adaptation, out, started)
    finally:
        if rank0:
            shutil.rmtree(work, ignore_errors=True)
    parallel.barrier()  # the others return once the output is there
    return out


def _adapt(cfg: DistillConfig, data) -> Adaptation | None:
    """The student's pretrained encoder adapted on ``cfg.student.adapt_texts`` (cached by edgedistill.compress.adapt),
    or None when it names none."""
    if not cfg.student.adapt_texts:
        return None
    model_path = sources.resolve_model(cfg.student.model, field="student.model")
    return adapt_on("student", model_path, cfg.student.adapt_texts, data,
                    cfg.student.adapt_settings(max_length=cfg.max_length, seed=cfg.seed))


def _student(cfg: DistillConfig, data, transfer: TransferSet, adaptation: Adaptation | None = None):
    """The student and its tokenizer (from the adapted encoder when there is one), the hidden loss's (student,
    teacher) layer pairs and the teacher layers it reads (None: the last)."""
    from edgedistill.compress.student import build_student

    model, tokenizer = build_student(cfg.student, cfg.teacher_dir, data.num_labels, data.id2label,
                                     corpus=transfer.texts, encoder=adaptation.path if adaptation else None)
    if data.multi_label:  # one sigmoid per label: evaluation and export read it from the config
        model.config.problem_type = "multi_label_classification"
    if cfg.data.long_texts != "truncate":  # how it reads a long text: evaluation and export read it from here
        model.config.long_texts = cfg.data.long_texts
    pairs: list[tuple[int, int]] = []
    t_layers = None
    if cfg.hidden_loss_weight > 0:
        from transformers import AutoConfig

        t_depth = AutoConfig.from_pretrained(cfg.teacher_dir).num_hidden_layers
        pairs = layer_map(model.config, t_depth, cfg.hidden_loss_layers)
        t_layers = None if [t for _, t in pairs] == [t_depth] else [t for _, t in pairs]
        log.info("hidden loss over %d layer pair(s) (student, teacher): %s", len(pairs), pairs)
    if cfg.needs_teacher_outputs and cfg.attention_loss_weight > 0:
        from transformers import AutoTokenizer

        t_tok = AutoTokenizer.from_pretrained(cfg.teacher_dir)
        if not same_tokens(t_tok, tokenizer, transfer.texts, cfg.max_length):
            raise ConfigError("distill.attention_loss_weight", cfg.attention_loss_weight,
                              "the attention loss needs teacher and student to split texts into the same "
                              "tokens; these tokenizers differ (use hidden_loss_weight instead)")
        model.set_attn_implementation("eager")
    return model, tokenizer, pairs, t_layers


def _teacher(cfg: DistillConfig, data, transfer: TransferSet, model, pairs: list[tuple[int, int]],
             t_layers: list[int] | None) -> TeacherOutputs | None:
    """Every process: the teacher's outputs on the transfer texts (None without teacher losses), labelled through
    the graph the validation texts vouch for; the hidden loss's projections onto the teacher's width."""
    import torch

    if not cfg.needs_teacher_outputs:
        return None
    teacher = teacher_outputs(cfg.teacher_dir, transfer.texts, cfg.max_length,
                              pooled=cfg.hidden_loss_weight > 0, attention=cfg.attention_loss_weight > 0,
                              layers=t_layers, backend=cfg.teacher_backend, validation_texts=data.validation.texts)
    gold = transfer.labels[:transfer.n_labelled]
    agree = float(((teacher.logits[:transfer.n_labelled] > 0) == multi_hot(gold, data.num_labels)).all(1).mean()
                  if data.multi_label else (teacher.logits[:transfer.n_labelled].argmax(1)
                                            == np.asarray(gold)).mean())
    log.info("teacher agrees with %.1f%% of the gold training labels", 100 * agree)
    if cfg.hidden_loss_weight > 0:
        t_width = teacher.pooled.shape[1] // len(pairs)
        s_width = model.config.hidden_size
        model.distill_projection = torch.nn.ModuleList(
            torch.nn.Linear(s_width, t_width) if s_width != t_width else torch.nn.Identity() for _ in pairs)
    return teacher
