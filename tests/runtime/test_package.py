"""The package format: manifest writing, integrity checks, version refusal, safe .zip loading."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgedistill.runtime import (PackageError, PackageFormatError, PackageIntegrityError, TextClassifier,
                                 UnsafeArchiveError, verify_package, write_manifest, zip_package)
from edgedistill.runtime.package import FORMAT, FORMAT_VERSION, MANIFEST_FILE, sha256_file

TEXTS = ["the film was good", "bad", "", "a very boring plot"]


@pytest.fixture
def pkg(tiny_package, tmp_path) -> Path:
    """A private copy of the tiny package, free to damage."""
    return Path(shutil.copytree(tiny_package, tmp_path / "pkg"))


def edit_manifest(pkg: Path, fn) -> None:
    m = json.loads((pkg / MANIFEST_FILE).read_text())
    fn(m)
    (pkg / MANIFEST_FILE).write_text(json.dumps(m))


def test_manifest_follows_the_contract(tiny_package):
    m = json.loads((tiny_package / MANIFEST_FILE).read_text())
    assert m["format"] == FORMAT and m["format_version"] == FORMAT_VERSION
    assert m["created"].endswith("Z") and m["opset"] == 17
    assert {"edgedistill_version", "onnxruntime_version", "quantization", "metrics", "recipe"} <= set(m)
    assert sorted(m["files"]) == ["README.md", "config.json", "model.onnx", "tokenizer.json"]
    for name, entry in m["files"].items():
        assert entry == {"sha256": sha256_file(tiny_package / name), "size": (tiny_package / name).stat().st_size}
    assert verify_package(tiny_package) == m


def test_write_manifest_extra_fields_and_subfolders(pkg):
    (pkg / "extra").mkdir()
    (pkg / "extra" / "notes.txt").write_text("hello")
    write_manifest(pkg, opset=17, quantization={"mode": "dynamic"}, metrics={"f1": 0.9}, teacher="mpnet")
    m = verify_package(pkg)
    assert m["files"]["extra/notes.txt"]["size"] == 5
    assert m["quantization"] == {"mode": "dynamic"} and m["metrics"] == {"f1": 0.9} and m["teacher"] == "mpnet"


def test_write_manifest_refuses_an_incomplete_or_invalid_folder(pkg):
    (pkg / "tokenizer.json").unlink()
    with pytest.raises(PackageIntegrityError, match="tokenizer.json"):
        write_manifest(pkg, opset=17)
    shutil.copy(pkg / "config.json", pkg / "tokenizer.json")
    (pkg / "config.json").write_text(json.dumps({"labels": [], "max_length": 8, "input_names": [],
                                                 "pad_token_id": 0}))
    with pytest.raises(PackageFormatError, match="config.json: labels=") as e:
        write_manifest(pkg, opset=17)
    assert e.value.file == "config.json"


def test_write_manifest_refuses_links(pkg):
    os.symlink(pkg / "README.md", pkg / "link.md")
    with pytest.raises(PackageIntegrityError, match="link.md: is a symbolic link"):
        write_manifest(pkg, opset=17)


# ---------------------------------------------------------------------- tampering

def test_a_flipped_byte_fails_the_load_naming_the_file(pkg):
    data = bytearray((pkg / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (pkg / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(PackageIntegrityError, match=r"model.onnx: sha256 .* does not match") as e:
        TextClassifier.load(pkg)
    assert e.value.file == "model.onnx" and e.value.path == pkg


def test_a_truncated_model_fails_the_load(pkg):
    data = (pkg / "model.onnx").read_bytes()
    (pkg / "model.onnx").write_bytes(data[: len(data) - 100])
    with pytest.raises(PackageIntegrityError, match=rf"model.onnx: is {len(data) - 100} bytes, the manifest says "
                                                    rf"{len(data)}"):
        TextClassifier.load(pkg)


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "README.md"])
def test_a_changed_or_missing_file_fails_the_load(pkg, name):
    path = pkg / name
    path.write_bytes(path.read_bytes().replace(b"e", b"E", 1))  # same size, other bytes
    with pytest.raises(PackageIntegrityError, match=f"{name}: sha256"):
        TextClassifier.load(pkg)
    path.unlink()
    with pytest.raises(PackageIntegrityError, match=f"{name}: is listed in the manifest but missing"):
        TextClassifier.load(pkg)


def test_a_missing_manifest_is_not_a_package(pkg):
    (pkg / MANIFEST_FILE).unlink()
    with pytest.raises(PackageIntegrityError, match="manifest.json: .*not a model package"):
        TextClassifier.load(pkg)


@pytest.mark.parametrize("lie, match", [
    (lambda m: m["files"]["config.json"].update(sha256="0" * 64), "config.json: sha256"),
    (lambda m: m["files"]["model.onnx"].update(size=1), "model.onnx: is .* bytes, the manifest says 1"),
    (lambda m: m["files"].pop("model.onnx"), "does not list model.onnx"),
    (lambda m: m["files"].update({"ghost.bin": {"sha256": "a" * 64, "size": 3}}), "ghost.bin: is listed"),
    (lambda m: m["files"].update({"../outside": {"sha256": "a" * 64, "size": 3}}), "unsafe file name '../outside'"),
    (lambda m: m["files"].update({"/etc/passwd": {"sha256": "a" * 64, "size": 3}}), "unsafe file name"),
    (lambda m: m["files"]["README.md"].update(sha256="not-hex"), "needs a hex 'sha256'"),
    (lambda m: m.update(files={}), "has no 'files' table"),
    (lambda m: m.update(format="something-else"), "not an edgedistill-package manifest"),
    (lambda m: m.update(format_version="one"), "format_version='one'"),
])
def test_a_lying_manifest_fails_the_load(pkg, lie, match):
    edit_manifest(pkg, lie)
    with pytest.raises(PackageIntegrityError, match=match):
        TextClassifier.load(pkg)


def test_an_unreadable_manifest(pkg):
    (pkg / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(PackageIntegrityError, match="manifest.json: is not valid JSON"):
        verify_package(pkg)


def test_a_newer_major_format_is_refused_a_newer_minor_is_read(pkg):
    edit_manifest(pkg, lambda m: m.update(format_version="4.0"))  # 2.x: the strings kind; 3.x: multi-label, long texts
    with pytest.raises(PackageFormatError, match=r"format_version 4.0 is newer than this runtime reads \(3.x\)"):
        TextClassifier.load(pkg)
    edit_manifest(pkg, lambda m: m.update(format_version="1.7", future_field=[1, 2]))
    assert TextClassifier.load(pkg).labels == ["negative", "positive"]


def test_a_valid_hash_over_a_broken_model_is_a_format_error(pkg):
    (pkg / "model.onnx").write_bytes(b"this is not an onnx model")
    write_manifest(pkg, opset=17)  # the manifest now vouches for the broken file
    with pytest.raises(PackageFormatError, match="model.onnx: onnxruntime cannot load it"):
        TextClassifier.load(pkg)


def test_a_broken_tokenizer_is_a_format_error(pkg):
    (pkg / "tokenizer.json").write_text('{"version": "1.0", "model": 12}')
    write_manifest(pkg, opset=17)
    with pytest.raises(PackageFormatError, match="tokenizer.json: the tokenizers library cannot read it"):
        TextClassifier.load(pkg)


def test_unlisted_files_are_ignored_with_a_warning(pkg, caplog):
    (pkg / "notes.txt").write_text("not part of the package")
    with caplog.at_level(logging.WARNING, logger="edgedistill.runtime"):
        clf = TextClassifier.load(pkg)
    assert "notes.txt" in caplog.text
    assert clf.predict("good")["label"] in clf.labels


def test_a_path_that_does_not_exist(tmp_path):
    with pytest.raises(PackageError, match="no such package folder or .zip file"):
        TextClassifier.load(tmp_path / "nowhere")


# ---------------------------------------------------------------------- zip archives

def test_a_zip_package_loads_like_its_folder_and_leaves_nothing_behind(tiny_package, tmp_path, monkeypatch):
    z = zip_package(tiny_package, tmp_path / "tiny.zip")
    with zipfile.ZipFile(z) as zf:
        assert sorted(zf.namelist()) == ["README.md", "config.json", "manifest.json", "model.onnx",
                                         "tokenizer.json"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    from_zip = TextClassifier.load(z)
    assert list(scratch.iterdir()) == []  # the extraction folder is gone
    assert verify_package(z)["files"].keys() == verify_package(tiny_package)["files"].keys()
    np.testing.assert_array_equal(from_zip.predict_proba(TEXTS), TextClassifier.load(tiny_package).predict_proba(TEXTS))


def test_a_zip_with_one_top_folder_loads(tiny_package, tmp_path):
    z = tmp_path / "nested.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(tiny_package.iterdir()):
            zf.write(p, f"tiny-package/{p.name}")
    assert TextClassifier.load(z).labels == ["negative", "positive"]


def test_a_tampered_zip_names_the_zip_and_the_member(tiny_package, tmp_path):
    z = tmp_path / "tampered.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(tiny_package.iterdir()):
            data = p.read_bytes()
            zf.writestr(p.name, data.replace(b"positive", b"POSITIVE") if p.name == "config.json" else data)
    with pytest.raises(PackageIntegrityError, match=r"tampered.zip: config.json: sha256") as e:
        TextClassifier.load(z)
    assert e.value.path == z


def _zip_with(tiny_package: Path, dest: Path, extra: zipfile.ZipInfo, data: bytes = b"x") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(tiny_package.iterdir()):
            zf.write(p, p.name)
        zf.writestr(extra, data)
    return dest


def _link(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("member, problem", [
    (zipfile.ZipInfo("../evil.txt"), "a '..' component"),
    (zipfile.ZipInfo("sub/../../evil.txt"), "a '..' component"),
    (zipfile.ZipInfo("/tmp/evil.txt"), "an absolute name"),
    (zipfile.ZipInfo("C:/evil.txt"), "an absolute name"),
    (zipfile.ZipInfo("..\\evil.txt"), "a backslash"),
    (_link("evil-link", "/etc/passwd"), "a symbolic link"),
])
def test_unsafe_zip_members_are_refused(tiny_package, tmp_path, member, problem):
    z = _zip_with(tiny_package, tmp_path / "bad.zip", member, b"/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match=f"bad.zip: .*archive member has {problem}") as e:
        TextClassifier.load(z)
    assert e.value.file == member.filename
    assert isinstance(e.value, PackageIntegrityError)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_a_zip_with_a_duplicate_member_is_refused(tiny_package, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we write on purpose
        z = _zip_with(tiny_package, tmp_path / "dup.zip", zipfile.ZipInfo("config.json"), b"{}")
    with pytest.raises(UnsafeArchiveError, match="config.json: archive member appears twice"):
        TextClassifier.load(z)


def test_a_file_that_is_not_a_zip(tmp_path):
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(b"PK\x03\x04 but not really a zip archive")
    with pytest.raises(PackageIntegrityError, match="bogus.zip: is neither a package folder nor a .zip"):
        TextClassifier.load(bogus)


def test_a_corrupt_zip_member_is_an_integrity_error(tiny_package, tmp_path):
    z = zip_package(tiny_package, tmp_path / "corrupt.zip")
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("model.onnx")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # corrupt the compressed bytes of model.onnx
    z.write_bytes(bytes(data))
    with pytest.raises(PackageIntegrityError, match="model.onnx"):
        TextClassifier.load(z)


def _with_config(pkg: Path, **changes) -> Path:
    config = json.loads((pkg / "config.json").read_text())
    config.update(changes)
    (pkg / "config.json").write_text(json.dumps(config))
    (pkg / MANIFEST_FILE).unlink()
    write_manifest(pkg, opset=17)
    return pkg


def test_class_biases_are_added_after_the_temperature(pkg):
    plain = TextClassifier.load(pkg)
    logits = plain.predict_logits(TEXTS)
    biased = TextClassifier.load(_with_config(pkg, temperature=0.5, biases=[1.5, -0.5]))
    z = logits / 0.5 + np.array([1.5, -0.5], dtype=np.float32)
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(biased.predict_proba(TEXTS), want / want.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(biased.predict_logits(TEXTS), logits)  # raw logits: before both
    assert json.loads((pkg / "config.json").read_text())["biases"] == [1.5, -0.5]
    assert "class biases" in repr(biased)


@pytest.mark.parametrize("biases", [[1.0], [1.0, float("nan")], ["a", 0.0], [True, 0.0]])
def test_bad_class_biases_are_a_format_error(pkg, biases):
    with pytest.raises(PackageFormatError, match="biases"):
        TextClassifier.load(_with_config(pkg, biases=biases))


def test_the_model_is_opened_by_path_and_leaves_nothing_behind(pkg, tmp_path, monkeypatch):
    """onnxruntime opens the verified model by path (a link in a private folder, removed after the load)."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen = []
    real = TextClassifier._open_session

    def spy(model, *args):
        seen.append(model)
        return real(model, *args)

    monkeypatch.setattr(TextClassifier, "_open_session", staticmethod(spy))
    clf = TextClassifier.load(pkg)
    assert len(seen) == 1 and isinstance(seen[0], str) and Path(seen[0]).parent.parent == scratch
    assert Path(seen[0]).name == "model.onnx" and list(scratch.iterdir()) == []
    assert clf.predict_proba(TEXTS).shape == (len(TEXTS), 2)


def test_a_model_changed_while_it_loads_is_refused(pkg, monkeypatch):
    """What was hashed is what was loaded: a model written between its hash and onnxruntime's read fails the load
    (even the same bytes written again: the file's status-change time moved)."""
    real = TextClassifier._open_session

    def rewrite_then_open(model, *args):
        (pkg / "model.onnx").write_bytes((pkg / "model.onnx").read_bytes())
        return real(model, *args)

    monkeypatch.setattr(TextClassifier, "_open_session", staticmethod(rewrite_then_open))
    with pytest.raises(PackageIntegrityError, match="model.onnx: changed while it was being loaded"):
        TextClassifier.load(pkg)


@pytest.mark.parametrize("links", [True, False], ids=["by-link", "by-bytes"])
def test_a_model_changed_after_its_hash_is_refused(pkg, monkeypatch, links):
    """Between the model's hash and onnxruntime's read it is rewritten: through a link the file's status has moved;
    without links (Windows) its bytes are read and hashed again for onnxruntime. Either way the load fails."""
    from edgedistill.runtime import integrity

    if not links:
        monkeypatch.setattr("os.symlink", lambda *a, **k: (_ for _ in ()).throw(OSError("no links")))
    real = integrity.PinnedFile.verify

    def verify_then_change(self):
        real(self)
        data = self.path.read_bytes()
        self.path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))

    monkeypatch.setattr(integrity.PinnedFile, "verify", verify_then_change)
    with pytest.raises(PackageIntegrityError, match="model.onnx: changed while it was being loaded"):
        TextClassifier.load(pkg)


def test_a_corrupt_model_is_refused_before_onnxruntime_reads_it(pkg, monkeypatch):
    """The model's sha256, computed beside the tokenizer's parsing, is checked before the session is made."""
    data = (pkg / "model.onnx").read_bytes()
    (pkg / "model.onnx").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    opened = []
    monkeypatch.setattr(TextClassifier, "_open_session", staticmethod(lambda *a: opened.append(a)))
    with pytest.raises(PackageIntegrityError, match="model.onnx: sha256 .* does not match the manifest's"):
        TextClassifier.load(pkg)
    assert opened == []


def test_a_load_that_fails_before_the_model_is_read_stops_hashing_it(pkg, monkeypatch):
    """The model is hashed on a thread beside the tokenizer's parsing; a broken tokenizer ends the load, and the
    thread with it (no model left being hashed, no file held open)."""
    import threading

    from edgedistill.runtime import integrity

    def slow_hash(path, stop=None):  # a model that takes long to hash: it runs until the load stops it
        assert stop is not None and stop.wait(30)
        return ""

    monkeypatch.setattr(integrity, "sha256_file", slow_hash)
    (pkg / "tokenizer.json").write_text('{"version": "1.0", "model": 12}')
    write_manifest(pkg, opset=17)
    with pytest.raises(PackageFormatError, match="tokenizer.json"):
        TextClassifier.load(pkg)
    assert not [t for t in threading.enumerate() if t.name.startswith("sha256 ")]

