"""Make the externally produced ONNX files the ONNX reader is tested with.

torchvision's ResNet-18, MobileNetV3-Small and ShuffleNetV2 x0.5, exported by
``torch.onnx.export`` (PyTorch's own exporters, not this project's: the torch.export-based
default and, for ShuffleNet, the TorchScript-based one) at 224x224, opset 18, with their
weights moved to an external-data file that is not kept: the graph and every tensor's shape
stay (a few kilobytes to a few hundred), which is all the reader needs.

torch is not a dependency of this project; run this in a separate environment
(DESIGN.md: torch and torchvision are on this machine's disk)::

    python3.11 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 onnx onnxscript
    /tmp/tv/bin/python tests/data/onnx/make_external.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import torch
import torchvision

HERE = Path(__file__).parent
MODELS = {
    "torchvision_resnet18": torchvision.models.resnet18,
    "torchvision_mobilenet_v3_small": torchvision.models.mobilenet_v3_small,
    "torchvision_shufflenet_v2_x0_5": torchvision.models.shufflenet_v2_x0_5,
}

DYNAMO = {
    "torchvision_resnet18": True,
    "torchvision_mobilenet_v3_small": True,
    "torchvision_shufflenet_v2_x0_5": False,
}
"""Which exporter: the torch.export-based default (True) or the TorchScript-based one."""


def export(name: str, build) -> Path:
    model = build(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / f"{name}.onnx"
        torch.onnx.export(model, (x,), str(full), dynamo=DYNAMO[name], opset_version=18)
        proto = onnx.load(str(full))
    # Weights to an external file that is not kept: the structure and the shapes stay
    # (tensors under 1 KB, such as reshape targets and reduction axes, stay inline).
    onnx.external_data_helper.convert_model_to_external_data(
        proto, all_tensors_to_one_file=True, location=f"{name}.weights", size_threshold=1024
    )
    out = HERE / f"{name}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save_model(
            proto,
            str(Path(tmp) / out.name),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{name}.weights",
            size_threshold=1024,
        )
        os.replace(Path(tmp) / out.name, out)
    return out


if __name__ == "__main__":
    for name, build in MODELS.items():
        path = export(name, build)
        print(path, path.stat().st_size, "bytes")
