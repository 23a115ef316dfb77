"""Choices read the validation split only: the test split is scored for reports and never reaches a selection.

The quantize gate (with its fallbacks and the choice of what ships) and the baseline's choice of C run here on
data whose test split raises the moment it is read; the ablation winner is picked from validation scores.
"""

from __future__ import annotations

import pytest

import edgedistill.compress.data
from edgedistill.compress.data import DataConfig, LabelledData, load_data


class ForbiddenSplit:
    """A split that fails any test that reads it."""

    def __getattr__(self, name):
        raise AssertionError(f"a selection read the test split (.{name})")

    def __len__(self):
        raise AssertionError("a selection read the test split (len)")

    def __iter__(self):
        raise AssertionError("a selection read the test split (iter)")


def _without_test(data: LabelledData) -> LabelledData:
    return LabelledData(data.name, data.label_names, data.train, data.validation, ForbiddenSplit(), data.stats)


@pytest.fixture
def no_test_split(monkeypatch):
    real = edgedistill.compress.data.load_data
    monkeypatch.setattr(edgedistill.compress.data, "load_data", lambda cfg: _without_test(real(cfg)))


def test_the_forbidden_split_does_fail_when_read(tiny_csv):
    data = _without_test(load_data(DataConfig(source=str(tiny_csv))))
    with pytest.raises(AssertionError, match="test split"):
        _ = data.test.texts
    with pytest.raises(AssertionError, match="test split"):
        len(data.test)


def test_the_quantize_gate_and_the_choice_of_what_ships_never_read_test(no_test_split, tiny_trained_model_dir,
                                                                        tiny_csv, tmp_path):
    from edgedistill.compress.export import ExportConfig, export
    from edgedistill.compress.quantize import QuantizeConfig, quantize

    folder = export(ExportConfig(checkpoint=str(tiny_trained_model_dir), output=str(tmp_path / "onnx"),
                                 max_length=64))
    # a zero budget forces the fallbacks too: every path of the gate runs on the forbidden split
    report = quantize(QuantizeConfig.avx2(str(folder), data=DataConfig(source=str(tiny_csv)), latency_samples=2,
                                          calibration_samples=16, budget=0.0, variants=("optimized", "int8-dynamic",
                                                                                         "int8-static")))
    assert report.validation_examples == len(load_data(DataConfig(source=str(tiny_csv))).validation)
    assert report.chosen in [a.name for a in report.attempts if a.passed]


def test_the_baseline_chooses_c_on_validation_without_test(tiny_csv):
    from edgedistill.compress.baseline import train_baseline

    data = _without_test(load_data(DataConfig(source=str(tiny_csv))))
    base = train_baseline(data.train, data.validation)
    assert base.C in base.validation_macro_f1 and len(base.validation_macro_f1) > 1


def test_the_ablation_winner_is_chosen_on_validation():
    from edgedistill.compress.ablate import pick_winner

    rows = [{"cell": "a", "validation_macro_f1": 0.80, "macro_f1": 0.95, "seconds": 10.0},
            {"cell": "b", "validation_macro_f1": 0.90, "macro_f1": 0.70, "seconds": 10.0},
            {"cell": "c", "error": "failed", "seconds": 1.0}]
    assert pick_winner(rows)["cell"] == "b"  # the best test score loses: test is only reported
    rows[0]["validation_macro_f1"] = 0.90
    rows[0]["seconds"] = 5.0
    assert pick_winner(rows)["cell"] == "a"  # a tie goes to the cheaper cell
