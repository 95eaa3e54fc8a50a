"""The ``supernet`` evaluator: one for every weight-sharing space.

A space with a supernet declares it (``SearchSpace.supernet``, see :mod:`nas.supernet`);
this evaluator owns the rest, whatever the family (SPOS and NAS-Bench-Macro paths, OFA and
BigNAS elastic subnets):

- **load or train**: the trained supernet lives in the run folder as
  ``<run>/supernet/<space>-<dataset>-<key>.safetensors``, where ``<key>`` hashes every setting
  that changes the weights (space, supernet class, dataset, seed, the resolved training
  options, training resolutions). A resumed search or a second study with the same settings
  reuses it; other settings train their own. Workers of one search that find no file take
  turns under a lock (``<...>.lock``): one trains, the others then load its file, which is
  written under a temporary name and renamed into place. Training checkpoints with orbax into
  ``<...>.ckpt/`` every ``checkpoint_every`` steps and on SIGTERM, and a killed training
  resumes from there (:func:`nas.training.run_training`); a rich progress bar shows steps/s
  and the loss.
- **score**: BatchNorm recalibrated on fixed training images at the genotype's resolution,
  then top-1 validation accuracy at that resolution with the inherited weights.
- **export**: the child (the IR-built standalone model carrying the inherited weights and
  recalibrated statistics) is written to the trial folder; :meth:`SupernetEvaluator.
  child_model` rebuilds it from the supernet file (``nas export`` does).

Costs describe the network the genotype deploys as: for elastic spaces the space's default
dataset (ImageNet at the genotype's resolution), so ``--max-flops 300M`` means what it says;
with a latency table (``latency_table="note10"`` or a file) they include ``latency`` (ms),
infinite at a resolution the table does not price (outside any ``--max-latency``; a trial
there fails, saying so).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nas.errors import ConfigError, InvalidGenotype, StorageError
from nas.evaluators.base import EvalResult, Evaluator
from nas.options import positive
from nas.space import Genotype, SearchSpace
from nas.training import TrainingOptions

FORMAT = 2
"""Bumped when the saved supernet's meaning changes (old files are then not reused)."""


@dataclass(frozen=True)
class SupernetOptions:
    """Options of the ``supernet`` evaluator.

    The training fields are :class:`nas.training.TrainingOptions`'; left unset (``None``) they
    take the family's defaults (the paper's optimiser and schedule: SPOS's, OFA's per-phase
    ones, BigNAS's).

    Attributes:
        checkpoint_every: orbax checkpoint every this many training steps.
        resolutions: the resolutions training samples from (elastic spaces; default the
            family's: OFA 128-224, BigNAS 192-320).
        calib_batches: fixed training batches that recalibrate BatchNorm per genotype.
        calib_batch_size: images per calibration batch.
        eval_batch_size: images per evaluation batch.
        eval_limit: score on at most this many validation images (0: all).
        latency_table: ``note10`` or a table file/folder (adds ``latency`` to the cost).
        cost_dataset: the network variant the costs describe (default: the space's
            default dataset for elastic spaces, the evaluator's dataset otherwise).
        supernet_file: a trained supernet's safetensors file (default: the run folder's).
        save_children: write each trial's child weights into its folder.
        progress: show a progress bar while training.
    """

    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: Literal["sgd", "adamw", "rmsprop"] | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    schedule: Literal["cosine", "linear", "exponential", "constant"] | None = None
    warmup: int | None = None
    label_smoothing: float | None = None
    grad_clip: float | None = None
    checkpoint_every: int = 50
    resolutions: tuple[int, ...] = ()
    calib_batches: int = 4
    calib_batch_size: int = 64
    eval_batch_size: int = 256
    eval_limit: int = 0
    latency_table: str = ""
    cost_dataset: str = ""
    supernet_file: str = ""
    save_children: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "eval_limit"):
            positive(name, getattr(self, name), allow_zero=True)
        for name in ("calib_batches", "calib_batch_size", "eval_batch_size"):
            positive(name, getattr(self, name))
        for r in self.resolutions:
            positive("resolutions", r)

    def training(self, defaults: TrainingOptions) -> TrainingOptions:
        """``defaults`` with every training option that is set here."""
        mine = {f.name for f in fields(self)}
        given = {
            f.name: getattr(self, f.name)
            for f in fields(TrainingOptions)
            if f.name in mine and getattr(self, f.name) is not None
        }
        return replace(defaults, **{**given, "checkpoint_every": self.checkpoint_every})

    def to_json(self) -> dict[str, Any]:
        """The options that differ from the defaults (what rebuilds this evaluator)."""
        d = asdict(self)
        base = asdict(SupernetOptions())
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items() if v != base[k]}


def _local_dataset(space: SearchSpace, data_dir: str) -> str:
    """The dataset a ``--data-dir`` given without ``--dataset`` holds, for a supernet: a
    CIFAR-10/100 folder the space has a network for (:func:`nas.localdata.local_kind`).

    Raises:
        ConfigError: anything else (a supernet is one of the space's network variants, with
            its classes and input size; an image folder or ``.npz`` file has none).
    """
    from nas.localdata import local_kind

    kind = local_kind(data_dir)
    if kind in ("cifar10", "cifar100") and kind in space.datasets:
        return kind
    what = {None: "no data this reads", "arrays": "an .npz file", "images": "an image folder"}
    raise ConfigError(
        f"--data-dir {str(data_dir)[:80]} is {what.get(kind, f'a {kind} folder')}: the supernet "
        f"evaluator trains {space.name}'s network for one of "
        f"{', '.join(d for d in space.datasets)}; train on it with --evaluator train, or give "
        f"--dataset"
    )


class SupernetEvaluator(Evaluator):
    """Scores genotypes with the space's trained weight-sharing supernet (inherited
    weights, BatchNorm recalibrated per genotype, at the genotype's resolution)."""

    name = "supernet"
    Options = SupernetOptions

    def __new__(cls, space: SearchSpace, *args: Any, **kwargs: Any) -> Any:
        if not type(space).supernet and callable(getattr(space, "supernet_evaluator", None)):
            # a family that brings its own evaluator (gpt, until it implements the protocol)
            from nas.evaluators.family import FamilyEvaluator

            return FamilyEvaluator(space, *args, **kwargs)
        return super().__new__(cls)

    def __getnewargs__(self) -> tuple[Any, ...]:
        # Unpickling (a Ray worker) calls ``__new__`` with these: it dispatches on the space.
        return (self.space,)

    def __init__(
        self,
        space: SearchSpace,
        dataset: str | None = None,
        *,
        seed: int = 0,
        data_dir: str | None = None,
        run_dir: str | Path | None = None,
        options: Any = None,
    ) -> None:
        from nas import registry
        from nas.supernet import supernet_class

        self.supernet_cls = supernet_class(space)  # a space without one: ConfigError
        if dataset is None and data_dir is not None:
            dataset = _local_dataset(space, data_dir)
        super().__init__(
            space, dataset or "digits", seed=seed, data_dir=data_dir, run_dir=run_dir,
            options=options,
        )  # fmt: skip
        if self.dataset not in registry.entries("datasets"):
            raise ConfigError(
                f"the supernet evaluator trains on the data: {self.dataset!r} has none; use "
                f"--dataset {' or '.join(d for d in registry.names('datasets') if d in space.datasets)}"
            )
        opts: SupernetOptions = self.options
        self.training_options = opts.training(self.supernet_cls.defaults)
        deploy = self.supernet_cls.cost_on_default_dataset
        default_cost = space.default_dataset if deploy else self.dataset
        self.cost_dataset = space.check_dataset(opts.cost_dataset or default_cost)
        self.latency = None
        if opts.latency_table:
            from nas.search_spaces.ofa.latency import load_table

            self.latency = load_table(opts.latency_table)
        self._sn: Any = None
        self._spec: Any = None
        self._data: Any = None
        self.weights_path: Path | None = None
        self.train_summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ settings

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "supernet": self.options.to_json(), "seed": self.seed}

    def key(self) -> str:
        """A hash of every setting that changes the trained weights."""
        blob = {
            "format": FORMAT,
            "space": self.space.name,
            "supernet": self.space.supernet,
            "dataset": self.dataset,
            "seed": self.seed,
            "training": {
                k: v for k, v in self.training_options.to_json().items() if k != "checkpoint_every"
            },
            "resolutions": list(self.options.resolutions),
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]

    def supernet_file(self) -> Path | None:
        """Where the trained supernet of these settings lives (``None``: nowhere)."""
        if self.options.supernet_file:
            return Path(self.options.supernet_file)
        if self.run_dir is None:
            return None
        return (
            self.run_dir / "supernet" / f"{self.space.name}-{self.dataset}-{self.key()}.safetensors"
        )

    # ------------------------------------------------------------------ data

    @property
    def data(self) -> Any:
        if self._data is None:
            from nas.data import load_dataset

            self._data = load_dataset(self.dataset, seed=self.seed, data_dir=self.data_dir)
        return self._data

    @property
    def spec(self) -> Any:
        if self._spec is None:
            from nas import registry
            from nas.data import DatasetSpec

            spec = registry.load("datasets", self.dataset)
            self._spec = spec if isinstance(spec, DatasetSpec) else spec()
        return self._spec

    # ------------------------------------------------------------------ supernet

    def supernet(self, workdir: Path | None = None) -> Any:
        """The trained supernet (:class:`nas.supernet.Supernet`): loaded from its file, else
        trained now (resuming a checkpoint) and saved."""
        if self._sn is not None:
            return self._sn
        if self.run_dir is None and workdir is not None:
            trials = Path(workdir).resolve().parent
            if trials.name == "trials":  # the search loop's <run>/trials/<n>
                self.run_dir = trials.parent
        sn = self.supernet_cls(self.space, self.dataset, self.seed)
        if self.options.resolutions:
            sn.train_resolutions = tuple(self.options.resolutions)
        path = self.supernet_file()
        if path is None:
            self.train_summary = self._train(sn, None)
        elif path.exists():  # whole: it is renamed into place once written
            self._restore(sn, path)
        else:
            from nas.files import exclusive

            # workers of one search take turns: the first trains and saves, the others
            # wait for it, then load its file
            wait = f"waiting for another worker training the {self.space.name} supernet ({path})"
            with exclusive(path.with_suffix(".lock"), wait):
                if path.exists():
                    self._restore(sn, path)
                else:
                    self.train_summary = self._train(sn, path)
        self.weights_path = path.resolve() if path is not None else None
        self._sn = sn
        return sn

    def _restore(self, sn: Any, path: Path) -> None:
        sn.restore(path)
        meta = path.with_suffix(".json")
        self.train_summary = json.loads(meta.read_text()).get("train", {}) if meta.exists() else {}

    def _train(self, sn: Any, path: Path | None) -> dict[str, Any]:
        from nas.checkpoint import Checkpointer
        from nas.pipeline import Batches
        from nas.training import run_training

        opts = self.training_options
        data = self.data
        augment = self.spec.augment if sn.augments else None
        batches = Batches(
            data.x_train, data.y_train, opts.batch_size, self.seed, augment, sn.channels
        )
        ckpt = None
        if path is not None:
            ckpt = Checkpointer(path.with_suffix(".ckpt"), every=opts.checkpoint_every)
        task = sn.training(opts, self.seed)
        label = f"{self.space.name} supernet"
        try:
            summary = run_training(
                task, batches, opts.steps, checkpointer=ckpt, progress=self.options.progress,
                label=label,
            )  # fmt: skip
        finally:
            if ckpt is not None:
                ckpt.close()
        summary["traces"] = task.traces
        if path is not None:
            from nas.files import write_atomically

            meta = {"space": self.space.name, "dataset": self.dataset, "key": self.key()}
            doc = json.dumps({**meta, "training": opts.to_json(), "train": summary}, indent=1)
            write_atomically(path.with_suffix(".json"), lambda p: p.write_text(doc))
            # the weights last: their file's existence means the supernet is trained
            write_atomically(path, lambda p: sn.save(p, {**meta, "training": opts.to_json()}))
            shutil.rmtree(path.with_suffix(".ckpt"), ignore_errors=True)
        return summary

    # ------------------------------------------------------------------ scoring

    def cost(self, genotype: Genotype) -> dict[str, float]:
        g = self.space.to_graph(genotype, self.cost_dataset)
        out = {"params": g.params(), "flops": g.flops()}
        if self.latency is not None:
            r = int(genotype.resolution)  # type: ignore[attr-defined]
            # a resolution the table does not price is outside every latency limit (OFA's
            # finder, likewise, draws only its table's resolutions)
            priced = self.latency.prices(r)
            out["latency"] = (
                self.latency.predict_genotype(self.space, genotype) if priced else math.inf
            )
        return out

    def calibrate(self, genotype: Genotype) -> None:
        """Recompute the genotype's BatchNorm statistics on the fixed calibration images, at
        its resolution (the same images for every genotype)."""
        from nas.pipeline import fixed_batches

        sn = self.supernet()
        o = self.options
        batches = fixed_batches(
            self.data.x_train, o.calib_batches, o.calib_batch_size, self.seed,
            sn.resolution(genotype), self._eval_augment(), sn.channels,
        )  # fmt: skip
        sn.calibrate(genotype, batches)

    def _eval_augment(self) -> Any:
        from nas.pipeline import NO_AUGMENT

        return self.spec.augment or NO_AUGMENT

    def accuracy(self, genotype: Genotype) -> float:
        """Top-1 validation accuracy (%) at the genotype's resolution after calibration."""
        from nas.pipeline import eval_view

        sn = self.supernet()
        self.calibrate(genotype)
        x, y = self.data.x_val, self.data.y_val
        if self.options.eval_limit:
            x, y = x[: self.options.eval_limit], y[: self.options.eval_limit]
        r, aug, bs = sn.resolution(genotype), self._eval_augment(), self.options.eval_batch_size
        bs = min(bs, len(x))
        correct = 0
        for i in range(0, len(x), bs):
            xb = x[i : i + bs]
            n = len(xb)
            if n < bs:  # the same shape as the other batches: one compile
                xb = np.concatenate([xb, np.zeros((bs - n,) + xb.shape[1:], xb.dtype)])
            logits = sn.logits(genotype, eval_view(xb, r, aug, sn.channels))
            correct += int(np.sum(np.argmax(logits[:n], -1) == y[i : i + n]))
        return 100.0 * correct / len(x)

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        if not self.space.contains(genotype):  # before any training
            raise InvalidGenotype(f"{self.space.name}: not one of its genotypes: {genotype!r:.80}")
        t0 = time.perf_counter()
        cost = self.cost(genotype)
        if not math.isfinite(cost.get("latency", 0.0)):
            return EvalResult.failure(
                f"latency table {self.latency.name} has no entries for resolution "
                f"{genotype.resolution} (set a latency limit, or measure one with `nas "
                "latency-table --resolutions ...`)"
            )
        sn = self.supernet(workdir)
        acc = self.accuracy(genotype)
        artifacts: dict[str, str] = {}
        if self.weights_path is not None:
            artifacts["supernet"] = str(self.weights_path)
        if workdir is not None and self.options.save_children:
            from nas.weights import save_weights

            graph = self.space.to_graph(genotype, self.dataset)
            wd = Path(workdir)
            meta = {"arch": genotype.to_str(), "space": self.space.name, "dataset": self.dataset}
            path = save_weights(sn.child(genotype, graph), wd / "weights.safetensors", meta)
            (wd / "arch.json").write_text(graph.dumps())
            artifacts["weights"] = str(path)
            artifacts["graph"] = str(wd / "arch.json")
        return EvalResult(
            metrics={"accuracy": acc}, cost=cost, duration=time.perf_counter() - t0,
            artifacts=artifacts,
        ).checked()  # fmt: skip

    def child_model(self, genotype: Genotype) -> Any:
        """The standalone IR-built model of ``genotype`` with the weights it inherits from the
        trained supernet, BatchNorm recalibrated exactly as :meth:`evaluate` does. Never
        trains.

        Raises:
            StorageError: there is no trained supernet file to load.
        """
        file = self.supernet_file()
        if self._sn is None and (file is None or not file.exists()):
            raise StorageError(
                f"no trained supernet at {file}: the {self.space.name} supernet file is missing"
            )
        sn = self.supernet()
        self.calibrate(genotype)
        return sn.child(genotype, self.space.to_graph(genotype, self.dataset))


__all__ = ["SupernetEvaluator", "SupernetOptions"]
