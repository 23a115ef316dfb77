"""Publishing a folder: the new result replaces the old one whole, world-readable, or not at all; the cache folder."""

from __future__ import annotations

import pytest

from edgedistill.runtime.fsutil import cache_dir, publishing


def test_published_folder_is_world_readable_and_replaces_the_old(tmp_path):
    dest = tmp_path / "package"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with publishing(dest) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".package.tmp-")
        (tmp / "new.txt").write_text("new")
        assert (dest / "old.txt").is_file()  # the old result stays until the new one is complete
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]
    assert dest.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["package"]  # no temporary or old folder left


def test_a_failed_publish_leaves_the_old_folder_untouched(tmp_path):
    dest = tmp_path / "report"
    dest.mkdir()
    (dest / "report.md").write_text("old report")
    with pytest.raises(RuntimeError, match="boom"):
        with publishing(dest) as tmp:
            (tmp / "report.md").write_text("half a report")
            raise RuntimeError("boom")
    assert (dest / "report.md").read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_a_new_folder_and_its_parents_are_created(tmp_path):
    with publishing(tmp_path / "a" / "b" / "onnx") as tmp:
        (tmp / "model.onnx").write_bytes(b"x")
    assert (tmp_path / "a" / "b" / "onnx" / "model.onnx").read_bytes() == b"x"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEDISTILL_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGEDISTILL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "edgedistill"
