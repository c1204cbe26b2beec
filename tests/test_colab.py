"""The Colab badge and install cell follow `_config.yml`; the profile choice on Colab and in tests."""

from __future__ import annotations

import json
import shutil
import sys
import types

import pytest
import torch

from llfc_utils.tools import colab
from llfc_utils.tools.paths import chapters


def test_every_chapter_has_the_current_badge_and_install_cell() -> None:
    assert colab.sync(check=True) == [], "run `python -m llfc_utils.tools.colab`"
    url, branch = colab.repository()
    for path in chapters():
        cells = json.loads(path.read_text())["cells"]
        head = "".join(cells[0]["source"]).splitlines()
        assert head[0].startswith("# ") and head[2] == colab.badge_markdown(path.stem)
        assert f"{url.split('github.com/')[1]}/blob/{branch}/notebooks/{path.stem}.ipynb" in head[2]
        install = "".join(cells[1]["source"])
        assert "colab-install" in cells[1]["metadata"]["tags"]
        assert f"git+{url}@{branch}" in install and '"google.colab" in sys.modules' in install
        params = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
        assert cells.index(params[0]) == 2, "badge, install cell, then the parameters cell"


def test_changing_the_address_in_config_rewrites_badge_and_install_cell(tmp_path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    shutil.copy(colab.NOTEBOOKS / "01_lmc_basics.ipynb", notebooks)
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: https://github.com/someone/fork\n  branch: dev\n")
    assert colab.sync(notebooks, check=True, config=config) == ["01_lmc_basics"]
    assert colab.sync(notebooks, config=config) == ["01_lmc_basics"]
    assert colab.sync(notebooks, check=True, config=config) == []  # idempotent
    text = (notebooks / "01_lmc_basics.ipynb").read_text()
    assert "colab.research.google.com/github/someone/fork/blob/dev/notebooks/01_lmc_basics" in text
    assert "git+https://github.com/someone/fork@dev" in text
    assert "llfc-book/llfc-book" not in text
    before = json.loads((colab.NOTEBOOKS / "01_lmc_basics.ipynb").read_text())["cells"]
    after = json.loads(text)["cells"]
    assert len(after) == len(before) and after[2:] == before[2:]  # nothing else touched


def test_a_malformed_address_is_a_clear_error(tmp_path) -> None:
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: git@github.com:someone/fork.git\n")
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        colab.badge_markdown("01_lmc_basics", config)


def test_choose_profile(monkeypatch) -> None:
    monkeypatch.delenv("LLFC_PROFILE", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert colab.choose_profile("cpu") == "cpu"  # not on Colab
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert colab.choose_profile("cpu") == "cpu"  # Colab without a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert colab.choose_profile("cpu") == "paper"  # Colab with a GPU
    assert colab.choose_profile("smoke") == "smoke"  # an explicit non-default choice stays
    monkeypatch.setenv("LLFC_PROFILE", "cpu")
    assert colab.choose_profile("paper") == "cpu"  # the environment wins
