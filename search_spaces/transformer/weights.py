"""Published weights into IR-built transformers.

:func:`bert_weights` maps a Hugging Face BERT checkpoint (``BertModel`` tensor names, as in
all-MiniLM-L6-v2's ``model.safetensors``) onto the nodes of a ``transformer`` graph with
the same configuration, by the scopes :mod:`nas.search_spaces.transformer.network` gives them;
:class:`nas.model.GraphModel` then runs it (``weights=``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from nas.errors import DataError
from nas.graph import ArchGraph

# scope -> (Hugging Face prefix, kind); {i} is the block index.
_BERT = {
    "embed/tokens": ("embeddings.word_embeddings", "table"),
    "embed/positions": ("embeddings.position_embeddings", "table"),
    "embed/segments": ("embeddings.token_type_embeddings", "table"),
    "embed/norm": ("embeddings.LayerNorm", "norm"),
    "block{i}/attn/q": ("encoder.layer.{i}.attention.self.query", "linear"),
    "block{i}/attn/k": ("encoder.layer.{i}.attention.self.key", "linear"),
    "block{i}/attn/v": ("encoder.layer.{i}.attention.self.value", "linear"),
    "block{i}/attn/o": ("encoder.layer.{i}.attention.output.dense", "linear"),
    "block{i}/attn/norm": ("encoder.layer.{i}.attention.output.LayerNorm", "norm"),
    "block{i}/mlp/up": ("encoder.layer.{i}.intermediate.dense", "linear"),
    "block{i}/mlp/down": ("encoder.layer.{i}.output.dense", "linear"),
    "block{i}/mlp/norm": ("encoder.layer.{i}.output.LayerNorm", "norm"),
    "head/pooler": ("pooler.dense", "linear"),
}


def _source(scope: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"block(\d+)/(.*)", scope)
    key, index = (f"block{{i}}/{m.group(2)}", m.group(1)) if m else (scope, "")
    if key not in _BERT:
        return None
    prefix, kind = _BERT[key]
    return prefix.format(i=index), kind


def bert_weights(
    graph: ArchGraph, tensors: Mapping[str, np.ndarray]
) -> dict[int, dict[str, np.ndarray]]:
    """Node id -> flax variable -> array for every parametric node of ``graph``.

    Raises:
        DataError: a tensor the graph needs is missing from ``tensors``.
    """
    out: dict[int, dict[str, np.ndarray]] = {}
    for n in graph.topological():
        scope = graph.g.nodes[n].get("scope", "")
        src = _source(scope)
        if src is None:
            continue
        prefix, kind = src
        weight, bias = (_tensor(tensors, f"{prefix}.{k}", n, scope) for k in ("weight", "bias"))
        if kind == "table":
            out[n] = {"embedding": weight}
        elif kind == "norm":
            out[n] = {"scale": weight, "bias": bias}
        else:  # torch Linear keeps (out, in)
            out[n] = {"kernel": weight.T, "bias": bias}
    return out


def _tensor(tensors: Mapping[str, np.ndarray], key: str, n: int, scope: str) -> np.ndarray | None:
    if key.endswith(".bias") and "embeddings" in key and "LayerNorm" not in key:
        return None  # embedding tables have no bias
    if key not in tensors:
        raise DataError(f"the checkpoint has no tensor {key!r} for node {n} ({scope})")
    return np.asarray(tensors[key], np.float32)
