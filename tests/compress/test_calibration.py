"""Scores a user can threshold (a temperature fitted on validation, applied by the runtime and the web page) and
answers that never depend on batch-mates (a dynamic-int8 package runs one text per call)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgedistill.compress.calibration import calibrate, ece, fit_temperature, model_label_ids, softmax
from edgedistill.compress.data import DataConfig, load_data
from edgedistill.compress.errors import DataError
from edgedistill.compress.package import PackagingConfig, build_package
from edgedistill.compress.quantize import QuantizeReport
from edgedistill.runtime import TextClassifier, write_manifest
from edgedistill.runtime.errors import PackageFormatError
from edgedistill.runtime.package import PackageConfig
from tests.helpers import make_sentences


def _logits(rng, n: int, k: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose true class leads by ``margin`` on average (noise 1): some texts are got wrong."""
    y = rng.integers(0, k, n)
    z = rng.normal(0, 1, (n, k))
    z[np.arange(n), y] += margin
    return z, y


# --------------------------------------------------------------------------- the fit

def test_the_fit_recovers_the_temperature_labels_were_drawn_with():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (6000, 3))
    p = softmax(z, 2.5)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.08)
    assert fit_temperature(z, y) == fit_temperature(z, y)  # deterministic


def test_calibration_lowers_the_ece_of_over_smoothed_logits_and_never_changes_a_label():
    rng = np.random.default_rng(1)
    z, y = _logits(rng, 3000, 3, margin=2.0)
    smooth = 0.05 * z  # an over-smoothed model: right labels, scores near a third
    c = calibrate(smooth[:1500], y[:1500])  # fitted on one half ("validation")
    assert c.temperature < 0.2 and c.ece_after < c.ece_before / 4 and c.nll_after < c.nll_before
    held_out, yh = smooth[1500:], y[1500:]  # reported on the other ("test")
    assert ece(held_out, yh, c.temperature) < ece(held_out, yh) / 4
    np.testing.assert_array_equal(softmax(held_out, c.temperature).argmax(1), held_out.argmax(1))
    sharp = calibrate(8 * z, y)  # the other way: an overconfident model is cooled down, labels kept
    assert sharp.temperature > 2 and sharp.ece_after < sharp.ece_before


def test_four_classes_scored_near_a_third_then_track_accuracy():
    """The issue's example: a 4-class student with the right labels but top scores of 0.3 to 0.35."""
    rng = np.random.default_rng(2)
    z, y = _logits(rng, 4000, 4, margin=3.0)
    smooth = z * 0.06
    top = softmax(smooth).max(1)
    assert 0.27 < top.mean() < 0.38  # what shipped before calibration
    c = calibrate(smooth[:2000], y[:2000])
    p = softmax(smooth[2000:], c.temperature)
    accuracy = float((p.argmax(1) == y[2000:]).mean())
    assert accuracy > 0.85
    assert p.max(1).mean() == pytest.approx(accuracy, abs=0.03)  # confidence now says how often it is right
    assert ece(smooth[2000:], y[2000:], c.temperature) < 0.03
    # macro-F1 1.0: every text right. Scores rise to what n right answers can vouch for, not to certainty.
    separated = smooth[2000:] + np.eye(4)[y[2000:]]
    right = calibrate(separated, y[2000:])
    assert right.capped and right.temperature < 0.2
    assert softmax(separated, right.temperature).max(1).mean() == pytest.approx(2001 / 2002, abs=1e-4)


def test_bad_logits_are_refused():
    with pytest.raises(DataError, match="NaN"):
        calibrate(np.array([[0.0, np.nan]]), np.array([0]))
    with pytest.raises(DataError, match="do not match"):
        calibrate(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(DataError, match="label ids"):
        calibrate(np.zeros((2, 2)), np.array([0, 2]))


def test_label_ids_follow_the_models_column_order():
    assert model_label_ids([0, 1, 1], ["neg", "pos"], ["pos", "neg"]).tolist() == [1, 0, 0]


# --------------------------------------------------------------------------- the runtime applies it

def _with_config(src, dest, **changes):
    shutil.copytree(src, dest)
    (dest / "manifest.json").unlink()
    config = json.loads((dest / "config.json").read_text()) | changes
    (dest / "config.json").write_text(json.dumps(config))
    write_manifest(dest, opset=17)
    return dest


def test_the_runtime_divides_the_logits_by_the_packages_temperature(tiny_package, tmp_path):
    texts = ["the film was good and warm", "a dull , boring plot", "fine", ""]
    plain = TextClassifier.load(tiny_package)
    hot = TextClassifier.load(_with_config(tiny_package, tmp_path / "hot", temperature=0.25))
    assert plain.temperature == 1.0 and hot.temperature == 0.25 and "temperature=0.25" in repr(hot)
    logits = hot.predict_logits(texts)
    np.testing.assert_array_equal(logits, plain.predict_logits(texts))  # the graph's, untouched
    np.testing.assert_allclose(hot.predict_proba(texts), softmax(logits, 0.25), atol=1e-6)
    assert [p["label"] for p in hot.predict(texts)] == [p["label"] for p in plain.predict(texts)]
    for bad in (0, -1.0, float("nan"), "2"):
        with pytest.raises(PackageFormatError, match="temperature"):
            PackageConfig.from_dict({**plain.config.to_dict(), "temperature": bad})


def test_packages_from_before_the_fields_are_read_by_their_variant(tiny_package):
    old = {k: v for k, v in TextClassifier.load(tiny_package).config.to_dict().items()
           if k not in ("temperature", "batch_dependent", "batch_invariant")}
    int8 = PackageConfig.from_dict({**old, "variant": "int8-dynamic"})
    assert int8.temperature == 1.0 and int8.batch_dependent and int8.batch_invariant and int8.runs_alone
    static = PackageConfig.from_dict({**old, "variant": "int8-static"})
    assert not static.batch_dependent and not static.runs_alone


# --------------------------------------------------------------------------- the package fits it

@pytest.fixture(scope="module")
def smoothed_onnx_dir(tmp_path_factory, tiny_quantized_dir):
    """The trained tiny export with its fp32 logits multiplied by 0.05 in the graph: an over-smoothed model."""
    import onnx
    from onnx import helper, numpy_helper

    folder = tmp_path_factory.mktemp("smoothed") / "onnx"
    shutil.copytree(tiny_quantized_dir, folder)
    model = onnx.load(folder / "model.onnx")
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["logits_raw" if o == "logits" else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(0.05, dtype=np.float32), "smoothing"))
    graph.node.append(helper.make_node("Mul", ["logits_raw", "smoothing"], ["logits"]))
    onnx.save(model, folder / "model.onnx")
    return folder


def test_the_package_fits_a_temperature_that_lowers_the_ece_and_keeps_every_label(smoothed_onnx_dir, tmp_path,
                                                                                    tiny_csv):
    calibrated = build_package(PackagingConfig(str(smoothed_onnx_dir), output=str(tmp_path / "cal"), variant="fp32"))
    raw = build_package(PackagingConfig(str(smoothed_onnx_dir), output=str(tmp_path / "raw"), variant="fp32",
                                        calibrate=False))
    config = json.loads((calibrated / "config.json").read_text())
    fit = json.loads((calibrated / "manifest.json").read_text())["calibration"]
    assert fit["split"] == "validation" and fit["n"] == len(load_data(DataConfig(source=str(tiny_csv))).validation)
    assert config["temperature"] == fit["temperature"] == fit["shipped"]["temperature"] < 0.5
    assert fit["shipped"]["ece_after"] < fit["shipped"]["ece_before"]
    assert json.loads((raw / "config.json").read_text())["temperature"] == 1.0
    assert json.loads((raw / "manifest.json").read_text())["calibration"] is None
    assert "## Calibration" in (calibrated / "README.md").read_text()

    test = load_data(DataConfig(source=str(tiny_csv))).test  # reported on a split the fit never saw
    y = np.asarray(test.labels)
    cal_p = TextClassifier.load(calibrated).predict_proba(test.texts)
    raw_p = TextClassifier.load(raw).predict_proba(test.texts)
    np.testing.assert_array_equal(cal_p.argmax(1), raw_p.argmax(1))
    from edgedistill.compress.evaluate import expected_calibration_error

    assert expected_calibration_error(y, cal_p) < expected_calibration_error(y, raw_p) / 2
    assert raw_p.max(1).mean() < 0.6 < cal_p.max(1).mean()


def test_the_build_report_shows_the_ece_before_and_after_on_test(smoothed_onnx_dir, tmp_path, tiny_csv):
    from edgedistill.compress.report import build_rows, calibration_rows, to_markdown

    pkg = build_package(PackagingConfig(str(smoothed_onnx_dir), output=str(tmp_path / "package"), variant="fp32"))
    clf = TextClassifier.load(pkg)
    data = load_data(DataConfig(source=str(tiny_csv)))
    rows = calibration_rows({"package (shipped)": (clf, clf.temperature)}, data.test, list(data.label_names))
    (row,) = rows
    assert row["n"] == len(data.test) and row["temperature"] == clf.temperature
    assert row["ece_after"] < row["ece_before"] and row["nll_after"] < row["nll_before"]
    shutil.copytree(smoothed_onnx_dir, tmp_path / "onnx")
    table_rows, meta = build_rows(tmp_path)
    md = to_markdown("tiny", "quick", table_rows, {**meta, "calibration": rows})
    assert f"## Calibration: test split, {len(data.test)} texts" in md
    assert f"| package (shipped) | {clf.temperature:.4g} | {row['ece_before']:.4f} | {row['ece_after']:.4f} |" in md


# --------------------------------------------------------------------------- batch-invariant answers

@pytest.fixture(scope="module")
def int8_package(tmp_path_factory, tiny_quantized_dir):
    return build_package(PackagingConfig(str(tiny_quantized_dir), output=str(tmp_path_factory.mktemp("i8") / "pkg"),
                                         variant="int8-dynamic"))


def _mixed_texts() -> list[str]:
    texts = [t for t, _ in make_sentences(40, seed=5)]
    return texts + ["", "fine", " ".join(["boring"] * 30 + ["superb"] * 30), "a warm , funny film " * 3]


def test_the_tiny_int8_package_answers_every_text_the_same_alone_and_in_batches(int8_package):
    config = json.loads((int8_package / "config.json").read_text())
    assert config["variant"] == "int8-dynamic" and config["batch_dependent"] and config["batch_invariant"]
    clf = TextClassifier.load(int8_package)
    assert clf.runs_alone and "one text per call" in repr(clf)
    texts = _mixed_texts()
    for answer in (clf.predict_logits, clf.predict_proba):
        alone = np.concatenate([answer([t]) for t in texts])
        np.testing.assert_array_equal(answer(texts, batch_size=32), alone)
        shuffled = np.random.default_rng(0).permutation(len(texts))
        np.testing.assert_array_equal(answer([texts[i] for i in shuffled], batch_size=7), alone[shuffled])
    assert [p["label"] for p in clf.predict(texts)] == [clf.predict(t)["label"] for t in texts]
    # the test can fail: batched, this model's logits do move with their batch-mates
    batched = TextClassifier.load(int8_package, batch_invariant=False)
    assert not batched.runs_alone
    alone = np.concatenate([clf.predict_logits([t]) for t in texts])
    assert np.abs(batched.predict_logits(texts, batch_size=32) - alone).max() > 1e-4


def test_the_gate_measures_what_ships_and_the_package_inherits_the_opt_out(int8_package, tiny_quantized_dir,
                                                                           tmp_path):
    report = QuantizeReport.load(tiny_quantized_dir)
    assert report.config["batch_invariant"] is True
    assert report.attempt("int8-dynamic").batch_flips == 0.0  # run one text per call, as it ships
    manifest = json.loads((int8_package / "manifest.json").read_text())
    assert manifest["calibration"]["variant"] == "int8-dynamic"  # fitted on the shipped variant, as it runs
    assert manifest["calibration"]["fp32"]["n"] == manifest["calibration"]["n"]
    card = (int8_package / "README.md").read_text()
    assert "runs each text on its own" in card and "fp32 student" in card

    onnx_dir = tmp_path / "onnx"
    shutil.copytree(tiny_quantized_dir, onnx_dir)
    opted_out = QuantizeReport.from_dict({**report.to_dict(), "config": {**report.config, "batch_invariant": False}})
    opted_out.save(onnx_dir)
    pkg = build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg"), variant="int8-dynamic",
                                        calibrate=False))
    config = json.loads((pkg / "config.json").read_text())
    assert config["batch_dependent"] and config["batch_invariant"] is False
    assert not TextClassifier.load(pkg).runs_alone
    assert TextClassifier.load(pkg, batch_invariant=True).runs_alone  # the caller has the last word


def test_static_int8_and_fp32_packages_batch_as_before(tiny_quantized_dir, tmp_path):
    for variant in ("fp32", "int8-static"):
        pkg = build_package(PackagingConfig(str(tiny_quantized_dir), output=str(tmp_path / variant), variant=variant,
                                            calibrate=False))
        config = json.loads((pkg / "config.json").read_text())
        assert config["batch_dependent"] is False and not TextClassifier.load(pkg).runs_alone


def test_the_batch_invariance_benchmark_runs_on_the_tiny_package(int8_package, tmp_path):
    """Structure only (no timing thresholds): rows for the package both ways and the build's fp32 and static int8."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "batch_invariance.py"
    spec = importlib.util.spec_from_file_location("batch_invariance", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["batch_invariance"] = bench
    spec.loader.exec_module(bench)
    assert bench.main([str(int8_package), "--threads", "1", "--seconds", "0.05", "--warmup", "0.01",
                       "--texts", "40", "--synthetic", "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "batch_invariance-pkg.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert rows[bench.INVARIANT]["one_text_per_call"] and not rows[bench.BATCHED]["one_text_per_call"]
    assert {r["variant"] for r in result["rows"]} == {"int8-dynamic", "fp32", "int8-static"}
    assert all(r["batch32"]["throughput_per_s"] > 0 and r["batch1"]["p50_ms"] > 0 for r in result["rows"])
    assert result["flips"]["texts"] == 40 and result["flips"]["invariant_check_max_abs_diff"] == 0.0
    assert "| package, one text per call (invariant) | one text per call |" in \
        (tmp_path / "batch_invariance-pkg.md").read_text()


# ------------------------------------------------------------------------ per-class decision biases
def _skewed(n: int, k: int, seed: int):
    """Logits that under-call the rarest classes: biases can lift them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = np.linspace(3, 1, k)
    y = rng.choice(k, n, p=p / p.sum())
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 2.0
    logits[:, k // 2:] -= 1.5
    return logits, y


def test_macro_f1_matches_sklearn():
    import numpy as np
    from sklearn.metrics import f1_score

    from edgedistill.compress.calibration import macro_f1

    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 6, 300), rng.integers(0, 5, 300)
    assert macro_f1(y, pred, 6) == pytest.approx(f1_score(y, pred, average="macro"))


def test_biases_ship_where_they_help_on_held_out_halves():
    import numpy as np

    from edgedistill.compress.calibration import fit_biases, macro_f1

    logits, y = _skewed(2000, 5, 0)
    fit = fit_biases(logits, y)
    assert fit.biases is not None and fit.heldout_gain > 0 and fit.macro_f1_after > fit.macro_f1_before
    assert fit.biases[-1] > 0  # the under-called class is lifted
    new_logits, new_y = _skewed(2000, 5, 1)  # fresh texts of the same kind: the gain carries over
    assert macro_f1(new_y, (new_logits + np.array(fit.biases)).argmax(1), 5) > macro_f1(new_y, new_logits.argmax(1), 5)


def test_biases_are_refused_where_they_only_fit_noise():
    import numpy as np

    from edgedistill.compress.calibration import fit_biases

    rng = np.random.default_rng(2)
    y = rng.integers(0, 40, 200)  # 40 classes, 5 texts each: a search over 40 biases only fits noise
    logits = rng.normal(0, 1, (200, 40))
    logits[np.arange(200), y] += 2.5
    fit = fit_biases(logits, y)
    assert fit.biases is None and fit.heldout_gain <= 0 and fit.macro_f1_after == fit.macro_f1_before
