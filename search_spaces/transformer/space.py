"""The ``transformer`` space: any fixed decoder, encoder or vision transformer.

A genotype is a whole configuration (:class:`TransformerConfig`) written as
``key=value`` pairs, optionally after a published model's name whose settings the pairs
override: ``gpt2``, ``gpt2,seq=128`` (GPT-2 counted at 128 tokens), ``bert-base,layers=6``.
The published models (:mod:`nas.search_spaces.transformer.genotypes`) count exactly as their
authors' code counts them; the cost convention is :mod:`nas.search_spaces.transformer.network`'s.

As a search space it holds every valid configuration; sampling, mutation and the encoding
cover a small grid (kind, depth, width, head size, MLP ratio and form, norm and its
position) over byte-level models of 256 tokens; published models sit outside the grid and
are reached by name (mutating or encoding one is an error naming the grid).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from nas.search_spaces.transformer.network import KINDS, MLPS, NORMS, BlockSpec, NetSpec, build

from nas.errors import InvalidGenotype
from nas.graph import ArchGraph
from nas.space import Genotype, SearchSpace


@dataclass(frozen=True)
class TransformerConfig(Genotype):
    """A fixed transformer (see :class:`~nas.search_spaces.transformer.network.NetSpec` for the
    fields; ``head_dim`` 0 means ``d_model // heads``, ``seq`` 0 means ``context``)."""

    kind: str = "decoder"
    layers: int = 4
    d_model: int = 256
    heads: int = 4
    head_dim: int = 0
    kv_heads: int = 0
    ffn: int = 1024
    mlp: str = "gelu_tanh"
    norm: str = "layer"
    norm_eps: float = 1e-5
    prenorm: bool = True
    bias: bool = True
    vocab: int = 256
    context: int = 256
    seq: int = 0
    tied: bool = True
    segments: int = 0
    pooler: bool = False
    image: int = 0
    patch: int = 0
    channels: int = 3
    classes: int = 0
    space_name: ClassVar[str] = "transformer"

    def __post_init__(self) -> None:
        for name, allowed in (("kind", KINDS), ("mlp", MLPS), ("norm", NORMS)):
            if getattr(self, name) not in allowed:
                raise InvalidGenotype(
                    f"transformer: {name}={getattr(self, name)!r}; expected one of {list(allowed)}"
                )
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int" and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise InvalidGenotype(f"transformer: {f.name} must be an int >= 0, got {v!r}")
        for name in ("layers", "d_model", "heads", "ffn"):
            if getattr(self, name) <= 0:
                raise InvalidGenotype(f"transformer: {name} must be positive")
        if not self.head_dim and self.d_model % self.heads:
            raise InvalidGenotype(
                f"transformer: d_model {self.d_model} does not split into {self.heads} heads; "
                "give head_dim"
            )
        if self.kind == "vit":
            if not (self.image and self.patch and self.classes) or self.image % self.patch:
                raise InvalidGenotype(
                    "transformer: a vit needs image, patch (dividing image) and classes"
                )
        elif not self.vocab:
            raise InvalidGenotype(f"transformer: a {self.kind} needs a vocab")
        if self.kind != "vit" and self.context and self.tokens > self.context:
            raise InvalidGenotype(
                f"transformer: seq {self.tokens} exceeds the position table's {self.context}"
            )

    @property
    def tokens(self) -> int:
        """Tokens per sample the network is counted at."""
        if self.kind == "vit":
            return (self.image // self.patch) ** 2 + 1
        return self.seq or self.context

    def to_str(self) -> str:
        return ",".join(f"{f.name}={_fmt(getattr(self, f.name))}" for f in fields(self))

    def net_spec(self) -> NetSpec:
        block = BlockSpec(
            self.heads, self.ffn, self.head_dim or self.d_model // self.heads, self.kv_heads
        )
        return NetSpec(
            kind=self.kind,
            d_model=self.d_model,
            blocks=(block,) * self.layers,
            seq=self.tokens,
            vocab=self.vocab if self.kind != "vit" else 0,
            context=self.context if self.kind != "vit" else self.tokens,
            mlp=self.mlp,
            norm=self.norm,
            norm_eps=self.norm_eps,
            prenorm=self.prenorm,
            bias=self.bias,
            tied=self.tied,
            segments=self.segments,
            pooler=self.pooler,
            image=self.image,
            patch=self.patch,
            channels=self.channels,
            classes=self.classes,
            final_norm=self.prenorm,
        )


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _value(name: str, text: str, kind: str) -> Any:
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise InvalidGenotype(f"transformer: {name}={text!r} is not a {kind}") from None
    return text


def parse_config(text: str, known: Mapping[str, TransformerConfig]) -> TransformerConfig:
    """``[NAME,]key=value,...`` -> a config (NAME: a published model whose fields the pairs
    override)."""
    parts = [p.strip() for p in text.strip().split(",") if p.strip()]
    if not parts:
        raise InvalidGenotype("transformer: empty architecture; give a model name or key=value")
    base = TransformerConfig()
    if "=" not in parts[0]:
        if parts[0] not in known:
            raise InvalidGenotype(
                f"transformer: unknown model {parts[0]!r}; known: {sorted(known)} "
                "(or write key=value pairs)"
            )
        base, parts = known[parts[0]], parts[1:]
    types = {f.name: f.type for f in fields(TransformerConfig)}
    changes: dict[str, Any] = {}
    for p in parts:
        key, sep, val = p.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise InvalidGenotype(
                f"transformer: {p!r} is not key=value with a key among {sorted(types)}"
            )
        changes[key] = _value(key, val.strip(), types[key])
    return dataclasses.replace(base, **changes)


# The search grid: (field, values); ffn is a multiple of d_model, heads come from head_dim.
GRID: tuple[tuple[str, tuple[Any, ...]], ...] = (
    ("kind", ("decoder", "encoder")),
    ("layers", (2, 4, 6, 12)),
    ("d_model", (128, 256, 384, 512, 768)),
    ("head_dim", (32, 64)),
    ("ffn_ratio", (2, 4)),
    ("mlp", ("gelu", "gelu_tanh", "swiglu")),
    ("norm", ("layer", "rms")),
    ("prenorm", (True, False)),
)


class TransformerSpace(SearchSpace):
    """Fixed transformers: published models by name, any configuration by its fields."""

    name: ClassVar[str] = "transformer"
    description: ClassVar[str] = (
        "any fixed decoder, encoder or ViT; published models counted as their authors count"
    )
    default_dataset: ClassVar[str] = "native"
    datasets: ClassVar[tuple[str, ...]] = ("native",)

    def choices(self) -> list[tuple[str, int]]:
        return [(name, len(values)) for name, values in GRID]

    def from_indices(self, indices: Sequence[int]) -> TransformerConfig:
        v = {name: values[int(i)] for (name, values), i in zip(GRID, indices, strict=True)}
        d, hd = v["d_model"], v["head_dim"]
        return TransformerConfig(
            kind=v["kind"],
            layers=v["layers"],
            d_model=d,
            heads=d // hd,
            ffn=v["ffn_ratio"] * d,
            mlp=v["mlp"],
            norm=v["norm"],
            prenorm=v["prenorm"],
            segments=0,
        )

    def to_indices(self, genotype: Genotype) -> list[int]:
        if not isinstance(genotype, TransformerConfig):
            raise InvalidGenotype(f"transformer: not a transformer configuration: {genotype!r}")
        g = genotype
        if g.d_model % g.heads or g.ffn % g.d_model:
            raise InvalidGenotype("transformer: configuration outside the search grid")
        values = {
            "kind": g.kind,
            "layers": g.layers,
            "d_model": g.d_model,
            "head_dim": g.d_model // g.heads,
            "ffn_ratio": g.ffn // g.d_model,
            "mlp": g.mlp,
            "norm": g.norm,
            "prenorm": g.prenorm,
        }
        try:
            idx = [list(vals).index(values[name]) for name, vals in GRID]
        except ValueError:
            raise InvalidGenotype("transformer: configuration outside the search grid") from None
        if self.from_indices(idx) != g:
            raise InvalidGenotype("transformer: configuration outside the search grid")
        return idx

    def contains(self, genotype: Any) -> bool:
        """Every valid configuration (published models included); sampling, mutation and
        the encoding cover the grid."""
        return isinstance(genotype, TransformerConfig)

    def parse(self, text: str) -> TransformerConfig:
        return parse_config(text, self.known())

    def resolve(self, arch: str) -> Genotype:
        text = arch.strip()
        if text.endswith(".json"):
            return super().resolve(text)
        return self.parse(text)

    def known(self) -> Mapping[str, TransformerConfig]:
        from nas.search_spaces.transformer.genotypes import PUBLISHED

        return {name: model.config for name, model in PUBLISHED.items()}

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        if not isinstance(genotype, TransformerConfig):
            raise InvalidGenotype(f"transformer: not a transformer configuration: {genotype!r}")
        meta = {"space": self.name, "arch": genotype.to_str(), "dataset": dataset}
        return build(genotype.net_spec(), meta)
