"""Supernet training steps, ours (JAX) against the PyTorch peers, on one device: the benchmark
part of ``benchmarks/gpu.sh``.

Three supernets at their published sizes, each side on the GPU when there is one:

- DARTS search network (width 16, 8 cells, batch 64 of 32x32x3, 10 classes): one weight
  step (forward, cross-entropy, backward, clip 5, SGD momentum 0.9, wd 3e-4) against NNI
  3.0's ``DARTS().mutate_model(nni.nas.hub.pytorch.DARTS(width=16, num_cells=8))``;
- OFA-MobileNetV3 w1.0 (batch 64 at 224x224, 1000 classes): an elastic step with one random
  subnet, against mit-han-lab ``ofa``'s ``OFAMobileNetV3`` with ``set_active_subnet``, the
  same subnets on both sides;
- SPOS ShuffleNetV2 (batch 64 at 224x224, 1000 classes): a step on a fresh uniformly sampled
  path, against NNI's ``RandomOneShot().mutate_model(ShuffleNetSpace())`` resampled per step.

Each part runs in its own process, one after another (no two frameworks share the device);
a part whose framework is not importable is recorded as skipped, not failed. A step's time
is taken after the device has finished it (``block_until_ready`` / ``cuda.synchronize``);
the first step (ours: the compile) is reported apart. ``--smoke`` shrinks every size to run
end to end on a CPU in seconds (CI's check that the script is ready).

Usage: ``python -m benchmarks.gpu_steps [--smoke] [--steps N] [--out FILE]`` (default
``benchmarks/results/gpu_steps.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    "full": {
        "darts": {"width": 16, "cells": 8, "batch": 64, "image": 32, "classes": 10},
        "ofa": {"net": "imagenet", "batch": 64, "image": 224, "classes": 1000},
        "spos": {"net": "imagenet", "batch": 64, "image": 224, "classes": 1000},
    },
    # The smallest networks that still hold every op: one DARTS cell, the digits variants
    # of the OFA and SPOS supernets (8x8x1 inputs, 10 classes).
    "smoke": {
        "darts": {"width": 4, "cells": 1, "batch": 2, "image": 8, "classes": 10},
        "ofa": {"net": "digits", "batch": 2, "image": 8, "classes": 10},
        "spos": {"net": "digits", "batch": 2, "image": 8, "classes": 10},
    },
}
PARTS = ("darts-ours", "darts-nni", "ofa-ours", "ofa-ofa", "spos-ours", "spos-nni")


def _timed(step, steps: int, sync) -> dict:
    """First step (compile) apart, then the median of ``steps`` steps, each synchronised."""
    t = time.perf_counter()
    sync(step(0))
    first = time.perf_counter() - t
    times = []
    for i in range(steps):
        t = time.perf_counter()
        sync(step(i + 1))
        times.append(time.perf_counter() - t)
    return {"first_step_s": first, "step_s": statistics.median(times), "step_times_s": times}


def _batch(size: dict, channels: int = 3, nchw: bool = False, seed: int = 0):
    """A random batch of ``size`` (labels int64; ours cast them)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (size["batch"], size["image"], size["image"], channels)
    x = rng.standard_normal(shape, np.float32)
    y = rng.integers(0, size["classes"], size["batch"]).astype(np.int64)
    return (x.transpose(0, 3, 1, 2).copy() if nchw else x), y


# ------------------------------------------------------------------------------ ours (JAX)


def _jax_info() -> dict:
    import jax

    return {"framework": f"jax {jax.__version__}", "device": str(jax.devices()[0])}


def darts_ours(size: dict, steps: int) -> dict:
    import jax
    from flax import nnx
    from nas.search_spaces.darts.supernet import Alpha, DartsSupernet

    from benchmarks.darts_supernet import weight_step

    model = DartsSupernet(size["width"], size["cells"], num_classes=size["classes"], seed=0)
    graphdef, weights, alphas = nnx.split(model, nnx.Param, Alpha)
    tx, step, _ = weight_step(graphdef, alphas)
    x, y = _batch(size)
    state = [weights, tx.init(weights)]

    def run(_):
        state[0], state[1], loss = step(state[0], state[1], x, y.astype("int32"))
        return loss

    return {**_jax_info(), "impl": model.cells[0].impl, **_timed(run, steps, jax.block_until_ready)}


def ofa_ours(size: dict, steps: int) -> dict:
    import jax
    import numpy as np
    from nas.search_spaces.ofa.space import OFASpace
    from nas.search_spaces.ofa.supernet import OFASupernet
    from nas.search_spaces.ofa.train import ElasticTrainConfig, ElasticTrainer

    space = OFASpace()
    sn = OFASupernet(space, size["net"])
    tr = ElasticTrainer(sn, ElasticTrainConfig(optimizer="sgd", lr=0.01))
    subnets = _ofa_subnets(steps)
    x, y = _batch(size, channels=sn.layout.in_channels)

    def run(i):
        return tr.step(x, y.astype(np.int32), [sn.arch(subnets[i])], mode="plain")

    out = _timed(run, steps, jax.block_until_ready)
    return {**_jax_info(), "dw_impl": sn.blocks[0].dw.impl, "traces": tr.traces, **out}


def _ofa_subnets(steps: int) -> list:
    """The random subnets both OFA sides train (seed 0), the first one for the compile."""
    import numpy as np
    from nas.search_spaces.ofa.space import OFASpace

    space, rng = OFASpace(), np.random.default_rng(0)
    return [space.sample(rng) for _ in range(steps + 1)]


def spos_ours(size: dict, steps: int) -> dict:
    import jax
    import numpy as np
    from nas.search_spaces.spos.supernet import SPOSSupernet

    from nas.oneshot import SupernetConfig, SupernetTrainer

    model = SPOSSupernet(size["net"], seed=0)
    trainer = SupernetTrainer(model, SupernetConfig(steps=steps + 1, batch_size=size["batch"]))
    rng = np.random.default_rng(0)
    x, y = _batch(size, channels=model.input_shape[-1])

    def run(_):
        return trainer.step(x, y.astype(np.int32), model.sample_path(rng))[0]

    return {
        **_jax_info(),
        "traces_before": trainer.traces,
        **_timed(run, steps, jax.block_until_ready),
    }


# ------------------------------------------------------------------------------ peers (torch)


def _torch():
    """torch, the device (``cuda`` when there is one) and a synchronising function."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)

    def sync(_):
        if dev == "cuda":
            torch.cuda.synchronize()

    return torch, dev, sync


def _torch_step(torch, net, params, x, y, dev, clip: float | None = None):
    opt = torch.optim.SGD(params, lr=0.025, momentum=0.9, weight_decay=3e-4)
    x, y = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    return step


def darts_nni(size: dict, steps: int) -> dict:
    torch, dev, sync = _torch()
    import nni
    from nni.nas.hub.pytorch import DARTS
    from nni.nas.strategy import DARTS as DartsStrategy

    cells = max(size["cells"], 3)  # NNI's DARTS has three stages of at least one cell
    net = DartsStrategy().mutate_model(DARTS(width=size["width"], num_cells=cells, dataset="cifar"))
    net = net.to(dev).train()
    weights = [p for n, p in net.named_parameters() if "_arch_alpha" not in n]
    step = _torch_step(torch, net, weights, *_batch(size, nchw=True), dev, clip=5.0)
    fw = f"torch {torch.__version__}, nni {nni.__version__}"
    return {"framework": fw, "device": dev, "cells": cells, **_timed(lambda _: step(), steps, sync)}


def ofa_ofa(size: dict, steps: int) -> dict:
    torch, dev, sync = _torch()
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    net = OFAMobileNetV3(
        n_classes=size["classes"],
        width_mult=1.0,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    net = net.to(dev).train()
    step = _torch_step(torch, net, list(net.parameters()), *_batch(size, nchw=True), dev)
    subnets = _ofa_subnets(steps)

    def run(i):
        g = subnets[i]
        net.set_active_subnet(ks=list(g.ks), e=list(g.e), d=list(g.d))
        step()

    return {"framework": f"torch {torch.__version__}", "device": dev, **_timed(run, steps, sync)}


def spos_nni(size: dict, steps: int) -> dict:
    torch, dev, sync = _torch()
    import nni
    from nni.nas.hub.pytorch import ShuffleNetSpace
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
    from nni.nas.strategy import RandomOneShot

    net = RandomOneShot().mutate_model(ShuffleNetSpace(num_labels=size["classes"]))
    net = net.to(dev).train()
    supers = [m for m in net.modules() if isinstance(m, BaseSuperNetModule)]
    step = _torch_step(torch, net, list(net.parameters()), *_batch(size, nchw=True), dev)

    def run(_):
        memo: dict = {}
        for m in supers:
            memo.update(m.resample(memo))
        step()

    fw = f"torch {torch.__version__}, nni {nni.__version__}"
    return {"framework": fw, "device": dev, **_timed(run, steps, sync)}


# ------------------------------------------------------------------------------ driver

FUNCS = {
    "darts-ours": darts_ours,
    "darts-nni": darts_nni,
    "ofa-ours": ofa_ours,
    "ofa-ofa": ofa_ofa,
    "spos-ours": spos_ours,
    "spos-nni": spos_nni,
}
PEER_MODULES = {"darts-nni": "nni", "ofa-ofa": "ofa", "spos-nni": "nni"}


def run_part(part: str, size: str, steps: int, timeout: float) -> dict:
    """One part in a fresh process: its result, ``{"skipped": why}`` when the peer is not
    installed, or ``{"error": ...}``."""
    peer = PEER_MODULES.get(part)
    if peer:
        probe = subprocess.run(
            [sys.executable, "-c", f"import torch, {peer}"], capture_output=True, text=True
        )
        if probe.returncode:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            return {"skipped": f"{peer} and torch not importable here ({last})"}
    cmd = [sys.executable, "-m", "benchmarks.gpu_steps", "--part", part, "--size", size]
    cmd += ["--steps", str(steps)]
    t = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode or not lines:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-3:]}
    return {**json.loads(lines[-1][7:]), "wall_s": time.perf_counter() - t}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CPU, seconds)")
    p.add_argument("--steps", type=int, default=10, help="timed steps after the first")
    p.add_argument("--timeout", type=float, default=240, help="seconds per part of ours")
    p.add_argument("--peer-timeout", type=float, default=120, help="seconds per peer part")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_steps.json"))
    p.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    p.add_argument("--size", choices=tuple(SIZES), default="full", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.part:  # a child process: one part, its result on the last line
        family = args.part.split("-")[0]
        out = FUNCS[args.part](SIZES[args.size][family], args.steps)
        print("RESULT " + json.dumps(out))
        return out
    size = "smoke" if args.smoke else "full"
    res: dict = {"sizes": SIZES[size], "mode": size, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    for part in args.parts:
        limit = args.peer_timeout if part in PEER_MODULES else args.timeout
        res[part] = run_part(part, size, args.steps, limit)
        print(part, json.dumps({k: res[part].get(k) for k in ("step_s", "skipped", "error")}))
    for family in ("darts", "ofa", "spos"):
        ours = res.get(f"{family}-ours", {}).get("step_s")
        peer = next(
            (res[k] for k in res if k.startswith(family + "-") and k != f"{family}-ours"), {}
        )
        if ours and peer.get("step_s"):
            res[f"{family}_speedup"] = peer["step_s"] / ours
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
