"""The search layer: objectives reach every strategy, one run configuration, one plugin registry,
one definition of "best", the driver's lease, callbacks and library manners.

Each test here reproduces a seam a new user found (strategies that ignored ``--objectives``,
flags that could not be set from a file, a strategy or space that needed an edit of this
repository, three meanings of "best", a ``--resume`` that crashed the live driver).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nas import api
from nas.cli import main
from nas.errors import StorageError
from nas.storage import TrialStore
from tests.conftest import ROOT, require_data, run_cli

TABLE = "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"


def late_median_flops(strategy: str, budget: int, tmp: Path, **extra) -> float:
    """Median MFLOPs of the last 20 trials of a FLOPs-minimising search on the NB201 table."""
    r = api.search(
        "nb201", strategy, "benchmark", budget, dataset="cifar10", objectives="flops",
        out=tmp / strategy, progress=False, **extra,
    )  # fmt: skip
    recs = sorted(TrialStore.open(r.storage, r.study).records(), key=lambda x: x.number)
    return statistics.median(x.cost["flops"] for x in recs[budget - 20 : budget]) / 1e6


@pytest.mark.parametrize("strategy", ["bananas", "neural-predictor", "spos-evolution"])
def test_strategies_that_ignored_objectives_now_minimise_flops(strategy, tmp_path):
    """Before the redesign these maximised accuracy whatever --objectives said (a median of
    80-120 MFLOPs for Bananas); the cheapest NB201 cells have 7.8M, a random one ~45M."""
    require_data(TABLE)
    options = {"population": 20, "select_num": 5, "mutation_num": 8, "crossover_num": 8}
    options = options if strategy == "spos-evolution" else {}
    assert late_median_flops(strategy, 60, tmp_path, strategy_options=options) < 20


@pytest.mark.slow
def test_every_sample_strategy_concentrates_on_cheap_cells_at_budget_100(tmp_path):
    from nas import registry
    from nas.searchers import strategy_class

    require_data(TABLE)
    options = {"ofa-evolution": {"samples": 40}}  # its default (100) would be the whole budget
    medians = {
        name: late_median_flops(name, 100, tmp_path, strategy_options=options.get(name))
        for name in registry.names("strategies")
        if strategy_class(name).kind == "sample"
    }
    assert medians.pop("random") > 30
    assert all(m < 30 for m in medians.values()), medians


def test_one_definition_of_best_for_summary_json_export_and_report(tmp_path):
    """With --objectives flops,accuracy the best trial is the cheapest one everywhere (before,
    export and the report picked the most accurate)."""
    require_data(TABLE)
    run = tmp_path / "run"
    r = api.search(
        "nb201", "random", "benchmark", 25, dataset="cifar10", objectives="flops,accuracy",
        out=run, progress=False, seed=3,
    )  # fmt: skip
    recs = [x for x in TrialStore.open(r.storage, r.study).records() if x.state == "COMPLETE"]
    cheapest = min(x.cost["flops"] for x in recs)
    assert r.best_cost["flops"] == cheapest and r.pareto[0]["trial"] == r.best_trial
    doc = json.loads((run / "result.json").read_text())
    assert doc["best_trial"] == r.best_trial and doc["best_values"]["flops"] == cheapest
    exported = api.export(r.storage, r.study, "best", "json", tmp_path / "best")
    assert exported["provenance"]["trial"] == r.best_trial
    report = (run / "report.html").read_text()
    assert f"#1: trial {r.best_trial}," in report


def test_config_file_flags_and_set_overrides(tmp_path, capsys):
    require_data(TABLE)
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            space = "nb201"
            strategy = "evolution"
            evaluator = "benchmark"
            dataset = "cifar10"
            budget = 50
            max_flops = "100M"
            out = "{tmp_path / "run"}"
            progress = false

            [strategy_options]
            population = 12
            tournament = 3
            """
        )
    )
    argv = [
        "search",
        "--config",
        str(cfg),
        "--budget",
        "14",
        "--set",
        "strategy_options.population=7",
    ]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_trials"] == 14  # the flag beat the file
    store = TrialStore.open(result["storage"], result["study"])
    stored = store.settings()["config"]
    assert stored["strategy_options"] == {"population": 7, "tournament": 3}  # --set beat both
    assert stored["max_flops"] == 100e6 and stored["budget"] == 14
    assert all(x.cost["flops"] <= 100e6 for x in store.records())
    assert "population" in (tmp_path / "run" / "report.html").read_text()  # shown in the report
    # --resume with a conflicting setting is refused and changes nothing.
    n = len(store.records())
    assert (
        main([*argv, "--budget", "20", "--resume", "--set", "strategy_options.tournament=4"]) == 2
    )
    err = capsys.readouterr().err
    assert "cannot resume study 'run': it was run with strategy_options=" in err
    assert len(TrialStore.open(result["storage"], "run").records()) == n
    assert main([*argv, "--budget", "20", "--resume", "--json"]) == 0  # the same config resumes
    assert json.loads(capsys.readouterr().out)["n_trials"] == 20


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "popsize=3"], "unknown configuration key 'popsize'; valid keys: address, budget"),
        (["--set", "strategy_options.popsize=3"], "unknown key 'popsize'; valid keys: population, tournament"),
        (["--set", "evaluator_options.steps=3"], "evaluator_options (benchmark): unknown key 'steps'; valid keys: (none"),
        (["--set", "strategy_options.population=many"], "strategy_options.population: expected a number"),
        (["--max-params", "nan"], "--max-params must be a positive number"),
        (["--max-flops", "0"], "--max-flops must be a positive number"),
        (["--max-flops", "1M"], "impossible limit --max-flops 1,000,000: the smallest architecture"),
        (["--max-latency", "5"], "--max-latency needs a latency model"),
        (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1"),
        (["--study", "../../escaped"], "--study '../../escaped': a study name is 1-100"),
        (["--study", "x" * 300], "a study name is 1-100 letters"),
        (["--objectives", "accuracy,speed"], "objective 'speed' is not measured by this evaluator"),
        (["--strategy", "bananas", "--objectives", "accuracy,flops"], "'bananas' optimises 1 objective; for accuracy,flops use one of ['evolution', 'nsga2', 'random', 'tpe']"),
        (["--strategy", "bananas", "--predictor", "nope"], "unknown predictor 'nope'"),
        (["--strategy", "darts"], "strategy 'darts' searches the DARTS cell space"),
        (["--strategy", "ofa-evolution"], "ofa-evolution: samples=100 leaves none of the budget (3)"),
        (["--log-level", "loud"], "--log-level must be one of"),
        (["--config", "/nonexistent.toml"], "--config /nonexistent.toml cannot be read: No such file"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line_errors_before_anything_is_written(
    argv, message, tmp_path, capsys
):
    require_data(TABLE)
    out = tmp_path / "run"
    base = ["search", "--space", "nb201", "--strategy", "evolution", "--evaluator", "benchmark"]
    base += ["--dataset", "cifar10", "--budget", "3", "--out", str(out), "--no-progress"]
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas: error: ") and err.count("\n") == 1 and len(err) < 400, err
    assert message in err, err
    assert not (out / "study.db").exists()


def test_out_naming_a_file_and_an_unwritable_folder(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("keep me")
    base = ["search", "--space", "nb201", "--strategy", "random", "--evaluator", "synthetic"]
    assert main([*base, "--budget", "2", "--out", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and afile.read_text() == "keep me"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert main([*base, "--budget", "2", "--out", str(locked / "run")]) == 2
        assert "cannot write to the run folder" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)


PLUGIN = '''
"""A tiny plugin: a space of 6 bits and a hill-climbing strategy."""
from dataclasses import dataclass
from typing import ClassVar

from nas.graph import ArchGraph
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace


@dataclass(frozen=True)
class Bits(Genotype):
    bits: tuple
    space_name: ClassVar[str] = "tiny"

    def to_str(self):
        return "".join(map(str, self.bits))


class TinySpace(SearchSpace):
    """Six bits; the network is a dense layer as wide as the bits set."""

    name = "tiny"
    description = "a plugin's space"

    def choices(self):
        return [(f"b{i}", 2) for i in range(6)]

    def from_indices(self, indices):
        return Bits(tuple(int(i) for i in indices))

    def to_indices(self, genotype):
        return list(genotype.bits)

    def parse(self, text):
        return Bits(tuple(int(c) for c in text))

    def to_graph(self, genotype, dataset=None):
        width = 1 + sum(genotype.bits)
        return ArchGraph.sequential((4,), [("dense", {"out_features": width})])


class HillClimb(Searcher):
    """Mutate the best so far."""

    name = "hill"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.best = None

    def ask(self):
        if self.best is None:
            return self.space.sample(self.rng)
        return self.space.mutate(self.best[0], self.rng)

    def tell(self, genotype, values):
        super().tell(genotype, values)
        if values is not None and (self.best is None or values[0] > self.best[1]):
            self.best = (genotype, values[0])

    def state_dict(self):
        return {**super().state_dict(), "best": None if self.best is None else [self.best[0].to_str(), self.best[1]]}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        b = state["best"]
        self.best = None if b is None else (self.space.parse(b[0]), b[1])
'''


def test_a_plugin_package_adds_a_space_and_a_strategy(tmp_path):
    """A separate package registers through entry points; nothing in this repository changes."""
    site = tmp_path / "site"
    (site / "nas_tiny").mkdir(parents=True)
    (site / "nas_tiny" / "__init__.py").write_text(PLUGIN)
    dist = site / "nas_tiny-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nas-tiny\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[nas.spaces]\ntiny = nas_tiny:TinySpace\n\n[nas.strategies]\nhill = nas_tiny:HillClimb\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}

    def nas(*args):
        return subprocess.run(
            [sys.executable, "-m", "nas.cli", *args], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    listed = {r["name"]: r for r in json.loads(nas("spaces", "--json").stdout)}
    assert listed["tiny"]["origin"] == "nas-tiny" and listed["tiny"]["size"] == 64
    strategies = {r["name"]: r for r in json.loads(nas("strategies", "--json").stdout)}
    assert (
        strategies["hill"]["summary"] == "Mutate the best so far"
        and strategies["hill"]["kind"] == "sample"
    )
    assert "hill" in nas("search", "--help").stdout  # the help is generated from the registry
    r = nas("search", "--space", "tiny", "--strategy", "hill", "--evaluator", "synthetic",
            "--budget", "6", "--out", str(tmp_path / "run"), "--no-progress", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["n_trials"] == 6
    assert nas("inspect", "--space", "tiny", "--arch", "101100", "--json").returncode == 0


def test_resume_is_refused_while_the_driver_lives_and_takes_over_when_it_is_dead(tmp_path):
    run = tmp_path / "run"
    cmd = ["search", "--space", "nb201", "--strategy", "random", "--evaluator", "synthetic",
           "--steps", "100", "--budget", "30", "--out", str(run), "--no-progress", "--json"]  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", *cmd], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        store = None
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.2)
            if driver.poll() is not None:
                pytest.fail(f"the driver exited early: {driver.stderr.read().decode()[-2000:]}")
            if (run / "study.db").exists():
                try:
                    store = TrialStore.open(f"sqlite:///{run / 'study.db'}", "run")
                    if store.live_leases() and store.records():
                        break
                except StorageError:
                    continue
        assert store is not None and store.live_leases(), "the driver did not start"
        busy = run_cli(*cmd, "--resume")
        assert busy.returncode == 2, busy.stderr
        assert "is being run by driver" in busy.stderr
        running = [r for r in store.records() if r.state == "RUNNING"]
        assert running and not any(r.interrupted for r in store.records())  # untouched
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited (the test failed)
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    took_over = run_cli(*cmd, "--resume")
    assert took_over.returncode == 0, took_over.stderr
    assert json.loads(took_over.stdout)["n_trials"] == 30


def test_callbacks_and_tensorboard_see_every_trial(tmp_path):
    pytest.importorskip("tensorboardX")
    seen = []
    r = api.search(
        "nb201", "random", "synthetic", 4, out=tmp_path / "run", progress=False,
        callbacks=[lambda record: seen.append(record.number)], tensorboard=True,
    )  # fmt: skip
    assert sorted(seen) == [0, 1, 2, 3] and r.n_trials == 4
    tags = _event_tags(tmp_path / "run" / "tensorboard")
    assert tags["objective/accuracy"] == 4 and tags["best/accuracy"] == 4
    assert tags["cost/flops"] == 4


def _event_tags(folder: Path) -> dict[str, int]:
    """Scalar tags and how many values each has, read from the TFRecord event files."""
    import struct

    from tensorboardX.proto import event_pb2

    counts: dict[str, int] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for v in event.summary.value:
                counts[v.tag] = counts.get(v.tag, 0) + 1
    return counts


def test_the_library_changes_no_global_state_of_its_caller(tmp_path):
    """A notebook keeps its matplotlib backend, its Optuna verbosity and its logging."""
    code = textwrap.dedent(
        f"""
        import logging, matplotlib
        matplotlib.use("pdf")
        import optuna
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        root = list(logging.getLogger().handlers)
        from nas import api
        r = api.search("nb201", "nsga2", "synthetic", 4, objectives="accuracy,flops",
                       out={str(tmp_path / "run")!r}, progress=False)
        api.draw("best_cifar10", {str(tmp_path / "cell.png")!r}, space="nb201")
        assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
        assert logging.getLogger().handlers == root
        import matplotlib.pyplot as plt
        assert plt.get_fignums() == []
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    assert (tmp_path / "run" / "pareto.png").exists() and (tmp_path / "cell.png").exists()


def test_darts_derivation_within_a_limit_fits_and_the_cost_model_is_exact():
    """Without training: random softmax weights, the real network's parameter count."""
    import numpy as np
    from nas.search_spaces import get_space
    from nas.search_spaces.darts.genotypes import PRIMITIVES
    from nas.search_spaces.darts.search import derive_genotype

    from nas.searchers.darts import _CellCosts, derive_within

    space = get_space("darts")

    def cost(g):
        graph = space.to_graph(g, "digits")
        return {"params": graph.params(), "flops": graph.flops()}

    def make(normal, reduce):
        def cell(slots):
            return tuple((PRIMITIVES[op], s) for s, op in slots)

        return space.genotype_cls(cell(normal), cell(reduce))

    def slots(g):
        return [[(s, PRIMITIVES.index(op)) for op, s in cell] for cell in (g.normal, g.reduce)]

    costs = _CellCosts(cost, make, ["params"])
    rng = np.random.default_rng(0)
    for _ in range(3):
        w = [rng.dirichlet(np.ones(8), size=14) for _ in range(2)]
        free = derive_genotype(*w)
        assert costs.of(slots(free))[0] == cost(free)["params"]  # the additive model is exact
        limit = (costs.base[0] + cost(free)["params"]) / 2
        got = make(*derive_within(tuple(w), {"params": limit}, costs))
        assert cost(got)["params"] <= limit < cost(free)["params"]


@pytest.mark.slow
def test_darts_keeps_hard_limits(tmp_path):
    """--max-params with --strategy darts used to be recorded and ignored."""
    from nas.search_spaces import get_space

    from nas.searchers.darts import derive_within

    space = get_space("darts")
    cheapest = space.to_graph(space.smallest(), "digits").params()
    limit = cheapest + 2_000
    r = run_cli(
        "search", "--space", "darts", "--strategy", "darts", "--evaluator", "train",
        "--budget", "2", "--steps", "2", "--max-params", str(limit), "--out", str(tmp_path / "run"),
        "--set", "strategy_options.C=4", "--set", "strategy_options.layers=3",
        "--no-progress", "--json", timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["best_cost"]["params"] <= limit
    assert space.to_graph(space.parse(doc["best_arch"]), "digits").params() <= limit
    impossible = run_cli(
        "search", "--space", "darts", "--strategy", "darts", "--evaluator", "train",
        "--budget", "2", "--max-params", str(cheapest - 1), "--out", str(tmp_path / "no"),
    )  # fmt: skip
    assert impossible.returncode == 2 and "impossible limit --max-params" in impossible.stderr
    assert derive_within is not None


def test_processes_opening_a_new_sqlite_study_at_once_all_succeed(tmp_path):
    """Optuna's own table creation races (8 failures in 10 two-process races here: 'table
    studies already exists', 'UNIQUE constraint failed: alembic_version'); a driver must not
    fail because a reader (the dashboard, --resume's check, a second driver) opened the new
    database at the same moment."""
    script = textwrap.dedent(
        """
        import sys, time
        from nas.storage import open_storage
        while time.time() < float(sys.argv[2]):
            pass
        open_storage(sys.argv[1], create=True)
        """
    )
    for race in range(3):
        url = f"sqlite:///{tmp_path / f'race{race}.db'}"
        start = str(time.time() + 2.0)
        procs = [
            subprocess.Popen([sys.executable, "-c", script, url, start], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
            for _ in range(3)
        ]  # fmt: skip
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], errors
