"""Training and scoring the ``gpt`` supernet: the sandwich rule with in-place distillation.

Each step draws one batch of byte windows and trains, in one compiled program, the largest
child on the next bytes (cross-entropy) and the smallest child plus ``random_children``
random children on the largest child's predicted distribution (cross-entropy against its
softmax, gradient stopped: BigNAS's in-place distillation); the summed loss makes one
AdamW update. Children enter the program as arrays (:class:`~nas.search_spaces.gpt.supernet.Arch`),
so every sandwich step, whatever children it draws, runs the same compiled step. The first
``dense_fraction`` of the steps train the largest child alone (its own compiled step);
``random_children=-1`` trains the largest child alone throughout (a dense model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from nas.search_spaces.gpt.space import GPTGenotype
from nas.search_spaces.gpt.supernet import Arch, GPTSupernet, stack_archs

from nas.corpus import TextCorpus
from nas.errors import ConfigError
from nas.lm import LN2, LMConfig, Windows, bits_per_byte, eval_windows, optimizer
from nas.options import positive


@dataclass(frozen=True)
class SupernetConfig(LMConfig):
    """:class:`nas.lm.LMConfig` plus the sandwich settings.

    Attributes:
        random_children: children drawn per step besides the largest and the smallest
            (``-1``: the largest alone, dense training).
        dense_fraction: the first steps (this share of ``steps``) train the largest child
            alone, as OFA trains its full network before the elastic phases: a short
            training otherwise spends most of its gradient on children distilling from a
            teacher that has not learned yet.
    """

    random_children: int = 2
    dense_fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("random_children + 1", self.random_children + 1, allow_zero=True)
        if not 0.0 <= self.dense_fraction < 1.0:
            raise ConfigError(f"dense_fraction must be in [0, 1), got {self.dense_fraction}")


class SupernetTrainer:
    """Trains a :class:`GPTSupernet` in place (see the module docstring).

    Attributes:
        traces: how many times the training step was traced: one for the sandwich steps
            whatever children they draw (and one more for a dense warm-up).
    """

    def __init__(self, supernet: GPTSupernet, cfg: SupernetConfig) -> None:
        self.supernet, self.cfg = supernet, cfg
        self.graphdef, self.params, self.rest = nnx.split(supernet, nnx.Param, ...)
        self.tx = optimizer(cfg)
        self.opt_state = self.tx.init(self.params)
        self.traces = 0
        self._step = jax.jit(self._train_step, donate_argnums=(0, 1))

    def _train_step(self, params, opt_state, x, y, children: Arch):
        """One update; ``children[0]`` is the teacher (the largest child), the rest learn
        its distribution. One scan over the children keeps one forward in the program."""
        self.traces += 1

        def loss_fn(p):
            model = nnx.merge(self.graphdef, p, self.rest)
            vocab = model.tok.shape[0]

            def child(carry, inputs):
                total, soft, first_loss = carry
                i, arch = inputs
                logp = jax.nn.log_softmax(model(x, arch))
                hard = -jnp.take_along_axis(logp, y[..., None], -1).mean()
                distil = -(soft * logp).sum(-1).mean()
                loss = jnp.where(i == 0, hard, distil)
                soft = jnp.where(i == 0, jax.lax.stop_gradient(jnp.exp(logp)), soft)
                first_loss = jnp.where(i == 0, hard, first_loss)
                return (total + loss, soft, first_loss), None

            init = (jnp.float32(0.0), jnp.zeros((*x.shape, vocab)), jnp.float32(0.0))
            n = children.d.shape[0]
            (total, _, hard), _ = jax.lax.scan(child, init, (jnp.arange(n), children))
            return total, hard

        (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def children(self, rng: np.random.Generator, dense: bool = False) -> Arch:
        """The step's children, stacked: the largest (the teacher), the smallest and
        ``random_children`` random ones (the largest alone for dense training)."""
        space, sn = self.supernet.space, self.supernet
        known = space.known()
        picks = [known["max"]]
        if self.cfg.random_children >= 0 and not dense:
            picks += [known["min"]] + [space.sample(rng) for _ in range(self.cfg.random_children)]
        return stack_archs([sn.encode(g) for g in picks])

    def fit(
        self, corpus: TextCorpus, progress: Callable[[int, float], None] | None = None
    ) -> dict[str, float]:
        """Run ``cfg.steps`` steps; returns the largest child's final training loss (bits per
        byte, mean of the last tenth of the steps) and the wall time."""
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed)
        windows = Windows(corpus.train, self.supernet.space.context, cfg.batch_size, cfg.seed)
        losses = []
        t0 = time.perf_counter()
        dense_steps = int(cfg.dense_fraction * cfg.steps)
        for i in range(cfg.steps):
            x, y = windows.next()
            children = self.children(rng, dense=i < dense_steps)
            self.params, self.opt_state, loss = self._step(
                self.params, self.opt_state, jnp.asarray(x), jnp.asarray(y), children
            )
            losses.append(loss)
            if progress is not None:
                progress(i, float(loss) / LN2)
        nnx.update(self.supernet, self.params)
        tail = [float(v) for v in losses[-max(1, cfg.steps // 10) :]]
        return {
            "train_bits_per_byte": float(np.mean(tail)) / LN2,
            "train_seconds": time.perf_counter() - t0,
            "steps": cfg.steps,
        }


class ChildScorer:
    """Bits per byte of any child on fixed validation windows, one compiled forward."""

    def __init__(self, supernet: GPTSupernet, corpus: TextCorpus, cfg: LMConfig) -> None:
        self.supernet = supernet
        self.x, self.y = eval_windows(corpus.val, supernet.space.context, cfg.eval_bytes)
        self.batch = cfg.eval_batch_size
        self.graphdef, self.state = nnx.split(supernet)
        self._fn = jax.jit(lambda st, x, arch: nnx.merge(self.graphdef, st)(x, arch))

    def refresh(self) -> None:
        """Read the supernet's weights again (after more training)."""
        self.graphdef, self.state = nnx.split(self.supernet)

    def __call__(self, genotype: GPTGenotype) -> float:
        arch = self.supernet.encode(genotype)
        return bits_per_byte(lambda xb: self._fn(self.state, xb, arch), self.x, self.y, self.batch)

    def summary(self) -> dict[str, Any]:
        return {"windows": len(self.x), "bytes": int(self.x.size)}
