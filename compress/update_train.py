"""An update's numeric work: the learning-without-forgetting loss, the grown head, the old model's outputs as
targets and the fine-tuning loop (:mod:`edgedistill.compress.update` decides what runs in which order).

Texts are read as the package reads them (:class:`~edgedistill.compress.textviews.TextViews` in the student's
``long_texts`` mode): one training example a window, with its text's labels and the old model's outputs on that
window. ``truncate`` and ``head+tail`` make one window a text; ``chunks`` makes several.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedistill.compress.errors import ConfigError

if TYPE_CHECKING:
    from edgedistill.compress.textviews import TextViews
    from edgedistill.compress.update import UpdateConfig


# ---------------------------------------------------------------------------------- the loss
def lwf_loss(logits, old_logits, labels, alpha: float, temperature: float, multi_label: bool = False):
    """``(1 - alpha) * gold + alpha * soft``: Learning without Forgetting's loss, averaged over the batch.

    One label a text: ``gold`` is ``CE(logits, labels)`` and ``soft`` is ``T^2 * KL(softmax(old / T) ||
    softmax(logits[:, :k] / T))``. Multi-label (``labels`` 0/1 rows): ``gold`` is the binary cross-entropy of every
    output against ``labels`` and ``soft`` is ``T^2 * BCE(sigmoid(logits[:, :k] / T), sigmoid(old / T))``.
    ``old_logits`` has the old model's k outputs, the first k of ``logits`` (new labels come after them, and have
    no old output to keep). ``old_logits=None`` (naive fine-tuning) is the gold term alone."""
    import torch.nn.functional as F

    from edgedistill.compress.distill.losses import soft_target_loss
    from edgedistill.compress.multilabel import soft_bce_loss

    # 1) the new gold labels, on every output
    gold = (F.binary_cross_entropy_with_logits(logits.float(), labels.float()) if multi_label
            else F.cross_entropy(logits, labels))
    if old_logits is None or alpha == 0:
        return gold
    # 2) the old model's outputs, on its own outputs only: the distiller's soft-target terms
    k = old_logits.shape[-1]
    soft = (soft_bce_loss if multi_label else soft_target_loss)(logits[:, :k], old_logits, temperature)
    return (1 - alpha) * gold + alpha * soft


# ---------------------------------------------------------------------------------- the model
def grow_head(model, labels: list[str]) -> None:
    """Give ``model``'s classification head one output per label in ``labels``: its own labels keep their rows
    (they must come first, in order), new ones get fresh rows (small random weights, the mean old bias)."""
    import torch

    old = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if labels[:len(old)] != old:
        raise ConfigError("update.data", labels, f"must keep the model's labels {old} first, in order")
    if len(labels) == len(old):
        return
    owner, name = _head_linear(model)
    lin: torch.nn.Linear = getattr(owner, name)
    new = torch.nn.Linear(lin.in_features, len(labels), bias=lin.bias is not None)
    with torch.no_grad():
        torch.nn.init.normal_(new.weight, std=float(lin.weight.std()))
        new.weight[:len(old)] = lin.weight
        if lin.bias is not None:
            new.bias[:] = lin.bias.mean()
            new.bias[:len(old)] = lin.bias
    setattr(owner, name, new)
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {lab: i for i, lab in enumerate(labels)}


def _head_linear(model):
    """The (module, attribute) of the Linear layer whose outputs are the logits."""
    import torch

    k = model.config.num_labels
    found = [(name, mod) for name, mod in model.named_modules()
             if isinstance(mod, torch.nn.Linear) and mod.out_features == k]
    if not found:
        raise ConfigError("update", type(model).__name__, "has no Linear layer with one output per label to grow")
    path = found[-1][0]  # the head comes last in every model class here (BERT's classifier, the static head)
    parent = model.get_submodule(path.rsplit(".", 1)[0]) if "." in path else model
    return parent, path.rsplit(".", 1)[-1]


# ---------------------------------------------------------------------------------- training
def train(model, views: TextViews, labels: list[Any], old_logits: np.ndarray | None, cfg: UpdateConfig,
          evaluate) -> dict[str, Any]:
    """Fine-tune ``model`` in place with :func:`lwf_loss`, one example a window of ``views`` with its text's
    ``labels`` (label ids, or label-id tuples for a multi-label model) and, for LwF, its row of ``old_logits``
    (:func:`edgedistill.compress.evaluate.window_logits`). ``evaluate(model) -> score`` picks the best of the
    evaluations (validation only), whose weights the model ends with."""
    import copy

    import torch
    from transformers import get_linear_schedule_with_warmup

    from edgedistill.compress import progress
    from edgedistill.compress.data import multi_hot
    from edgedistill.compress.evaluate import is_multilabel_model, model_inputs

    multi = is_multilabel_model(model)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    n = views.n_windows
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = max(1, round(cfg.epochs * steps_per_epoch))
    eval_every = max(1, steps_per_epoch // cfg.evals_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    per_text = torch.from_numpy(multi_hot(labels, model.config.num_labels)) if multi else torch.tensor(labels)
    y = per_text[torch.from_numpy(views.owner)]  # each window carries its text's labels
    old = torch.from_numpy(old_logits) if old_logits is not None and cfg.lwf else None
    best = {"score": evaluate(model), "step": 0}
    best_state = copy.deepcopy(model.state_dict())
    history = [{"step": 0, "score": best["score"]}]
    step, stale = 0, 0  # stale: validations since the best (early stopping when cfg.patience is set)

    def done() -> bool:
        return step >= total or bool(cfg.patience and stale >= cfg.patience)

    with progress.bar("updating", total, unit="steps") as bar:
        while not done():
            order = list(range(n))
            rng.shuffle(order)
            for start in range(0, n, cfg.batch_size):
                if done():
                    break
                idx = order[start:start + cfg.batch_size]
                batch = views.tokenizer.pad(views.features(idx), padding=True, return_tensors="pt")
                model.train()
                logits = model(**model_inputs(model, batch)).logits
                loss = lwf_loss(logits, old[idx] if old is not None else None, y[idx], cfg.alpha, cfg.temperature,
                                multi)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                step += 1
                bar.advance()
                if step % eval_every == 0 or step == total:
                    score = evaluate(model)
                    history.append({"step": step, "score": score, "loss": float(loss.detach())})
                    bar.note(f"validation {score:.4f}")
                    stale += 1
                    if score > best["score"]:
                        best, stale = {"score": score, "step": step}, 0
                        best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return {"best": best, "history": history, "steps": step, "windows": n}
