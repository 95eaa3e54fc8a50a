"""One registry for spaces, strategies, evaluators, predictors and datasets.

Every pluggable piece of the platform is found the same way: by kind and name. The built-in
ones are listed in :data:`BUILTIN` as ``"module:attribute"`` targets (imported on first use,
so listing names stays cheap); an installed package adds its own through a Python
entry-point group per kind, pytest's ``pytest11`` being the model::

    # the plugin's pyproject.toml
    [project.entry-points."nas.spaces"]
    tiny = "nas_tiny.space:TinySpace"
    [project.entry-points."nas.strategies"]
    hill = "nas_tiny.strategy:HillClimb"

What a target must be depends on its kind:

=============  ===================================================================
kind           target
=============  ===================================================================
``spaces``     a :class:`nas.space.SearchSpace` subclass (called with no arguments)
``strategies`` a :class:`nas.searchers.base.Searcher` (sample-based, ask/tell) or
               :class:`nas.searchers.base.OneShotStrategy` subclass
``evaluators`` an :class:`nas.evaluators.base.Evaluator` subclass
``predictors`` a :class:`nas.predictors.base.Predictor` subclass
``datasets``   a :class:`nas.data.DatasetSpec` (or a callable returning one)
=============  ===================================================================

Listings (``nas spaces``, ``nas strategies``, ...) and the command line's help are generated
from here, so they cannot drift from what exists. A plugin may not shadow a built-in name:
that is an error naming both, not a silent override.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from nas.errors import ConfigError, UnknownName

KINDS = ("spaces", "strategies", "evaluators", "predictors", "datasets")
# The singular used in messages ("unknown search space 'x'").
NOUN = {
    "spaces": "search space",
    "strategies": "strategy",
    "evaluators": "evaluator",
    "predictors": "predictor",
    "datasets": "dataset",
}


def group(kind: str) -> str:
    """The entry-point group of ``kind`` (``nas.spaces``, ``nas.strategies``, ...)."""
    return f"nas.{kind}"


BUILTIN: dict[str, dict[str, str]] = {
    "spaces": {
        "nb101": "nas.search_spaces.nb101.space:NB101Space",
        "nb201": "nas.search_spaces.nb201.space:NB201Space",
        "darts": "nas.search_spaces.darts.space:DartsSpace",
        "nasnet": "nas.search_spaces.nasnet.space:NasnetSpace",
        "nb301": "nas.search_spaces.darts.space:NB301Space",
        "spos": "nas.search_spaces.spos.space:SPOSSpace",
        "spos-channels": "nas.search_spaces.spos.space:SPOSChannelSpace",
        "nbmacro": "nas.search_spaces.nbmacro.space:NBMacroSpace",
        "ofa": "nas.search_spaces.ofa.space:OFASpace",
        "ofa-proxyless": "nas.search_spaces.ofa.space:OFAProxylessSpace",
        "bignas": "nas.search_spaces.bignas.space:BigNASSpace",
        "transformer": "nas.search_spaces.transformer.space:TransformerSpace",
        "gpt": "nas.search_spaces.gpt.space:GPTSpace",
        "gpt-base": "nas.search_spaces.gpt.space:GPTBaseSpace",
    },
    "strategies": {
        "random": "nas.searchers.random_search:RandomSearch",
        "evolution": "nas.searchers.evolution:RegularizedEvolution",
        "tpe": "nas.searchers.tpe:OptunaSearcher",
        "nsga2": "nas.searchers.tpe:NSGA2Searcher",
        "neural-predictor": "nas.searchers.predictor_guided:NeuralPredictor",
        "bananas": "nas.searchers.predictor_guided:Bananas",
        "spos-evolution": "nas.searchers.spos_evolution:SPOSEvolution",
        "ofa-evolution": "nas.searchers.ofa_evolution:OFAEvolution",
        "coarse-to-fine": "nas.searchers.coarse_to_fine:CoarseToFine",
        "darts": "nas.searchers.darts:DartsStrategy",
    },
    "evaluators": {
        "train": "nas.evaluators.train:TrainEvaluator",
        "benchmark": "nas.evaluators.benchmark:BenchmarkEvaluator",
        "synthetic": "nas.evaluators.synthetic:SyntheticEvaluator",
        "supernet": "nas.evaluators.oneshot:SupernetEvaluator",
    },
    "predictors": {
        "gennape": "nas.predictors.gennape:GennapePredictor",
        "onnxnet": "nas.predictors.onnxnet:OnnxNetPredictor",
        "gbm": "nas.predictors.baselines:GBMPredictor",
        "mlp": "nas.predictors.baselines:MLPPredictor",
        "params": "nas.predictors.baselines:ParamsProxy",
        "flops": "nas.predictors.baselines:FlopsProxy",
        "synflow": "nas.predictors.baselines:SynflowProxy",
        "jacov": "nas.predictors.baselines:JacovProxy",
        "snip": "nas.predictors.baselines:SnipProxy",
        "grad_norm": "nas.predictors.baselines:GradNormProxy",
        "naswot": "nas.predictors.baselines:NaswotProxy",
        "gcn": "nas.predictors.gcn:GCNPredictor",
    },
    "datasets": {
        "digits": "nas.data:DIGITS",
        "cifar10": "nas.data:CIFAR10",
        "cifar100": "nas.data:CIFAR100",
        "stdlib": "nas.data:STDLIB",
        "text": "nas.data:TEXT",
    },
}


@dataclass(frozen=True)
class Entry:
    """One registered name: where it lives and who provides it."""

    kind: str
    name: str
    target: str  # "module:attribute"
    origin: str  # "nas" for built-ins, else the providing distribution's name

    def load(self) -> Any:
        """Import the target. A plugin that fails to import is a one-line error naming it."""
        module, _, attr = self.target.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split(".") if attr else ():
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"{NOUN[self.kind]} {self.name!r} ({self.target}, from {self.origin}) cannot "
                f"be loaded: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None
        return obj

    def summary(self) -> str:
        """The first line of the target's docstring (imports it)."""
        doc = getattr(self.load(), "__doc__", None) or ""
        return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""


@cache
def _plugins(kind: str) -> tuple[Entry, ...]:
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=group(kind)):
        dist = getattr(ep, "dist", None)
        origin = dist.name if dist is not None else "a plugin"
        out.append(Entry(kind, ep.name, ep.value, origin))
    return tuple(out)


def entries(kind: str) -> dict[str, Entry]:
    """Every entry of ``kind``, built-ins first, then installed plugins, by name."""
    if kind not in KINDS:
        raise UnknownName(f"unknown registry kind {kind!r}; choose one of {list(KINDS)}")
    out = {name: Entry(kind, name, target, "nas") for name, target in BUILTIN[kind].items()}
    for e in _plugins(kind):
        if e.name in out:
            if out[e.name].target == e.target:
                continue  # the same target registered twice (an editable install of nas)
            raise ConfigError(
                f"{NOUN[kind]} {e.name!r} of {e.origin} ({e.target}) clashes with "
                f"{out[e.name].origin}'s ({out[e.name].target}); uninstall one of them"
            )
        out[e.name] = e
    return out


def names(kind: str) -> list[str]:
    """The registered names of ``kind``, sorted."""
    return sorted(entries(kind))


def entry(kind: str, name: str) -> Entry:
    """The entry ``name`` of ``kind``; an unknown name is an error listing the valid ones."""
    found = entries(kind)
    if name not in found:
        raise UnknownName(f"unknown {NOUN[kind]} {name!r}; choose one of {sorted(found)}")
    return found[name]


def load(kind: str, name: str) -> Any:
    """The object registered as ``name`` of ``kind`` (a class, usually)."""
    return entry(kind, name).load()


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin into a running process)."""
    _plugins.cache_clear()


__all__ = ["BUILTIN", "KINDS", "Entry", "entries", "entry", "group", "load", "names", "refresh"]
