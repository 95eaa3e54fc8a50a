"""GENNAPE-style predictor: graph encoder on the IR, contrastive pretraining, FCM heads."""

from predictors.gennape.fcm import fuzzy_cmeans, memberships
from predictors.gennape.predictor import DEFAULTS, GennapePredictor

__all__ = ["DEFAULTS", "GennapePredictor", "fuzzy_cmeans", "memberships"]
