"""The many-GPU path, proven on CPUs: two processes (gloo) fine-tune through Trainer's data parallelism."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_torchrun_fine_tune(tmp_path, tiny_model_dir, tiny_csv):
    out = tmp_path / "teacher"
    cfg_path = tmp_path / "cfg.json"  # a file of recipe tables, read by the recipe layer
    cfg_path.write_text(json.dumps({"data": {"source": str(tiny_csv)},
                                    "teacher": {"model": str(tiny_model_dir), "strategy": "full", "epochs": 1,
                                                "batch_size": 16, "max_length": 32, "learning_rate": 5e-3}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "compress.teacher", "--config", str(cfg_path), "--output-dir", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    rec = json.loads((out / "training.json").read_text())
    assert rec["world_size"] == 2
    # each step sees 16 examples on each of the 2 processes: half the steps of one process
    assert rec["steps"] == math.ceil(168 / (16 * 2))
    assert (out / "model.safetensors").is_file() and (out / "metrics.json").is_file()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the temp folder is gone
    # both ranks printed the same final path; only rank 0 wrote it
    assert proc.stdout.count(str(out)) >= 2
