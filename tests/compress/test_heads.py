"""The head's learning-rate rule, shared by the teacher and the distilled student (compress/heads.py)."""

import pytest

from edgedistill.compress.heads import HEAD_LR_CAP, grouped_adamw, head_multiplier, student_head_multiplier


def test_student_head_step_follows_the_classes_within_the_cap():
    assert student_head_multiplier(2, 1e-4) == 4.0
    assert student_head_multiplier(6, 1e-4) == 6.0
    # 50 classes: 50x would be 5e-3; the cap keeps the step at 1e-3
    assert student_head_multiplier(50, 1e-4) == pytest.approx(HEAD_LR_CAP / 1e-4)
    # an encoder already stepping past the cap: the head never learns slower than it
    assert student_head_multiplier(50, 2e-3) == 1.0
    assert head_multiplier(50) == 50.0


def test_distill_config_gives_a_fresh_head_the_rule_and_a_cut_teacher_1x():
    from edgedistill.compress.distill.config import DistillConfig

    fresh = DistillConfig(teacher_dir="t", student={"builder": "pretrained", "model": "minilm-l6"}).resolved()
    assert fresh.head_multiplier(50) == pytest.approx(10.0)
    cut = DistillConfig(teacher_dir="t", student={"builder": "teacher-layers", "layers": 2}).resolved()
    assert cut.head_multiplier(50) == 1.0
    assert DistillConfig(teacher_dir="t", head_lr_multiplier=3.0).resolved().head_multiplier(50) == 3.0


def test_grouped_adamw_puts_the_head_in_its_own_groups():
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(4, 4)
            self.norm = torch.nn.LayerNorm(4)
            self.classifier = torch.nn.Linear(4, 3)

    model = Tiny()
    opt = grouped_adamw(model, 1e-4, 10.0, 0.01)
    head = {id(p) for p in model.classifier.parameters()}
    for g in opt.param_groups:
        ids = {id(p) for p in g["params"]}
        is_head = ids <= head
        assert is_head or not ids & head  # no group mixes head and encoder
        assert g["lr"] == pytest.approx(1e-3 if is_head else 1e-4)
        assert g["weight_decay"] == (0.01 if all(p.ndim > 1 for p in g["params"]) else 0.0)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
