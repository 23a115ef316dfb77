"""The baseline as a candidate that can ship: TF-IDF + logistic regression exported to ONNX and packaged.

The baseline stage (:func:`package_baseline`) trains :mod:`edgedistill.compress.baseline` on the training split
(``C`` chosen on validation), converts the fitted pipeline with skl2onnx into one graph that takes the raw texts
(a 1-D string tensor: lowercasing, tokenizing and n-gram counting happen inside it) and gives log-probabilities,
checks that onnxruntime gives scikit-learn's probabilities, measures it on the validation split through the
runtime as the gate measures a student variant (macro-F1, batch-1 latency), and writes a model package of the
``strings`` kind through :func:`edgedistill.compress.package.write_package`::

    <build>/candidates/baseline/
      model.onnx      StringNormalizer -> Tokenizer -> TfIdfVectorizer (words, characters) -> LinearClassifier -> Log
      config.json     labels in output order, kind "strings", input_names ["text"], output_name "logits"
      manifest.json   sha256 + size of every file, metrics (validation), the parity check, how C was chosen
      README.md       the model card

The export checks itself (:func:`check_parity`): real validation texts and :data:`EDGE_TEXTS` (punctuation,
accents, other scripts, emoji, empty and whitespace-only texts, very long ones), batched as the runtime batches
them; :class:`~edgedistill.compress.errors.ExportParityError` names the largest difference and its text. Two
characters are known to differ: Python lowercases ``İ`` to two code points and a final ``Σ`` to ``ς`` where
onnxruntime's StringNormalizer maps one code point to one; texts with them may get probabilities up to about 1e-3
apart.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedistill.compress.data import DataConfig
from edgedistill.compress.errors import ConfigError, ExportParityError

log = logging.getLogger(__name__)

OPSET = 17  # TfIdfVectorizer (9), StringNormalizer (10), Log; ai.onnx.ml 3 for the LinearClassifier
LOCALE = "C.UTF-8"
"""The StringNormalizer's locale: built into glibc (2.35 on), where onnxruntime's default en_US.UTF-8 is often
not installed (the graph would not load); it lowercases as Python's str.lower does, but for the two exceptions in
the module docstring."""
EDGE_TEXTS = (
    "", " ", "\t\n ", "!!! ??? ...", "FREE entry!!! Call 0800-123-456 now: £1.50/msg", "it's a dog's life, isn't it?",
    "café naïve résumé Zürich ÉCOLE", "日本語のテキストです", "Привет, МИР", "😀 great 👍🏽 emoji",
    "mixed\nlines\r\nand\ttabs  and   spaces", "#hash ##tag ### a#b", "x", "A" * 3000, "word and words " * 700,
)
"""Texts real data rarely holds, checked on every export beside the validation texts."""
NAME = "baseline TF-IDF + LR"


@dataclass
class BaselineConfig:
    """The baseline stage: what it trains on, where its package goes, how close the graph must stay."""

    data: DataConfig = field(default_factory=DataConfig)
    """The labelled data (set by the pipeline): trained on train, C chosen and measured on validation."""
    output: str = ""
    """The package folder to write (set by the pipeline)."""
    atol: float = 1e-4
    """The export's parity check: the largest |scikit-learn - onnxruntime| allowed on any probability."""
    latency_samples: int = 32
    """Validation texts timed one at a time, twice each (the quantize gate's protocol)."""
    batch_size: int = 32
    """Validation texts per runtime call when the package is scored."""

    def __post_init__(self) -> None:
        if isinstance(self.data, str):
            self.data = DataConfig(source=self.data)
        if not (isinstance(self.atol, (int, float)) and 0 < self.atol < 0.1):
            raise ConfigError("baseline.atol", self.atol, "must be a number in (0, 0.1)")
        for name in ("latency_samples", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"baseline.{name}", getattr(self, name), "must be an int >= 1")


def to_onnx(base: Any) -> Any:
    """The fitted :class:`edgedistill.compress.baseline.Baseline` as one ONNX graph: the string tensor ``text`` in,
    ``logits`` (log-probabilities, columns in ``base.label_ids`` order) out; one-vs-rest (multi-label): each
    label's logit ``log(p / (1 - p))``."""
    import skl2onnx.sklapi.register  # noqa: F401  (the converter of TraceableTfidfVectorizer)
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.pipeline import Pipeline

    from edgedistill.runtime.package import STRINGS_INPUT

    options: dict[int, dict[str, Any]] = {id(base.classifier): {"zipmap": False}}
    for _, vec in base.features.transformer_list:
        options[id(vec)] = {"tokenexp": vec.token_pattern, "locale": LOCALE}
    model = convert_sklearn(Pipeline([("features", base.features), ("classifier", base.classifier)]),
                            initial_types=[(STRINGS_INPUT, StringTensorType([None]))], options=options,
                            target_opset={"": OPSET, "ai.onnx.ml": 3})
    _pad_outside_pools(model.graph)
    # 1) log-probabilities: the runtime's softmax gives the probabilities back; 2) the only output
    probs = next(o.name for o in model.graph.output if o.name == "probabilities")
    floor = helper.make_tensor("probability_floor", 1, [], [1e-30])  # no log(0): -69 is as good as -inf
    model.graph.initializer.append(floor)
    if base.multi_label:  # one probability per label: its logit log(p) - log(1 - p), which the sigmoid gives back
        model.graph.initializer.append(helper.make_tensor("one", 1, [], [1.0]))
        model.graph.node.extend([
            helper.make_node("Max", [probs, "probability_floor"], ["p_floored"]),
            helper.make_node("Sub", ["one", probs], ["q"]),
            helper.make_node("Max", ["q", "probability_floor"], ["q_floored"]),
            helper.make_node("Log", ["p_floored"], ["log_p"]), helper.make_node("Log", ["q_floored"], ["log_q"]),
            helper.make_node("Sub", ["log_p", "log_q"], ["logits"])])
    else:
        model.graph.node.extend([helper.make_node("Max", [probs, "probability_floor"], ["probabilities_floored"]),
                                 helper.make_node("Log", ["probabilities_floored"], ["logits"])])
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("logits", 1, [None, len(base.label_ids)]))
    return model


def _pad_outside_pools(graph: Any) -> None:
    """Give every Tokenizer a pad value that no n-gram holds. skl2onnx pads short rows of a batch with ``#``
    unless ``#`` is a vocabulary key; its character n-grams are tuples, so ``#`` passes that test while being a
    character of the pool, and a text with ``##`` in it would count n-grams of padding when batched."""
    from onnx import helper

    pool: set[bytes] = set()
    for node in graph.node:
        if node.op_type == "TfIdfVectorizer":
            pool.update(a for attr in node.attribute if attr.name == "pool_strings" for a in attr.strings)
    pad = b"#"
    while pad in pool:
        pad += b"#"
    for node in graph.node:
        if node.op_type == "Tokenizer":
            kept = [a for a in node.attribute if a.name != "pad_value"]
            del node.attribute[:]
            node.attribute.extend([*kept, helper.make_attribute("pad_value", pad.decode())])


def check_parity(base: Any, clf: Any, texts: list[str], atol: float) -> dict[str, Any]:
    """Run ``texts`` through scikit-learn and through ``clf`` (the graph in an ``edgedistill.runtime.TextClassifier``,
    batched as it batches); raise :class:`ExportParityError` when a probability differs by more than ``atol`` or a label
    differs where scikit-learn's top two are further apart than ``2 * atol``. Returns the record the manifest
    keeps."""
    ref = base.predict_proba(texts)
    got = clf.predict_proba(texts)
    diff = np.abs(ref - got).max(axis=1)
    worst = int(diff.argmax())
    if base.multi_label:  # a flip: a label decided differently where the probability is not at its threshold
        t = np.asarray(base.thresholds)[None, :]
        flips = int((((ref >= t) != (got >= t)) & (np.abs(ref - t) > 2 * atol)).any(axis=1).sum())
        same = float(((ref >= t) == (got >= t)).all(axis=1).mean())
    else:
        top2 = np.sort(ref, axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) > 2 * atol  # a near-tie may fall either way in float32
        flips = int(((ref.argmax(1) != got.argmax(1)) & decided).sum())
        same = float((ref.argmax(1) == got.argmax(1)).mean())
    record = {"texts": len(texts), "max_abs_diff": float(diff[worst]), "atol": atol,
              "argmax_agreement": same, "label_flips": flips}
    if diff[worst] > atol or flips:
        raise ExportParityError({"probabilities": float(diff[worst])}, atol, {"probabilities": repr(texts[worst][:60])
                                + (f"; {flips} texts get another label" if flips else "")}, source="scikit-learn")
    log.info("baseline ONNX parity: max |scikit-learn - onnxruntime| = %.2g over %d texts (atol %g)", diff[worst],
             len(texts), atol)
    return record


def strings_config(labels: list[str], thresholds: list[float] | None = None) -> dict[str, Any]:
    """config.json of a ``strings`` package."""
    from edgedistill.runtime.package import KIND_STRINGS, STRINGS_INPUT, TASK_MULTI, PackageConfig

    multi = {} if thresholds is None else {"task": TASK_MULTI, "thresholds": tuple(thresholds)}
    return PackageConfig(labels=tuple(labels), input_names=(STRINGS_INPUT,), output_name="logits", kind=KIND_STRINGS,
                         model_type="tfidf-logistic-regression", variant="fp32", **multi).to_dict()


def package_baseline(cfg: BaselineConfig, data: Any = None) -> Path:
    """Train, export, check and package the baseline into ``cfg.output``; returns the folder."""
    from edgedistill.compress.baseline import train_baseline
    from edgedistill.compress.data import load_data
    from edgedistill.compress.evaluate import align_columns, compute_metrics
    from edgedistill.compress.package import write_package
    from edgedistill.compress.quantize.gate import batch1_latency
    from edgedistill.runtime.classifier import TextClassifier
    from edgedistill.runtime.package import MODEL_FILE

    if not cfg.output:
        raise ConfigError("baseline.output", cfg.output, "name the package folder to write")
    data = data or load_data(cfg.data)
    base = train_baseline(data.train, data.validation, num_labels=data.num_labels)
    labels = [data.label_names[i] for i in base.label_ids]
    config = strings_config(labels, base.thresholds)
    with tempfile.TemporaryDirectory(prefix="edgedistill-baseline-") as work:
        path = Path(work) / MODEL_FILE
        path.write_bytes(to_onnx(base).SerializeToString())
        clf = TextClassifier.from_files(path, None, config)
        texts = list(data.validation.texts)
        parity = check_parity(base, clf, texts + list(EDGE_TEXTS), cfg.atol)
        probs = align_columns(clf.predict_proba(texts, cfg.batch_size), labels, data.label_names)
        m = compute_metrics(data.validation.labels, probs, data.label_names, base.thresholds)
        p50, p90 = batch1_latency(clf, texts[:cfg.latency_samples])
        metrics = {"dataset": data.name, "split": "validation", "n": len(texts), "macro_f1": m.macro_f1,
                   "accuracy": m.accuracy, **({"micro_f1": m.micro_f1} if base.multi_label else {}),
                   "size_bytes": path.stat().st_size, "latency_p50_ms": p50,
                   "latency_p90_ms": p90, "parity": parity}
        training = {"C": base.C, "validation_macro_f1_by_C": base.validation_macro_f1, "fit_seconds": base.fit_seconds,
                    "features": {n: len(v.vocabulary_) for n, v in base.features.transformer_list}}
        out = write_package(Path(cfg.output), {MODEL_FILE: path}, config, model_card(NAME, labels, data.name, metrics,
                                                                                   training),
                            opset=OPSET, quantization=None, metrics=metrics, name=NAME, source={"baseline": training})
    log.info("baseline package %s: validation macro-F1 %.4f, %.1f MB, p50 %.2f ms", out, m.macro_f1,
             metrics["size_bytes"] / 1e6, p50)
    return out


def model_card(name: str, labels: list[str], dataset: str, metrics: dict[str, Any], training: dict[str, Any]) -> str:
    """The README.md of the baseline package."""
    quoted = ", ".join(f"`{lab}`" for lab in labels)
    parity = metrics["parity"]
    return "\n".join([
        f"# {name}", "",
        f"A {len(labels)}-class text classifier: TF-IDF n-grams and logistic regression, trained on `{dataset}` by "
        "edgedistill as the baseline its students must beat, and shipped when none does on the validation split. "
        "Its ONNX graph takes the raw texts (lowercasing, tokenizing and n-gram counting happen inside it), so the "
        "package has no tokenizer.json; it runs on onnxruntime alone (no torch, no scikit-learn).", "",
        "## Intended use", "",
        f"Sorting short English texts into {quoted}, in the domain of the data it was trained on.", "",
        "```python", "from edgedistill.runtime import TextClassifier", "",
        'clf = TextClassifier.load("package")    # the folder or its .zip; every file\'s sha256 is checked',
        'clf.predict("a text to classify")      # {"label": ..., "score": ...}', "```", "",
        "## Model", "",
        "- Features: word 1-2-grams (runs of 2+ ASCII letters, digits or underscores) and character 2-5-grams of the "
        "lowercased text, binary tf x idf, each l2-normalised, concatenated "
        f"({', '.join(f'{n} {k:,}' for n, k in training['features'].items())} n-grams).",
        f"- Logistic regression, C = {training['C']:g}, chosen on the validation split among "
        + ", ".join(f"{c:g} ({f:.4f})" for c, f in training["validation_macro_f1_by_C"].items()) + ".",
        f"- Labels, in output order: {quoted}. The graph gives log-probabilities; scores are the probabilities.", "",
        "## Metrics", "",
        f"Validation split of `{dataset}`, {metrics['n']} texts, through the runtime: macro-F1 "
        f"{metrics['macro_f1']:.4f}, accuracy {metrics['accuracy']:.4f}; batch-1 p50 {metrics['latency_p50_ms']:.2f} "
        f"ms. The build report scores it on the test split, which no choice reads.", "",
        f"Parity with scikit-learn: max |difference| of a probability {parity['max_abs_diff']:.2g} over "
        f"{parity['texts']} texts (validation texts and edge cases), labels identical.", "",
        "## Limitations", "",
        "- It knows only the labels above; every text gets one of them, including texts that fit none.",
        "- Bag of n-grams: word order beyond pairs of words, negation and paraphrase are mostly lost.",
        "- Words are ASCII: accented and non-Latin letters reach it only through the character n-grams.",
        "- Scores are logistic regression's probabilities, not calibrated certainties.",
        "- onnxruntime-web has no string tensors: it cannot run in a browser (no web export, no wasm target).",
        "- The lowercasing needs the C.UTF-8 locale (built into glibc 2.35 and later).",
    ]) + "\n"
