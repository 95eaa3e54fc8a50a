"""The Python API (nas.api): its docstring examples, parity with the CLI, scatter plots."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys

import pytest

from nas.errors import ConfigError, InvalidGenotype, NasError, UnknownName
from tests.conftest import ROOT, require_data, run_cli

NB201 = "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"
BAD_CELL = "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _blocks(path: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / path).read_text(), re.S)


def test_docstring_examples_run():
    require_data(NB201)
    import nas.api

    result = doctest.testmod(
        nas.api, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0
    assert result.attempted >= 40  # every function has an example; a lost one shows here
    documented = {n for n in nas.api.__all__ if ">>>" in (getattr(nas.api, n).__doc__ or "")}
    assert documented == set(nas.api.__all__)


def test_import_nas_stays_light_and_exports_the_api_lazily():
    code = (
        "import sys, nas; heavy = ('jax', 'optuna', 'ray', 'flax', 'matplotlib', 'scipy');"
        "before = sorted(m for m in heavy + ('nas.api',) if m in sys.modules);"
        "f = nas.inspect; import nas.api;"
        "print(before, f is nas.api.inspect, sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[] True []", out.stderr


def test_inspect_gives_what_the_cli_prints():
    from nas import api

    cli = run_cli(
        "inspect", "--space", "nb201", "--arch", "all_conv3x3", "--dataset", "cifar10", "--json"
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(
        json.dumps(api.inspect("all_conv3x3", "nb201", "cifar10"), default=str)
    ) == json.loads(cli.stdout)


@pytest.mark.parametrize(
    "kwargs, cli_args, error",
    [
        (
            {"arch": BAD_CELL, "space": "nb201"},
            ["--space", "nb201", "--arch", BAD_CELL],
            InvalidGenotype,
        ),
        (
            {"arch": "|nor_conv_3x3~0|+|none~0|none~1|", "space": "nb201"},
            ["--space", "nb201", "--arch", "|nor_conv_3x3~0|+|none~0|none~1|"],
            InvalidGenotype,
        ),
        ({"arch": "x", "space": "nb999"}, ["--space", "nb999", "--arch", "x"], UnknownName),
        ({"arch": "all_conv3x3"}, ["--arch", "all_conv3x3"], ConfigError),
    ],
)
def test_inspect_errors_match_the_cli(kwargs, cli_args, error):
    from nas import api

    with pytest.raises(error) as info:
        api.inspect(**kwargs)
    cli = run_cli("inspect", *cli_args)
    assert cli.returncode == 2 and cli.stdout == ""
    assert cli.stderr == f"nas: error: {str(info.value).splitlines()[0]}\n"


def test_search_errors_match_the_cli(tmp_path):
    from nas import api

    cases = [
        (dict(strategy="sa"), ["--strategy", "sa"], UnknownName),
        (dict(workers="many"), ["--workers", "many"], ConfigError),
        (dict(max_flops="lots"), ["--max-flops", "lots"], ConfigError),
        (dict(predictor="gbm"), ["--predictor", "gbm"], ConfigError),
    ]
    for kwargs, flags, error in cases:
        args = {"strategy": "random", **kwargs}
        with pytest.raises(error) as info:
            api.search("nb201", evaluator="benchmark", budget=2, out=tmp_path / "r", **args)
        cli_flags = ["--strategy", "random", *flags] if "strategy" not in kwargs else flags
        cli = run_cli(
            "search",
            "--space",
            "nb201",
            "--evaluator",
            "benchmark",
            "--budget",
            "2",
            "--out",
            str(tmp_path / "r"),
            *cli_flags,
        )
        assert cli.returncode == 2, cli.stderr
        assert cli.stderr == f"nas: error: {str(info.value).splitlines()[0]}\n"
    assert not (tmp_path / "r" / "result.json").exists()


def test_predictor_evaluate_plot_from_the_cli(tmp_path):
    require_data(NB201)
    png = tmp_path / "plots" / "params.png"
    args = ["predictor", "evaluate", "--predictor", "params"]
    args += ["--train", "nb201:cifar10:20", "--test", "nb201:cifar10:50"]
    out = run_cli(*args, "--plot", str(png), "--json", cwd=tmp_path)  # plots/ is created here
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["plot"] == str(png) and doc["n_test"] == 50 and doc["predictor"] == "params"
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000
    # every other key is what the command printed before --plot existed
    plain = json.loads(run_cli(*args, "--json").stdout)
    assert set(doc) - {"plot"} == set(plain)
    timing = ("_seconds", "_per_second")
    assert {k: v for k, v in doc.items() if not k.endswith(timing) and k != "plot"} == {
        k: v for k, v in plain.items() if not k.endswith(timing)
    }
    bad = run_cli(*args, "--plot", str(tmp_path / "x.jpg"))
    assert bad.returncode == 2 and "must end in .png or .svg" in bad.stderr


def test_plot_predictions_svg_and_checks(tmp_path):
    import numpy as np
    from nas.predictors.evaluate import plot_predictions, rank_metrics

    rng = np.random.default_rng(0)
    y = rng.uniform(80, 95, 200)
    pred = np.exp(y / 10) * 1e3 + rng.normal(0, 2e5, 200)  # another scale, noisy
    path = plot_predictions(pred, y, tmp_path / "s.svg", name="toy", setting="toy data")
    text = path.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    tau = rank_metrics(pred, y)["kendall_tau"]
    # matplotlib writes text as glyph paths by default; the title sits in the svg as a comment
    assert f"{tau:.3f}" in text and "n_test = 200" in text
    with pytest.raises(ConfigError, match="as many predictions"):
        plot_predictions(pred[:5], y, tmp_path / "t.png")
    with pytest.raises(NasError, match=r"\.png or \.svg"):
        plot_predictions(pred, y, tmp_path / "t.pdf")


def test_readme_and_guide_api_examples_run(tmp_path, monkeypatch):
    require_data(NB201)
    monkeypatch.chdir(tmp_path)
    (readme,) = [b for b in _blocks("README.md") if "from nas import api" in b]
    ns: dict = {}
    exec(compile(readme, "README.md", "exec"), ns)
    assert ns["run"].n_trials == 30 and (tmp_path / "runs/api/report.html").exists()
    assert (tmp_path / "runs/api/params.png").read_bytes()[:8] == PNG_MAGIC
    (guide,) = [b for b in _blocks("docs/guide.md") if "from nas import api" in b]
    ns = {}
    exec(compile(guide, "docs/guide.md", "exec"), ns)
    assert ns["run"].best_cost["params"] <= 1e6 and ns["res"]["plot"].endswith("gbm.png")
    assert (tmp_path / "runs/guide/best/cell.svg").stat().st_size > 1000
