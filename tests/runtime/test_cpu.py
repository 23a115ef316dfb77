"""edgedistill.runtime.cpu: the int8 instruction set read from /proc/cpuinfo texts of the CPUs these machines have."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgedistill.runtime.cpu import ISAS, architecture, detect, parse_cpuinfo
from tests.helpers import arm, x86

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "machine", "isa"), [
    (x86("avx2 bmi2"), "x86_64", "avx2"),                                           # Zen 2, Haswell..Comet Lake
    (x86("avx2 avx512f avx512bw avx512vl avx512_vnni"), "x86_64", "avx512-vnni"),   # Cascade Lake, Zen 4
    (x86("avx2 avx512f avx512_vnni avx_vnni"), "x86_64", "avx512-vnni"),            # this session's EPYC
    (x86("avx2 avx_vnni"), "x86_64", "avx-vnni"),                                   # Alder Lake (no AVX-512)
    (x86("avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8"), "x86_64", "amx"),  # Sapphire Rapids
    (x86("avx2 avx512f avx512_vnni amx_bf16 amx_tile"), "x86_64", "avx512-vnni"),   # tiles without int8: no AMX int8
    (x86(""), "x86_64", "x86"),                                                     # no AVX2 (an old Atom, a VM)
    ("", "x86_64", "x86"),                                                          # flags unreadable
    ("", "AMD64", "x86"),                                                           # Windows
    (arm("asimddp sve i8mm bf16"), "aarch64", "arm64-i8mm"),                        # Neoverse V1, Graviton 3
    (arm("asimddp"), "aarch64", "arm64-dotprod"),                                   # Neoverse N1, Graviton 2
    (arm(""), "aarch64", "arm64"),                                                  # Cortex-A72, Raspberry Pi 4
    ("", "arm64", "arm64"),                                                         # macOS without sysctl
    ("", "riscv64", "unknown"),
    (x86("avx2"), "ppc64le", "unknown"),                                            # the machine decides the family
])
def test_detect_reads_the_int8_instruction_set(text, machine, isa):
    got = detect(text, machine)
    assert got.name == isa and got.name in ISAS and got.machine == machine


def test_detect_reports_the_int8_flags_it_read():
    got = detect(x86("avx2 avx512f avx512_vnni amx_tile amx_int8 sha_ni"), "x86_64")
    assert got.flags == ("amx_int8", "amx_tile", "avx2", "avx512_vnni")  # sorted; fma, sha_ni... left out
    assert detect(arm("asimddp i8mm"), "aarch64").flags == ("asimddp", "i8mm")
    assert detect("", "riscv64").flags == ()


def test_parse_cpuinfo_model_flags_and_cores():
    model, flags, cores = parse_cpuinfo(x86("avx2", model="Intel(R) Xeon(R) Platinum 8375C"))
    assert (model, cores) == ("Intel(R) Xeon(R) Platinum 8375C", 2) and {"avx2", "sse4_2"} <= flags
    model, flags, cores = parse_cpuinfo(arm("asimddp"))
    assert model == "ARM part 0xd0c" and "asimddp" in flags and cores is None


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "x86"), ("AMD64", "x86"), ("i686", "x86"),
                                               ("aarch64", "arm64"), ("arm64", "arm64"), ("ARM64", "arm64"),
                                               ("armv7l", "unknown"), ("s390x", "unknown"), ("", "unknown")])
def test_architecture(machine, arch):
    assert architecture(machine) == arch


def test_this_machine_is_detected_and_named_by_the_bench_environment():
    from edgedistill.runtime.bench import environment

    isa = detect()
    assert isa.name in ISAS and detect() is isa  # read once per process
    assert environment()["isa"] == isa.name


def test_the_module_runs_alone_without_numpy_or_onnxruntime():
    code = ("import edgedistill.runtime.cpu, sys; print(edgedistill.runtime.cpu.detect().name); "
            "print(sorted(m for m in ('numpy', 'onnxruntime', 'edgedistill.compress', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    name, heavy = out.splitlines()
    assert name in ISAS and heavy == "[]"
