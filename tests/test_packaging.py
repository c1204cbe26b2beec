"""Every package the code imports is declared in pyproject.toml: the science in the dependencies,
the tooling in the `book` or `sweep` extra."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tomllib

from llfc_utils.tools.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

DIST = {
    "yaml": "pyyaml",
    "IPython": "ipython",
    "PIL": "pillow",
    "myst_nb": "myst-nb",
}  # import name -> distribution


def _declared(requirements: list[str]) -> set[str]:
    """Distribution names of requirement strings, lower case, extras and bounds dropped."""
    names = set()
    for r in requirements:
        name = r.split(";")[0].split("[")[0]
        for sep in "<>=!~ ":
            name = name.split(sep)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def _third_party(paths: list[Path]) -> set[str]:
    """Top-level third-party distributions imported anywhere in `paths`."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top != "llfc_utils":
                    found.add(DIST.get(top, top).lower())
    return found


def test_the_science_imports_only_declared_dependencies() -> None:
    science = sorted((ROOT / "llfc_utils").glob("*.py"))
    undeclared = _third_party(science) - _declared(PYPROJECT["dependencies"])
    assert not undeclared, f"the science imports {sorted(undeclared)}: add to dependencies"


def test_the_tooling_imports_only_declared_extras() -> None:
    tools = sorted((ROOT / "llfc_utils" / "tools").glob("*.py"))
    extras = PYPROJECT["optional-dependencies"]
    declared = _declared(PYPROJECT["dependencies"] + extras["book"] + extras["sweep"])
    undeclared = _third_party(tools) - declared
    assert not undeclared, f"the tooling imports {sorted(undeclared)}: add to the book extra"


def test_the_scan_sees_an_undeclared_import(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\nimport yaml\nfrom IPython.display import HTML\nfrom . import x\n")
    assert _third_party([f]) == {"pyyaml", "ipython"}
