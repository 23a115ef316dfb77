"""An update's gate and its report: the old and the new package scored through the runtime on both tasks'
validation and test texts, the verdict (validation only), and ``update_report.md``.

Macro-F1 is over a task's own labels. A single-label package's label is its most probable one; a multi-label
package decides each label at the threshold it ships (fitted on validation by its package stage; a label the old
package lacks is never predicted). The test split is reported and never read by the verdict.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgedistill.compress.update import UpdateConfig, UpdateData


def _decide(probs: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """The labels decided: one a text, the most probable (``thresholds`` None: a single-label classifier), or a
    multi-label classifier's 0/1 row, each label at its threshold."""
    from edgedistill.compress.multilabel import decide

    return np.asarray(probs).argmax(1) if thresholds is None else decide(probs, thresholds)


def task_macro_f1(y_true: list[Any], probs: np.ndarray, label_ids: list[int],
                  thresholds: np.ndarray | list[float] | None = None) -> float:
    """Macro-F1 over ``label_ids`` (a task's own labels). One label a text (``thresholds`` None): a text given
    another label counts as an error. Multi-label: each of the task's labels decided at its threshold."""
    from sklearn.metrics import f1_score

    from edgedistill.compress.multilabel import as_matrix

    pred = _decide(probs, thresholds)
    if thresholds is None:
        return float(f1_score(np.asarray(y_true), pred, labels=label_ids, average="macro", zero_division=0))
    y = as_matrix(y_true, pred.shape[1])
    return float(f1_score(y[:, label_ids], pred[:, label_ids], average="macro", zero_division=0))


def _package_probs(package: Path, texts: list[str], labels: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """The package's probabilities on ``texts`` in ``labels``' columns (a label it lacks: probability 0) and, for a
    multi-label package, the thresholds it ships (fitted on validation by its package stage; a label it lacks is
    never predicted)."""
    from edgedistill.compress.evaluate import align_columns
    from edgedistill.runtime import TextClassifier

    clf = TextClassifier.load(package)
    probs = np.asarray(clf.predict_proba(texts), dtype=np.float64)
    known = [lab for lab in labels if lab in clf.labels]
    cols = [labels.index(lab) for lab in known]
    out = np.zeros((len(texts), len(labels)))
    out[:, cols] = align_columns(probs, clf.labels, known)
    if not clf.multi_label:
        return out, None
    thresholds = np.full(len(labels), np.inf)
    thresholds[cols] = align_columns(np.asarray(clf.thresholds, dtype=np.float64)[None, :], clf.labels, known)[0]
    return out, thresholds


def compare(old_package: Path, package: Path, d: UpdateData, cfg: UpdateConfig) -> dict[str, Any]:
    """Old-task and new-task macro-F1 of the old and the new package (validation decides, test is reported), and
    which old test texts changed label (multi-label: label set)."""
    from edgedistill.compress.multilabel import as_matrix

    labels = d.labels
    out: dict[str, Any] = {"labels": labels, "task": "multi_label" if d.multi_label else "single_label",
                           "validation": {}, "test": {}}
    decided = {}
    for who, pkg in (("before", old_package), ("after", package)):
        for split_name, old_split, new_split in (("validation", d.old_val, d.new_val),
                                                 ("test", d.old_test, d.new_test)):
            probs, th = _package_probs(pkg, [*old_split.texts, *new_split.texts], labels)
            k = len(old_split)
            out[split_name][who] = {
                "old_task": task_macro_f1(old_split.labels, probs[:k], d.old_ids, th),
                "new_task": task_macro_f1(new_split.labels, probs[k:], d.new_ids, th),
                # both tasks' texts together, every label: what a user of the updated model meets
                "all": task_macro_f1([*old_split.labels, *new_split.labels], probs, list(range(len(labels))), th)}
            if split_name == "test":
                decided[who] = _decide(probs[:k], th)
    before, after = decided["before"], decided["after"]
    gold = as_matrix(d.old_test.labels, len(labels)) if d.multi_label else np.asarray(d.old_test.labels)

    def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # one bool a text: the same label (set)
        return (a == b).reshape(len(a), -1).all(1)

    moved = ~same(before, after)
    changed = np.flatnonzero(moved)
    sample = random.Random(cfg.seed).sample(list(changed), min(cfg.changed_samples, len(changed)))
    out["changed"] = {
        "n": int(len(changed)), "of": len(d.old_test),
        "fixed": int((same(after, gold) & moved).sum()), "broken": int((same(before, gold) & moved).sum()),
        "sample": [{"text": d.old_test.texts[i], "gold": _named(labels, gold[i]), "before": _named(labels, before[i]),
                    "after": _named(labels, after[i])} for i in sorted(sample)]}
    return out


def _named(labels: list[str], decided: Any) -> str:
    """A decision by name: one label id, or a 0/1 row's labels joined (a multi-label text may get none)."""
    if np.ndim(decided) == 0:
        return labels[int(decided)]
    return ", ".join(labels[j] for j in np.flatnonzero(decided)) or "(none)"


def verdict(report: dict[str, Any], cfg: UpdateConfig) -> tuple[bool, str]:
    val = report["validation"]
    drop = 100 * (val["before"]["old_task"] - val["after"]["old_task"])
    gain = 100 * (val["after"]["new_task"] - val["before"]["new_task"])
    where = (f"old tasks {val['before']['old_task']:.4f} -> {val['after']['old_task']:.4f}, "
             f"new data {val['before']['new_task']:.4f} -> {val['after']['new_task']:.4f} (validation)")
    if drop > cfg.forget_budget + 1e-9:
        return False, f"it forgets {drop:.2f} macro-F1 points of the old tasks, beyond the budget of " \
                      f"{cfg.forget_budget:g} ({where})"
    if gain <= 0:
        return False, f"it does not improve on the new data ({gain:+.2f} points; {where})"
    return True, f"{where}"


def report_markdown(r: dict[str, Any]) -> str:
    """The update report: before / after on both tasks, the verdict, the old texts whose label changed."""
    v, t = r["validation"], r["test"]
    lines = [f"# Update v{r['version']} (from v{r['parent_version']}): {r['method']} on {r['new_data']}", "",
             f"**{'Shipped' if r['shipped'] else 'Not shipped'}**: {r['reason']}.", "",
             f"Old tasks: {', '.join(r['old_tasks'])}. New labels: {', '.join(r['new_labels']) or 'none'}. "
             f"Trained on {r['training']['new']} new texts and {r['training']['replayed']} replayed old ones, "
             f"{r['training']['steps']} steps; the best validation point was step {r['training']['best']['step']}.",
             *_reading(r), "",
             "| macro-F1 | old tasks, before | old tasks, after | new data, before | new data, after | "
             "both, every label, before | after |", "|---|---|---|---|---|---|---|"]
    for name, row in (("validation (decides)", v), ("test (reported)", t)):
        lines.append(f"| {name} | {row['before']['old_task']:.4f} | {row['after']['old_task']:.4f} | "
                     f"{row['before']['new_task']:.4f} | {row['after']['new_task']:.4f} | "
                     f"{row['before'].get('all', float('nan')):.4f} | {row['after'].get('all', float('nan')):.4f} |")
    c = r["changed"]
    lines += ["", f"{c['n']} of {c['of']} old test texts changed label ({c['fixed']} now right, {c['broken']} now "
              "wrong, the rest wrong both times).", ""]
    if c["sample"]:
        lines += ["| text | gold | before | after |", "|---|---|---|---|"]
        lines += [f"| {s['text'][:100].replace('|', '/')} | {s['gold']} | {s['before']} | {s['after']} |"
                  for s in c["sample"]]
    return "\n".join(lines) + "\n"


def _reading(r: dict[str, Any]) -> list[str]:
    """How the report's figures read texts and decide labels, where that is not one softmax label a whole text."""
    out = []
    training = r["training"]
    if training.get("long_texts", "truncate") != "truncate":
        out.append(f"Texts read as `{training['long_texts']}` at {training['max_length']} tokens, as the package reads "
                   f"them: {training.get('windows', training['texts'])} training windows of {training['texts']} "
                   "texts, each text's windows pooled in every evaluation.")
    if r.get("task") == "multi_label":
        out.append("Multi-label: macro-F1 over each task's labels, each package deciding at the per-label thresholds "
                   "it ships (fitted on validation; a label the old package lacks is never predicted); a changed "
                   "label is a changed label set.")
    return ["", *out] if out else []
