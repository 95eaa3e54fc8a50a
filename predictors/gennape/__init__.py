"""GENNAPE-style predictor: graph encoder on the IR, contrastive pretraining, FCM heads."""

from nas.predictors.gennape.fcm import fuzzy_cmeans, memberships
from nas.predictors.gennape.options import DEFAULTS, GennapeOptions
from nas.predictors.gennape.predictor import GennapePredictor

__all__ = ["DEFAULTS", "GennapeOptions", "GennapePredictor", "fuzzy_cmeans", "memberships"]
