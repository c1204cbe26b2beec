"""The alpha slider: one self-contained HTML block, N inlined frames, the DOM contract the site check uses."""

from __future__ import annotations

import base64
import json
import re

import matplotlib.pyplot as plt
import pytest

from llfc_utils.tools import slider


def _figures(n: int) -> list:
    figs = []
    for i in range(n):
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, i])  # a different picture per alpha
        figs.append(fig)
    return figs


def _data(page: str) -> dict:
    m = re.search(r'<script type="application/json" class="llfc-slider-data">(.*?)</script>', page)
    assert m, "the frames are inlined as JSON"
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_slider_inlines_one_png_per_alpha_and_closes_the_figures() -> None:
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    figs = _figures(len(alphas))
    page = slider.alpha_slider(figs, alphas, title="loss <landscape>").data
    data = _data(page)
    assert len(data["frames"]) == 5 and len(set(data["frames"])) == 5
    for src in data["frames"]:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["labels"] == [f"alpha = {a:.2f}" for a in alphas]
    assert not any(plt.fignum_exists(f.number) for f in figs), "figures are closed"
    assert "http://" not in page and "https://" not in page, "no network at view time"
    assert "loss &lt;landscape&gt;" in page, "the title is escaped"


def test_slider_dom_contract() -> None:
    page = slider.alpha_slider(_figures(5), [0, 0.25, 0.5, 0.75, 1]).data
    uid = re.search(r'<div class="llfc-slider" id="(llfc-slider-[0-9a-f]{32})">', page).group(1)
    rng = re.search(r'<input type="range" class="llfc-slider-input"([^>]*)>', page).group(1)
    assert 'min="0"' in rng and 'max="4"' in rng and 'step="1"' in rng and 'value="2"' in rng
    assert '<span class="llfc-slider-label">alpha = 0.50</span>' in page
    frame = re.search(r'<img class="llfc-slider-frame" src="([^"]+)"', page).group(1)
    assert frame == _data(page)["frames"][2], "the page opens on the middle frame"
    script = page.split("<script>", 1)[1]
    assert f'document.getElementById("{uid}")' in script, "the script is scoped to its slider"
    assert 'addEventListener("input"' in script and "frame.src = data.frames[i]" in script


def test_two_sliders_have_different_ids() -> None:
    ids = [
        re.search(r'id="(llfc-slider-[0-9a-f]+)"', slider.alpha_slider(_figures(2), [0, 1]).data)[1]
        for _ in range(2)
    ]
    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    ("n_figs", "alphas", "message"),
    [
        (3, [0.0, 1.0], "3 figures and 2 alphas"),
        (1, [0.5], "at least 2"),
        (2, [0.0, float("nan")], "finite"),
        (2, [0.0, float("inf")], "finite"),
    ],
)
def test_slider_rejects_bad_input(n_figs: int, alphas: list, message: str) -> None:
    figs = _figures(n_figs)
    with pytest.raises(ValueError, match=message):
        slider.alpha_slider(figs, alphas)
    plt.close("all")


def test_slider_rejects_non_figures() -> None:
    with pytest.raises(TypeError, match="matplotlib Figure"):
        slider.alpha_slider(["a.png", "b.png"], [0, 1])


def test_slider_warns_when_the_page_gets_heavy(monkeypatch) -> None:
    monkeypatch.setattr(slider, "SLIDER_WARN_BYTES", 1000)
    with pytest.warns(UserWarning, match="MB; use fewer alphas"):
        slider.alpha_slider(_figures(2), [0, 1])
