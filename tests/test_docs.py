"""Docstring examples run as tests, so they cannot go stale."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["nas.graph", "nas.model", "nas.onnx_export"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _python_blocks(path):
    import re
    from pathlib import Path

    return re.findall(
        r"```python\n(.*?)```", (Path(__file__).parent.parent / path).read_text(), re.S
    )


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    monkeypatch.chdir(tmp_path)
    block = next(b for b in _python_blocks("README.md") if "run_search(" in b)
    ns: dict = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["result"].n_trials == 100 and ns["result"].best_metrics["accuracy"] > 93
    assert len(ns["best"]) == 100  # the callback saw every trial


def test_guide_custom_space_example_passes_the_space_contract():
    import numpy as np

    from nas.errors import InvalidGenotype

    block = next(b for b in _python_blocks("docs/guide.md") if "class WidthSpace" in b)
    ns: dict = {}
    exec(compile(block, "docs/guide.md", "exec"), ns)
    space = ns["WidthSpace"]()
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = space.sample(rng)
        assert space.parse(g.to_str()) == g and space.contains(space.mutate(g, rng))
        assert space.decode(space.encode(g)) == g and space.to_graph(g).params() > 0
    with pytest.raises(InvalidGenotype):
        space.parse("8,16")
    assert space.size == 27
