"""Export a stored trial: genotype + IR JSON, and weights (safetensors) with a one-call loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nas import __version__
from nas.errors import ConfigError, StorageError
from nas.storage import TrialStore, find_record, mask_url

EXPORT_SCHEMA = "nas.export"
EXPORT_VERSION = 1
FORMATS = ("json", "flax", "python", "onnx")


def export_trial(
    storage: str,
    study_name: str,
    trial: str = "best",
    fmt: str = "json",
    out: str | Path = "export",
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Write ``arch.json`` (and for ``flax`` ``weights.safetensors``) for one trial.

    The weights are the trial's own (artifact ``weights``); for a trial scored by a
    weight-sharing supernet (artifact ``supernet``) without them, the child network with the
    weights it inherits, BatchNorm recalibrated as the evaluator did (``data_dir``: local
    CIFAR-10 for that, when the search ran on it); else the initialisation, marked untrained.

    Returns the exported document. ``nas.weights.load_model(out)`` rebuilds the model.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    from search_spaces import get_space

    study = TrialStore.open(storage, study_name)
    rec = find_record(study, trial)
    if rec.state != "COMPLETE":
        raise StorageError(f"trial {rec.number} of {study_name!r} is {rec.state}, not COMPLETE")
    settings = study.settings()
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
            "storage": mask_url(storage),
            "trial": rec.number,
            "dataset": dataset,
            "seed": settings.get("seed"),
            "settings": settings,
        },
    }
    weights_src = rec.artifacts.get("weights")
    has_weights = bool(weights_src) and Path(weights_src).exists()
    supernet_src = rec.artifacts.get("supernet")
    inherited = None  # the child model with the supernet's weights
    if supernet_src and not has_weights and fmt in ("flax", "onnx"):
        inherited = _supernet_child(space, genotype, settings, supernet_src, data_dir, rec.number)
    if has_weights:  # an elastic supernet's evaluator writes the inherited child itself
        source = "supernet" if supernet_src else "trial"
    else:
        source = "supernet" if inherited is not None else "init"
    if fmt == "python":
        from nas.codegen import graph_to_python

        (out / "model.py").write_text(
            graph_to_python(graph, f"{space.name} architecture {genotype.to_str()}")
        )
        doc["python"] = {"file": "model.py"}
    if fmt == "onnx":
        from nas.onnx_export import graph_to_onnx

        model = inherited if inherited is not None else _trained_model(graph, weights_src, settings)
        proto = graph_to_onnx(graph, model)
        (out / "model.onnx").write_bytes(proto.SerializeToString())
        doc["onnx"] = {"file": "model.onnx", "trained": source != "init", "source": source}
    if fmt == "flax":
        target = out / "weights.safetensors"
        if has_weights:
            shutil.copyfile(weights_src, target)
            doc["weights"] = {"file": target.name, "trained": True, "source": source}
        elif inherited is not None:
            from nas.weights import save_weights

            save_weights(inherited, target, {"arch": genotype.to_str(), "supernet": supernet_src})
            doc["weights"] = {"file": target.name, "trained": True, "source": source}
        else:
            # No trained weights (a table lookup): export the initialisation, and say so.
            from nas.model import build_model
            from nas.weights import save_weights

            save_weights(build_model(graph, seed=settings.get("seed") or 0), target)
            doc["weights"] = {"file": target.name, "trained": False, "source": source}
        if supernet_src:
            doc["weights"]["supernet"] = supernet_src
    (out / "arch.json").write_text(json.dumps(doc, indent=1))
    return doc


def _trained_model(graph, weights_src, settings):
    """The IR-built model with the trial's trained weights when there are any."""
    from nas.model import build_model
    from nas.weights import model_from_weights

    seed = settings.get("seed") or 0
    if weights_src and Path(weights_src).exists():
        model = model_from_weights(graph, weights_src, seed)
    else:
        model = build_model(graph, seed=seed)
    model.eval()
    return model


def _supernet_child(space, genotype, settings, supernet_src, data_dir, number):
    """The trial's child network with the weights it inherits from its trained supernet.

    The space's ``supernet`` evaluator is rebuilt from the study's settings and asked for
    ``child_model(genotype)``, so every weight-sharing family plugs in by providing that.
    """
    from nas.evaluators import get_evaluator

    if not Path(supernet_src).exists():
        raise StorageError(
            f"trial {number} inherits its weights from the supernet {supernet_src}, which is "
            "missing; restore the run folder or export with --format json"
        )
    options = dict(settings.get("supernet") or {})
    if data_dir:
        options["data_dir"] = data_dir
    evaluator = get_evaluator(
        "supernet", space, settings.get("dataset"), supernet_path=supernet_src, **options
    )
    if not hasattr(evaluator, "child_model"):
        raise ConfigError(f"the {space.name} supernet evaluator cannot extract a child network")
    return evaluator.child_model(genotype)
