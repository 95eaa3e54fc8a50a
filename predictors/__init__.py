"""Performance predictors: one protocol (fit / predict -> mean, std / ood / save / load).

>>> from nas.predictors import get_predictor, load_split  # doctest: +SKIP
>>> train, test = load_split(["nb201:cifar10:100"], "nb201:cifar10", seed=0)  # doctest: +SKIP
>>> mean, std = get_predictor("gennape").fit(train.graphs, train.y).predict(test.graphs)  # doctest: +SKIP
"""

from nas.predictors.base import Predictor, get_predictor, load_predictor, predictor_names
from nas.predictors.data import LabelledSet, load_spec, load_split, parse_spec
from nas.predictors.features import ArchRef, GraphFeatures, graph_features

__all__ = [
    "ArchRef",
    "GraphFeatures",
    "LabelledSet",
    "Predictor",
    "get_predictor",
    "graph_features",
    "load_predictor",
    "load_spec",
    "load_split",
    "parse_spec",
    "predictor_names",
]
