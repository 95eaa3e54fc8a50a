"""A numpy forward/backward interpreter of the IR, for the zero-cost proxies.

Zero-cost proxies score an untrained network from one forward and one backward pass.
Building a flax model per architecture and running it eagerly cost about a second per
NAS-Bench-201 cell here, mostly dispatch and per-shape compilation; a synflow pass also
overflows float32 (NASLib's log-synflow reaches 112). This interpreter runs the graph
directly in numpy, in float32 or float64, with weights drawn like PyTorch's defaults (what
NASLib's reference scores used): conv and dense weights and biases uniform in
``+-1/sqrt(fan_in)``, BatchNorm scale 1 and offset 0.

Convolutions are patch matrices times weights (depthwise ones shifted multiply-adds); the
backward pass returns the gradient at the input and, where asked, at every weight. Arrays
are NHWC (maps) or ``(N, F)``, as in the IR.

Example:
    >>> from nas.graph import ArchGraph
    >>> g = ArchGraph.sequential((8, 8, 1), [("conv", {"out_channels": 4, "kernel": 3}),
    ...     ("relu", {}), ("global_pool", {}), ("dense", {"out_features": 3})])
    >>> net = Network(g, seed=0)
    >>> out, tape = net.forward(np.ones((2, 8, 8, 1)))
    >>> out.shape
    (2, 3)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nas.predictors.zerocost.ops import BACKWARD, FORWARD

from nas.graph import ArchGraph, _pair

BN_MODES = ("train", "eval", "off")
"""BatchNorm as batch statistics (a network in training mode), running statistics of a
fresh network (mean 0, variance 1), or left out (an identity; synflow)."""


@dataclass
class Tape:
    """What the backward pass needs of a forward pass: every node's inputs and output,
    and per-op caches (patch matrices, pooling masks, BatchNorm statistics)."""

    values: dict[int, np.ndarray] = field(default_factory=dict)
    cache: dict[int, Any] = field(default_factory=dict)


class Network:
    """An :class:`ArchGraph` with freshly drawn weights, runnable forward and backward.

    Args:
        graph: a finalized graph.
        seed: the weights' random seed.
        dtype: ``np.float32`` or ``np.float64``.
        bn: one of :data:`BN_MODES`.
        absolute: draw every weight and bias as its absolute value (synflow's linearised
            network).
    """

    def __init__(
        self,
        graph: ArchGraph,
        seed: int = 0,
        dtype: Any = np.float32,
        bn: str = "train",
        absolute: bool = False,
    ) -> None:
        if bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
        self.graph, self.dtype, self.bn = graph, np.dtype(dtype), bn
        self.plan = _plan(graph)
        self.shapes = {n: graph.shape(n) for n, *_ in self.plan}
        self.output = graph.output
        rng = np.random.default_rng(seed)
        self.weights: dict[int, dict[str, np.ndarray]] = {}
        # Drawn in node-id order: the same graph gets the same weights however it was built.
        for n, op, ins, attrs in sorted(self.plan):
            if op in ("conv", "dense"):
                self.weights[n] = self._draw(rng, op, attrs, self.shapes[ins[0]], absolute)
        self.relu_inputs: list[np.ndarray] | None = None
        """Set to a list to record every ReLU's input of the next forward pass (NASWOT)."""

    def _draw(self, rng, op: str, attrs: dict, in_shape, absolute: bool) -> dict[str, np.ndarray]:
        cin = in_shape[-1]
        if op == "conv":
            kh, kw = _pair(attrs["kernel"], "kernel", None)
            g, out = attrs["groups"], attrs["out_channels"]
            fan_in = cin // g * kh * kw
            shape = (g, fan_in, out // g)  # rows ordered (channel, kh, kw) within a group
        else:
            out = attrs["out_features"]
            fan_in, shape = cin, (cin, out)
        bias = attrs["bias"]
        bound = 1.0 / math.sqrt(fan_in)
        w = {"kernel": rng.uniform(-bound, bound, shape)}
        if bias:
            w["bias"] = rng.uniform(-bound, bound, (out,))
        return {k: (np.abs(v) if absolute else v).astype(self.dtype) for k, v in w.items()}

    # ------------------------------------------------------------------ forward

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Tape]:
        """The network's output for the batch ``x`` and the tape for :meth:`backward`."""
        tape = Tape()
        vals = tape.values
        for n, op, ins, attrs in self.plan:
            xs = [vals[i] for i in ins]
            if op == "input":
                y = np.asarray(x, self.dtype)
            else:
                y = FORWARD[op](self, n, attrs, xs, tape)
            vals[n] = y
        return vals[self.output], tape

    # ------------------------------------------------------------------ backward

    def backward(
        self,
        tape: Tape,
        grad_out: np.ndarray,
        weights: bool = True,
        on_grad: Callable[[int, np.ndarray], None] | None = None,
    ) -> tuple[np.ndarray, dict[int, dict[str, np.ndarray]]]:
        """``(gradient at the input, gradients of the weights by node)`` for the output
        gradient ``grad_out``; ``weights=False`` skips the weight gradients, ``on_grad(node,
        gradient)`` sees the gradient at every node's output that the output reaches."""
        grads: dict[int, np.ndarray] = {self.output: np.asarray(grad_out, self.dtype)}
        wgrads: dict[int, dict[str, np.ndarray]] = {}
        inp = None
        for n, op, ins, attrs in reversed(self.plan):
            g = grads.pop(n, None)
            if g is None:
                continue
            if on_grad is not None:
                on_grad(n, g)
            if op == "input":
                inp = g
                continue
            xs = [tape.values[i] for i in ins]
            gin, gw = BACKWARD[op](self, n, attrs, xs, tape, g, weights)
            if gw:
                wgrads[n] = gw
            for i, gi in zip(ins, gin, strict=True):
                if gi is None:
                    continue
                grads[i] = grads[i] + gi if i in grads else gi
        if inp is None:
            inp = np.zeros_like(tape.values[self.plan[0][0]])
        return inp, wgrads


def _plan(graph: ArchGraph) -> list[tuple[int, str, tuple[int, ...], dict[str, Any]]]:
    """``(node, op, inputs in order, attributes)`` in a topological order (networkx's plain
    one: the lexicographic order of :meth:`ArchGraph.topological` costs more than a proxy's
    arithmetic on a small network)."""
    import networkx as nx

    g = graph.g
    out = []
    for n in nx.topological_sort(g):
        ins = tuple(u for u, _ in sorted(g.pred[n].items(), key=lambda t: t[1]["index"]))
        out.append((n, g.nodes[n]["op"], ins, graph.attrs(n)))
    return out
