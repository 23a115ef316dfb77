"""The distillation loss (soft targets and gold labels) and its optional terms: pooled hidden states on mapped
layers, last-layer attention."""

from __future__ import annotations

from collections.abc import Sequence

from edgedistill.compress.errors import ConfigError


def soft_target_loss(student_logits, teacher_logits, temperature: float):
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch: Hinton's soft-target term, shared by
    distillation and by an update's learning without forgetting (:func:`edgedistill.compress.update_train.lwf_loss`)."""
    import torch.nn.functional as F

    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return t * t * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()


def distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float,
                      multi_label: bool = False):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels).

    The KL term is averaged over every example in the batch; the CE term over the labelled ones only
    (label -100 marks an unlabelled transfer text). Returns a scalar tensor.

    ``multi_label``: the binary version, one sigmoid per label: alpha * T^2 * BCE(sigmoid(s/T), sigmoid(t/T)) +
    (1 - alpha) * BCE(s, labels), with ``labels`` 0/1 rows (a row of -100 marks an unlabelled text); see
    :func:`edgedistill.compress.multilabel.soft_bce_loss`.
    """
    import torch
    import torch.nn.functional as F

    student_logits = student_logits.float()  # under autocast: bf16 logits would round the teacher's away
    loss = student_logits.new_zeros(())
    if multi_label:
        from edgedistill.compress.multilabel import soft_bce_loss

        if alpha > 0:
            loss = loss + alpha * soft_bce_loss(student_logits, teacher_logits, temperature)
        if alpha < 1 and labels is not None:
            mask = labels[:, 0] != -100
            if bool(mask.any()):
                loss = loss + (1 - alpha) * F.binary_cross_entropy_with_logits(student_logits[mask],
                                                                               labels[mask].float())
        return loss
    if alpha > 0:
        loss = loss + alpha * soft_target_loss(student_logits, teacher_logits, temperature)
    if alpha < 1 and labels is not None:
        mask = labels != -100
        if bool(mask.any()):
            loss = loss + (1 - alpha) * F.cross_entropy(student_logits[mask], labels[mask])
    return loss if isinstance(loss, torch.Tensor) else torch.as_tensor(loss)


def mean_pool(hidden, attention_mask):
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def layer_map(student_config, teacher_depth: int, k: int) -> list[tuple[int, int]]:
    """``k`` (student, teacher) pairs of ``hidden_states`` indices (0 is the embeddings) for the hidden loss.

    Student layers are evenly spaced with the last included (6 layers, k=3: 2, 4, 6). A student copied from the
    teacher's own layers (``teacher-layers``) maps each layer to the one it was copied from; any other student
    maps layer ``s`` of ``L_s`` to teacher layer ``round(s * L_t / L_s)``, as TinyBERT's uniform mapping does.
    """
    depth = student_config.num_hidden_layers
    if k > depth:
        raise ConfigError("distill.hidden_loss_layers", k, f"the student has only {depth} layers")
    origin = getattr(student_config, "student", None) or {}
    kept = origin.get("layers_kept") if origin.get("builder") == "teacher-layers" else None
    pairs = []
    for j in range(1, k + 1):
        s = round(j * depth / k)
        t = kept[s - 1] + 1 if kept else round(s * teacher_depth / depth)
        pairs.append((s, min(max(t, 1), teacher_depth)))
    return pairs


def attention_loss(student_attn, teacher_attn: Sequence, attention_mask):
    """Mean over rows of KL(teacher || student) of head-averaged last-layer attention, per real token."""
    import torch

    student_attn = student_attn.float()  # under fp16 autocast the 1e-9 floor would round to 0, and log(0) to -inf
    total, rows = student_attn.new_zeros(()), 0
    for i, t in enumerate(teacher_attn):
        n = int(attention_mask[i].sum())
        t = torch.as_tensor(t, dtype=student_attn.dtype, device=student_attn.device)
        assert t.shape == (n, n), f"teacher attention {tuple(t.shape)} vs {n} student tokens"
        s = student_attn[i, :n, :n].clamp(min=1e-9)
        total = total + (t * (t.clamp(min=1e-9).log() - s.log())).sum()
        rows += n
    return total / max(rows, 1)
