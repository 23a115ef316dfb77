"""``TextClassifier``: a model package behind one onnxruntime session and one fast tokenizer.

One instance is safe to share across threads: the tokenizer is configured once
(truncation to the package's ``max_length``, padding to the longest text of each
batch; neither where long texts are read as head+tail or chunks, whose windows are
cut and padded here) and never changed afterwards, and ``InferenceSession.run`` is thread-safe.

A text gets the same answer alone or in any batch. A model whose answers depend on
its batch-mates (dynamic int8: one activation scale per batch; config.json's
``batch_dependent``) is therefore run one text per session call, unless the package
(``batch_invariant: false``) or the caller (``batch_invariant=False``) opts out.
Probabilities are ``softmax(logits / temperature)``, with the temperature the package
was calibrated with (config.json; labels never depend on it).

A multi-label package (config.json's ``"task": "multi_label"``, see :mod:`edgedistill.runtime.tasks`) gives any
number of labels per text, none included: its probabilities are ``sigmoid(logits / temperature)``, one per label
on its own (rows do not sum to 1), and a label is predicted where its probability reaches its threshold
(:attr:`TextClassifier.thresholds`, from config.json; 0.5 each by default). ``predict`` then gives a list of
``{"label", "score"}`` per text, best first and possibly empty.

What each kind of input gives (the same in ``predict`` and ``predict_proba``):

- ``""`` and whitespace-only text: the empty sequence (``[CLS] [SEP]`` for BERT), a normal prediction.
- a text longer than ``max_length`` tokens (100,000 characters, say): read as config.json's ``long_texts`` says
  (:mod:`edgedistill.runtime.longtexts`): truncated, its first tokens kept (the default); ``head+tail``; or
  ``chunks``, whose windows' probabilities are pooled. A text within the limit reads the same in every mode.
- emoji, right-to-left scripts, other non-Latin text: tokenized as usual (often ``[UNK]``).
- control characters: dropped or kept as the tokenizer's normalizer decides; never an error.
- a lone surrogate (a ``str`` that is not valid Unicode): ``ValueError`` naming the index.
- ``None``, bytes, numbers: ``TypeError`` naming the index.
- an empty list: an empty result (``predict_proba`` gives shape ``(0, num_labels)``).

A package of the ``strings`` kind (config.json's ``kind``: the TF-IDF + logistic-regression baseline) has no
tokenizer: the texts go into the graph as they are, one string tensor, and its n-grams are counted there (whole
texts, never truncated). Its output is log-probabilities, so the same softmax gives its probabilities back
(multi-label: per-label logits, to which the same sigmoid applies).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from edgedistill.runtime import longtexts
from edgedistill.runtime.errors import PackageFormatError, ProviderUnavailableError
from edgedistill.runtime.fasttok import Encoder
from edgedistill.runtime.integrity import PinnedFile
from edgedistill.runtime.probabilities import sigmoid, softmax
from edgedistill.runtime.package import (BATCH_DEPENDENT_VARIANTS, CONFIG_FILE, KIND_STRINGS, MANIFEST_FILE,
                                         MODEL_FILE, STRINGS_INPUT, TARGETS, TOKENIZER_FILE, PackageConfig,
                                         _verify_folder, open_package, read_config, target_model)
from edgedistill.runtime.session import (Provider, _manifest_target_file, _resolve_providers, _session_options,
                                         machine_target)
from edgedistill.runtime.tasks import TASK_MULTI, label_thresholds
from edgedistill.runtime.texts import _by_length, _check_batch_size, _check_texts, _check_unicode
from edgedistill.runtime.views import CHUNKS, TRUNCATE

log = logging.getLogger(__name__)

Prediction = dict[str, Any]  # {"label": str, "score": float}

_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_NO_TOKENS = ("the tokenizer gives no tokens for these texts (it adds no special tokens and the texts are empty); "
              "the model cannot classify an empty sequence")


class TextClassifier:
    """Classify texts with a model package; build one with :meth:`load` or :meth:`from_files`."""

    target: str | None = None
    """The package target whose model file runs here (:meth:`load`); None for loose files."""
    model_file: str = MODEL_FILE
    """The package's model file that runs (another than model.onnx when the package ships one per target)."""

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer | Encoder | None, config: PackageConfig, *,
                 manifest: Mapping[str, Any] | None = None, source: str = "<memory>", fallback: bool = False,
                 requested: Sequence[Provider] = (), batch_invariant: bool | None = None):
        if batch_invariant is not None and not isinstance(batch_invariant, bool):
            raise ValueError(f"batch_invariant={batch_invariant!r}: must be None (the package decides), True or False")
        self._encoder = Encoder(tokenizer) if isinstance(tokenizer, Tokenizer) else tokenizer
        self._tokenizer = None if self._encoder is None else self._encoder.tokenizer
        self._session, self.config = session, config
        self.manifest = dict(manifest) if manifest is not None else None
        self.source = source
        self.labels: list[str] = list(config.labels)
        self.num_labels = len(self.labels)
        self.max_length = config.max_length
        self.temperature = float(config.temperature)
        self.biases = None if config.biases is None else np.asarray(config.biases, dtype=np.float32)
        self.multi_label = config.task == TASK_MULTI
        """Any number of labels a text (sigmoid probabilities and per-label thresholds), not one (a softmax)."""
        thresholds = label_thresholds(config.task, config.thresholds, self.num_labels)
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float32)
        """A multi-label package's per-label thresholds, float32 in label order (config.json's, else 0.5 each): label
        ``j`` is predicted where ``predict_proba(texts)[:, j] >= thresholds[j]``. None for a single-label one."""
        # each text in its own session call (unpadded), so that no answer depends on batch-mates
        self.runs_alone = config.batch_dependent and (config.batch_invariant if batch_invariant is None
                                                      else batch_invariant)
        self.long_texts: str = config.long_texts
        """How a text over :attr:`max_length` tokens is read: ``truncate``, ``head+tail`` or ``chunks`` (config.json's
        ``long_texts``, with its ``chunk_stride`` and ``max_chunks``; see :mod:`edgedistill.runtime.views`)."""
        self._check_providers(requested, fallback)
        self.takes_strings = config.kind == KIND_STRINGS
        """The graph takes the raw texts (a ``strings`` package): no tokenizer, no truncation."""
        if self.takes_strings:
            self._check_string_io()
        else:
            if tokenizer is None:
                raise PackageFormatError(source, f"a package of kind {config.kind} needs {TOKENIZER_FILE}",
                                         file=TOKENIZER_FILE)
            self._check_io()
            self._configure_tokenizer()

    # ------------------------------------------------------------------ building

    @classmethod
    def load(cls, path_or_zip: Path | str, providers: Sequence[Provider] | str | None = None,
             threads: int | None = None, *, fallback: bool = False, target: str | None = None,
             batch_invariant: bool | None = None) -> TextClassifier:
        """Open a package folder or ``.zip`` after checking every file against its manifest.

        ``providers``: onnxruntime execution providers in order of preference (default: the CPU).
        A provider that is not available raises :class:`ProviderUnavailableError` unless
        ``fallback=True``. ``threads``: intra-op threads (default: onnxruntime's choice).
        ``target``: which of the package's model files to run when it ships one per target (its manifest's
        ``targets``); default :func:`machine_target`: cuda on the CUDA provider, else this CPU's architecture.
        ``batch_invariant``: None follows the package; True runs a batch-dependent model one text
        per call (answers never depend on batch-mates); False batches it anyway (faster).
        """
        where = Path(path_or_zip)
        if target is not None and target not in TARGETS:
            raise ValueError(f"target={target!r}: choose one of {', '.join(TARGETS)} (or None: this machine's)")
        chosen = _resolve_providers(providers, fallback)
        target = target or machine_target(chosen)
        with open_package(where) as folder:
            model_file = _manifest_target_file(folder, target)
            # the model is hashed in place and opened by path, alone in a private folder (faster than handing
            # onnxruntime its bytes), then checked unchanged since it was hashed
            manifest, blobs = _verify_folder(folder, where, keep=(TOKENIZER_FILE,), pin=(model_file,))
            try:
                model_file, entry = target_model(manifest, target, where)
                if not isinstance(blobs.get(model_file), PinnedFile):  # the manifest changed between the two reads
                    raise PackageFormatError(where, "changed while it was being read" if model_file not in blobs
                                             else f"names {model_file} as a model file", file=MANIFEST_FILE)
                config = read_config(blobs[CONFIG_FILE], where=where)
                if entry is not None and entry.get("variant") and entry["variant"] != config.variant:
                    config = dataclasses.replace(config, variant=entry["variant"],
                                                 batch_dependent=entry["variant"] in BATCH_DEPENDENT_VARIANTS)
                if entry is not None and not entry.get("verified", True):
                    log.warning("%s: its %s model (%s) was never checked on %s (shipped unverified)", where, target,
                                model_file, target)
                # the tokenizer is parsed while the model's hash is computed; the model is opened once it matches
                tokenizer = None if config.kind == KIND_STRINGS else cls._read_tokenizer(blobs[TOKENIZER_FILE], where)
                session = blobs.pop(model_file).read(lambda source: cls._open_session(source, chosen, threads, where))
            finally:  # a load that failed before the model's read stops its hashing
                for pinned in blobs.values():
                    if isinstance(pinned, PinnedFile):
                        pinned.close()
        clf = cls(session, tokenizer, config, manifest=manifest, source=str(where), fallback=fallback,
                  requested=chosen, batch_invariant=batch_invariant)
        clf.target, clf.model_file = target, model_file
        log.debug("loaded %s", clf)
        return clf

    @classmethod
    def from_files(cls, onnx_path: Path | str, tokenizer_json: Path | str | None,
                   config_dict: Mapping[str, Any] | PackageConfig, providers: Sequence[Provider] | str | None = None,
                   threads: int | None = None, *, fallback: bool = False,
                   batch_invariant: bool | None = None) -> TextClassifier:
        """Build a classifier from loose files, with no manifest (to evaluate variants before packaging);
        ``tokenizer_json`` None for a ``strings`` graph."""
        onnx_path = Path(onnx_path)
        config = config_dict if isinstance(config_dict, PackageConfig) else \
            PackageConfig.from_dict(config_dict, where=onnx_path.parent)
        chosen = _resolve_providers(providers, fallback)
        session = cls._open_session(str(onnx_path), chosen, threads, onnx_path.parent)
        tokenizer = None if tokenizer_json is None else \
            cls._read_tokenizer(Path(tokenizer_json).read_bytes(), Path(tokenizer_json).parent)
        return cls(session, tokenizer, config, source=str(onnx_path), fallback=fallback, requested=chosen,
                   batch_invariant=batch_invariant)

    @staticmethod
    def _open_session(model: bytes | str, providers: list[Provider], threads: int | None,
                      where: Path) -> ort.InferenceSession:
        options = _session_options(threads)
        try:
            return ort.InferenceSession(model, sess_options=options, providers=providers)
        except Exception as e:  # onnxruntime raises its own pybind classes (Fail, InvalidProtobuf, ...)
            raise PackageFormatError(where, f"onnxruntime cannot load it: {e}", file=MODEL_FILE) from e

    @staticmethod
    def _read_tokenizer(raw: bytes, where: Path) -> Encoder:
        try:
            text = raw.decode("utf-8")
            return Encoder(Tokenizer.from_str(text), text)
        except Exception as e:  # tokenizers raises plain Exception for a bad file
            raise PackageFormatError(where, f"the tokenizers library cannot read it: {e}",
                                     file=TOKENIZER_FILE) from e

    def _check_providers(self, requested: Sequence[Provider], fallback: bool) -> None:
        """onnxruntime drops a provider it cannot initialise (a missing CUDA library) with only a log line."""
        active = self._session.get_providers()
        lost = [n for n in (p[0] if isinstance(p, tuple) else p for p in requested) if n not in active]
        if lost and not fallback:
            raise ProviderUnavailableError(lost, ort.get_available_providers(),
                                           why=f"onnxruntime could not initialise it and runs on {', '.join(active)}")
        if lost:
            log.warning("execution provider(s) %s failed to initialise; running on %s", ", ".join(lost),
                        ", ".join(active))

    def _check_io(self) -> None:
        """The model's inputs and output must be the ones config.json names."""
        inputs = {i.name: i for i in self._session.get_inputs()}
        if set(inputs) != set(self.config.input_names):
            raise PackageFormatError(self.source, f"input_names={list(self.config.input_names)} but model.onnx takes "
                                     f"{sorted(inputs)}", file=CONFIG_FILE)
        self._dtypes = {}
        for name, i in inputs.items():
            if i.type not in _DTYPES:
                raise PackageFormatError(self.source, f"input {name} has type {i.type}; expected int64 or int32",
                                         file=MODEL_FILE)
            self._dtypes[name] = _DTYPES[i.type]
        outputs = {o.name: o for o in self._session.get_outputs()}
        if self.config.output_name not in outputs:
            raise PackageFormatError(self.source, f"output_name={self.config.output_name!r} but model.onnx gives "
                                     f"{sorted(outputs)}", file=CONFIG_FILE)
        width = outputs[self.config.output_name].shape[-1]
        if isinstance(width, int) and width != self.num_labels:
            raise PackageFormatError(self.source, f"{len(self.labels)} labels but model.onnx gives {width} logits",
                                     file=CONFIG_FILE)

    def _check_string_io(self) -> None:
        """A ``strings`` graph takes one 1-D string tensor and gives (batch, labels) floats."""
        inputs = self._session.get_inputs()
        if [i.name for i in inputs] != [STRINGS_INPUT] or inputs[0].type != "tensor(string)":
            raise PackageFormatError(self.source, f"a {KIND_STRINGS} package's model must take one string input "
                                     f"{STRINGS_INPUT!r}; it takes {[(i.name, i.type) for i in inputs]}",
                                     file=MODEL_FILE)
        outputs = {o.name: o for o in self._session.get_outputs()}
        if self.config.output_name not in outputs:
            raise PackageFormatError(self.source, f"output_name={self.config.output_name!r} but model.onnx gives "
                                     f"{sorted(outputs)}", file=CONFIG_FILE)

    def _configure_tokenizer(self) -> None:
        """Set truncation and padding once; after this the tokenizer is only read (thread safety). Reading long
        texts as head+tail or chunks, it neither truncates nor pads: the windows are cut and padded here."""
        pad_token = self._tokenizer.id_to_token(self.config.pad_token_id)
        if pad_token is None:
            raise PackageFormatError(self.source, f"pad_token_id={self.config.pad_token_id} is not in "
                                     "tokenizer.json's vocabulary", file=CONFIG_FILE)
        def settings(tok: Tokenizer) -> None:
            if self.long_texts == TRUNCATE:
                tok.enable_truncation(max_length=self.max_length)
                tok.enable_padding(pad_id=self.config.pad_token_id, pad_token=pad_token)  # to a batch's longest
            else:  # tokenizer.json may carry settings of its own
                tok.no_truncation()
                tok.no_padding()

        self._encoder.configure(settings)
        # every piece of the one-sequence template shows in any one text's encoding: zeros here, zeros always
        self._single_type_ids_zero = not any(self._encoder.encode(["a probe, 1."])[0].type_ids)

    # ------------------------------------------------------------------ inference

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really runs on."""
        return self._session.get_providers()

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The model inputs for ``texts`` in the given order, padded to the longest (a model feed; for a
        ``strings`` package, the texts themselves as a string tensor). Reading long texts as ``chunks``, one row
        per window: a text's windows are neighbours, in reading order."""
        texts = _check_texts(texts)
        return self._feed(texts, range(len(texts)))

    def _feed(self, texts: list[str], positions: Iterable[int]) -> dict[str, np.ndarray]:
        """:meth:`tokenize` for texts already checked; ``positions`` are their indices in the caller's input,
        which an invalid-Unicode error names."""
        if not texts:
            raise ValueError("texts is empty; there is nothing to tokenize")
        if self.takes_strings:
            _check_unicode(texts, positions)  # onnxruntime would fail on a lone surrogate, naming no text
            return {STRINGS_INPUT: np.array(texts, dtype=object)}
        encodings = self._encode(texts, positions)
        if self.long_texts != TRUNCATE:  # head+tail: one window a text; chunks: every window of them
            w = self._windows(encodings)
            return self._window_feed(w, range(len(w.ids)))
        ids = np.array([e.ids for e in encodings], dtype=self._dtypes["input_ids"])
        if ids.shape[1] == 0:
            raise ValueError(_NO_TOKENS)
        if len(encodings) == 1:  # one text: no padding; one sequence's type ids are 0 (checked at load)
            feed = {"input_ids": ids, "attention_mask": np.ones(ids.shape, dtype=self._dtypes["attention_mask"])}
            if self.config.uses_token_type_ids:
                feed["token_type_ids"] = np.zeros(ids.shape, dtype=self._dtypes["token_type_ids"]) \
                    if self._single_type_ids_zero else np.array([encodings[0].type_ids], self._dtypes["token_type_ids"])
            return feed
        feed = {"input_ids": ids,
                "attention_mask": np.array([e.attention_mask for e in encodings],
                                           dtype=self._dtypes["attention_mask"])}
        if self.config.uses_token_type_ids:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=self._dtypes["token_type_ids"])
        return feed

    def _encode(self, texts: list[str], positions: Iterable[int]) -> list[Any]:
        try:
            return self._encoder.encode(texts)
        except (TypeError, UnicodeError):  # a lone surrogate: name its text
            _check_unicode(texts, positions)
            raise

    def _windows(self, encodings: list[Any]) -> longtexts.Windows:
        c = self.config
        return longtexts.windows(encodings, c.max_length, c.long_texts, c.chunk_stride, c.max_chunks)

    def _window_feed(self, w: longtexts.Windows, rows: Sequence[int]) -> dict[str, np.ndarray]:
        feed = longtexts.feed(w, rows, self.config.pad_token_id, self._dtypes)
        if feed["input_ids"].shape[1] == 0:
            raise ValueError(_NO_TOKENS)
        return feed

    def logits(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run the session on a model feed (see :meth:`tokenize`); returns float32 logits."""
        out = self._session.run([self.config.output_name], dict(feed))[0]
        if out.ndim != 2 or out.shape[1] != self.num_labels:
            raise PackageFormatError(self.source, f"model.onnx gave logits of shape {out.shape}; expected "
                                     f"(batch, {self.num_labels})", file=MODEL_FILE)
        return out.astype(np.float32, copy=False)

    def predict_logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """The model's raw logits (before the temperature), shape ``(len(texts), num_labels)``, float32, in
        input order; run exactly as :meth:`predict_proba` runs them.

        Texts are sorted by length and cut into batches of ``batch_size``, each padded only to
        its own longest text, so a long text does not make short ones pay for its padding. A
        model that :attr:`runs_alone` takes each text in its own call instead (``batch_size`` unused).

        Reading long texts as ``chunks``, a text's row is the mean of its windows' raw logits (see
        :meth:`window_logits`); :meth:`predict_proba` then pools the windows' probabilities instead, not these.
        """
        texts = _check_texts(texts)
        _check_batch_size(batch_size)
        if self.long_texts == CHUNKS:
            return longtexts.pool(*self.window_logits(texts, batch_size), len(texts))
        return self._run(_by_length(texts), batch_size, lambda idx: self._feed([texts[i] for i in idx], idx))

    def window_logits(self, texts: Sequence[str], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Each window's raw logits, float32, and the position in ``texts`` of the text it reads (int64), windows
        in text order: one window a text, but reading long texts as ``chunks`` (:attr:`long_texts`).

        Chunks: texts are taken ``batch_size`` at a time, shortest first, and their windows run ``batch_size`` at
        a time, each batch padded to its longest window (each window alone where the model :attr:`runs_alone`),
        so that texts within the limit run exactly as :meth:`predict_logits` runs them in the other modes.
        """
        texts = _check_texts(texts)
        _check_batch_size(batch_size)
        if self.long_texts != CHUNKS:
            return self.predict_logits(texts, batch_size), np.arange(len(texts), dtype=np.int64)
        logits, owner = [np.empty((0, self.num_labels), np.float32)], [np.empty(0, np.int64)]
        order = _by_length(texts)
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            w = self._windows(self._encode([texts[i] for i in idx], idx.tolist()))
            logits.append(self._run(np.arange(len(w.ids)), batch_size, lambda rows, w=w: self._window_feed(w, rows)))
            owner.append(idx[w.owner])
        keep = np.argsort(np.concatenate(owner), kind="stable")
        return np.concatenate(logits)[keep], np.concatenate(owner)[keep]

    def _run(self, order: np.ndarray, batch_size: int,
             feed_of: Callable[[list[int]], Mapping[str, np.ndarray]]) -> np.ndarray:
        """Logits of rows ``0..n-1`` (texts, or windows) run in ``order``, ``batch_size`` at a time (one at a time
        where the model :attr:`runs_alone`); ``feed_of(rows)`` gives the feed of a list of rows."""
        out = np.empty((len(order), self.num_labels), dtype=np.float32)
        step = 1 if self.runs_alone else batch_size
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            out[idx] = self.logits(feed_of(idx.tolist()))
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities, ``softmax(logits / temperature + biases)``, shape ``(len(texts), num_labels)``,
        float32, in input order (batched as :meth:`predict_logits` says).

        A multi-label package gives ``sigmoid(logits / temperature)`` instead: each label's own probability, so a
        row does not sum to 1 (compare it with :attr:`thresholds`).

        Reading long texts as ``chunks``, each window's probabilities are computed so, and a text's row is their
        mean (multi-label: their maximum per label)."""
        if self.long_texts == CHUNKS:
            texts = _check_texts(texts)
            logits, owner = self.window_logits(texts, batch_size)
            return longtexts.pool(self._probabilities(logits), owner, len(texts), "max" if self.multi_label else "mean")
        return self._probabilities(self.predict_logits(texts, batch_size))

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        """softmax(logits / temperature + biases), or sigmoid(logits / temperature); ``logits`` are changed."""
        if self.temperature != 1.0:
            logits /= np.float32(self.temperature)
        if self.biases is not None:
            logits += self.biases
        return sigmoid(logits) if self.multi_label else softmax(logits)

    def predict(self, text_or_texts: str | Sequence[str], batch_size: int = 32,
                top_k: int | None = 1) -> Prediction | list[Prediction] | list[list[Prediction]]:
        """The top label and its probability: ``{"label", "score"}`` for one string, a list for a list.

        ``top_k > 1`` gives a list of the ``top_k`` best ``{"label", "score"}`` per text, best
        first (``top_k`` above the number of labels gives them all; ``None`` gives them all too).

        A multi-label package (:attr:`multi_label`) gives a list of ``{"label", "score"}`` per text instead: every
        label whose probability reaches its threshold, best first, possibly empty (one string: one such list,
        a list of strings: a list of them). ``top_k=1`` (the default) keeps them all; an int ``top_k > 1`` keeps
        at most ``top_k`` of them; ``top_k=None`` gives every label with its probability, best first, whether it
        reaches its threshold or not (to pick labels with other thresholds).
        """
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k={top_k!r}: must be an int >= 1, or None for every label")
        single = isinstance(text_or_texts, str)
        if not single:
            text_or_texts = _check_texts(text_or_texts, "text_or_texts")
        results = self.rank(self.predict_proba([text_or_texts] if single else text_or_texts, batch_size), top_k)
        return results[0] if single else results

    def rank(self, probs: np.ndarray, top_k: int | None = 1) -> list[Prediction] | list[list[Prediction]]:
        """:meth:`predict`'s answers from rows of :meth:`predict_proba` (the server ranks its batches' rows here)."""
        if self.multi_label:
            return self._rank_multi_label(probs, top_k)
        k = self.num_labels if top_k is None else min(top_k, self.num_labels)
        results: list[Any] = []
        for row, top in zip(probs, np.argsort(-probs, axis=1, kind="stable")[:, :k]):
            preds = [{"label": self.labels[j], "score": float(row[j])} for j in top]
            results.append(preds[0] if top_k == 1 else preds)
        return results

    def _rank_multi_label(self, probs: np.ndarray, top_k: int | None) -> list[list[Prediction]]:
        """Per text: 1) every label best first; 2) unless ``top_k`` is None, those that reach their threshold;
        3) at most ``top_k`` of them where ``top_k > 1``."""
        results = []
        for row, chosen, order in zip(probs, self.decide(probs), np.argsort(-probs, axis=1, kind="stable")):
            if top_k is not None:
                order = order[chosen[order]][:top_k if top_k > 1 else None]
            results.append([{"label": self.labels[j], "score": float(row[j])} for j in order])
        return results

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The labels rows of :meth:`predict_proba` get, as a bool array of their shape: a multi-label package's
        ``probs >= thresholds``; a single-label one's most probable label (one True a row)."""
        probs = np.asarray(probs)
        if self.multi_label:
            return probs >= self.thresholds
        return np.arange(self.num_labels) == probs.argmax(axis=1)[:, None]

    def predict_labels(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """:meth:`decide` of :meth:`predict_proba`: bool, shape ``(len(texts), num_labels)``, in label order."""
        return self.decide(self.predict_proba(texts, batch_size))

    def __repr__(self) -> str:
        variant = f", variant={self.config.variant}" if self.config.variant else ""
        temperature = f", temperature={self.temperature:g}" if self.temperature != 1.0 else ""
        temperature += ", class biases" if self.biases is not None else ""
        if self.multi_label:
            temperature += ", multi-label (thresholds " + " ".join(f"{t:g}" for t in self.thresholds) + ")"
        alone = ", one text per call" if self.runs_alone else ""
        if self.long_texts == CHUNKS:
            alone += f", long texts as chunks (stride {self.config.chunk_stride}, at most {self.config.max_chunks})"
        elif self.long_texts != TRUNCATE:
            alone += f", long texts as {self.long_texts}"
        length = "raw strings" if self.takes_strings else f"max_length={self.max_length}"
        return (f"TextClassifier({self.source}: {self.num_labels} labels {self.labels}, {length}"
                f"{variant}{temperature}{alone}, providers={self.providers})")
