"""Native CPU kernels (nas.kernels): depthwise conv and fused depthwise -> pointwise, against
XLA's grouped convolution and matrix product, values and gradients."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nas import kernels
from tests.test_oneshot_ops import _xla_depthwise as xla_depthwise


def _xla_depthwise(x, w, stride, dilation, relu):
    return xla_depthwise(jax.nn.relu(x) if relu else x, w, stride, dilation)


def _close(a, b, rtol=2e-5):
    scale = float(jnp.abs(b).max()) or 1.0
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=rtol * scale)


def test_the_kernels_build_here():
    # CI installs g++ (.ci/run); where they build, the supernets use them.
    assert kernels.available()
    assert kernels.library_path().exists()


# channels 3: scalar loops; 8, 24: 8 per vector; 16, 32: 16 per vector
@pytest.mark.parametrize(
    "c,k,stride,dilation,relu",
    [
        (3, 3, 1, 1, False),
        (8, 5, 2, 1, True),
        (16, 3, 1, 2, True),
        (24, 7, 2, 1, False),
        (32, 5, 1, 2, False),
        (16, 3, 2, 2, True),
        (5, 7, 1, 1, True),
    ],
)
def test_depthwise_equals_xla_grouped_conv_and_its_gradients(c, k, stride, dilation, relu):
    rng = np.random.default_rng(c * 100 + k)
    x = jnp.asarray(rng.standard_normal((3, 11, 9, c)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, c)), jnp.float32)
    ours, vjp_ours = jax.vjp(lambda x, w: kernels.depthwise(x, w, stride, dilation, relu), x, w)
    ref, vjp_ref = jax.vjp(lambda x, w: _xla_depthwise(x, w, stride, dilation, relu), x, w)
    assert ours.shape == ref.shape
    _close(ours, ref)
    g = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
    for a, b in zip(vjp_ours(g), vjp_ref(g), strict=True):
        _close(a, b)


@pytest.mark.parametrize(
    "c,d,k,stride,dilation",
    [(16, 16, 3, 1, 1), (16, 32, 5, 2, 2), (8, 16, 3, 1, 2), (24, 40, 5, 2, 1), (4, 8, 3, 1, 1)],
)
def test_fused_depthwise_pointwise_equals_the_composition(c, d, k, stride, dilation):
    rng = np.random.default_rng(c + d + k)
    x = jnp.asarray(rng.standard_normal((4, 10, 12, c)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, c)), jnp.float32)
    pw = jnp.asarray(rng.standard_normal((c, d)), jnp.float32)

    def ref(x, w, pw):
        y = _xla_depthwise(x, w, stride, dilation, True)
        return jnp.einsum("bhwc,cd->bhwd", y, pw, precision="highest")

    def fused(x, w, pw):
        return kernels.depthwise_pointwise(x, w, pw, stride, dilation, relu=True)

    y1, vjp1 = jax.vjp(fused, x, w, pw)
    y2, vjp2 = jax.vjp(ref, x, w, pw)
    assert y1.shape == y2.shape == (4, (10 - 1) // stride + 1, (12 - 1) // stride + 1, d)
    _close(y1, y2)
    g = jnp.asarray(rng.standard_normal(y2.shape), jnp.float32)
    for a, b in zip(vjp1(g), vjp2(g), strict=True):
        _close(a, b)


def test_results_do_not_depend_on_thread_timing():
    # Weight-gradient partial sums are per fixed slice of the batch and added in order.
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((32, 16, 16, 16)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 16)), jnp.float32)
    pw = jnp.asarray(rng.standard_normal((16, 16)), jnp.float32)
    grad = jax.jit(
        jax.grad(
            lambda x, w, pw: jnp.sum(jnp.sin(kernels.depthwise_pointwise(x, w, pw, relu=True))),
            argnums=(0, 1, 2),
        )
    )
    first = grad(x, w, pw)
    for _ in range(3):
        for a, b in zip(grad(x, w, pw), first, strict=True):
            assert np.array_equal(np.asarray(a), np.asarray(b))


def test_vmap_and_jit_compose():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 6, 8)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 8)), jnp.float32)
    batched = jax.jit(jax.vmap(lambda xi: kernels.depthwise(xi, w, 1, 1)))(x)
    assert batched.shape == x.shape
    _close(batched, jnp.stack([_xla_depthwise(xi, w, 1, 1, False) for xi in x]))


def test_other_dtypes_are_refused():
    x = jnp.zeros((1, 4, 4, 8), jnp.bfloat16)
    with pytest.raises(TypeError, match="float32"):
        kernels.depthwise(x, jnp.zeros((3, 3, 8), jnp.bfloat16))


def test_the_library_is_keyed_by_its_source(tmp_path, monkeypatch):
    path = kernels.library_path()
    assert kernels.build() == path  # cached: no rebuild
    changed = tmp_path / "depthwise.cc"
    changed.write_text(kernels.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(kernels, "SOURCE", changed)
    assert kernels.library_path() != path


@pytest.mark.parametrize("why", ["switched off", "compiler fails"])
def test_without_the_kernels_the_darts_supernet_falls_back_to_xla(why, tmp_path):
    code = (
        "import warnings; warnings.simplefilter('always');"
        "from nas import kernels; from nas.search_spaces.darts.supernet import DartsSupernet;"
        "m = DartsSupernet(C=8, layers=1, in_channels=1);"
        "print(kernels.available(), m.cells[0].impl)"
    )
    env = dict(os.environ, NAS_KERNEL_CACHE=str(tmp_path))  # nothing cached there
    if why == "switched off":
        env["NAS_NATIVE_KERNELS"] = "0"
    else:
        env["CXX"] = str(tmp_path / "no-such-compiler")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "dense"]
    assert ("using XLA formulations" in out.stderr) == (why == "compiler fails")
    if why == "compiler fails":  # and `make install`'s build step says why, exit code 1
        built = subprocess.run(
            [sys.executable, "-m", "nas.kernels"], env=env, capture_output=True, text=True
        )
        assert built.returncode == 1 and "cannot run the C++ compiler" in built.stderr
        assert list(tmp_path.iterdir()) == []  # no half-written library left


def test_one_shot_depthwise_convs_use_the_kernel_by_default():
    from nas.oneshot import conv2d, default_dw_impl

    assert default_dw_impl() == "native"
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 24)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((5, 5, 1, 24)), jnp.float32)

    def loss(impl):
        return lambda x, w: jnp.sum(jnp.tanh(conv2d(x, w, 2, 24, impl)))

    _close(conv2d(x, w, 2, 24, "native"), conv2d(x, w, 2, 24, "xla"))
    g1 = jax.grad(loss("native"), argnums=(0, 1))(x, w)
    g2 = jax.grad(loss("xla"), argnums=(0, 1))(x, w)
    for a, b in zip(g1, g2, strict=True):
        _close(a, b, rtol=1e-4)


def test_graph_models_run_depthwise_convs_on_the_kernel():
    from flax import nnx

    from nas.model import conv_general_dilated

    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 16)), jnp.float32)

    def pair(padding, dilation=1, groups=16):
        kw = dict(
            strides=(1, 1),
            padding=padding,
            kernel_dilation=(dilation, dilation),
            feature_group_count=groups,
            rngs=nnx.Rngs(0),
        )
        ours = nnx.Conv(16, 16, (3, 3), conv_general_dilated=conv_general_dilated, **kw)
        kw["rngs"] = nnx.Rngs(0)
        return ours, nnx.Conv(16, 16, (3, 3), **kw)

    for padding, dilation, groups, native in [
        (((1, 1), (1, 1)), 1, 16, True),
        (((2, 2), (2, 2)), 2, 16, True),
        (((0, 2), (1, 1)), 1, 16, False),  # asymmetric padding: XLA
        (((1, 1), (1, 1)), 1, 4, False),  # grouped, not depthwise: XLA
    ]:
        ours, ref = pair(padding, dilation, groups)
        _close(ours(x), ref(x))
        assert ("nas_depthwise_fwd" in str(jax.jit(ours).lower(x).as_text())) == native


def test_mismatched_shapes_never_reach_the_kernel():
    x = jnp.zeros((1, 6, 6, 8), jnp.float32)
    with pytest.raises(ValueError, match="kernel must be"):
        kernels.depthwise(x, jnp.zeros((3, 3, 4), jnp.float32))
    with pytest.raises(ValueError, match="k odd"):
        kernels.depthwise(x, jnp.zeros((4, 4, 8), jnp.float32))
    with pytest.raises(ValueError, match="pointwise"):
        kernels.depthwise_pointwise(x, jnp.zeros((3, 3, 8), jnp.float32), jnp.zeros((16, 8)))
