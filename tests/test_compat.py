"""Version-sensitive jax/flax corners (nas.compat), the per-backend choice of depthwise
formulations, and the installed layout (one import name, one version)."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import jax
import pytest
from flax import nnx

from nas import compat, kernels

ROOT = Path(__file__).resolve().parent.parent


def test_state_keys_are_the_weights_file_names():
    m = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.BatchNorm(3, rngs=nnx.Rngs(0)))
    names = [k for k, _ in compat.named_leaves(nnx.state(m))]
    assert "layers.0.kernel.value" in names and "layers.1.mean.value" in names
    assert all(n.endswith(".value") and ".value." not in n for n in names)
    path = jax.tree_util.tree_flatten_with_path({"a": {"b": 1}})[0][0][0]
    assert compat.state_key(path) == "a.b.value"  # a release whose paths stop at the leaf


def test_graph_walks():
    m = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)))
    assert sum(isinstance(v, nnx.Param) for _, v in compat.iter_graph(m)) == 2
    kinds = [type(x).__name__ for _, x in compat.iter_modules(m)]
    assert "Linear" in kinds and kinds[-1] == "Sequential"
    assert callable(compat.ffi().ffi_call)


def test_depthwise_formulation_is_chosen_per_backend():
    pick = {"cpu_fallback": "shift", "accelerator": "xla"}
    assert kernels.depthwise_impl(backend="gpu", **pick) == "xla"
    assert kernels.depthwise_impl(backend="tpu", **pick) == "xla"
    on_cpu = kernels.depthwise_impl(backend="cpu", **pick)
    assert on_cpu == ("native" if kernels.available() else "shift")
    from nas.search_spaces.darts.supernet import default_impl

    from nas.oneshot import default_dw_impl

    here = jax.default_backend()
    assert default_dw_impl() == kernels.depthwise_impl(backend=here, **pick)
    darts = kernels.depthwise_impl(backend=here, cpu_fallback="dense", accelerator="depthwise")
    assert default_impl() == darts


def _installed_packages() -> tuple[list[str], dict]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    if isinstance(cfg.get("packages"), list):
        return cfg["packages"], cfg
    from setuptools import find_packages

    return find_packages(str(ROOT), include=cfg["packages"]["find"]["include"]), cfg


def test_distribution_layout():
    """Every package folder is installed; benchmarks and tests are not; once package-dir maps
    them, everything installed lives under the one import name ``nas``."""
    pkgs, cfg = _installed_packages()
    mapping = cfg.get("package-dir", {})
    folders = {
        str(p.parent.relative_to(ROOT)).replace("/", ".")
        for top in ("nas", "search_spaces", "predictors")
        for p in (ROOT / top).rglob("__init__.py")
    }
    back = {v: k for k, v in mapping.items()}
    installed = {
        next((f.replace(d, back[d], 1) for d in back if f.startswith(d)), f) for f in folders
    }
    assert installed == set(pkgs)
    assert not any(p.split(".")[0] in ("benchmarks", "tests") for p in pkgs)
    if mapping:
        assert all(p == "nas" or p.startswith("nas.") for p in pkgs)


def test_checkout_maps_the_subpackages():
    import nas.predictors
    import nas.search_spaces

    assert Path(nas.search_spaces.__file__).parent == ROOT / "search_spaces"
    assert Path(nas.predictors.__file__).parent == ROOT / "predictors"


def test_one_version():
    import nas
    from nas.cli import build_parser

    try:
        assert importlib.metadata.version("nasjax") == nas.__version__
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nasjax is not installed (run from a bare checkout)")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
