"""A person's check of the rendered site in headless Chromium: `python -m llfc_utils.tools.sitecheck _build/html`.

Every chapter page (`book/NN_*.html`, from `_toc.yml` when it is found beside the build) and the
results page are served from 127.0.0.1 and opened in Debian's Chromium (packages `chromium` and
`chromium-driver`; `make browser` installs them). A page passes when every local image has loaded,
no cell shows an error, a progress bar or a Markdown table left as raw text, and, on a chapter page,
there is at least one figure and a Colab link, and the browser console shows no JavaScript error
(failed loads of external resources, such as the Colab badge image offline, are not counted).
Each `.llfc-slider` is moved to its min, middle and max: the frame must change. One full-page
screenshot per page, and one per slider position, go to `--shots`.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from llfc_utils import settings
from llfc_utils.tools.paths import CHAPTER_GLOB, is_chapter

WINDOW = (1280, 900)
CHROMIUM = str(settings.value("LLFC_CHROMIUM"))
CHROMEDRIVER = str(settings.value("LLFC_CHROMEDRIVER"))
# Without these Chromium hangs on this kind of offline machine (refused connections, first run).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    "--hide-scrollbars",
]
RESULTS_PAGE = "results"
MAX_SHOT_HEIGHT = 30000  # CSS pixels; a taller page is cut there
INSTALL_HINT = (
    "install Debian's Chromium and its driver (`make browser` does it as root: "
    "apt-get install chromium chromium-driver) and Selenium (`pip install selenium`), or point "
    "LLFC_CHROMIUM and LLFC_CHROMEDRIVER at a Chromium and a matching chromedriver"
)

# Runs in the page: images, figures, error and progress-bar cells, raw tables, Colab links, sliders.
PAGE_FACTS = r"""
const isLocal = (img) => {
  const src = img.getAttribute("src") || "";
  if (src.startsWith("data:")) return true;
  try { return new URL(src, location.href).origin === location.origin; } catch (e) { return true; }
};
const imgs = [...document.images];
const local = imgs.filter(isLocal);
const figures = [...document.querySelectorAll(".cell_output img, figure img, img.llfc-slider-frame")]
  .filter((img) => isLocal(img) && img.naturalWidth > 0);
const stderr = [...document.querySelectorAll("div.output.stderr")]
  .filter((d) => d.textContent.includes("Traceback (most recent call last)"));
return {
  pending: local.filter((img) => !img.complete).length,
  broken: local.filter((img) => img.complete && img.naturalWidth === 0)
               .map((img) => (img.getAttribute("src") || "(no src)").slice(0, 80)),
  figures: figures.length,
  errors: document.querySelectorAll("div.output.traceback, div.output.error").length + stderr.length,
  progress: [...document.querySelectorAll("div.output.stderr")]
    .filter((d) => /\d+%\|/.test(d.textContent)).length,
  rawTables: [...document.querySelectorAll(".cell_output p")]
    .filter((p) => /^\s*\|(\s*:?(-{3,}|—+|–+):?\s*\|)+\s*$/m.test(p.textContent)).length,
  colab: document.querySelectorAll('a[href*="colab.research.google.com"]').length,
  sliders: document.querySelectorAll(".llfc-slider").length,
};
"""
MOVE_SLIDER = """
const [input, value] = arguments;
input.value = String(value);
input.dispatchEvent(new Event("input", {bubbles: true}));
"""


class BrowserUnavailable(RuntimeError):
    """Chromium, its driver or Selenium is missing."""


# Console messages that are not the page's fault: an external resource that cannot load offline.
NETWORK_NOISE = re.compile(r"Failed to load resource|net::ERR_")


def js_errors(entries: list[dict]) -> list[str]:
    """The JavaScript errors among Chromium's console `entries` (level SEVERE, not network noise)."""
    return [
        e.get("message", "")
        for e in entries
        if e.get("level") == "SEVERE" and not NETWORK_NOISE.search(e.get("message", ""))
    ]


@dataclass
class PageResult:
    """What the check found on one page."""

    page: str
    problems: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    figures: int = 0
    sliders: int = 0

    @property
    def ok(self) -> bool:
        """True when the page has no problem."""
        return not self.problems

    def line(self) -> str:
        """One line for the terminal."""
        if not self.ok:
            return f"FAIL  {self.page}: " + "; ".join(self.problems)
        return f"OK    {self.page} ({self.figures} figure(s), {self.sliders} slider(s))"


def browser_problem() -> str | None:
    """Why the browser cannot be used here, or None when it can."""
    for path, what in ((CHROMIUM, "Chromium"), (CHROMEDRIVER, "chromedriver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{what} not found at {path}; {INSTALL_HINT}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"the Python package selenium is not installed; {INSTALL_HINT}"
    return None


def pages(build_dir: Path, toc: Path | None = None) -> list[str]:
    """The pages to check, relative to `build_dir`: the toc's chapters and results page, in order.

    Without a toc, every `book/NN_*.html` and `book/results.html` found in the build.
    """
    if toc is None:
        found = sorted(
            p.name for p in (build_dir / "book").glob(CHAPTER_GLOB.replace(".ipynb", ".html"))
        )
        if (build_dir / "book" / f"{RESULTS_PAGE}.html").exists():
            found.append(f"{RESULTS_PAGE}.html")
        return [f"book/{name}" for name in found]
    import yaml

    files: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(toc.read_text()))
    names = [f for f in files if is_chapter(f) or Path(f).name == RESULTS_PAGE]
    return [f"{Path(f).with_suffix('')}.html" for f in names]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 from a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium driven by Selenium, with a fresh empty profile."""
    problem = browser_problem()
    if problem:
        raise BrowserUnavailable(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="llfc-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for js_errors
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, timeout: float = 10.0) -> bool:
    """Poll `condition(driver)` until it is true or `timeout` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition(driver):
            return True
        time.sleep(0.1)
    return False


def _full_page_screenshot(driver, path: Path) -> None:
    """Save the whole page (not only the window) as a PNG: grow the window to the page, shoot, restore."""
    width, height = driver.get_window_size()["width"], driver.get_window_size()["height"]
    page, inner = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.innerHeight];"
    )
    driver.set_window_size(width, min(page, MAX_SHOT_HEIGHT) + height - inner)
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(width, height)


def _check_sliders(driver, stem: str, shots: Path, result: PageResult) -> None:
    """Move every slider to min, middle and max; its frame (and label) must change."""
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.common.by import By

    for k, slider in enumerate(driver.find_elements(By.CSS_SELECTOR, ".llfc-slider"), 1):
        name = f"slider {k}"
        try:
            rng = slider.find_element(By.CSS_SELECTOR, "input.llfc-slider-input")
            frame = slider.find_element(By.CSS_SELECTOR, "img.llfc-slider-frame")
            label = slider.find_element(By.CSS_SELECTOR, ".llfc-slider-label")
        except NoSuchElementException:
            result.problems.append(
                f"{name}: missing input.llfc-slider-input, img.llfc-slider-frame or .llfc-slider-label"
            )
            continue
        lo, hi = int(rng.get_attribute("min") or 0), int(rng.get_attribute("max") or 0)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", slider)
        seen = []
        suffix = "" if k == 1 else f"_slider{k}"
        for tag, value in (("0", lo), ("0.5", (lo + hi) // 2), ("1", hi)):
            driver.execute_script(MOVE_SLIDER, rng, value)
            _wait(driver, lambda d, f=frame: d.execute_script("return arguments[0].complete;", f))
            seen.append((frame.get_attribute("src"), label.text))
            if not driver.execute_script("return arguments[0].naturalWidth;", frame):
                result.problems.append(f"{name}: the frame at value {value} did not load")
            path = shots / f"{stem}{suffix}_alpha{tag}.png"
            slider.screenshot(str(path))
            result.screenshots.append(path)
        srcs = [s for s, _ in seen]
        distinct = len(set(srcs)) == 3 if hi - lo >= 2 else srcs[0] != srcs[2]
        if hi <= lo or not distinct:
            result.problems.append(
                f"{name}: the frame does not change when the range input moves (min {lo}, max {hi})"
            )
        elif seen[0][1] == seen[2][1]:
            result.problems.append(f"{name}: the label does not change when the range input moves")


def check_page(driver, url: str, page: str, shots: Path) -> PageResult:
    """Open one page and check it; save its screenshots into `shots`."""
    result = PageResult(page)
    stem = Path(page).stem
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    driver.execute_script("document.querySelectorAll('img').forEach((i) => (i.loading = 'eager'));")
    _wait(driver, lambda d: d.execute_script(PAGE_FACTS)["pending"] == 0, timeout=20)
    driver.execute_async_script(  # let MathJax typeset before the screenshot (if the page has it)
        "const done = arguments[arguments.length - 1];"
        "const p = window.MathJax && MathJax.startup && MathJax.startup.promise;"
        "p ? p.then(() => done(), () => done()) : done();"
    )
    facts = driver.execute_script(PAGE_FACTS)
    result.figures, result.sliders = facts["figures"], facts["sliders"]
    chapter = is_chapter(stem)
    if facts["broken"]:
        result.problems.append(
            f"{len(facts['broken'])} image(s) did not load: {facts['broken'][:3]}"
        )
    if facts["pending"]:
        result.problems.append(f"{facts['pending']} image(s) still loading after 20 s")
    if chapter and not facts["figures"]:
        result.problems.append("no figure image")
    if facts["errors"]:
        result.problems.append(f"{facts['errors']} error output cell(s)")
    if facts["progress"]:
        result.problems.append(
            f"{facts['progress']} progress-bar output(s) (turn progress bars off when "
            "executing the chapters for the book)"
        )
    if facts["rawTables"]:
        result.problems.append(
            f"{facts['rawTables']} Markdown table(s) shown as raw text "
            "(set nb_render_markdown_format: myst in _config.yml)"
        )
    if chapter and not facts["colab"]:
        result.problems.append("no Colab link (an href with colab.research.google.com)")
    errors = js_errors(driver.get_log("browser"))
    if errors:
        result.problems.append(
            f"{len(errors)} JavaScript error(s) in the console: {errors[0][:300]}"
        )
    shot = shots / f"{stem}.png"
    _full_page_screenshot(driver, shot)
    result.screenshots.append(shot)
    if facts["sliders"]:
        _check_sliders(driver, stem, shots, result)
    return result


def check_site(
    build_dir: Path, shots: Path | None = None, toc: Path | None = None
) -> list[PageResult]:
    """Check every chapter page and the results page of the built site `build_dir`."""
    build_dir = Path(build_dir).resolve()
    if not (build_dir / "index.html").exists() and not (build_dir / "book").is_dir():
        raise FileNotFoundError(f"{build_dir} is not a built site; run `make book` first")
    if toc is None and (build_dir.parent.parent / "_toc.yml").exists():
        toc = build_dir.parent.parent / "_toc.yml"  # jupyter-book builds into <book>/_build/html
    todo = pages(build_dir, toc)
    if not todo:
        raise FileNotFoundError(f"no chapter pages (book/NN_*.html) in {build_dir}")
    shots = Path(shots) if shots else build_dir.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    results = []
    with serve(build_dir) as base, browser() as driver:
        for page in todo:
            if not (build_dir / page).exists():
                results.append(PageResult(page, [f"missing: {toc or 'the build'} lists it"]))
                continue
            results.append(check_page(driver, f"{base}/{page}", page, shots))
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: one line per page; exit 1 if a page fails."""
    parser = argparse.ArgumentParser(
        prog="python -m llfc_utils.tools.sitecheck", description=__doc__
    )
    parser.add_argument("build_dir", type=Path, help="the built site, e.g. _build/html")
    parser.add_argument(
        "--shots", type=Path, help="screenshots (default: BUILD_DIR/../screenshots)"
    )
    parser.add_argument("--toc", type=Path, help="default: BUILD_DIR/../../_toc.yml if it exists")
    parser.add_argument(
        "--allow-missing-browser",
        action="store_true",
        help="skip the check (exit 0) when Chromium is not installed",
    )
    args = parser.parse_args(argv)
    problem = browser_problem()
    if problem:
        print(f"site check {'skipped' if args.allow_missing_browser else 'failed'}: {problem}")
        return 0 if args.allow_missing_browser else 2
    try:
        results = check_site(args.build_dir, args.shots, args.toc)
    except FileNotFoundError as e:
        print(f"site check failed: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(r.line())
    failed = sum(not r.ok for r in results)
    shots = results[0].screenshots[0].parent if results[0].screenshots else args.shots
    print(f"{len(results) - failed} of {len(results)} pages OK; screenshots in {shots}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
