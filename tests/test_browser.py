"""What a shopper sees, in a real browser: Debian's headless Chromium driven by Playwright.

The demo ledger (api/demo.py) is served by uvicorn on a free port. A shopper scans two
loaves from the same bakery: one made from a flour lot that was later recalled, one
clean. Each page is opened on a desktop screen, on a phone (390×844, touch), and on a
phone with JavaScript off; screenshots go to $QLEDGER_SCREENSHOTS (default
tests/artifacts/, not committed).

Needs the `playwright` package and a Chromium at $QLEDGER_CHROMIUM (default
/usr/bin/chromium, which .ci/run installs); Playwright's own browser download is never
used. Without them the tests are skipped with the reason, except under CI=true, where
they fail.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from api import demo
from api.app import create_app
from api.settings import Settings
from ledger import keys
from ledger.application import Ledger

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = os.environ.get("QLEDGER_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("QLEDGER_SCREENSHOTS") or Path(__file__).parent / "artifacts")

# The banner colours of api/templates/base.html, as the browser computes them.
GREEN, RED, ORANGE = "rgb(30, 127, 79)", "rgb(179, 38, 30)", "rgb(194, 65, 12)"


def _browser_problem() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set QLEDGER_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    problem = _browser_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: the browser tests must run)")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@dataclass(frozen=True)
class Site:
    url: str
    demo: demo.Demo


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo ledger (SQLite) behind a real HTTP server on a free port."""
    import uvicorn

    where = tmp_path_factory.mktemp("browser")
    db = str(where / "demo.db")
    built = demo.build(db, where / "log.pem", where / "root.pem")
    ledger = Ledger(db, log_key=keys.load_private_key(where / "log.pem"))
    app = create_app(ledger, Settings(db=db, read_rate_per_minute=0))
    # Bind first and hand uvicorn the socket: the port is ours before the server starts.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # waiting for startup, not a timed assertion
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield Site(f"http://127.0.0.1:{port}", built)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    ledger.close()


# name: new_context options. The phone is about an iPhone 14's screen.
SCREENS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
              "is_mobile": True, "has_touch": True},
    "phone-nojs": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
                   "is_mobile": True, "has_touch": True, "java_script_enabled": False},
}


@pytest.fixture(params=list(SCREENS))
def screen(request: pytest.FixtureRequest, browser: Browser) -> Iterator[tuple[str, Page]]:
    context: BrowserContext = browser.new_context(locale="zh-CN", **SCREENS[request.param])
    yield request.param, context.new_page()
    context.close()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _fits_the_screen(page: Page) -> None:
    """Nothing sticks out sideways: no horizontal scrolling on a phone."""
    viewport = page.viewport_size
    assert viewport is not None
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]


def _banner(page: Page) -> tuple[str, str, str]:
    """The verdict banner's classes, words and colour; it is seen without scrolling."""
    banner, viewport = page.locator("#verdict"), page.viewport_size
    box = banner.bounding_box()
    assert box is not None and viewport is not None
    assert box["y"] + box["height"] <= viewport["height"]
    colour = banner.evaluate("e => getComputedStyle(e).backgroundColor")
    return banner.get_attribute("class") or "", banner.inner_text(), colour


def test_bread_made_from_recalled_flour_shows_recalled(
        screen: tuple[str, Page], site: Site) -> None:
    name, page = screen
    gtin, lot = site.demo.recalled_bread
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    answer = page.goto(f"{site.url}/01/{gtin}/10/{lot}")
    assert answer is not None and answer.status == 200
    # One request, to this server: no CDN, no font or script from anywhere else.
    assert asked == [f"{site.url}/01/{gtin}/10/{lot}"]
    classes, words, colour = _banner(page)
    # Red, and in words: recalled, do not eat, and why (the flour's lead).
    assert "recalled" in classes.split() and colour == RED
    assert "已召回" in words and "请勿食用" in words and "铅含量超标" in words
    assert page.locator("#producer-name").inner_text() == "福州麦香烘焙食品有限公司"
    assert page.locator("#grade").inner_text() == "A"
    assert page.locator("#recalls").get_by_text("上游原料").count() == 1
    assert page.locator("#origin").get_by_text("福建省 · 350181").is_visible()
    _fits_the_screen(page)
    _shot(page, f"scan-recalled-{name}")

    # The shopper switches to English with the link at the top.
    page.click("#lang-switch")
    page.wait_for_url("**lang=en")
    classes, words, colour = _banner(page)
    assert "RECALLED" in words and colour == RED
    assert page.locator("#grade").inner_text() == "A"
    assert page.locator("#lang-switch").inner_text() == "中文"
    _shot(page, f"scan-recalled-{name}-en")


def test_a_clean_loaf_shows_safe(screen: tuple[str, Page], site: Site) -> None:
    name, page = screen
    gtin, lot = site.demo.clean_bread
    page.goto(f"{site.url}/01/{gtin}/10/{lot}?lang=en")
    classes, words, colour = _banner(page)
    assert "ok" in classes.split() and colour == GREEN
    assert "OK: no recall or failed check on record" in words
    assert page.locator("#producer-name").inner_text() == "福州麦香烘焙食品有限公司"
    assert page.locator("#grade").inner_text() == "A"
    assert page.locator("#checks").get_by_text("pass").count() == 1
    _fits_the_screen(page)
    _shot(page, f"scan-clean-{name}-en")


def test_a_snack_that_failed_its_check(screen: tuple[str, Page], site: Site) -> None:
    name, page = screen
    page.goto(f"{site.url}/01/{demo.SNACK}/10/MH-1101")
    classes, words, colour = _banner(page)
    assert "failed_check" in classes.split() and colour == ORANGE and "抽检不合格" in words
    assert page.locator("#grade").inner_text() == "D"
    assert page.locator("#checks").get_by_text("不合格").count() == 1
    _fits_the_screen(page)
    _shot(page, f"scan-failed-check-{name}")


def test_the_verified_mark_links_to_the_batch_entrys_proof(browser: Browser, site: Site) -> None:
    context = browser.new_context(**SCREENS["phone-nojs"])
    page = context.new_page()
    gtin, lot = site.demo.clean_bread
    page.goto(f"{site.url}/01/{gtin}/10/{lot}")
    size = int(page.locator("#tree-size").inner_text())
    assert page.locator("#proof").get_by_text("已在账本中验证").is_visible()
    href = page.locator("#proof-link").get_attribute("href") or ""
    with page.expect_navigation() as navigation:
        page.click("#proof-link")
    # The proof of the batch's own entry, against a checkpoint of the size the page named.
    proof = navigation.value.json()
    assert href == f"/v1/entries/{proof['index']}/proof"
    assert int(proof["checkpoint"].splitlines()[1]) == size
    assert proof["inclusion"] and proof["leaf_hash"]
    context.close()


def test_the_mills_credit_page_and_the_blacklist(screen: tuple[str, Page], site: Site) -> None:
    """A bank's officer looks up the flour mill, then the blacklist, and follows the
    listed workshop to its own page."""
    name, page = screen
    page.goto(f"{site.url}/orgs/{demo.MILL}")
    assert page.locator("#org-name").inner_text() == "福州金穗面粉有限公司"
    assert page.locator("#grade").inner_text() == "B"
    assert page.locator("#score").inner_text() == "82"
    assert page.locator("#explain li").count() == 3
    _fits_the_screen(page)
    _shot(page, f"org-mill-{name}")

    page.goto(f"{site.url}/blacklist")
    listed = page.locator("#current li")
    assert listed.count() == 1
    assert "生产销售不合格食品且拒不整改" in listed.inner_text()
    _fits_the_screen(page)
    _shot(page, f"blacklist-{name}")
    listed.get_by_role("link", name="福州仓山某食品加工坊").click()
    page.wait_for_url(f"**/orgs/{demo.WORKSHOP}**")
    assert page.locator("#grade").inner_text() == "D"
    assert "已列入黑名单" in page.locator("#blacklisted").inner_text()
    _shot(page, f"org-workshop-{name}")


def test_a_bad_uscc_in_the_address_bar_is_a_readable_error(browser: Browser, site: Site) -> None:
    context = browser.new_context(**SCREENS["phone"])
    page = context.new_page()
    bad = demo.MILL[:-1] + ("0" if demo.MILL[-1] != "0" else "1")
    answer = page.goto(f"{site.url}/orgs/{bad}?lang=en")
    assert answer is not None and answer.status == 400
    assert "Something went wrong" in page.locator("h1").inner_text()
    assert bad in page.locator("#detail").inner_text()
    _shot(page, "error-bad-uscc-phone-en")
    context.close()


def test_the_case_page_draws_the_trace_picture_with_lanes_and_marks(
        site: Site, browser: Browser) -> None:
    """An investigator opens the complaint against the bakery: the browser lays out the
    inline SVG with one swim lane per organization involved, the failed check and the
    recall marked on the bad flour lot, and nothing of the decoy mill."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        answer = page.goto(f"{site.url}/cases/FJ-12315-2026-0457?lang=en")
        assert answer is not None and answer.status == 200
        svg = page.locator("svg.case-trace")
        assert svg.count() == 1
        box = svg.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100  # rendered
        lanes = page.eval_on_selector_all("svg.case-trace g.lane",
                                          "gs => gs.map(g => g.dataset.org)")
        assert demo.MILL in lanes and demo.BAKERY in lanes and demo.FARM in lanes
        assert demo.DECOY_MILL not in lanes
        assert len(lanes) == len(set(lanes))
        for kind in ("recall", "failed-check"):
            marked = page.eval_on_selector_all(
                f"svg.case-trace g.mark.{kind}", "gs => gs.map(g => g.dataset.lot)")
            assert marked and set(marked) == {"FL20261025-2"}, (kind, marked)
            # Each mark is drawn: the browser gives it a box on the page.
            assert page.locator(f"svg.case-trace g.mark.{kind}").first.bounding_box()
        _shot(page, "case-desktop")
    finally:
        context.close()
