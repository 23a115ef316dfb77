"""Results that stay true (issue 28, item 9): no committed result file names a path of the machine that made it, and
``benchmarks/_paths.py``, which every benchmark writer records its paths through, makes them relative."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"

# a home, a temporary or a system folder, a Windows drive, a file URL: not after a letter, a dot or a "$" (so
# "texts/s", "../x" and "$EDGEDISTILL_CACHE/x" are not one)
MACHINE_PATH = re.compile(r"(?<![\w.~$-])/(?:work|root|home|tmp|Users|usr|opt|var|mnt|private|srv|Volumes)/"
                          r"|(?<![\w])[A-Za-z]:\\|file://")


def _load_paths():
    spec = importlib.util.spec_from_file_location("benchmarks_paths", REPO / "benchmarks" / "_paths.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_paths"] = mod
    spec.loader.exec_module(mod)
    return mod


paths = _load_paths()


def _result_files() -> list[Path]:
    return sorted(p for p in RESULTS.rglob("*") if p.suffix in (".json", ".md") and p.is_file())


def _strings(value):
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_there_are_result_files_to_check():
    files = _result_files()
    assert {p.suffix for p in files} == {".json", ".md"} and len(files) > 10


@pytest.mark.parametrize("path", _result_files(), ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_no_committed_result_file_holds_an_absolute_path(path):
    text = path.read_text(encoding="utf-8")
    hits = [f"line {text.count(chr(10), 0, m.start()) + 1}: {text[max(0, m.start() - 40):m.end() + 40]!r}"
            for m in MACHINE_PATH.finditer(text)]
    assert not hits, f"{path.relative_to(REPO)} names a path of the machine that wrote it:\n" + "\n".join(hits)
    if path.suffix == ".json":
        absolute = [s for s in _strings(json.loads(text)) if paths.is_absolute(s)]
        assert not absolute, f"{path.relative_to(REPO)}: {absolute[:5]}"


def test_a_path_in_the_repository_is_recorded_relative_to_it(monkeypatch):
    assert paths.recorded(REPO / "models" / "movie-sentiment" / "package") == "models/movie-sentiment/package"
    assert paths.recorded(str(REPO / ".venv" / "bin" / "python")) == ".venv/bin/python"
    assert paths.recorded(REPO) == "."
    monkeypatch.chdir(REPO / "benchmarks")  # a relative path is taken from the current folder
    assert paths.recorded("results/cpu-x86_64") == "benchmarks/results/cpu-x86_64"
    assert paths.recorded(Path("../models")) == "models"


def test_a_path_in_the_cache_is_recorded_under_edgedistill_cache(tmp_path, monkeypatch):
    cache = tmp_path / "somewhere" / "cache"
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(cache))
    assert paths.recorded(cache / "adapted" / "47371c1ffcd0") == "$EDGEDISTILL_CACHE/adapted/47371c1ffcd0"
    assert paths.recorded(cache) == "$EDGEDISTILL_CACHE"


def test_any_other_absolute_path_is_recorded_by_its_name(tmp_path):
    for given, name in ((tmp_path / "edgedistill-arm64-pkg-x1" / "int8-dynamic", "int8-dynamic"),
                        ("/usr/bin/python3", "python3"), ("/home/me/elsewhere/models/x/package", "package"),
                        ("C:\\Users\\me\\package", "package")):
        got = paths.recorded(given)
        assert got == name and not got.startswith("/") and not paths.is_absolute(got), (given, got)


def test_command_lines_and_results_are_recorded_without_absolute_paths(tmp_path):
    argv = ["benchmarks/soak.py", str(REPO / "models" / "m" / "package"), f"--output-dir={tmp_path / 'out'}",
            "--label", "a label", str(tmp_path / "pkg")]
    assert paths.recorded_argv(argv) == ["benchmarks/soak.py", "models/m/package", "--output-dir=out", "--label",
                                         "a label", "pkg"]
    result = {"package": str(tmp_path / "pkg"), "rows": [{"file": REPO / "models" / "m.onnx", "ms": 1.5},
                                                         ("/tmp/x/teacher", None)], "text": "not a path"}
    recorded = paths.recorded_paths(result)
    assert recorded == {"package": "pkg", "rows": [{"file": "models/m.onnx", "ms": 1.5}, ("teacher", None)],
                        "text": "not a path"}
    assert result["package"] == str(tmp_path / "pkg")  # a copy: the result itself is left as it was


def test_relative_is_a_path_from_the_repository_never_an_absolute_one(tmp_path):
    assert paths.relative(REPO / "models" / "x.toml") == "models/x.toml"
    outside = paths.relative(tmp_path / "x.toml")
    assert not Path(outside).is_absolute() and (REPO / outside).resolve() == (tmp_path / "x.toml").resolve()
