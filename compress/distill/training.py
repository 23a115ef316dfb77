"""Training the student: the Trainer whose loss is the distillation loss on cached teacher outputs, its arguments,
the training on every process, and the output rank 0 saves."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress import parallel, progress
from edgedistill.compress.adapt import Adaptation
from edgedistill.compress.data import sorted_by_length
from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.distill.losses import attention_loss, distillation_loss, mean_pool
from edgedistill.compress.distill.teacher_outputs import TeacherOutputs
from edgedistill.compress.distill.transfer import TransferSet
from edgedistill.runtime.fsutil import publishing

log = logging.getLogger(__name__)


def _trainer_class():
    import torch
    from transformers import Trainer

    class DistillTrainer(Trainer):
        """A Trainer whose loss is the distillation loss on cached teacher outputs (see the module doc)."""

        def __init__(self, *args, teacher: TeacherOutputs | None, alpha: float, temperature: float,
                     hidden_loss_weight: float = 0.0, attention_loss_weight: float = 0.0,
                     hidden_layers: Sequence[int] = (-1,), multi_label: bool = False, **kwargs):
            super().__init__(*args, **kwargs)
            self.multi_label = multi_label
            self.model_accepts_loss_kwargs = False
            self.alpha, self.temperature = alpha, temperature
            self.hidden_w, self.attn_w = hidden_loss_weight, attention_loss_weight
            self.hidden_layers = list(hidden_layers)
            self.t_logits = torch.from_numpy(teacher.logits) if teacher is not None else None
            self.t_pooled = (torch.from_numpy(teacher.pooled)
                             if teacher is not None and teacher.pooled is not None else None)
            self.t_attn = teacher.attentions if teacher is not None else None
            self.parts: dict[str, float] = {}
            self.seen: set[int] = set()
            """The transfer texts this process trained on (its shards under data parallelism)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            idx = inputs.pop("teacher_index", None)  # training only: a transfer text's row
            labels = inputs.pop("labels", None)
            if idx is not None and model.training:
                self.seen.update(idx.tolist())
            hidden = idx is not None and self.hidden_w > 0
            attn = idx is not None and self.attn_w > 0
            outputs = model(**inputs, output_hidden_states=hidden, output_attentions=attn)
            logits = outputs.logits
            if idx is None or self.t_logits is None:  # evaluation, or plain fine-tuning (alpha = 0)
                loss = distillation_loss(logits, None, labels, 0.0, 1.0, self.multi_label)
            else:
                cpu_idx = idx.cpu()
                loss = distillation_loss(logits, self.t_logits[cpu_idx].to(logits.device), labels,
                                         self.alpha, self.temperature, self.multi_label)
                if hidden:
                    projs = self.accelerator.unwrap_model(model).distill_projection
                    mask = inputs["attention_mask"]
                    s = torch.cat([p(mean_pool(outputs.hidden_states[k], mask))
                                   for p, k in zip(projs, self.hidden_layers)], -1)
                    t = self.t_pooled[cpu_idx].to(s.device, s.dtype)
                    loss = loss + self.hidden_w * torch.nn.functional.mse_loss(s, t)
                if attn:
                    s_attn = outputs.attentions[-1].mean(1)
                    loss = loss + self.attn_w * attention_loss(
                        s_attn, [self.t_attn[i] for i in cpu_idx.tolist()], inputs["attention_mask"])
            if return_outputs:
                outputs = type(outputs)(logits=logits)
                return loss, outputs
            return loss

    return DistillTrainer


def _targets(labels: Sequence[Any], num_labels: int) -> list[Any]:
    """Multi-label targets: a 0/1 float row per text (a row of -100 for an unlabelled one); single labels as
    they are."""
    from edgedistill.compress.data import multi_hot

    if not any(isinstance(y, tuple) for y in labels):
        return list(labels)
    rows = multi_hot([y if isinstance(y, tuple) else () for y in labels], num_labels)
    rows[[i for i, y in enumerate(labels) if not isinstance(y, tuple)]] = -100.0
    return rows.tolist()


def _datasets(tokenizer, transfer: TransferSet, validation, max_length: int, num_labels: int,
              long_texts: str = "truncate"):
    import datasets

    if long_texts != "truncate":  # each window an example, with its text's labels and teacher outputs
        from edgedistill.compress.textviews import TextViews

        labels, val_labels = _targets(transfer.labels, num_labels), _targets(validation.labels, num_labels)
        views = TextViews(tokenizer, transfer.texts, max_length, long_texts)
        train = datasets.Dataset.from_dict({**views.columns(), "labels": [labels[i] for i in views.owner],
                                            "teacher_index": views.owner.tolist()})
        val_views = TextViews(tokenizer, validation.texts, max_length, long_texts)
        val = datasets.Dataset.from_dict({**val_views.columns(), "labels": [val_labels[i] for i in val_views.owner]})
        return train, sorted_by_length(val)
    # each text's row: where its teacher outputs are, and which texts a process trained on
    cols = {"text": transfer.texts, "labels": _targets(transfer.labels, num_labels),
            "teacher_index": list(range(len(transfer.texts)))}
    train = datasets.Dataset.from_dict(cols)
    val = datasets.Dataset.from_dict({"text": list(validation.texts),
                                      "labels": _targets(validation.labels, num_labels)})

    def tok(b):
        return tokenizer(b["text"], truncation=True, max_length=max_length)

    train = train.map(tok, batched=True, remove_columns=["text"], desc="tokenizing transfer set")
    val = val.map(tok, batched=True, remove_columns=["text"], desc="tokenizing validation")
    return train, sorted_by_length(val)


def training_arguments(cfg: DistillConfig, work: Path, n_train: int):
    """The distillation's ``TrainingArguments`` (:func:`edgedistill.compress.parallel.trainer_arguments`): the
    transfer set's extra columns (teacher index) kept, evaluation batches of at least 64."""
    return parallel.trainer_arguments(
        work, cfg, table="distill", n_train=n_train, eval_batch_size=max(cfg.batch_size, 64),
        remove_unused_columns=False, dataloader_pin_memory=False, label_names=["labels"])


@dataclass
class _Trained:
    model: Any
    tokenizer: Any
    best_validation_macro_f1: float | None
    train_seconds: float
    lengths: dict[str, Any]
    processes: dict[str, Any]


def _train(cfg: DistillConfig, args, data, transfer: TransferSet, model, tokenizer, teacher: TeacherOutputs | None,
           pairs: list[tuple[int, int]]) -> _Trained:
    """Every process: train on its shard; the best checkpoint (on validation macro-F1) comes back on each."""
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from edgedistill.compress.data import token_lengths
    from edgedistill.compress.evaluate import validation_metrics

    lengths = token_lengths(tokenizer, transfer.texts, cfg.max_length)
    log.info("transfer texts: %d tokens at p50, %d at p99, %d at most; max_length %d cuts %.1f%% of them",
             lengths["p50"], lengths["p99"], lengths["max"], cfg.max_length, 100 * lengths["truncated_share"])
    if lengths["truncated_share"] > 0.05 and cfg.data.long_texts == "chunks":
        log.info("max_length %d: %.0f%% of the transfer texts are read in several windows (chunks)",
                 cfg.max_length, 100 * lengths["truncated_share"])
    elif lengths["truncated_share"] > 0.05:
        read = "read as head+tail at" if cfg.data.long_texts == "head+tail" else "truncated at"
        log.warning("%.0f%% of the transfer texts are %s max_length %d; %d would keep 99%% whole",
                    100 * lengths["truncated_share"], read, cfg.max_length, lengths["limit_for_99pct"])
    train_ds, val_ds = _datasets(tokenizer, transfer, data.validation, cfg.max_length, data.num_labels,
                                 cfg.data.long_texts)

    def val_metrics(p):
        logits = torch.from_numpy(np.asarray(p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions,
                                             dtype=np.float32))
        probs = (logits.sigmoid() if data.multi_label else torch.softmax(logits, -1)).numpy()
        m = validation_metrics(p.label_ids, probs, data.label_names)  # multi-label: at thresholds fitted here
        return {"macro_f1": m.macro_f1, "accuracy": m.accuracy}

    optimizers = (None, None)
    mult = cfg.head_multiplier(data.num_labels)
    if hasattr(model, "classifier") and mult != 1.0:
        from edgedistill.compress.heads import grouped_adamw

        log.info("the student's fresh head learns at %.2gx the encoder's rate (%d classes)", mult, data.num_labels)
        optimizers = (grouped_adamw(model, cfg.learning_rate, mult, cfg.weight_decay), None)
    trainer = _trainer_class()(
        model=model, args=args, optimizers=optimizers, train_dataset=train_ds, eval_dataset=val_ds,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=val_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience)],
        teacher=teacher, alpha=cfg.alpha, temperature=cfg.temperature,
        hidden_loss_weight=cfg.hidden_loss_weight, attention_loss_weight=cfg.attention_loss_weight,
        hidden_layers=[s for s, _ in pairs], multi_label=data.multi_label,
    )
    t_train = time.perf_counter()
    with progress.training(trainer):
        trainer.train()
    train_seconds = time.perf_counter() - t_train
    seen = parallel.gather(sorted(trainer.seen))
    processes = {"world_size": args.world_size, "backend": args.ddp_backend if args.world_size > 1 else None,
                 "device": str(args.device), "precision": parallel.precision_of(args),
                 "texts_per_process": [len(s) for s in seen],
                 "texts_covered": len(set().union(*map(set, seen)))}
    best = trainer.state.best_metric
    model = trainer.model
    if hasattr(model, "distill_projection"):
        del model.distill_projection
    model = model.cpu().eval()
    del trainer
    return _Trained(model, tokenizer, best, train_seconds, lengths, processes)


def _save(cfg: DistillConfig, data, transfer: TransferSet, result: _Trained, teacher: TeacherOutputs | None,
          adaptation: Adaptation | None, out: Path, started: float) -> None:
    """Rank 0: the student, its tokenizer, label map, test metrics and distill.json, published as one folder."""
    from edgedistill.compress.data import save_label_map
    from edgedistill.compress.evaluate import evaluate_torch, write_metrics
    from edgedistill.compress.student import count_parameters

    model, tokenizer = result.model, result.tokenizer
    with publishing(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        save_label_map(data, tmp)
        thresholds = None
        if data.multi_label:  # decided as a shipped package decides: at thresholds fitted on validation
            from edgedistill.compress.evaluate import torch_thresholds

            thresholds = torch_thresholds(model, tokenizer, data.validation, data.num_labels,
                                          max_length=cfg.max_length)
        metrics = evaluate_torch(model, data.test, data.label_names, tokenizer=tokenizer,
                                 max_length=cfg.max_length, dataset=data.name, progress=True, thresholds=thresholds)
        params = count_parameters(model)
        size_mb = (tmp / "model.safetensors").stat().st_size / 1e6
        metrics.extra.update({"params": params, "size_mb": round(size_mb, 3), "stage": "student"})
        write_metrics(metrics, tmp, "metrics", title=f"Student ({cfg.student.builder}) on {data.name}")
        info = {
            "config": cfg.to_dict(),
            "params": params, "size_mb": round(size_mb, 3),
            "layers": model.config.num_hidden_layers, "hidden": model.config.hidden_size,
            "vocab": model.config.vocab_size, "vocab_trim": getattr(model.config, "vocab_trim", None),
            "test": metrics.summary(), "best_validation_macro_f1": result.best_validation_macro_f1,
            "transfer": {"labelled": transfer.n_labelled, "unlabelled": transfer.n_unlabelled,
                         "augmented": transfer.n_augmented, "held_out_dropped": transfer.dropped_overlap,
                         "token_lengths": result.lengths},
            "teacher_outputs": ({"fingerprint": teacher.fingerprint, "from_cache": teacher.from_cache,
                                 "labelling": teacher.labelling.to_dict() if teacher.labelling else None}
                                if teacher is not None else None),
            "adaptation": asdict(adaptation) if adaptation else None,
            "processes": result.processes,
            "train_seconds": round(result.train_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / "distill.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    log.info("student: test macro-F1 %.4f, %.1fM parameters, %.1f MB -> %s", metrics.macro_f1, params / 1e6,
             size_mb, out)
