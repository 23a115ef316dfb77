"""edgedistill.compress.package: exactly the listed files with matching hashes, the report's choice, never a rejected
variant."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.compress.errors import ConfigError
from edgedistill.compress.package import PackagingConfig, build_package
from edgedistill.compress.quantize import QuantizeReport
from edgedistill.runtime import TextClassifier, sha256_file, verify_package

PACKAGE_FILES = {"model.onnx", "tokenizer.json", "config.json", "README.md", "manifest.json"}


@pytest.fixture(scope="module")
def package(tmp_path_factory, tiny_quantized_dir):
    out = tmp_path_factory.mktemp("pkg") / "movie-tiny"
    return build_package(PackagingConfig(str(tiny_quantized_dir), output=str(out), zip=True))


def test_the_package_holds_exactly_the_listed_files_and_their_hashes(package):
    assert {p.name for p in package.iterdir()} == PACKAGE_FILES
    manifest = json.loads((package / "manifest.json").read_text())
    assert set(manifest["files"]) == PACKAGE_FILES - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(package / name), name
        assert entry["size"] == (package / name).stat().st_size, name
    assert verify_package(package)["format"] == "edgedistill-package"
    assert not [p for p in package.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_the_package_ships_the_reports_choice(package, tiny_quantized_dir):
    report = QuantizeReport.load(tiny_quantized_dir)
    chosen = report.attempt(report.chosen)
    assert (package / "model.onnx").read_bytes() == (tiny_quantized_dir / chosen.file).read_bytes()
    config = json.loads((package / "config.json").read_text())
    assert config["variant"] == chosen.variant
    assert config["labels"] == ["negative", "positive"] and config["max_length"] == 64
    assert config["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    manifest = json.loads((package / "manifest.json").read_text())
    assert manifest["opset"] >= 17 and manifest["metrics"]["macro_f1"] == chosen.macro_f1
    assert manifest["metrics"]["agreement_with_fp32"] == chosen.agreement
    if chosen.variant.startswith("int8"):
        assert manifest["quantization"]["settings"] == chosen.settings
        assert manifest["quantization"]["gate"]["status"] == "passed"
        q = manifest["quantization"]
        assert (q["preset"], q["detected_isa"], q["isa"]) == ("avx2", None, report.isa)
        assert f"Preset: avx2; gated and timed on a CPU with int8 instruction set {report.isa}." in \
            (package / "README.md").read_text()
    else:
        assert manifest["quantization"] is None


def test_the_model_card_has_every_section(package):
    card = (package / "README.md").read_text()
    for heading in ("# movie-tiny", "## Intended use", "## Data", "## Metrics", "## Quantization", "## Limitations"):
        assert heading in card
    assert "`negative`" in card and "`positive`" in card and "64 tokens" in card


def test_an_int8_package_names_its_preset_and_instruction_set(tiny_quantized_dir):
    """Whatever the tiny gate chose: an int8 variant's manifest and card say what chose its preset, and where."""
    from edgedistill.compress.exportmeta import read_export
    from edgedistill.compress.package import _quantization, model_card

    report = QuantizeReport.load(tiny_quantized_dir)
    auto = QuantizeReport.from_dict({**report.to_dict(), "config": {**report.config, "preset": "avx512_vnni",
                                                                    "detected_isa": "amx"}})
    attempt = auto.attempt("int8-dynamic")
    q = _quantization(attempt, auto)
    assert (q["preset"], q["detected_isa"], q["isa"]) == ("avx512_vnni", "amx", report.isa)
    card = model_card("x", read_export(tiny_quantized_dir), attempt, auto, {})
    assert (f"Preset: avx512_vnni (auto-detected: amx); gated and timed on a CPU with int8 instruction set "
            f"{report.isa}.") in card


def test_the_zip_loads_and_predicts_like_the_folder(package):
    zipped = package.with_name(package.name + ".zip")
    assert set(zipfile.ZipFile(zipped).namelist()) == PACKAGE_FILES
    texts = ["the film was good and warm", "a dull , boring plot", "fine"]
    np.testing.assert_array_equal(TextClassifier.load(zipped).predict_proba(texts),
                                  TextClassifier.load(package).predict_proba(texts))


def test_a_rejected_variant_is_never_packaged(tmp_path, tiny_quantized_dir):
    onnx_dir = tmp_path / "onnx"
    shutil.copytree(tiny_quantized_dir, onnx_dir)
    report = QuantizeReport.load(onnx_dir)
    static = report.attempt("int8-static")
    static.status, static.reason = "rejected", "-3.00 points, beyond the budget of -1"
    report.save(onnx_dir)
    with pytest.raises(ConfigError, match="did not pass the accuracy gate"):
        build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg"), variant="int8-static"))
    with pytest.raises(ConfigError, match="fp16"):
        build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg"), variant="fp16"))
    with pytest.raises(ConfigError, match="not in the quantize report"):
        build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg"), variant="int4"))
    assert not (tmp_path / "pkg").exists()
    out = build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg"), variant="int8-dynamic"))
    assert json.loads((out / "config.json").read_text())["variant"] == "int8-dynamic"


def test_without_a_report_only_fp32_is_packaged(tmp_path, tiny_onnx_dir):
    with pytest.raises(ConfigError, match="no quantize report"):
        build_package(PackagingConfig(str(tiny_onnx_dir), output=str(tmp_path / "pkg"), variant="int8-dynamic"))
    out = build_package(PackagingConfig(str(tiny_onnx_dir), output=str(tmp_path / "pkg")))
    assert (out / "model.onnx").read_bytes() == (tiny_onnx_dir / "model.onnx").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quantization"] is None and "macro_f1" not in manifest["metrics"]
    assert "Not measured" in (out / "README.md").read_text()


def test_an_existing_package_needs_overwrite(tmp_path, tiny_onnx_dir):
    cfg = PackagingConfig(str(tiny_onnx_dir), output=str(tmp_path / "pkg"), name="again")
    build_package(cfg)
    with pytest.raises(ConfigError, match="already exists"):
        build_package(cfg)
    (tmp_path / "pkg" / "stray.txt").write_text("x")
    build_package(PackagingConfig(str(tiny_onnx_dir), output=str(tmp_path / "pkg"), overwrite=True))
    assert {p.name for p in (tmp_path / "pkg").iterdir()} == PACKAGE_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]


def test_the_recipe_is_recorded(tmp_path, tiny_onnx_dir):
    recipe = {"name": "movie-tiny", "distill": {"alpha": 0.5}}
    out = build_package(PackagingConfig(str(tiny_onnx_dir), output=str(tmp_path / "pkg"), recipe=recipe))
    assert json.loads((out / "manifest.json").read_text())["recipe"] == recipe
    with pytest.raises(ConfigError, match="recipe"):
        PackagingConfig(str(tiny_onnx_dir), recipe="models/x.toml")


def test_cli_package(tmp_path, tiny_quantized_dir):
    from edgedistill.compress.cli import app

    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "movie-tiny"\n[quantize]\npreset = "avx2"\n')
    res = CliRunner().invoke(app, ["package", str(tiny_quantized_dir), "--output", str(tmp_path / "pkg"), "--zip",
                                   "--recipe", str(recipe), "--name", "movie-tiny"])
    assert res.exit_code == 0, res.output
    assert "model.onnx" in res.output and "README.md" in res.output and "macro-F1" in res.output
    assert (tmp_path / "pkg.zip").is_file()
    manifest = json.loads((tmp_path / "pkg" / "manifest.json").read_text())
    assert manifest["recipe"] == {"name": "movie-tiny", "quantize": {"preset": "avx2"}}
    res = CliRunner().invoke(app, ["package", str(tiny_quantized_dir), "--output", str(tmp_path / "pkg")])
    assert res.exit_code == 1 and "already exists" in res.output
