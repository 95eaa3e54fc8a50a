"""The ``nas`` command line.

Bad input ends with a one-line ``nas: error: ...`` on stderr and exit code 2; no traceback.
Heavy modules are imported inside the commands so that ``nas --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage; keep it to one line
        print(f"nas: error: {message}", file=sys.stderr)
        raise SystemExit(2)


ERROR_CHARS = 400


def error_line(e: BaseException, limit: int = ERROR_CHARS) -> str:
    """An error as one line of at most about ``limit`` characters: the first line of its
    message, cut where it quotes a long input (a 1 MB architecture stays out of the line),
    with any password in a URL masked."""
    from nas.storage import mask_url

    text = mask_url(str(e).strip()) or ""
    line = text.splitlines()[0] if text else type(e).__name__
    if len(line) > limit:
        line = f"{line[:limit]}... ({len(line):,} characters)"
    return line


def _emit(obj: Any) -> None:
    print(json.dumps(obj, indent=None, default=str))


# ----------------------------------------------------------------------------- commands


def cmd_spaces(args: argparse.Namespace) -> int:
    from nas import api

    rows = api.spaces()
    if args.json:
        _emit(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="search spaces")
    for col in ("name", "size", "datasets", "description"):
        t.add_column(col)
    for r in rows:
        size = f"{r['size']:,}" if r["size"] < 10**12 else f"{float(r['size']):.3g}"
        t.add_row(r["name"], size, ", ".join(r["datasets"]), r["description"])
    Console().print(t)
    return 0


def _resolve_space_arch(space_name: str | None, arch: str):
    """(space, genotype, file dataset) of --space and --arch: :func:`nas.api.resolve_arch`."""
    from nas.api import resolve_arch

    return resolve_arch(arch, space_name)


def cmd_inspect(args: argparse.Namespace) -> int:
    from nas import api

    info = api.inspect(args.arch, space=args.space, dataset=args.dataset)
    if args.json:
        _emit(info)
        return 0
    print(f"space      {info['space']}")
    print(f"arch       {info['arch']}")
    print(f"dataset    {info['dataset']}")
    print(f"params     {info['params']:,}")
    print(f"flops      {info['flops']:,} (multiply-accumulates)")
    print(f"nodes      {info['nodes']}")
    print(f"hash       {info['hash']}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from nas import api
    from nas.summary import print_summary

    flags = {k: v for k, v in vars(args).items() if k in SEARCH_KEYS and v is not None}
    if args.no_progress:
        flags["progress"] = False
    _configure_logging(flags.get("log_level") or _file_log_level(args.config))
    result = api.search(config=args.config, command=" ".join(sys.argv[1:]), sets=args.set, **flags)
    if args.json:
        _emit(result.to_json())
    else:
        print_summary(result)
    return 0


def _created(folders: list) -> None:
    """Say which output folders a command created (only inside the working directory)."""
    for folder in folders:
        if folder.is_dir():
            print(f"created folder {folder}")


def _file_log_level(path: str | None) -> str:
    if not path:
        return "warning"
    from nas.config import read_toml

    return str(read_toml(path).get("log_level", "warning"))


def _configure_logging(level: str) -> None:
    """The command line is the application: it decides where log lines go (stderr) and how
    much Optuna says. The library itself never changes logging."""
    import logging

    from nas.config import LOG_LEVELS
    from nas.errors import ConfigError

    if level not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {list(LOG_LEVELS)}, got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("nas: %(levelname)s: %(message)s"))
    root = logging.getLogger("nas")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    import optuna

    optuna.logging.set_verbosity(max(logging.WARNING, getattr(logging, level.upper())))


def _listing(
    rows: list[dict[str, Any]], columns: tuple[str, ...], title: str, as_json: bool
) -> int:
    if as_json:
        _emit(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for r in rows:
        cells = []
        for col in columns:
            v = r.get(col)
            if isinstance(v, list):
                v = ", ".join(map(str, v))
            elif isinstance(v, dict):
                v = ", ".join(f"{k} ({d[:3]})" for k, d in v.items())
            cells.append("any" if v is None and col == "objectives" else str(v))
        t.add_row(*cells)
    Console().print(t)
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    from nas import api

    columns = ("name", "kind", "objectives", "options", "origin", "summary")
    return _listing(api.strategies(), columns, "search strategies", args.json)


def cmd_evaluators(args: argparse.Namespace) -> int:
    from nas import api

    columns = ("name", "metrics", "options", "origin", "summary")
    return _listing(api.evaluators(), columns, "evaluators", args.json)


def cmd_predictors(args: argparse.Namespace) -> int:
    from nas import api

    return _listing(api.predictors(), ("name", "origin", "summary"), "predictors", args.json)


def cmd_draw(args: argparse.Namespace) -> int:
    from nas import api
    from nas.files import missing_folders

    missing = missing_folders(os.path.dirname(args.out) or ".")
    path = api.draw(
        args.arch,
        args.out,
        space=args.space,
        dataset=args.dataset,
        view=args.view,
        scope=args.scope,
        depth=args.depth,
    )
    _created(missing)
    print(f"wrote {path}")
    return 0


def _check_port(host: str, port: int) -> None:
    """Refuse a port out of range or already taken before anything is served."""
    import socket

    from nas.errors import ConfigError

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError(f"--host {host!r} cannot be resolved: {e.strerror or e}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            sock.bind(address)
        except OSError as e:
            raise ConfigError(
                f"cannot serve on {host}:{port}: {e.strerror or e}; choose another --port"
            ) from None


def cmd_dashboard(args: argparse.Namespace) -> int:
    from nas.errors import ConfigError

    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError(
            "optuna-dashboard is not installed: pip install 'nasjax[dashboard]'"
        ) from None
    from nas.storage import open_storage

    _check_port(args.host, args.port)
    storage = open_storage(args.storage, create=False)
    print(
        f"serving optuna-dashboard for {args.storage} on http://{args.host}:{args.port}/",
        flush=True,
    )
    optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    return 0


def cmd_latency_table(args: argparse.Namespace) -> int:
    from nas.search_spaces import get_space
    from nas.search_spaces.ofa.latency import measure_table

    space = get_space(args.space)
    from nas.search_spaces.gpt.space import GPTSpace

    if isinstance(space, GPTSpace):
        from nas.search_spaces.gpt.latency import measure_table as measure_gpt

        table = measure_gpt(space, batch=args.batch, repeats=args.repeats)
        path = table.save(args.out)
        if args.json:
            _emit({"out": str(path), "entries": len(table.entries)})
        else:
            print(f"measured {len(table.entries)} parts here; table written to {path}")
        return 0
    if not hasattr(space, "net_spec"):
        from nas.errors import ConfigError

        raise ConfigError(f"latency tables are built for the ofa spaces, not {args.space!r}")
    table = measure_table(space, args.resolutions, batch=args.batch, repeats=args.repeats)
    path = table.save(args.out)
    n = sum(len(t) for t in table.tables.values())
    if args.json:
        _emit({"out": str(path), "entries": n})
    else:
        print(f"measured {n} layers here; table written to {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nas import api
    from nas.files import missing_folders

    missing = missing_folders(args.out)
    doc = api.export(
        args.storage,
        args.study,
        args.trial,
        args.format,
        args.out,
        data_dir=args.data_dir,
        run_dir=args.run_dir,
    )
    if args.json:
        _emit({"out": str(args.out), "arch": doc["genotype"]["arch"], "hash": doc["hash"]})
        return 0
    _created(missing)
    print(f"exported trial {doc['provenance']['trial']} ({doc['genotype']['arch']}) to {args.out}")
    files = doc.get("weights") or doc.get("onnx") or {}
    if files.get("trained") is False:
        print("note: the trial has no trained weights; the export holds the initial weights")
    return 0


OPTION_HELP = "a predictor option, repeatable (e.g. transfer=lofo, prior=none, steps=200)"


def _options(pairs: list[str] | None) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; a VALUE is read as JSON where it parses (numbers,
    true/false), else kept as text."""
    from nas.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ConfigError(f"--option {pair!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def cmd_predictor_evaluate(args: argparse.Namespace) -> int:
    from nas import api

    out = api.evaluate_predictor(
        args.predictor,
        args.train,
        args.test,
        seed=args.seed,
        finetune=args.finetune,
        plot=args.plot,
        options=_options(args.option),
    )
    if args.json:
        _emit(out)
    else:
        for k in ("predictor", "basis", "kendall_tau", "spearman", "n_train", "n_test"):
            print(f"{k:24s} {out[k]}")
        if "learned_share" in out:
            print(f"{'learned_share':24s} {out['learned_share']:.2f}")
            for part in ("prior_only", "learned_only"):
                print(f"{part + ' kendall_tau':24s} {out[part]['kendall_tau']}")
        print(f"{'predictions_per_second':24s} {out['predictions_per_second']:,.0f}")
        if "plot" in out:
            print(f"{'plot':24s} {out['plot']}")
    return 0


def cmd_predictor_fit(args: argparse.Namespace) -> int:
    from nas import api

    info = api.fit_predictor(
        args.predictor, args.train, args.out, seed=args.seed, options=_options(args.option)
    )
    if args.json:
        _emit(info)
    else:
        print(f"saved {args.predictor} ({info['n_train']} archs) to {args.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from nas import api

    info = api.predict(
        args.predictor, args.arch, space=args.space, dataset=args.dataset, onnx=args.onnx
    )
    if args.json:
        _emit(info)
    else:
        flag = "  (far from the training data)" if info["ood"] else ""
        if info["basis"] == "proxy":
            flag += f"  ({info['predictor']} score: a training-free proxy, not an accuracy)"
        if info.get("learned_share") == 0.0:
            seen = info.get("space") or "an ONNX model of no known space"
            flag += f"  (compute prior only: not trained on {seen})"
        print(f"{info['mean']:.3f} +- {info['std']:.3f}{flag}")
    return 0


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def cmd_data_list(args: argparse.Namespace) -> int:
    from nas import refdata

    rows = refdata.listing()
    if args.json:
        _emit(rows)
        return 0
    for r in rows:
        where = ", ".join(r["folders"]) or "not present (nas data fetch " + r["table"] + ")"
        n = f"{r['files']} file{'s' if r['files'] > 1 else ''}"
        print(f"{r['table']}: {n}, {_size(r['bytes'])}; here {r['present']}/{r['files']}: {where}")
        print(f"    {r['description']}")
        for key in ("used_by", "source", "url", "licence"):
            print(f"    {key.replace('_', ' '):8s} {r[key]}")
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nas import refdata

    rows = refdata.verify(args.tables, Path(args.dir) if args.dir else None)
    problems = sum(len(r["missing"]) + len(r["bad"]) for r in rows)
    if args.json:
        _emit(rows)
    else:
        for r in rows:
            state = "ok" if r["ok"] == r["files"] else "INCOMPLETE"
            where = ", ".join(r["folders"]) or "-"
            print(f"{r['table']:16s} {r['ok']:3d}/{r['files']:<3d} {state:10s} {where}")
            for b in r["bad"]:
                print(f"    {b['problem']}: {b['folder']}/{b['path']}")
            if r["missing"]:
                print(f"    missing: {len(r['missing'])} files (nas data fetch {r['table']})")
    return 1 if problems else 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from nas import refdata

    out = refdata.fetch(args.tables, mirror=args.mirror, progress=not args.no_progress)
    if args.json:
        _emit(out)
    else:
        print(
            f"fetched {len(out['fetched'])} files ({_size(out['bytes'])}), "
            f"{len(out['present'])} already there, into {out['folder']}"
        )
    return 0


# ----------------------------------------------------------------------------- parser

# The flags of ``nas search`` that are keys of the run configuration (nas.config).
SEARCH_KEYS = (
    "space", "strategy", "evaluator", "budget", "dataset", "data_dir", "seed", "objectives",
    "max_flops", "max_params", "max_latency", "latency_table", "storage", "study", "out",
    "resume", "join", "workers", "address", "max_retries", "log_level", "tensorboard",
    "steps", "order", "predictor",
)  # fmt: skip


def _names(kind: str) -> str:
    """The registered names of ``kind`` for help texts (built-in and plugins', no imports)."""
    from nas import registry

    try:
        return ", ".join(registry.names(kind))
    except Exception:  # noqa: BLE001 - a broken plugin must not break --help
        return "see `nas " + kind + "`"


def _search_parser(sub: Any) -> None:
    s = sub.add_parser(
        "search",
        help="run (or resume) an architecture search",
        description="Flags override --config's keys; --set KEY=VALUE overrides both.",
    )
    s.add_argument("--config", help="a TOML run configuration (keys: these flags, underscored)")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key, e.g. budget=40 or strategy_options.population=50 (repeatable)",
    )
    s.add_argument("--space", help=f"search space: {_names('spaces')}")
    s.add_argument("--strategy", help=f"search strategy: {_names('strategies')}")
    s.add_argument("--evaluator", help=f"evaluator: {_names('evaluators')}")
    s.add_argument(
        "--budget", type=int, help="evaluated architectures (one-shot strategies: search steps)"
    )
    s.add_argument("--dataset", help="network variant and data (default: the evaluator's)")
    s.add_argument(
        "--data-dir", help="local data: CIFAR-10/100 python folder, image folder or .npz file"
    )
    s.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    s.add_argument("--objectives", help="comma-separated, e.g. accuracy,flops (:min/:max)")
    s.add_argument("--max-flops", help="hard limit on multiply-accumulates, e.g. 600M")
    s.add_argument("--max-params", help="hard limit on parameters, e.g. 3.5M")
    s.add_argument("--max-latency", help="hard limit on latency (ms) where there is a model")
    s.add_argument("--latency-table", help="latency LUT (supernet evaluator): note10 or a file")
    s.add_argument("--steps", type=int, help="evaluator_options.steps: training steps")
    s.add_argument("--order", type=int, help="strategy_options.order: darts' 1st/2nd order")
    s.add_argument("--predictor", help="strategy_options.predictor (bananas, neural-predictor)")
    s.add_argument("--storage", help="SQLAlchemy URL (default: sqlite in the run folder)")
    s.add_argument("--study", help="study name (default: the run folder's name)")
    s.add_argument("--out", help="run folder (default: runs/<study>)")
    s.add_argument("--resume", action="store_true", default=None, help="continue a study")
    s.add_argument(
        "--join",
        action="store_true",
        default=None,
        help="add trials to a study other drivers share (another --seed each)",
    )
    s.add_argument("--workers", help="parallel evaluations: 1 (default), K or auto (Ray)")
    s.add_argument("--address", help="join a running Ray cluster (auto or host:port)")
    s.add_argument("--max-retries", type=int, help="retries of a trial whose worker died")
    s.add_argument("--log-level", help="debug, info, warning (default) or error")
    s.add_argument(
        "--tensorboard", action="store_true", default=None, help="log trials to <out>/tensorboard"
    )
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)


def _listing_parsers(sub: Any) -> None:
    """``spaces``, ``inspect`` and the registry listings."""
    s = sub.add_parser("spaces", help="list search spaces and their sizes")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_spaces)

    s = sub.add_parser("inspect", help="validate an architecture; report params, FLOPs, hash")
    s.add_argument("--space", help="search space (optional when --arch is an exported JSON)")
    s.add_argument("--arch", required=True, help="native string, known name, or JSON file")
    s.add_argument("--dataset", help="network variant (default: the space's default)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect)

    for kind, func in (
        ("strategies", cmd_strategies),
        ("evaluators", cmd_evaluators),
        ("predictors", cmd_predictors),
    ):
        s = sub.add_parser(kind, help=f"list the registered {kind} (built-in and plugins')")
        s.add_argument("--json", action="store_true")
        s.set_defaults(func=func)


def _tool_parsers(sub: Any) -> None:
    """``latency-table``, ``draw`` and ``dashboard``."""
    s = sub.add_parser("latency-table", help="measure a per-layer latency table on this machine")
    s.add_argument("--space", required=True, help="ofa, ofa-proxyless, gpt or gpt-base")
    s.add_argument("--out", required=True, help="JSON file to write")
    s.add_argument("--resolutions", type=int, nargs="+", default=[224])
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--repeats", type=int, default=20)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_latency_table)

    s = sub.add_parser("draw", help="draw a cell or network diagram (PNG or SVG)")
    s.add_argument("--space", help="search space (optional when --arch is an exported JSON)")
    s.add_argument("--arch", required=True)
    s.add_argument("--dataset")
    s.add_argument("--out", required=True, help="file.png or file.svg")
    s.add_argument("--view", default="auto", help="cell, network, ops (default: cell if any)")
    s.add_argument("--scope", help="draw the block whose scope starts with this prefix")
    s.add_argument("--depth", type=int, default=2, help="scope levels kept in the network view")
    s.set_defaults(func=cmd_draw)

    s = sub.add_parser("dashboard", help="serve optuna-dashboard on a study storage")
    s.add_argument("--storage", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.set_defaults(func=cmd_dashboard)


def _export_parser(sub: Any) -> None:
    """``export``: a stored trial as JSON, flax, Python or ONNX."""
    s = sub.add_parser("export", help="export a stored trial")
    s.add_argument("--storage", required=True)
    s.add_argument("--study", required=True)
    s.add_argument("--trial", default="best", help="'best' or a trial number")
    s.add_argument("--format", default="json", help="json, flax, python or onnx")
    s.add_argument("--out", required=True)
    s.add_argument(
        "--data-dir", help="local CIFAR-10 (a supernet trial's BN recalibration needs its data)"
    )
    s.add_argument(
        "--run-dir",
        help="the folder the search wrote (default: the SQLite file's folder); its trial "
        "files are read from there and nowhere else",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_export)


def _predictor_parsers(sub: Any) -> None:
    """``predictor evaluate|fit`` and ``predict``."""
    s = sub.add_parser("predictor", help="train and evaluate accuracy predictors")
    psub = s.add_subparsers(dest="predictor_command", required=True, parser_class=_Parser)
    e = psub.add_parser("evaluate", help="fit on --train SPECs, rank the --test SPEC")
    e.add_argument(
        "--predictor",
        required=True,
        help="gennape, onnxnet, gbm, mlp, params, pretrained:gennape, ...",
    )
    e.add_argument(
        "--train",
        help="SPEC[,SPEC...], SPEC = bench[:dataset][:n] (for pretrained:NAME: fine-tuning data)",
    )
    e.add_argument("--test", required=True, help="SPEC; disjoint from --train on one benchmark")
    e.add_argument("--finetune", help="SPEC of few-shot data (e.g. nb201:50) after fitting")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument(
        "--plot", help="write a predicted-versus-true scatter plot (file.png or file.svg)"
    )
    e.add_argument("--option", action="append", metavar="KEY=VALUE", help=OPTION_HELP)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_predictor_evaluate)
    f = psub.add_parser("fit", help="fit a predictor on SPECs and save it to a folder")
    f.add_argument("--predictor", required=True)
    f.add_argument("--train", required=True, help="SPEC[,SPEC...]")
    f.add_argument("--out", required=True, help="folder to write")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--option", action="append", metavar="KEY=VALUE", help=OPTION_HELP)
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_predictor_fit)

    s = sub.add_parser("predict", help="predict an architecture's accuracy with a saved predictor")
    s.add_argument(
        "--predictor",
        required=True,
        help="folder written by nas predictor fit, or pretrained:NAME (e.g. pretrained:gennape)",
    )
    s.add_argument("--space", help="search space (optional when --arch is an exported JSON)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--arch", help="native string, known name, or JSON file")
    what.add_argument("--onnx", help="an ONNX file made by any tool (torch.onnx.export, ...)")
    s.add_argument("--dataset", help="network variant (default: the space's default)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_predict)


def _data_parsers(sub: Any) -> None:
    """``data list|verify|fetch``: the reference tables."""
    s = sub.add_parser("data", help="reference tables: list, verify, fetch (into $NAS_DATA_DIR)")
    dsub = s.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    d = dsub.add_parser("list", help="every reference table: size, source, licence, presence")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_data_list)
    d = dsub.add_parser("verify", help="check sizes and SHA-256 of the tables present")
    d.add_argument("tables", nargs="*", help="table names (default: all)")
    d.add_argument("--dir", help="check this folder only (default: where the spaces read)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_data_verify)
    d = dsub.add_parser("fetch", help="download and verify tables into $NAS_DATA_DIR")
    d.add_argument("tables", nargs="*", help="table names (default: all)")
    d.add_argument("--mirror", help="base URL holding the files in shared/data's layout")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_data_fetch)


def build_parser() -> argparse.ArgumentParser:
    """The ``nas`` command line: one sub-command per task."""
    p = _Parser(prog="nas", description="Neural architecture search on JAX.")
    from nas import __version__

    p.add_argument("--version", action="version", version=f"nas {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _listing_parsers(sub)
    _search_parser(sub)
    _tool_parsers(sub)
    _export_parser(sub)
    _predictor_parsers(sub)
    _data_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the process's own command line: tune malloc before JAX starts
        from nas import memory

        memory.reexec()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    from nas.errors import NasError

    try:
        return args.func(args)
    except NasError as e:
        print(f"nas: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
