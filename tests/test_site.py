"""The rendered site as a person sees it, in headless Chromium (`llfc_utils.tools.sitecheck`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from llfc_utils.tools import run, sitecheck, slider

COLAB = (
    '<a href="https://colab.research.google.com/github/o/n/blob/main/notebooks/x.ipynb">'
    '<img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"></a>'
)
FIGURE = '<div class="cell_output docutils container"><img src="../_images/fig.png"></div>'
TRACEBACK = (
    '<div class="cell_output docutils container"><div class="output traceback '
    'highlight-ipythontb notranslate"><pre>ValueError: boom</pre></div></div>'
)
NOISE = (
    '<div class="cell_output docutils container"><div class="output stderr highlight-myst-ansi '
    'notranslate"><pre>alpha:  50%|█████     | 5/10 [00:01&lt;00:01,  4.1it/s]</pre></div></div>'
    '<div class="cell_output docutils container"><p>| claim | ours |\n| — | — |\n| a | 1 |</p></div>'
)


def _need_browser() -> None:
    """Skip when Chromium is missing, but fail on CI, where the check must run."""
    problem = sitecheck.browser_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser check: {problem}")
    if problem:
        pytest.skip(problem)


def _page(*body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head><body><h1>Chapter</h1>{''.join(body)}</body></html>"


def _slider(n: int = 3) -> str:
    figs = []
    for i in range(n):
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [0, i])
        figs.append(fig)
    return slider.alpha_slider(figs, [i / (n - 1) for i in range(n)], title="walk").data


@pytest.fixture(scope="module")
def hand_site(tmp_path_factory) -> tuple[dict, Path]:
    """A tiny hand-written site (one page per case), checked once; (results by page, shots dir)."""
    _need_browser()
    html = tmp_path_factory.mktemp("site") / "_build" / "html"
    (html / "book").mkdir(parents=True)
    (html / "_images").mkdir()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(html / "_images" / "fig.png")
    plt.close(fig)
    (html / "index.html").write_text(_page("index"))
    broken_slider = _slider().replace("frame.src = data.frames[i];", "")
    pages = {
        "01_good": _page(COLAB, FIGURE),
        "02_broken_image": _page(COLAB, FIGURE, '<img src="../_images/missing.png">'),
        "03_error_cell": _page(COLAB, FIGURE, TRACEBACK),
        "04_slider": _page(COLAB, FIGURE, _slider()),
        "05_broken_slider": _page(COLAB, FIGURE, broken_slider),
        "06_no_colab_no_figure": _page("<p>text only</p>"),
        "07_progress_bar_and_raw_table": _page(COLAB, FIGURE, NOISE),
        "08_script_error": _page(
            COLAB, FIGURE, "<script>const a = 1;</script><script>const a = 2;</script>"
        ),
        "results": _page("<p>a table, no figure, no badge</p>"),
    }
    for name, text in pages.items():
        (html / "book" / f"{name}.html").write_text(text)
    shots = html.parent / "shots"
    results = sitecheck.check_site(html, shots)
    return {Path(r.page).stem: r for r in results}, shots


def test_good_page_passes_and_is_photographed(hand_site) -> None:
    results, shots = hand_site
    assert results["01_good"].ok, results["01_good"].problems
    assert results["01_good"].figures == 1, "the external Colab badge is no figure and is ignored"
    assert (shots / "01_good.png").stat().st_size > 1000
    assert results["results"].ok, "the results page needs no figure and no Colab link"
    assert list(results) == [*sorted(set(results) - {"results"}), "results"]


def test_broken_local_image_fails(hand_site) -> None:
    problems = hand_site[0]["02_broken_image"].problems
    assert len(problems) == 1 and "1 image(s) did not load" in problems[0]
    assert "missing.png" in problems[0]


def test_error_output_cell_fails(hand_site) -> None:
    assert hand_site[0]["03_error_cell"].problems == ["1 error output cell(s)"]


def test_page_without_figure_or_colab_link_fails(hand_site) -> None:
    problems = hand_site[0]["06_no_colab_no_figure"].problems
    assert "no figure image" in problems and any("no Colab link" in p for p in problems)


def test_progress_bars_and_raw_markdown_tables_fail(hand_site) -> None:
    problems = hand_site[0]["07_progress_bar_and_raw_table"].problems
    assert len(problems) == 2
    assert problems[0].startswith("1 progress-bar output(s)")
    assert problems[1].startswith("1 Markdown table(s) shown as raw text")


def test_javascript_error_in_the_console_fails(hand_site) -> None:
    problems = hand_site[0]["08_script_error"].problems
    assert len(problems) == 1 and problems[0].startswith("1 JavaScript error(s) in the console")
    assert "already been declared" in problems[0]


def test_only_javascript_errors_count_not_offline_resources() -> None:
    entries = [
        {
            "level": "SEVERE",
            "message": "https://x/badge.svg - Failed to load resource: net::ERR_NAME",
        },
        {"level": "WARNING", "message": "something deprecated"},
        {"level": "SEVERE", "message": "page.html 3:7 Uncaught TypeError: x is undefined"},
    ]
    assert sitecheck.js_errors(entries) == ["page.html 3:7 Uncaught TypeError: x is undefined"]


def test_working_slider_passes_with_three_screenshots(hand_site) -> None:
    results, shots = hand_site
    r = results["04_slider"]
    assert r.ok and r.sliders == 1, r.problems
    for tag in ("0", "0.5", "1"):
        assert (shots / f"04_slider_alpha{tag}.png").stat().st_size > 1000


def test_slider_whose_frame_never_changes_fails(hand_site) -> None:
    problems = hand_site[0]["05_broken_slider"].problems
    assert problems == [
        "slider 1: the frame does not change when the range input moves (min 0, max 2)"
    ]


def test_command_line_exit_codes(hand_site, tmp_path, capsys) -> None:
    results, shots = hand_site
    build = shots.parent / "html"
    assert sitecheck.main([str(build), "--shots", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "OK    book/01_good.html" in out and "FAIL  book/02_broken_image.html" in out
    assert "3 of 9 pages OK" in out


def test_toc_lists_the_pages_to_check(tmp_path) -> None:
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - chapters:\n"
        "      - file: book/how_to_run\n      - file: book/01_a\n      - file: book/02_b.ipynb\n"
        "      - file: book/results\n"
    )
    assert sitecheck.pages(tmp_path, toc) == [
        "book/01_a.html",
        "book/02_b.html",
        "book/results.html",
    ]


def test_missing_browser_is_a_clear_error_or_a_skip(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sitecheck, "CHROMIUM", str(tmp_path / "no-chromium"))
    assert "Chromium not found" in sitecheck.browser_problem()
    assert sitecheck.main([str(tmp_path)]) == 2
    assert sitecheck.main([str(tmp_path), "--allow-missing-browser"]) == 0
    assert "site check skipped: Chromium not found" in capsys.readouterr().out


@pytest.mark.slow
def test_real_site_passes_the_browser_check(smoke_book, tmp_path) -> None:
    """Build the book from the smoke chapters (the `smoke_book` fixture) and check it in Chromium."""
    _need_browser()
    site = smoke_book
    env = {**os.environ, "LLFC_RESULTS": str(site / "book" / "results")}
    t1 = time.perf_counter()
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb), "build", str(site), "-W", "-n", "--keep-going"]
    done = subprocess.run(cmd, cwd=site, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    t2 = time.perf_counter()
    shots = tmp_path / "shots"
    results = sitecheck.check_site(site / "_build" / "html", shots)  # the toc is found beside it
    print(f"build {t2 - t1:.0f} s, check {time.perf_counter() - t2:.0f} s")
    checked = [Path(r.page).stem for r in results]
    assert checked == [*run.chapters(), run.RESULTS_PAGE], "_toc.yml lists every chapter"
    failed = [r.line() for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    for name in checked:
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
