"""GENNAPE-style predictor: graph encoder on the IR, contrastive pretraining, FCM heads."""

from predictors.gennape.fcm import fuzzy_cmeans, memberships
from predictors.gennape.options import DEFAULTS, GennapeOptions
from predictors.gennape.predictor import GennapePredictor

__all__ = ["DEFAULTS", "GennapeOptions", "GennapePredictor", "fuzzy_cmeans", "memberships"]
