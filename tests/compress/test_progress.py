"""Progress bars: drawn by Rich only on an attached console, one log line otherwise; Trainer's tqdm replaced."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from edgedistill.compress import progress


def _console() -> Console:
    return Console(file=io.StringIO(), width=120)  # not a terminal: each display is printed once, when it ends


def test_a_bar_without_a_console_draws_nothing_and_logs_one_line(caplog, capsys):
    with caplog.at_level(logging.DEBUG, logger="edgedistill.compress.progress"):
        with progress.bar("evaluating", 10) as b:
            b.advance(4)
            b.advance(10)  # never past the total
        assert b.completed == 10
        with progress.bar("timed", 10, enabled=False) as quiet:
            quiet.advance(10)
    printed = capsys.readouterr()
    assert "━" not in printed.out + printed.err  # no bar (a CLI test may have left a log handler on stderr)
    lines = [r.getMessage() for r in caplog.records if r.name == "edgedistill.compress.progress"]
    assert len(lines) == 1 and lines[0].startswith("evaluating: 10 examples in")


def test_bars_on_a_console_share_one_display_and_show_examples_per_second():
    console = _console()
    with progress.attached(console):
        with progress.bar("training", 100) as outer:
            outer.advance(50)
            with progress.bar("validating", 20, transient=True) as inner:  # joins the display on screen
                inner.advance(20)
            assert console.file.getvalue() == ""  # still on screen
            outer.advance(50)
            outer.note("best 0.9")
    out = console.file.getvalue()
    assert "training" in out and "100/100 examples" in out and "examples/s" in out and "best 0.9" in out
    assert "validating" not in out  # a transient bar leaves nothing behind
    assert progress._live is None and progress._console is None
    with progress.bar("after", 5) as b:  # detached again: nothing drawn
        b.advance(5)
    assert console.file.getvalue() == out


def test_training_draws_a_bar_in_examples_and_logs_what_trainer_printed(tmp_path, tiny_model_dir, caplog, capsys):
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)
    from transformers.trainer_callback import ProgressCallback

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["a good film", "a dull plot", "great acting and a fun story", "boring", "fine", "cold and flat",
             "really smart", "weak ending", "warm", "tedious"]
    rows = [{**tok(t, truncation=True), "labels": i % 2} for i, t in enumerate(texts)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4,
                             num_train_epochs=2, logging_steps=2, eval_strategy="epoch", save_strategy="no",
                             report_to=[], use_cpu=True, disable_tqdm=False)  # Trainer's own tqdm bar, asked for
    trainer = Trainer(model=AutoModelForSequenceClassification.from_pretrained(tiny_model_dir), args=args,
                      train_dataset=rows, eval_dataset=rows[:6], data_collator=DataCollatorWithPadding(tok))
    console = _console()
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="edgedistill.compress.progress"), progress.attached(console):
        with progress.training(trainer, "training"):
            assert not any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks)
            trainer.train()
    out = console.file.getvalue()
    assert "training" in out and "20/20 examples" in out and "examples/s" in out  # 10 rows, 2 epochs
    assert "validating" not in out
    printed = capsys.readouterr()
    assert "it/s" not in printed.err and "{'loss'" not in printed.out
    logged = [r.getMessage() for r in caplog.records if r.name == "edgedistill.compress.progress"]
    assert any(m.startswith("training, step 2 of 6: loss") for m in logged)
    assert any("eval_loss" in m for m in logged)
