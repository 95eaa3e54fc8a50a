"""The ``supernet`` evaluator of the elastic spaces (OFA, BigNAS).

The first evaluation trains the space's elastic supernet (progressive shrinking for OFA,
the sandwich rule for BigNAS) for a fixed number of steps and saves it as
``<run folder>/supernet/supernet.safetensors``; later evaluations, and a resumed search,
load it. A candidate is then scored without training: its BatchNorm statistics are
recalibrated on a few training batches and the subnet's validation accuracy is measured with
the inherited weights. The child (the IR-built standalone model with those weights and
statistics) is written to the trial folder, so a trial exports like any other; the trial also
records the supernet's file (artifact ``supernet``), from which :meth:`ElasticSupernetEvaluator.
child_model` rebuilds that child when the trial folder is gone (``nas export`` does).

Costs are those of the network the genotype deploys as (the space's default dataset, e.g.
ImageNet at the genotype's resolution), not of the small proxy that trains the supernet, so
``--max-flops 300M`` means what it says; with a latency table (``latency_table="note10"`` or a
table from ``nas latency-table``) the cost includes ``latency`` in ms.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from nas.data import load_dataset
from nas.errors import ConfigError, StorageError
from nas.evaluators.base import EvalResult, Evaluator
from nas.space import Genotype, SearchSpace
from nas.weights import load_weights, save_weights


class ElasticSupernetEvaluator(Evaluator):
    """Scores subnets of a trained elastic supernet (inherited weights, BN recalibrated).

    Args:
        space: an elastic space with ``build_supernet`` and ``train_supernet`` hooks.
        dataset: the data that trains and validates the supernet (default ``digits``).
        steps: supernet training steps.
        batch_size: training batch.
        seed: initialisation, data order, subnet sampling.
        calib_batches: batches of training images for BN recalibration.
        supernet_path: a trained supernet's safetensors file (default: the run folder's).
        latency_table: ``note10``, or a table file/folder (adds ``latency`` to the cost).
        cost_dataset: dataset variant whose network the costs describe (default: the
            space's default dataset).
    """

    name = "supernet"

    def __init__(
        self,
        space: SearchSpace,
        dataset: str | None = None,
        steps: int = 120,
        batch_size: int = 64,
        seed: int = 0,
        calib_batches: int = 4,
        supernet_path: str | Path | None = None,
        latency_table: str | Path | None = None,
        cost_dataset: str | None = None,
        lr: float = 3e-3,
        data_dir: str | None = None,
    ) -> None:
        super().__init__(space, dataset or "digits")
        if steps < 1:
            raise ConfigError(f"supernet evaluator: steps must be positive, got {steps}")
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.lr = float(lr)
        self.calib_batches = int(calib_batches)
        self.supernet_path = Path(supernet_path) if supernet_path else None
        self.cost_dataset = space.check_dataset(cost_dataset or space.default_dataset)
        self.latency = None
        self.latency_name = str(latency_table) if latency_table else None
        if latency_table:
            from search_spaces.ofa.latency import load_table

            self.latency = load_table(latency_table)
        self.data = load_dataset(self.dataset, seed=self.seed, data_dir=data_dir)
        self.model: Any = None
        self.weights_path: Path | None = None
        self.train_summary: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "supernet": {
                "steps": self.steps,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "lr": self.lr,
                "calib_batches": self.calib_batches,
                "latency_table": self.latency_name,
                "cost_dataset": self.cost_dataset,
            },
        }

    # ------------------------------------------------------------------ supernet

    def _meta(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "dataset": self.dataset,
            "steps": self.steps,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def supernet(self, workdir: Path | None = None) -> Any:
        """The trained supernet: loaded from its file if there is one, else trained and
        saved (once per evaluator)."""
        if self.model is not None:
            return self.model
        path = self.supernet_path
        if path is None and workdir is not None:
            path = Path(workdir).parent.parent / "supernet" / "supernet.safetensors"
        model = self.space.build_supernet(self.dataset, seed=self.seed)  # type: ignore[attr-defined]
        self.weights_path = path.resolve() if path is not None else None
        if path is not None and path.exists():
            load_weights(model, path)
            meta = path.with_suffix(".json")
            if meta.exists():
                self.train_summary = json.loads(meta.read_text()).get("train", {})
        else:
            from search_spaces.ofa.train import ElasticTrainConfig

            cfg = ElasticTrainConfig(
                steps=self.steps, batch_size=self.batch_size, seed=self.seed, lr=self.lr
            )
            self.train_summary = self.space.train_supernet(model, self.data, cfg)  # type: ignore[attr-defined]
            if path is not None:
                save_weights(model, path, self._meta())
                path.with_suffix(".json").write_text(
                    json.dumps({**self._meta(), "train": self.train_summary}, indent=1)
                )
        self.model = model
        return model

    # ------------------------------------------------------------------ evaluation

    def cost(self, genotype: Genotype) -> dict[str, float]:
        g = self.space.to_graph(genotype, self.cost_dataset)
        out = {"params": g.params(), "flops": g.flops()}
        if self.latency is not None:
            out["latency"] = self.latency.predict_genotype(self.space, genotype)
        return out

    def _calibration(self) -> list[np.ndarray]:
        """The training batches that recalibrate BN (the same for every subnet)."""
        rng = np.random.default_rng(self.seed)
        n = len(self.data.x_train)
        bs = min(self.batch_size, n)
        idx = rng.permutation(n)[: bs * self.calib_batches]
        return [self.data.x_train[idx[i : i + bs]] for i in range(0, len(idx), bs)]

    def child_model(self, genotype: Genotype) -> Any:
        """The standalone IR-built model of ``genotype`` with the weights it inherits from the
        trained supernet (``supernet_path``), BatchNorm recalibrated exactly as
        :meth:`evaluate` does; the supernet's own statistics are left as they were. Never
        trains.

        Raises:
            StorageError: ``supernet_path`` is unset or missing (and no supernet is loaded).
        """
        from search_spaces.ofa.child import child_model
        from search_spaces.ofa.train import calibrate_bn, restore_bn

        path = self.supernet_path
        if self.model is None and (path is None or not path.exists()):
            raise StorageError(
                f"no trained supernet at {path}: the {self.space.name} supernet file is missing"
            )
        model = self.supernet()
        saved = calibrate_bn(model, model.arch(genotype), self._calibration())
        try:
            return child_model(model, self.space.to_graph(genotype, self.dataset))
        finally:
            restore_bn(model, saved)

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        from search_spaces.ofa.child import child_model
        from search_spaces.ofa.train import calibrate_bn, restore_bn, subnet_accuracy

        t0 = time.perf_counter()
        cost = self.cost(genotype)
        model = self.supernet(workdir)
        arch = model.arch(genotype)
        saved = calibrate_bn(model, arch, self._calibration())
        artifacts: dict[str, str] = {}
        if self.weights_path is not None:
            artifacts["supernet"] = str(self.weights_path)
        try:
            acc = subnet_accuracy(model, arch, self.data.x_val, self.data.y_val)
            if workdir is not None:
                graph = self.space.to_graph(genotype, self.dataset)
                child = child_model(model, graph)
                wd = Path(workdir)
                path = save_weights(
                    child,
                    wd / "weights.safetensors",
                    {"arch": genotype.to_str(), "space": self.space.name, "dataset": self.dataset},
                )
                (wd / "arch.json").write_text(graph.dumps())
                artifacts["weights"] = str(path)
                artifacts["graph"] = str(wd / "arch.json")
        finally:
            restore_bn(model, saved)
        return EvalResult(
            metrics={"accuracy": acc},
            cost=cost,
            duration=time.perf_counter() - t0,
            artifacts=artifacts,
        ).checked()
