"""The wheel installs one import name, edgedistill: compress/ and runtime/ go under it, nothing else at the top."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGED = {"src/edgedistill": "edgedistill", "compress": "edgedistill/compress", "runtime": "edgedistill/runtime"}


def test_the_wheel_holds_one_top_level_package_with_every_module(tmp_path):
    # what the build reads, copied: the build writes build/ and *.egg-info beside its sources
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in PACKAGED:
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # offline: this environment's setuptools builds it, no isolated build environment to download
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                           "--no-build-isolation", "--disable-pip-version-check", "-w", str(tmp_path / "dist"),
                           str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points = zf.read(f"{info}/entry_points.txt").decode()

    assert {n.split("/")[0] for n in names} == {"edgedistill", info}
    # every module and package folder is listed in pyproject.toml's packages (a folder left out would be missing)
    modules = {f"{dest}/{p.relative_to(REPO / folder).as_posix()}"
               for folder, dest in PACKAGED.items() for p in (REPO / folder).rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert {"edgedistill/runtime/web/index.html", "edgedistill/compress/targets/arm64_setup.sh"} <= names
    assert "edgedistill = edgedistill.__main__:main" in entry_points  # names the cli extra where typer is missing
