"""Fast teacher labelling: the int8 ONNX graph behind its agreement check, and the texts labelled in shards by
many processes (compress/distill/labelling.py, compress/distill/teacher_outputs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgedistill.compress.data import DataConfig, load_data
from edgedistill.compress.distill import labelling
from edgedistill.compress.distill import teacher_outputs as outputs_mod
from edgedistill.compress.distill.labelling import agreement, shard_indices

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split(tiny_csv):
    """(transfer texts, validation texts) of the tiny data."""
    data = load_data(DataConfig(source=str(tiny_csv)))
    return list(data.train.texts), list(data.validation.texts)


@pytest.mark.parametrize("block", [1, 3, 32])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 5, 31, 32, 33, 100, 1000])
def test_shards_cover_every_position_exactly_once(n, world, block):
    shards = [shard_indices(n, r, world, block) for r in range(world)]
    joined = np.concatenate(shards)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))
    for s in shards:
        assert np.all(np.diff(s) > 0)  # each shard in order, no position twice
        # whole blocks: a rank's positions are runs of `block` (the last run of the whole range may be short)
        assert all(len(np.flatnonzero(s // block == b)) in (block, n % block) for b in np.unique(s // block))
    # blocks dealt out in turn: no shard is more than one block bigger than another
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= block


def test_shard_indices_refuse_a_rank_outside_the_group():
    with pytest.raises(ValueError, match="rank=2, world=2"):
        shard_indices(10, 2, 2)
    with pytest.raises(ValueError, match="block=0"):
        shard_indices(10, 0, 2, block=0)


def test_agreement_counts_labels_single_and_multi_label():
    a = np.array([[2.0, 1.0], [0.0, 1.0], [3.0, -1.0], [0.2, 0.1]])
    b = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, -1.0], [0.1, 0.2]])
    assert agreement(a, b, multi_label=False) == 0.5  # rows 0 and 2 keep their argmax
    # multi-label: a text agrees when every label's sign does, as the quantize gate counts (rows 2 and 3; row 0
    # differs in its second label, row 1 in both), not per label (5 of 8 cells would say 0.625)
    assert agreement(a, b, multi_label=True) == pytest.approx(2 / 4)
    assert agreement(a[:0], b[:0], multi_label=False) == 1.0


def test_int8_labels_agree_with_fp32_and_the_agreement_is_recorded(tiny_model_dir, split, tmp_path, monkeypatch):
    texts, val = split
    fp32 = outputs_mod.run_teacher_onnx(tiny_model_dir, texts, 16).logits
    out = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", validation_texts=val,
                                      cache=tmp_path)
    lab = out.labelling
    assert lab.graph == "onnx-int8" and lab.graph_file.startswith("model_int8_labelling-")
    assert lab.min_agreement == labelling.INT8_MIN_AGREEMENT <= lab.agreement <= 1.0
    assert lab.agreement_texts == len(val) and lab.texts_labelled == len(texts)
    assert lab.texts_per_process == [len(texts)] and lab.texts_per_second > 0
    assert lab.to_dict()["texts_per_second"] == lab.texts_per_second
    # the int8 graph is a real int8 graph beside the fp32 one, and its labels are fp32's
    from edgedistill.compress.quantize.graph import op_counts

    int8_file = outputs_mod.onnx_teacher(tiny_model_dir, 16) / lab.graph_file
    assert op_counts(int8_file, ("MatMulInteger",))["MatMulInteger"] > 0
    assert agreement(out.logits, fp32, multi_label=False) >= labelling.INT8_MIN_AGREEMENT
    assert not np.array_equal(out.logits, fp32)  # int8 labelled, not fp32
    np.testing.assert_allclose(out.logits, fp32, atol=0.05)
    # the agreement is measured once per graph and validation texts: a second set of texts does not rerun it
    runs = []
    real = outputs_mod._run_graph
    monkeypatch.setattr(outputs_mod, "_run_graph", lambda *a, **k: runs.append(a[1]) or real(*a, **k))
    again = outputs_mod.teacher_outputs(tiny_model_dir, texts[:10], 16, backend="onnx", validation_texts=val,
                                        cache=tmp_path)
    assert again.labelling.agreement == lab.agreement and again.from_cache is False
    assert runs == []  # its 10 rows came from the first set's cache file (same graph, same key)


def test_fp32_labels_when_int8_agrees_too_little_and_the_caches_stay_apart(tiny_model_dir, split, tmp_path,
                                                                            monkeypatch):
    texts, val = split
    int8 = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", validation_texts=val,
                                       cache=tmp_path)
    assert int8.labelling.graph == "onnx-int8"
    line = labelling.INT8_MIN_AGREEMENT
    monkeypatch.setattr(labelling, "INT8_MIN_AGREEMENT", 1.01)  # no graph can agree that well
    fp32 = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", validation_texts=val,
                                       cache=tmp_path)
    lab = fp32.labelling
    assert lab.graph == "onnx-fp32" and lab.agreement == int8.labelling.agreement and lab.min_agreement == 1.01
    assert "< 1.01" in lab.reason
    assert not fp32.from_cache  # the int8 rows are not fp32's: the fp32 graph labelled every text again
    np.testing.assert_array_equal(fp32.logits, outputs_mod.run_teacher_onnx(tiny_model_dir, texts, 16).logits)
    # two cache files, under two keys; fp32 with or without a check is one key
    keys = {p.name.split("-")[0] for p in tmp_path.glob("*.npz")}
    assert len(keys) == 2 and fp32.fingerprint != int8.fingerprint
    assert outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", cache=tmp_path).from_cache
    monkeypatch.setattr(labelling, "INT8_MIN_AGREEMENT", line)
    back = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", validation_texts=val,
                                       cache=tmp_path)
    assert back.from_cache and back.labelling.graph == "onnx-int8"
    np.testing.assert_array_equal(back.logits, int8.logits)


def test_without_validation_texts_or_an_int8_graph_fp32_labels(tiny_model_dir, split, tmp_path, monkeypatch, caplog):
    texts, val = split
    plain = outputs_mod.teacher_outputs(tiny_model_dir, texts[:8], 16, backend="onnx", cache=tmp_path)
    assert plain.labelling.graph == "onnx-fp32" and plain.labelling.agreement is None

    def broken(folder):
        raise RuntimeError("the quantiser met an op it does not know")

    monkeypatch.setattr(outputs_mod, "int8_graph", broken)
    with caplog.at_level("WARNING", logger="edgedistill.compress.distill"):
        out = outputs_mod.teacher_outputs(tiny_model_dir, texts[8:16], 16, backend="onnx", validation_texts=val,
                                          cache=tmp_path)
    assert out.labelling.graph == "onnx-fp32" and "does not know" in out.labelling.reason
    assert "its int8 graph could not be built" in caplog.text
    torch_out = outputs_mod.teacher_outputs(tiny_model_dir, texts[:8], 16, pooled=True, backend="onnx",
                                            validation_texts=val, cache=tmp_path)
    assert torch_out.labelling.graph == "torch" and torch_out.labelling.agreement is None


_SCRIPT = """
import json, logging, sys
import numpy as np
import torch.distributed as dist
from edgedistill.compress.distill.teacher_outputs import teacher_outputs

logging.basicConfig(level=logging.INFO)
dist.init_process_group("gloo")
args = json.loads(sys.argv[1])
out = teacher_outputs(args["teacher"], args["texts"], 16, pooled=args["pooled"], backend="onnx",
                      validation_texts=args["val"], cache=args["cache"])
rank = dist.get_rank()
np.save(f"{args['out']}/logits-{rank}.npy", out.logits)
if out.pooled is not None:
    np.save(f"{args['out']}/pooled-{rank}.npy", out.pooled)
with open(f"{args['out']}/labelling-{rank}.json", "w") as f:
    json.dump({**out.labelling.to_dict(), "from_cache": out.from_cache, "fingerprint": out.fingerprint}, f)
dist.destroy_process_group()
"""


def _two_processes(tmp_path: Path, **args) -> list[dict]:
    script = tmp_path / "label.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), json.dumps({**args, "out": str(tmp_path)})],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count("running the teacher") == 1  # rank 0 planned, once
    return [json.loads((tmp_path / f"labelling-{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_two_processes_label_a_shard_each_and_gather_the_single_process_result(tiny_model_dir, split, tmp_path):
    texts, val = split
    texts = texts[:70]  # batches of 32: rank 0 takes batches 1 and 3 (38 texts), rank 1 batch 2 (32)
    one = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", validation_texts=val,
                                      cache=tmp_path / "one")
    assert one.labelling.graph == "onnx-int8"
    cache = tmp_path / "two"
    recs = _two_processes(tmp_path, teacher=str(tiny_model_dir), texts=texts, val=val, cache=str(cache),
                          pooled=False)
    for rank in range(2):  # every rank holds the whole result, the one a single process labels
        np.testing.assert_allclose(np.load(tmp_path / f"logits-{rank}.npy"), one.logits, rtol=0, atol=1e-5)
        assert recs[rank]["graph"] == "onnx-int8" and recs[rank]["fingerprint"] == one.fingerprint
    assert recs[0]["texts_per_process"] == recs[1]["texts_per_process"] == [38, 32]
    assert recs[0]["texts_labelled"] == len(texts) and recs[0]["from_cache"] is False
    assert [p.name for p in cache.glob("*.npz")] == [f"{p.name}" for p in (tmp_path / "one").glob("*.npz")]
    # the cache rank 0 wrote is the whole set, read back in one process
    back = outputs_mod.teacher_outputs(tiny_model_dir, texts, 16, backend="onnx", validation_texts=val, cache=cache)
    assert back.from_cache
    np.testing.assert_array_equal(back.logits, np.load(tmp_path / "logits-0.npy"))


@pytest.mark.slow
def test_two_processes_shard_the_torch_teacher_too(tiny_model_dir, split, tmp_path):
    """Inner states come from torch: the pooled features are sharded and gathered alike."""
    texts, _ = split
    texts = texts[:40]
    one = outputs_mod.run_teacher(tiny_model_dir, texts, 16, pooled=True)
    recs = _two_processes(tmp_path, teacher=str(tiny_model_dir), texts=texts, val=[], cache=str(tmp_path / "c"),
                          pooled=True)
    assert recs[1]["graph"] == "torch" and recs[1]["texts_per_process"] == [32, 8]
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"logits-{rank}.npy"), one.logits, atol=1e-5)
        np.testing.assert_allclose(np.load(tmp_path / f"pooled-{rank}.npy"), one.pooled, atol=1e-5)
