"""ONNX-Net-style predictor: ONNX graph as text, all-MiniLM-L6-v2 in JAX, a ranking head."""

from nas.predictors.onnxnet.encoder import MiniLM, available, bert_forward, model_dir
from nas.predictors.onnxnet.predictor import OnnxNetPredictor, TextStore
from nas.predictors.onnxnet.text import Chunk, describe, describe_flat, describe_onnx

__all__ = [
    "Chunk",
    "MiniLM",
    "OnnxNetPredictor",
    "TextStore",
    "available",
    "bert_forward",
    "describe",
    "describe_flat",
    "describe_onnx",
    "model_dir",
]
