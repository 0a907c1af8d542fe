"""Site test: build a smoke book and check it in headless Chromium.

The book is built by :func:`bertscape.book.build_book` from a temporary source folder holding the
repository's ``_config.yml``, ``book/intro.md`` and ``book/references.bib`` plus a small
chapter-like notebook (parameters cell, a matplotlib figure, a plotly figure through
``plots.show_plotly``, an explorer).  Once the real chapters are listed in ``_toc.yml``, set
``USE_REPO_BOOK = True`` to build the repository's own book with the smoke profile instead.

Checks, on every page: it loads without SEVERE console messages (failed requests to remote hosts
are excluded: the test machines have no network and the only remote asset is MathJax, which the
reader's browser fetches from its CDN); every internal link points to an existing file; chapter
pages show their figures (``img`` with ``naturalWidth > 0``; plotly ``.main-svg`` with a non-zero
size); and a screenshot of the chapter page is not blank.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import textwrap
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

from bertscape.book import REPO_ROOT, build_book

pytestmark = pytest.mark.book

#: Build the repository's real book (smoke profile) instead of the demo chapter.
USE_REPO_BOOK = False
DEMO_DOC = "book/demo_chapter"


def _chromium() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    return browser, shutil.which("chromedriver")


def demo_notebook() -> dict:
    """A chapter-like notebook: parameters, a matplotlib figure, a plotly figure, an explorer."""
    import nbformat

    cells = [
        nbformat.v4.new_markdown_cell("# Demo chapter\n\nA stand-in for a real chapter: $f(\\alpha) = "
                                      "L(\\theta_0 + \\alpha\\,\\delta_1)$ {cite:p}`hao2019visualizing`."),
        nbformat.v4.new_code_cell('profile = "quick"\ntasks = None\nglue_dir = None\noverrides = {}',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            import numpy as np, pandas as pd, xarray as xr
            import matplotlib.pyplot as plt
            from bertscape import plots, widgets
            from bertscape.profiles import from_params
            P = from_params(profile, tasks, glue_dir, overrides)
            plots.use_style()
            print(P.name, P.tasks, widgets.static_mode())""")),
        nbformat.v4.new_markdown_cell("## Curves"),
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            a = np.linspace(-0.5, 1.5, P.curve_points)
            curves = {"pretrained": pd.DataFrame({"alpha": a, "train_loss": (a - 1) ** 2 + 0.1}),
                      "scratch": pd.DataFrame({"alpha": a, "train_loss": np.abs(np.sin(3 * a)) + (a - 1) ** 2})}
            fig = plots.curve_1d(curves, "train_loss", title="demo 1D curve")""")),
        nbformat.v4.new_markdown_cell("## Surfaces"),
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            al, be = P.grid_axes()
            A, B = np.meshgrid(al, be, indexing="ij")
            def surf(w):
                z = w * (A - 1) ** 2 + 2 * w * B ** 2
                return xr.Dataset({"train_loss": (("alpha", "beta"), z), "dev_error": (("alpha", "beta"), z / (1 + z))},
                                  coords={"alpha": al, "beta": be})
            S = {"pretrained": surf(0.5), "scratch": surf(3.0)}
            traj = {k: pd.DataFrame({"alpha": [0, 0.4, 0.8, 1.0], "beta": [0, 0.1, 0.05, 0]}) for k in S}
            fig = plots.contour_pair(S, "train_loss", trajectories=traj)""")),
        nbformat.v4.new_code_cell("plots.show_plotly(plots.surface3d_pair(S, 'train_loss', title='demo 3D'))"),
        nbformat.v4.new_code_cell(textwrap.dedent("""\
            ex = widgets.surface_explorer({("movies", k): v for k, v in S.items()})
            ex.show()""")),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def make_demo_source(root: Path) -> Path:
    """A book source folder: the repo's config, intro and bibliography plus the demo chapter."""
    import nbformat

    (root / "book").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "_config.yml", root / "_config.yml")
    for name in ("intro.md", "references.bib"):
        shutil.copy2(REPO_ROOT / "book" / name, root / "book" / name)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n- file: {DEMO_DOC}\n")
    nbformat.write(demo_notebook(), root / f"{DEMO_DOC}.ipynb")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("site")
    kw = {} if USE_REPO_BOOK else {"source_dir": make_demo_source(tmp / "src")}
    return build_book("smoke", tmp / "_build", **kw), kw


@pytest.fixture(scope="module")
def site(built: tuple[Path, dict]) -> Path:
    return built[0]


def test_unchanged_rebuild_skips_execution(built: tuple[Path, dict]) -> None:
    site, kw = built
    lines: list[str] = []
    again = build_book("smoke", site.parent, log=lines.append, **kw)
    assert again == site and (site / "index.html").is_file()
    executed = [ln for ln in lines if ": executing" in ln]
    assert not executed and any("up to date" in ln for ln in lines), lines


@pytest.fixture(scope="module")
def driver():
    browser, chromedriver = _chromium()
    if not browser or not chromedriver:
        pytest.skip("headless browser checks need chromium and chromedriver (make browser, or "
                    "apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--window-size=1280,1000",
                "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(chromedriver), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if not p.relative_to(site).parts[0].startswith("_"))


def _is_remote_fetch_failure(entry: dict) -> bool:
    """A failed request to a remote host (no network here); anything else counts as an error."""
    msg = entry.get("message", "")
    src = msg.split(" ", 1)[0]
    return urlparse(src).scheme in ("http", "https") and ("Failed to load resource" in msg or "net::ERR_" in msg)


def _load(driver, page: Path) -> list[dict]:
    driver.get_log("browser")  # drop messages of the previous page
    driver.get(page.as_uri())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (document.readyState === 'complete') setTimeout(done, 300);"
        "else window.addEventListener('load', () => setTimeout(done, 300));")
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _chapter_pages(site: Path) -> list[Path]:
    if USE_REPO_BOOK:
        return [p for p in _pages(site) if p.parent.name == "book" and p.stem[:2].isdigit()]
    return [site / f"{DEMO_DOC}.html"]


def test_pages_load_without_console_errors(site: Path, driver) -> None:
    pages = _pages(site)
    assert site / "index.html" in pages and len(pages) >= 2, pages
    problems = {}
    for page in pages:
        severe = [e["message"] for e in _load(driver, page) if not _is_remote_fetch_failure(e)]
        if severe:
            problems[str(page.relative_to(site))] = severe
    assert not problems, json.dumps(problems, indent=1)


def test_internal_links_resolve(site: Path, driver) -> None:
    broken = []
    for page in _pages(site):
        _load(driver, page)
        here = Path(unquote(urlparse(driver.current_url).path))  # index.html redirects to the root page
        hrefs = driver.execute_script(
            "return Array.from(document.querySelectorAll('a[href], link[href], script[src], img[src]'))"
            ".map(e => e.getAttribute('href') || e.getAttribute('src'));")
        for href in hrefs:
            parsed = urlparse(href)
            if parsed.scheme in ("http", "https", "mailto", "data", "javascript") or href.startswith("#"):
                continue
            path = unquote(urldefrag(parsed.path)[0])
            if not path:
                continue
            target = (here.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{here.relative_to(site)} -> {href}")
    assert not broken, "\n".join(broken)


def test_chapters_show_their_figures(site: Path, driver) -> None:
    for page in _chapter_pages(site):
        assert page.is_file(), page
        _load(driver, page)
        imgs = driver.execute_script(
            "return Array.from(document.querySelectorAll('article img, main img'))"
            ".map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
        figures = [i for i in imgs if not (i[0] or "").startswith("data:image/svg")]
        assert figures, f"{page.name}: no images"
        assert all(ok and w > 0 for _, ok, w in figures), f"{page.name}: unloaded images {figures}"
        # plotly: every plotly div rendered an SVG of non-zero size (plotly.js came from _static)
        plotly = driver.execute_script(
            "return Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => {"
            " const s = d.querySelector('.main-svg'); const r = s ? s.getBoundingClientRect() : null;"
            " return [d.id, !!d.querySelector('.plot-container'), r ? r.width : 0, r ? r.height : 0]; });")
        if not USE_REPO_BOOK:
            assert plotly, f"{page.name}: the demo's plotly figure is missing"
        for div_id, container, w, h in plotly:
            assert container and w > 100 and h > 100, f"{page.name}: plotly figure {div_id} not rendered ({w}x{h})"
        # no dead widgets: explorers show their default figure in the static site
        assert not driver.find_elements("css selector", ".jupyter-widgets, .widget-area, script[type*='widget']")


def test_screenshot_is_not_blank(site: Path, driver) -> None:
    from PIL import Image, ImageStat

    page = _chapter_pages(site)[0]
    _load(driver, page)
    driver.execute_script("const f = document.querySelector('.plotly-graph-div, article img');"
                          "if (f) f.scrollIntoView({block: 'center'});")
    img = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L")
    stat = ImageStat.Stat(img)
    non_white = sum(1 for px in img.getdata() if px < 235) / (img.width * img.height)
    assert stat.stddev[0] > 20, f"screenshot nearly uniform (stddev {stat.stddev[0]:.1f})"
    assert non_white > 0.05, f"screenshot nearly blank ({non_white:.1%} non-white pixels)"
