"""The ``supernet`` evaluator for path-indexed weight-sharing supernets (SPOS, NAS-Bench-Macro).

The supernet is trained once (uniform single-path sampling, :class:`nas.oneshot.SupernetTrainer`)
or loaded from the run folder, where it is saved as safetensors under
``<run>/supernet/<space>-<dataset>-<hash of the settings>.safetensors`` (the run folder is
``run_dir``, else the parent of the trials folder of the first evaluation's workdir,
``<run>/trials/<n>``), so a resumed search or a second study in the same folder reuses it; every
``evaluate()`` then recalibrates BatchNorm on the candidate's path and measures its
validation accuracy with the inherited weights. The cost comes from the IR.

A trial records the supernet's file as its ``supernet`` artifact; :meth:`OneShotEvaluator.
child_model` turns a genotype into the standalone IR-built model with the weights it inherits
(BatchNorm recalibrated as for scoring), which is what ``nas export`` writes for such a trial.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from nas.data import Dataset, load_dataset
from nas.errors import ConfigError, StorageError
from nas.evaluators.base import EvalResult, Evaluator
from nas.oneshot import (
    PathEvaluator,
    PathSupernet,
    SupernetConfig,
    SupernetTrainer,
    calibration_batches,
    extract_model,
)
from nas.space import Genotype, SearchSpace
from nas.weights import load_weights, save_weights

TRAINABLE = ("digits", "cifar10")
"""Datasets :func:`nas.data.load_dataset` can train on."""


class OneShotEvaluator(Evaluator):
    """Scores genotypes with a trained weight-sharing supernet.

    Args:
        space: the search space.
        dataset: training data and network variant (default ``digits``).
        build: ``build(dataset, seed) -> PathSupernet`` (a fresh, untrained supernet).
        config: supernet training and evaluation settings (``steps`` etc. may also be passed
            as keyword options, as the CLI does).
        run_dir: where the trained supernet is saved and looked for (default: the run folder
            of the first evaluation's workdir; in memory only when there is neither).
        supernet_path: the trained supernet's safetensors file itself (overrides ``run_dir``'s
            file name; a trial's ``supernet`` artifact).
        data_dir: local CIFAR-10 folder for ``dataset='cifar10'``.
        data: a ready :class:`~nas.data.Dataset` instead of loading ``dataset``.
        verbose: print training progress to stderr.
    """

    name = "supernet"

    def __init__(
        self,
        space: SearchSpace,
        dataset: str | None,
        build: Callable[..., PathSupernet],
        config: SupernetConfig | None = None,
        run_dir: str | Path | None = None,
        supernet_path: str | Path | None = None,
        data_dir: str | None = None,
        data: Dataset | None = None,
        verbose: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(space, dataset or "digits")
        if data is None and self.dataset not in TRAINABLE:
            raise ConfigError(
                f"the supernet evaluator trains on the data: {self.dataset!r} has none here; "
                f"use --dataset {' or '.join(TRAINABLE)}"
            )
        known = {f.name for f in fields(SupernetConfig)}
        overrides = {k: v for k, v in options.items() if k in known and v is not None}
        base = config or SupernetConfig()
        self.config = SupernetConfig(**{**base.to_json(), **overrides})
        self.build = build
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.supernet_path = Path(supernet_path) if supernet_path is not None else None
        self.data_dir = data_dir
        self._data = data
        self.verbose = verbose
        self._model: PathSupernet | None = None
        self._path_eval: PathEvaluator | None = None
        self.train_metrics: dict[str, float] = {}
        self.weights_path: Path | None = None

    # ---------------------------------------------------------------- supernet

    @property
    def data(self) -> Dataset:
        if self._data is None:
            self._data = load_dataset(self.dataset, seed=self.config.seed, data_dir=self.data_dir)
        return self._data

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "supernet": self.config.to_json()}

    def _key(self) -> str:
        train = {
            k: v for k, v in self.config.to_json().items() if not k.startswith(("calib", "eval"))
        }
        blob = json.dumps(
            {"space": self.space.name, "dataset": self.dataset, **train}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def supernet_file(self) -> Path | None:
        """Where the trained supernet of these settings lives in the run folder."""
        if self.supernet_path is not None:
            return self.supernet_path
        if self.run_dir is None:
            return None
        return (
            self.run_dir
            / "supernet"
            / f"{self.space.name}-{self.dataset}-{self._key()}.safetensors"
        )

    def supernet(self, workdir: Path | None = None) -> PathSupernet:
        """The trained supernet: loaded from the run folder, else trained (and saved) now."""
        if self._model is not None:
            return self._model
        if self.run_dir is None and workdir is not None:
            trials = Path(workdir).resolve().parent
            if trials.name == "trials":  # the search loop's <run>/trials/<n>
                self.run_dir = trials.parent
        cfg = self.config
        model = self.build(self.dataset, cfg.seed)
        path = self.supernet_file()
        data = self.data
        if path is not None and path.exists():
            load_weights(model, path)
            meta = path.with_suffix(".json")
            self.train_metrics = json.loads(meta.read_text()) if meta.exists() else {}
        else:
            log = None
            if self.verbose:
                import sys

                def log(i: int, loss: float, acc: float) -> None:
                    if i % 50 == 0 or i == cfg.steps - 1:
                        print(f"supernet step {i}: loss {loss:.3f} acc {acc:.3f}", file=sys.stderr)

            trainer = SupernetTrainer(model, cfg)
            self.train_metrics = trainer.fit(data.x_train, data.y_train, log)
            if path is not None:
                save_weights(
                    model,
                    path,
                    {"space": self.space.name, "dataset": self.dataset, "config": cfg.to_json()},
                )
                path.with_suffix(".json").write_text(json.dumps(self.train_metrics, indent=1))
        self.weights_path = path
        x_val, y_val = data.x_val, data.y_val
        if cfg.eval_limit:
            x_val, y_val = x_val[: cfg.eval_limit], y_val[: cfg.eval_limit]
        calib = calibration_batches(data.x_train, cfg.calib_batches, cfg.calib_batch_size, cfg.seed)
        self._path_eval = PathEvaluator(model, calib, x_val, y_val, cfg.eval_batch_size)
        self._model = model
        return model

    @property
    def path_evaluator(self) -> PathEvaluator:
        self.supernet()
        assert self._path_eval is not None
        return self._path_eval

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        model = self.supernet(workdir)
        t0 = time.perf_counter()
        path = model.path_of(genotype)
        accuracy = self.path_evaluator(path)
        artifacts = {"supernet": str(self.weights_path)} if self.weights_path else {}
        return EvalResult(
            metrics={"accuracy": accuracy},
            cost=self.cost(genotype),
            duration=time.perf_counter() - t0,
            artifacts=artifacts,
        ).checked()

    def evaluate_many(self, genotypes: list[Genotype]) -> np.ndarray:
        """Accuracies (%) of several genotypes (one recalibration each)."""
        model = self.supernet()
        return np.array([self.path_evaluator(model.path_of(g)) for g in genotypes])

    def child_model(self, genotype: Genotype):
        """The standalone IR-built model of ``genotype`` with the weights it inherits from the
        trained supernet, BatchNorm recalibrated on its path exactly as :meth:`evaluate` does
        (so it scores the trial's accuracy on the validation data). Never trains.

        Raises:
            StorageError: there is no trained supernet file (``supernet_path`` or the run
                folder's) to load.
        """
        file = self.supernet_file()
        if self._model is None and (file is None or not file.exists()):
            raise StorageError(
                f"no trained supernet at {file}: the {self.space.name} supernet file is missing"
            )
        model = self.supernet()
        path = model.path_of(genotype)
        self.path_evaluator.recalibrate(path)
        return extract_model(model, self.space.to_graph(genotype, self.dataset), path)


class SupernetEvaluator(Evaluator):
    """The registered ``supernet`` evaluator: the space's own weight-sharing evaluator.

    Interim dispatcher (the one-evaluator redesign of the supernet issue replaces it): the
    space's ``supernet_evaluator`` builds the evaluator of its family, which does the work;
    this class gives it the registry's construction shape and refuses option keys that
    family does not take.
    """

    name = "supernet"
    SHARED = ("steps", "batch_size", "lr", "calib_batches", "supernet_path", "run_dir")
    PATH_KEYS = tuple(f.name for f in fields(SupernetConfig) if f.name != "seed")
    ELASTIC_KEYS = ("latency_table", "cost_dataset")

    def __init__(self, space: SearchSpace, dataset: str | None = None, **kwargs: Any) -> None:
        options = dict(kwargs.pop("options", None) or {})
        if not callable(getattr(space, "supernet_evaluator", None)):
            raise ConfigError(f"space {space.name!r} has no weight-sharing supernet")
        elastic = hasattr(space, "build_supernet")
        valid = set(self.SHARED) | set(self.ELASTIC_KEYS if elastic else self.PATH_KEYS)
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(
                f"supernet evaluator options: unknown key {unknown[0][:40]!r}; valid keys: "
                f"{', '.join(sorted(valid - {'run_dir'}))}"
            )
        seed = kwargs.get("seed", 0)
        run_dir = kwargs.get("run_dir")
        if not elastic and run_dir is not None:
            options.setdefault("run_dir", run_dir)
        self.inner = space.supernet_evaluator(
            dataset, seed=seed, data_dir=kwargs.get("data_dir"), **options
        )
        self.space = space
        self.dataset = self.inner.dataset
        self.seed = seed
        self.options = options

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        return self.inner.evaluate(genotype, workdir)

    def cost(self, genotype: Genotype) -> dict[str, float]:
        return self.inner.cost(genotype)

    def settings(self) -> dict[str, Any]:
        return self.inner.settings()

    def child_model(self, genotype: Genotype) -> Any:
        return self.inner.child_model(genotype)

    def __getattr__(self, name: str) -> Any:  # the family evaluator's own methods
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
