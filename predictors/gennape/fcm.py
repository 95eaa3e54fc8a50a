"""Fuzzy c-means clustering (Bezdek) in numpy, and its membership function."""

from __future__ import annotations

import numpy as np


def memberships(x: np.ndarray, centers: np.ndarray, m: float = 2.0) -> np.ndarray:
    """Fuzzy membership ``u[i, k]`` of each row of ``x`` in each cluster (rows sum to 1).

    ``u[i, k] = 1 / sum_j (d_ik / d_ij) ** (2 / (m - 1))`` with Euclidean distances ``d``.
    """
    d2 = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(-1) + 1e-12
    inv = d2 ** (-1.0 / (m - 1.0))
    return inv / inv.sum(1, keepdims=True)


def fuzzy_cmeans(
    x: np.ndarray,
    k: int,
    m: float = 2.0,
    iters: int = 100,
    tol: float = 1e-6,
    seed: int = 0,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster ``x`` into ``k`` fuzzy clusters. Returns ``(centers, memberships)``.

    Alternates the two optimality conditions of the FCM objective
    ``sum_ik u_ik^m ||x_i - c_k||^2``: centers as ``u^m``-weighted means, memberships as above.
    Initialised with k-means++-style seeding so that runs are deterministic in ``seed``, or
    from the centres ``init`` (which keeps each cluster's identity: a refinement).
    """
    x = np.asarray(x, np.float64)
    n = len(x)
    if init is not None:
        c = np.asarray(init, np.float64)
    else:
        k = max(1, min(k, n))
        rng = np.random.default_rng(seed)
        centers = [x[rng.integers(n)]]
        for _ in range(1, k):
            d2 = np.min(((x[:, None] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
            centers.append(x[rng.choice(n, p=p)])
        c = np.array(centers)
    u = memberships(x, c, m)
    for _ in range(iters):
        w = u**m
        c_new = (w.T @ x) / w.sum(0)[:, None]
        u = memberships(x, c_new, m)
        shift = np.abs(c_new - c).max()
        c = c_new
        if shift < tol:
            break
    return c, u


def membership_entropy(u: np.ndarray) -> float:
    """Mean entropy of membership rows, divided by ``log k``: 0 when every point belongs
    to one cluster, 1 when memberships are uniform (the centres tell nothing apart)."""
    u = np.clip(np.asarray(u, np.float64), 1e-12, 1.0)
    k = u.shape[1]
    return float((-(u * np.log(u)).sum(1)).mean() / np.log(k)) if k > 1 else 0.0
