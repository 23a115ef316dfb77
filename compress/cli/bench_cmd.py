"""``edgedistill bench``: latency, throughput, cold start and memory of a model package (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edgedistill.compress.cli._app import app, command, console, err_console, make_config, table
from edgedistill.compress.errors import EdgeDistillError


def _ints(flag: str, value: Optional[str]) -> Optional[tuple[int, ...]]:
    """``"1,2"`` -> (1, 2); None stays None (the config's default)."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 1,2", param_hint=flag) from None


@app.command("bench")
@command
def bench_command(
    package: Annotated[Path, typer.Argument(help="A model package: its folder or its .zip.")],
    threads: Annotated[Optional[str], typer.Option(
        help="Intra-op thread counts, e.g. 1,2 (default: 1 and all).")] = None,
    lengths: Annotated[Optional[str], typer.Option(help="Sequence lengths in tokens, e.g. 16,64,128,256.")] = None,
    batches: Annotated[Optional[str], typer.Option(help="Batch sizes, e.g. 1,8,32.")] = None,
    provider: Annotated[Optional[str], typer.Option(
        help="Execution provider: cpu or cuda (no silent fallback).")] = None,
    warmup: Annotated[Optional[float], typer.Option(help="Seconds of warm-up before each row.")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Seconds of timed calls per row.")] = None,
    cold_starts: Annotated[Optional[int], typer.Option(
        help="Fresh interpreters timed for the cold start (0: skip).")] = None,
    texts: Annotated[Optional[Path], typer.Option(help="Text to cut the inputs from, one text a line.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A smoke run in seconds (short warm-up and timing).")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the JSON result here.")] = None,
) -> None:
    """Measure a package on this machine: p50/p90/p99 latency and throughput per threads x length x batch.

    The JSON (--output) carries the environment of every row; merge results from other devices
    (an ARM board, a GPU machine) with `python benchmarks/suite.py --merge FILE`.
    """
    from edgedistill.runtime.bench import BenchConfig, bench, write_json
    from edgedistill.runtime.errors import RuntimeBaseError

    text_list = None
    if texts is not None:
        if not texts.is_file():
            raise typer.BadParameter(f"{texts}: no such file", param_hint="--texts")
        text_list = tuple(t for t in texts.read_text(encoding="utf-8").splitlines() if t.strip())
    given = dict(threads=_ints("--threads", threads), lengths=_ints("--lengths", lengths),
                 batches=_ints("--batches", batches), provider=provider, warmup_s=warmup, measure_s=seconds,
                 cold_start_runs=cold_starts, texts=text_list)
    try:
        if quick:
            cfg = BenchConfig.quick(**{k: v for k, v in given.items() if v is not None})
        else:
            cfg = make_config(BenchConfig, **given)
        with err_console.status(f"benchmarking {package}"):
            result = bench(package, cfg)
    except (RuntimeBaseError, ValueError) as e:  # a missing provider, a bad package or flag: one line, exit 1
        raise EdgeDistillError(str(e)) from e

    env = result["environment"]
    console.print(table(
        f"{Path(result['package']).name} ({result['variant']}) on {env['cpu']}, {env['provider']}",
        ["threads", "tokens", "batch", "p50 ms", "p90 ms", "p99 ms", "texts/s", "runs"],
        [(r["threads"], r["length"], r["batch"], round(r["p50_ms"], 3), round(r["p90_ms"], 3), round(r["p99_ms"], 3),
          round(r["throughput_per_s"], 1), r["runs"]) for r in result["rows"]]))
    flags = ", ".join(env["cpu_flags"]) or "unknown"
    console.print(f"model {result['model_bytes'] / 1e6:.1f} MB, package {result['package_bytes'] / 1e6:.1f} MB; "
                  f"{env['physical_cores'] or '?'} cores, int8 instruction set {env.get('isa') or 'unknown'}, "
                  f"flags {flags}; "
                  f"onnxruntime {env['onnxruntime']}")
    if result["capped_lengths"]:
        console.print(f"lengths {result['capped_lengths']} are above max_length {result['max_length']}: capped")
    if cold := result["cold_start"]:
        console.print(f"cold start {cold['total_s']:.2f} s (import {cold['import_s']:.2f} s, "
                      f"load {cold['load_s']:.2f} s, first prediction {cold['first_predict_s'] * 1e3:.1f} ms); "
                      f"peak RSS {cold['peak_rss_mb']:.0f} MB")
    if output is not None:
        write_json(result, output)
        console.print(f"[green]✓[/] wrote {output}")
