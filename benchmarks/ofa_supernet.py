"""OFA supernet training-step and extraction speed: ours (JAX) vs mit-han-lab ``ofa`` (torch).

Measures, batch 32 at 128x128 on ImageNet-shaped inputs (1000 classes), OFA-MobileNetV3 w1.0:

- an elastic training step with one random subnet (forward, backward, optimiser update);
- a sandwich step: largest + smallest + 2 random subnets, gradients summed, one update;

  both sides train the same random subnets in the same order (drawn here, seed 0, and handed
  to the ``ofa`` script), so that neither side's median rests on luckier draws. Each side
  first warms up on other random subnets (``--warmup``, 20: 20 random steps, 10 sandwich
  steps; our first one compiles), untimed, then times ``--steps`` steps on fresh subnets: the
  steady state of a training run. A step that takes a branch of our compiled program for the
  first time pays that branch's one-off set-up (XLA's YNN fusions initialise on first
  execution): 0.1-0.5 s more in some of the first ~15 random steps. The warm-up times are written
  to the results, per step, for both sides;
- subnet extraction: ours (``extract_child``: IR graph + standalone model with inherited
  weights) vs OFA's ``get_active_subnet(preserve_weight=True)``.

The ``ofa`` side runs in its own venv (DESIGN.md "Peer implementations"):
``python -m venv /tmp/ofa-venv && /tmp/ofa-venv/bin/pip install torch==2.14.1
torchvision==0.29.1 numpy pillow && /tmp/ofa-venv/bin/pip install --no-deps
ofa==0.1.0.post202307202001``; pass ``--ofa-python`` if it lives elsewhere.

Ours runs with glibc's malloc tuned (:mod:`nas.memory`; the script re-executes itself with
the tunables); ``ofa`` runs twice, as it runs by default and with the same tunables.

Usage: ``python -m benchmarks.ofa_supernet [--steps 15] [--warmup 20] [--dw shift xla]``. Writes
``benchmarks/results/ofa_supernet.json``; every number carries ``os.getloadavg()``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nas import memory

RESULTS = Path(__file__).parent / "results" / "ofa_supernet.json"

OFA_SCRIPT = r"""
import json, os, sys, time, random
import torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
subnets = json.load(open(sys.argv[2]))
net = OFAMobileNetV3(n_classes=1000, width_mult=1.0, ks_list=[3, 5, 7],
                     expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
x = torch.randn(32, 3, 128, 128); y = torch.randint(0, 1000, (32,))
random.seed(0); torch.manual_seed(0)
def one(g):
    net.set_active_subnet(**g)
    loss = F.cross_entropy(net(x), y); loss.backward()
def sandwich(pair):
    net.set_max_net(); F.cross_entropy(net(x), y).backward()
    net.set_active_subnet(ks=3, e=3, d=2); F.cross_entropy(net(x), y).backward()
    for g in pair:
        net.set_active_subnet(**g); F.cross_entropy(net(x), y).backward()
def timed(fn, arg):
    t = time.perf_counter(); opt.zero_grad(); fn(arg); opt.step()
    return time.perf_counter() - t
out = {}
net.train()
for name, fn, key in (("random_subnet_step_s", one, "random"), ("sandwich_step_s", sandwich, "sandwich")):
    out[name[:-2] + "_warmup_s"] = [timed(fn, a) for a in subnets["warmup_" + key]]
    times = [timed(fn, a) for a in subnets[key]]
    out[name] = sorted(times)[len(times) // 2]
    out[name + "_all"] = times
    out[name + "_load"] = os.getloadavg()[0]
ts = []
for _ in range(5):
    net.sample_active_subnet()
    t = time.perf_counter(); net.get_active_subnet(preserve_weight=True)
    ts.append(time.perf_counter() - t)
out["extract_s"] = sorted(ts)[2]
out["torch"] = torch.__version__
print("RESULT" + json.dumps(out))
"""


def draw_subnets(steps: int, warmup: int) -> dict:
    """The random subnets both sides train: one per random step and two per sandwich step;
    ``warmup`` random subnets (``warmup // 2`` pairs) for the untimed warm-up steps (on our
    side the first of them compiles), then ``steps`` for the timed ones."""
    import numpy as np
    from nas.search_spaces.ofa.space import OFASpace

    space, rng = OFASpace(), np.random.default_rng(0)

    def pairs(n):
        return [[space.sample(rng) for _ in range(2)] for _ in range(n)]

    return {
        "warmup_random": [space.sample(rng) for _ in range(max(warmup, 1))],
        "random": [space.sample(rng) for _ in range(steps)],
        "warmup_sandwich": pairs(max(warmup // 2, 1)),
        "sandwich": pairs(steps),
    }


def run_ofa(python: str, threads: int, subnets: dict, env: dict | None = None) -> dict:
    if not Path(python).exists():
        return {"error": f"{python} not found (see the module docstring to install ofa)"}
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(_as_ofa(subnets), f)
        f.flush()
        r = subprocess.run(
            [python, "-c", OFA_SCRIPT, str(threads), f.name],
            capture_output=True,
            text=True,
            timeout=3600,
            env=env,
        )
    for line in r.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    return {"error": (r.stderr or r.stdout)[-800:]}


def _ofa_kwargs(g) -> dict:
    return {"ks": list(g.ks), "e": list(g.e), "d": list(g.d)}


def _as_ofa(subnets: dict) -> dict:
    """The drawn subnets as ``ofa``'s ``set_active_subnet`` takes them."""
    out = {}
    for key, drawn in subnets.items():
        if key.endswith("random"):
            out[key] = [_ofa_kwargs(g) for g in drawn]
        else:
            out[key] = [[_ofa_kwargs(g) for g in pair] for pair in drawn]
    return out


def run_ours(dw: str, subnets: dict) -> dict:
    import jax
    import numpy as np
    from nas.search_spaces.ofa.child import extract_child
    from nas.search_spaces.ofa.space import OFASpace
    from nas.search_spaces.ofa.supernet import OFASupernet
    from nas.search_spaces.ofa.train import ElasticTrainConfig, ElasticTrainer

    space = OFASpace()
    sn = OFASupernet(space, "imagenet", dw_impl=dw)
    known = space.known()
    # the sandwich's smallest child is the same every step: a program of its own, as BigNAS's
    # training registers it
    tr = ElasticTrainer(
        sn, ElasticTrainConfig(optimizer="sgd", lr=0.01), fixed=[sn.arch(known["min"])]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 128, 128, 3)).astype(np.float32)
    y = rng.integers(0, 1000, 32).astype(np.int32)
    out: dict = {"dw_impl": dw, "device": str(jax.devices()[0])}

    def one(g):
        return [sn.arch(g)]

    def sandwich(pair):
        return [sn.arch(known["max"]), sn.arch(known["min"])] + [sn.arch(g) for g in pair]

    counters: dict[str, list] = {}

    def timed(archs, mode, key=None):
        """Seconds of one step; with ``key``, also its minor page faults, involuntary context
        switches (another process took the core) and the subnets' middle widths (its work),
        to tell an allocator or a neighbour from the workload when steps are bimodal."""
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        tr.step(x, y, archs, mode=mode)
        dt = time.perf_counter() - t
        if key is not None:
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            counters.setdefault(key, []).append(
                {
                    "s": dt,
                    "minor_faults": r1.ru_minflt - r0.ru_minflt,
                    "involuntary_switches": r1.ru_nivcsw - r0.ru_nivcsw,
                    "mid_channels": int(sum(int(np.sum(a["mid"])) for a in archs)),
                }
            )
        return dt

    for name, archs, mode, key in (
        ("random_subnet_step", one, "plain", "random"),
        ("sandwich_step", sandwich, "sandwich", "sandwich"),
    ):
        first, *rest = subnets["warmup_" + key]
        out[name + "_first_s"] = timed(archs(first), mode)  # compile + one step
        out[name + "_warmup_s"] = [timed(archs(a), mode) for a in rest]
        times = [timed(archs(a), mode, name) for a in subnets[key]]
        out[name + "_s"] = float(np.median(times))
        out[name + "_s_all"] = times
        out[name + "_s_load"] = os.getloadavg()[0]
    out["traces"] = tr.traces
    out["per_step"] = counters
    ts = []
    for _ in range(3):
        g = space.sample(rng)
        g = type(g)(g.ks, g.e, g.d, 128)
        t = time.perf_counter()
        extract_child(sn, g, space, "imagenet")
        ts.append(time.perf_counter() - t)
    out["extract_s"] = float(np.median(ts))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=15, help="timed steps (fresh subnets)")
    p.add_argument(
        "--warmup", type=int, default=20, help="untimed random subnets before (half as many pairs)"
    )
    p.add_argument("--dw", nargs="+", default=["native"], help="depthwise: native shift xla")
    p.add_argument("--ofa-python", default="/tmp/ofa-venv/bin/python")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--skip-ofa", action="store_true")
    args = p.parse_args(argv)
    memory.reexec()  # before JAX starts; a no-op once the tunables are set
    result: dict = {"batch": 32, "resolution": 128, "net": "OFA-MobileNetV3 w1.0", "ours": {}}
    result["loadavg_start"] = os.getloadavg()
    result["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES", "")
    result["steps"], result["warmup"] = args.steps, args.warmup
    subnets = draw_subnets(args.steps, args.warmup)
    result["subnets"] = _as_ofa(subnets)
    if not args.skip_ofa:  # run the peer first: JAX must not be started before a fork
        # ``ofa`` as it runs by default, and with the malloc settings ours runs with
        # (nas/memory.py), so that neither side's number hides the other's allocator.
        plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        result["ofa"] = run_ofa(args.ofa_python, args.threads, subnets, plain)
        print("ofa", result["ofa"], flush=True)
        result["ofa_tuned_malloc"] = run_ofa(
            args.ofa_python, args.threads, subnets, memory.tuned_env(plain)
        )
        print("ofa with tuned malloc", result["ofa_tuned_malloc"], flush=True)
    for dw in args.dw:
        result["ours"][dw] = run_ours(dw, subnets)
        print("ours", result["ours"][dw], flush=True)
    for peer in ("ofa", "ofa_tuned_malloc"):
        ofa = result.get(peer, {})
        for ours in result["ours"].values():
            for key in ("random_subnet_step_s", "sandwich_step_s", "extract_s"):
                if key in ofa and key in ours:
                    ours[key[: -len("_s")] + f"_speedup_vs_{peer}"] = ofa[key] / ours[key]
    result["loadavg_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
