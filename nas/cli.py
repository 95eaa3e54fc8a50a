"""The ``nas`` command line.

Bad input ends with a one-line ``nas: error: ...`` on stderr and exit code 2; no traceback.
Heavy modules are imported inside the commands so that ``nas --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage; keep it to one line
        print(f"nas: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _emit(obj: Any) -> None:
    print(json.dumps(obj, indent=None, default=str))


# ----------------------------------------------------------------------------- commands


def cmd_spaces(args: argparse.Namespace) -> int:
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
    from nas.errors import ConfigError
    from search_spaces import get_space

    if space_name is None:
        if not arch.endswith(".json"):
            raise ConfigError("--space is required unless --arch is an exported JSON file")
        p = Path(arch)
        if not p.exists():
            raise ConfigError(f"architecture file {arch} does not exist")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{arch} is not valid JSON: {e}") from None
        geno = data.get("genotype", data) if isinstance(data, dict) else {}
        if "space" not in geno:
            raise ConfigError(f"{arch} names no space; pass --space")
        space_name = geno["space"]
        dataset = (data.get("provenance") or {}).get("dataset") or (
            data.get("graph", {}).get("meta", {}).get("dataset")
        )
        space = get_space(space_name)
        return space, space.resolve(arch), dataset
    space = get_space(space_name)
    return space, space.resolve(arch), None


def cmd_inspect(args: argparse.Namespace) -> int:
    space, genotype, file_dataset = _resolve_space_arch(args.space, args.arch)
    dataset = args.dataset or file_dataset
    graph = space.to_graph(genotype, dataset)
    info = {
        "space": space.name,
        "arch": genotype.to_str(),
        "dataset": graph.meta.get("dataset", dataset),
        **graph.summary(),
        "op_counts": graph.op_counts(),
    }
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
    from nas.evaluators import get_evaluator
    from nas.search import print_summary, run_search
    from nas.searchers import Constrained, get_searcher, parse_quantity
    from search_spaces import get_space

    space = get_space(args.space)
    options: dict[str, Any] = {}
    if args.steps is not None:
        options["steps"] = args.steps
    if args.data_dir:
        options["data_dir"] = args.data_dir
    evaluator = get_evaluator(args.evaluator, space, args.dataset, seed=args.seed, **options)
    searcher = get_searcher(args.strategy, space, seed=args.seed)
    limits = {
        key: parse_quantity(value)
        for key, value in (
            ("flops", args.max_flops),
            ("params", args.max_params),
            ("latency", args.max_latency),
        )
        if value is not None
    }
    if limits:
        searcher = Constrained(searcher, evaluator.cost, limits)
    out = Path(args.out or f"runs/{args.study or f'{args.space}-{args.strategy}-{args.seed}'}")
    settings = {
        "seed": args.seed,
        "budget": args.budget,
        "command": " ".join(sys.argv[1:]),
        "limits": {
            k: v
            for k, v in (
                ("max_flops", args.max_flops),
                ("max_params", args.max_params),
                ("max_latency", args.max_latency),
            )
            if v
        },
    }
    result = run_search(
        space,
        searcher,
        evaluator,
        args.budget,
        out_dir=out,
        storage=args.storage,
        study_name=args.study,
        resume=args.resume,
        settings=settings,
        progress=not args.no_progress,
    )
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=1))
    if args.json:
        _emit(result.to_json())
    else:
        print_summary(result)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from nas.export import export_trial

    doc = export_trial(args.storage, args.study, args.trial, args.format, args.out)
    if args.json:
        _emit({"out": str(args.out), "arch": doc["genotype"]["arch"], "hash": doc["hash"]})
    else:
        print(
            f"exported trial {doc['provenance']['trial']} ({doc['genotype']['arch']}) to {args.out}"
        )
    return 0


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="nas", description="Neural architecture search on JAX.")
    p.add_argument("--version", action="version", version="nas 0.1.0")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("spaces", help="list search spaces and their sizes")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_spaces)

    s = sub.add_parser("inspect", help="validate an architecture; report params, FLOPs, hash")
    s.add_argument("--space", help="search space (optional when --arch is an exported JSON)")
    s.add_argument("--arch", required=True, help="native string, known name, or JSON file")
    s.add_argument("--dataset", help="network variant (default: the space's default)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("search", help="run (or resume) an architecture search")
    s.add_argument("--space", required=True)
    s.add_argument("--strategy", required=True, help="random, evolution, tpe")
    s.add_argument("--evaluator", required=True, help="train or benchmark")
    s.add_argument("--budget", required=True, type=int, help="number of evaluated architectures")
    s.add_argument(
        "--dataset", help="digits (default for train), cifar10, cifar100, ImageNet16-120"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--storage", help="SQLAlchemy URL (default: sqlite in the run folder)")
    s.add_argument("--study", help="study name (default: the run folder's name)")
    s.add_argument("--resume", action="store_true", help="continue an existing study")
    s.add_argument("--out", help="run folder (default: runs/<study>)")
    s.add_argument("--steps", type=int, help="training steps per candidate (train evaluator)")
    s.add_argument("--data-dir", help="local cifar-10-batches-py folder for --dataset cifar10")
    s.add_argument("--max-flops", help="hard limit on multiply-accumulates, e.g. 600M")
    s.add_argument("--max-params", help="hard limit on parameters, e.g. 3.5M")
    s.add_argument("--max-latency", help="hard limit on latency (ms) where the space has a table")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("export", help="export a stored trial")
    s.add_argument("--storage", required=True)
    s.add_argument("--study", required=True)
    s.add_argument("--trial", default="best", help="'best' or a trial number")
    s.add_argument("--format", default="json", help="json or flax")
    s.add_argument("--out", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_export)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    from nas.errors import NasError

    try:
        return args.func(args)
    except NasError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"nas: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
