"""The build report's figure: macro-F1 on the test split against size and against batch-1 latency, one point a
model (the shipped one a star, torch checkpoints squares)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
        ax1.annotate(r["model"], (r["size_mb"], r["macro_f1"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
        if r.get("latency_p50_ms"):
            ax2.scatter(r["latency_p50_ms"], r["macro_f1"], marker=marker, s=90 if marker == "*" else 40)
            ax2.annotate(r["model"], (r["latency_p50_ms"], r["macro_f1"]), fontsize=7, xytext=(4, 3),
                         textcoords="offset points")
    ax1.set_xscale("log")
    ax2.set_xscale("log")
    ax1.set_xlabel("size (MB, log)")
    ax2.set_xlabel("batch-1 p50 latency (ms, log)")
    for ax in (ax1, ax2):
        ax.set_ylabel("macro-F1 (test)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
