"""The Colab badge and install cell follow `_config.yml`; the profile choice on Colab and in tests."""

from __future__ import annotations

import json
import shutil
import sys
import types

import pytest
import torch

from llfc_utils import __version__
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
        assert f"git+{url}@{colab.release_tag()}" in install, "a tagged release, not a branch"
        assert '"google.colab" in sys.modules' in install
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
    assert f"git+https://github.com/someone/fork@v{__version__}" in text
    assert "llfc-book/llfc-book" not in text
    before = json.loads((colab.NOTEBOOKS / "01_lmc_basics.ipynb").read_text())["cells"]
    after = json.loads(text)["cells"]
    assert len(after) == len(before) and after[2:] == before[2:]  # nothing else touched


def test_a_malformed_address_is_a_clear_error(tmp_path) -> None:
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  url: git@github.com:someone/fork.git\n")
    with pytest.raises(ValueError, match="https://github.com/OWNER/NAME"):
        colab.badge_markdown("01_lmc_basics", config)


def _fake_colab(monkeypatch, gpu: bool) -> None:
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)


def test_the_users_profile_wins(monkeypatch, capsys) -> None:
    _fake_colab(monkeypatch, gpu=True)
    assert colab.choose_profile("cpu") == "cpu"  # set in the parameters cell or by papermill
    assert colab.choose_profile("paper") == "paper"
    monkeypatch.setenv("LLFC_PROFILE", "smoke")
    assert colab.choose_profile("cpu") == "cpu"  # the cell's value beats the environment's
    assert colab.choose_profile(None) == "smoke"  # the environment, when the cell says None
    assert "No profile chosen" not in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown profile 'tpu'"):
        colab.choose_profile("tpu")


@pytest.mark.parametrize(("gpu", "chosen"), [(True, "gpu"), (False, "cpu")])
def test_the_automatic_choice_says_what_it_chose_and_how_to_change_it(
    monkeypatch, capsys, gpu, chosen
) -> None:
    _fake_colab(monkeypatch, gpu)
    assert colab.choose_profile(None) == chosen
    out = capsys.readouterr().out
    assert f'runs profile "{chosen}"' in out
    line = out.strip().splitlines()[-1]  # pasted into the parameters cell, it chooses
    namespace: dict = {}
    exec(line.strip(), namespace)  # noqa: S102 - the printed line must be valid Python
    assert namespace["profile"] in colab.PROFILES and namespace["profile"] != chosen
    assert colab.choose_profile(namespace["profile"]) == namespace["profile"]


def test_a_chapter_prints_its_plan(monkeypatch, capsys) -> None:
    from llfc_utils.tools import run

    params = run.parameters("02_spawning")
    assert colab.choose_profile("smoke", "02_spawning", params) == "smoke"
    out = capsys.readouterr().out
    assert "Plan ('smoke' profile on cpu)" in out and "epochs to train" in out
    assert "mlp: mlp on fashion_mnist" in out
    # a plan that fails never stops the chapter
    colab.choose_profile("smoke", "02_spawning", {**params, "roles": ["no_such_role"]})
    assert "(no training plan: ValueError" in capsys.readouterr().out
    colab.choose_profile("paper", "00_training", run.parameters("00_training"))
    assert "hours to days" in capsys.readouterr().out
