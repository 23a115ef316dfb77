"""Ray Data scoring (runtime/ray_job.py, ``edgedistill predict --engine ray``): a local cluster of 2 workers scores a
few thousand texts with a tiny package built here, and every row gets the label and score ``TextClassifier`` gives
it in this process, in the input's order; a batch-dependent package keeps its one-text-per-call rule; each reader
gives the runtime's texts; the worker plan and the config refuse what would hang or clash.

The package is a token table in ONNX (tests/tiny_onnx.py): ``logits = BIAS + the sum of the rows of the text's
words``; its batch-dependent twin adds a term from the largest token id in the whole batch, so a text's answer
changes with its batch-mates unless it runs alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgedistill.runtime import TextClassifier, write_manifest
from edgedistill.runtime.package import STATIC_MODEL_TYPE
from edgedistill.runtime.ray_job import IO_RESERVE, RayJobConfig, plan_workers, score
from tests.tiny_onnx import token_table_graph, wordpiece_tokenizer

LABELS = ["negative", "neutral", "positive"]
BIAS = np.array([0.0, 0.3, 0.0], dtype=np.float32)
ROWS = {"awful": [2.0, 0.0, -1.0], "dull": [1.0, 0.2, -0.5], "fine": [0.0, 0.8, 0.1], "good": [-0.5, 0.0, 1.0],
        "superb": [-1.0, -0.2, 2.2], "plot": [0.1, 0.1, 0.0]}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
VOCAB = SPECIALS + sorted(ROWS) + ["the", "a", "film"]
SHIFT = np.array([0.0, 0.0, 0.6], dtype=np.float32)  # the batch-dependent twin: + SHIFT x the batch's largest id
N = 3000
WORKERS = 2


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = sorted(ROWS) + ["the", "a", "film", "unknown"]
    return [" ".join(rng.choice(words, size=rng.integers(0, 9))) for _ in range(n)]


def _package(folder: Path, *, batch_dependent: bool) -> Path:
    folder.mkdir(parents=True)
    table = np.zeros((len(VOCAB), len(LABELS)), dtype=np.float32)
    for word, row in ROWS.items():
        table[VOCAB.index(word)] = row
    token_table_graph(folder / "model.onnx", table, BIAS, shift=SHIFT if batch_dependent else None)
    wordpiece_tokenizer(folder / "tokenizer.json", VOCAB, SPECIALS)
    config = {"labels": LABELS, "max_length": 16, "input_names": ["input_ids", "attention_mask"], "pad_token_id": 0,
              "model_type": STATIC_MODEL_TYPE, "variant": "int8-dynamic" if batch_dependent else "fp32"}
    (folder / "config.json").write_text(json.dumps(config))
    write_manifest(folder, opset=17)
    return folder


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ray-packages")
    return {"plain": _package(root / "plain", batch_dependent=False),
            "batch-dependent": _package(root / "batch-dependent", batch_dependent=True)}


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 workers: 2 CPUs for them, and the one the job leaves to Ray Data's own tasks."""
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'edgedistill[ray]'")
    pytest.importorskip("ray.data", reason="ray[data] is not installed: pip install 'edgedistill[ray]'")
    ray.init(address="local", num_cpus=WORKERS + int(IO_RESERVE), include_dashboard=False,
             object_store_memory=200 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def parquet_input(tmp_path_factory) -> tuple[Path, list[str]]:
    """The texts in two Parquet files (an ``id`` column beside them), in order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("ray-input")
    texts = _texts(N)
    half = N // 2
    for name, part in (("part-0.parquet", slice(0, half)), ("part-1.parquet", slice(half, N))):
        pq.write_table(pa.table({"id": np.arange(N)[part], "text": texts[part]}), folder / name)
    return folder, texts


def _read(output: Path):
    import pyarrow.parquet as pq

    return pq.read_table(output)  # the folder's files in name order


# ------------------------------------------------------------------------------------------- the job on 2 workers
def test_two_workers_give_the_runtimes_labels_row_for_row(cluster, packages, parquet_input, tmp_path):
    folder, texts = parquet_input
    result = score(RayJobConfig(package=str(packages["plain"]), input=str(folder), output=str(tmp_path / "out"),
                                keep_columns=("id",), rows_per_batch=256))
    assert (result.rows, result.workers, result.threads) == (N, WORKERS, 1)
    got = _read(tmp_path / "out")
    assert got.column_names == ["text", "id", "label", "score"]
    assert got.column("id").to_pylist() == list(range(N))  # the input's order
    assert got.column("text").to_pylist() == texts
    want = TextClassifier.load(packages["plain"], threads=1).predict(texts)
    assert got.column("label").to_pylist() == [p["label"] for p in want]
    assert np.allclose(got.column("score").to_numpy(), [p["score"] for p in want], atol=1e-6)
    assert len(set(got.column("label").to_pylist())) == len(LABELS)  # the texts reach every label


def test_a_batch_dependent_package_still_runs_one_text_per_call(cluster, packages, parquet_input, tmp_path):
    """Blocks of 256 texts reach each actor; the package's rule (dynamic int8: batch_dependent) runs them one per
    session call, so the labels are the ones each text gets alone, which batching would change."""
    folder, texts = parquet_input
    score(RayJobConfig(package=str(packages["batch-dependent"]), input=str(folder), output=str(tmp_path / "out"),
                       rows_per_batch=256, top_k=2))
    got = _read(tmp_path / "out")
    clf = TextClassifier.load(packages["batch-dependent"], threads=1)
    alone = clf.predict(texts, top_k=2)
    assert got.column("top_k").to_pylist() == [[{"label": r["label"], "score": pytest.approx(r["score"], abs=1e-6)}
                                                for r in p] for p in alone]
    assert got.column("label").to_pylist() == [p[0]["label"] for p in alone]
    batched = TextClassifier.load(packages["batch-dependent"], threads=1, batch_invariant=False).predict(texts)
    assert [p["label"] for p in batched] != [p[0]["label"] for p in alone]  # batching would have changed answers


def test_each_reader_gives_the_runtimes_texts(cluster, packages, tmp_path):
    """JSON Lines, CSV (a text column of digits stays text) and .txt (an empty line is a text) read as
    ``edgedistill predict --input`` reads them (runtime/inputs.py)."""
    from edgedistill.runtime import inputs

    texts = ["superb film", "", "the plot was dull", "12345", "awful, awful", "a \"quoted\" good one"]
    files = tmp_path / "in"
    files.mkdir()
    (files / "t.jsonl").write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    import csv

    with open(files / "t.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["n", "body"])
        w.writerows((i, t) for i, t in enumerate(texts))
    (files / "t.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    clf = TextClassifier.load(packages["plain"], threads=1)
    for name, column in (("t.jsonl", "text"), ("t.csv", "body"), ("t.txt", "text")):
        path = files / name
        fmt = inputs.input_format(path)
        with open(path, encoding="utf-8", newline=inputs.NEWLINE[fmt]) as f:
            want = list(inputs.iter_texts(f, fmt, path, column))
        assert want == texts
        out = tmp_path / f"out-{path.suffix[1:]}"
        score(RayJobConfig(package=str(packages["plain"]), input=str(path), output=str(out), text_column=column))
        got = _read(out)
        assert got.column(column).to_pylist() == texts, name
        assert got.column("label").to_pylist() == [p["label"] for p in clf.predict(texts)], name


def test_the_predict_command_runs_the_job(cluster, packages, parquet_input, tmp_path):
    from typer.testing import CliRunner

    from edgedistill.compress.cli import app

    folder, texts = parquet_input
    out = tmp_path / "scores"
    r = CliRunner().invoke(app, ["predict", str(packages["plain"]), "--input", str(folder), "--output", str(out),
                                 "--engine", "ray", "--keep-column", "id", "--chunk-size", "1000"])
    assert r.exit_code == 0, r.output
    got = _read(out)
    assert got.column("id").to_pylist() == list(range(N))
    want = TextClassifier.load(packages["plain"], threads=1).predict(texts)
    assert got.column("label").to_pylist() == [p["label"] for p in want]
    again = CliRunner().invoke(app, ["predict", str(packages["plain"]), "--input", str(folder), "--output", str(out),
                                     "--engine", "ray"])
    assert again.exit_code == 1 and "already holds Parquet files" in again.output
    bad = CliRunner().invoke(app, ["predict", str(packages["plain"]), "--input", str(folder), "--output",
                                   str(tmp_path / "x"), "--engine", "ray", "--text-column", "body"])
    assert bad.exit_code == 1 and "no column 'body'" in bad.output


# ------------------------------------------------------------------------------------- no cluster needed
def test_the_worker_plan_leaves_ray_datas_tasks_a_cpu():
    assert plan_workers(3, 1, None) == 2
    assert plan_workers(17, 4, None) == 4
    assert plan_workers(3, 1, 1) == 1
    with pytest.raises(ValueError, match=r"workers=3 x threads=1 = 3 CPUs.*give workers=2 or fewer"):
        plan_workers(3, 1, 3)
    with pytest.raises(ValueError, match="fewer than|one worker needs"):
        plan_workers(2, 2, None)


def test_the_config_names_the_bad_field():
    with pytest.raises(ValueError, match="workers=0"):
        RayJobConfig(package="p", input="x.parquet", output="out", workers=0)
    with pytest.raises(ValueError, match="would clash"):
        RayJobConfig(package="p", input="x.parquet", output="out", keep_columns=("id", "label"))
    with pytest.raises(ValueError, match="would clash"):
        RayJobConfig(package="p", input="x.parquet", output="out", keep_columns=("text",))
    with pytest.raises(ValueError, match="input_format='xml'"):
        RayJobConfig(package="p", input="x.xml", output="out", input_format="xml")
    with pytest.raises(ValueError, match="name the folder"):
        RayJobConfig(package="p", input="x.parquet")


def test_prediction_tables_keep_their_types_whatever_a_block_holds():
    """The columns a worker appends have the types ``predict --output X.parquet`` writes, even for a block of no
    rows or of multi-label answers that are all empty."""
    from types import SimpleNamespace

    from edgedistill.runtime.inputs import prediction_table

    single, multi = SimpleNamespace(multi_label=False), SimpleNamespace(multi_label=True)
    ranked = prediction_table(single, [[{"label": "a", "score": 0.75}, {"label": "b", "score": 0.25}]], ranked=True)
    assert ranked.to_pylist() == [{"label": "a", "score": 0.75, "top_k": [{"label": "a", "score": 0.75},
                                                                          {"label": "b", "score": 0.25}]}]
    assert prediction_table(single, []).schema.names == ["label", "score"]
    empty = prediction_table(multi, [[], []])
    assert [str(t) for t in empty.schema.types] == ["list<item: string>", "list<item: double>"]
    assert empty.to_pylist() == [{"labels": [], "scores": []}] * 2


def test_without_ray_the_error_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'edgedistill\[ray\]'"):
        score(RayJobConfig(package="p", input="x.parquet", output=str(tmp_path / "out")))


def test_the_runtime_imports_no_ray():
    code = ("import sys, edgedistill.runtime.ray_job, edgedistill.runtime; "
            "edgedistill.runtime.TextClassifier; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_folder_of_mixed_files_needs_a_format(tmp_path):
    from edgedistill.runtime.ray_job import read

    pytest.importorskip("ray", reason="ray is not installed: pip install 'edgedistill[ray]'")
    (tmp_path / "a.csv").write_text("text\nx\n")
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="holds files of csv, jsonl; name the format"):
        read(RayJobConfig(package="p", input=str(tmp_path), output=str(tmp_path / "out")))
