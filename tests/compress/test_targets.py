"""The targets check: a variant that disagrees with fp32 on a target is not shipped there, per-target files in
the package, the runtime and the web export picking theirs, unverified targets refused unless allowed.

The other targets' kernels are simulated (fast): a runner in ``edgedistill.compress.targets.RUNNERS`` is replaced by one
that runs a perturbed model (the logits shifted by a bias, as a wrong kernel would) on this machine. The real
QEMU and Chromium runs on a tiny package are marked real + slow.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError
from edgedistill.compress.package import PackagingConfig, build_package
from edgedistill.compress.quantize import QuantizeReport
from edgedistill.compress.targets import RUNNERS, TargetRow, TargetsConfig, TargetsReport, TargetUnavailable, \
    build_machine, candidates, check_package, check_targets, compare
from edgedistill.runtime import TextClassifier
from edgedistill.runtime.package import target_model, verify_package

HERE = build_machine()
OTHER = "arm64" if HERE == "x86" else "x86"


@pytest.fixture
def onnx_dir(tmp_path, tiny_quantized_dir) -> Path:
    """A private copy of the quantized tiny export (the targets stage writes into it), its choice made int8: the
    gate picks the fastest passing variant, and on a model this small timing noise decides which that is."""
    folder = Path(shutil.copytree(tiny_quantized_dir, tmp_path / "build" / "onnx"))
    report = QuantizeReport.load(folder)
    int8 = next(a for a in report.attempts if a.passed and a.variant.startswith("int8"))
    report.chosen, report.chosen_variant, report.chosen_file = int8.name, int8.variant, int8.file
    report.save(folder)
    return folder


def _cfg(onnx_dir: Path, csv: Path, **kw) -> TargetsConfig:
    return TargetsConfig(onnx_dir=str(onnx_dir), data=DataConfig(source=str(csv)), **kw)


def _perturbed(package: Path, model_file: str, dest: Path, bias: list[float]) -> Path:
    """A one-file copy of a package's ``model_file`` whose model adds ``bias`` to its logits: a model that
    answers otherwise, as a wrong kernel would."""
    import onnx
    from onnx import helper, numpy_helper

    from edgedistill.runtime.package import write_manifest

    dest.mkdir(parents=True)
    for name in ("tokenizer.json", "config.json"):
        shutil.copyfile(package / name, dest / name)
    model = onnx.load(str(package / model_file))
    g = model.graph
    producer = next(n for n in g.node if "logits" in n.output)
    producer.output[list(producer.output).index("logits")] = "logits_unbiased"
    g.initializer.append(numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "target_bias"))
    g.node.append(helper.make_node("Add", ["logits_unbiased", "target_bias"], ["logits"]))
    onnx.save(model, str(dest / "model.onnx"))
    write_manifest(dest, opset=17)
    return dest


def _runner(perturb=lambda variant: False, calls=None):
    """A runner for another target: each package's file for that target run on this machine, through a
    perturbed model where ``perturb(variant)`` says so."""
    def run(target, packages, texts, cfg, work):
        out = []
        for p in packages:
            clf = TextClassifier.load(p, target=target)
            if calls is not None:
                calls.append(clf.config.variant)
            if perturb(clf.config.variant):
                clf = TextClassifier.load(_perturbed(p, clf.model_file, work / f"perturbed-{len(os.listdir(work))}",
                                                     [3.0, -3.0]))
            out.append(clf.predict_proba(texts).astype(np.float64))
        return {f"{target}/simulated": out}
    return run


# --------------------------------------------------------------------------- the rules

def test_compare_holds_a_target_to_fp32_allowing_what_the_gate_accepted():
    cfg = TargetsConfig(onnx_dir="x", min_agreement=0.9, prob_tolerance=0.05)
    ref = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    gated = np.array([[0.85, 0.15], [0.45, 0.55], [0.25, 0.75], [0.3, 0.7]])  # text 1 flipped on the build machine
    same = compare(TargetRow("t", "t", "a", "int8"), gated.copy(), ref, gated, cfg)
    assert same.status == "passed" and same.agreement == 1.0 and same.agreement_all == 0.75
    assert same.allowed_max_abs_diff == pytest.approx(0.15 + 0.05)
    flipped = gated.copy()
    flipped[3] = [0.6, 0.4]  # a text the gate saw labelled as fp32 changes on the target
    row = compare(TargetRow("t", "t", "a", "int8"), flipped, ref, gated, cfg)
    assert row.status == "failed" and row.agreement == pytest.approx(2 / 3)
    assert "1 of 3 labels differ" in row.reason and "max |Δp| 0.3 > 0.2" in row.reason
    fp32 = compare(TargetRow("t", "t", "fp32", "fp32"), ref + 0.01, ref, None, cfg)  # no baseline: fp32 itself
    assert fp32.status == "passed" and fp32.allowed_max_abs_diff == pytest.approx(0.05)


def test_config_names_the_field_at_fault():
    assert TargetsConfig(onnx_dir="x").resolved_platforms() == (HERE,)
    with pytest.raises(ConfigError, match=r"targets.platforms.*unknown \['riscv'\]"):
        TargetsConfig(onnx_dir="x", platforms=("x86", "riscv"))
    with pytest.raises(ConfigError, match=r"targets.allow_unverified.*\['cuda'\] not among the declared"):
        TargetsConfig(onnx_dir="x", platforms=("x86",), allow_unverified=("cuda",))
    with pytest.raises(ConfigError, match="targets.min_agreement"):
        TargetsConfig(onnx_dir="x", min_agreement=1.5)


def test_a_recipe_declares_its_targets(tmp_path, tiny_csv):
    from edgedistill.compress.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text(f'name = "r"\n[data]\nsource = "{tiny_csv}"\n[targets]\nplatforms = ["x86", "arm64", "wasm", '
                    f'"cuda"]\nallow_unverified = ["cuda"]\n')
    cfg = load_recipe(path).targets()
    assert cfg.platforms == ("x86", "arm64", "wasm", "cuda") and cfg.allow_unverified == ("cuda",)
    assert cfg.onnx_dir == str(tmp_path / "r" / "onnx") and cfg.data.source == str(tiny_csv)
    with pytest.raises(ConfigError, match="targets.onnx_dir.*set by the pipeline"):
        load_recipe(path, overrides=["targets.onnx_dir=elsewhere"])


def test_candidates_run_from_the_gates_choice_to_fp32(tiny_quantized_dir):
    report = QuantizeReport.load(tiny_quantized_dir)
    cpu = candidates(report, "arm64")
    assert cpu[0].name == report.chosen and cpu[-1].name == "fp32"
    assert all(a.passed and a.variant != "fp16" for a in cpu)
    assert [a.variant for a in candidates(report, "cuda")] == ["fp16", "fp32"]


# --------------------------------------------------------------------------- the stage and the package

def test_a_target_that_disagrees_is_not_shipped_there(onnx_dir, tiny_csv, monkeypatch, tmp_path):
    calls: list[str] = []
    monkeypatch.setitem(RUNNERS, OTHER, _runner(lambda v: v.startswith("int8"), calls))
    report = check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, OTHER)))
    q = QuantizeReport.load(onnx_dir)
    assert q.attempt(q.chosen).variant.startswith("int8")  # the gate chose int8: the case worth checking
    assert report.ship[HERE].attempt == q.chosen and report.ship[HERE].status == "passed"
    other = report.ship[OTHER]
    assert not other.variant.startswith("int8") and other.status == "fell back"
    failed = [r for r in report.rows if r.platform == OTHER and r.status == "failed"]
    assert failed and all(r.fell_back_to for r in failed) and failed[0].attempt == q.chosen
    assert "labels differ" in failed[0].reason or "max |Δp|" in failed[0].reason
    assert calls[0] == q.attempt(q.chosen).variant and calls[-1] == other.variant  # in order, stopping at a pass
    saved = TargetsReport.load(onnx_dir / "targets.json")
    assert saved.ship[OTHER].attempt == other.attempt and (onnx_dir / "targets.md").is_file()
    assert "fell back to" in (onnx_dir / "targets.md").read_text()

    pkg = build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg")))
    manifest = verify_package(pkg)
    here_file, here_entry = target_model(manifest, HERE)
    other_file, other_entry = target_model(manifest, OTHER)
    assert here_file == "model.onnx" and other_file != "model.onnx" and other_file in manifest["files"]
    assert (pkg / other_file).read_bytes() == (onnx_dir / other.file).read_bytes()
    assert (pkg / "model.onnx").read_bytes() == (onnx_dir / q.attempt(q.chosen).file).read_bytes()
    assert other_entry["variant"] == other.variant and other_entry["verified"] is True
    assert here_entry["checks"][0]["status"] == "passed" and here_entry["attempt"] == q.chosen
    # the runtime picks the file of the machine it runs on (or the one asked for)
    mine, theirs = TextClassifier.load(pkg), TextClassifier.load(pkg, target=OTHER)
    assert (mine.model_file, mine.target, mine.config.variant) == ("model.onnx", HERE, q.attempt(q.chosen).variant)
    assert (theirs.model_file, theirs.config.variant) == (other_file, other.variant)
    texts = ["a good film", "a dull plot", "quite moving"]
    alone = TextClassifier.from_files(onnx_dir / other.file, onnx_dir / "tokenizer.json",
                                      json.loads((pkg / "config.json").read_text()) | {"variant": other.variant})
    np.testing.assert_allclose(theirs.predict_proba(texts), alone.predict_proba(texts), atol=1e-6)


def test_targets_that_agree_share_one_file(onnx_dir, tiny_csv, monkeypatch, tmp_path):
    monkeypatch.setitem(RUNNERS, OTHER, _runner())
    report = check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, OTHER)))
    assert {s.status for s in report.ship.values()} == {"passed"}
    pkg = build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg")))
    manifest = verify_package(pkg)
    assert sorted(p.name for p in pkg.glob("*.onnx")) == ["model.onnx"]
    assert {t: e["file"] for t, e in manifest["targets"].items()} == {HERE: "model.onnx", OTHER: "model.onnx"}


def test_an_unavailable_target_is_not_checked_and_refused_unless_allowed(onnx_dir, tiny_csv, monkeypatch, tmp_path):
    def missing(*args):
        raise TargetUnavailable("no headless Chromium here: simulated")

    monkeypatch.setitem(RUNNERS, "wasm", missing)
    with pytest.raises(ConfigError, match=r"targets.allow_unverified.*wasm could not be checked here"):
        check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, "wasm")))
    saved = TargetsReport.load(onnx_dir / "targets.json")  # the table is written before the build stops
    row = next(r for r in saved.rows if r.platform == "wasm")
    assert row.status == "not checked" and row.verdict == "not checked: no headless Chromium here: simulated"
    with pytest.raises(Exception, match="wasm may not ship"):  # nor can a package be made from that report
        build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "refused")))

    report = check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, "wasm"), allow_unverified=("wasm",)))
    assert report.ship["wasm"].status == "unverified" and not report.ship["wasm"].verified
    assert not any(r.status == "passed" for r in report.rows if r.platform == "wasm")  # never "passed"
    manifest = verify_package(build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg"))))
    assert manifest["targets"]["wasm"]["verified"] is False and manifest["targets"][HERE]["verified"] is True


def test_cuda_without_a_gpu_is_refused_unless_the_recipe_allows_it(onnx_dir, tiny_csv, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a GPU: cuda is checked, not refused")
    with pytest.raises(ConfigError, match=r"targets.allow_unverified.*cuda could not be checked.*CUDAExecution"):
        check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, "cuda")))
    check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, "cuda"), allow_unverified=("cuda",)))
    pkg = build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg")))
    entry = verify_package(pkg)["targets"]["cuda"]
    assert entry == {**entry, "variant": "fp16", "verified": False, "status": "unverified", "file": "model.fp16.onnx"}
    assert (pkg / "model.fp16.onnx").read_bytes() == (onnx_dir / "model_fp16.onnx").read_bytes()
    assert TextClassifier.load(pkg).model_file == "model.onnx"  # a CPU never loads the GPU's file


def test_a_stale_check_is_refused(onnx_dir, tiny_csv, monkeypatch, tmp_path):
    check_targets(_cfg(onnx_dir, tiny_csv))
    chosen = QuantizeReport.load(onnx_dir)
    path = onnx_dir / chosen.attempt(chosen.chosen).file
    path.write_bytes(path.read_bytes() + b"\0")  # a later quantize run rewrote the file
    with pytest.raises(Exception, match="changed since the check"):
        build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg")))


def test_the_web_export_takes_the_wasm_file(onnx_dir, tiny_csv, monkeypatch, tmp_path, fake_npm):
    from edgedistill.runtime import webexport as web

    monkeypatch.setitem(RUNNERS, "wasm", _runner(lambda v: v.startswith("int8")))
    report = check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, "wasm")))
    pkg = build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg")))
    site = web.export_web(pkg, tmp_path / "site")
    build = json.loads((site / web.BUILD_FILE).read_text())
    assert build["variant"] == report.ship["wasm"].variant and build["dtype"] == "fp32"
    assert (site / build["model"]).read_bytes() == (onnx_dir / report.ship["wasm"].file).read_bytes()


# --------------------------------------------------------------------------- a finished package, the CLI

def test_cli_checks_a_builds_package(onnx_dir, tiny_csv, monkeypatch, tmp_path):
    from edgedistill.compress.cli import app

    monkeypatch.setitem(RUNNERS, OTHER, _runner(lambda v: v.startswith("int8")))
    build_package(PackagingConfig(str(onnx_dir), output=str(onnx_dir.parent / "package")))  # no targets check
    res = CliRunner().invoke(app, ["targets", str(onnx_dir.parent), "--target", HERE, "--target", OTHER,
                                   "--target", "cuda", "--json", str(tmp_path / "t.json"),
                                   "--markdown", str(tmp_path / "t.md")])
    assert res.exit_code == 1, res.output  # the int8 file fails on the other target: no fallback for a package
    saved = json.loads((tmp_path / "t.json").read_text())
    by = {r["target"]: r for r in saved["rows"]}
    assert by[HERE]["status"] == "passed" and by[f"{OTHER}/simulated"]["status"] == "failed"
    assert by["cuda"]["status"] == "not checked" or by["cuda"]["status"] == "passed"
    assert saved["package_manifest_sha256"] and "| target | variant checked |" in (tmp_path / "t.md").read_text()
    assert "not checked" in res.output or "passed" in res.output


def test_check_package_reports_each_targets_own_file(onnx_dir, tiny_csv, monkeypatch, tmp_path):
    monkeypatch.setitem(RUNNERS, OTHER, _runner(lambda v: v.startswith("int8")))
    check_targets(_cfg(onnx_dir, tiny_csv, platforms=(HERE, OTHER)))
    pkg = build_package(PackagingConfig(str(onnx_dir), output=str(tmp_path / "pkg")))
    report = check_package(pkg, onnx_dir, _cfg(onnx_dir, tiny_csv, platforms=(HERE, OTHER)))
    assert [r.status for r in report.rows] == ["passed", "passed"]  # the other target runs its own fp32 file
    assert report.rows[1].attempt.startswith("model.") and "int8" not in report.rows[1].attempt


# --------------------------------------------------------------------------- real QEMU and Chromium

@pytest.mark.real
@pytest.mark.slow
def test_real_targets_on_a_tiny_package(tiny_package, tiny_onnx_dir, tmp_path, monkeypatch, real_cache,
                                        browser_tools):
    """The tiny fp32 package under QEMU (three CPU models) and in headless Chromium, against fp32 here."""
    import onnxruntime as ort  # noqa: F401

    if not shutil.which("apt-get"):
        pytest.skip("the arm64 targets' QEMU sysroot comes from Debian's packages: needs apt-get")
    from edgedistill.compress.quantize import QuantizeReport  # noqa: F401

    from tests.helpers import make_sentences

    csv = tmp_path / "texts.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in make_sentences(120, seed=5)))
    cfg = TargetsConfig(onnx_dir=str(tiny_onnx_dir), data=DataConfig(source=str(csv)),
                        platforms=("x86", "arm64", "wasm"), max_texts=16)
    monkeypatch.chdir(tiny_package.parent)  # named relative to here, as `edgedistill targets models/x` does
    report = check_package(Path(tiny_package.name), tiny_onnx_dir, cfg)
    by = {r.target: r for r in report.rows}
    assert set(by) == {"x86", "arm64/cortex-a72", "arm64/neoverse-n1", "arm64/neoverse-v1", "wasm/chromium"}, by
    for r in by.values():
        assert r.status == "passed" and r.max_abs_diff <= 1e-3, r
