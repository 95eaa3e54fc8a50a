"""Native CPU kernels, called from JAX through the XLA FFI.

XLA:CPU has no fast depthwise convolution: its grouped-conv weight gradient is lowered to a
dense ``C x C`` convolution, and the shifted multiply-add forms
(:func:`nas.oneshot.shifted_depthwise`) are bound by passes over memory.
``depthwise.cc`` computes the forward pass, the input gradient and the weight gradient each in
one pass over the activations, channels innermost.

The library is compiled from source with the system C++ compiler on first use (``make install``
does it ahead of time: ``python -m nas.kernels``), for this machine's CPU, into a cache
directory keyed by the source, the compiler flags, jaxlib's version and the CPU; the
directory is ``$NAS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/nas/kernels``, else
``~/.cache/nas/kernels``. Without a compiler :func:`available` is false and callers use
their XLA formulations.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nas.compat import ffi as _ffi

SOURCE = Path(__file__).with_name("depthwise.cc")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
_TARGETS = {
    "nas_depthwise_fwd": "NasDepthwiseForward",
    "nas_depthwise_bwd": "NasDepthwiseBackward",
    "nas_dwpw_fwd": "NasDwPwForward",
    "nas_dwpw_bwd": "NasDwPwBackward",
}


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU model and its flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
    return "\n".join(keep) or platform.machine()


def cache_dir() -> Path:
    env = os.environ.get("NAS_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nas" / "kernels"


def library_path() -> Path:
    import jaxlib

    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), jaxlib.__version__.encode()):
        key.update(part)
    key.update(_cpu_signature().encode())
    return cache_dir() / f"libnas_kernels-{key.hexdigest()[:16]}.so"


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def build(verbose: bool = False) -> Path:
    """Compile the kernels unless a library for this source and CPU is cached; its path.

    The compiler is exec'd at once by ``subprocess`` (no fork of a running JAX process is
    left behind); the library is written under a temporary name and renamed, so concurrent
    builds (test workers) never see a half-written file.
    """
    path = library_path()
    if path.exists():
        return path
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    cmd = [cxx, *FLAGS, "-I", _ffi().include_dir(), str(SOURCE), "-o", tmp]
    try:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as e:
            raise RuntimeError(f"cannot run the C++ compiler {cxx!r}: {e}") from e
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if verbose:
        print(f"built {path}", file=sys.stderr)
    return path


@functools.cache
def _load() -> bool:
    if os.environ.get("NAS_NATIVE_KERNELS", "1") == "0":
        return False
    if jax.default_backend() != "cpu":
        return False
    try:
        lib = ctypes.cdll.LoadLibrary(str(build()))
    except (RuntimeError, OSError) as e:
        if compiler() is not None:  # a compiler that fails is worth saying; none is not
            warnings.warn(f"native kernels unavailable, using XLA formulations: {e}", stacklevel=2)
        return False
    for target, symbol in _TARGETS.items():
        _ffi().register_ffi_target(target, _ffi().pycapsule(getattr(lib, symbol)), platform="cpu")
    return True


def available() -> bool:
    """Whether the native kernels are built and registered (CPU backend, compiler present;
    ``NAS_NATIVE_KERNELS=0`` turns them off)."""
    return _load()


def depthwise_impl(*, cpu_fallback: str, accelerator: str, backend: str | None = None) -> str:
    """The depthwise-conv formulation a supernet uses on ``backend`` (default: JAX's default
    backend, i.e. the GPU where jax has one).

    On the CPU it is ``"native"`` where the C++ kernels build (:func:`available`), else
    ``cpu_fallback`` (each supernet names its own: shifted multiply-adds, or a dense conv).
    On a GPU or TPU it is ``accelerator``, the supernet's name for XLA's grouped convolution,
    which cuDNN runs there: the native kernels are CPU code, registered for the CPU platform
    only, and the shifted forms exist to work around XLA:CPU's slow depthwise convolution.
    Every supernet's default goes through here, so the choice is made in one place.
    """
    if (backend or jax.default_backend()) == "cpu":
        return "native" if available() else cpu_fallback
    return accelerator


def _check(*arrays: jax.Array) -> None:
    dtypes = [a.dtype for a in arrays]
    if any(d != jnp.float32 for d in dtypes):
        raise TypeError(
            f"the native kernels take float32 arrays, got {', '.join(map(str, dtypes))}"
        )
    if not available():
        raise RuntimeError("native kernels unavailable (no C++ compiler, or not on CPU)")


def _check_shapes(x: jax.Array, w: jax.Array, pw: jax.Array | None = None) -> None:
    """The kernels index by these shapes: a mismatch must never reach them."""
    if x.ndim != 4:
        raise ValueError(f"depthwise conv input must be (B, H, W, C), got shape {x.shape}")
    c = x.shape[-1]
    if w.ndim != 3 or w.shape[0] != w.shape[1] or w.shape[0] % 2 == 0 or w.shape[2] != c:
        raise ValueError(f"depthwise kernel must be (k, k, {c}) with k odd, got {w.shape}")
    if pw is not None and (pw.ndim != 2 or pw.shape[0] != c):
        raise ValueError(f"pointwise weights must be ({c}, D), got {pw.shape}")


def _out_size(n: int, k: int, stride: int, dilation: int) -> int:
    pad = dilation * (k - 1) // 2
    return (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _attrs(stride: int, dilation: int, relu: bool) -> dict[str, np.int64]:
    return {"stride": np.int64(stride), "dilation": np.int64(dilation), "relu": np.int64(relu)}


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x: jax.Array, w: jax.Array, stride: int, dilation: int, relu: bool) -> jax.Array:
    b, h, wd, c = x.shape
    k = w.shape[0]
    out = jax.ShapeDtypeStruct(
        (b, _out_size(h, k, stride, dilation), _out_size(wd, k, stride, dilation), c), x.dtype
    )
    return _ffi().ffi_call("nas_depthwise_fwd", out, vmap_method="sequential")(
        x, w, **_attrs(stride, dilation, relu)
    )


def _depthwise_fwd(x, w, stride, dilation, relu):
    return _depthwise(x, w, stride, dilation, relu), (x, w)


def _depthwise_bwd(stride, dilation, relu, res, g):
    x, w = res
    outs = (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(w.shape, w.dtype))
    dx, dw = _ffi().ffi_call("nas_depthwise_bwd", outs, vmap_method="sequential")(
        x, w, g.astype(x.dtype), **_attrs(stride, dilation, relu)
    )
    return dx, dw


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise(
    x: jax.Array, w: jax.Array, stride: int = 1, dilation: int = 1, relu: bool = False
) -> jax.Array:
    """Depthwise ``k x k`` conv of ``relu(x)`` (or ``x``), padding ``dilation * (k - 1) // 2``.

    Args:
        x: ``(B, H, W, C)`` float32.
        w: ``(k, k, C)`` float32.
        stride: the spatial stride.
        dilation: the kernel dilation.
        relu: apply a ReLU to ``x`` first (recomputed in the backward pass, never stored).

    Differentiable in ``x`` and ``w``. Requires :func:`available`.
    """
    _check(x, w)
    _check_shapes(x, w)
    return _depthwise(x, w, int(stride), int(dilation), bool(relu))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _dwpw(x, w, pw, stride: int, dilation: int, relu: bool) -> jax.Array:
    b, h, wd, _ = x.shape
    k = w.shape[0]
    out = jax.ShapeDtypeStruct(
        (b, _out_size(h, k, stride, dilation), _out_size(wd, k, stride, dilation), pw.shape[1]),
        x.dtype,
    )
    return _ffi().ffi_call("nas_dwpw_fwd", out, vmap_method="sequential")(
        x, w, pw, **_attrs(stride, dilation, relu)
    )


def _dwpw_fwd(x, w, pw, stride, dilation, relu):
    return _dwpw(x, w, pw, stride, dilation, relu), (x, w, pw)


def _dwpw_bwd(stride, dilation, relu, res, g):
    x, w, pw = res
    outs = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (x, w, pw))
    return _ffi().ffi_call("nas_dwpw_bwd", outs, vmap_method="sequential")(
        x, w, pw, g.astype(x.dtype), **_attrs(stride, dilation, relu)
    )


_dwpw.defvjp(_dwpw_fwd, _dwpw_bwd)


def depthwise_pointwise(
    x: jax.Array,
    w: jax.Array,
    pw: jax.Array,
    stride: int = 1,
    dilation: int = 1,
    relu: bool = False,
) -> jax.Array:
    """``depthwise(x, w, stride, dilation, relu) @ pw`` (``pw``: ``(C, D)``), fused: the
    depthwise output is computed a row at a time and multiplied while in cache, never stored
    (the backward pass recomputes it). With ``C`` or ``D`` not a multiple of 8 it is the
    unfused composition. Differentiable in ``x``, ``w`` and ``pw``. Requires :func:`available`.
    """
    _check(x, w, pw)
    _check_shapes(x, w, pw)
    if x.shape[-1] % 8 or pw.shape[-1] % 8:
        return jnp.einsum("bhwc,cd->bhwd", depthwise(x, w, stride, dilation, relu), pw)
    return _dwpw(x, w, pw, int(stride), int(dilation), bool(relu))
