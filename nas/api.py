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
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError, DataError, NasError

if TYPE_CHECKING:
    from nas.search import SearchResult
    from nas.space import Genotype, SearchSpace
    from predictors.base import Predictor

__all__ = [
    "draw",
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
    from search_spaces import get_space, space_names

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
            }
        )
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
    from search_spaces import get_space

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
    space: str,
    strategy: str = "evolution",
    evaluator: str = "benchmark",
    budget: int = 100,
    *,
    dataset: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    objectives: str | Sequence[str] | None = None,
    max_flops: str | float | None = None,
    max_params: str | float | None = None,
    max_latency: str | float | None = None,
    workers: int | str = 1,
    address: str | None = None,
    max_retries: int = 2,
    steps: int | None = None,
    data_dir: str | None = None,
    predictor: str | None = None,
    latency_table: str | None = None,
    order: int = 1,
    resume: bool = False,
    join: bool = False,
    storage: str | None = None,
    study: str | None = None,
    progress: bool = True,
    command: str | None = None,
) -> SearchResult:
    """Run (or resume, or join) an architecture search: ``nas search``.

    The keyword arguments are the command's flags (``max_flops="600M"``, ``workers="auto"``,
    ``objectives="accuracy,flops"`` or a list). Like the command, it writes the study
    (``study.db`` in the run folder unless ``storage`` names another SQLAlchemy URL),
    ``result.json`` and ``report.html`` into ``out`` (default ``runs/<study>``, else
    ``runs/<space>-<strategy>-<seed>``; relative to the working directory).

    Returns:
        The :class:`nas.search.SearchResult`; ``result.to_json()`` is ``nas search --json``.

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
        >>> api.search("nb201", "sa", budget=3, out=out)
        Traceback (most recent call last):
        ...
        nas.errors.UnknownName: unknown strategy 'sa'...
    """
    from nas.evaluators import get_evaluator
    from nas.objectives import parse_objectives
    from nas.search import run_search
    from nas.searchers import Constrained, get_searcher, parse_quantity
    from search_spaces import get_space

    if order not in (1, 2):
        raise ConfigError(f"--order must be 1 or 2, got {order!r}")
    s = get_space(space)
    options: dict[str, Any] = {}
    if steps is not None:
        options["steps"] = steps
    if data_dir:
        options["data_dir"] = data_dir
    if latency_table:
        options["latency_table"] = latency_table
    ev = get_evaluator(evaluator, s, dataset, seed=seed, **options)
    objs = parse_objectives(objectives)
    searcher_options: dict[str, Any] = {}
    if objectives:
        searcher_options["objectives"] = [
            f"{o.name}:{'max' if o.direction == 'maximize' else 'min'}" for o in objs
        ]
    if strategy == "neural-predictor":
        searcher_options["budget"] = budget  # it trains on a fraction of the budget
    if predictor:
        if strategy not in ("neural-predictor", "bananas"):
            raise ConfigError("--predictor needs --strategy neural-predictor or bananas")
        searcher_options["predictor"] = predictor
    searcher = get_searcher(strategy, s, seed=seed, **searcher_options)
    named_limits = {"max_flops": max_flops, "max_params": max_params, "max_latency": max_latency}
    limits = {k[4:]: parse_quantity(v) for k, v in named_limits.items() if v is not None}
    if limits:
        searcher = Constrained(searcher, ev.cost, limits)
    out = Path(out or f"runs/{study or f'{space}-{strategy}-{seed}'}")
    trials = budget
    if strategy == "darts":  # one differentiable search (budget = steps), one trial
        from nas.searchers.darts import darts_cli_setup

        searcher, ev, trials = darts_cli_setup(s, ev, budget, order, seed, out, data_dir)
    if command is None:
        command = f"nas.api.search({space!r}, {strategy!r}, {evaluator!r}, budget={budget})"
    settings = {
        "seed": seed,
        "budget": budget,
        "command": command,
        "limits": {k: v for k, v in named_limits.items() if v},
    }
    result = run_search(
        s,
        searcher,
        ev,
        trials,
        out_dir=out,
        storage=storage,
        study_name=study,
        resume=resume,
        settings=settings,
        progress=progress,
        objectives=objs,
        executor=_executor_factory(workers, address, max_retries, ev),
        join=join,
    )
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=1))
    _write_report(result, out)
    return result


def _write_report(result: SearchResult, out: Path) -> None:
    """The run's HTML report; a report that cannot be drawn never fails the search."""
    from nas.report import write_report
    from nas.storage import open_study

    try:
        st = open_study(result.storage, result.study, create=False, resume=True)
        write_report(st, out)
    except Exception as e:  # noqa: BLE001
        print(f"nas: warning: no report written: {str(e).splitlines()[0]}", file=sys.stderr)


def _executor_factory(
    workers: int | str, address: str | None, max_retries: int, evaluator: Any
) -> Callable[[], Any] | None:
    """In-process for one worker without ``address``; else Ray, started when needed."""
    if workers == "auto":
        n: int | None = None
    else:
        try:
            n = int(workers)
        except (TypeError, ValueError):
            raise ConfigError(f"--workers takes a number or 'auto', got {workers!r}") from None
        if n < 1:
            raise ConfigError(f"--workers must be at least 1, got {n}")
    if max_retries < 0:
        raise ConfigError(f"--max-retries must be at least 0, got {max_retries}")
    if n == 1 and not address:
        return None
    from nas.execution import RayExecutor

    return lambda: RayExecutor(evaluator, n, address=address, max_retries=max_retries)


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
        >>> r = api.search("nb201", "random", budget=3, dataset="cifar10", out=tmp / "run",
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


def _train_specs(train: str | Sequence[str]) -> list[str]:
    items = train.split(",") if isinstance(train, str) else list(train)
    return [t.strip() for t in items if t.strip()]


def evaluate_predictor(
    predictor: str,
    train: str | Sequence[str],
    test: str,
    seed: int = 0,
    finetune: str | None = None,
    plot: str | Path | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit a predictor on SPECs and rank a test SPEC: ``nas predictor evaluate --json``.

    Args:
        predictor: a registered predictor name (``gennape``, ``gbm``, ``params``, ...).
        train: SPECs ``bench[:dataset][:n]``, a list or one comma-separated string.
        test: the test SPEC (disjoint from the training SPECs of the same benchmark).
        seed: sampling and model seed.
        finetune: SPEC of few-shot data the fitted model is fine-tuned on.
        plot: ``.png`` or ``.svg`` path: write the predicted-versus-true scatter plot there
            (:func:`predictors.evaluate.plot_predictions`) and return its path as ``plot``.
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
    from predictors.evaluate import evaluate_specs

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
    from predictors.base import get_predictor
    from predictors.data import LabelledSet, load_spec

    output_dir(out, "--out")  # before any work: an existing file there, a folder not writable
    sets = [load_spec(t, seed=seed) for t in _train_specs(train)]
    data = LabelledSet.concat(sets)
    p = get_predictor(predictor, seed=seed, **(options or {}))
    p.fit(data.graphs, data.y, data.groups)
    p.save(out)
    return {"predictor": predictor, "out": str(out), "n_train": len(data)}


def predict(
    predictor: str | Path | Predictor,
    arch: str | Path,
    space: str | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Predict an architecture's accuracy: ``nas predict --json``.

    Args:
        predictor: a folder written by :func:`fit_predictor` (``nas predictor fit``), or a
            fitted :class:`predictors.base.Predictor`.
        arch, space, dataset: as for :func:`inspect`.

    Returns:
        ``space``, ``arch``, ``predictor``, ``mean``, ``std`` and ``ood`` (far from the
        training data); for the learned predictors with a compute prior (gennape, onnxnet)
        also ``learned_share``: how much of the learned part the prediction holds (1 on a
        space the predictor was trained on; on another, its ``transfer`` share, by default
        0: the compute prior alone).

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
    from predictors.base import load_predictor

    model = load_predictor(predictor) if isinstance(predictor, str | Path) else predictor
    s, genotype, file_dataset = resolve_arch(arch, space)
    graph = s.to_graph(genotype, dataset or file_dataset)
    try:
        mean, std = model.predict([graph])
        far = bool(model.ood([graph])[0])
    except (ValueError, TypeError, IndexError, KeyError) as e:
        if not isinstance(predictor, str | Path) or isinstance(e, NasError):
            raise
        # arrays of a saved folder that load but do not fit together (an edited file)
        raise DataError(
            f"the saved predictor {predictor} cannot score {s.name} architectures: its arrays "
            f"do not fit together (damaged or edited?): {type(e).__name__}"
        ) from None
    out = {
        "space": s.name,
        "arch": genotype.to_str(),
        "predictor": model.name,
        "mean": float(mean[0]),
        "std": float(std[0]),
        "ood": far,
    }
    if getattr(model, "prior", None) is not None and hasattr(model, "families"):
        from predictors.transfer import learned_shares

        out["learned_share"] = float(
            learned_shares([graph], model.families, model.transfer_weight)[0]
        )
    return out
