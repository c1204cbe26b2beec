"""One table of `LLFC_*` variables: every reader goes through it, and the README lists it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llfc_utils import settings
from llfc_utils.tools.paths import ROOT

SOURCES = [
    *ROOT.glob("llfc_utils/**/*.py"),
    *ROOT.glob("notebooks/*.ipynb"),
    *ROOT.glob("tests/*.py"),
    *ROOT.glob("bench/*.py"),
    *ROOT.glob("book/*.md"),
    ROOT / "Makefile",
]
# environ.get("LLFC_..."), getenv("LLFC_..."), environ["LLFC_..."] not followed by "=" (a write)
READ = re.compile(
    r"""(environ\.get\(|getenv\()\s*["']LLFC_|environ\[["']LLFC_\w+["']\](?!\s*=[^=])"""
)


def test_every_variable_named_anywhere_is_declared() -> None:
    named = {m for p in SOURCES for m in re.findall(r"LLFC_[A-Z_]*[A-Z]", p.read_text())}
    assert named, "the scan found no LLFC_ variable at all"
    assert named <= set(settings.SETTINGS), f"undeclared: {sorted(named - set(settings.SETTINGS))}"


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = [
        str(p.relative_to(ROOT))
        for p in ROOT.glob("llfc_utils/**/*.py")
        if p.name != "settings.py" and READ.search(p.read_text())
    ]
    assert not readers, f"{readers} read LLFC_* directly; use llfc_utils.settings"


def test_the_readme_lists_every_setting() -> None:
    assert settings.markdown() in (ROOT / "README.md").read_text(), (
        "the README's settings table is out of date: paste `python -m llfc_utils.settings` into it"
    )


def test_empty_means_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLFC_HOME", str(tmp_path))
    monkeypatch.setenv("LLFC_CACHE", "  ")
    assert settings.get("LLFC_CACHE") is None
    assert settings.path("LLFC_CACHE") == tmp_path / "checkpoints"
    monkeypatch.setenv("LLFC_CACHE", "~/elsewhere")
    assert settings.path("LLFC_CACHE") == Path.home() / "elsewhere"


@pytest.mark.parametrize(
    ("raw", "on"), [("", True), ("1", True), ("0", False), ("False", False), ("no", False)]
)
def test_flag(monkeypatch: pytest.MonkeyPatch, raw: str, on: bool) -> None:
    monkeypatch.setenv("LLFC_PROGRESS", raw)
    assert settings.flag("LLFC_PROGRESS") is on


def test_an_undeclared_name_is_refused() -> None:
    name = "LLFC_" + "NOPE"  # spelt apart, so the scan above does not see it
    with pytest.raises(KeyError, match=f"{name} is not a declared setting"):
        settings.get(name)
