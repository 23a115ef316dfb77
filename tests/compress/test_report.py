"""The build report stays true: no share or margin where it means nothing, the classes a model never predicts, and
the instruction set it was measured and quantized on."""

from __future__ import annotations

import json

import numpy as np

from edgedistill.compress.evaluate import compute_metrics
from edgedistill.compress.report import (headline_text, never_predicted, never_predicted_markdown, share_withheld,
                                         teacher_check)


def test_never_predicted_lists_empty_columns_with_their_support():
    labels = ["a", "b", "c", "d"]
    y = np.array([0, 0, 1, 1, 2, 3])
    probs = np.eye(4)[[0, 0, 0, 0, 2, 2]]  # b and d never predicted; c is
    found = never_predicted(compute_metrics(y, probs, labels))
    assert found == [["b", 2, 0.0], ["d", 1, 0.0]]
    md = "\n".join(never_predicted_markdown([{"model": "teacher", "never_predicted": found},
                                             {"model": "student", "never_predicted": []}]))
    assert "| teacher | 2: b (2), d (1) |" in md and "student" not in md
    assert never_predicted_markdown([{"model": "x", "never_predicted": []}]) == []


def test_share_and_margin_are_withheld_for_a_failed_or_beaten_teacher(tmp_path):
    assert share_withheld(None, 0.9, 0.8) is None
    assert "failed its check" in share_withheld("never predicts 49 class(es)", 0.9, 0.8)
    assert "scores above the teacher" in share_withheld(None, 0.79, 0.83)
    (tmp_path / "training.json").write_text(json.dumps({"check": "passed"}))
    assert teacher_check(tmp_path) is None
    (tmp_path / "training.json").write_text(json.dumps({"check": "validation macro-F1 0.014 is not above ..."}))
    assert teacher_check(tmp_path).startswith("validation macro-F1 0.014")
    assert teacher_check(tmp_path / "missing") is None


def test_the_headline_says_why_no_share_is_given():
    h = {"macro_f1": 0.194, "share_of_teacher": None, "margin_kept": None, "teacher_macro_f1": 0.0116,
         "baseline_macro_f1": 0.621, "speedup_vs_teacher": 30.0, "size_ratio": None,
         "share_withheld": "the teacher failed its check on validation (never predicts 49 class(es))"}
    text = headline_text(h)
    assert "of the teacher's" not in text and "No share of the teacher or margin is given: the teacher failed" in text


def test_the_ship_section_says_how_each_candidate_reads_a_long_text():
    from edgedistill.compress.report import ship_markdown

    def cand(name, reads, f1):
        return {"name": name, "variant": "int8-dynamic", "reads": reads, "validation_macro_f1": f1,
                "validation_latency_ms": 3.0, "size_mb": 20.0}

    ship = {"why": "view-chunks ships.", "chosen": "view-chunks",
            "candidates": [cand("student", "truncate", 0.95), cand("view-chunks", "chunks", 0.97),
                           cand("baseline", "whole text", 0.96)]}
    md = "\n".join(ship_markdown(ship))
    assert "| view-chunks | int8-dynamic | chunks | 0.9700 | 3.00 | 20.0 | ✓ |" in md
    assert "| student | int8-dynamic | truncate | 0.9500 |" in md and "`view-*` candidates" in md


def test_the_build_report_names_the_instruction_set(tmp_path, tiny_quantized_dir):
    import shutil

    from edgedistill.compress.report import build_rows, to_markdown
    from edgedistill.runtime.cpu import detect

    (tmp_path / "onnx").mkdir()
    shutil.copy(tiny_quantized_dir / "quantize_report.json", tmp_path / "onnx")
    rows, meta = build_rows(tmp_path)
    assert (meta["isa"], meta["quantize_isa"], meta["preset"], meta["detected_isa"]) == \
        (detect().name, detect().name, "avx2", None)
    md = to_markdown("tiny", "quick", rows, meta)
    assert f"Measured on a CPU with int8 instruction set **{detect().name}**; quantized with the avx2 preset." in md
    moved = {**meta, "isa": "arm64-dotprod", "preset": "avx512_vnni", "detected_isa": "amx", "quantize_isa": "amx"}
    assert ("int8 instruction set **arm64-dotprod**; quantized with the avx512_vnni (auto-detected: amx) preset, "
            "its variants gated and timed on amx.") in to_markdown("tiny", "quick", rows, moved)
