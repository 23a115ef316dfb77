"""The CPU at hand: its model, feature flags, and the int8 instruction set that decides which kernels run.

Standard library only, so it runs wherever the runtime does. ``detect()`` names the best int8 instruction
set found; the quantize stage's ``preset = "auto"`` picks its settings from it, and every report and
benchmark result records it (``environment()["isa"]`` in :mod:`edgedistill.runtime.bench`)::

    from edgedistill.runtime.cpu import detect
    detect()   # CpuIsa(name='avx512-vnni', machine='x86_64', flags=('avx2', 'avx512_vnni', 'avx_vnni'))
"""

from __future__ import annotations

import functools
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

# The int8 instruction sets, best first within each architecture. "x86" and "arm64" are those
# architectures without any of the listed extensions (or with flags that could not be read).
ISAS = ("amx", "avx512-vnni", "avx-vnni", "avx2", "x86", "arm64-i8mm", "arm64-dotprod", "arm64", "unknown")
# The flag (x86 /proc/cpuinfo "flags", ARM "Features") that marks each, in the order they are tried
_X86 = (("amx", ("amx_int8",)), ("avx512-vnni", ("avx512_vnni",)), ("avx-vnni", ("avx_vnni",)),
        ("avx2", ("avx2",)))
_ARM64 = (("arm64-i8mm", ("i8mm",)), ("arm64-dotprod", ("asimddp",)))
INT8_FLAGS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "asimddp", "i8mm")
"""The flags :func:`detect` reads (and reports as ``flags``)."""


@dataclass(frozen=True)
class CpuIsa:
    """The int8 instruction set of a CPU and what it was read from."""

    name: str
    """One of :data:`ISAS`: ``avx512-vnni``, ``amx``, ``avx-vnni``, ``avx2``, ``arm64-dotprod``, ``arm64-i8mm``..."""
    machine: str
    """``platform.machine()`` (``x86_64``, ``AMD64``, ``aarch64``, ``arm64``...)."""
    flags: tuple[str, ...]
    """The flags of :data:`INT8_FLAGS` that the CPU reports, sorted."""


def architecture(machine: str) -> str:
    """``x86``, ``arm64`` or ``unknown`` for a ``platform.machine()`` value."""
    m = machine.lower()
    if m in ("x86_64", "amd64", "x64", "i386", "i686", "x86"):
        return "x86"
    if m in ("aarch64", "arm64", "aarch64_be", "armv8l", "armv8b"):
        return "arm64"
    return "unknown"


def isa_name(flags: set[str] | frozenset[str], machine: str) -> str:
    """The best int8 instruction set ``flags`` show on ``machine``: an x86 or ARM64 CPU whose flags say
    nothing is plain ``x86`` / ``arm64``, any other architecture ``unknown``."""
    arch = architecture(machine)
    for name, needs in {"x86": _X86, "arm64": _ARM64}.get(arch, ()):
        if all(f in flags for f in needs):
            return name
    return arch


def parse_cpuinfo(text: str) -> tuple[str, set[str], int | None]:
    """(CPU model, feature flags, physical cores) from the text of Linux's /proc/cpuinfo (x86 or ARM)."""
    model, flags, cores = "", set(), None
    physical: set[tuple[str, str]] = set()
    phys_id = ""
    arm_part = ""
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name" and not model:
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            physical.add((phys_id, value))
        elif key == "CPU part" and not arm_part:
            arm_part = value
    if physical:
        cores = len(physical)
    if not model and arm_part:  # ARM Linux has no model name: the implementer and part number say it
        model = f"ARM part {arm_part}"
    return model, flags, cores


def cpu_info() -> tuple[str, set[str], int | None]:
    """(CPU model, feature flags, physical cores) of this machine: /proc/cpuinfo, or macOS's sysctl."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    model, flags, cores = parse_cpuinfo(text)
    if sys.platform == "darwin":
        model = model or _sysctl("machdep.cpu.brand_string")
        for feat, flag in (("hw.optional.arm.FEAT_DotProd", "asimddp"), ("hw.optional.arm.FEAT_I8MM", "i8mm"),
                           ("hw.optional.arm.FEAT_BF16", "bf16"), ("hw.optional.avx2_0", "avx2"),
                           ("hw.optional.avx512vnni", "avx512_vnni")):
            if _sysctl(feat) == "1":
                flags.add(flag)
        cores = cores or int(_sysctl("hw.physicalcpu") or 0) or None
    return model or platform.processor() or platform.machine(), flags, cores


def _sysctl(name: str) -> str:
    import subprocess  # macOS only: not imported on Linux (a faster start)

    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def detect(cpuinfo: str | None = None, machine: str | None = None) -> CpuIsa:
    """The int8 instruction set of this machine, or of a /proc/cpuinfo text and ``platform.machine()`` value
    (for tests and for reading another machine's). Where no flags can be read (Windows, say), an x86 CPU is
    plain ``x86`` and an ARM64 one plain ``arm64``: the choice then never assumes an extension."""
    if cpuinfo is None and machine is None:
        return _this_machine()
    flags = parse_cpuinfo(cpuinfo)[1] if cpuinfo is not None else cpu_info()[1]
    return _isa(flags, machine if machine is not None else platform.machine())


@functools.lru_cache(maxsize=1)
def _this_machine() -> CpuIsa:  # read once: the CPU does not change under a running process
    return _isa(cpu_info()[1], platform.machine())


def _isa(flags: set[str], machine: str) -> CpuIsa:
    return CpuIsa(isa_name(flags, machine), machine, tuple(sorted(f for f in flags if f in INT8_FLAGS)))


if __name__ == "__main__":
    isa = detect()
    print(f"{isa.name} ({isa.machine}; flags: {', '.join(isa.flags) or 'none'})")
