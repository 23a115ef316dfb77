"""The model2vec peer of benchmarks/ladder.py, at its best: a static model distilled from the teacher's base encoder
(``model2vec.distill``), then its own ``StaticModelForClassification`` fine-tuned end to end on the training split
(early stopping on the validation split), run through its inference pipeline.

Runs in its own environment (``make peers``: .venv-model2vec; model2vec 0.10 needs transformers < 5.4 and
huggingface_hub >= 1.0). Reads a JSON of the splits, writes one JSON row with its timings and its probabilities on
the validation and test splits (``{"classes": [...], "probs": [[...]]}``: its macro-F1 is computed by the ladder
benchmark with the toolchain's own metric function, not here)::

    .venv-model2vec/bin/python benchmarks/peers/model2vec_peer.py --base BASE_MODEL --splits splits.json --out row.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="The teacher's base encoder (a sentence-transformers folder).")
    ap.add_argument("--splits", required=True, help="JSON: {train, validation, test: {texts, labels}}.")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pca-dims", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()

    import numpy as np
    import torch
    from model2vec.distill import distill
    from model2vec.train import StaticModelForClassification

    import model2vec

    if a.threads:
        torch.set_num_threads(a.threads)
    splits = json.loads(Path(a.splits).read_text())
    train, val, test = splits["train"], splits["validation"], splits["test"]
    t0 = time.perf_counter()
    static = distill(model_name=a.base, pca_dims=a.pca_dims)
    distill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    multi = bool(train["labels"]) and isinstance(train["labels"][0], list)  # label lists: model2vec's multilabel mode
    names = {lab for labs in train["labels"] for lab in labs} if multi else set(train["labels"])
    clf = StaticModelForClassification.from_static_model(model=static, out_dim=len(names))
    clf.fit(train["texts"], train["labels"], X_val=val["texts"], y_val=val["labels"])
    fit_s = time.perf_counter() - t0
    pipe = clf.to_pipeline()
    texts = test["texts"]
    classes = [str(c) for c in pipe.classes_]  # the columns of predict_proba (multilabel: one sigmoid each)

    def outputs(split_texts: list[str]) -> dict:
        return {"classes": classes, "probs": np.asarray(pipe.predict_proba(split_texts), dtype=float).tolist()}
    # batch 1, p50 over the first test texts, twice each; batch 32 over all of them, best pass of ~3 s
    pipe.predict(texts[:32])
    one = []
    for t in texts[:200] * 2:
        s = time.perf_counter()
        pipe.predict([t])
        one.append((time.perf_counter() - s) * 1e3)
    best, started = 0.0, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        s = time.perf_counter()
        for i in range(0, len(texts), 32):
            pipe.predict(texts[i:i + 32])
        best = max(best, len(texts) / (time.perf_counter() - s))
    with tempfile.TemporaryDirectory() as tmp:
        pipe.save_pretrained(tmp)
        size = folder_mb(Path(tmp))
    row = {"model": "model2vec StaticModelForClassification", "test": outputs(texts),
           "validation": outputs(val["texts"]),
           "latency_p50_ms": statistics.median(one), "throughput_b32": best, "size_mb": round(size, 2),
           "distill_seconds": round(distill_s, 1), "fit_seconds": round(fit_s, 1), "pca_dims": a.pca_dims,
           "versions": {"model2vec": model2vec.__version__, "torch": torch.__version__, "numpy": np.__version__}}
    Path(a.out).write_text(json.dumps(row, indent=2) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k not in ("test", "validation")}))  # noqa: T201


if __name__ == "__main__":
    main()
