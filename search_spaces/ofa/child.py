"""Child extraction: a subnet of an elastic supernet as a standalone IR-built model.

:func:`extract_child` builds the subnet's :class:`~nas.graph.ArchGraph` with the space's
``to_graph`` and the generic :func:`nas.model.build_model`, then copies the inherited weights
into it by the nodes' scopes (which follow OFA's ``state_dict`` names): the first channels of
every layer, the depthwise kernel cropped and transformed to the subnet's kernel size, and the
BatchNorm statistics. In evaluation mode the child computes what the supernet computes for
that subnet (tested to 1e-5).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flax import nnx

from nas.graph import ArchGraph
from nas.model import GraphModel

_BLOCK = re.compile(r"^blocks/(\d+)/conv/(.+)$")


def _bn_values(bn: Any, n: int) -> dict[str, np.ndarray]:
    return {
        "scale": _np(bn.scale)[:n],
        "bias": _np(bn.bias)[:n],
        "mean": _np(bn.mean)[:n],
        "var": _np(bn.var)[:n],
    }


def child_weights(supernet: Any, graph: ArchGraph) -> dict[int, dict[str, np.ndarray]]:
    """The inherited weights of every parametric node of ``graph`` (a subnet of ``supernet``),
    by node id, in ``GraphModel``'s variable names."""
    L = supernet.layout
    head_scope = "final_expand_layer" if L.feature_mix else "feature_mix_layer"
    out: dict[int, dict[str, np.ndarray]] = {}
    for n in graph.topological():
        op = graph.op(n)
        if op not in ("conv", "dense", "batch_norm"):
            continue
        scope = graph.g.nodes[n].get("scope", "")
        attrs = graph.attrs(n)
        cin = graph.shape(graph.inputs(n)[0])[-1]
        cout = graph.shape(n)[-1]
        if op == "batch_norm":
            owner, _ = scope.rsplit("/", 1)
            out[n] = _bn_values(_bn_of(supernet, owner, head_scope), cout)
            continue
        if op == "dense":
            c = supernet.classifier
            out[n] = {
                "kernel": _np(c.kernel)[:cin, :cout],
                "bias": _np(c.bias)[:cout],
            }
            continue
        owner = scope.rsplit("/", 1)[0] if scope.endswith("/conv") else scope
        if owner == "first_conv":
            out[n] = {"kernel": _np(supernet.stem)[:, :, :cin, :cout]}
        elif owner == head_scope:
            out[n] = {"kernel": _mat(supernet.head, cin, cout)}
        elif owner == "feature_mix_layer":
            out[n] = {"kernel": _mat(supernet.feature_mix, cin, cout)}
        else:
            m = _BLOCK.match(owner)
            if m is None:
                raise AssertionError(f"no supernet weight for node {n} ({scope})")
            blk = supernet.blocks[int(m.group(1))]
            part = m.group(2)
            if part == "inverted_bottleneck":
                out[n] = {"kernel": _mat(blk.ib, cin, cout)}
            elif part == "depth_conv":
                k = int(attrs["kernel"])
                w = _kernel_np(blk.dw, k)[:, :, :cout]
                out[n] = {"kernel": w[:, :, None, :]}
            elif part == "depth_conv/se/fc/reduce":
                out[n] = {
                    "kernel": _mat(blk.se.reduce, cin, cout),
                    "bias": _np(blk.se.reduce.bias)[:cout],
                }
            elif part == "depth_conv/se/fc/expand":
                out[n] = {
                    "kernel": _mat(blk.se.expand, cin, cout),
                    "bias": _np(blk.se.expand.bias)[:cout],
                }
            elif part == "point_linear":
                out[n] = {"kernel": _mat(blk.pl, cin, cout)}
            else:
                raise AssertionError(f"no supernet weight for node {n} ({scope})")
    return out


def _kernel_np(dw: Any, k: int) -> np.ndarray:
    """``ElasticDWConv.kernel_for`` in numpy (no per-shape compiles while extracting)."""
    w = _np(dw.kernel)
    kmax = w.shape[0]
    if not dw.transform:
        s = (kmax - k) // 2
        return w[s : s + k, s : s + k]
    ks = dw.kernels
    cur = w
    for big, small in zip(ks[::-1], ks[::-1][1:], strict=False):
        if big <= k:
            break
        s = (big - small) // 2
        crop = cur[s : s + small, s : s + small].reshape(small * small, -1)
        mat = _np(dw.matrices[f"{big}to{small}"])
        cur = (mat.astype(np.float64) @ crop.astype(np.float64)).astype(np.float32)
        cur = cur.reshape(small, small, -1)
    return cur


def _mat(dense: Any, cin: int, cout: int) -> np.ndarray:
    return _np(dense.kernel)[:cin, :cout][None, None]


def _np(var: Any) -> np.ndarray:
    """A variable's whole value on the host (slicing device arrays eagerly compiles)."""
    return np.asarray(var[...])


def _bn_of(supernet: Any, owner: str, head_scope: str) -> Any:
    if owner == "first_conv":
        return supernet.stem_bn
    if owner == head_scope:
        return supernet.head_bn
    m = _BLOCK.match(owner)
    if m is None:
        raise AssertionError(f"no supernet BatchNorm for {owner}")
    blk = supernet.blocks[int(m.group(1))]
    return {
        "inverted_bottleneck": getattr(blk, "ib_bn", None),
        "depth_conv": blk.dw_bn,
        "point_linear": blk.pl_bn,
    }[m.group(2)]


def extract_child(
    supernet: Any, genotype: Any, space: Any, dataset: str | None = None
) -> tuple[ArchGraph, GraphModel]:
    """The standalone model of one subnet, with the supernet's weights.

    Args:
        supernet: an elastic supernet (``OFASupernet``, ``BigNASSupernet``).
        genotype: a genotype of ``space`` (the subnet).
        space: the space that built the supernet.
        dataset: the network variant (default: the supernet's dataset).

    Returns:
        ``(graph, model)``; the model is in evaluation mode.
    """
    graph = space.to_graph(genotype, dataset or supernet.dataset)
    return graph, child_model(supernet, graph)


def child_model(supernet: Any, graph: ArchGraph, seed: int = 0) -> GraphModel:
    """The IR-built model of ``graph`` holding the inherited weights (evaluation mode).

    The model is built straight from the weights (no random initialisation, no trace).
    """
    rngs = nnx.Rngs(params=0, dropout=seed + 1)
    model = GraphModel(graph, rngs=rngs, weights=child_weights(supernet, graph))
    model.eval()
    return model
