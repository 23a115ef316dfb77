"""The build report: teacher vs student vs every ONNX variant vs the shipped package.

Numbers come from what the stages measured with the one evaluation protocol
(``compress.evaluate``) on the same test split; the shipped package is measured
once more here, through the runtime, so the report states what ships.
Writes ``report/report.md``, ``report/report.json`` and ``report/plot.png``.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.errors import ConfigError
from compress.fsutil import replace_folder

log = logging.getLogger(__name__)


@dataclass
class ReportConfig:
    plot: bool = True
    """Draw plot.png (macro-F1 against size and against batch-1 latency)."""
    batch_size: int = 32
    """Batch size of the package's evaluation through the runtime."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("report.batch_size", self.batch_size, "must be >= 1")


def safetensors_parameters(folder: Path) -> int:
    """Parameters in a checkpoint's safetensors files, read from their headers (no torch needed)."""
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
    return total


def _size_mb(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def _torch_row(name: str, folder: Path) -> dict[str, Any] | None:
    from compress.evaluate import read_metrics

    metrics = folder / "metrics.json"
    if not metrics.is_file():
        return None
    m = read_metrics(metrics)
    return {"model": name, "format": "torch fp32", "macro_f1": m.macro_f1, "accuracy": m.accuracy,
            "roc_auc": m.roc_auc, "ece": m.ece, "size_mb": round(_size_mb(list(folder.glob("*.safetensors"))), 1),
            "params_m": round(safetensors_parameters(folder) / 1e6, 1), "latency_p50_ms": None, "shipped": False}


def build_rows(build_dir: Path, package_metrics=None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from compress.quantize import Report

    rows = [r for r in (_torch_row("teacher", build_dir / "teacher"), _torch_row("student", build_dir / "student"))
            if r]
    q = Report.load(build_dir / "onnx")
    student_params = rows[-1]["params_m"] if rows else None
    for a in q.attempts:
        rows.append({"model": f"student onnx {a.name}", "format": a.variant, "macro_f1": a.macro_f1,
                     "accuracy": a.accuracy, "agreement": a.agreement,
                     "size_mb": None if a.size_bytes is None else round(a.size_bytes / 1e6, 1),
                     "params_m": student_params, "latency_p50_ms": a.latency_p50_ms,
                     "latency_p90_ms": a.latency_p90_ms, "status": a.status, "reason": a.reason,
                     "shipped": False})
    if package_metrics is not None:
        pkg = build_dir / "package"
        rows.append({"model": "package (shipped)", "format": q.chosen_variant,
                     "macro_f1": package_metrics.macro_f1, "accuracy": package_metrics.accuracy,
                     "roc_auc": package_metrics.roc_auc, "ece": package_metrics.ece,
                     "size_mb": round(_size_mb([p for p in pkg.iterdir() if p.is_file()]), 1),
                     "params_m": student_params,
                     "latency_p50_ms": q.attempt(q.chosen).latency_p50_ms, "shipped": True})
    return rows, {"chosen": q.chosen, "why": q.summary(), "environment": q.environment,
                  "test_examples": q.test_examples, "dataset": q.dataset}


def _fmt(v: Any, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def to_markdown(name: str, profile: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    teacher = next((r for r in rows if r["model"] == "teacher"), None)
    lines = [f"# {name}: build report ({profile} profile)", "",
             f"Test split of `{meta['dataset']}`, {meta['test_examples']} texts, one evaluation protocol for "
             "every row. Latency: batch 1, p50 through the runtime on this machine (ONNX rows only).", "",
             f"**Shipped: {meta['chosen']}.** {meta['why']}", "",
             "| model | format | macro-F1 | vs teacher | accuracy | size MB | vs teacher size | params M | p50 ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d_f1 = (None if teacher is None or r["macro_f1"] is None
                else 100 * (r["macro_f1"] - teacher["macro_f1"]) / teacher["macro_f1"])
        ratio = (None if teacher is None or not r["size_mb"] else teacher["size_mb"] / r["size_mb"])
        label = f"**{r['model']}**" if r.get("shipped") else r["model"]
        lines.append(f"| {label} | {r['format']} | {_fmt(r['macro_f1'], '.4f')} | {_fmt(d_f1, '+.1f')}% | "
                     f"{_fmt(r['accuracy'], '.4f')} | {_fmt(r['size_mb'], '.1f')} | "
                     f"{_fmt(ratio, '.1f')}x smaller | {_fmt(r['params_m'], '.1f')} | "
                     f"{_fmt(r.get('latency_p50_ms'), '.2f')} |")
    lines += ["", "Sizes: torch rows count the safetensors weights; ONNX rows the model file; the package row "
              "every file it ships (model, tokenizer, config, manifest, card)."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for r in rows:
        if r["macro_f1"] is None or not r["size_mb"]:
            continue
        marker = "*" if r.get("shipped") else ("s" if r["format"] == "torch fp32" else "o")
        ax1.scatter(r["size_mb"], r["macro_f1"], marker=marker, s=90 if marker == "*" else 40)
        ax1.annotate(r["model"].replace("student onnx ", ""), (r["size_mb"], r["macro_f1"]), fontsize=7,
                     xytext=(4, 3), textcoords="offset points")
        if r.get("latency_p50_ms"):
            ax2.scatter(r["latency_p50_ms"], r["macro_f1"], marker=marker, s=r["size_mb"] * 2 + 10, alpha=0.7)
            ax2.annotate(r["model"].replace("student onnx ", ""), (r["latency_p50_ms"], r["macro_f1"]),
                         fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax1.set_xscale("log")
    ax1.set_xlabel("size (MB, log)")
    ax2.set_xlabel("batch-1 p50 latency (ms), marker area ~ size")
    for ax in (ax1, ax2):
        ax.set_ylabel("macro-F1 (test)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(recipe, cfg: ReportConfig) -> Path:
    """Evaluate the package through the runtime and write report.md / report.json / plot.png."""
    from compress.data import load_data
    from compress.evaluate import evaluate_package, write_metrics

    build_dir = recipe.build_dir
    data = load_data(recipe.data())
    metrics = evaluate_package(build_dir / "package", data.test, batch_size=cfg.batch_size)
    rows, meta = build_rows(build_dir, metrics)
    out = build_dir / "report"
    tmp = Path(tempfile.mkdtemp(prefix=".report.tmp-", dir=build_dir))
    try:
        write_metrics(metrics, tmp, "package_metrics", title=f"{recipe.name}: shipped package")
        (tmp / "report.json").write_text(json.dumps({"name": recipe.name, "profile": recipe.profile,
                                                     "rows": rows, **meta}, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text(to_markdown(recipe.name, recipe.profile, rows, meta))
        if cfg.plot:
            plot(rows, tmp / "plot.png", f"{recipe.name} ({recipe.profile} profile)")
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("report written to %s", out / "report.md")
    return out
