"""edgedistill.compress.export: torch.onnx export with dynamic axes, token_type_ids either way, and a parity check that
bites."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from edgedistill.compress.errors import ConfigError, ExportError, ExportMetaError, ExportParityError
from edgedistill.compress.export import ExportConfig, check_parity, export, parity_inputs
from edgedistill.compress.exportmeta import ExportMeta, ParityCase, read_export, runtime_config


def test_export_writes_the_folder_and_records_parity(tiny_onnx_dir):
    names = {p.name for p in tiny_onnx_dir.iterdir()}
    assert {"model.onnx", "tokenizer.json", "export.json", "config.json"} <= names
    assert not any(n.startswith(".") for n in names)
    meta = read_export(tiny_onnx_dir)
    assert meta.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert meta.uses_token_type_ids is True
    assert meta.labels == ("negative", "positive")
    assert meta.max_length == 64 and meta.opset == 17
    cases = {(c.batch, c.length) for c in meta.parity.cases}
    assert cases == {(b, n) for b in (1, 3, 8) for n in (8, 64)}
    assert 0 <= meta.parity.max_abs_diff["logits"] <= meta.parity.atol
    model = onnx.load(str(tiny_onnx_dir / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == meta.opset


def test_the_graph_takes_any_batch_and_length(tiny_onnx_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_onnx_dir)
    session = ort.InferenceSession(str(tiny_onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, length in ((5, 17), (2, 63)):
        feed = parity_inputs(tok, batch, length, ["input_ids", "attention_mask", "token_type_ids"])
        assert session.run(["logits"], feed)[0].shape == (batch, 2)


def test_padding_rows_in_parity_inputs_are_masked(tiny_onnx_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_onnx_dir)
    feed = parity_inputs(tok, 8, 64, ["input_ids", "attention_mask", "token_type_ids"])
    lengths = feed["attention_mask"].sum(axis=1)
    assert lengths[0] == 64 and lengths.min() < 64 and len(set(lengths.tolist())) > 1
    assert (feed["input_ids"][feed["attention_mask"] == 0] == tok.pad_token_id).all()
    assert feed["token_type_ids"][0].max() == 1  # segment ids are exercised


def _scale_classifier(src, dest, factor):
    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.name.startswith("classifier."):
            arr = onnx.numpy_helper.to_array(init) * factor
            init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), init.name))
    onnx.save(model, str(dest))


def test_a_broken_graph_fails_parity_with_the_difference(tmp_path, tiny_wide_model_dir, tiny_onnx_dir):
    broken = tmp_path / "model.onnx"
    _scale_classifier(tiny_onnx_dir / "model.onnx", broken, 1.5)
    with pytest.raises(ExportParityError) as err:
        check_parity(tiny_wide_model_dir, broken, max_length=64)
    assert set(err.value.diffs) == {"logits"}
    assert err.value.diffs["logits"] > 1e-2
    assert "logits: max |torch - onnx|" in str(err.value) and "batch" in str(err.value)
    # the untouched graph passes the same check
    parity = check_parity(tiny_wide_model_dir, tiny_onnx_dir / "model.onnx", max_length=64)
    assert parity["max_abs_diff"]["logits"] < 1e-4


def test_export_of_a_broken_graph_fails_and_leaves_nothing(tmp_path, monkeypatch, tiny_wide_model_dir):
    import edgedistill.compress.export as ex

    real = ex._torch_export

    def swap_an_add(ckpt, dest, opset):  # an exporter bug: one Add becomes a Sub
        real(ckpt, dest, opset)
        model = onnx.load(str(dest / "model.onnx"))
        node = next(n for n in model.graph.node if n.op_type == "Add" and "output/LayerNorm" not in n.name
                    and "/encoder/layer.1/" in n.name)
        node.op_type = "Sub"
        onnx.save(model, str(dest / "model.onnx"))

    monkeypatch.setattr(ex, "_torch_export", swap_an_add)
    out = tmp_path / "onnx"
    with pytest.raises(ExportParityError, match="logits"):
        export(ExportConfig(checkpoint=str(tiny_wide_model_dir), output=str(out), max_length=64))
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary twin


def test_a_model_without_token_type_ids(tmp_path, tiny_tokenizer_dir):
    """MPNet takes no token_type_ids: the graph, export.json and the runtime config all say so."""
    import torch
    from transformers import AutoTokenizer, MPNetConfig, MPNetForSequenceClassification

    from edgedistill.runtime import TextClassifier

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=66, pad_token_id=tok.pad_token_id,
                      num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    ckpt = tmp_path / "mpnet"
    MPNetForSequenceClassification(cfg).eval().save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    out = export(ExportConfig(checkpoint=str(ckpt), output=str(tmp_path / "onnx")))
    meta = read_export(out)
    assert meta.model_type == "mpnet"
    assert meta.input_names == ("input_ids", "attention_mask") and meta.uses_token_type_ids is False
    assert meta.max_length == 64  # 66 positions minus the padding offset, below the asked-for 128
    clf = TextClassifier.from_files(out / "model.onnx", out / "tokenizer.json", runtime_config(meta, "fp32"))
    assert clf.predict_proba(["the film was good", "dull"]).shape == (2, 3)


def test_an_existing_output_needs_overwrite(tmp_path, tiny_wide_model_dir):
    out = tmp_path / "onnx"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="output"):
        export(ExportConfig(checkpoint=str(tiny_wide_model_dir), output=str(out), max_length=64))
    assert (out / "keep.txt").exists()
    export(ExportConfig(checkpoint=str(tiny_wide_model_dir), output=str(out), max_length=64, overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "model.onnx").exists()


@pytest.mark.parametrize("field, value", [("opset", 16), ("max_length", 4), ("atol", 0.0), ("checkpoint", "")])
def test_bad_config_names_the_field(field, value):
    kwargs = {"checkpoint": "x", field: value}
    with pytest.raises(ConfigError, match=field):
        ExportConfig(**kwargs)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        export(ExportConfig(checkpoint=str(tmp_path)))


def test_cli_export(tmp_path, tiny_wide_model_dir):
    from edgedistill.compress.cli import app

    out = tmp_path / "onnx"
    res = CliRunner().invoke(app, ["export", str(tiny_wide_model_dir), "--output", str(out), "--max-length", "64"])
    assert res.exit_code == 0, res.output
    assert "Parity" in res.output and "model.onnx" in res.output
    assert json.loads((out / "export.json").read_text())["max_length"] == 64
    res = CliRunner().invoke(app, ["export", str(tiny_wide_model_dir), "--output", str(out)])
    assert res.exit_code == 1 and "already exists" in res.output
    shutil.rmtree(out)


# export.json as the toolchain wrote it before ExportMeta existed (json.dumps of a dict, indent 2; two cases kept)
WRITTEN = {
    "checkpoint": "/builds/x/student", "model_type": "bert", "labels": ["negative", "positive"], "max_length": 64,
    "input_names": ["input_ids", "attention_mask", "token_type_ids"], "output_name": "logits",
    "uses_token_type_ids": True, "pad_token_id": 0, "opset": 17, "num_attention_heads": 2, "hidden_size": 32,
    "num_hidden_layers": 2,
    "parity": {"atol": 0.0001, "max_abs_diff": {"logits": 5.587935447692871e-09},
               "cases": [{"batch": 1, "length": 8, "logits": 1.862645149230957e-09},
                         {"batch": 1, "length": 64, "logits": 9.313225746154785e-10}]},
    "config": {"checkpoint": "/builds/x/student", "output": "/builds/x/onnx", "opset": 17, "max_length": 64,
               "atol": 0.0001, "overwrite": False},
    "exporter": "torch.onnx.export (TorchScript, eager attention)",
    "versions": {"torch": "2.13.0+cpu", "transformers": "5.24.0", "onnxruntime": "1.32.0"},
    "created": "2026-11-30T14:12:16Z",
}


def test_an_existing_export_json_reads_into_typed_fields_and_writes_back_unchanged(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(WRITTEN, indent=2) + "\n")
    meta = ExportMeta.from_file(path)
    assert meta.labels == ("negative", "positive") and meta.max_length == 64 and meta.pad_token_id == 0
    assert meta.input_names == ("input_ids", "attention_mask", "token_type_ids") and meta.uses_token_type_ids
    assert meta.parity.atol == 1e-4 and meta.parity.cases[1] == ParityCase(1, 64, {"logits": 9.313225746154785e-10})
    assert meta.to_dict() == WRITTEN and list(meta.to_dict()) == list(WRITTEN)
    assert meta.to_json() == path.read_text()
    old_config = {k: WRITTEN[k] for k in ("labels", "max_length", "input_names", "output_name", "uses_token_type_ids",
                                          "pad_token_id", "model_type")} | {"variant": "int8-static"}
    assert runtime_config(meta, "int8-static") == old_config | {"temperature": 1.0, "batch_dependent": False,
                                                                "batch_invariant": True}
    assert runtime_config(meta, "int8-dynamic", temperature=2.5)["batch_dependent"] is True
    assert ExportMeta.from_dict(meta.to_dict()) == meta


def test_export_writes_what_it_reads_back(tiny_onnx_dir):
    path = tiny_onnx_dir / "export.json"
    assert ExportMeta.from_file(path).to_json() == path.read_text()


def test_keys_this_version_does_not_know_are_kept_and_optional_ones_may_be_absent():
    older = {k: v for k, v in WRITTEN.items() if k not in ("exporter", "num_hidden_layers")} | {"future": [1, 2]}
    meta = ExportMeta.from_dict(older)
    assert meta.exporter is None and meta.num_hidden_layers is None and meta.extra == {"future": [1, 2]}
    assert meta.to_dict()["future"] == [1, 2]


def _without(d, key):
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("text, key, why", [
    (json.dumps(_without(WRITTEN, "max_length")), "max_length", "missing"),
    (json.dumps(_without(_without(WRITTEN, "labels"), "opset")), "labels, opset", "missing"),
    (json.dumps(WRITTEN | {"labels": "negative"}), "labels", "not a non-empty list"),
    (json.dumps(WRITTEN | {"max_length": "64"}), "max_length", "not an int >= 1"),
    (json.dumps(WRITTEN | {"uses_token_type_ids": 1}), "uses_token_type_ids", "not true or false"),
    (json.dumps(WRITTEN | {"parity": {"max_abs_diff": {"logits": 0.0}}}), "parity.atol", "not a number"),
    (json.dumps(WRITTEN | {"parity": {"atol": 1e-4, "max_abs_diff": {}, "cases": [{"length": 8}]}}),
     "parity.cases[0]", "no int batch"),
    ('{"labels": ["a"], ', None, "cannot be read as JSON"),
    ("[1, 2]", None, "must hold a JSON object, not list"),
])
def test_a_malformed_export_json_names_the_file_and_the_key(tmp_path, text, key, why):
    path = tmp_path / "export.json"
    path.write_text(text)
    with pytest.raises(ExportMetaError) as info:
        ExportMeta.from_file(path)
    err = info.value
    assert isinstance(err, ExportError) and err.path == path and err.key == key and why in str(err)
    assert str(err).startswith(f"{path}: " + (f"{key}: " if key else ""))


def test_a_folder_without_export_json_is_named(tmp_path):
    expected = f"{tmp_path / 'export.json'}: missing; {tmp_path} is not a folder written by `edgedistill export`"
    with pytest.raises(ExportMetaError, match=re.escape(expected)):
        read_export(tmp_path)


def test_cli_reports_a_malformed_export_json_in_one_line(tmp_path, tiny_onnx_dir):
    from edgedistill.compress.cli import app

    folder = tmp_path / "onnx"
    shutil.copytree(tiny_onnx_dir, folder)
    (folder / "export.json").write_text(json.dumps(_without(WRITTEN, "pad_token_id")))
    res = CliRunner().invoke(app, ["package", str(folder), "--output", str(tmp_path / "pkg")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{folder / 'export.json'}: pad_token_id: missing" in " ".join(res.output.split())
