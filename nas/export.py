"""Export a stored trial: genotype + IR JSON, and weights (safetensors) with a one-call loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nas import __version__
from nas.errors import ConfigError, StorageError
from nas.storage import find_record, open_study

EXPORT_SCHEMA = "nas.export"
EXPORT_VERSION = 1
FORMATS = ("json", "flax", "python", "onnx")


def export_trial(
    storage: str,
    study_name: str,
    trial: str = "best",
    fmt: str = "json",
    out: str | Path = "export",
) -> dict[str, Any]:
    """Write ``arch.json`` (and for ``flax`` ``weights.safetensors``) for one trial.

    Returns the exported document. ``nas.weights.load_model(out)`` rebuilds the model.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    from search_spaces import get_space

    study = open_study(storage, study_name, create=False, resume=True)
    rec = find_record(study, trial)
    if rec.state != "COMPLETE":
        raise StorageError(f"trial {rec.number} of {study_name!r} is {rec.state}, not COMPLETE")
    settings = study.user_attrs.get("settings", {})
    space = get_space(rec.space)
    genotype = space.parse(rec.arch)
    dataset = settings.get("dataset")
    graph = space.to_graph(genotype, dataset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": EXPORT_SCHEMA,
        "version": EXPORT_VERSION,
        "genotype": genotype.to_json(),
        "graph": graph.to_json(),
        "hash": graph.canonical_hash(),
        "metrics": rec.metrics,
        "cost": {"params": graph.params(), "flops": graph.flops(), **rec.cost},
        "provenance": {
            "platform_version": __version__,
            "study": study_name,
            "storage": storage,
            "trial": rec.number,
            "dataset": dataset,
            "seed": settings.get("seed"),
            "settings": settings,
        },
    }
    weights_src = rec.artifacts.get("weights")
    if fmt == "python":
        from nas.codegen import graph_to_python

        (out / "model.py").write_text(
            graph_to_python(graph, f"{space.name} architecture {genotype.to_str()}")
        )
        doc["python"] = {"file": "model.py"}
    if fmt == "onnx":
        from nas.onnx_export import graph_to_onnx

        model = _trained_model(graph, weights_src, settings)
        proto = graph_to_onnx(graph, model)
        (out / "model.onnx").write_bytes(proto.SerializeToString())
        doc["onnx"] = {"file": "model.onnx", "trained": bool(weights_src)}
    if fmt == "flax":
        target = out / "weights.safetensors"
        if weights_src and Path(weights_src).exists():
            shutil.copyfile(weights_src, target)
            doc["weights"] = {"file": target.name, "trained": True}
        else:
            # No trained weights (a table lookup): export the initialisation, and say so.
            from nas.model import build_model
            from nas.weights import save_weights

            save_weights(build_model(graph, seed=settings.get("seed") or 0), target)
            doc["weights"] = {"file": target.name, "trained": False}
    (out / "arch.json").write_text(json.dumps(doc, indent=1))
    return doc


def _trained_model(graph, weights_src, settings):
    """The IR-built model with the trial's trained weights when there are any."""
    from nas.model import build_model
    from nas.weights import load_weights

    model = build_model(graph, seed=settings.get("seed") or 0)
    if weights_src and Path(weights_src).exists():
        load_weights(model, weights_src)
    model.eval()
    return model
