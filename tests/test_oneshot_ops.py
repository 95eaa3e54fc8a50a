"""The loop-safe conv primitives of nas.oneshot against XLA's convolutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from nas.oneshot import im2col_conv, pointwise, shifted_depthwise


def _xla_depthwise(x, w, stride, dilation):
    p = dilation * (w.shape[0] - 1) // 2
    return lax.conv_general_dilated(
        x,
        w[:, :, None, :],
        (stride, stride),
        ((p, p), (p, p)),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


@pytest.mark.parametrize(
    "k,stride,dilation,size",
    [(3, 1, 1, 9), (5, 2, 1, 9), (3, 1, 2, 8), (5, 2, 2, 8), (7, 2, 1, 10)],
)
def test_shifted_depthwise_and_its_custom_vjp_equal_xla(k, stride, dilation, size):
    rng = np.random.default_rng(k + stride + dilation)
    x = jnp.asarray(rng.standard_normal((2, size, size, 3), np.float32))
    w = jnp.asarray(rng.standard_normal((k, k, 3), np.float32))
    ours = shifted_depthwise(x, w, stride, dilation)
    ref = _xla_depthwise(x, w, stride, dilation)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)

    def grads(f):
        return jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1))(x, w)

    g_ours = grads(lambda x, w: shifted_depthwise(x, w, stride, dilation))
    g_ref = grads(lambda x, w: _xla_depthwise(x, w, stride, dilation))
    for a, b in zip(g_ours, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("k,stride", [(3, 2), (3, 1), (5, 2)])
def test_im2col_conv_equals_xla_conv_with_gradients(k, stride):
    rng = np.random.default_rng(k * stride)
    x = jnp.asarray(rng.standard_normal((2, 9, 9, 3), np.float32))
    w = jnp.asarray(rng.standard_normal((k, k, 3, 4), np.float32))

    def ref(x, w):
        p = k // 2
        dn = ("NHWC", "HWIO", "NHWC")
        return lax.conv_general_dilated(
            x, w, (stride, stride), ((p, p), (p, p)), dimension_numbers=dn
        )

    np.testing.assert_allclose(im2col_conv(x, w, stride), ref(x, w), rtol=1e-4, atol=1e-4)
    g1 = jax.grad(lambda x, w: jnp.sum(jnp.tanh(im2col_conv(x, w, stride))), argnums=(0, 1))(x, w)
    g2 = jax.grad(lambda x, w: jnp.sum(jnp.tanh(ref(x, w))), argnums=(0, 1))(x, w)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape", [(2, 5, 5, 3), (4, 6), (7,)])
def test_pointwise_and_its_custom_vjp_equal_the_einsum(shape):
    """1x1 convs and linear layers (any leading axes): values, both gradients, and a
    gradient of a gradient (the backward pass is itself differentiable)."""
    rng = np.random.default_rng(len(shape))
    x = jnp.asarray(rng.standard_normal(shape, np.float32))
    w = jnp.asarray(rng.standard_normal((shape[-1], 4), np.float32))

    def ref(x, w):
        return jnp.einsum("...i,io->...o", x, w)

    np.testing.assert_allclose(pointwise(x, w), ref(x, w), rtol=1e-5, atol=1e-5)

    def grads(f):
        return jax.grad(lambda x, w: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1))(x, w)

    for ours, want in zip(grads(pointwise), grads(ref), strict=True):
        assert ours.shape == want.shape
        np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)

    def second(f):
        return jax.grad(lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) ** 2))(x)))(w)

    np.testing.assert_allclose(second(pointwise), second(ref), rtol=1e-4, atol=1e-4)
