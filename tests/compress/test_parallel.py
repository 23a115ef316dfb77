"""The many-GPU path, proven on CPUs: two processes (gloo) fine-tune the teacher and distil the student through
Trainer's data parallelism."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]


def _torchrun(module: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", **env}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", module, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_process_torchrun_fine_tune(tmp_path, tiny_model_dir, tiny_csv):
    out = tmp_path / "teacher"
    cfg_path = tmp_path / "cfg.json"  # a file of recipe tables, read by the recipe layer
    cfg_path.write_text(json.dumps({"data": {"source": str(tiny_csv)},
                                    "teacher": {"model": str(tiny_model_dir), "strategy": "full", "epochs": 1,
                                                "batch_size": 16, "max_length": 32, "learning_rate": 5e-3}}))
    proc = _torchrun("edgedistill.compress.teacher", ["--config", str(cfg_path), "--output-dir", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    rec = json.loads((out / "training.json").read_text())
    assert rec["world_size"] == 2
    # each step sees 16 examples on each of the 2 processes: half the steps of one process
    assert rec["steps"] == math.ceil(168 / (16 * 2))
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the temp folder is gone
    # both ranks printed the same final path; only rank 0 wrote it
    assert proc.stdout.count(str(out)) >= 2



@pytest.mark.slow
def test_two_process_torchrun_distillation(tmp_path, tiny_model_dir, tiny_csv):
    """Each process labels a shard of the transfer texts with the teacher and all get the whole; each process
    trains on its shard; one student is written, and it loads."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgedistill.compress.data import DataConfig, load_data

    runs, cache = tmp_path / "runs", tmp_path / "cache"
    runs.mkdir()
    out = runs / "student"
    cfg_path = tmp_path / "recipe.json"  # the recipe layer reads it, as for the teacher
    cfg_path.write_text(json.dumps({
        "data": {"source": str(tiny_csv)}, "student": {"builder": "teacher-layers", "layers": 1},
        "distill": {"epochs": 1, "batch_size": 16, "max_length": 32, "learning_rate": 1e-3}}))
    proc = _torchrun("edgedistill.compress.distill", ["--config", str(cfg_path), "--teacher", str(tiny_model_dir),
                                                      "--output-dir", str(out), "--set", "distill.temperature=3"],
                     tmp_path, EDGEDISTILL_CACHE=str(cache))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # the teacher met each text once: rank 0 planned, each process labelled a shard, rank 0 wrote one cache file
    n = len(load_data(DataConfig(source=str(tiny_csv))).train)
    assert proc.stderr.count(f"running the teacher {tiny_model_dir} over {n} of {n}") == 1, proc.stderr[-3000:]
    assert proc.stderr.count(f"teacher outputs for {n} texts from the cache") == 0
    assert len(list((cache / "teacher-outputs").glob("*.npz"))) == 1

    # exactly one checkpoint, nothing left beside it (no temporary or checkpoint folders)
    assert [p.name for p in runs.iterdir()] == ["student"]
    assert [p.name for p in out.glob("*.safetensors")] == ["model.safetensors"]
    assert not list(out.rglob("checkpoint-*"))
    info = json.loads((out / "distill.json").read_text())
    assert info["config"]["temperature"] == 3  # --set went through the recipe layer
    par = info["processes"]
    assert par["world_size"] == 2 and par["backend"] == "gloo" and par["precision"] == "fp32"
    # both processes trained, each on a part of the texts, together on all of them
    assert len(par["texts_per_process"]) == 2 and all(0 < k < n for k in par["texts_per_process"])
    assert par["texts_covered"] == n
    assert info["teacher_outputs"]["from_cache"] is False
    shards = info["teacher_outputs"]["labelling"]["texts_per_process"]
    assert len(shards) == 2 and sum(shards) == n and all(k > 0 for k in shards)
    # both ranks printed the same final path, once it was there
    assert proc.stdout.count(str(out)) == 2

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.num_hidden_layers == 1
    import torch

    with torch.inference_mode():
        logits = model(**tok(["good film", "dull film"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert json.loads((out / "metrics.json").read_text())["n"] > 0
