"""What ``pip install edgedistill`` (the runtime alone, no extras) puts on disk, package by package.

    python benchmarks/install_size.py                 # a fresh venv in a temporary folder; needs a package index

Creates a virtual environment with this Python, installs this checkout into it without extras (a wheel built from
the checkout, as a user's ``pip install edgedistill`` would get), checks that the runtime classifies and that
neither torch, typer nor rich came with it, and writes the size of every distribution's files to
``benchmarks/results/<device>/install_size.{json,md}``. pip and setuptools, which every venv has, are listed apart.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgedistill.runtime.bench import device_name, environment  # noqa: E402

VENV_OWN = {"pip", "setuptools"}
LIST_DISTS = """
import json, sys
from importlib import metadata
from pathlib import Path
site = Path(sys.argv[1])
out = {}
for d in metadata.distributions():
    size = 0
    for f in d.files or []:
        p = Path(d.locate_file(f))
        if p.is_file() and site in p.resolve().parents:
            size += p.stat().st_size
    out[d.metadata["Name"]] = size
print(json.dumps(out))
"""
CHECK = ("import sys; from edgedistill import TextClassifier; import edgedistill.runtime.classifier; "
         "print(sorted(m for m in ('torch', 'typer', 'rich', 'transformers') if m in sys.modules))")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results" / device_name(environment()))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgedistill-install-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)], check=True)
        site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        sizes = json.loads(subprocess.run([str(py), "-c", LIST_DISTS, str(site)], capture_output=True, text=True,
                                          check=True).stdout)
        heavy = json.loads(subprocess.run([str(py), "-c", CHECK], capture_output=True, text=True,
                                          check=True).stdout.replace("'", '"'))
    mb = {k: v / 1e6 for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])}
    ours = {k: v for k, v in mb.items() if k.lower() not in VENV_OWN}
    groups = defaultdict(float)
    for k, v in ours.items():
        groups[k] += v
    result = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": sys.version.split()[0],
              "command": "python benchmarks/install_size.py", "total_mb": round(sum(ours.values()), 1),
              "venv_own_mb": {k: round(v, 1) for k, v in mb.items() if k.lower() in VENV_OWN},
              "distributions_mb": {k: round(v, 1) for k, v in ours.items()}, "imported_beyond_runtime": heavy}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "install_size.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# The runtime alone: `pip install edgedistill`", "",
             f"Written by `{result['command']}` (Python {result['python']}, {result['created']}): a fresh venv, this "
             "checkout installed without extras. Sizes of each distribution's installed files; pip and setuptools, "
             f"which every venv has, apart ({', '.join(f'{k} {v:.1f} MB' for k, v in result['venv_own_mb'].items())}).",
             "", f"**{result['total_mb']:.1f} MB** in {len(ours)} distributions. Loading a package and classifying "
             f"imported none of torch, transformers, typer, rich: {not heavy}.", "",
             "| distribution | MB |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in ours.items()]
    (args.output_dir / "install_size.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
