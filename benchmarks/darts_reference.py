"""Our DARTS counts against the DARTS authors' own model code (quark0/darts, PyTorch).

The DARTS paper rounds DARTS_V1 (first order) to 3.3M parameters and DARTS_V2 on ImageNet to
574M multiply-adds; the genotypes its repository publishes give other numbers. This script runs
the authors' ``cnn/model.py`` (``NetworkCIFAR(36, 10, 20, ...)`` and ``NetworkImageNet(48, 1000,
14, ...)``) on the authors' ``cnn/genotypes.py`` in a torch venv, counts parameters the way their
``utils.count_parameters_in_MB`` does (auxiliary head excluded) and multiply-accumulates with
forward hooks (conv: output elements x in/groups x kernel; linear: in x out; BatchNorm, ReLU and
pooling elements reported separately), and compares with this platform's IR counts.

Usage (a checkout of https://github.com/quark0/darts and any venv with torch)::

    .venv/bin/python -m benchmarks.darts_reference --darts-repo /path/to/darts \\
        --torch-python /tmp/torchvenv/bin/python

Writes ``benchmarks/results/darts_reference.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "darts_reference.json"

# Runs in the torch venv with the authors' cnn/ folder on sys.path. Their model.py imports
# drop_path from utils.py, which imports torchvision; a stand-in module avoids that import.
TORCH_SIDE = r"""
import builtins, json, sys, types
builtins.xrange = range  # NetworkImageNet is Python 2 code
sys.modules["utils"] = types.SimpleNamespace(drop_path=None)
sys.path.insert(0, sys.argv[1])
import torch, torch.nn as nn
import genotypes
from model import NetworkCIFAR, NetworkImageNet

def params(m):
    return sum(p.numel() for k, p in m.named_parameters() if "auxiliary" not in k)

def macs(m, size):
    tot = {"conv": 0, "linear": 0, "bn": 0, "relu": 0, "pool": 0}
    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            tot["conv"] += out.numel() * mod.in_channels // mod.groups * k
        elif isinstance(mod, nn.Linear):
            tot["linear"] += mod.in_features * mod.out_features
        elif isinstance(mod, nn.BatchNorm2d):
            tot["bn"] += out.numel()
        elif isinstance(mod, nn.ReLU):
            tot["relu"] += out.numel()
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            k = mod.kernel_size if isinstance(mod.kernel_size, int) else mod.kernel_size[0]
            tot["pool"] += out.numel() * k * k
    for mod in m.modules():
        mod.register_forward_hook(hook)
    m.eval()
    m.drop_path_prob = 0.0
    with torch.no_grad():
        m(torch.zeros(1, 3, size, size))
    tot["conv_linear"] = tot["conv"] + tot["linear"]
    return tot

out = {}
for name in ("DARTS_V1", "DARTS_V2"):
    m = NetworkCIFAR(36, 10, 20, True, getattr(genotypes, name))
    out[name + "/cifar10"] = {"params": params(m), "macs": macs(m, 32)}
m = NetworkImageNet(48, 1000, 14, True, genotypes.DARTS_V2)
out["DARTS_V2/imagenet"] = {"params": params(m), "macs": macs(m, 224)}
print(json.dumps(out))
"""

PAPER = {  # DARTS paper (Liu et al., ICLR 2019), Tables 1 and 3
    "DARTS_V1/cifar10": {"params": "3.3M"},
    "DARTS_V2/cifar10": {"params": "3.3M"},
    "DARTS_V2/imagenet": {"params": "4.7M", "macs": "574M"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--darts-repo", required=True, help="a checkout of quark0/darts")
    ap.add_argument("--torch-python", required=True, help="python of a venv with torch")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    cnn = Path(args.darts_repo) / "cnn"
    if not (cnn / "model.py").exists():
        print(f"darts_reference: {cnn}/model.py not found", file=sys.stderr)
        return 2
    p = subprocess.run(
        [args.torch_python, "-c", TORCH_SIDE, str(cnn)], capture_output=True, text=True
    )
    if p.returncode:
        print(p.stderr.strip().splitlines()[-1], file=sys.stderr)
        return 1
    authors = json.loads(p.stdout.strip().splitlines()[-1])

    from nas.search_spaces import get_space

    space = get_space("darts")
    rows = {}
    for key, ref in authors.items():
        name, dataset = key.split("/")
        graph = space.to_graph(space.resolve(name), dataset)
        ours = {"params": graph.params(), "macs": graph.flops()}
        rows[key] = {
            "ours": ours,
            "authors_code": ref,
            "paper": PAPER[key],
            "params_equal": ours["params"] == ref["params"],
            "macs_equal": ours["macs"] == ref["macs"]["conv_linear"],
        }
        print(
            f"{key:20s} params ours {ours['params']:,} authors' code {ref['params']:,}"
            f" | MACs ours {ours['macs']:,} authors' code {ref['macs']['conv_linear']:,}"
            f" | paper {PAPER[key]}"
        )
    Path(args.out).write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")
    return 0 if all(r["params_equal"] and r["macs_equal"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
