"""The atlas in a real browser: headless Chromium driven by selenium with the system
chromedriver. Skipped where chromium, chromedriver or selenium are absent.

Checks: no console errors, a tile for every filter at load, a click shows the detail with top
images of both sources, sorting by error reorders the tiles, jump-to-filter, every sprite sheet
loads, and a screenshot that is not blank.
"""

import io
import json
import os
import shutil

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import models
from fastdecode.atlas import report

webdriver = pytest.importorskip("selenium.webdriver")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)
TOP_K = 5


def tiny_lenet(seed=0):
    rng = np.random.default_rng(seed)
    r = lambda *s: (0.1 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    mean = rng.uniform(20, 60, (1, 28, 28)).astype(np.float32)
    return fd.Network(
        [fd.Conv(r(4, 1, 5, 5), r(4)), fd.Pool("max", size=2),
         fd.Conv(r(6, 4, 5, 5), r(6)), fd.Pool("max", size=2),
         fd.Conv(r(30, 6, 4, 4), r(30)), fd.ReLU(), fd.Conv(r(10, 30, 1, 1), r(10))],
        meta={"normalization": {"averageImage": mean}})


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    net = tiny_lenet()
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, (30, 28, 28)).astype(np.uint8)
    x = models.preprocess(net, raw)
    out = tmp_path_factory.mktemp("browser") / "atlas"
    report(net, out, images=x, labels=np.arange(30) % 10, display_images=raw, top_k=TOP_K,
           progress=False)
    pages = {}
    for layer in net.conv_layers:
        i = net.index(layer)
        pages[layer] = next(n for n in os.listdir(out) if n.startswith("layer-%02d-" % i))
    return {"net": net, "x": x, "out": str(out), "pages": pages}


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or not os.path.isfile(CHROMEDRIVER):
        pytest.skip("chromium and chromedriver (%s) are needed" % CHROMEDRIVER)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip("headless chromium did not start: %s" % str(exc).splitlines()[0])
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def open_page(browser, atlas, name, hash_=""):
    browser.get("file://%s/%s%s" % (atlas["out"], name, hash_))
    browser.execute_script("return document.readyState")
    browser.get_log("browser")  # only what the page logs from here on is looked at


def load(browser, atlas, name, hash_=""):
    """Open a page and return the console entries of its loading."""
    browser.get_log("browser")
    browser.get("file://%s/%s%s" % (atlas["out"], name, hash_))
    return browser.get_log("browser")


def page_data(browser):
    return json.loads(browser.execute_script(
        "return document.getElementById('atlas-data').textContent"))


def tile_order(browser):
    return [int(t.get_attribute("data-filter"))
            for t in browser.find_elements(By.CSS_SELECTOR, "#tiles .filter")]


@pytest.fixture(scope="module")
def rgb_atlas(tmp_path_factory):
    """Colour photos (JPEG sheets of patches) through a padded RGB network."""
    rng = np.random.default_rng(7)
    r = lambda *s: (0.2 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    net = fd.Network([fd.Conv(r(5, 3, 3, 3), r(5), pad=1), fd.ReLU(), fd.Pool("max", size=2),
                      fd.Conv(r(7, 5, 3, 3), r(7), pad=1)])
    raw = rng.integers(0, 256, (10, 16, 16, 3)).astype(np.uint8)
    out = tmp_path_factory.mktemp("browser") / "rgb"
    report(net, out, images=(raw.transpose(0, 3, 1, 2) / 255.0).astype(np.float32),
           display_images=raw, top_k=3, progress=False)
    pages = sorted(n for n in os.listdir(out) if n.startswith("layer-"))
    return {"net": net, "out": str(out), "pages": dict(zip(net.conv_layers, pages))}


def test_pages_load_without_console_errors(browser, atlas):
    for name in ["index.html"] + list(atlas["pages"].values()):
        logs = load(browser, atlas, name)
        bad = [e for e in logs if e["level"] in ("SEVERE", "WARNING")]
        assert not bad, (name, bad)
        assert browser.title


def test_every_tile_is_in_the_page_at_load(browser, atlas):
    net = atlas["net"]
    for layer, name in atlas["pages"].items():
        load(browser, atlas, name)
        tiles = browser.find_elements(By.CSS_SELECTOR, ".filter")
        assert len(tiles) == net[layer].num_filters
        assert {t.get_attribute("data-layer") for t in tiles} == {layer}
        assert tile_order(browser) == list(range(net[layer].num_filters))
        assert all(t.get_attribute("data-error") is not None for t in tiles)


@pytest.mark.parametrize("which", ["atlas", "rgb_atlas"])
def test_every_sprite_sheet_loads(browser, request, which):
    atlas = request.getfixturevalue(which)
    for name in ["index.html"] + list(atlas["pages"].values()):
        load(browser, atlas, name)
        if name != "index.html":  # the detail's sheets too
            browser.find_element(By.CSS_SELECTOR, '.filter[data-filter="0"]').click()
        result = browser.execute_async_script("""
            var done = arguments[arguments.length - 1];
            var urls = {};
            document.querySelectorAll('.pic').forEach(function (e) {
              var m = /url\\("?([^")]+)"?\\)/.exec(getComputedStyle(e).backgroundImage);
              if (m) { urls[m[1]] = true; }
            });
            var list = Object.keys(urls), left = list.length, bad = [];
            if (!left) { done({n: 0, bad: []}); return; }
            list.forEach(function (u) {
              var img = new Image();
              img.onload = function () { if (!img.naturalWidth) { bad.push(u); }
                                         if (--left === 0) { done({n: list.length, bad: bad}); } };
              img.onerror = function () { bad.push(u); if (--left === 0) {
                                          done({n: list.length, bad: bad}); } };
              img.src = u;
            });""")
        assert result["n"] >= 1 and not result["bad"], (name, result)
        if name != "index.html":
            assert browser.find_elements(By.CSS_SELECTOR, '.top-image[data-source="decoded"]')
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_click_shows_the_detail_with_both_lists(browser, atlas):
    net, x = atlas["net"], atlas["x"]
    for layer, name in atlas["pages"].items():
        load(browser, atlas, name)
        detail = browser.find_element(By.ID, "detail")
        assert not detail.is_displayed()
        f = net[layer].num_filters - 1
        browser.find_element(By.CSS_SELECTOR, '.filter[data-filter="%d"]' % f).click()
        assert detail.is_displayed()
        assert "Filter %d" % f in detail.find_element(By.TAG_NAME, "h2").text
        tops = fd.top_images(fd.filter_scores(net, x, layer, decoded=fd.decode_all(net)[layer],
                                              progress=False), TOP_K)
        shown = {}
        for source, want in (("network", tops.network[f]), ("decoded", tops.decoded[f])):
            figs = detail.find_elements(By.CSS_SELECTOR,
                                        '.top-image[data-source="%s"]' % source)
            assert [int(e.get_attribute("data-image")) for e in figs] == list(want)
            assert all(e.is_displayed() for e in figs)
            shown[source] = figs
        both = set(tops.network[f]) & set(tops.decoded[f])
        for figs in shown.values():
            for e in figs:
                assert ("shared" in e.get_attribute("class").split()) == (
                    int(e.get_attribute("data-image")) in both)
        big = detail.find_elements(By.CSS_SELECTOR, ".big")
        assert len(big) == (3 if layer == net.conv_layers[0] else 2)  # + the weights
        assert "Eq. 3 error" in detail.text
        assert browser.get_log("browser") == []


def test_sorting_by_error_reorders_the_tiles(browser, atlas):
    layer = "layer5"
    load(browser, atlas, atlas["pages"][layer])
    errors = np.array(page_data(browser)["errors"])
    select = Select(browser.find_element(By.ID, "sort"))
    select.select_by_value("error-desc")
    assert tile_order(browser) == list(np.argsort(-errors, kind="stable"))
    select.select_by_value("error-asc")
    assert tile_order(browser) == list(np.argsort(errors, kind="stable"))
    select.select_by_value("index")
    assert tile_order(browser) == list(range(len(errors)))
    # the arrows of the detail follow the shown order
    select.select_by_value("error-desc")
    first = int(np.argsort(-errors, kind="stable")[0])
    second = int(np.argsort(-errors, kind="stable")[1])
    browser.find_element(By.CSS_SELECTOR, '.filter[data-filter="%d"]' % first).click()
    browser.find_element(By.CSS_SELECTOR, "#detail .next").click()
    assert "Filter %d" % second in browser.find_element(By.CSS_SELECTOR, "#detail h2").text


def test_jump_to_a_filter(browser, atlas):
    load(browser, atlas, atlas["pages"]["layer5"])
    box = browser.find_element(By.ID, "jump-to")
    box.send_keys("27", Keys.ENTER)
    tile = browser.find_element(By.CSS_SELECTOR, '.filter[data-filter="27"]')
    assert "current" in tile.get_attribute("class").split()
    assert "Filter 27" in browser.find_element(By.CSS_SELECTOR, "#detail h2").text
    inside = browser.execute_script(
        "var r = arguments[0].getBoundingClientRect();"
        "return r.top >= 0 && r.bottom <= window.innerHeight;", tile)
    assert inside
    box.clear()
    box.send_keys("999", Keys.ENTER)
    assert "no filter 999" in browser.find_element(By.ID, "jump-msg").text
    # Escape closes the detail; a #f= address opens it
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    assert not browser.find_element(By.ID, "detail").is_displayed()
    load(browser, atlas, atlas["pages"]["layer3"], "#f=4")
    assert "Filter 4" in browser.find_element(By.CSS_SELECTOR, "#detail h2").text


def _variance(png):
    with Image.open(io.BytesIO(png)) as im:
        return float(np.asarray(im.convert("L"), dtype=np.float64).var())


def test_screenshots_are_not_blank(browser, atlas, tmp_path):
    load(browser, atlas, "index.html")
    assert _variance(browser.get_screenshot_as_png()) > 100
    load(browser, atlas, atlas["pages"]["layer3"])
    browser.find_element(By.CSS_SELECTOR, '.filter[data-filter="1"]').click()
    png = browser.get_screenshot_as_png()
    assert _variance(png) > 100
    # the detail panel itself shows pictures, not an empty box
    panel = browser.find_element(By.ID, "detail").screenshot_as_png
    assert _variance(panel) > 100
