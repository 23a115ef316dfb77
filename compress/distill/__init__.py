"""Knowledge distillation: train a compact student on the teacher's soft targets.

``distill(cfg) -> Path`` runs one distillation and writes a checkpoint folder
like the teacher's::

    OUTPUT/
      model.safetensors, config.json   the student (save_pretrained)
      tokenizer.json, ...               its tokenizer (trimmed if asked)
      labels.json                       label map
      metrics.json, metrics.md          test split, through edgedistill.compress.evaluate
      distill.json                      config, parameters, size, timing, transfer set, trim report

The loss of a transfer example with teacher logits ``t`` and student logits ``s``::

    alpha * T^2 * KL(softmax(t / T) || softmax(s / T))  +  (1 - alpha) * CE(s, gold)
      + hidden_loss_weight * mean over k mapped layers of MSE(P_k(mean_pool(student_k)), mean_pool(teacher_k))
      + attention_loss_weight * KL(teacher last-layer attention || student's)

Unlabelled transfer texts have no gold label: they take only the teacher terms
(their CE is masked out). Teacher outputs are computed once, over the training
texts plus the unlabelled transfer texts (never a validation or test text),
with the teacher's own tokenizer, and cached on disk under a fingerprint of the
teacher checkpoint, the texts and ``max_length``; the teacher is freed before
the student trains. Sentence-level outputs (logits, mean-pooled features) need
no token alignment, so teacher and student may tokenize differently (MPNet
teacher, BERT student); the attention loss compares token positions and so
needs both to split every text into the same tokens.

Many processes: the same entry point runs under ``torchrun --nproc_per_node N -m edgedistill.compress.distill --config
recipe.toml`` or ``accelerate launch -m edgedistill.compress.distill --config recipe.toml``, as the teacher's does
(:mod:`edgedistill.compress.parallel`). Rank 0 builds the student while the others wait; every process then labels its
own shard of the transfer texts (whole batches dealt in turn, shortest texts first), rank 0 gathers them and writes
the cache once, and each process gets the same rows; the student trains data-parallel (each process a shard of every
epoch, batch_size per process); only rank 0 evaluates and writes the output. Mixed precision (``precision``) runs on
CUDA only.

One concept a module: :mod:`~edgedistill.compress.distill.config` (:class:`DistillConfig` and its profiles),
:mod:`~edgedistill.compress.distill.losses` (the loss terms), :mod:`~edgedistill.compress.distill.teacher_outputs`
(the teacher run once and cached), :mod:`~edgedistill.compress.distill.labelling` (the int8 labelling graph behind its
agreement check with fp32, and the shards of many processes), :mod:`~edgedistill.compress.distill.transfer` (the texts
the student learns from), :mod:`~edgedistill.compress.distill.training` (the Trainer, its arguments, the saved output)
and :mod:`~edgedistill.compress.distill.run` (what happens in which order, on which process). :func:`distill` is the
way in; ``python -m edgedistill.compress.distill`` runs it from a recipe (``__main__.py``).
"""

from edgedistill.compress.distill.config import DistillConfig
from edgedistill.compress.distill.run import distill

__all__ = ["DistillConfig", "distill"]
