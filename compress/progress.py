"""Progress of the toolchain's long loops (training, the teacher's labelling, evaluation), in examples.

Library code reports progress here and never draws anything itself::

    with progress.bar("evaluating", total=len(texts)) as b:
        for idx, batch in length_batches(tokenizer, texts, max_length, batch_size):
            ...
            b.advance(len(idx))

    with progress.training(trainer, "training"):
        trainer.train()

Bars are drawn by Rich (examples per second, time left) only inside :func:`attached`, which the command
line enters with its console. Elsewhere (tests, library callers) a bar draws nothing and logs one DEBUG
line when it ends. One Rich live display runs at a time: a bar opened while another is open joins it.
Nothing here imports torch or transformers until a trainer is passed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

_console: Any = None
"""The Rich console bars are drawn on (None: no bars)."""
_live: Any = None
"""The rich.progress.Progress on screen, shared by every open bar."""
_open = 0


@contextmanager
def attached(console: Any) -> Iterator[None]:
    """Draw bars on ``console`` (a ``rich.console.Console``) inside this block."""
    global _console
    before, _console = _console, console
    try:
        yield
    finally:
        _console = before


def _new_progress(console: Any) -> Any:
    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.table import Column
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            total = "?" if task.total is None else f"{task.total:,.0f}"
            return Text(f"{task.completed:,.0f}/{total} {task.fields['unit']}", style="progress.download")

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None and task.completed and task.elapsed:
                speed = task.completed / task.elapsed
            text = "" if speed is None else f"{speed:,.{1 if speed < 10 else 0}f} {task.fields['unit']}/s"
            return Text(text, style="progress.data.speed")

    return Progress(TextColumn("{task.description}", table_column=Column(width=12, no_wrap=True)),
                    BarColumn(bar_width=32), Count(), Rate(),
                    TimeRemainingColumn(compact=True, elapsed_when_finished=True), TextColumn("{task.fields[note]}"),
                    console=console)


class Bar:
    """One loop's progress. ``advance(n)`` as examples are done, ``note(text)`` for a word after the bar.

    Use it as a context manager (or call ``start()`` and ``close()``)."""

    def __init__(self, description: str, total: int | None, unit: str = "examples", *, transient: bool = False,
                 enabled: bool = True):
        self.description, self.total, self.unit = description, total, unit
        self.transient, self.enabled = transient, enabled
        self.completed = 0
        self._task: Any = None
        self._started: float | None = None
        self._closed = False

    def start(self) -> Bar:
        global _live, _open
        self._started = time.perf_counter()
        if self.enabled and _console is not None:
            if _live is None:
                _live = _new_progress(_console)
                _live.start()
            self._task = _live.add_task(self.description, total=self.total, unit=self.unit, note="")
            _open += 1
        return self

    def advance(self, n: int = 1) -> None:
        self.update(self.completed + n)

    def update(self, completed: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.completed = completed if self.total is None else min(completed, self.total)
        if self._task is not None:
            _live.update(self._task, completed=self.completed, total=self.total)

    def note(self, text: str) -> None:
        if self._task is not None:
            _live.update(self._task, note=text)

    def close(self) -> None:
        global _live, _open
        if self._closed or self._started is None:
            return
        self._closed = True
        if self.enabled:
            seconds = time.perf_counter() - self._started
            log.debug("%s: %d %s in %.1f s (%.1f %s/s)", self.description, self.completed, self.unit, seconds,
                      self.completed / max(seconds, 1e-9), self.unit)
        if self._task is not None:
            if self.transient:
                _live.remove_task(self._task)
            _open -= 1
            if _open == 0:
                _live.stop()
                _live = None

    def __enter__(self) -> Bar:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(description: str, total: int | None, unit: str = "examples", *, transient: bool = False,
        enabled: bool = True) -> Bar:
    """A :class:`Bar` to use in a ``with`` block; ``enabled=False`` gives one that does nothing at all (for loops
    that are timed, or too short to be worth a line)."""
    return Bar(description, total, unit, transient=transient, enabled=enabled)


# ------------------------------------------------------------------------------ trainers
@contextmanager
def training(trainer: Any, description: str = "training") -> Iterator[None]:
    """Show a ``transformers.Trainer``'s training as a bar in examples, its validations as a passing bar, and
    send its log records (loss, learning rate, validation metrics) to this module's logger at INFO, in place
    of the tqdm bar and the printed dicts that Trainer shows by itself."""
    from transformers.trainer import DEFAULT_PROGRESS_CALLBACK
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cls in {DEFAULT_PROGRESS_CALLBACK, ProgressCallback, PrinterCallback}:
        trainer.remove_callback(cls)
    callback = _trainer_callback(description)
    trainer.add_callback(callback)
    try:
        yield
    finally:
        callback.close()
        trainer.remove_callback(callback)


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


def _trainer_callback(description: str) -> Any:
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Bar | None = None
            self.validation: Bar | None = None

        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            if not state.is_world_process_zero:
                return
            examples = _length(getattr(train_dataloader, "dataset", None))
            if args.max_steps > 0 or not examples:  # a step budget: count the examples the steps take
                total = state.max_steps * args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            else:
                total = round(examples * args.num_train_epochs)
            self.bar = bar(description, total=total).start()

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None and state.max_steps:
                self.bar.update(round(self.bar.total * state.global_step / state.max_steps))

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            if self.bar is None:
                return
            if self.validation is None:
                total = _length(getattr(eval_dataloader, "dataset", None))
                self.validation = bar("  validating", total=total, transient=True).start()
            self.validation.advance(args.eval_batch_size)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if self.validation is not None:
                self.validation.close()
                self.validation = None
            key = f"eval_{args.metric_for_best_model}" if args.metric_for_best_model else None
            if self.bar is not None and metrics and key in metrics:
                self.bar.note(f"validation {args.metric_for_best_model} {metrics[key]:.4f}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_local_process_zero and logs:
                shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                  for k, v in logs.items() if k != "total_flos")
                log.info("%s, step %d of %d: %s", description, state.global_step, state.max_steps, shown)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                notes = []
                if state.global_step < state.max_steps:  # early stopping: the bar ends where training did
                    self.bar.update(self.bar.completed, total=self.bar.completed)
                    notes.append(f"stopped early at epoch {state.epoch or 0:.2f}")
                if state.best_metric is not None and args.metric_for_best_model:
                    notes.append(f"best validation {args.metric_for_best_model} {state.best_metric:.4f}")
                if notes:
                    self.bar.note(", ".join(notes))
            self.close()

        def close(self) -> None:
            for b in (self.validation, self.bar):
                if b is not None:
                    b.close()
            self.bar = self.validation = None

    return TrainingProgress()
