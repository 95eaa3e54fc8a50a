"""The ``nas`` commands as Python functions, for notebooks and scripts.

Each function does what its command does, with the command's flags as keyword arguments:
``nas.cli`` is a thin argparse layer over this module, so both give the same results and raise
the same :mod:`nas.errors` types (which the command line prints as one ``nas: error:`` line
with exit code 2). Where a command has ``--json``, the function returns that document.

=======================================  ===================================================
``nas spaces``                           :func:`spaces`
``nas inspect``                          :func:`inspect`
``nas search``                           :func:`search` (writes ``result.json`` and
                                         ``report.html``; returns the ``SearchResult``)
``nas spaces/strategies/evaluators``     :func:`spaces`, :func:`strategies`,
                                         :func:`evaluators` (from :mod:`nas.registry`)
``nas draw``                             :func:`draw`
``nas export``                           :func:`export` (returns the exported document)
``nas predictor evaluate``               :func:`evaluate_predictor` (``plot=`` a scatter)
``nas predictor fit``                    :func:`fit_predictor`
``nas predict``                          :func:`predict`
=======================================  ===================================================

Importing this module is cheap; JAX, Optuna and the spaces load on the first call.
``search``, ``export`` and ``draw`` are also submodule names of ``nas``, so reach the API as
``from nas import api`` and ``api.search(...)``.

Example:
    >>> from nas import api
    >>> api.inspect("all_conv3x3", space="nb201", dataset="cifar10")["params"]
    1531546
    >>> api.inspect("x", space="nb999")
    Traceback (most recent call last):
    ...
    nas.errors.UnknownName: unknown search space 'nb999'...
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas import registry
from nas.errors import ConfigError, DataError, NasError, StorageError

if TYPE_CHECKING:
    from nas.callbacks import Callback
    from nas.config import SearchConfig
    from nas.predictors.base import Predictor
    from nas.space import Genotype, SearchSpace
    from nas.storage import TrialRecord
    from nas.summary import SearchResult

log = logging.getLogger("nas")

__all__ = [
    "draw",
    "evaluators",
    "predictors",
    "strategies",
    "evaluate_predictor",
    "export",
    "fit_predictor",
    "inspect",
    "predict",
    "resolve_arch",
    "search",
    "spaces",
]


def spaces() -> list[dict[str, Any]]:
    """Every registered search space: ``nas spaces --json``.

    Returns:
        One dictionary per space with ``name``, ``size``, ``datasets``, ``table`` (whether a
        benchmark table scores it) and ``description``.

    Example:
        >>> from nas import api
        >>> rows = {row["name"]: row for row in api.spaces()}
        >>> rows["nb201"]["size"], rows["nb201"]["table"]
        (15625, True)
    """
    from nas.search_spaces import get_space, space_names

    rows = []
    for name in space_names():
        space = get_space(name)
        rows.append(
            {
                "name": name,
                "size": space.size,
                "datasets": list(space.datasets),
                "table": space.has_table(),
                "description": space.description,
                "origin": registry.entry("spaces", name).origin,
            }
        )
    return rows


def _option_names(cls: Any) -> list[str]:
    from nas.options import option_fields

    return sorted(option_fields(cls.Options))


def strategies() -> list[dict[str, Any]]:
    """Every registered strategy: ``nas strategies --json``.

    Returns:
        One dictionary per strategy with ``name``, ``kind`` (``sample``: ask/tell;
        ``one-shot``), ``objectives`` (the most it optimises; ``None``: any number),
        ``options`` (its option names), ``origin`` and ``summary``.

    Example:
        >>> from nas import api
        >>> rows = {row["name"]: row for row in api.strategies()}
        >>> rows["nsga2"]["objectives"], rows["bananas"]["objectives"], rows["darts"]["kind"]
        (None, 1, 'one-shot')
        >>> rows["evolution"]["options"]
        ['population', 'tournament']
    """
    from nas.searchers import strategy_class

    rows = []
    for name in registry.names("strategies"):
        cls = strategy_class(name)
        entry = registry.entry("strategies", name)
        rows.append(
            {
                "name": name,
                "kind": cls.kind,
                "objectives": cls.max_objectives,
                "options": _option_names(cls),
                "origin": entry.origin,
                "summary": entry.summary(),
            }
        )
    return rows


def evaluators() -> list[dict[str, Any]]:
    """Every registered evaluator: ``nas evaluators --json``.

    Returns:
        One dictionary per evaluator with ``name``, ``metrics`` (what it measures and in which
        direction), ``options``, ``origin`` and ``summary``.

    Example:
        >>> from nas import api
        >>> rows = {row["name"]: row for row in api.evaluators()}
        >>> rows["train"]["metrics"], "steps" in rows["train"]["options"]
        ({'accuracy': 'maximize'}, True)
    """
    rows = []
    for name in registry.names("evaluators"):
        entry = registry.entry("evaluators", name)
        cls = entry.load()
        rows.append(
            {
                "name": name,
                "metrics": dict(cls.metrics),
                "options": _option_names(cls),
                "origin": entry.origin,
                "summary": entry.summary(),
            }
        )
    return rows


def predictors() -> list[dict[str, Any]]:
    """Every registered predictor, then the pretrained ones: ``nas predictors --json``
    (``name``, ``origin``, ``summary``).

    Example:
        >>> from nas import api
        >>> names = {row["name"] for row in api.predictors()}
        >>> {"gennape", "params", "synflow", "pretrained:gennape"} <= names
        True
    """
    from nas.predictors import pretrained

    rows = [
        {"name": e.name, "origin": e.origin, "summary": e.summary()}
        for e in (registry.entry("predictors", n) for n in registry.names("predictors"))
    ]
    for name in pretrained.names():
        r = pretrained.recipe(name)[1]
        rows.append({"name": name, "origin": "nas (pretrained)", "summary": r.note})
    return rows


def resolve_arch(
    arch: str | Path, space: str | None = None
) -> tuple[SearchSpace, Genotype, str | None]:
    """``(space, genotype, dataset)`` for an architecture as the commands' ``--arch`` takes it.

    ``arch`` is the space's native string, a known architecture's name, or a JSON file
    written by :func:`export` (then ``space`` may be omitted and the file's dataset is
    returned; otherwise the dataset is ``None``).

    Example:
        >>> from nas import api
        >>> space, genotype, dataset = api.resolve_arch("best_cifar10", space="nb201")
        >>> space.name, dataset
        ('nb201', None)
    """
    from nas.search_spaces import get_space

    arch = str(arch)
    if space is None:
        if not arch.endswith(".json"):
            raise ConfigError("--space is required unless --arch is an exported JSON file")
        from nas.inputs import kind, read_json

        if kind(arch) is None:
            raise ConfigError(f"architecture file {arch} does not exist")
        data = read_json(arch, "architecture file", ConfigError)
        geno = data.get("genotype", data) if isinstance(data, dict) else None
        if not isinstance(geno, dict) or not isinstance(geno.get("space"), str):
            raise ConfigError(f"{arch} names no space; pass --space")
        s = get_space(geno["space"])
        return s, s.resolve(arch), _file_dataset(data)
    s = get_space(space)
    return s, s.resolve(arch), None


def _file_dataset(doc: dict) -> str | None:
    """The dataset an exported document names (its provenance, else its graph's meta)."""
    for section, key in (("provenance", None), ("graph", "meta")):
        part = doc.get(section)
        if key is not None and isinstance(part, dict):
            part = part.get(key)
        if isinstance(part, dict) and isinstance(part.get("dataset"), str):
            return part["dataset"]
    return None


def inspect(arch: str | Path, space: str | None = None, dataset: str | None = None) -> dict:
    """Validate an architecture and count it: ``nas inspect --json``.

    Args:
        arch: native string, known name, or exported JSON file.
        space: search space name (optional for an exported JSON file).
        dataset: network variant (default: the file's, else the space's default).

    Returns:
        ``space``, ``arch`` (canonical string), ``dataset``, the graph summary (``params``,
        ``flops`` in multiply-accumulates, ``nodes``, ``hash``, ...) and ``op_counts``.

    Example:
        >>> from nas import api
        >>> info = api.inspect("all_conv3x3", space="nb201", dataset="cifar10")
        >>> info["params"], info["flops"], len(info["hash"])
        (1531546, 220119690, 32)
        >>> api.inspect("|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", space="nb201")
        Traceback (most recent call last):
        ...
        nas.errors.InvalidGenotype: nb201: edge 0 has unknown op 'nor_conv_9x9'; expected one of...
    """
    s, genotype, file_dataset = resolve_arch(arch, space)
    dataset = dataset or file_dataset
    graph = s.to_graph(genotype, dataset)
    return {
        "space": s.name,
        "arch": genotype.to_str(),
        "dataset": graph.meta.get("dataset", dataset),
        **graph.summary(),
        "op_counts": graph.op_counts(),
    }


def search(
    space: str | None = None,
    strategy: str | None = None,
    evaluator: str | None = None,
    budget: int | None = None,
    *,
    config: SearchConfig | str | Path | None = None,
    callbacks: Sequence[Callback | Callable[[TrialRecord], Any]] = (),
    command: str | None = None,
    sets: Sequence[str] = (),
    **settings: Any,
) -> SearchResult:
    """Run (or resume, or join) an architecture search: ``nas search``.

    The keyword arguments are the keys of :class:`nas.config.SearchConfig` -- the command's
    long flags with underscores (``max_flops="600M"``, ``workers="auto"``,
    ``objectives="accuracy,flops"``, ``strategy_options={"population": 50}``,
    ``evaluator_options={"steps": 200}``); ``config`` is a :class:`SearchConfig` or a TOML file
    (``nas search --config``) that the keyword arguments override. An unknown key is an
    error naming the valid ones. Like the command, it writes the study (``study.db`` in the
    run folder unless ``storage`` names another SQLAlchemy URL), ``result.json`` and
    ``report.html`` into ``out`` (default ``runs/<study>``, else
    ``runs/<space>-<strategy>-<seed>``; relative to the working directory).

    Args:
        callbacks: :class:`nas.callbacks.Callback` objects or functions called with every
            finished trial's record (``on_trial_complete``).
        command: the command line recorded with the study (passwords masked).
        sets: ``KEY=VALUE`` overrides applied last (``nas search --set``).

    Returns:
        The :class:`nas.summary.SearchResult`; ``result.to_json()`` is ``nas search --json``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from nas import api
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> result = api.search(
        ...     "nb201", "random", "benchmark", budget=4, dataset="cifar10", out=out,
        ...     progress=False,
        ... )
        >>> result.n_trials, result.n_failed, 0 < result.best_metrics["accuracy"] < 100
        (4, 0, True)
        >>> {"report.html", "result.json", "study.db"} <= {p.name for p in out.iterdir()}
        True
        >>> api.search("nb201", "sa", "benchmark", budget=3, out=out)
        Traceback (most recent call last):
        ...
        nas.errors.UnknownName: unknown strategy 'sa'...
    """
    from nas.config import SearchConfig
    from nas.search import run_search

    given = {
        k: v
        for k, v in {
            "space": space,
            "strategy": strategy,
            "evaluator": evaluator,
            "budget": budget,
        }.items()
        if v is not None
    }
    # ``None`` for a setting means its default, as for the positional ones
    values = {**given, **{k: v for k, v in settings.items() if v is not None}}
    if isinstance(config, SearchConfig):
        cfg = config.replace(**values) if values or sets else config
        if sets:
            cfg = SearchConfig.from_sources(None, cfg.to_json(masked=False), sets)
    else:
        cfg = SearchConfig.from_sources(config, values, sets)
    result = run_search(cfg, callbacks=callbacks, command=command)
    out = Path(result.out_dir)
    try:
        (out / "result.json").write_text(json.dumps(result.to_json(), indent=1))
    except OSError as e:
        raise StorageError(
            f"the search finished and its {result.n_trials} trials are kept in the study "
            f"{result.study!r}, but {out / 'result.json'} could not be written: "
            f"{e.strerror or e}"
        ) from None
    _write_report(result, out)
    return result


def _write_report(result: SearchResult, out: Path) -> None:
    """The run's HTML report; a report that cannot be drawn never fails the search."""
    from nas.report import write_report
    from nas.storage import TrialStore

    try:
        write_report(TrialStore.open(result.storage, result.study), out)
    except Exception as e:  # noqa: BLE001
        log.warning("no report written: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)


def draw(
    arch: str | Path,
    out: str | Path,
    space: str | None = None,
    dataset: str | None = None,
    view: str = "auto",
    scope: str | None = None,
    depth: int = 2,
) -> Path:
    """Draw a cell or network diagram (``.png`` or ``.svg``): ``nas draw``.

    Missing folders above ``out`` are created only inside the working directory.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from nas import api
        >>> path = api.draw("best_cifar10", Path(tempfile.mkdtemp()) / "cell.svg", space="nb201")
        >>> path.suffix, path.stat().st_size > 1000
        ('.svg', True)
    """
    from nas.draw import draw as draw_graph
    from nas.files import output_file

    s, genotype, file_dataset = resolve_arch(arch, space)
    graph = s.to_graph(genotype, dataset or file_dataset)
    if Path(out).suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"diagram file must end in .png or .svg, got {Path(out).name!r}")
    out, _ = output_file(out, "--out")
    try:
        return draw_graph(graph, out, view=view, scope=scope, depth=depth)
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}") from None


def export(
    storage: str,
    study: str,
    trial: str | int = "best",
    format: str = "json",  # noqa: A002 - the command's flag
    out: str | Path = "export",
    data_dir: str | None = None,
    run_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Export a stored trial (``json``, ``flax``, ``python`` or ``onnx``): ``nas export``.

    The trial's files (weights, supernet) are read from its run folder and nowhere else:
    ``run_dir``, else the SQLite file's folder (see :mod:`nas.export`).

    Returns:
        The exported document (the content of ``out/arch.json``: genotype, IR graph,
        ``hash``, metrics, cost, provenance). ``nas export --json`` prints its ``out``,
        ``genotype["arch"]`` and ``hash``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from nas import api
        >>> tmp = Path(tempfile.mkdtemp())
        >>> r = api.search("nb201", "random", "benchmark", 3, dataset="cifar10", out=tmp / "run",
        ...                progress=False)
        >>> doc = api.export(r.storage, r.study, "best", "json", tmp / "best")
        >>> doc["genotype"]["arch"] == r.best_arch, doc["provenance"]["trial"] == r.best_trial
        (True, True)
        >>> api.inspect(tmp / "best" / "arch.json")["hash"] == doc["hash"]
        True
        >>> api.export(r.storage, r.study, 99, "json", tmp / "none")
        Traceback (most recent call last):
        ...
        nas.errors.StorageError: study ... has no trial 99
    """
    from nas.export import export_trial

    return export_trial(storage, study, str(trial), format, out, data_dir=data_dir, run_dir=run_dir)


def _train_specs(train: str | Sequence[str] | None) -> list[str]:
    items = train.split(",") if isinstance(train, str) else list(train or ())
    return [t.strip() for t in items if t.strip()]


def evaluate_predictor(
    predictor: str,
    train: str | Sequence[str] | None,
    test: str,
    seed: int = 0,
    finetune: str | None = None,
    plot: str | Path | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit a predictor on SPECs and rank a test SPEC: ``nas predictor evaluate --json``.

    Args:
        predictor: a registered predictor name (``gennape``, ``gbm``, ``params``, ...) or a
            pretrained one (``pretrained:gennape``: not fitted; the test set leaves out what
            it was trained on).
        train: SPECs ``bench[:dataset][:n]``, a list or one comma-separated string (for a
            pretrained predictor: optional fine-tuning data).
        test: the test SPEC (disjoint from the training SPECs of the same benchmark).
        seed: sampling and model seed.
        finetune: SPEC of few-shot data the fitted model is fine-tuned on.
        plot: ``.png`` or ``.svg`` path: write the predicted-versus-true scatter plot there
            (:func:`nas.predictors.evaluate.plot_predictions`) and return its path as ``plot``.
        options: the predictor's options (``nas predictor evaluate --option K=V``), e.g.
            ``{"transfer": "lofo"}`` for gennape.

    Returns:
        ``predictor``, ``kendall_tau``, ``spearman``, ``n_train``, ``n_test``, timings, ...

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from nas import api
        >>> png = Path(tempfile.mkdtemp()) / "params.png"
        >>> out = api.evaluate_predictor("params", "nb201:cifar10:20", "nb201:cifar10:50",
        ...                              plot=png)
        >>> out["n_train"], out["n_test"], out["plot"] == str(png), png.stat().st_size > 0
        (20, 50, True, True)
        >>> -1 <= out["kendall_tau"] <= 1
        True
    """
    from nas.predictors.evaluate import evaluate_specs

    if plot is not None:
        from nas.files import output_file

        if Path(plot).suffix.lower() not in (".png", ".svg"):
            raise ConfigError(f"--plot must end in .png or .svg, got {Path(plot).name!r}")
        output_file(plot, "--plot")
    return evaluate_specs(
        predictor,
        _train_specs(train),
        test,
        seed=seed,
        finetune=finetune,
        plot=plot,
        **(options or {}),
    )


def fit_predictor(
    predictor: str,
    train: str | Sequence[str],
    out: str | Path,
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit a predictor on SPECs and save it to a folder: ``nas predictor fit --json``.
    ``options`` are the predictor's (``--option K=V``).

    Returns:
        ``predictor``, ``out`` and ``n_train``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from nas import api
        >>> folder = Path(tempfile.mkdtemp()) / "params"
        >>> api.fit_predictor("params", "nb201:cifar10:10", folder)["n_train"]
        10
    """
    from nas.files import output_dir
    from nas.predictors.base import get_predictor
    from nas.predictors.data import LabelledSet, load_spec

    output_dir(out, "--out")  # before any work: an existing file there, a folder not writable
    sets = [load_spec(t, seed=seed) for t in _train_specs(train)]
    data = LabelledSet.concat(sets)
    p = get_predictor(predictor, seed=seed, **(options or {}))
    p.fit(data.graphs, data.y, data.groups)
    p.save(out)
    return {"predictor": predictor, "out": str(out), "n_train": len(data)}


def _graph_to_predict(
    arch: str | Path | None, space: str | None, dataset: str | None, onnx: str | Path | None
) -> tuple[Any, dict[str, Any]]:
    """The graph :func:`predict` scores, and what the result says it is."""
    if (arch is None) == (onnx is None):
        raise ConfigError("predict needs exactly one of an architecture (--arch) or --onnx")
    if onnx is not None:
        from nas.onnx_import import onnx_to_graph

        graph = onnx_to_graph(onnx)
        where: dict[str, Any] = {"onnx": str(onnx), "params": graph.params()}
        where.update(flops=graph.flops(), notes=graph.meta.get("notes", []))
        return graph, where
    s, genotype, file_dataset = resolve_arch(arch, space)
    return s.to_graph(genotype, dataset or file_dataset), {
        "space": s.name,
        "arch": genotype.to_str(),
    }


def predict(
    predictor: str | Path | Predictor,
    arch: str | Path | None = None,
    space: str | None = None,
    dataset: str | None = None,
    onnx: str | Path | None = None,
) -> dict[str, Any]:
    """Predict an architecture's accuracy: ``nas predict --json``.

    Args:
        predictor: a folder written by :func:`fit_predictor` (``nas predictor fit``), a
            pretrained predictor by name (``pretrained:gennape``), or a fitted
            :class:`nas.predictors.base.Predictor`.
        arch, space, dataset: as for :func:`inspect`.
        onnx: instead of ``arch``, an ONNX file made by any tool (``torch.onnx.export``,
            ...), read into the IR by :func:`nas.onnx_import.onnx_to_graph`; an operator the
            IR cannot represent is an error naming it.

    Returns:
        ``space`` and ``arch`` (or ``onnx`` with the network's ``params`` and ``flops``),
        ``predictor``, ``mean``, ``std``, ``ood`` (far from the training data) and ``basis``
        (``learned``, ``proxy``: a training-free score, not an accuracy, or
        ``prior+learned``); for the learned predictors with a compute prior (gennape,
        onnxnet) also ``learned_share``: how much of the learned part the prediction holds
        (1 on a space the predictor was trained on; on another, and on an ONNX file, its
        ``transfer`` share, by default 0: the compute prior alone).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from nas import api
        >>> folder = Path(tempfile.mkdtemp()) / "params"
        >>> _ = api.fit_predictor("params", "nb201:cifar10:10", folder)
        >>> out = api.predict(folder, "all_conv3x3", space="nb201", dataset="cifar10")
        >>> params = api.inspect("all_conv3x3", space="nb201", dataset="cifar10")["params"]
        >>> out["predictor"], abs(out["mean"] / params - 1) < 1e-3  # a float32-rounded count
        ('params', True)
        >>> api.predict(folder / "missing", "all_conv3x3", space="nb201")
        Traceback (most recent call last):
        ...
        nas.errors.DataError: ... is not a saved predictor...
    """
    from nas.predictors.base import load_predictor

    graph, where = _graph_to_predict(arch, space, dataset, onnx)
    model = load_predictor(predictor) if isinstance(predictor, str | Path) else predictor
    what = where.get("space") or "ONNX"
    try:
        mean, std = model.predict([graph])
        far = bool(model.ood([graph])[0])
    except (ValueError, TypeError, IndexError, KeyError) as e:
        if not isinstance(predictor, str | Path) or isinstance(e, NasError):
            raise
        # arrays of a saved folder that load but do not fit together (an edited file)
        raise DataError(
            f"the saved predictor {predictor} cannot score {what} architectures: its arrays "
            f"do not fit together (damaged or edited?): {type(e).__name__}"
        ) from None
    out = {
        **where,
        "predictor": f"pretrained:{model.from_pretrained}" if model.from_pretrained else model.name,
        "mean": float(mean[0]),
        "std": float(std[0]),
        "ood": far,
        "basis": model.basis,
    }
    dec = model.decompose([graph])
    if dec is not None:
        out["learned_share"] = float(dec.share[0])
    return out
