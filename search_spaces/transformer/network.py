"""Transformer networks as IR graphs: decoders, encoders and vision transformers.

:func:`build` writes any :class:`NetSpec` into an :class:`~nas.graph.ArchGraph` of atomic
ops: embeddings, per-block query/key/value/output ``dense`` projections around one
``attention`` op, an MLP (plain or gated), residual ``add`` nodes and norms before (GPT-2,
ViT, LLaMA) or after (BERT) each sub-block. Blocks may differ in heads and MLP width, which
is what the elastic ``gpt`` space needs. Every parametric node carries a scope that names
its role (``block3/attn/q``, ``embed/tokens``, ``head/out``), which weight import and
supernet extraction read.

Cost convention (the graph's :class:`~nas.graph.CostConvention`): parameters are every
trainable number (a tied output layer adds none); multiply-accumulates per sample at the
graph's sequence length count every dense layer's weights (biases not), the tied output
layer's ``T x D x V``, a patch embedding's convolution, and attention's two ``T x T``
products per head at full size even when causal; embedding look-ups, norms, softmax,
activations and residual adds count none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nas.graph import ArchGraph, CostConvention

CONVENTION = CostConvention(conv_bias=False, dense_bias=False, dense=True, attention=True)

KINDS = ("decoder", "encoder", "vit")
MLPS = ("gelu", "gelu_tanh", "relu", "swiglu")
"""MLP forms: exact GELU (BERT, ViT), its tanh approximation (GPT-2), ReLU, and the gated
SiLU MLP (LLaMA: ``down(silu(gate(x)) * up(x))``)."""
NORMS = ("layer", "rms")


@dataclass(frozen=True)
class BlockSpec:
    """One transformer block: ``heads`` query heads of ``head_dim``, ``kv_heads`` key/value
    heads (0: as many as query heads) and an MLP of ``ffn`` hidden units."""

    heads: int
    ffn: int
    head_dim: int
    kv_heads: int = 0


@dataclass(frozen=True)
class NetSpec:
    """A whole network (see :func:`build`).

    Attributes:
        kind: ``decoder`` (causal, language-model head), ``encoder`` (bidirectional) or
            ``vit`` (image patches, class token, classifier).
        d_model: the residual stream's width.
        blocks: the blocks in order.
        seq: tokens per sample the graph is built for (ViT: derived from the image).
        vocab: token vocabulary (decoder, encoder).
        context: rows of the learned position table (0: no position embedding).
        mlp, norm, norm_eps, prenorm, bias: the block's form (see :data:`MLPS`, :data:`NORMS`).
        tied: the decoder's output layer reuses the token embedding.
        segments: an encoder's token-type table rows (0: none).
        pooler: an encoder ends in BERT's pooler (dense + tanh over token 0).
        image, patch, channels, classes: a ViT's input and classifier.
        final_norm: a norm after the last block (pre-norm networks).
    """

    kind: str
    d_model: int
    blocks: tuple[BlockSpec, ...]
    seq: int
    vocab: int = 0
    context: int = 0
    mlp: str = "gelu"
    norm: str = "layer"
    norm_eps: float = 1e-5
    prenorm: bool = True
    bias: bool = True
    tied: bool = True
    segments: int = 0
    pooler: bool = False
    image: int = 0
    patch: int = 0
    channels: int = 3
    classes: int = 0
    final_norm: bool = True


class _Writer:
    """Adds nodes under a scope prefix."""

    def __init__(self, spec: NetSpec) -> None:
        self.g = ArchGraph(convention=CONVENTION)
        self.spec = spec

    def add(self, op: str, inputs: Sequence[int] | int, scope: str, **attrs) -> int:
        return self.g.add(op, inputs, scope=scope, **attrs)

    def norm(self, x: int, scope: str) -> int:
        s = self.spec
        if s.norm == "rms":
            return self.add("rms_norm", x, scope, eps=s.norm_eps)
        return self.add("layer_norm", x, scope, eps=s.norm_eps)

    def dense(self, x: int, width: int, scope: str, bias: bool | None = None) -> int:
        return self.add(
            "dense", x, scope, out_features=width, bias=self.spec.bias if bias is None else bias
        )


def _attention(w: _Writer, x: int, block: BlockSpec, scope: str) -> int:
    kv = block.kv_heads or block.heads
    q = w.dense(x, block.heads * block.head_dim, f"{scope}/q")
    k = w.dense(x, kv * block.head_dim, f"{scope}/k")
    v = w.dense(x, kv * block.head_dim, f"{scope}/v")
    a = w.add(
        "attention",
        [q, k, v],
        f"{scope}/attention",
        heads=block.heads,
        kv_heads=block.kv_heads,
        causal=w.spec.kind == "decoder",
    )
    return w.dense(a, w.spec.d_model, f"{scope}/o")


def _mlp(w: _Writer, x: int, block: BlockSpec, scope: str) -> int:
    kind = w.spec.mlp
    if kind == "swiglu":
        gate = w.add("swish", w.dense(x, block.ffn, f"{scope}/gate"), f"{scope}/act")
        h = w.add("mul", [gate, w.dense(x, block.ffn, f"{scope}/up")], f"{scope}/gated")
    else:
        h = w.dense(x, block.ffn, f"{scope}/up")
        if kind == "relu":
            h = w.add("relu", h, f"{scope}/act")
        else:
            h = w.add("gelu", h, f"{scope}/act", approximate=kind == "gelu_tanh")
    return w.dense(h, w.spec.d_model, f"{scope}/down")


def _block(w: _Writer, x: int, block: BlockSpec, i: int) -> int:
    for part, fn in (("attn", _attention), ("mlp", _mlp)):
        scope = f"block{i}/{part}"
        if w.spec.prenorm:
            x = w.add(
                "add", [x, fn(w, w.norm(x, f"{scope}/norm"), block, scope)], f"{scope}/residual"
            )
        else:
            x = w.norm(
                w.add("add", [x, fn(w, x, block, scope)], f"{scope}/residual"), f"{scope}/norm"
            )
    return x


def _embed(w: _Writer) -> tuple[int, int | None]:
    """The input and the embedded sequence; returns (sequence node, token-embedding node)."""
    s = w.spec
    if s.kind == "vit":
        x = w.add("input", (), "input", shape=[s.image, s.image, s.channels])
        x = w.add(
            "conv",
            x,
            "embed/patches",
            out_channels=s.d_model,
            kernel=s.patch,
            stride=s.patch,
            bias=s.bias,
        )
        x = w.add("cls_token", w.add("tokens", x, "embed/tokens"), "embed/cls")
        tokens = None
    else:
        ids = w.add("input", (), "input", shape=[s.seq], dtype="int32")
        x = tokens = w.add("embed", ids, "embed/tokens", vocab=s.vocab, dim=s.d_model)
    if s.context:
        x = w.add("pos_embed", x, "embed/positions", max_len=s.context)
    if s.segments:
        x = w.add("segment_embed", x, "embed/segments", segments=s.segments)
    if not s.prenorm and s.kind != "vit":
        x = w.norm(x, "embed/norm")  # BERT normalises the embeddings
    return x, tokens


def _head(w: _Writer, x: int, tokens: int | None) -> int:
    s = w.spec
    if s.final_norm:
        x = w.norm(x, "head/norm")
    if s.kind == "decoder":
        if s.tied:
            return w.add("unembed", x, "head/out", embedding=tokens)
        return w.dense(x, s.vocab, "head/out", bias=False)
    if s.kind == "vit":
        return w.dense(w.add("select_token", x, "head/cls", index=0), s.classes, "head/out")
    if s.pooler:
        x = w.dense(w.add("select_token", x, "head/cls", index=0), s.d_model, "head/pooler")
        x = w.add("tanh", x, "head/pooler_act")
    return x


def build(spec: NetSpec, meta: dict | None = None) -> ArchGraph:
    """The IR graph of ``spec`` (finalized: validated, shapes inferred)."""
    w = _Writer(spec)
    x, tokens = _embed(w)
    for i, block in enumerate(spec.blocks):
        x = _block(w, x, block, i)
    w.add("output", _head(w, x, tokens), "output")
    w.g.meta.update(meta or {})
    return w.g.finalize()


def block_graph(spec: NetSpec, block: BlockSpec) -> ArchGraph:
    """One block of ``spec`` alone, from a float ``(seq, d_model)`` input (latency tables)."""
    w = _Writer(spec)
    x = w.add("input", (), "input", shape=[spec.seq, spec.d_model])
    w.add("output", _block(w, x, block, 0), "output")
    return w.g.finalize()
