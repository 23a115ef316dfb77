"""``edgedistill data show``: inspect labelled data."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, make_config, table

data_app = typer.Typer(help="Inspect labelled data: built-in datasets or your own files.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("show")
@command
def data_show(
    source: Annotated[str, typer.Argument(help="A built-in dataset name or a CSV / JSONL / Parquet file.")],
    text_column: Annotated[Optional[str], typer.Option(help="Text column of a file.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Label column of a file.")] = None,
    encoding: Annotated[Optional[str], typer.Option(help="Encoding of a file.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Split seed.")] = None,
    test_size: Annotated[Optional[float], typer.Option(help="Fraction held out for test.")] = None,
    validation_size: Annotated[Optional[float], typer.Option(help="Fraction held out for validation.")] = None,
    examples: Annotated[int, typer.Option(help="Example rows to show.")] = 5,
) -> None:
    """Counts per split and label, what cleaning dropped, and a few example rows."""
    from edgedistill.compress.data import DataConfig, load_data

    cfg = make_config(DataConfig, source=source, text_column=text_column, label_column=label_column,
                      encoding=encoding, seed=seed, test_size=test_size, validation_size=validation_size)
    with console.status(f"loading {source}"):
        data = load_data(cfg)
    counts = data.counts()
    rows = [(lab, *(counts[s].get(lab, 0) for s in ("train", "validation", "test")),
             sum(counts[s].get(lab, 0) for s in counts)) for lab in data.label_names]
    rows.append(("[bold]total", len(data.train), len(data.validation), len(data.test),
                 len(data.train) + len(data.validation) + len(data.test)))
    console.print(table(f"{data.name}: {data.num_labels} labels (seed {cfg.seed})",
                        ["label", "train", "validation", "test", "all"], rows))
    console.print(table("cleaning", list(data.stats), [list(data.stats.values())]))
    ex = [(" | ".join(data.label_names[k] for k in lab) if isinstance(lab, tuple) else data.label_names[lab],
           text[:100] + ("…" if len(text) > 100 else ""))
          for text, lab in zip(data.train.texts[:examples], data.train.labels[:examples])]
    console.print(table("examples (train)", ["label", "text"], ex))
