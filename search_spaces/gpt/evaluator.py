"""The ``supernet`` evaluator of the ``gpt`` spaces: children scored in bits per byte.

The first evaluation trains the space's supernet on the corpus (``stdlib``, or ``text``
with ``data_dir``) with the sandwich rule (``train.py``) and saves it in the run folder as
``supernet/<space>-<dataset>-<key>.safetensors``, the key a hash of every setting that
changes the weights (space, corpus fingerprint, training options, seed), so a resumed search
reuses it and a search with other settings does not. A child is then scored without
training: bits per byte on the validation windows with the weights it inherits. Its
standalone model (the IR-built child with those weights, equal to the supernet's outputs)
is written to the trial folder, so ``nas export`` writes it as flax weights, source or ONNX;
:meth:`GPTSupernetEvaluator.child_model` rebuilds it from the supernet file alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.search_spaces.gpt.supernet import GPTSupernet
from nas.search_spaces.gpt.train import ChildScorer, SupernetConfig, SupernetTrainer

from nas.corpus import TextCorpus
from nas.data import load_dataset
from nas.errors import StorageError
from nas.evaluators.base import EvalResult, Evaluator
from nas.options import positive
from nas.space import Genotype, SearchSpace


@dataclass(frozen=True)
class GPTSupernetOptions:
    """Options of the gpt ``supernet`` evaluator (``[evaluator_options]``).

    Attributes:
        steps: supernet training steps (sandwich: largest, smallest, random children).
        batch_size: byte windows per step.
        lr: peak AdamW learning rate (warm-up, cosine decay).
        warmup: warm-up steps.
        random_children: random children per step besides the largest and the smallest.
        dense_fraction: the share of the steps, first, that train the largest child alone.
        eval_bytes: validation bytes each child is scored on (0: all).
        supernet_path: a trained supernet file to load instead of the run folder's.
        latency_table: a table from ``nas latency-table --space gpt`` (adds ``latency``, ms,
            to the cost).
    """

    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 20
    random_children: int = 2
    dense_fraction: float = 0.5
    eval_bytes: int = 32768
    supernet_path: str = ""
    latency_table: str = ""

    def __post_init__(self) -> None:
        positive("steps", self.steps)
        positive("batch_size", self.batch_size)
        positive("lr", self.lr)
        positive("eval_bytes", self.eval_bytes, allow_zero=True)


class GPTSupernetEvaluator(Evaluator):
    """Scores ``gpt`` children with a trained weight-sharing supernet (bits per byte)."""

    name: ClassVar[str] = "supernet"
    Options: ClassVar[type] = GPTSupernetOptions
    metrics: ClassVar[dict[str, str]] = {"bits_per_byte": "minimize"}

    def __init__(
        self, space: SearchSpace, dataset: str | None = None, *, verbose: bool = True, **kw: Any
    ) -> None:
        super().__init__(space, dataset, **kw)
        o = self.options
        self.config = SupernetConfig(
            steps=o.steps,
            batch_size=o.batch_size,
            lr=o.lr,
            warmup=min(o.warmup, o.steps),
            eval_bytes=o.eval_bytes,
            random_children=o.random_children,
            dense_fraction=o.dense_fraction,
            seed=self.seed,
        )
        self.verbose = verbose
        self._corpus: TextCorpus | None = None
        self._supernet: GPTSupernet | None = None
        self._scorer: ChildScorer | None = None
        self.weights_path: Path | None = None
        self.train_summary: dict[str, Any] = {}
        self.latency = None
        if o.latency_table:
            from nas.search_spaces.gpt.latency import load_table

            self.latency = load_table(o.latency_table)

    def cost(self, genotype: Genotype) -> dict[str, float]:
        out = super().cost(genotype)
        if self.latency is not None:
            out["latency"] = self.latency.predict_genotype(self.space, genotype)  # type: ignore[arg-type]
        return out

    @property
    def corpus(self) -> TextCorpus:
        if self._corpus is None:
            self._corpus = load_dataset(self.dataset, self.seed, self.data_dir)
        return self._corpus

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "supernet": {**asdict(self.options), "seed": self.seed}}

    def key(self) -> str:
        """A hash of everything that changes the trained weights."""
        train = {k: v for k, v in self.config.to_json().items() if not k.startswith("eval")}
        blob = {
            "space": self.space.name,
            "space_settings": self.space.settings(),  # type: ignore[attr-defined]
            "corpus": self.corpus.fingerprint,
            **train,
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]

    def supernet_file(self) -> Path | None:
        if self.options.supernet_path:
            return Path(self.options.supernet_path)
        if self.run_dir is None:
            return None
        return (
            self.run_dir / "supernet" / f"{self.space.name}-{self.dataset}-{self.key()}.safetensors"
        )

    def supernet(self, workdir: Path | None = None) -> GPTSupernet:
        """The trained supernet: loaded from its file, else trained now (and saved)."""
        if self._supernet is not None:
            return self._supernet
        if self.run_dir is None and workdir is not None:
            trials = Path(workdir).resolve().parent
            if trials.name == "trials":  # the search loop's <run>/trials/<n>
                self.run_dir = trials.parent
        model = GPTSupernet(self.space, seed=self.seed)  # type: ignore[arg-type]
        path = self.supernet_file()
        if path is not None and path.exists():
            model.load(path)
            meta = path.with_suffix(".json")
            self.train_summary = json.loads(meta.read_text()) if meta.exists() else {}
        else:
            self.train_summary = self._train(model)
            if path is not None:
                model.save(path, {"config": self.config.to_json(), "dataset": self.dataset})
                path.with_suffix(".json").write_text(json.dumps(self.train_summary, indent=1))
        self.weights_path = path.resolve() if path is not None else None
        self._supernet = model
        self._scorer = ChildScorer(model, self.corpus, self.config)
        return model

    def _train(self, model: GPTSupernet) -> dict[str, Any]:
        from nas.lm import progress_bar

        label = f"{self.space.name} supernet ({self.config.steps} sandwich steps)"
        with progress_bar(self.config.steps, label, self.verbose) as tick:
            return SupernetTrainer(model, self.config).fit(self.corpus, tick)

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        t0 = time.perf_counter()
        model = self.supernet(workdir)
        assert self._scorer is not None
        bpb = self._scorer(genotype)  # type: ignore[arg-type]
        artifacts = {"supernet": str(self.weights_path)} if self.weights_path else {}
        if workdir is not None:
            artifacts.update(self._write_child(model, genotype, Path(workdir)))
        return EvalResult(
            metrics={"bits_per_byte": bpb},
            cost=self.cost(genotype),
            duration=time.perf_counter() - t0,
            artifacts=artifacts,
        ).checked()

    def _write_child(self, model: GPTSupernet, genotype: Genotype, wd: Path) -> dict[str, str]:
        from nas.weights import save_weights

        child = model.extract(genotype)  # type: ignore[arg-type]
        meta = {"arch": genotype.to_str(), "space": self.space.name, "dataset": self.dataset}
        path = save_weights(child, wd / "weights.safetensors", meta)
        return {"weights": str(path)}

    def child_model(self, genotype: Genotype) -> Any:
        """The child's standalone IR-built model with its inherited weights (never trains).

        Raises:
            StorageError: there is no trained supernet file to load.
        """
        file = self.supernet_file()
        if self._supernet is None and (file is None or not file.exists()):
            raise StorageError(f"no trained supernet at {file}: the gpt supernet file is missing")
        return self.supernet().extract(genotype)  # type: ignore[arg-type]


def supernet_evaluator(space: SearchSpace, dataset: str | None = None, **options: Any):
    """The evaluator from today's ``get_evaluator`` keyword options (``steps``, ``seed``,
    ``data_dir``, ``run_dir``, ``supernet_path``, the :class:`GPTSupernetOptions` fields)."""
    kw = {k: options.pop(k) for k in ("seed", "data_dir", "run_dir") if k in options}
    options.pop("verbose", None)
    for key in ("supernet_path", "latency_table"):
        if options.get(key) is not None:
            options[key] = str(options[key])
    known = set(GPTSupernetOptions.__dataclass_fields__)
    opts = {k: v for k, v in options.items() if k in known and v is not None}
    return GPTSupernetEvaluator(space, dataset, options=opts, **kw)
