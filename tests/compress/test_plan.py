"""The planned build: the planner on made-up data shapes with fixed speeds (no timing), the floor per class, the
too-short budget, the recipe layer, a rebuild that reuses its saved plan, and the --time-budget flag."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgedistill.compress.cli import app
from edgedistill.compress.data import SUBSET_FLOOR, subset_sizes
from edgedistill.compress.errors import ConfigError, PlanError
from edgedistill.compress.plan.planner import BASELINE_FIT_SECONDS, BASELINE_PARITY_SECONDS, FIXED_SECONDS, plan
from edgedistill.compress.plan.shapes import (DataShape, PlanConfig, Settings, StageSettings, format_duration,
                                             parse_duration)
from edgedistill.compress.plan.probe import STATIC, ModelSpeed, Rate, Speeds
from edgedistill.compress.recipe import recipe_from_dict

runner = CliRunner()

# about MPNet-base and MiniLM-L6 on 2 CPU cores: seconds per text = per_text + per_token x tokens
TEACHER = ModelSpeed(train=Rate(0.01, 0.003), infer=Rate(0.002, 0.0008), layers=12)
MINILM = ModelSpeed(train=Rate(0.002, 0.0006), infer=Rate(0.0005, 0.0001), layers=6)


def speeds(**students: ModelSpeed) -> Speeds:
    return Speeds(TEACHER, {"recipe": MINILM, **students}, max_length=512)


def settings(rungs=(), **stage) -> Settings:
    return Settings(StageSettings(epochs=2.0, **stage), StageSettings(epochs=3.0), rungs=tuple(rungs))


def shape(counts: dict[str, int], length: int = 24, n_lengths: int = 200) -> DataShape:
    n = sum(counts.values())
    return DataShape(counts, validation=n // 7, test=n // 4,
                     lengths=tuple(length // 2 + i % length for i in range(n_lengths)))


def balanced(classes: int, each: int) -> dict[str, int]:
    return {f"c{i:02d}": each for i in range(classes)}


def cost(p) -> float:
    return sum(s.seconds for s in p.stages)


# ------------------------------------------------------------------------------------------------ durations
@pytest.mark.parametrize("text, seconds", [("90s", 90), ("45m", 2700), ("2h", 7200), ("1h30m", 5400),
                                           ("1.5h", 5400), (" 20M ", 1200)])
def test_a_budget_reads_as_a_duration(text, seconds):
    assert parse_duration(text) == seconds
    assert PlanConfig(time_budget=text).budget_seconds == seconds


@pytest.mark.parametrize("bad", ["45", "m", "1x", "0m", "", "1m30", "-5m"])
def test_a_bad_budget_names_the_field(bad):
    with pytest.raises(ConfigError) as e:
        PlanConfig(time_budget=bad)
    assert e.value.field == "plan.time_budget" and "45m" in e.value.why


def test_durations_print_as_a_budget_is_written():
    assert [format_duration(s) for s in (0.2, 45, 60, 61, 3600, 5400, 7260)] == \
        ["1s", "45s", "1m", "2m", "1h00m", "1h30m", "2h01m"]
    assert parse_duration(format_duration(5400)) == 5400


# ------------------------------------------------------------------------------------------------ the planner
def test_without_a_budget_the_plan_takes_all_of_the_data_and_says_how_long():
    s = shape(balanced(2, 3000))
    p = plan(PlanConfig(), s, speeds(), settings())
    # only the token limit is planned: texts, epochs and rungs stay the full profile's (all of the data)
    assert p.values == {"teacher": {"max_length": 40}, "distill": {"max_length": 40}}
    assert p.left_out == [] and p.budget_s is None
    assert [st.name for st in p.stages] == ["teacher", "student", "export", "quantize", "targets", "package",
                                            "baseline", "ship", "report"]
    assert p.total_s == pytest.approx(cost(p)) and p.total_s > 0
    # the time model, by hand: 6,000 texts x 2 epochs of steps, 2 validations an epoch, the test split, at the
    # texts' mean length, and the fixed cost
    teacher = next(st for st in p.stages if st.name == "teacher")
    tokens = s.mean_tokens(40)
    assert teacher.seconds == pytest.approx(TEACHER.train.seconds(6000 * 2, tokens)
                                            + TEACHER.infer.seconds(857 * 4 + 1500, tokens) + FIXED_SECONDS["teacher"]
                                            + BASELINE_FIT_SECONDS * 6000)  # the check's baseline
    baseline = next(st for st in p.stages if st.name == "baseline")  # grows with the data: 26k tweets took minutes
    assert baseline.seconds == pytest.approx(FIXED_SECONDS["baseline"] + BASELINE_FIT_SECONDS * 6000
                                             + BASELINE_PARITY_SECONDS * 857)
    assert p.shape["token_limit"] == 40 and p.shape["classes"] == 2


def test_the_token_limit_follows_the_texts_and_stops_at_the_models_limit():
    short = plan(PlanConfig(), shape(balanced(4, 500), length=24), speeds(), settings())
    long = plan(PlanConfig(), shape(balanced(4, 500), length=1800), speeds(), settings())
    assert short.values["teacher"]["max_length"] == 40  # p99 of 12..35 tokens, up to a multiple of 8
    assert long.values["teacher"]["max_length"] == long.values["distill"]["max_length"] == 512
    assert any("longer than 512 tokens" in item for item in long.left_out)
    assert long.total_s > 5 * short.total_s  # long texts cost per token
    lower = plan(PlanConfig(length_percentile=50), shape(balanced(4, 500), length=24), speeds(), settings())
    assert lower.values["teacher"]["max_length"] == 24


def test_a_short_budget_drops_rungs_then_epochs_then_texts_and_fits():
    s = shape(balanced(3, 4000))
    both = speeds(static=STATIC, **{"drop-layers:3": MINILM})
    ladder = settings(["static", "drop-layers:3"])
    full = plan(PlanConfig(), s, both, ladder)
    without = plan(PlanConfig(), s, both, settings(["static"]))
    # 1) just short of everything: the costlier rung goes, nothing else
    p = plan(PlanConfig(time_budget=f"{without.total_s + 1:.0f}s"), s, both, ladder)
    assert p.values == {**without.values, "ladder": {"rungs": ["static"]}}
    assert p.left_out == ["ladder rungs that do not fit: drop-layers:3"]
    # 2) far shorter: every rung, then the epochs, then texts
    budget = full.total_s * 0.4
    p = plan(PlanConfig(time_budget=f"{budget:.0f}s"), s, both, ladder)
    assert cost(p) <= p.budget_s == round(budget)
    assert p.values["ladder"]["rungs"] == [] and p.values["teacher"]["epochs"] == p.values["distill"]["epochs"] == 1.0
    n = p.values["teacher"]["max_train_samples"]
    assert n < 12000 and p.values["distill"].get("max_train_samples", 12000) == min(12000, 5 * n)
    assert any(item.startswith("teacher: ") and "left out" in item for item in p.left_out)
    assert "teacher: 1 epoch instead of 2" in p.left_out
    # more time never plans fewer texts
    more = plan(PlanConfig(time_budget=f"{budget * 1.5:.0f}s"), s, both, ladder)
    assert more.values.get("teacher", {}).get("max_train_samples", 12000) > n


def test_many_classes_and_a_tiny_one_each_keep_their_floor():
    counts = {**balanced(48, 110), "rare": 3, "tiny": 1}
    s = shape(counts)
    full = plan(PlanConfig(), s, speeds(), settings())
    p = plan(PlanConfig(time_budget=f"{full.total_s * 0.3:.0f}s", min_teacher_texts=100), s, speeds(), settings())
    n = p.values["teacher"]["max_train_samples"]
    assert n < s.n_train
    kept = subset_sizes(counts, n)
    assert all(kept[c] >= min(count, SUBSET_FLOOR) for c, count in counts.items())  # every class, the floor on
    assert kept["rare"] == 3 and kept["tiny"] == 1
    assert any("kept whole by the floor per class" in item and "rare (3)" in item for item in p.left_out)
    assert cost(p) <= p.budget_s


def test_a_budget_too_short_for_the_smallest_plan_says_which_budget_would():
    s = shape(balanced(5, 2000))
    with pytest.raises(PlanError) as e:
        plan(PlanConfig(time_budget="30s"), s, speeds(), settings())
    message = str(e.value)
    assert "30s cannot hold the smallest plan" in message and "\n" not in message
    suggested = message.split("--time-budget ")[1].split()[0]
    assert parse_duration(suggested) >= e.value.needed_s
    p = plan(PlanConfig(time_budget=suggested), s, speeds(), settings())  # the suggestion holds it
    assert cost(p) <= parse_duration(suggested)


def test_what_the_recipe_states_the_plan_keeps():
    s = shape(balanced(2, 5000))
    fixed = Settings(StageSettings(epochs=3.0, epochs_fixed=True, max_length=96), StageSettings(epochs=3.0),
                     rungs=())
    full = plan(PlanConfig(), s, speeds(), fixed)
    p = plan(PlanConfig(time_budget=f"{full.total_s * 0.5:.0f}s"), s, speeds(), fixed)
    assert "epochs" not in p.values["teacher"] and "max_length" not in p.values["teacher"]
    assert p.values["distill"]["max_length"] == 40 and p.values["teacher"]["max_train_samples"] < 10000
    assert "3 epochs" in next(st.what for st in p.stages if st.name == "teacher")


def test_a_short_budget_reads_fewer_tokens_of_long_texts_before_it_leaves_texts_out():
    s = shape(balanced(5, 300), length=1200)  # articles: 600 to 1,800 tokens, all cut at the models' 512
    full = plan(PlanConfig(), s, speeds(), settings())
    assert full.values["export"] == {"max_length": 512}  # inference reads what the student trained on
    # what the build costs at one epoch each (a budget gives up the epochs before the tokens) and n tokens
    # (the recipe states how its student reads a long text: no view rungs, test_long_texts_add_the_other_modes...)
    at = {n: plan(PlanConfig(), s, speeds(), Settings(StageSettings(epochs=1.0, max_length=n),
                                                      StageSettings(epochs=1.0, max_length=n),
                                                      long_texts="truncate")).total_s
          for n in (128, 256)}
    p = plan(PlanConfig(time_budget=f"{(at[128] + at[256]) / 2:.0f}s"), s, speeds(),
             replace(settings(), long_texts="truncate"))
    limit = p.values["distill"]["max_length"]
    assert 128 <= limit < 256 and p.values["teacher"]["max_length"] == limit == p.shape["token_limit"]
    assert p.values["export"] == {"max_length": limit}
    assert "max_train_samples" not in p.values["teacher"]  # every text is kept: tokens went first
    assert f"token limit {limit} instead of 512 (where the recipe leaves it open)" in p.left_out
    assert cost(p) <= p.budget_s
    # below the floor (128 tokens) texts are left out, and the smallest plan reads 128 tokens
    with pytest.raises(PlanError, match="at up to 128 tokens") as e:
        plan(PlanConfig(time_budget="60s"), s, speeds(), settings())
    p = plan(PlanConfig(time_budget=f"{(e.value.needed_s + at[128]) / 2:.0f}s"), s, speeds(),
             replace(settings(), long_texts="truncate"))
    assert p.values["teacher"]["max_length"] == 128 and p.values["teacher"]["max_train_samples"] < 1500
    # short texts: the limit is theirs, and the export keeps its default
    assert "export" not in plan(PlanConfig(), shape(balanced(2, 300)), speeds(), settings()).values


def test_the_student_reads_no_more_tokens_than_the_recipes_export():
    s = shape(balanced(5, 300), length=1200)
    p = plan(PlanConfig(), s, speeds(), replace(settings(), export_max_length=256))
    assert p.values["distill"]["max_length"] == 256 and p.values["teacher"]["max_length"] == 512
    assert "export" not in p.values  # the recipe's limit stands


def test_long_texts_add_the_other_modes_as_rungs_that_ship_on_validation():
    s = shape(balanced(5, 300), length=600)  # 300 to 900 tokens: every text is cut at 256
    long = replace(settings(), export_max_length=256)
    p = plan(PlanConfig(), s, speeds(), long)
    assert p.values["ladder"] == {"rungs": ["view:head+tail", "view:chunks"]}
    assert "view:chunks (the student reading long texts as chunks)" in next(st.what for st in p.stages
                                                                          if st.name == "ladder")
    # chunks pays for its windows: a rung reading 2 windows a text costs more than one reading one
    one = {r: plan(PlanConfig(), s, speeds(), replace(long, rungs=(r,), long_texts="truncate")).stages[-1].seconds
           for r in ("view:head+tail", "view:chunks")}
    windows, _ = s.windows(256)
    assert 2 < windows < 3 and one["view:chunks"] > 1.4 * one["view:head+tail"]
    # a budget that holds head+tail but not chunks says so
    base = plan(PlanConfig(), s, speeds(), replace(long, long_texts="truncate")).total_s
    p = plan(PlanConfig(time_budget=f"{base + one['view:head+tail'] * 1.5:.0f}s"), s, speeds(), long)
    assert p.values["ladder"] == {"rungs": ["view:head+tail"]} and cost(p) <= p.budget_s
    assert "long-text modes the budget cannot hold: chunks (the student reads truncate)" in p.left_out
    # no view where the recipe states the mode, where the student is static, or where few texts are cut
    for quiet in (replace(long, long_texts="chunks"), replace(long, static_student=True)):
        assert "ladder" not in plan(PlanConfig(), s, speeds(), quiet).values
    assert "ladder" not in plan(PlanConfig(), shape(balanced(5, 300), length=150), speeds(), long).values
    assert "ladder" not in plan(PlanConfig(long_text_share=1.0), shape(balanced(5, 300), length=400), speeds(),
                                long).values  # 200 to 600 tokens: most, not all, are cut at 256


def test_under_a_budget_long_text_modes_come_before_tokens_beyond_the_floor():
    s = shape(balanced(5, 300), length=1200)  # articles: 600 to 1,800 tokens
    at_floor = plan(PlanConfig(), s, speeds(), Settings(StageSettings(epochs=1.0, max_length=128),
                                                        StageSettings(epochs=1.0, max_length=128))).total_s
    budget = PlanConfig(time_budget=f"{at_floor * 1.05:.0f}s")
    p = plan(budget, s, speeds(), settings())
    assert p.values["ladder"] == {"rungs": ["view:head+tail", "view:chunks"]} and cost(p) <= p.budget_s
    assert 128 <= p.values["distill"]["max_length"] < 200 and "max_train_samples" not in p.values["teacher"]
    # the same budget, the mode stated: the tokens get it instead
    stated = plan(budget, s, speeds(), replace(settings(), long_texts="truncate"))
    assert stated.values["distill"]["max_length"] > 2 * p.values["distill"]["max_length"]


@pytest.mark.parametrize("limit", [16, 128, 256])
def test_the_planners_windows_are_the_runtimes(limit):
    from edgedistill.runtime.views import chunks

    lengths = (3, limit - 1, limit, limit + 1, 2 * limit, 421, 1000, 5000)
    windows = [chunks(list(range(n)), limit) for n in lengths]
    expected = (sum(map(len, windows)) / len(lengths), sum(len(w) for ws in windows for w in ws)
                / sum(map(len, windows)))
    assert DataShape({"a": 1}, 1, 1, lengths).windows(limit) == pytest.approx(expected)


def test_a_plan_round_trips_through_json():
    p = plan(PlanConfig(time_budget="2h"), shape(balanced(3, 300)), speeds(), settings())
    from edgedistill.compress.plan import Plan

    again = Plan.from_dict(json.loads(json.dumps(p.as_dict())))
    assert again.values == p.values and again.total_s == pytest.approx(p.total_s) and again.left_out == p.left_out


# ------------------------------------------------------------------------------------------------ the recipe
def test_planned_values_go_through_the_recipe_layer(tmp_path):
    raw = {"name": "x", "data": {"source": "sms-spam"}, "teacher": {"epochs": 3.0}}
    r = recipe_from_dict(raw, profile="planned", build_root=tmp_path)
    assert r.build_dir == tmp_path / "x-planned"
    planned = r.with_plan({"teacher": {"max_length": 48, "max_train_samples": 900, "epochs": 1.0},
                           "distill": {"max_length": 48}, "ladder": {"rungs": []}})
    t = planned.teacher().resolved()
    assert (t.max_length, t.data.max_train_samples, t.epochs) == (48, 900, 3.0)  # the recipe's epochs win
    from edgedistill.compress import teacher as teacher_mod
    assert t.learning_rate == teacher_mod.PROFILES["full"]["learning_rate"]  # the rest: the full table
    assert planned.distill().resolved().max_length == 48 and planned.data().max_train_samples is None
    assert planned.as_dict()["planned"]["teacher"]["max_length"] == 48 and "plan" not in planned.as_dict()
    # a manifest's recipe (as_dict) loads back with its plan (edgedistill update rebuilds with the same values)
    back = recipe_from_dict(planned.as_dict(), profile="planned", build_root=tmp_path)
    assert back.teacher().resolved().data.max_train_samples == 900
    with pytest.raises(ConfigError, match="planned.teacher.alpha"):
        r.with_plan({"teacher": {"alpha": 0.5}})
    with pytest.raises(ConfigError, match="only a planned build"):
        recipe_from_dict({**raw, "planned": {"teacher": {"max_length": 48}}}, profile="quick", build_root=tmp_path)
    # a plan's export limit applies where the recipe states none
    assert planned.export().max_length == 128
    assert r.with_plan({"export": {"max_length": 384}}).export().max_length == 384
    stated = recipe_from_dict({**raw, "export": {"max_length": 256}}, profile="planned", build_root=tmp_path)
    assert stated.with_plan({"export": {"max_length": 384}}).export().max_length == 256
    with pytest.raises(ConfigError, match="planned.export.max_train_samples"):
        r.with_plan({"export": {"max_train_samples": 10}})
    # the budget is a recipe field, and changes no stage's config by itself
    budgeted = recipe_from_dict({**raw, "plan": {"time_budget": "45m"}}, profile="planned", build_root=tmp_path)
    assert budgeted.plan().budget_seconds == 2700 and budgeted.as_dict() == r.as_dict()


# ------------------------------------------------------------------------------------------------ a real build
def _tiny_planned(folder: Path, tiny_csv: Path, tiny_model_dir: Path, budget: str | None = None) -> Path:
    path = folder / "tiny.toml"
    path.write_text(f"""
name = "tiny"
[data]
source = "{tiny_csv}"
[teacher]
model = "{tiny_model_dir}"
batch_size = 16
[student]
builder = "drop-layers"
model = "{tiny_model_dir}"
layers = 1
[plan]
min_teacher_texts = 40
min_validation_texts = 10
{f'time_budget = "{budget}"' if budget else ''}
""")
    return path


def tiny_speeds(factor: float = 1.0) -> Speeds:
    return Speeds(ModelSpeed(Rate(0.5 * factor), Rate(0.05 * factor), 2),
                  {"recipe": ModelSpeed(Rate(0.1), Rate(0.01), 1)}, max_length=64)


def test_a_rebuild_reuses_its_saved_plan_and_keeps_every_fingerprint(tmp_path, tiny_csv, tiny_model_dir):
    from edgedistill.compress.layout import read_state
    from edgedistill.compress.pipeline import build
    from edgedistill.compress.plan import plan_build
    from edgedistill.compress.plan.build import read_plan
    from edgedistill.compress.recipe import load_recipe

    path = _tiny_planned(tmp_path, tiny_csv, tiny_model_dir, budget="5m")
    recipe, first = plan_build(load_recipe(path, default_profile="planned"), speeds=tiny_speeds())
    assert recipe.profile == "planned" and recipe.planned == first.values
    assert "max_train_samples" in first.values["teacher"]  # the budget cut the teacher's texts
    assert read_plan(recipe.build_dir)["plan"]["values"] == first.values
    build(recipe, until="teacher")
    state = read_state(recipe.build_dir)["stages"]["teacher"]
    cfg = state["components"]["config"]
    assert cfg["data"]["max_train_samples"] == first.values["teacher"]["max_train_samples"]
    assert cfg["max_length"] == first.values["teacher"]["max_length"] and cfg["profile"] == "planned"

    # measured again, the machine is twice as fast: a new plan would differ, the saved one is reused
    faster = tiny_speeds(0.5)
    base = load_recipe(path, default_profile="planned")
    again, second = plan_build(base, speeds=faster)
    assert second.values == first.values and again.planned == recipe.planned
    seen = {}
    build(again, until="teacher", on_stage=lambda stage, status, why: seen.setdefault(stage.name, status))
    assert seen == {"teacher": "skipped"}
    assert read_state(recipe.build_dir)["stages"]["teacher"] == state

    # a new budget is a new key: planned again (with the speeds given now)
    moved = load_recipe(path, default_profile="planned", overrides=["plan.time_budget=\"9m\""])
    _, third = plan_build(moved, speeds=faster)
    assert third.budget_s == 540 and read_plan(recipe.build_dir)["plan"]["budget_s"] == 540


def test_the_time_budget_flag_plans_and_a_short_one_fails_in_one_line(tmp_path, tiny_csv, tiny_model_dir, monkeypatch):
    from edgedistill.compress.plan import build as plan_module

    monkeypatch.setattr(plan_module, "measure_speeds", lambda recipe, tokenizer, *lengths: tiny_speeds())
    path = _tiny_planned(tmp_path, tiny_csv, tiny_model_dir)
    r = runner.invoke(app, ["build", str(path), "--time-budget", "5s"])
    assert r.exit_code == 1
    assert "error:" in r.output and "5s cannot hold the smallest plan" in r.output and "--time-budget" in r.output
    bad = runner.invoke(app, ["build", str(path), "--time-budget", "45"])
    assert bad.exit_code == 1 and "plan.time_budget" in bad.output
    fixed = runner.invoke(app, ["build", str(path), "--profile", "quick", "--time-budget", "45m"])
    assert fixed.exit_code == 1 and "--time-budget" in fixed.output and "quick profile is fixed" in fixed.output


def test_the_planned_build_prints_its_plan_before_training(tmp_path, tiny_csv, tiny_model_dir, monkeypatch):
    from edgedistill.compress.plan import build as plan_module

    monkeypatch.setattr(plan_module, "measure_speeds", lambda recipe, tokenizer, *lengths: tiny_speeds())
    path = _tiny_planned(tmp_path, tiny_csv, tiny_model_dir)
    r = runner.invoke(app, ["build", str(path), "--time-budget", "6m", "--until", "teacher"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert out.index("estimated finish") < out.index("teacher: fine-tune the teacher")
    assert "tiny: plan" in out and "left out:" in out and "plan against the stages' actual times" in out
    saved = json.loads((tmp_path / "tiny-planned" / "plan.json").read_text())
    assert saved["plan"]["budget_s"] == 360
    teacher = next(s["seconds"] for s in saved["plan"]["stages"] if s["name"] == "teacher")
    from edgedistill.compress.plan.shapes import format_duration as fd

    assert f"about {fd(teacher)} from now, up to the teacher stage" in out  # the finish counts what --until runs
    again = runner.invoke(app, ["build", str(path), "--time-budget", "6m", "--until", "teacher"])
    assert again.exit_code == 0 and "up to date, skipped" in again.output
    assert "about 1s from now" in again.output  # the teacher is built: nothing left to run up to it


def test_the_report_section_sets_the_estimate_beside_the_actual_time():
    from edgedistill.compress.plan.build import plan_markdown

    p = plan(PlanConfig(time_budget="2h"), shape(balanced(3, 300)), speeds(), settings())
    md = "\n".join(plan_markdown(p.as_dict(), {"teacher": 61.0, "student": 30.0}))
    assert "## Plan" in md and "| stage | planned | estimated | actual |" in md
    assert "| teacher |" in md and "| 2m |" in md and "budget 2h" in md and "Left out: nothing." in md


def test_the_probe_caches_each_measurement_per_machine_and_model(tiny_model_dir, monkeypatch):
    from edgedistill.compress.plan import probe

    first = probe.measure(str(tiny_model_dir), batch_size=4)
    assert first.layers == 2 and first.train.seconds(1, 32) > 0 and first.infer.seconds(1, 32) > 0

    def no_load(path):
        raise AssertionError("measured again")

    monkeypatch.setattr(probe, "_load", no_load)
    assert probe.measure(str(tiny_model_dir), batch_size=4) == first  # from the cache, nothing loaded
    with pytest.raises(AssertionError, match="measured again"):
        probe.measure(str(tiny_model_dir), batch_size=8)  # another batch size is another measurement


def test_a_rung_of_fewer_layers_runs_at_its_share_of_the_models_rate():
    from edgedistill.compress.plan.probe import student_speed
    from edgedistill.compress.student import StudentConfig

    half = student_speed(StudentConfig(builder="teacher-layers", layers=6), TEACHER, batch_size=32)
    assert half.train.per_token == pytest.approx(TEACHER.train.per_token / 2) and half.layers == 6
    assert student_speed(StudentConfig(builder="static", model="x"), TEACHER, batch_size=32) == STATIC
    assert Rate.fit({32: 0.1, 128: 0.4}) == Rate(pytest.approx(0.0), pytest.approx(0.3 / 96))
    assert Rate.fit({64: 0.2}) == Rate(0.0, pytest.approx(0.2 / 64))
    # long texts measured at 256 tokens too: the line through the two longest lengths (the short line understates)
    assert Rate.fit({16: 0.05, 64: 0.1, 256: 1.0}) == Rate(pytest.approx(0.0), pytest.approx(0.9 / 192))
    assert replace(Rate(1.0), per_token=0.5).seconds(2, 10) == 12.0


def test_a_budget_keeps_the_teacher_retries_it_can_hold_and_says_what_it_dropped():
    from dataclasses import replace

    s = shape(balanced(5, 400))
    retrying = replace(settings(), teacher_retries=1)
    free = plan(PlanConfig(), s, speeds(), retrying)
    assert "retries" not in free.values.get("teacher", {})  # no budget: the recipe's retries stand
    assert "a failed check retries" in next(st.what for st in free.stages if st.name == "teacher")
    tight = plan(PlanConfig(time_budget=f"{cost(free) * 1.05:.0f}s"), s, speeds(), retrying)
    assert tight.values["teacher"]["retries"] == 0
    assert any("retry of a failed check" in item and "cannot hold" in item for item in tight.left_out)
    roomy = plan(PlanConfig(time_budget=f"{cost(free) * 4:.0f}s"), s, speeds(), retrying)
    assert "retries" not in roomy.values.get("teacher", {})


@pytest.mark.slow
def test_a_planned_build_reports_its_plan_beside_the_actual_times(tmp_path, tiny_csv, tiny_model_dir, monkeypatch):
    from edgedistill.compress.plan import build as plan_module

    monkeypatch.setattr(plan_module, "measure_speeds", lambda recipe, tokenizer, *lengths: tiny_speeds())
    path = _tiny_planned(tmp_path, tiny_csv, tiny_model_dir)
    path.write_text(path.read_text() + """
[quantize]
calibration_samples = 16
latency_samples = 4
[report]
plot = false
latency_samples = 2
""")
    r = runner.invoke(app, ["build", str(path), "--time-budget", "10m"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "tiny-planned" / "report" / "report.json").read_text())
    assert report["profile"] == "planned" and report["plan"]["budget_s"] == 600  # what the zoo reads
    assert set(report["plan_actual"]) >= {"teacher", "student", "export", "quantize", "package"}
    md = (tmp_path / "tiny-planned" / "report" / "report.md").read_text()
    assert "## Plan" in md and "| stage | planned | estimated | actual |" in md
    manifest = json.loads((tmp_path / "tiny-planned" / "candidates" / "student" / "manifest.json").read_text())
    assert manifest["recipe"]["planned"] == report["plan"]["values"]  # an update rebuilds with the same values


def test_the_estimate_left_counts_what_is_built_unless_it_is_forced(tmp_path):
    from edgedistill.compress.pipeline import BuildLayout
    from edgedistill.compress.plan.build import remaining_seconds
    from edgedistill.compress.plan.shapes import Plan, StagePlan

    found = Plan({}, [StagePlan(n, n, s) for n, s in (("teacher", 600.0), ("student", 300.0), ("report", 30.0))],
                 [], None)
    assert remaining_seconds(found, tmp_path) == 930.0  # nothing built
    BuildLayout(tmp_path).state.write_text(json.dumps({"stages": {"teacher": {}, "student": {}}}))
    assert remaining_seconds(found, tmp_path) == 30.0
    assert remaining_seconds(found, tmp_path, force=("all",)) == 930.0
    assert remaining_seconds(found, tmp_path, force=("student",)) == 330.0  # a forced stage reruns what follows
    assert remaining_seconds(found, tmp_path, until="student") == 0.0


def test_epochs_follow_the_data_small_data_trains_more_epochs_and_a_budget_drops_them_first():
    small = shape(balanced(50, 75))  # 3,750 texts: 235 steps an epoch at 16 a step
    stages = Settings(StageSettings(epochs=2.0, batch_size=16), StageSettings(epochs=3.0, batch_size=32), rungs=())
    p = plan(PlanConfig(), small, speeds(), stages)
    # 1,000 steps: ceil(1000 / 235) = 5 epochs for the teacher; ceil(1000 / 118) = 9 for the student (cap 10)
    assert p.values["teacher"]["epochs"] == 5.0 and p.values["distill"]["epochs"] == 9.0
    capped = plan(PlanConfig(max_student_epochs=6), small, speeds(), stages)
    assert capped.values["distill"]["epochs"] == 6.0
    assert "5 epochs" in next(st.what for st in p.stages if st.name == "teacher")
    big = plan(PlanConfig(), shape(balanced(2, 20000)), speeds(), stages)  # 2,500 steps an epoch: the profile's
    assert "epochs" not in big.values["teacher"] and "epochs" not in big.values["distill"]
    stated = replace(stages, teacher=replace(stages.teacher, epochs_fixed=True))
    assert "epochs" not in plan(PlanConfig(), small, speeds(), stated).values["teacher"]  # the recipe's stand
    assert "epochs" not in plan(PlanConfig(min_steps=0), small, speeds(), stages).values.get("teacher", {})
    # a budget a little short of it all: the earned epochs go first, one at a time (the student's), texts stay
    tight = plan(PlanConfig(time_budget=f"{cost(p) * 0.9:.0f}s"), small, speeds(), stages)
    assert cost(tight) <= tight.budget_s
    assert "max_train_samples" not in tight.values["teacher"]
    assert 2.0 <= tight.values["teacher"].get("epochs", 2.0) <= 5.0
    assert 3.0 <= tight.values["distill"].get("epochs", 3.0) < 9.0 or tight.values["teacher"].get("epochs", 2.0) < 5.0
