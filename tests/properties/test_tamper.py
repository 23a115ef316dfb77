"""Tampering and corruption: every damaged package or cached wheel is refused with a typed error naming the file,
and nothing is written outside the folder it belongs in.

The basic cases (one flipped byte in model.onnx, a lying size or hash, a missing file, ``..`` / absolute / link
members in a .zip, a tampered cached wheel) are in tests/runtime/test_package.py and tests/compress/test_sources.py.
This file adds the systematic sweep: a changed byte at the start, middle and end of EVERY file a package lists (in a
folder and in a .zip), truncation at several points, a manifest lying about each file's size and hash, each file
missing, extra unlisted files (ignored: never read), unsafe .zip members with the parent folder and the temporary
folder snapshotted before and after, and a cached wheel changed in several ways.
"""

from __future__ import annotations

import json
import logging
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgedistill.compress import sources
from edgedistill.compress.errors import IntegrityError
from edgedistill.compress.errors import UnsafeArchiveError as SourceArchiveError
from edgedistill.compress.sources import Source
from edgedistill.runtime import PackageIntegrityError, TextClassifier, UnsafeArchiveError, verify_package
from edgedistill.runtime.package import MANIFEST_FILE
from tests.helpers import local_index_args, make_wheel, report_line

TEXTS = ["the film was good", "bad", "", "a very boring plot"]
POSITIONS = {"first": 0, "middle": 0.5, "last": -1}
REFUSED: list[str] = []  # the cases refused in this run (a figure for the note)


@pytest.fixture(scope="module", autouse=True)
def _report_refusals(request):
    """After the module: one line in pytest's summary with the number of tampering cases refused."""
    yield
    report_line(request, f"[tamper] {len(REFUSED)} tampering cases refused, each with a typed error naming the file")


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry under ``folder`` with its type and content (file bytes, link target, or b'' for a folder)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[rel] = (stat.S_IFLNK, str(p.readlink()).encode())
        elif p.is_dir():
            out[rel] = (stat.S_IFDIR, b"")
        else:
            out[rel] = (stat.S_IFREG, p.read_bytes())
    return out


@pytest.fixture
def scratch_tmp(tmp_path, monkeypatch) -> Path:
    """A private system temp folder: the runtime extracts .zip packages there; it must be empty afterwards."""
    scratch = tmp_path / "systemp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


@pytest.fixture
def pkg(tiny_package, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_package, tmp_path / "pkg"))


def package_files(package: Path) -> list[str]:
    return sorted(json.loads((package / MANIFEST_FILE).read_text())["files"])


def flip(data: bytes, where: float | int) -> bytes:
    i = int(len(data) * where) if isinstance(where, float) else where % len(data)
    b = bytearray(data)
    b[i] ^= 0x01
    return bytes(b)


def refused(load, *, file: str, path: Path, error=PackageIntegrityError, match: str | None = None):
    """``load()`` raises ``error`` naming ``file`` and ``path``; the case is counted."""
    with pytest.raises(error, match=match) as e:
        load()
    assert e.value.file == file, str(e.value)
    assert e.value.path == path
    assert file in str(e.value) and str(path) in str(e.value)
    REFUSED.append(f"{path.name}:{file}")
    return e.value


# ---------------------------------------------------------------------- every file of a folder package

# listed statically so that the test ids are stable; the test below checks this is every file the manifest lists
LISTED = ["README.md", "config.json", "model.onnx", "tokenizer.json"]


def test_the_sweep_covers_every_listed_file(tiny_package):
    assert package_files(tiny_package) == LISTED


@pytest.mark.parametrize("where", POSITIONS.values(), ids=POSITIONS.keys())
@pytest.mark.parametrize("name", LISTED)
def test_a_changed_byte_anywhere_in_any_file_is_refused(pkg, name, where, tmp_path):
    before = snapshot(tmp_path)
    (pkg / name).write_bytes(flip((pkg / name).read_bytes(), where))
    before[f"pkg/{name}"] = (stat.S_IFREG, (pkg / name).read_bytes())
    refused(lambda: TextClassifier.load(pkg), file=name, path=pkg, match=f"{name}: sha256 .* does not match")
    refused(lambda: verify_package(pkg), file=name, path=pkg)
    assert snapshot(tmp_path) == before  # nothing written beside or into the package


@pytest.mark.parametrize("where", POSITIONS.values(), ids=POSITIONS.keys())
@pytest.mark.parametrize("name", LISTED)
def test_a_changed_byte_in_a_zipped_file_is_refused(tiny_package, tmp_path, scratch_tmp, name, where):
    z = tmp_path / "tampered.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(tiny_package.iterdir()):
            zf.writestr(p.name, flip(p.read_bytes(), where) if p.name == name else p.read_bytes())
    before = snapshot(tmp_path)
    refused(lambda: TextClassifier.load(z), file=name, path=z)
    assert snapshot(tmp_path) == before
    assert list(scratch_tmp.iterdir()) == []  # the extraction folder is gone after the refusal


@pytest.mark.parametrize("keep", [0, 1, 16, 0.5, -1], ids=["empty", "1-byte", "16-bytes", "half", "one-short"])
def test_a_truncated_model_is_refused_at_any_length(pkg, keep):
    data = (pkg / "model.onnx").read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    (pkg / "model.onnx").write_bytes(data[:n])
    refused(lambda: TextClassifier.load(pkg), file="model.onnx", path=pkg,
            match=f"is {n} bytes, the manifest says {len(data)}")


def test_a_model_truncated_and_padded_back_to_its_size_is_refused(pkg):
    data = (pkg / "model.onnx").read_bytes()
    (pkg / "model.onnx").write_bytes(data[: len(data) // 2] + b"\0" * (len(data) - len(data) // 2))
    refused(lambda: TextClassifier.load(pkg), file="model.onnx", path=pkg, match="sha256")


@pytest.mark.parametrize("name", LISTED)
def test_a_missing_file_is_refused(pkg, name):
    (pkg / name).unlink()
    refused(lambda: TextClassifier.load(pkg), file=name, path=pkg, match="listed in the manifest but missing")


@pytest.mark.parametrize("name", LISTED)
def test_a_file_replaced_by_a_folder_or_a_link_is_refused(pkg, name, tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes((pkg / name).read_bytes())  # the very bytes: only the link itself is wrong
    (pkg / name).unlink()
    (pkg / name).symlink_to(outside)
    refused(lambda: TextClassifier.load(pkg), file=name, path=pkg)
    (pkg / name).unlink()
    (pkg / name).mkdir()
    refused(lambda: TextClassifier.load(pkg), file=name, path=pkg)


@pytest.mark.parametrize("name", LISTED)
@pytest.mark.parametrize("lie", ["size+1", "size-1", "sha256"])
def test_a_manifest_lying_about_any_file_is_refused(pkg, name, lie):
    m = json.loads((pkg / MANIFEST_FILE).read_text())
    entry = m["files"][name]
    if lie == "sha256":
        entry["sha256"] = ("0" if entry["sha256"][0] != "0" else "1") + entry["sha256"][1:]
    else:
        entry["size"] += 1 if lie == "size+1" else -1
    (pkg / MANIFEST_FILE).write_text(json.dumps(m, indent=2))
    refused(lambda: TextClassifier.load(pkg), file=name, path=pkg)


def test_a_manifest_byte_flipped_in_any_hash_names_that_file(pkg):
    """One changed character inside each hash of manifest.json itself: refused, naming the file it vouches for."""
    raw = (pkg / MANIFEST_FILE).read_text()
    for name, entry in json.loads(raw)["files"].items():
        digest = entry["sha256"]
        for i in (0, 31, 63):
            other = "0123456789abcdef"[("0123456789abcdef".index(digest[i]) + 1) % 16]
            (pkg / MANIFEST_FILE).write_text(raw.replace(digest, digest[:i] + other + digest[i + 1:]))
            refused(lambda: TextClassifier.load(pkg), file=name, path=pkg, match="sha256")
    (pkg / MANIFEST_FILE).write_text(raw[: len(raw) // 2])  # cut in half: not JSON any more
    refused(lambda: TextClassifier.load(pkg), file=MANIFEST_FILE, path=pkg, match="not valid JSON")


def test_a_manifest_that_drops_a_loaded_file_is_refused(pkg):
    m = json.loads((pkg / MANIFEST_FILE).read_text())
    for name in ("tokenizer.json", "config.json"):  # model.onnx is in tests/runtime/test_package.py
        lied = {**m, "files": {k: v for k, v in m["files"].items() if k != name}}
        (pkg / MANIFEST_FILE).write_text(json.dumps(lied))
        refused(lambda: TextClassifier.load(pkg), file=MANIFEST_FILE, path=pkg, match=f"does not list {name}")


# ---------------------------------------------------------------------- extra, unlisted files: ignored, never read

@pytest.mark.parametrize("extra", [
    "model.py", "__init__.py", "sitecustomize.py", "pytorch_model.bin", "tokenizer_config.json",
    "model.onnx.data", "sub/model.onnx",
])
def test_an_extra_unlisted_file_is_ignored_and_never_read(pkg, tiny_package, extra, caplog):
    """Decision: an unlisted file is ignored with a warning, not refused (a user's notes beside a package should
    not break it); it is never read, so it cannot change a prediction: the files the runtime loads are the
    listed ones, read as the bytes that were hashed."""
    target = pkg / extra
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = b"raise SystemExit('executed')\n" if extra.endswith(".py") else b"\x00garbage\xff" * 64
    target.write_bytes(payload)
    with caplog.at_level(logging.WARNING, logger="edgedistill.runtime"):
        clf = TextClassifier.load(pkg)
    assert extra in caplog.text and "ignored" in caplog.text
    np.testing.assert_array_equal(clf.predict_proba(TEXTS), TextClassifier.load(tiny_package).predict_proba(TEXTS))


def test_a_symlink_beside_the_package_files_is_refused(pkg, tmp_path):
    (tmp_path / "secret").write_text("not for the package")
    (pkg / "notes.txt").symlink_to(tmp_path / "secret")
    refused(lambda: TextClassifier.load(pkg), file="notes.txt", path=pkg, match="symbolic link")


# ---------------------------------------------------------------------- unsafe .zip packages

def _zip(tiny_package: Path, dest: Path, extras: list[tuple[zipfile.ZipInfo, bytes]], first: bool = False) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        if first:
            for info, data in extras:
                zf.writestr(info, data)
        for p in sorted(tiny_package.iterdir()):
            zf.write(p, p.name)
        if not first:
            for info, data in extras:
                zf.writestr(info, data)
    return dest


def _info(name: str, kind: int = stat.S_IFREG) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o777) << 16
    return info


UNSAFE = {
    "dotdot": [(_info("../evil.txt"), b"evil")],
    "deep-dotdot": [(_info("a/b/../../../evil.txt"), b"evil")],
    "absolute": [(_info("/tmp/evil.txt"), b"evil")],
    "drive": [(_info("C:\\evil.txt"), b"evil")],
    "backslash-dotdot": [(_info("..\\evil.txt"), b"evil")],
    "symlink-file": [(_info("model.link", stat.S_IFLNK), b"/etc/passwd")],
    "symlink-dir-then-file": [(_info("up", stat.S_IFLNK), b".."), (_info("up/evil.txt"), b"evil")],
    "fifo": [(_info("pipe", stat.S_IFIFO), b"")],
    "device": [(_info("dev", stat.S_IFCHR), b"")],
}


@pytest.mark.parametrize("first", [False, True], ids=["after-the-files", "before-the-files"])
@pytest.mark.parametrize("case", UNSAFE)
def test_an_unsafe_zip_is_refused_and_writes_nothing_anywhere(tiny_package, tmp_path, scratch_tmp, case, first):
    """The bad member is refused whether it comes before or after the good ones: the archive is checked whole
    before the first byte is written, so not even the package's own files are extracted."""
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    z = _zip(tiny_package, inner / "bad.zip", UNSAFE[case], first)
    before = snapshot(tmp_path)
    e = refused(lambda: TextClassifier.load(z), file=UNSAFE[case][0][0].filename, path=z, error=UnsafeArchiveError,
                match="refusing to extract")
    assert isinstance(e, PackageIntegrityError)
    assert snapshot(tmp_path) == before
    assert list(scratch_tmp.iterdir()) == []
    assert not Path("/tmp/evil.txt").exists()


def test_a_zip_whose_members_would_overwrite_each_other_through_case_or_slash_is_refused(tiny_package, tmp_path,
                                                                                         scratch_tmp):
    z = _zip(tiny_package, tmp_path / "dup.zip", [(_info("config.json/"), b"")])
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        TextClassifier.load(z)
    REFUSED.append("dup.zip:config.json/")
    assert list(scratch_tmp.iterdir()) == []


# ---------------------------------------------------------------------- a cached wheel whose hash changed

def _fetch_twice_tampering(tmp_path: Path, tamper) -> tuple[Path, Source, Path]:
    index = tmp_path / "index"
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/x.txt": b"x" * 1000})
    src = Source("fake", "dataset", (wheel,), ("fake_data/x.txt",), "test", "none", strip="fake_data/")
    cache = tmp_path / "cache"
    sources.fetch(src, cache, pip_args=local_index_args(index))
    shutil.rmtree(cache / "sources" / "fake")  # the extracted copy is gone: the next fetch re-extracts the wheel
    cached = next((cache / "wheels").glob("*.whl"))
    tamper(cached, tmp_path)
    return cached, src, cache


def _other_wheel(path: Path, tmp_path: Path) -> None:
    """A different, valid wheel with the same file name (a swapped download)."""
    other = make_wheel(tmp_path / "other", "fake-data", "1.0", {"fake_data/x.txt": b"y" * 1000})
    shutil.copyfile(tmp_path / "other" / path.name, path)
    assert other.sha256 != sources.sha256_file(tmp_path / "index" / path.name)


WHEEL_TAMPERS = {
    "byte-first": lambda p, t: p.write_bytes(flip(p.read_bytes(), 0)),
    "byte-middle": lambda p, t: p.write_bytes(flip(p.read_bytes(), 0.5)),
    "byte-last": lambda p, t: p.write_bytes(flip(p.read_bytes(), -1)),
    "truncated": lambda p, t: p.write_bytes(p.read_bytes()[:-22]),
    "appended": lambda p, t: p.write_bytes(p.read_bytes() + b"\0"),
    "emptied": lambda p, t: p.write_bytes(b""),
    "another-valid-wheel": _other_wheel,
}


@pytest.mark.parametrize("how", WHEEL_TAMPERS)
def test_a_cached_wheel_whose_hash_changed_is_refused_and_nothing_is_extracted(tmp_path, how):
    cached, src, cache = _fetch_twice_tampering(tmp_path, WHEEL_TAMPERS[how])
    before = snapshot(tmp_path)
    with pytest.raises(IntegrityError, match=cached.name) as e:
        sources.fetch(src, cache, offline=True)  # offline: the tampered file is not silently re-downloaded either
    assert e.value.path == cached and e.value.actual != e.value.expected
    REFUSED.append(f"wheel:{how}")
    assert snapshot(tmp_path) == before
    assert not sources.is_cached(src, cache)


def test_a_pinned_wheel_with_an_escaping_member_writes_nothing_outside_the_cache(tmp_path):
    """A wheel whose hash is pinned (the catalog trusts it) still cannot write outside its folder."""
    index = tmp_path / "index"
    wheel = make_wheel(index, "fake-data", "1.0", {"fake_data/ok.txt": b"ok", "fake_data/../../../evil.txt": b"e"})
    src = Source("fake", "dataset", (wheel,), ("fake_data/",), "test", "none", strip="fake_data/")
    cache = tmp_path / "deep" / "er" / "cache"
    cache.mkdir(parents=True)
    before = snapshot(tmp_path)
    with pytest.raises(SourceArchiveError, match="evil.txt"):
        sources.fetch(src, cache, pip_args=local_index_args(index))
    REFUSED.append("wheel:escaping-member")
    after = snapshot(tmp_path)
    new = sorted(set(after) - set(before))
    assert new and all(n.startswith("deep/er/cache/") for n in new), new  # nothing outside the cache
    assert not [n for n in after if "evil" in n]
    assert list((cache / "sources").iterdir()) == []
