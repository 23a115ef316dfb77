"""The same answers on every declared target, checked before shipping.

A recipe's ``[targets]`` table (:class:`TargetsConfig`) declares where the package must run: ``x86`` and
``arm64`` CPUs, ``wasm`` (a browser), ``cuda`` (a GPU; ships the fp16 variant); the build machine by default.
The targets stage (:func:`check_targets`, between quantize and package) runs the quantize stage's choice on
each target's kernels over a stratified sample of the validation texts and compares it with the fp32
reference (fp32 on the build machine):

- the build machine's own target (x86 or arm64) in this process;
- arm64 elsewhere under QEMU user mode with three CPU models (:mod:`~edgedistill.compress.targets.arm64`);
- wasm in headless Chromium through the web export (:mod:`~edgedistill.compress.targets.wasm`);
- cuda on onnxruntime's CUDA provider, where there is one.

A variant that fails on a target is not shipped there: the next one that passed the accuracy gate is checked
(ending at fp32), and the package holds one model file per distinct variant, its manifest's ``targets`` table
saying which file is for which target (:func:`shipping_plan`; ``edgedistill.runtime.TextClassifier.load`` and the web
export pick theirs). A target that cannot be checked here is "not checked", and the build stops unless the recipe
lists it in ``allow_unverified`` (the manifest then marks it unverified). :func:`check_package` checks a
finished package (``edgedistill targets``). The rules are in :mod:`~edgedistill.compress.targets.check`.
"""

from __future__ import annotations

from edgedistill.compress.targets.check import RUNNERS, TargetRow, TargetsReport, TargetUnavailable, compare
from edgedistill.compress.targets.config import ARM64_CPUS, TargetsConfig, build_machine
from edgedistill.compress.targets.stage import ShippingPlan, candidates, check_package, check_targets, shipping_plan

__all__ = [
    "ARM64_CPUS", "RUNNERS", "ShippingPlan", "TargetRow", "TargetUnavailable", "TargetsConfig", "TargetsReport",
    "build_machine", "candidates", "check_package", "check_targets", "compare", "shipping_plan",
]
