"""Tiny real models for the runtime tests, built in code: a WordPiece tokenizer.json over a given vocabulary and an
ONNX graph whose logits are a known function of the token ids (a table row per token, summed over the unmasked
tokens, plus a bias), and Node.js for the JavaScript tests."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest


def wordpiece_tokenizer(path: Path, vocab: Sequence[str], specials: Sequence[str], *, single: str | None = None,
                        truncation: int | None = None) -> Path:
    """A lower-casing BERT-style tokenizer.json: ``[CLS] $A [SEP]``, or the ``single`` template (its special tokens
    among ``specials``); ``truncation``: a saved setting of its own, which the runtime must override."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = list(vocab)
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if single is None:
        tok.post_processor = processors.BertProcessing(("[SEP]", vocab.index("[SEP]")), ("[CLS]", vocab.index("[CLS]")))
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=single, special_tokens=[(t, vocab.index(t)) for t in specials if t in single.split()])
    tok.add_special_tokens(list(specials))
    if truncation:
        tok.enable_truncation(max_length=truncation)
    tok.save(str(path))
    return path


def token_table_graph(path: Path, table: np.ndarray, bias: np.ndarray, *, shift: np.ndarray | None = None,
                      name: str = "tiny") -> Path:
    """logits = ``bias`` + the sum over the unmasked tokens of ``table[input_ids]`` (+ ``shift`` times the largest
    id of the whole batch: a model whose answers depend on its batch-mates)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "two"], ["mask3"]),
        helper.make_node("Mul", ["rows", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "one"], ["summed"], keepdims=0),
        helper.make_node("Add", ["summed", "bias"], ["logits" if shift is None else "local"]),
    ]
    inits = [numpy_helper.from_array(np.asarray(table, np.float32), "table"),
             numpy_helper.from_array(np.asarray(bias, np.float32), "bias"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([1], np.int64), "one")]
    if shift is not None:
        nodes += [helper.make_node("Cast", ["input_ids"], ["idsf"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceMax", ["idsf"], ["top"], keepdims=0),
                  helper.make_node("Mul", ["top", "shift"], ["shifted"]),
                  helper.make_node("Add", ["local", "shifted"], ["logits"])]
        inits.append(numpy_helper.from_array(np.asarray(shift, np.float32), "shift"))
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
         for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(bias)])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def node_or_skip() -> str:
    """The ``node`` executable, or skip the test."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (apt-get install -y nodejs)")
    return node
