"""Rename the import packages ``search_spaces`` and ``predictors`` to ``nas.search_spaces`` and
``nas.predictors`` everywhere (issue 24), keeping the folders where they are.

Run from the repository root: ``python3 .ci/rename_packages.py``. It rewrites

- ``from search_spaces...`` / ``from predictors...`` / ``import ...`` statements;
- dotted names in strings and docs (``"search_spaces.nb201.space:NB201Space"``,
  ``:mod:`predictors.base```), only where the next part is a real submodule, so that words
  such as ``predictors.json`` stay;
- ``pyproject.toml``'s packages block (between its ``# --- packages`` markers) into the
  explicit package list with ``package-dir``, listing every package folder found.

Then the rewritten Python files get ruff's import sorting and formatting (``.venv/bin/ruff``,
else ``ruff`` on the PATH), since ``nas.search_spaces`` sorts elsewhere than
``search_spaces``. It is idempotent (``nas.search_spaces`` is never rewritten again) and
prints what it changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPS = ("search_spaces", "predictors")
SUFFIXES = (".py", ".md", ".toml", ".sh", ".cfg", ".txt")
SKIP = ("benchmarks/results/", ".ci/rename_packages.py")


def submodules(top: str) -> list[str]:
    d = ROOT / top
    names = [p.stem for p in d.glob("*.py") if p.stem != "__init__"]
    names += [p.parent.name for p in d.glob("*/__init__.py")]
    return sorted(names)


def rewrite(text: str) -> str:
    for top in TOPS:
        subs = "|".join(submodules(top))
        text = re.sub(rf"(?<![\w.])from {top}(?=[.\s])", f"from nas.{top}", text)
        text = re.sub(rf"(?<![\w.])import {top}(?=[.\s])", f"import nas.{top}", text)
        text = re.sub(rf"(?<![\w./-]){top}\.(?=({subs})\b)", f"nas.{top}.", text)
    return text


def packages_block() -> str:
    pkgs = sorted(
        str(p.parent.relative_to(ROOT)).replace("/", ".")
        for top in ("nas", *TOPS)
        for p in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    )
    pkgs = [p if p.split(".")[0] == "nas" else f"nas.{p}" for p in pkgs]
    body = ",\n".join(f'    "{p}"' for p in pkgs)
    return (
        "[tool.setuptools]\n"
        "# search_spaces/ and predictors/ stay beside nas/ in the repository; installed they are\n"
        "# nas.search_spaces and nas.predictors (README: Install), so the distribution claims\n"
        "# no import name but nas. A new package folder must be listed here\n"
        "# (tests/test_compat.py checks).\n"
        'package-dir = { "nas.search_spaces" = "search_spaces", "nas.predictors" = "predictors" }\n'
        f"packages = [\n{body},\n]\n"
    )


def rewrite_pyproject() -> bool:
    p = ROOT / "pyproject.toml"
    text = p.read_text()
    m = re.search(r"(# --- packages \(begin\)[^\n]*\n)(.*?)(# --- packages \(end\))", text, re.S)
    if not m:
        raise SystemExit("pyproject.toml has no '# --- packages (begin)' ... '(end)' block")
    new = text[: m.start(2)] + packages_block() + text[m.start(3) :]
    if new != text:
        p.write_text(new)
    return new != text


def tidy(files: list[str]) -> None:
    """ruff: sort the imports the rename moved, then format."""
    venv = ROOT / ".venv" / "bin" / "ruff"
    ruff = str(venv) if venv.exists() else shutil.which("ruff")
    if not files:
        return
    if ruff is None:
        raise SystemExit("ruff not found: run `ruff check --fix --select I` and `ruff format`")
    subprocess.run([ruff, "check", "--fix", "--select", "I", "-q", *files], cwd=ROOT, check=False)
    subprocess.run([ruff, "format", "-q", *files], cwd=ROOT, check=True)


def main() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    changed = []
    for name in files:
        if name.startswith(SKIP) or not (name.endswith(SUFFIXES) or name == "Makefile"):
            continue
        p = ROOT / name
        text = p.read_text()
        new = rewrite(text)
        if new != text:
            p.write_text(new)
            changed.append(name)
    tidy([n for n in changed if n.endswith(".py")])
    if rewrite_pyproject():
        changed.append("pyproject.toml (packages)")
    print(f"rewrote {len(changed)} files")
    for name in changed:
        print("  " + name)


if __name__ == "__main__":
    main()
