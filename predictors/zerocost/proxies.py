"""Zero-cost proxies as NASLib computes them, on the numpy interpreter of the IR.

Each function scores one finalized :class:`~nas.graph.ArchGraph`; higher is predicted
better. The definitions follow NASLib's ``predictors/utils/pruners/measures`` (the
reference values in ``../shared/data/naslib_zc_nasbench201.json``):

* :func:`synflow`: ``log sum |theta * dR/dtheta|`` over conv and dense weights, where ``R``
  is the summed output of the network with absolute weights, BatchNorm removed and an
  all-ones input, in float64 (its values exceed float32's range: e^112 for large NB201
  cells); NASLib reports the logarithm.
* :func:`snip`: ``sum |theta * dL/dtheta|`` for the cross-entropy ``L`` of one batch.
* :func:`grad_norm`: the sum over conv and dense layers of ``||dL/dtheta||_2``.
* :func:`jacov`: the Jacobian covariance score ``-sum(log(v + k) + 1 / (v + k))`` of the
  eigenvalues ``v`` of the correlation matrix of the per-sample input gradients, ``k=1e-5``.
* :func:`naswot`: the log-determinant of the Hamming-similarity kernel of the ReLU codes of
  a batch (Mellor et al. 2021; not in NASLib's file).

The data-dependent ones (all but synflow) use the batch they are given: NASLib's used
CIFAR-10 images, this project's defaults use scikit-learn's handwritten digits
(:func:`digits_batch`), so their agreement with NASLib's values is measured, not assumed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from nas.predictors.zerocost.engine import Network

from nas.graph import ArchGraph


def _one_thread(fn: Callable) -> Callable:
    """Run ``fn`` with single-threaded BLAS: a proxy's matrices are small, and threads only
    contend (ten times slower on a busy machine)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return fn(*args, **kwargs)

    return run


def _log(total: float) -> float:
    """NASLib's logarithm of a score of any sign (0 stays 0)."""
    if total == 0 or not math.isfinite(total):
        return 0.0 if total == 0 else -1e9
    return math.log(total) if total > 0 else -math.log(-total)


@_one_thread
def synflow(graph: ArchGraph, seed: int = 0) -> float:
    """NASLib's log-synflow (module docstring), float64, BatchNorm removed.

    A layer's term ``sum_w w * dR/dw`` equals ``<dR/dy, y - bias>`` for its output ``y``
    (``y`` is linear in the weights), so the backward pass needs only the gradients at the
    layers' outputs, not the weight gradients: a third of the work saved.
    """
    net = Network(graph, seed=seed, dtype=np.float64, bn="off", absolute=True)
    out, tape = net.forward(np.ones((1, *graph.shape(graph.input))))
    total = 0.0

    def add_term(n: int, g: np.ndarray) -> None:
        nonlocal total
        if n in net.weights:
            y = tape.values[n]
            bias = net.weights[n].get("bias")
            total += float(np.vdot(g, y if bias is None else y - bias))

    net.backward(tape, np.ones_like(out), weights=False, on_grad=add_term)
    return _log(total)


def _cross_entropy_grads(net: Network, x: np.ndarray, labels: np.ndarray):
    """Weight gradients of the mean cross-entropy of the batch (logits: the flat output)."""
    out, tape = net.forward(x)
    logits = out.reshape(len(x), -1).astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(x)), labels % logits.shape[1]] -= 1.0
    _, grads = net.backward(tape, (p / len(x)).reshape(out.shape))
    return grads


@_one_thread
def snip(graph: ArchGraph, x: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """SNIP saliency ``sum |theta * dL/dtheta|`` over conv and dense weights."""
    net = Network(graph, seed=seed)
    grads = _cross_entropy_grads(net, x, labels)
    return float(
        sum(np.abs(net.weights[n]["kernel"] * g["kernel"]).sum() for n, g in grads.items())
    )


@_one_thread
def grad_norm(graph: ArchGraph, x: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """The sum over conv and dense layers of the L2 norm of the loss gradient."""
    grads = _cross_entropy_grads(Network(graph, seed=seed), x, labels)
    return float(sum(np.linalg.norm(g["kernel"]) for g in grads.values()))


@_one_thread
def jacov(graph: ArchGraph, x: np.ndarray, seed: int = 0) -> float:
    """Jacobian covariance (Mellor et al. 2020, v1; NASLib's ``jacov``)."""
    net = Network(graph, seed=seed)
    out, tape = net.forward(x)
    jac, _ = net.backward(tape, np.ones_like(out), weights=False)
    corr = np.corrcoef(jac.reshape(len(x), -1).astype(np.float64))
    if not np.all(np.isfinite(corr)):
        return -1e9
    v = np.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-np.sum(np.log(v + k) + 1.0 / (v + k)))


@_one_thread
def naswot(graph: ArchGraph, x: np.ndarray, seed: int = 0) -> float:
    """NASWOT: log-determinant of the Hamming-similarity kernel of the ReLU codes."""
    net = Network(graph, seed=seed, bn="train")
    net.relu_inputs = []
    net.forward(x)
    if not net.relu_inputs:
        return 0.0
    c = np.concatenate([(v > 0).reshape(len(x), -1) for v in net.relu_inputs], 1)
    c = c.astype(np.float64)
    k = c @ c.T + (1.0 - c) @ (1.0 - c).T
    sign, logdet = np.linalg.slogdet(k)
    return float(logdet) if sign > 0 else -1e9


@functools.cache
def digits_batch(shape: tuple[int, ...], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` handwritten digits (scikit-learn) upsampled (nearest) to ``shape`` = (H, W, C),
    standardised: the fixed batch of the data-dependent proxies (no CIFAR-10 offline)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(seed).choice(len(d.images), n, replace=False)
    img = d.images[idx] / 16.0  # (n, 8, 8)
    h, w, c = shape
    rows = (np.arange(h) * 8 // h).clip(0, 7)
    cols = (np.arange(w) * 8 // w).clip(0, 7)
    x = img[:, rows][:, :, cols][..., None].repeat(c, -1)
    x = (x - x.mean()) / (x.std() + 1e-8)
    return x.astype(np.float32), d.target[idx].astype(np.int64)
