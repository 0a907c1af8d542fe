"""Book and site tests: every chapter executed by papermill with the ``smoke`` profile, the book
built with Jupyter Book (warnings as errors), then checked in headless Chromium.

Checks, on every page: it loads without SEVERE console messages or failed requests (no exception:
the site must work offline, MathJax and plotly.js included) and asks for nothing outside the site;
every internal link points to an existing file; no element is wider than the content column; no code
cell is open except the parameters cell (papermill's injected cell is not shown); every figure (image
or plotly) has a caption. Chapter pages show their figures (``img`` with ``naturalWidth > 0``; plotly
``.main-svg`` with a non-zero size), equations are typeset by MathJax, the introduction opens with the
verdict matrix and the summary figure, and a screenshot of a chapter page is not blank.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlparse

import pytest

from bertscape.book.build import REPO_ROOT, build_book

pytestmark = pytest.mark.book

CHAPTERS = ("01_pretraining_init", "02_flat_optima", "03_overfitting", "04_layers", "05_connectivity", "06_scorecard")


def _chromium() -> tuple[str | None, str | None]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    return browser, shutil.which("chromedriver")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_bert: str) -> tuple[Path, dict]:
    # The smoke profile on the tests' tiny BERT (2 layers, hidden 32, the embedded tokenizer): these tests
    # check the book's machinery and pages, whose numbers are meaningless at smoke size anyway, and the
    # tiny network keeps the build to a minute or two on a CPU without native bf16.
    # BERTSCAPE_TEST_BOOK=DIR checks a book already built in DIR with the same parameters: the driver
    # re-executes only what is out of date, so the page checks can be re-run in seconds while working on
    # the site. Unset (the default), the book is built afresh.
    reuse = os.environ.get("BERTSCAPE_TEST_BOOK")
    out = Path(reuse) if reuse else tmp_path_factory.mktemp("site") / "_build"
    kw = {"parameters": {"model": tiny_bert}}
    return build_book("smoke", out, **kw), kw


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


def _load(driver, page: Path) -> list[dict]:
    driver.get_log("browser")  # drop messages of the previous page
    driver.get(page.as_uri())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (document.readyState === 'complete') setTimeout(done, 300);"
        "else window.addEventListener('load', () => setTimeout(done, 300));")
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _chapter_pages(site: Path) -> list[Path]:
    return [site / "book" / f"{c}.html" for c in CHAPTERS]


def _page_problems(site: Path, driver, script: str) -> dict[str, list]:
    """Per page of the site (by its path in the site), what ``script`` returns once the page has
    loaded, for the pages where that is not empty."""
    problems = {}
    for page in _pages(site):
        _load(driver, page)
        found = driver.execute_script(script)
        if found:
            problems[str(page.relative_to(site))] = found
    return problems


def test_every_chapter_was_executed_without_errors(built: tuple[Path, dict]) -> None:
    import nbformat

    site = built[0]
    # the executed notebooks are staged in a "src" folder beside the rendered site's build folder
    stages = [p / "src" for p in site.parents if (p / "src" / "book").is_dir()]
    assert stages, f"no staged sources above {site}"
    stage = stages[0]
    for chapter in CHAPTERS:
        nb = nbformat.read(stage / "book" / f"{chapter}.ipynb", as_version=4)
        assert nb.cells[1].metadata.get("tags") == ["parameters"], chapter
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], chapter
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert images, f"{chapter}: no figure"


def test_smoke_scorecard_has_every_claim(built: tuple[Path, dict]) -> None:
    from bertscape.book import claims, study
    from bertscape.book.profiles import from_params
    from bertscape.evidence import scorecard

    P = from_params("smoke", model=built[1]["parameters"]["model"])
    card = claims.full_scorecard(P)  # read back from the build's cache
    assert set(card["claim"]) == set(claims.CLAIMS)
    assert set(card["verdict"]) <= set(scorecard.VERDICTS)
    # a number for every row, except the landscape measures skipped under a pairing with a run that did not
    # train and the reported rows that are tests, not margins
    skipped = card["reason"].str.endswith("not computed")
    assert card.loc[~skipped & card["scored"], "pretrained"].notna().all()
    assert (card.loc[skipped, "verdict"] == "inconclusive").all() and set(card.loc[skipped, "claim"]) <= {3, "H"}
    assert card["reason"].str.len().gt(0).all()  # every verdict says why
    for chapter, ids in claims.CLAIMS.chapters().items():
        assert set(card[card["chapter"] == chapter]["claim"]) == set(ids)
    # every controlled claim is decided under every pairing, for every seed (the claim across seeds once)
    assert set(card["pairing"]) == set(study.pairings(P)) and len(study.pairings(P)) == 2
    controlled = {c for c, cl in claims.CLAIMS.items() if cl.controlled}
    for pairing, g in card.groupby("pairing"):
        assert set(g["claim"]) == (set(claims.CLAIMS) if pairing == "profile" else controlled)
    assert set(card.loc[card["claim"] != "L", "seed"]) == set(P.seeds)
    summary = scorecard.summarise(card)
    # every quantity is decided over every seed, but claim 5's comparison with RI: RI's long run is trained
    # for the figure seed alone (it only shows that RI overfits), and the row says it rests on one seed
    one = (summary["claim"] == 5) & (summary["qid"] == "drop_vs_ri")
    assert (summary.loc[(summary["claim"] != "L") & ~one, "seeds"] == len(P.seeds)).all()
    assert (summary.loc[one, "seeds"] == 1).all() and summary.loc[one, "one_seed"].all()


def test_each_chapter_did_the_work_the_plan_counts(built: tuple[Path, dict]) -> None:
    """The time estimate counts each chapter's work from the profile; the chapters' kernels counted
    what they did. Training steps, their tokens, resume states and Hessian-vector products match exactly
    (told which matched pairings trained, as the chapters are); evaluations lie between the plan's least
    and most (line searches and the basin grid's growth adapt to the run)."""
    from bertscape.book import claims, workplan
    from bertscape.book.build import chapter_work
    from bertscape.book.profiles import from_params

    site = built[0]
    out = next(p for p in site.parents if (p / "stamps").is_dir())
    P = from_params("smoke", model=built[1]["parameters"]["model"])

    def pair_trained(task: str, seed: int, pairing: str) -> bool:  # read back from the build's cache
        return claims.not_trained(P, task, seed, pairing) is None

    expected, least, most = (workplan.plan(P, assume=a, pair_trained=pair_trained)
                             for a in (workplan.EXPECTED, workplan.LEAST, workplan.MOST))
    for chapter in CHAPTERS:
        ch = chapter[:2]
        did = chapter_work(out, f"book/{chapter}")
        assert did is not None, f"{chapter}: its kernel wrote no work log"
        want = expected[ch].counts()
        for kind in ("train_steps", "train_tokens", "resume_saves", "hvp_batches", "hvp_sentences",
                     "layer_hvp_sentences"):
            assert did[kind] == want[kind], (chapter, kind, did, want)
        assert least[ch].eval_sentences <= did["eval_sentences"] <= most[ch].eval_sentences, (chapter, did, want)


def test_pages_load_without_console_errors(site: Path, driver) -> None:
    pages = _pages(site)
    assert site / "index.html" in pages and len(pages) >= 2, pages
    problems = {}
    for page in pages:
        severe = [e["message"] for e in _load(driver, page)]
        # the browser's own record of every resource the page asked for: all from the site itself
        remote = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(u => !u.startsWith('file:') && !u.startsWith('data:'));")
        if severe or remote:
            problems[str(page.relative_to(site))] = severe + [f"remote resource: {u}" for u in remote]
    assert not problems, json.dumps(problems, indent=1)


def test_equations_render_offline(site: Path, driver) -> None:
    page = site / "book" / "intro.html"
    _load(driver, page)
    # MathJax (served from _static/mathjax) typesets asynchronously: wait for it
    state = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const t0 = Date.now();"
        "(function poll() {"
        "  const mj = window.MathJax;"
        "  if (mj && mj.startup && mj.startup.promise) {"
        "    mj.startup.promise.then(() => done({"
        "      src: Array.from(document.scripts).map(s => s.src).filter(s => s.includes('mathjax')),"
        "      typeset: document.querySelectorAll('mjx-container').length,"
        "      errors: document.querySelectorAll('mjx-merror').length,"
        "      raw: document.querySelectorAll('div.math').length}));"
        "  } else if (Date.now() - t0 > 20000) { done(null); } else { setTimeout(poll, 100); }"
        "})();")
    assert state is not None, "MathJax did not load on the introduction"
    assert state["src"] and all(s.startswith("file:") for s in state["src"]), state["src"]
    assert state["raw"] >= 2 and state["typeset"] >= state["raw"], state
    assert state["errors"] == 0, state


def test_code_is_folded_except_parameters(site: Path, driver) -> None:
    for page in _chapter_pages(site):
        _load(driver, page)
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('article div.cell')).map(c => {"
            " const i = c.querySelector('div.cell_input');"
            " const d = i ? i.closest('details') : null;"  # folded: inside a closed <details>
            " return [c.className, !!i, !!(i && !(d && !d.open) && i.getClientRects().length > 0)]; });")
        code = [c for c in cells if c[1]]
        assert code, f"{page.name}: no code cells"
        open_ = [cls for cls, _, visible in code if visible]
        params = [cls for cls in open_ if "tag_parameters" in cls.split()]
        assert len(params) == 1, f"{page.name}: the parameters cell is not shown ({open_})"
        assert open_ == params, f"{page.name}: code shown by default: {open_}"
        assert not [c for c in cells if "tag_injected-parameters" in c[0].split()], page.name
        # each folded cell has its toggle
        toggles = driver.find_elements("css selector", "article div.cell details summary")
        assert len(toggles) >= len(code) - 1, f"{page.name}: {len(toggles)} toggles for {len(code)} code cells"


def test_nothing_wider_than_the_column(site: Path, driver) -> None:
    problems = _page_problems(
        site, driver,
        "const art = document.querySelector('article.bd-article') || document.querySelector('main');"
        "const R = art.getBoundingClientRect(); const out = [];"
        "for (const el of art.querySelectorAll('*')) {"
        "  if (el.closest('mjx-assistive-mml')) continue;"  # MathJax's hidden copy for screen readers
        "  const r = el.getBoundingClientRect(); if (!r.width || !r.height) continue;"
        "  const st = getComputedStyle(el);"
        "  const name = el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined ?"
        "    '.' + el.className.split(' ').join('.') : '');"
        "  if (r.right > R.right + 2 || r.left < R.left - 2) out.push(name + ` spans ${r.left}-${r.right}"
        "    beyond ${R.left}-${R.right}`);"
        "  else if (['auto', 'scroll'].includes(st.overflowX) && el.scrollWidth > el.clientWidth + 1)"
        "    out.push(name + ` scrolls sideways (${el.scrollWidth} > ${el.clientWidth})`);"
        "}"
        "return out.slice(0, 10);")
    assert not problems, json.dumps(problems, indent=1)


def test_every_figure_has_a_caption(site: Path, driver) -> None:
    problems = _page_problems(
        site, driver,
        "return Array.from(document.querySelectorAll('article img, article .plotly-graph-div'))"
        ".filter(e => !(e.tagName === 'IMG' && (e.getAttribute('src') || '').startsWith('data:image/svg')))"
        ".filter(e => { const f = e.closest('figure');"
        "  const c = f ? f.querySelector('figcaption') : null;"
        "  return !(c && c.textContent.trim().length > 20); })"
        ".map(e => e.tagName + ' ' + (e.id || (e.getAttribute('src') || '').slice(0, 40)));")
    assert not problems, json.dumps(problems, indent=1)
    # chapter figures are numbered (smoke runs one task: every captioned figure keeps its label)
    for page in _chapter_pages(site):
        _load(driver, page)
        numbers = driver.execute_script(
            "return Array.from(document.querySelectorAll('article figure figcaption'))"
            ".map(c => (c.querySelector('.caption-number') || {textContent: ''}).textContent.trim());")
        # chapter-prefixed: "Figure 3.2" is chapter 3's second figure (the study's chapters are numbered)
        assert numbers and all(re.match(r"Figure \d+\.\d+", n) for n in numbers), f"{page.name}: {numbers}"
        chapters = {re.match(r"Figure (\d+)\.", n).group(1) for n in numbers}
        assert chapters == {str(int(page.name[:2]))}, f"{page.name}: {numbers}"


def test_the_answer_comes_first(site: Path, driver) -> None:
    from bertscape.book import claims
    from bertscape.evidence import scorecard

    for page in (site / "index.html", site / "book" / "06_scorecard.html"):
        _load(driver, page)
        found = driver.execute_script(
            "const m = document.querySelector('article table.verdict-matrix');"
            "if (!m) return null;"
            "const first = Array.from(document.querySelectorAll('article figure, article table'))[0];"
            "const fig = Array.from(document.querySelectorAll('article figure img'))"
            "  .filter(i => i.complete && i.naturalWidth > 0).length;"
            "return {rows: m.querySelectorAll('tbody tr').length,"
            "        badges: Array.from(m.querySelectorAll('tbody .verdict:not(.verdict-small)')).map(b => b.textContent),"
            "        first: first === m, figures: fig};")
        assert found, f"{page.name}: no verdict matrix"
        assert found["rows"] == sum(max(1, len(c.units)) for c in claims.CLAIMS.values()), found  # a row per unit
        assert len(found["badges"]) == found["rows"] and set(found["badges"]) <= set(scorecard.VERDICTS), found
        assert found["first"], f"{page.name}: the verdict matrix is not the first table or figure"
        assert found["figures"] >= 1, f"{page.name}: the summary figure is missing"


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
        if page.stem == "02_flat_optima":
            assert plotly, f"{page.name}: the interactive surface is missing"
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


def test_papermill_chapter_on_a_glue_task_with_two_seeds(tmp_path: Path, glue_dir: Path, tiny_bert: str) -> None:
    """The README's re-run recipe: the papermill CLI, a GLUE task from a local folder, several seeds,
    a model from a local folder (a tiny BERT: the recipe, not the model, is under test; with the
    embedded MiniLM this test alone took 223 s)."""
    import subprocess
    import sys

    import nbformat

    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(REPO_ROOT / "book" / "01_pretraining_init.ipynb"), str(out),
           "-p", "profile", "smoke", "-p", "tasks", '["rte"]', "-p", "glue_dir", str(glue_dir),
           "-p", "seeds", "[0, 1]", "-p", "model", tiny_bert, "--cwd", str(REPO_ROOT / "book"), "--no-progress-bar"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BERTSCAPE_PROGRESS": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    # the verdict (last cell): glued for the chapter's opening line, naming the GLUE task, and a table
    # of claim rows whose "seeds" column says both seeds went into every row
    outputs = nb.cells[-1].outputs
    glued = [v for o in outputs for k, v in o.get("data", {}).items() if k.endswith("text/markdown")]  # glue's mime
    assert glued and "`rte`" in glued[0], glued
    table = outputs[-1]["data"]["text/html"]
    heads = re.findall(r"<th [^>]*col_heading[^>]*>([^<]*)</th>", table)
    col = heads.index("seeds")
    seeds = re.findall(rf'<td [^>]*class="data row\d+ col{col}\b[^"]*"[^>]*>([^<]*)</td>', table)
    assert seeds and set(seeds) == {"2 seeds"}, seeds


def test_a_bundle_renders_the_same_numbers_with_no_work(built: tuple[Path, dict], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The smoke build's results exported as a bundle, imported into an empty cache and rendered: every
    chapter's kernel counts zero training steps, evaluations and Hessian products, the tables show the
    same numbers, and each page names the bundle as its source."""
    import nbformat

    from bertscape.base import workcount
    from bertscape.book import bundle
    from bertscape.book.build import chapter_work
    from bertscape.book.profiles import from_params

    site, kw = built
    model = kw["parameters"]["model"]
    path = tmp_path / "smoke.tar.gz"
    manifest = bundle.export_bundle(from_params("smoke", model=model), path, log=lambda *_: None)
    assert manifest["members"] and not any(n.endswith(".safetensors") for n in manifest["members"])
    monkeypatch.setenv("BERTSCAPE_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "from-bundle" / "_build"
    build_book("smoke", out, parameters={"model": model}, bundle=path, log=lambda *_: None)
    for chapter in CHAPTERS:
        did = chapter_work(out, f"book/{chapter}")
        assert did == dict.fromkeys(workcount.KINDS, 0), (chapter, did)
    first = next(p for p in site.parents if (p / "src" / "book").is_dir()) / "src" / "book"

    def tables(folder: Path, chapter: str) -> list[str]:
        nb = nbformat.read(folder / f"{chapter}.ipynb", as_version=4)
        html = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if "text/html" in o.get("data", {})]
        return [h for h in html if "plotly" not in h.lower()]

    for chapter in CHAPTERS:
        assert tables(first, chapter) == tables(out / "src" / "book", chapter), chapter
    page = (out / "html" / "book" / "02_flat_optima.html").read_text()
    assert "imported from the results bundle" in page and "smoke.tar.gz" in page
