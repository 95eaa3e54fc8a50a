"""Model weights as safetensors (a format that executes no code on load)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nas.compat import state_key
from nas.errors import DataError
from nas.graph import ArchGraph

# Weights files are keyed by compat.state_key (stable across flax releases); the gennape
# predictor's files too (it imports this name).
_key = state_key


def flat_state(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every variable of ``model`` (parameters and batch statistics) by a dotted name."""
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {_key(path): np.asarray(leaf) for path, leaf in leaves}


def save_weights(model: nnx.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the model's variables to a safetensors file."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    save_file(flat_state(model), str(path), metadata=meta)
    return path


def load_weights(model: nnx.Module, path: str | Path) -> nnx.Module:
    """Load a safetensors file written by :func:`save_weights` into ``model`` (in place)."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.exists():
        raise DataError(f"weights file {path} does not exist")
    tensors = load_file(str(path))
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    new = []
    for p, leaf in leaves:
        k = _key(p)
        if k not in tensors:
            raise DataError(f"{path} has no tensor {k!r}: it was saved for another architecture")
        if tensors[k].shape != leaf.shape:
            raise DataError(
                f"{path}: tensor {k!r} has shape {tensors[k].shape}, model wants {leaf.shape}"
            )
        new.append(jax.numpy.asarray(tensors[k]))
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
    return model


def model_from_weights(graph: ArchGraph, path: str | Path, seed: int = 0):
    """The IR-built model of ``graph`` holding the weights of a safetensors file written by
    :func:`save_weights` (built from them: no random initialisation, which compiles one
    initialiser per weight shape; an OFA child loads in a fraction of a second, not ~10 s).
    The dropout stream is seeded as :func:`nas.model.build_model` seeds it."""
    from safetensors.numpy import load_file

    from nas.errors import GraphError
    from nas.model import GraphModel

    path = Path(path)
    if not path.exists():
        raise DataError(f"weights file {path} does not exist")
    weights: dict[int, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(path)).items():
        parts = key.split(".")  # layers.<node>.<name>.value
        if len(parts) == 4 and parts[0] == "layers" and parts[1].isdigit():
            weights.setdefault(int(parts[1]), {})[parts[2]] = value
    try:
        return GraphModel(graph, rngs=nnx.Rngs(params=seed, dropout=seed + 1), weights=weights)
    except GraphError as e:
        raise DataError(f"{path} does not fit the architecture: {e}") from None


def load_model(folder: str | Path):
    """Rebuild a model from an exported folder (``arch.json`` + ``weights.safetensors``)."""
    from nas.model import build_model

    folder = Path(folder)
    arch = folder / "arch.json"
    if not arch.exists():
        raise DataError(f"{folder} holds no arch.json; export with --format flax or json first")
    data = json.loads(arch.read_text())
    graph = ArchGraph.from_json(data["graph"] if "graph" in data else data)
    weights = folder / "weights.safetensors"
    return model_from_weights(graph, weights) if weights.exists() else build_model(graph)
