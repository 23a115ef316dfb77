"""benchmarks/many_datasets.py, the benchmark over many datasets, and the zoo's reading of its builds, on made-up
builds: no real build, no real data. The dataset statistics, the standard error of a macro-F1, one dataset's row
from a fake build report (a shipped student, a shipped baseline, a ladder's rung), the merge of rows run one dataset
at a time, the writers (markdown, JSON without absolute paths, a non-empty PNG) and the command line, a fake
`edgedistill build` standing in for the child process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgedistill.compress.data import LabelledData, Split
from edgedistill.compress.evaluate import compute_metrics

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, as_name: str):
    spec = importlib.util.spec_from_file_location(as_name, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[as_name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load("many_datasets", "many_datasets_benchmark")
zoo = _load("zoo", "zoo_benchmark")

LABELS = ["a", "b", "c"]


def split(labels: list[int], words: int = 3) -> Split:
    return Split([" ".join(["w"] * (words + i % 3)) + f" {i}" for i in range(len(labels))], labels)


def data(train: list[int], test: list[int]) -> LabelledData:
    return LabelledData("made-up", LABELS, split(train), split([0, 1]), split(test))


def whitespace_lengths(texts: list[str]) -> list[int]:
    return [len(t.split()) for t in texts]


# ------------------------------------------------------------------------------------------------ recipes
def test_every_builtin_dataset_has_a_recipe_and_the_default_list_is_theirs():
    from edgedistill.compress.recipe import load_recipe
    from edgedistill.compress.sources import CATALOG

    datasets = {n for n, s in CATALOG.items() if s.kind == "dataset"}
    recipes = {p.stem: load_recipe(p).tables["data"]["source"] for p in (REPO / "models").glob("*.toml")}
    assert datasets <= set(recipes.values()), datasets - set(recipes.values())
    default = bench.builtin_recipes()
    assert {recipes[n] for n in default} == datasets
    assert {"trec50", "sms-spam", "bbc-news", "trec-questions"} <= set(default)


def test_no_benchmark_script_shadows_an_importable_module():
    """A script's folder is first on sys.path: benchmarks/datasets.py would be imported as Hugging Face's datasets
    by every script there (transformers imports it), so no name in benchmarks/ may be a module's."""
    installed = set(importlib.metadata.packages_distributions()) | set(sys.stdlib_module_names)
    names = {p.stem for p in (REPO / "benchmarks").glob("*.py")} | {p.name for p in (REPO / "benchmarks").iterdir()
                                                                  if p.is_dir() and not p.name.startswith("_")}
    assert "many_datasets" in names and "datasets" in installed
    assert not names & installed, names & installed


# ------------------------------------------------------------------------------------------------ the dataset
def test_dataset_statistics_on_made_up_data():
    d = data(train=[0] * 12 + [1] * 3 + [2] * 30, test=[0, 0, 1, 2, 2, 2])
    stats = bench.dataset_stats(d, whitespace_lengths)
    # every split counts: a 12 + 1 + 2 = 15, b 3 + 1 + 1 = 5, c 30 + 0 + 3 = 33
    assert stats["texts"] == 45 + 2 + 6 and stats["test_texts"] == 6 and stats["train_texts"] == 45
    assert stats["classes"] == 3
    assert stats["smallest_class"] == ["b", 3 + 1 + 1] and stats["largest_class"] == ["c", 33]
    assert stats["classes_under_10"] == 1
    assert stats["imbalance"] == round(33 / 5, 1)
    lengths = whitespace_lengths([t for s in (d.train, d.validation, d.test) for t in s.texts])
    assert stats["median_tokens"] == float(np.median(lengths))


def test_median_tokens_are_the_teachers_untruncated(tmp_path, tiny_tokenizer_dir):
    from edgedistill.compress.recipe import recipe_from_dict

    recipe = recipe_from_dict({"name": "x", "data": {"source": "movie-snippets"},
                               "teacher": {"model": str(tiny_tokenizer_dir)}}, build_root=tmp_path)
    lengths = bench.teacher_token_lengths(recipe)
    long = " ".join(["good"] * 300)  # past the tokenizer's 64: counted whole
    assert lengths(["good film", long]) == [2 + 2, 300 + 2]  # [CLS] ... [SEP]


# ----------------------------------------------------------------------------------------- standard error
def test_macro_f1_of_a_confusion_matrix_is_the_toolchains():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    y[:5] = 3
    probs = rng.random((300, 4))
    probs[:, 3] = 0  # class 3 is never predicted: F1 0, counted
    m = compute_metrics(y, probs, list("wxyz"))
    assert bench.macro_f1s(np.asarray(m.confusion)) == pytest.approx(m.macro_f1, abs=1e-12)
    absent = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 0]])  # a class in neither the labels nor the predictions: 0
    assert bench.macro_f1s(absent) == pytest.approx((2 * 5 / 13 + 2 * 7 / 17 + 0) / 3)


def test_the_bootstrap_standard_error():
    confusion = [[40, 10], [15, 35]]
    se = bench.bootstrap_se(confusion)
    assert se == bench.bootstrap_se(confusion)  # seeded
    f1 = bench.macro_f1s(np.asarray(confusion))
    assert 0.5 * bench.binomial_se(f1, 100) < se < 2 * bench.binomial_se(f1, 100)
    assert bench.bootstrap_se(np.asarray(confusion) * 16) == pytest.approx(se / 4, rel=0.15)  # 1 / sqrt(n)
    assert bench.bootstrap_se([[30, 0], [0, 70]]) == 0.0  # every resample is perfect
    assert bench.binomial_se(0.9, 100) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="empty"):
        bench.bootstrap_se([[0, 0], [0, 0]])


# --------------------------------------------------------------------------------------- a fake build report
CONFUSION = [[80, 20], [10, 90]]  # macro-F1 0.8496...
F1 = float(bench.macro_f1s(np.asarray(CONFUSION)))
STATS = {"texts": 1000, "train_texts": 700, "test_texts": 200, "classes": 2, "smallest_class": ["spam", 100],
         "largest_class": ["ham", 900], "classes_under_10": 0, "imbalance": 9.0, "median_tokens": 19.0}


def fake_build(folder: Path, *, name: str = "made-up", shipped_f1: float = F1, baseline_f1: float = 0.80,
               teacher_val: float | None = 0.90, shipped_row: dict | None = None, metrics: bool = True) -> Path:
    """A build folder with what the benchmark reads: report/report.json (and package_metrics.json), the teacher's
    training.json."""
    rows = [{"model": "baseline TF-IDF + LR", "format": "scikit-learn", "macro_f1": baseline_f1, "n": 200,
             "shipped": False, "validation_macro_f1_by_C": {"0.5": 0.79, "2.0": 0.82}},
            {"model": "teacher", "format": "torch fp32", "macro_f1": 0.91, "n": 200, "shipped": False},
            {"model": "student", "format": "torch fp32", "macro_f1": 0.86, "n": 200, "shipped": False},
            {"model": "some row of a later version", "format": "?", "macro_f1": 0.5},
            shipped_row or {"model": "package (shipped)", "format": "int8-dynamic", "macro_f1": shipped_f1,
                            "n": 200, "shipped": True}]
    (folder / "report").mkdir(parents=True)
    (folder / "report" / "report.json").write_text(json.dumps(
        {"name": name, "profile": "quick", "rows": rows, "chosen": "int8-dynamic", "dataset": "made-up",
         "headline": {}}))
    if metrics:
        (folder / "report" / "package_metrics.json").write_text(json.dumps({"n": 200, "confusion": CONFUSION}))
    if teacher_val is not None:
        (folder / "teacher").mkdir()
        (folder / "teacher" / "training.json").write_text(json.dumps({"best_validation_macro_f1": teacher_val}))
    return folder


def test_a_row_from_a_fake_build_report(tmp_path):
    build = fake_build(tmp_path / "made-up")
    m2v = {"macro_f1": 0.82, "validation_macro_f1": 0.84}
    row = bench.dataset_row("made-up", "made-up", build, STATS, m2v=m2v, build_seconds=61.0, time_budget="45m")
    assert row["classes"] == 2 and row["smallest_class"] == ["spam", 100] and row["imbalance"] == 9.0
    assert (row["baseline_macro_f1"], row["baseline_validation_macro_f1"]) == (0.80, 0.82)
    assert (row["model2vec_macro_f1"], row["model2vec_validation_macro_f1"]) == (0.82, 0.84)
    assert (row["teacher_macro_f1"], row["teacher_validation_macro_f1"]) == (0.91, 0.90)
    assert row["shipped"] == {"kind": "student", "rung": None, "variant": "int8-dynamic", "model": "package (shipped)"}
    assert row["shipped_macro_f1"] == F1 and row["se_method"] == "bootstrap"
    assert row["shipped_se"] == bench.bootstrap_se(CONFUSION)
    assert (row["best_peer"], row["best_peer_macro_f1"]) == ("model2vec", 0.82)
    assert row["floor_met"] is True  # 0.8496 >= 0.82 - SE
    assert row["teacher_lead_validation"] == pytest.approx(0.90 - 0.84)
    assert row["lead_required"] is True and row["lead_met"] is True  # 0.8496 >= 0.82 + 0.02
    assert (row["build_seconds"], row["time_budget"]) == (61.0, "45m")

    no_peer = bench.dataset_row("made-up", "made-up", build, STATS, m2v=None, build_seconds=None, time_budget=None)
    assert no_peer["model2vec_macro_f1"] is None and no_peer["best_peer"] == "TF-IDF + LR"
    assert no_peer["teacher_lead_validation"] == pytest.approx(0.90 - 0.82)


def test_a_shipped_baseline_without_a_confusion_matrix_gets_the_binomial_error(tmp_path):
    shipped = {"model": "baseline TF-IDF + LR (package)", "format": "onnx tf-idf", "macro_f1": 0.8, "n": 400,
               "shipped": True}
    build = fake_build(tmp_path / "b", shipped_row=shipped, metrics=False, teacher_val=None)
    row = bench.dataset_row("b", "b", build, STATS, m2v=None, build_seconds=1.0, time_budget=None)
    assert row["shipped"]["kind"] == "baseline" and row["shipped"]["variant"] == "onnx tf-idf"
    assert row["baseline_macro_f1"] == 0.80  # the unshipped baseline row, not the shipped one
    assert row["se_method"] == "binomial" and row["shipped_se"] == pytest.approx(np.sqrt(0.8 * 0.2 / 400))
    assert row["floor_met"] is True and row["lead_required"] is None and row["lead_met"] is None


def test_a_confusion_matrix_of_another_model_is_not_used(tmp_path):
    build = fake_build(tmp_path / "c", shipped_f1=0.7)  # package_metrics.json scores 0.8496, not 0.7
    row = bench.dataset_row("c", "c", build, STATS, m2v=None, build_seconds=1.0, time_budget=None)
    assert row["se_method"] == "binomial" and row["floor_met"] is False


def test_a_ladders_chosen_rung_is_what_shipped_unless_the_ladder_is_older(tmp_path):
    build = fake_build(tmp_path / "l")
    rung = fake_build(build / "ladder" / "static", shipped_f1=F1, teacher_val=None)
    ladder = build / "ladder" / "ladder.json"
    ladder.write_text(json.dumps({"chosen": "static", "rungs": [
        {"name": "recipe (pretrained)", "spec": "recipe", "build_dir": str(build), "variant": "int8-dynamic",
         "test_macro_f1": F1},
        {"name": "static", "spec": "static", "build_dir": str(rung), "variant": "int8-static", "test_macro_f1": F1}]}))
    row = bench.dataset_row("l", "l", build, STATS, m2v=None, build_seconds=1.0, time_budget=None)
    assert row["shipped"] == {"kind": "rung", "rung": "static", "variant": "int8-static", "model": "package (shipped)"}
    assert row["shipped_macro_f1"] == F1 and row["se_method"] == "bootstrap"
    ladder.write_text(ladder.read_text().replace('"chosen": "static"', '"chosen": "recipe (pretrained)"'))
    assert bench.dataset_row("l", "l", build, STATS, m2v=None, build_seconds=1.0,
                             time_budget=None)["shipped"]["kind"] == "student"  # the recipe's own rung
    ladder.write_text(ladder.read_text().replace('"chosen": "recipe (pretrained)"', '"chosen": "static"'))
    old = time.time() - 3600  # a ladder table from an earlier build: this one shipped its own student
    os.utime(ladder, (old, old))
    assert bench.dataset_row("l", "l", build, STATS, m2v=None, build_seconds=1.0,
                             time_budget=None)["shipped"]["kind"] == "student"


@pytest.mark.parametrize(("shipped", "se", "teacher_val", "floor", "required", "lead"), [
    (0.80, 0.015, 0.90, True, True, False),   # 0.80 >= 0.81 - 0.015, but not 0.81 + 0.02
    (0.79, 0.01, 0.83, False, False, None),   # below the floor; the teacher leads by 2 points only
    (0.84, 0.01, 0.85, True, True, True),
    (0.84, None, None, None, None, None),     # no SE, no teacher validation figure: nothing is claimed
])
def test_the_two_checks(shipped, se, teacher_val, floor, required, lead):
    row = {"baseline_macro_f1": 0.81, "baseline_validation_macro_f1": 0.80, "model2vec_macro_f1": 0.78,
           "model2vec_validation_macro_f1": 0.81, "shipped_macro_f1": shipped, "shipped_se": se,
           "teacher_validation_macro_f1": teacher_val}
    v = bench.verdicts(row)
    assert (v["best_peer"], v["best_peer_macro_f1"]) == ("TF-IDF + LR", 0.81)
    assert (v["floor_met"], v["lead_required"], v["lead_met"]) == (floor, required, lead)
    assert bench.verdicts({"shipped_macro_f1": 0.9, "shipped_se": 0.01})["floor_met"] is None  # no peer at all


# ---------------------------------------------------------------------------------------- merge and writers
def test_rows_merge_by_recipe_in_place_or_after():
    a, b, c = ({"recipe": n, "v": 1} for n in "abc")
    assert bench.merge_rows([a, b], [{"recipe": "a", "v": 2}, c]) == [{"recipe": "a", "v": 2}, b, c]
    assert bench.merge_rows([], [b]) == [b]


def full_row(recipe: str, build: Path, **extra) -> dict:
    row = bench.dataset_row(recipe, recipe, build, STATS, m2v={"macro_f1": 0.82, "validation_macro_f1": 0.84},
                            build_seconds=754.2, time_budget="45m")
    return {**row, "command": f"python benchmarks/many_datasets.py --recipe {recipe}", "notes": [], **extra}


def test_the_writers_merge_into_json_and_write_markdown_and_a_png(tmp_path):
    env = {"cpu": "Made-up CPU", "available_cpus": 2, "isa": "avx2"}
    build = fake_build(tmp_path / "x")
    out = tmp_path / "results" / "cpu-x86_64"
    bench.write_results(out, [full_row("one", build), full_row("two", build)], env, "first run")
    failed = {"recipe": "three", "dataset": "three", "classes": 50, "build_error": "exit code 1",
              "build_seconds": 12.0, "time_budget": "45m", "command": "c3", "notes": ["the teacher collapsed"]}
    result = bench.write_results(out, [full_row("two", build, shipped_macro_f1=0.5), failed], env, "second run")
    saved = json.loads((out / "datasets.json").read_text())
    assert saved == result and [r["recipe"] for r in saved["rows"]] == ["one", "two", "three"]
    assert saved["rows"][1]["shipped_macro_f1"] == 0.5 and saved["command"] == "second run"
    md = (out / "datasets.md").read_text()
    assert "Written by `second run`" in md
    assert md.count("\n| ") == 1 + 3  # header + one line per dataset
    one = next(line for line in md.splitlines() if line.startswith("| one |"))
    assert "| 100 (spam) | 9.0:1 | 19 | 0.8000 | 0.8200 | 0.9100 | student (int8-dynamic) |" in one
    assert f"**{F1:.4f}** ± {bench.bootstrap_se(CONFUSION):.4f} | yes | yes | 12 min 34 s | 45m |" in one
    assert ("least the best cheap peer less one SE on 2 of 2 datasets with a peer; "
            "2 points above both on 2 of the 2") in md
    assert "build failed: exit code 1" in md and "- three: the teacher collapsed" in md
    assert "bootstrap" in md and "`c3`" in md
    png = (out / "datasets.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


# ---------------------------------------------------------------------------------------------- the command
def test_help_and_an_unknown_recipe(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--recipe" in out and "--time-budget" in out and "--skip-build" in out
    assert bench.main(["--recipe", "no-such-recipe"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown recipe 'no-such-recipe'") and "trec50" in err and "sms-spam" in err


def fake_cli(tmp_path: Path, help_text: str, code: int = 0, report: Path | None = None) -> list[str]:
    """A stand-in for `python -m edgedistill.compress.cli`: prints ``help_text`` for `build --help`; for a build, writes
    ``report`` into ``<models>/<name>-planned/report/`` and exits with ``code``."""
    script, args, source = tmp_path / "fake_edgedistill.py", str(tmp_path / "args.txt"), str(report or "")
    script.write_text(textwrap.dedent(f"""
        import shutil, sys
        from pathlib import Path
        args = sys.argv[1:]
        if "--help" in args:
            print({help_text!r})
            sys.exit(0)
        Path({args!r}).write_text(" ".join(args))
        recipe = Path(args[1])
        if {source!r}:
            out = recipe.parent / (recipe.stem + "-planned") / "report"
            out.mkdir(parents=True, exist_ok=True)
            shutil.copy({source!r}, out / "report.json")
        sys.exit({code})
    """))
    return [sys.executable, str(script)]


def test_the_time_budget_goes_only_to_a_build_that_takes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "CLI", fake_cli(tmp_path, "Usage: build [OPTIONS] --force --until --set"))
    assert not bench.build_takes("--time-budget")
    assert bench.main(["--recipe", "sms-spam", "--time-budget", "45m"]) == 1
    assert "no --time-budget" in capsys.readouterr().err
    monkeypatch.setattr(bench, "CLI", fake_cli(tmp_path, "Usage: build [OPTIONS] --time-budget TEXT"))
    assert bench.build_takes("--time-budget")
    assert bench.build_args(REPO / "models" / "sms-spam.toml", None) == ["build", "models/sms-spam.toml", "--force",
                                                                          "all"]
    assert bench.build_args(REPO / "models" / "sms-spam.toml", "45m")[-2:] == ["--time-budget", "45m"]


@pytest.fixture
def tiny_recipe(tmp_path, tiny_csv, tiny_tokenizer_dir) -> Path:
    """A recipe of the tiny CSV whose teacher is the tiny tokenizer (all the benchmark reads of it)."""
    models = tmp_path / "models"
    models.mkdir()
    path = models / "tiny.toml"
    path.write_text(f'name = "tiny"\n\n[data]\nsource = "{tiny_csv}"\n\n[teacher]\nmodel = "{tiny_tokenizer_dir}"\n')
    return path


def strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []


def test_one_dataset_built_by_a_child_process_end_to_end(tmp_path, tiny_recipe, monkeypatch, capsys):
    """The whole command on one recipe, `edgedistill build` faked: the build's arguments, its wall time, the report it
    wrote found under whatever profile folder, model2vec skipped with a note, the report copied beside the results,
    and no absolute path in what is committed."""
    report = fake_build(tmp_path / "made" / "tiny", name="tiny") / "report" / "report.json"
    stale = fake_build(tiny_recipe.parent / "tiny", name="tiny", shipped_f1=0.1)  # an older build, other profile
    old = time.time() - 3600
    os.utime(stale / "report" / "report.json", (old, old))
    monkeypatch.setattr(bench, "CLI", fake_cli(tmp_path, "--time-budget", report=report))
    out = tmp_path / "results"
    argv = ["--recipe", str(tiny_recipe), "--time-budget", "30m", "--output", str(out),
            "--model2vec-python", str(tmp_path / "none" / "python")]
    assert bench.main(argv) == 0
    args = (tmp_path / "args.txt").read_text().split()
    assert args[0] == "build" and args[2:] == ["--force", "all", "--time-budget", "30m"]
    assert (REPO / args[1]).resolve() == tiny_recipe.resolve() and not Path(args[1]).is_absolute()
    folder = next(out.iterdir())
    text = (folder / "datasets.json").read_text()
    (row,) = json.loads(text)["rows"]
    assert row["recipe"] == "tiny" and row["shipped_macro_f1"] == F1  # this build's report, not the stale one
    assert row["build"].endswith("models/tiny-planned") and row["build_seconds"] > 0 and row["time_budget"] == "30m"
    assert row["classes"] == 2 and row["texts"] == 240 and row["median_tokens"] > 2
    assert row["notes"] == ["model2vec: skipped (run `make peers` for .venv-model2vec)"]
    assert row["model2vec_macro_f1"] is None and row["best_peer"] == "TF-IDF + LR"
    assert row["build_command"].startswith("edgedistill build ") and row["build_command"].endswith(
        "tiny.toml --force all --time-budget 30m")
    assert (folder / row["report"].rsplit("/", 1)[1]).is_file() and row["report"].endswith("report-tiny-quick.json")
    assert not [s for s in strings(json.loads(text)) if os.path.isabs(s)]  # no absolute path in what is committed
    assert (folder / "datasets.md").is_file() and (folder / "datasets.png").stat().st_size > 0
    assert "| tiny |" in capsys.readouterr().out


def test_a_failed_build_is_a_row_and_exit_code_1(tmp_path, tiny_recipe, monkeypatch):
    monkeypatch.setattr(bench, "CLI", fake_cli(tmp_path, "--time-budget", code=3))
    out = tmp_path / "results"
    assert bench.main(["--recipe", str(tiny_recipe), "--output", str(out)]) == 1
    (row,) = json.loads(next(out.iterdir()).joinpath("datasets.json").read_text())["rows"]
    assert row["build_error"] == "exit code 3" and row["classes"] == 2 and row["time_budget"] is None


def test_a_build_that_writes_no_report_fails_its_row_and_skip_build_reads_the_one_there(tmp_path, tiny_recipe,
                                                                                      monkeypatch, capsys):
    monkeypatch.setattr(bench, "CLI", fake_cli(tmp_path, "--time-budget"))
    out = tmp_path / "r"
    assert bench.main(["--recipe", str(tiny_recipe), "--output", str(out)]) == 1
    (row,) = json.loads(next(out.iterdir()).joinpath("datasets.json").read_text())["rows"]
    assert row["build_error"].startswith("no report written under ")
    assert bench.main(["--recipe", str(tiny_recipe), "--output", str(out), "--skip-build"]) == 1
    assert "no build report" in capsys.readouterr().err
    fake_build(tiny_recipe.parent / "tiny", name="tiny")  # --skip-build reads the build already there
    assert bench.main(["--recipe", str(tiny_recipe), "--output", str(tmp_path / "r"), "--skip-build"]) == 0
    (row,) = json.loads(next((tmp_path / "r").iterdir()).joinpath("datasets.json").read_text())["rows"]
    assert row["build_seconds"] is None and "--skip-build" in row["notes"][0]
    # a build that kept its stage record: the row's time is the sum of its stages', the ladder's rungs included
    build = tiny_recipe.parent / "tiny"
    (build / ".state.json").write_text(json.dumps({"stages": {"teacher": {"seconds": 600}, "report": {"seconds": 60}}}))
    (build / "ladder" / "static").mkdir(parents=True)
    (build / "ladder" / "static" / ".state.json").write_text(json.dumps({"stages": {"student": {"seconds": 40}}}))
    assert bench.main(["--recipe", str(tiny_recipe), "--output", str(tmp_path / "s"), "--skip-build"]) == 0
    (row,) = json.loads(next((tmp_path / "s").iterdir()).joinpath("datasets.json").read_text())["rows"]
    assert row["build_seconds"] == 700 and "sum of the build's own stage times" in row["notes"][0]


def test_model2vec_row_skips_without_its_python_and_raises_when_the_peer_fails(tmp_path, tiny_recipe):
    from edgedistill.compress.data import load_data
    from edgedistill.compress.recipe import load_recipe

    recipe = load_recipe(tiny_recipe)
    d = load_data(recipe.data())
    assert bench.model2vec_row(recipe, d, tmp_path / "none" / "python") is None
    with pytest.raises(bench.PeerError, match="the model2vec peer failed"):  # this environment has no model2vec
        bench.model2vec_row(recipe, d, Path(sys.executable))


# ---------------------------------------------------------------------------------------------------- the zoo
def test_the_zoo_takes_a_planned_build_and_a_shipped_row_of_another_name(tmp_path):
    build = fake_build(tmp_path / "b", name="trec50", shipped_row={
        "model": "baseline TF-IDF + LR (package)", "format": "onnx", "macro_f1": 0.62, "n": 200, "shipped": True})
    path = build / "report" / "report.json"
    report = json.loads(path.read_text())
    path.write_text(json.dumps({**report, "profile": "planned", "plan": {"budget_s": 2700.0}}))
    rows = zoo.zoo_rows(build)
    assert [r["model"] for r in rows] == ["teacher", "baseline TF-IDF + LR", "student",
                                          "baseline TF-IDF + LR (package)"]
    assert [r["shipped"] for r in rows] == [False, False, False, True]
    assert rows[0]["command"] == "edgedistill build models/trec50.toml --time-budget 45m"
    md = zoo.to_markdown(rows, {"cpu": "x"})
    assert "**baseline TF-IDF + LR (package)**" in md and "**teacher**" not in md
    assert zoo.rebuild_command({"name": "m", "profile": "quick"}) == "make demo RECIPE=models/m.toml"
    assert zoo.rebuild_command({"name": "m", "profile": "full", "overrides": ["distill.epochs=3"]}) == \
        "edgedistill build models/m.toml --profile full --set distill.epochs=3"
    assert zoo.rebuild_command({"name": "m", "profile": "planned", "plan": {"budget_s": 90}}) == \
        "edgedistill build models/m.toml --time-budget 90s"
    # the build records --time-budget as its override too: the command names it once
    assert zoo.rebuild_command({"name": "m", "profile": "planned", "plan": {"budget_s": 2700.0},
                                "overrides": ['plan.time_budget="45m"', "distill.alpha=0.9"]}) == \
        "edgedistill build models/m.toml --time-budget 45m --set distill.alpha=0.9"
