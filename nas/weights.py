"""Model weights as safetensors (a format that executes no code on load).

Loading checks a file against the model it is loaded into, and every mismatch is a
:class:`~nas.errors.DataError` naming the file and the tensor: a file that is not
safetensors, a missing tensor, an extra (unknown) tensor, a wrong shape or a wrong dtype.
Nothing is cast or dropped silently, and a model is never returned untrained in place of
weights that are missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from nas.compat import state_key
from nas.errors import DataError, GraphError
from nas.graph import ArchGraph
from nas.inputs import read_safetensors

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


def check_tensors(path: Path, tensors: dict[str, np.ndarray], model: nnx.Module) -> None:
    """Raise unless ``tensors`` hold exactly ``model``'s variables, shapes and dtypes."""
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    wanted = {_key(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}
    missing = sorted(set(wanted) - set(tensors))
    if missing:
        raise DataError(
            f"{path} has no tensor {missing[0]!r} ({len(missing)} missing): it was saved for "
            "another architecture"
        )
    extra = sorted(set(tensors) - set(wanted))
    if extra:
        raise DataError(
            f"{path} holds tensor {extra[0]!r} ({len(extra)} unknown), which the model does not "
            "have: it was saved for another architecture"
        )
    for k, leaf in wanted.items():
        if tensors[k].shape != leaf.shape:
            raise DataError(
                f"{path}: tensor {k!r} has shape {tensors[k].shape}, the model wants {leaf.shape}"
            )
        if tensors[k].dtype != leaf.dtype:
            raise DataError(
                f"{path}: tensor {k!r} is {tensors[k].dtype}, the model holds {leaf.dtype}"
            )


def load_weights(model: nnx.Module, path: str | Path) -> nnx.Module:
    """Load a safetensors file written by :func:`save_weights` into ``model`` (in place)."""
    path = Path(path)
    tensors = read_safetensors(path)
    check_tensors(path, tensors, model)
    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    new = [jax.numpy.asarray(tensors[_key(p)]) for p, _ in leaves]
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
    return model


def model_from_weights(graph: ArchGraph, path: str | Path, seed: int = 0):
    """The IR-built model of ``graph`` holding the weights of a safetensors file written by
    :func:`save_weights` (built from them: no random initialisation, which compiles one
    initialiser per weight shape; an OFA child loads in a fraction of a second, not ~10 s).
    The dropout stream is seeded as :func:`nas.model.build_model` seeds it."""
    from nas.model import GraphModel

    path = Path(path)
    tensors = read_safetensors(path)
    weights: dict[int, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        parts = key.split(".")  # layers.<node>.<name>.value
        if len(parts) == 4 and parts[0] == "layers" and parts[1].isdigit():
            weights.setdefault(int(parts[1]), {})[parts[2]] = value
    try:
        model = GraphModel(graph, rngs=nnx.Rngs(params=seed, dropout=seed + 1), weights=weights)
    except GraphError as e:
        raise DataError(f"{path} does not fit the architecture: {e}") from None
    check_tensors(path, tensors, model)  # what the build cannot see: extras, dtypes
    return model


def load_model(folder: str | Path):
    """Rebuild a trained model from an exported folder (``arch.json`` +
    ``weights.safetensors``, as ``nas export --format flax`` writes).

    Raises:
        DataError: the folder, ``arch.json`` or the weights are missing or invalid (the
            message names the file, and the tensor where one is at fault).
    """
    from nas.inputs import read_json

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not an exported folder (nas export --format flax)")
    arch = folder / "arch.json"
    if not arch.exists():
        raise DataError(f"{folder} holds no arch.json; export with --format flax first")
    data = read_json(arch, "architecture file", DataError)
    if not isinstance(data, dict):
        raise DataError(f"{arch} is not an exported architecture (a JSON object)")
    try:
        graph = ArchGraph.from_json(data["graph"] if "graph" in data else data)
    except GraphError as e:
        raise DataError(f"{arch}: {e}") from None
    weights = folder / "weights.safetensors"
    if not weights.exists():
        raise DataError(
            f"{folder} holds no weights.safetensors: export with --format flax for a model "
            "with weights (nas.model.build_model(graph) builds an untrained one)"
        )
    return model_from_weights(graph, weights)
