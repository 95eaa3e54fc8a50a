"""Export a stored trial: genotype + IR JSON, and weights (safetensors) with a one-call loader.

A trial's files (its trained weights, the supernet it inherits from) live in the run folder
the search wrote. Export finds them there wherever it runs and wherever the folder was moved
together with its study: the run folder is ``--run-dir`` when given, else the SQLite file's
folder (the default layout, ``<run>/study.db``), else one the study records as
``settings["run_dir"]``; a study in a server database (PostgreSQL) needs ``--run-dir``
unless it records one. A path the study names is used only when it resolves (symlinks
followed) inside that folder (:func:`nas.files.inside`): a shared or downloaded study cannot
make export read or copy any other file. Trained weights that cannot be found are an error
naming them, never a silent export of untrained ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nas import __version__
from nas.errors import ConfigError, NasError, StorageError
from nas.files import inside, output_dir
from nas.storage import TrialStore, find_record, mask_url, sqlite_path

EXPORT_SCHEMA = "nas.export"
EXPORT_VERSION = 1
FORMATS = ("json", "flax", "python", "onnx")
ARTIFACT_DIRS = ("trials", "supernet")  # where a search writes its files in the run folder


def export_trial(
    storage: str,
    study_name: str,
    trial: str = "best",
    fmt: str = "json",
    out: str | Path = "export",
    data_dir: str | None = None,
    run_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``arch.json`` (and for ``flax`` ``weights.safetensors``) for one trial.

    The weights are the trial's own (artifact ``weights``); for a trial scored by a
    weight-sharing supernet (artifact ``supernet``) without them, the child network with the
    weights it inherits, BatchNorm recalibrated as the evaluator did (``data_dir``: local
    CIFAR-10 for that, when the search ran on it). A trial without trained weights (a table
    lookup) exports the initialisation, marked ``"trained": false``. ``run_dir``: the run
    folder, where the storage does not say (see the module docstring).

    Returns the exported document. ``nas.weights.load_model(out)`` rebuilds the model.

    Raises:
        StorageError: the study cannot be read, or a file the trial needs is missing from
            its run folder or lies outside it.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {list(FORMATS)}")
    from nas.search_spaces import get_space

    rec, settings = _read_trial(storage, study_name, trial)
    space = get_space(rec.space)
    genotype = space.parse(rec.arch)
    dataset = settings.get("dataset")
    graph = space.to_graph(genotype, dataset)
    weights_src, supernet_src = _trial_files(rec, fmt, storage, settings, run_dir)
    out, _ = output_dir(out, "--out")
    doc = _document(rec, genotype, graph, study_name, storage, settings)
    inherited = None  # the child model with the supernet's weights
    if supernet_src:
        inherited = _supernet_child(space, genotype, settings, supernet_src, data_dir)
    # an elastic supernet's evaluator writes the inherited child as the trial's weights
    from_supernet = bool(rec.artifacts.get("supernet"))
    if weights_src:
        source = "supernet" if from_supernet else "trial"
    else:
        source = "supernet" if inherited is not None else "init"
    try:
        _write_format(doc, out, fmt, graph, genotype, space, settings, source,
                      weights_src, inherited)  # fmt: skip
        if from_supernet and "weights" in doc:
            doc["weights"]["supernet"] = rec.artifacts["supernet"]
        (out / "arch.json").write_text(json.dumps(doc, indent=1))
    except OSError as e:
        raise ConfigError(f"cannot write the export to {out}: {e.strerror or e}") from None
    return doc


def _read_trial(storage: str, study_name: str, trial: str):
    """The trial's record and the study's settings; a damaged or edited study (values of
    other types than the platform writes) is a StorageError."""
    import optuna
    import sqlalchemy.exc

    store = TrialStore.open(storage, study_name)
    try:
        rec = find_record(store, trial)
        settings = store.attr("settings", {})
    except NasError:
        raise
    except (
        optuna.exceptions.OptunaError,
        sqlalchemy.exc.SQLAlchemyError,
        ValueError,  # a stored JSON value that does not parse
        TypeError,  # stored values of other types than the platform writes
        AttributeError,
    ) as e:
        cause = e.__cause__ or e.__context__ or e  # optuna wraps the database's own error
        line = (str(cause).strip() or type(cause).__name__).splitlines()[0][:200]
        raise StorageError(
            f"study {study_name!r} in {mask_url(storage)} cannot be read (is the database "
            f"damaged?): {mask_url(line)}"
        ) from None
    if rec.state != "COMPLETE":
        raise StorageError(f"trial {rec.number} of {study_name!r} is {rec.state}, not COMPLETE")
    kinds = {"arch": str, "space": str, "metrics": dict, "cost": dict, "artifacts": dict}
    bad = [k for k, kind in kinds.items() if not isinstance(getattr(rec, k), kind)]
    bad += [] if isinstance(settings, dict) else ["settings"]
    if bad or not all(isinstance(v, str) for v in rec.artifacts.values()):
        raise StorageError(
            f"trial {rec.number} of {study_name!r} is malformed: {bad or ['artifacts']} "
            "do not have the types the platform writes"
        )
    return rec, settings


def _trial_files(rec, fmt: str, storage: str, settings: dict, run_dir) -> tuple:
    """``(weights, supernet)``: the trial's files this format needs, found in its run folder
    (``None`` where the trial has none, or the format or the trial's own weights make the
    supernet unnecessary)."""
    weights = rec.artifacts.get("weights")
    supernet = rec.artifacts.get("supernet")
    if fmt not in ("flax", "onnx") or not (weights or supernet):
        return None, None
    roots = run_folders(storage, settings, run_dir)
    if weights:
        try:
            return locate_artifact(weights, roots, f"trial {rec.number}'s weights file"), None
        except StorageError:
            if not supernet:  # an elastic trial's child can be rebuilt from its supernet
                raise
    return None, locate_artifact(supernet, roots, f"trial {rec.number}'s supernet file")


def run_folders(storage: str, settings: dict, run_dir: str | Path | None) -> list[Path]:
    """Where a study's run folder may be: ``run_dir`` when given, else the SQLite file's
    folder and the folder the study records (``settings["run_dir"]``)."""
    if run_dir is not None:
        if not Path(run_dir).is_dir():
            raise ConfigError(f"--run-dir {run_dir} is not a folder")
        return [Path(run_dir)]
    roots = []
    db = sqlite_path(storage)
    if db is not None:
        roots.append(db.parent)
    recorded = settings.get("run_dir")
    if isinstance(recorded, str) and recorded:
        roots.append(Path(recorded))
    return roots


def locate_artifact(stored: str, roots: list[Path], what: str) -> Path:
    """The file a study names as ``stored``, inside one of its possible run folders.

    ``stored`` may be relative to the run folder, relative to the folder the search ran in,
    or absolute (studies written so far); a folder moved with its study is found by the
    part of the path from ``trials/`` or ``supernet/`` on.

    Raises:
        StorageError: no run folder is known, the file is missing, or it lies outside.
    """
    if not roots:
        raise StorageError(
            f"{what} {stored} is in the run folder, and this storage does not say where that "
            "is: pass --run-dir with the folder the search wrote"
        )
    outside = None
    for root in roots:
        for cand in _candidates(Path(stored), root):
            hit = inside(cand, root)
            if hit is not None and hit.is_file():
                return hit
            if hit is None and cand.exists():
                outside = cand
    if outside is not None:
        raise StorageError(
            f"{what} {stored} resolves to {outside.resolve()}, outside the run folder "
            f"{roots[0]}; refusing to read it (name the run folder with --run-dir)"
        )
    raise StorageError(
        f"{what} {stored} is missing from the run folder {roots[0]}; restore the run "
        "folder, pass --run-dir with the folder the search wrote, or export --format json"
    )


def _candidates(stored: Path, root: Path):
    if not stored.is_absolute():
        yield root / stored  # relative to the run folder
    yield stored  # as written: absolute, or relative to where the search ran
    parts = stored.parts
    for i, part in enumerate(parts):
        if part in ARTIFACT_DIRS:
            yield root.joinpath(*parts[i:])  # the run folder was moved


def _document(rec, genotype, graph, study_name: str, storage: str, settings: dict) -> dict:
    return {
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
            "dataset": settings.get("dataset"),
            "seed": settings.get("seed"),
            "settings": settings,
        },
    }


def _write_format(doc, out, fmt, graph, genotype, space, settings, source, weights_src, inherited):
    """The format's files beside ``arch.json`` (described in ``doc``)."""
    trained = source != "init"
    if fmt == "python":
        from nas.codegen import graph_to_python

        (out / "model.py").write_text(
            graph_to_python(graph, f"{space.name} architecture {genotype.to_str()}")
        )
        doc["python"] = {"file": "model.py"}
    elif fmt == "onnx":
        from nas.onnx_export import graph_to_onnx

        model = inherited if inherited is not None else _model(graph, weights_src, settings)
        proto = graph_to_onnx(graph, model)
        (out / "model.onnx").write_bytes(proto.SerializeToString())
        doc["onnx"] = {"file": "model.onnx", "trained": trained, "source": source}
    elif fmt == "flax":
        from nas.weights import save_weights

        target = out / "weights.safetensors"
        if weights_src:
            shutil.copyfile(weights_src, target)
        elif inherited is not None:
            save_weights(inherited, target, {"arch": genotype.to_str()})
        else:  # no trained weights (a table lookup): export the initialisation, and say so
            save_weights(_model(graph, None, settings), target)
        doc["weights"] = {"file": target.name, "trained": trained, "source": source}


def _seed(settings: dict) -> int:
    seed = settings.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0


def _model(graph, weights_src: Path | None, settings: dict):
    """The IR-built model with the trial's trained weights, or its initialisation."""
    from nas.model import build_model
    from nas.weights import model_from_weights

    if weights_src:
        model = model_from_weights(graph, weights_src, _seed(settings))
    else:
        model = build_model(graph, seed=_seed(settings))
    model.eval()
    return model


def _supernet_child(space, genotype, settings: dict, supernet_src: Path, data_dir):
    """The trial's child network with the weights it inherits from its trained supernet.

    The space's ``supernet`` evaluator is rebuilt from the study's settings and asked for
    ``child_model(genotype)``, so every weight-sharing family plugs in by providing that.
    """
    from nas.evaluators import get_evaluator

    options = dict(settings.get("supernet") or {})
    options["progress"] = False
    evaluator = get_evaluator(
        "supernet", space, settings.get("dataset"), supernet_file=supernet_src,
        data_dir=data_dir, seed=settings.get("seed") or 0, **options,
    )  # fmt: skip
    if not hasattr(evaluator, "child_model"):
        raise ConfigError(f"the {space.name} supernet evaluator cannot extract a child network")
    return evaluator.child_model(genotype)
