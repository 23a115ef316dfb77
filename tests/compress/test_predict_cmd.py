"""``edgedistill predict``: texts on the command line, .txt / .jsonl / .csv / .parquet files, a resumed run, errors,
no torch."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgedistill.compress.cli import app
from edgedistill.runtime import TextClassifier

runner = CliRunner()
TEXTS = ["the film was good", "", "bad, really bad", "a very boring plot and flat acting", "😀 שלום",
         'quotes " and, commas', "great"]


@pytest.fixture(scope="module")
def clf(tiny_package) -> TextClassifier:
    return TextClassifier.load(tiny_package)


def invoke(*args: str):
    return runner.invoke(app, ["predict", *map(str, args)])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def expected(clf: TextClassifier, texts: list[str], top_k: int = 1) -> list[dict]:
    """What the CLI should write, computed through the library (scores to float32 precision)."""
    preds = clf.predict(texts, top_k=top_k)
    return preds if top_k == 1 else [{"label": p[0]["label"], "score": p[0]["score"], "top_k": p} for p in preds]


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["label"] == w["label"]
        assert g["score"] == pytest.approx(w["score"], abs=1e-6)


def test_texts_on_the_command_line(tiny_package, clf):
    res = invoke(tiny_package, "the film was good", "bad")
    assert res.exit_code == 0, res.output
    for text, p in zip(["the film was good", "bad"], clf.predict(["the film was good", "bad"])):
        assert text in res.stdout and p["label"] in res.stdout and f"{p['score']:.4f}" in res.stdout


def test_texts_to_an_output_file_with_top_k(tiny_package, clf, tmp_path):
    out = tmp_path / "out.jsonl"
    res = invoke(tiny_package, "good", "bad", "--top-k", "2", "--output", out)
    assert res.exit_code == 0, res.output
    got = read_jsonl(out)
    assert_same(got, expected(clf, ["good", "bad"], top_k=2))
    assert [len(g["top_k"]) for g in got] == [2, 2]


def test_a_txt_file_one_line_per_line(tiny_package, clf, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(("\n".join(TEXTS[:4]) + "\r\n" + "\n".join(TEXTS[4:]) + "\n").encode())  # one CRLF line
    out = tmp_path / "out.jsonl"
    res = invoke(tiny_package, "--input", src, "--output", out, "--chunk-size", "3", "--batch-size", "2")
    assert res.exit_code == 0, res.output
    assert_same(read_jsonl(out), expected(clf, TEXTS))
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_a_jsonl_file_with_objects_and_strings(tiny_package, clf, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"review": t, "id": i}) if i % 2 else json.dumps(t, ensure_ascii=False)
             for i, t in enumerate(TEXTS)]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    res = invoke(tiny_package, "-i", src, "-o", out, "--text-column", "review")
    assert res.exit_code == 0, res.output
    assert_same(read_jsonl(out), expected(clf, TEXTS))


def test_a_csv_file_with_quoted_newlines_and_a_bom(tiny_package, clf, tmp_path):
    texts = TEXTS + ["a review\nover two lines"]
    src = tmp_path / "in.csv"
    with open(src, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([i, t] for i, t in enumerate(texts))
    out = tmp_path / "out.jsonl"
    res = invoke(tiny_package, "--input", src, "--output", out)
    assert res.exit_code == 0, res.output
    assert_same(read_jsonl(out), expected(clf, texts))


def test_a_file_to_stdout(tiny_package, clf, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n")
    res = invoke(tiny_package, "--input", src)
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert_same(got, expected(clf, ["good", "bad"]))


def test_a_zip_package(tiny_package, tmp_path):
    from edgedistill.runtime import zip_package

    z = zip_package(tiny_package, tmp_path / "tiny.zip")
    res = invoke(z, "good")
    assert res.exit_code == 0, res.output


def test_a_parquet_file_in_and_a_parquet_file_out(tiny_package, clf, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = TEXTS * 5
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "review": texts}), src, row_group_size=4)
    out = tmp_path / "out.jsonl"
    res = invoke(tiny_package, "-i", src, "-o", out, "--text-column", "review", "--chunk-size", "3")
    assert res.exit_code == 0, res.output
    assert_same(read_jsonl(out), expected(clf, texts))
    table = tmp_path / "out.parquet"
    res = invoke(tiny_package, "-i", src, "-o", table, "--text-column", "review", "--top-k", "2")
    assert res.exit_code == 0, res.output
    rows = pq.read_table(table).to_pylist()
    assert_same(rows, expected(clf, texts, top_k=2))
    assert [len(r["top_k"]) for r in rows] == [2] * len(texts)
    assert not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob("*.tmp"))
    res = invoke(tiny_package, "-i", src, "-o", out)  # no "text" column
    assert res.exit_code == 1 and "has no column 'text' (columns: id, review)" in " ".join(res.output.split())
    pq.write_table(pa.table({"text": ["good", None]}), src)
    res = invoke(tiny_package, "-i", src, "-o", out)
    assert res.exit_code == 1 and "row 2: text is null" in " ".join(res.output.split())


def test_an_interrupted_run_resumes_after_its_last_whole_line(tiny_package, clf, tmp_path, monkeypatch):
    texts = [f"{t} {i}" for i in range(6) for t in TEXTS]  # 42 texts, 5 chunks of 10
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    calls: list[int] = []
    real = TextClassifier.predict

    def stopping(self, chunk, *a, **k):  # Ctrl+C during the third chunk
        calls.append(len(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, chunk, *a, **k)

    monkeypatch.setattr(TextClassifier, "predict", stopping)
    res = invoke(tiny_package, "-i", src, "-o", out, "--chunk-size", "10")
    assert res.exit_code == 130 and "20 predictions kept" in res.output
    assert not out.exists() and len(read_jsonl(partial)) == 20
    with open(partial, "ab") as f:  # a torn last line (the process died mid-write) is cut off
        f.write(b'{"label": "pos')
    calls.clear()
    monkeypatch.setattr(TextClassifier, "predict", lambda self, chunk, *a, **k: calls.append(len(chunk))
                        or real(self, chunk, *a, **k))
    res = invoke(tiny_package, "-i", src, "-o", out, "--chunk-size", "10")
    assert res.exit_code == 0, res.output
    assert "resuming: 20 texts" in res.output and calls == [10, 10, 2]  # only the 22 texts left
    assert_same(read_jsonl(out), expected(clf, texts))
    assert not partial.exists() and not (tmp_path / "out.jsonl.partial.json").exists()


def test_a_partial_output_of_another_input_or_option_is_started_over(tiny_package, clf, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n")
    out = tmp_path / "out.jsonl"
    partial = tmp_path / "out.jsonl.partial"
    partial.write_text('{"label": "x", "score": 1.0}\n')
    (tmp_path / "out.jsonl.partial.json").write_text(json.dumps({"input": "elsewhere"}))
    res = invoke(tiny_package, "-i", src, "-o", out)
    assert res.exit_code == 0 and "resuming" not in res.output
    assert_same(read_jsonl(out), expected(clf, ["good", "bad"]))


@pytest.mark.parametrize("content, suffix, match", [
    ('{"text": "good"}\n{"text": null}\n', ".jsonl", "line 2: text is null"),
    ('{"text": "good"}\n\n', ".jsonl", "line 2: is blank"),
    ('{"text": "good"}\n{"text": "ba\n', ".jsonl", "line 2: is not valid JSON"),
    ('{"body": "good"}\n', ".jsonl", "has no field 'text'"),
    ("id,body\n1,good\n", ".csv", "has no column 'text' .*columns: id, body"),
    ("id,text\n1\n", ".csv", "line 2: row has 1 fields"),
    ("good\n", ".docx", "unknown file type '.docx'"),
])
def test_bad_input_files_are_one_line_errors(tiny_package, tmp_path, content, suffix, match):
    src = tmp_path / f"in{suffix}"
    src.write_text(content)
    out = tmp_path / "out.jsonl"
    res = invoke(tiny_package, "--input", src, "--output", out)
    assert res.exit_code == 1
    assert "error:" in res.output and "Traceback" not in res.output
    import re

    assert re.search(match, " ".join(res.output.split())), res.output
    assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()


def test_a_file_in_the_wrong_encoding(tiny_package, tmp_path):
    src = tmp_path / "latin.txt"
    src.write_bytes("très bien\n".encode("latin-1"))
    res = invoke(tiny_package, "--input", src)
    assert res.exit_code == 1 and "pass --encoding" in res.output
    res = invoke(tiny_package, "--input", src, "--encoding", "latin-1")
    assert res.exit_code == 0, res.output


def test_a_tampered_package_is_a_one_line_error(tiny_package, tmp_path):
    pkg = Path(shutil.copytree(tiny_package, tmp_path / "pkg"))
    (pkg / "config.json").write_text((pkg / "config.json").read_text().replace("positive", "POSITIVE"))
    res = invoke(pkg, "good")
    assert res.exit_code == 1
    assert "config.json: sha256" in " ".join(res.output.split()) and "Traceback" not in res.output


def test_a_missing_provider_is_a_one_line_error(tiny_package):
    res = invoke(tiny_package, "good", "--provider", "NoSuchExecutionProvider")
    assert res.exit_code == 1 and "NoSuchExecutionProvider" in res.output
    assert invoke(tiny_package, "good", "--provider", "NoSuchExecutionProvider", "--fallback").exit_code == 0


@pytest.mark.parametrize("args", [[], ["good", "--input", "x.txt"], ["good", "--text-column", "t"]])
def test_flag_combinations(tiny_package, args):
    res = invoke(tiny_package, *args)
    assert res.exit_code == 2


def test_predict_does_not_import_torch(tiny_package, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("good\nbad\n")
    out = tmp_path / "out.jsonl"
    code = textwrap.dedent(f"""
        import sys
        from edgedistill.compress.cli import app
        try:
            app(["predict", {str(tiny_package)!r}, "--input", {str(src)!r}, "--output", {str(out)!r}],
                standalone_mode=False)
        finally:
            heavy = sorted(m for m in ("torch", "transformers", "optimum", "datasets") if m in sys.modules)
            print("HEAVY=" + ",".join(heavy))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stderr
    assert "HEAVY=\n" in res.stdout, res.stdout
    assert len(read_jsonl(out)) == 2
