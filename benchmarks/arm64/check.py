"""Run the runtime on fp32 and int8 packages under emulated aarch64 CPUs and compare with x86 fp32.

Correctness only: QEMU user mode runs the aarch64 builds of Python, numpy, onnxruntime and
tokenizers (``compress/targets/arm64_setup.sh`` builds them into a cache; ``edgedistill.compress.targets.arm64`` runs
them, the same code the build's targets check runs), and each QEMU CPU model makes onnxruntime pick
different kernels: ``cortex-a72`` plain NEON, ``neoverse-n1`` the dot-product (sdot/udot) int8
kernels, ``neoverse-v1`` i8mm (smmla) and SVE. Emulated times are 50 to 300 times slower and
distorted, so none is measured or reported here; real ARM speed comes from ``edgedistill bench``
on a board (benchmarks/README.md).

Only a copy of ``runtime/`` travels to the emulated side (no ``compress``, no torch): the worker
fails if either gets imported. The x86 reference runs the same worker on the same copy.

Checks, per package and CPU model, against the x86 fp32 probabilities of the same texts:

- fp32 package: predicted labels equal, and ``max |p_arm - p_x86| <= 1e-5`` (FP32_ATOL). Only the
  order of float additions differs between NEON and AVX2 kernels: observed about 1e-7.
- int8 package: ``max |p_arm_int8 - p_x86_fp32| <= INT8_ATOL`` (0.1), and labels equal to x86
  fp32 wherever x86 fp32's top-two margin exceeds 2 * INT8_ATOL (a text that close to the decision
  boundary may flip under any quantisation; such texts are counted and reported, never hidden).
  Why 0.1: what is compared is the quantisation error itself plus the ARM kernels' own rounding.
  Dynamic int8 rounds each weight and each activation tensor to 1/255 of its range; a logit error
  e moves a two-class probability by at most e / 4. On the tiny test model (random weights of std
  0.5, so wide activation ranges and coarse steps) x86 int8 lands 0.096 from x86 fp32 and the
  emulated ARM int8 0.061; on the real shipped MiniLM student (static int8 QDQ) x86 and ARM int8 both
  land 0.0505 from x86 fp32 on real test texts (and within 6e-8 of each other). ARM int8
  is deliberately not compared bit for bit with x86 int8: x86 without VNNI saturates some u8 x s8
  products (vpmaddubsw), ARM does not, so they differ by design (about 2e-3 on a real model, 0.1 on
  the tiny one). Int8 products are summed exactly in int32, so the NEON, dot-product and i8mm kernels
  give the same int8 results as one another (seen: identical to the last bit). A wrong ARM kernel (the silent garbage
  QEMU 7.2's default CPU gave) shows up as flipped labels or differences far beyond the tolerance. The x86 int8 error is
  reported beside the ARM rows for scale (informational: it is the host's quantisation, not what is checked).

The report names every package it checked by path and by the sha256 of its ``manifest.json`` (which
holds the sha256 of every file in the package), so a committed result says which build it vouches for.
All three CPU models run unless ``--cpu`` names fewer.

Usage::

    python benchmarks/arm64/check.py --fp32 PKG [--int8 PKG | --int8-from-fp32] \
        [--cpu cortex-a72 --cpu neoverse-n1 --cpu neoverse-v1] [--texts FILE] [--json OUT]
    python benchmarks/arm64/check.py --onnx-dir models/movie-sentiment/onnx   # every variant there

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks._paths import recorded_paths  # noqa: E402
from edgedistill.compress.targets import arm64  # noqa: E402
from edgedistill.compress.targets.config import ARM64_CPUS  # noqa: E402

FP32_ATOL = 1e-5
INT8_ATOL = 0.1
DEFAULT_CPUS = ARM64_CPUS

log = logging.getLogger("arm64-check")

DEFAULT_TEXTS = [
    "A warm, funny and smart film with a great cast.",
    "The plot is dull and the acting is awful.",
    "It was fine, I suppose, but the ending felt flat.",
    "Brilliant, moving, and really lovely from start to finish.",
    "A messy, tedious story that never comes to life.",
    "Not bad at all: the story is weak but the cast is superb.",
    "",
    "This movie is boring.",
    "One of the best films of the year, a real treat.",
    "I wanted to like it, but it is cold and poor.",
    "Great fun with the family.",
    "The worst script I have seen in a decade; avoid.",
    "Quite good acting and a clever, surprising ending that the story earned.",
    "Dull.",
    "Superb!",
    "An ambitious, uneven drama whose lovely moments are buried under a tedious, overlong second act "
    "that the director never quite manages to bring back to life, despite a warm and brilliant cast.",
]


# --------------------------------------------------------------------------- the environment
# One copy of the QEMU machinery: the build's targets check (compress/targets/arm64.py) runs the same.

def setup(cache: Path | None) -> dict[str, str]:
    """The emulated environment's variables (QEMU, SYSROOT, SITE, ARM64_PYTHON), set up when missing."""
    return arm64.setup(cache)


stage_runtime = arm64.stage_runtime


# --------------------------------------------------------------------------- packages

def package_from_onnx(onnx_file: Path, tokenizer_json: Path, config: dict[str, Any], dest: Path, *,
                      opset: int, quantization: dict[str, Any] | None = None) -> Path:
    """A model package (manifest and all) around one ONNX file, for variants that were never packaged."""
    sys.path.insert(0, str(REPO))
    from edgedistill.runtime.package import write_manifest

    dest.mkdir(parents=True)
    shutil.copy(onnx_file, dest / "model.onnx")
    shutil.copy(tokenizer_json, dest / "tokenizer.json")
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    (dest / "README.md").write_text(f"# {onnx_file.name}\n\nMade by benchmarks/arm64/check.py for the ARM64 check.\n")
    write_manifest(dest, opset=opset, quantization=quantization, metrics={}, recipe=None)
    return dest


def int8_from_fp32(fp32_pkg: Path, dest: Path) -> Path:
    """An int8 package made from an fp32 one with onnxruntime's ``quantize_dynamic`` (s8 weights, per tensor)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        q = Path(tmp) / "model.onnx"
        quantize_dynamic(fp32_pkg / "model.onnx", q, weight_type=QuantType.QInt8)
        config = json.loads((fp32_pkg / "config.json").read_text())
        config["variant"] = "int8-dynamic"
        opset = json.loads((fp32_pkg / "manifest.json").read_text()).get("opset", 17)
        return package_from_onnx(q, fp32_pkg / "tokenizer.json", config, dest, opset=opset,
                                 quantization={"method": "dynamic", "weight_type": "qint8", "per_channel": False})


def packages_from_onnx_dir(onnx_dir: Path, dest: Path) -> tuple[Path, list[Path]]:
    """fp32 and int8 packages from an export folder (``edgedistill export`` + ``quantize`` variants)."""
    sys.path.insert(0, str(REPO))
    from edgedistill.compress.errors import ExportError
    # the host side only: no compress travels to ARM
    from edgedistill.compress.exportmeta import read_export, runtime_config

    try:
        meta = read_export(onnx_dir)
    except ExportError as e:
        raise SystemExit(str(e)) from e
    files = {"fp32": "model.onnx", "int8-dynamic": "model_int8_dynamic.onnx", "int8-static": "model_int8_static.onnx"}
    made: dict[str, Path] = {}
    for variant, name in files.items():
        if (onnx_dir / name).is_file():
            made[variant] = package_from_onnx(onnx_dir / name, onnx_dir / "tokenizer.json",
                                              runtime_config(meta, variant), dest / variant, opset=meta.opset)
    return made["fp32"], [p for v, p in made.items() if v != "fp32"]


def describe_package(path: Path) -> dict[str, Any]:
    """Which package a check ran on: its path, the sha256 of its manifest.json (and so of every file it lists),
    its model file's sha256 and its variant."""
    sys.path.insert(0, str(REPO))
    from edgedistill.runtime.package import CONFIG_FILE, MANIFEST_FILE, MODEL_FILE, open_package

    with open_package(path) as folder:
        raw = (folder / MANIFEST_FILE).read_bytes()
        variant = json.loads((folder / CONFIG_FILE).read_text()).get("variant")
    return {"path": str(path), "manifest_sha256": hashlib.sha256(raw).hexdigest(),
            "model_sha256": (json.loads(raw).get("files") or {}).get(MODEL_FILE, {}).get("sha256"),
            "variant": variant}


# --------------------------------------------------------------------------- running

def run_worker(stage: Path, texts_file: Path, packages: list[Path], env: dict[str, str] | None = None,
               cpu: str | None = None) -> dict[str, Any]:
    """The worker's JSON: on the host (``env`` None) or under QEMU with the given CPU model."""
    try:
        return arm64.run_worker(stage, texts_file, packages, env, cpu)
    except arm64.WorkerError as e:
        raise RuntimeError(str(e)) from None


# --------------------------------------------------------------------------- comparing

@dataclass
class Check:
    cpu: str
    package: str
    variant: str
    atol: float
    max_abs_diff_vs_x86_fp32: float
    max_abs_diff_vs_x86_same: float
    label_mismatches: int
    near_boundary: int
    """Texts whose x86 fp32 top-two margin is within 2 * atol: a label flip there is not counted (int8 only)."""
    n: int
    informational: bool = False
    """A row shown for scale (the host's own int8 error), not part of the verdict."""
    passed: bool = False
    problems: list[str] = field(default_factory=list)


def _margin(p: np.ndarray) -> np.ndarray:
    top2 = np.sort(p, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def compare(cpu: str, pkg: str, arm: dict[str, Any], x86_same: dict[str, Any], x86_fp32: dict[str, Any],
            informational: bool = False) -> Check:
    p_arm, p_same, p_ref = (np.asarray(r["probs"]) for r in (arm, x86_same, x86_fp32))
    int8 = str(arm.get("variant") or "").startswith("int8")
    atol = INT8_ATOL if int8 else FP32_ATOL
    mismatch = p_arm.argmax(1) != p_ref.argmax(1)
    near = _margin(p_ref) <= 2 * atol if int8 else np.zeros(len(p_ref), dtype=bool)
    c = Check(cpu=cpu, package=pkg, variant=arm.get("variant") or "?", atol=atol,
              max_abs_diff_vs_x86_fp32=float(np.abs(p_arm - p_ref).max()),
              max_abs_diff_vs_x86_same=float(np.abs(p_arm - p_same).max()),
              label_mismatches=int((mismatch & ~near).sum()), near_boundary=int(near.sum()), n=len(p_ref),
              informational=informational)
    if arm["labels"] != x86_fp32["labels"]:
        c.problems.append(f"label names {arm['labels']} != {x86_fp32['labels']}")
    if c.max_abs_diff_vs_x86_fp32 > atol:
        c.problems.append(f"max |p - p_x86_fp32| = {c.max_abs_diff_vs_x86_fp32:.3g} > {atol:g}")
    if c.label_mismatches:
        c.problems.append(f"{c.label_mismatches} of {c.n} predicted labels differ from x86 fp32")
    c.passed = not c.problems
    return c


def run_check(fp32: Path, int8: list[Path], cpus: list[str], texts: list[str], cache: Path | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything: set up, run x86 and each emulated CPU, compare. Returns the JSON report."""
    started = time.perf_counter()
    env = env or setup(cache)
    packages = [fp32.resolve(), *(p.resolve() for p in int8)]
    with tempfile.TemporaryDirectory(prefix="edgedistill-arm64-") as tmp:
        stage = stage_runtime(Path(tmp) / "stage")
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        x86 = run_worker(stage, texts_file, packages)
        ref = x86["results"][str(packages[0])]
        checks: list[Check] = []
        for p in packages[1:]:  # the host's own int8 error, for scale
            checks.append(compare(f"host {x86['machine']}", str(p), x86["results"][str(p)],
                                  x86["results"][str(p)], ref, informational=True))
        emulated = {}
        for cpu, arm in arm64.run_emulated(stage, texts_file, packages, cpus, env).items():  # side by side
            if isinstance(arm, Exception):
                raise RuntimeError(f"QEMU_CPU={cpu}: {arm}")
            emulated[cpu] = {k: arm[k] for k in ("machine", "python", "onnxruntime", "numpy", "cpu_features")}
            for p in packages:
                checks.append(compare(cpu, str(p), arm["results"][str(p)], x86["results"][str(p)], ref))
    return {"passed": all(c.passed for c in checks if not c.informational), "texts": len(texts),
            "packages": [describe_package(p) for p in packages], "cpus": list(cpus),
            "tolerances": {"fp32": FP32_ATOL, "int8_vs_x86_fp32": INT8_ATOL,
                           "int8_labels": "equal to x86 fp32 where its top-two margin > 2 * int8 tolerance"},
            "x86": {k: x86[k] for k in ("machine", "python", "onnxruntime", "numpy")},
            "emulated": emulated, "checks": [asdict(c) for c in checks],
            "note": "correctness under QEMU user mode; emulated times are not measured",
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _verdict(c: dict[str, Any]) -> str:
    if c["informational"]:
        return "(host int8, for scale)"
    return "ok" if c["passed"] else "FAIL: " + "; ".join(c["problems"])


def _table(report: dict[str, Any]) -> str:
    lines = [f"{'cpu':<22} {'variant':<13} {'vs x86 fp32':>12} {'vs x86 same':>12} {'labels':>8} {'near':>5}  result"]
    for c in report["checks"]:
        lines.append(f"{c['cpu']:<22} {c['variant']:<13} {c['max_abs_diff_vs_x86_fp32']:>12.3g} "
                     f"{c['max_abs_diff_vs_x86_same']:>12.3g} {c['n'] - c['label_mismatches']:>4}/{c['n']:<3} "
                     f"{c['near_boundary']:>5}  {_verdict(c)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", type=Path, help="the fp32 model package (folder or .zip)")
    ap.add_argument("--int8", type=Path, action="append", default=[], help="an int8 package (repeatable)")
    ap.add_argument("--int8-from-fp32", action="store_true",
                    help="also make an int8 package from --fp32 with onnxruntime's quantize_dynamic")
    ap.add_argument("--onnx-dir", type=Path, help="an export folder: package its fp32 and int8 variants")
    ap.add_argument("--cpu", action="append", help=f"QEMU CPU model (repeatable; default {', '.join(DEFAULT_CPUS)})")
    ap.add_argument("--texts", type=Path, help="texts to classify, one a line (default: built-in sentences)")
    ap.add_argument("--cache", type=Path,
                    help="the emulated environment's cache folder (see compress/targets/arm64_setup.sh)")
    ap.add_argument("--json", type=Path, help="write the report here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[arm64-check] %(message)s")
    if (args.fp32 is None) == (args.onnx_dir is None):
        ap.error("give --fp32 PACKAGE or --onnx-dir EXPORT_FOLDER")
    texts = DEFAULT_TEXTS
    if args.texts:
        texts = [t for t in args.texts.read_text(encoding="utf-8").splitlines() if t.strip()]
    with tempfile.TemporaryDirectory(prefix="edgedistill-arm64-pkg-") as tmp:
        int8 = list(args.int8)
        if args.onnx_dir:
            fp32, more = packages_from_onnx_dir(args.onnx_dir, Path(tmp))
            int8 += more
        else:
            fp32 = args.fp32
        if args.int8_from_fp32:
            int8.append(int8_from_fp32(fp32, Path(tmp) / "int8-from-fp32"))
        report = run_check(fp32, int8, args.cpu or list(DEFAULT_CPUS), texts, cache=args.cache)
    print(_table(report))
    for p in report["packages"]:
        print(f"package {p['path']} ({p['variant']}): manifest sha256 {p['manifest_sha256']}")
    print(f"{'PASSED' if report['passed'] else 'FAILED'}: {len(report['checks'])} checks on {report['texts']} texts "
          f"under {', '.join(report['cpus'])} ({report['wall_seconds']} s; emulated times are not reported)")
    if args.json:
        # the packages relative to the repository (the ones made here: their names in the temporary folder)
        args.json.write_text(json.dumps(recorded_paths(report), indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
