"""The ``gpt`` space: an elastic byte-level decoder (GPT-2 blocks), every child nested.

A child chooses the embedding width (one for the whole network), its depth, and per layer
the number of attention heads (of a fixed head size) and the MLP width. Choices are
*nested*: a child uses the first ``d`` channels of every width-``D`` weight, the first
``h`` heads and the first ``f`` MLP units of each layer, and the first ``L`` layers (or,
in a supernet made elastic from a trained model, the ``L`` most important; see
``supernet.py``), so every child is a slice of one set of weights (SortedNet, Flextron).

Blocks are GPT-2's: pre-LayerNorm, tanh GELU MLP, biases, learned positions, output tied to
the byte embedding (vocabulary 256). The cost convention is the transformer space's
(:mod:`nas.search_spaces.transformer.network`), at the space's context length.

Sizes: ``gpt`` is CPU-sized (widths 32-64, up to 4 layers of up to 4 heads of 16, MLP
64-256, 128 bytes of context; the largest child has 224,640 parameters); ``gpt-base`` is
the larger size documented for runs by hand and on GPUs (widths 128-256, up to 6 layers of
up to 4 heads of 64, MLP 256-1024, 256 bytes of context; 4,870,144 parameters).

Genotype notation: ``d64:h4,4,2:f256,128,64`` (width 64, three layers with 4, 4 and 2
heads and MLP widths 256, 128 and 64); ``max`` and ``min`` name the extremes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from nas.search_spaces.transformer.network import BlockSpec, NetSpec, build

from nas.errors import InvalidGenotype
from nas.graph import ArchGraph
from nas.space import Genotype, SearchSpace


@dataclass(frozen=True)
class GPTGenotype(Genotype):
    """Width ``d_model``; per layer (as many as layers) ``heads`` and ``ffn`` width."""

    d_model: int
    heads: tuple[int, ...]
    ffn: tuple[int, ...]
    space_name: ClassVar[str] = "gpt"

    def __post_init__(self) -> None:
        if not isinstance(self.heads, tuple) or not isinstance(self.ffn, tuple):
            raise InvalidGenotype("gpt: heads and ffn must be tuples (one entry per layer)")
        if not self.heads or len(self.heads) != len(self.ffn):
            raise InvalidGenotype(
                f"gpt: {len(self.heads)} head counts for {len(self.ffn)} MLP widths; "
                "give one of each per layer"
            )
        for v in (self.d_model, *self.heads, *self.ffn):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise InvalidGenotype(f"gpt: widths and head counts must be positive ints: {v!r}")

    @property
    def depth(self) -> int:
        return len(self.heads)

    def to_str(self) -> str:
        return f"d{self.d_model}:h{','.join(map(str, self.heads))}:f{','.join(map(str, self.ffn))}"


@dataclass(frozen=True)
class GPTBaseGenotype(GPTGenotype):
    """A child of the ``gpt-base`` space."""

    space_name: ClassVar[str] = "gpt-base"


def parse_gpt(text: str, cls: type[GPTGenotype] = GPTGenotype) -> GPTGenotype:
    """``d64:h4,4,2:f256,128,64`` -> a genotype."""
    parts = text.strip().split(":")
    if len(parts) != 3 or parts[0][:1] != "d" or parts[1][:1] != "h" or parts[2][:1] != "f":
        raise InvalidGenotype(
            f"gpt: {text!r} is not in the notation d<width>:h<heads,...>:f<mlp widths,...>"
        )
    try:
        d = int(parts[0][1:])
        heads = tuple(int(v) for v in parts[1][1:].split(","))
        ffn = tuple(int(v) for v in parts[2][1:].split(","))
    except ValueError:
        raise InvalidGenotype(f"gpt: {text!r} holds a value that is not an integer") from None
    return cls(d, heads, ffn)


class GPTSpace(SearchSpace):
    """The elastic decoder (see the module docstring).

    Args:
        d_models: embedding widths (ascending).
        max_layers: the deepest child; depths run from ``min_layers`` to it.
        heads: head counts a layer may have (ascending).
        head_dim: the size of every head.
        ffns: MLP widths a layer may have (ascending).
        context: bytes a child reads (and the position table's rows).
        min_layers: the shallowest child.
    """

    name: ClassVar[str] = "gpt"
    description: ClassVar[str] = (
        "elastic byte-level GPT decoder: width, depth, heads and MLP width per layer (nested)"
    )
    default_dataset: ClassVar[str] = "stdlib"
    datasets: ClassVar[tuple[str, ...]] = ("stdlib", "text")
    vocab: ClassVar[int] = 256
    genotype_cls: ClassVar[type[GPTGenotype]] = GPTGenotype

    def __init__(
        self,
        d_models: Sequence[int] = (32, 48, 64),
        max_layers: int = 4,
        heads: Sequence[int] = (1, 2, 3, 4),
        head_dim: int = 16,
        ffns: Sequence[int] = (64, 128, 192, 256),
        context: int = 128,
        min_layers: int = 1,
    ) -> None:
        self.d_models = tuple(sorted(int(v) for v in d_models))
        self.max_layers = int(max_layers)
        self.min_layers = int(min_layers)
        self.head_counts = tuple(sorted(int(v) for v in heads))
        self.head_dim = int(head_dim)
        self.ffns = tuple(sorted(int(v) for v in ffns))
        self.context = int(context)
        if not 1 <= self.min_layers <= self.max_layers:
            raise InvalidGenotype(f"gpt: layers {self.min_layers}..{self.max_layers} is empty")

    def settings(self) -> dict[str, Any]:
        """What fixes the space (and so the supernet's shapes)."""
        return {
            "d_models": list(self.d_models),
            "max_layers": self.max_layers,
            "min_layers": self.min_layers,
            "heads": list(self.head_counts),
            "head_dim": self.head_dim,
            "ffns": list(self.ffns),
            "context": self.context,
        }

    # ------------------------------------------------------------------ the decisions

    def depths(self) -> tuple[int, ...]:
        return tuple(range(self.min_layers, self.max_layers + 1))

    def choices(self) -> list[tuple[str, int]]:
        out = [("d_model", len(self.d_models)), ("depth", len(self.depths()))]
        for i in range(self.max_layers):
            out += [(f"heads{i}", len(self.head_counts)), (f"ffn{i}", len(self.ffns))]
        return out

    def from_indices(self, indices: Sequence[int]) -> GPTGenotype:
        idx = [int(i) for i in indices]
        depth = self.depths()[idx[1]]
        heads = tuple(self.head_counts[idx[2 + 2 * i]] for i in range(depth))
        ffn = tuple(self.ffns[idx[3 + 2 * i]] for i in range(depth))
        return self.genotype_cls(self.d_models[idx[0]], heads, ffn)

    def to_indices(self, genotype: Genotype) -> list[int]:
        """Indices of a member; layers beyond its depth read index 0."""
        g = self._check(genotype)
        idx = [self.d_models.index(g.d_model), self.depths().index(g.depth)]
        for i in range(self.max_layers):
            if i < g.depth:
                idx += [self.head_counts.index(g.heads[i]), self.ffns.index(g.ffn[i])]
            else:
                idx += [0, 0]
        return idx

    def _check(self, genotype: Any) -> GPTGenotype:
        if type(genotype) is not self.genotype_cls:
            raise InvalidGenotype(f"{self.name}: not a {self.name} genotype: {genotype!r}")
        g = genotype
        bad = (
            ("width", g.d_model, self.d_models),
            ("depth", g.depth, self.depths()),
            *(("heads", h, self.head_counts) for h in g.heads),
            *(("MLP width", f, self.ffns) for f in g.ffn),
        )
        for what, v, allowed in bad:
            if v not in allowed:
                raise InvalidGenotype(f"gpt: {what} {v} is not one of {list(allowed)}")
        return g

    def _active(self, genotype: GPTGenotype) -> list[int]:
        """Decisions that change the network (layers beyond the depth do not)."""
        return [0, 1] + [2 + k for k in range(2 * genotype.depth)]

    def mutate(self, genotype: Genotype, rng: np.random.Generator) -> GPTGenotype:
        g = self._check(genotype)
        idx = self.to_indices(g)
        sizes = [n for _, n in self.choices()]
        i = int(rng.choice([k for k in self._active(g) if sizes[k] > 1]))
        new = int(rng.integers(sizes[i] - 1))
        idx[i] = new if new < idx[i] else new + 1
        if i == 1:  # a deeper child: new layers copy the last one
            depth = self.depths()[idx[1]]
            for k in range(g.depth, depth):
                idx[2 + 2 * k : 4 + 2 * k] = idx[2 * g.depth : 2 + 2 * g.depth]
        return self.from_indices(idx)

    def neighbours(self, genotype: Genotype) -> list[Genotype]:
        g = self._check(genotype)
        out = {}
        for n in super().neighbours(g):
            if n != g:
                out[n] = None
        return list(out)

    def contains(self, genotype: Any) -> bool:
        try:
            self._check(genotype)
        except InvalidGenotype:
            return False
        return True

    @property
    def size(self) -> int:
        per_layer = len(self.head_counts) * len(self.ffns)
        return len(self.d_models) * sum(per_layer**d for d in self.depths())

    # ------------------------------------------------------------------ names and graphs

    def parse(self, text: str) -> GPTGenotype:
        return parse_gpt(text, self.genotype_cls)

    def known(self) -> Mapping[str, GPTGenotype]:
        big, small = self.max_layers, self.min_layers
        return {
            "max": self.genotype_cls(
                self.d_models[-1], (self.head_counts[-1],) * big, (self.ffns[-1],) * big
            ),
            "min": self.genotype_cls(
                self.d_models[0], (self.head_counts[0],) * small, (self.ffns[0],) * small
            ),
        }

    def smallest(self) -> GPTGenotype:
        """The narrowest, shallowest child: every cost of the space at its minimum."""
        return self.known()["min"]

    def supernet_option_keys(self) -> tuple[str, ...]:
        """The options of this space's ``supernet`` evaluator (its ``[evaluator_options]``)."""
        from nas.search_spaces.gpt.evaluator import GPTSupernetOptions

        return tuple(GPTSupernetOptions.__dataclass_fields__)

    def net_spec(self, genotype: GPTGenotype) -> NetSpec:
        blocks = tuple(
            BlockSpec(h, f, self.head_dim)
            for h, f in zip(genotype.heads, genotype.ffn, strict=True)
        )
        return NetSpec(
            kind="decoder",
            d_model=genotype.d_model,
            blocks=blocks,
            seq=self.context,
            vocab=self.vocab,
            context=self.context,
            mlp="gelu_tanh",
            norm="layer",
            norm_eps=1e-5,
        )

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        g = self._check(genotype)
        meta = {"space": self.name, "arch": g.to_str(), "dataset": dataset}
        return build(self.net_spec(g), meta)

    def supernet_evaluator(self, dataset: str | None = None, **options: Any) -> Any:
        """The ``supernet`` evaluator: children scored with the trained supernet's weights."""
        from nas.search_spaces.gpt.evaluator import supernet_evaluator

        return supernet_evaluator(self, dataset, **options)


class GPTBaseSpace(GPTSpace):
    """The larger ``gpt`` size, for runs by hand and on GPUs (see the module docstring)."""

    name: ClassVar[str] = "gpt-base"
    genotype_cls: ClassVar[type[GPTGenotype]] = GPTBaseGenotype
    description: ClassVar[str] = (
        "elastic byte-level GPT decoder, larger: widths 128-256, 6 layers, 4 heads of 64"
    )

    def __init__(self) -> None:
        super().__init__(
            d_models=(128, 192, 256),
            max_layers=6,
            heads=(1, 2, 3, 4),
            head_dim=64,
            ffns=(256, 512, 768, 1024),
            context=256,
        )
