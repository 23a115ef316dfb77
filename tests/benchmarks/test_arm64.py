"""benchmarks/arm64/check.py: the runtime on emulated aarch64 (QEMU user mode), labels and probabilities agreeing
with x86 fp32 (marked real + slow), and the report naming the package it checked.

The real check builds the emulated environment with ``benchmarks/arm64/setup.sh`` (cached; about a minute from a
cold cache, mostly downloads) and runs ``benchmarks/arm64/check.py`` on the tiny fp32 package and an
int8 package made from it with onnxruntime's ``quantize_dynamic``, under two QEMU CPU models that
select different onnxruntime kernels. Correctness only: no emulated time is reported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.helpers import make_sentences

REPO = Path(__file__).resolve().parents[2]
ARM64 = REPO / "benchmarks" / "arm64"


def _check_module():
    spec = importlib.util.spec_from_file_location("arm64_check", ARM64 / "check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["arm64_check"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def arm64_cache() -> Path:
    """A cache shared across runs (the user's), so CI pays for the downloads once."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        pytest.skip("the emulated environment is built from Debian packages (apt-get, dpkg-deb)")
    base = os.environ.get("EDGEDISTILL_ARM64_CACHE") or Path.home() / ".cache" / "edgedistill" / "arm64"
    return Path(base)


@pytest.mark.real
@pytest.mark.slow
def test_runtime_on_emulated_arm64_matches_x86(tiny_package, tmp_path, arm64_cache):
    check = _check_module()
    int8 = check.int8_from_fp32(tiny_package, tmp_path / "int8")
    assert json.loads((int8 / "config.json").read_text())["variant"] == "int8-dynamic"
    texts = [t for t, _ in make_sentences(24, seed=3)] + check.DEFAULT_TEXTS
    report = check.run_check(tiny_package, [int8], list(check.DEFAULT_CPUS), texts, cache=arm64_cache)

    cpus = {c["cpu"] for c in report["checks"]}
    assert {"cortex-a72", "neoverse-n1", "neoverse-v1"} <= cpus
    assert all(e["machine"] == "aarch64" for e in report["emulated"].values())
    # the three CPU models offer different instructions, so onnxruntime picks different kernels
    features = {cpu: set(e["cpu_features"]) for cpu, e in report["emulated"].items()}
    assert "asimddp" not in features["cortex-a72"] and "asimddp" in features["neoverse-n1"]
    assert "i8mm" not in features["neoverse-n1"] and "i8mm" in features["neoverse-v1"]
    by = {(c["cpu"], c["variant"]): c for c in report["checks"]}
    for cpu in ("cortex-a72", "neoverse-n1", "neoverse-v1"):
        fp32 = by[(cpu, "fp32")]
        assert fp32["max_abs_diff_vs_x86_fp32"] <= 1e-5 and fp32["label_mismatches"] == 0, fp32
        q = by[(cpu, "int8-dynamic")]
        assert q["max_abs_diff_vs_x86_fp32"] <= check.INT8_ATOL and q["label_mismatches"] == 0, q
        assert q["near_boundary"] < q["n"] // 4, q  # the label check is not excused away
    assert report["passed"], json.dumps(report["checks"], indent=1)
    import hashlib

    assert report["cpus"] == list(check.DEFAULT_CPUS)
    assert report["packages"][0] == {"path": str(tiny_package.resolve()), "variant": "fp32",
                                     "manifest_sha256": hashlib.sha256((tiny_package / "manifest.json").read_bytes())
                                     .hexdigest(), "model_sha256": check.describe_package(tiny_package)["model_sha256"]}
    assert "wall_seconds" in report and not any("latency" in k for c in report["checks"] for k in c)


def test_arm64_check_names_the_package_it_checked_by_manifest_hash(tiny_package, tmp_path):
    """benchmarks/arm64/check.py's report says which package it vouches for: path, manifest sha256, model sha256."""
    import hashlib
    import shutil

    spec = importlib.util.spec_from_file_location("arm64_check", REPO / "benchmarks" / "arm64" / "check.py")
    check = importlib.util.module_from_spec(spec)
    sys.modules["arm64_check"] = check  # its dataclasses look their module up
    spec.loader.exec_module(check)
    assert check.DEFAULT_CPUS == ("cortex-a72", "neoverse-n1", "neoverse-v1")  # all three unless --cpu says fewer
    manifest = (tiny_package / "manifest.json").read_bytes()
    described = check.describe_package(tiny_package)
    assert described == {"path": str(tiny_package), "variant": "fp32",
                         "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                         "model_sha256": json.loads(manifest)["files"]["model.onnx"]["sha256"]}
    zipped = Path(shutil.make_archive(str(tmp_path / "pkg"), "zip", tiny_package))
    assert check.describe_package(zipped)["manifest_sha256"] == described["manifest_sha256"]
