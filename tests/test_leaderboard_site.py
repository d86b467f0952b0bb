"""The leaderboard site in a real headless browser (Debian's chromium + chromedriver via selenium).

Loads ``index.html`` from ``file://``, checks the browser console has no errors, that the heatmap's
colour legend is drawn and that no table column is empty in every row, clicks a column header and
checks the rows are re-ordered, follows a detail link (results before provenance, one drawn SVG
curve per attack cell, no console error there either), and writes screenshots to ``tmp_path``. Skips (saying why) where no chromium, chromedriver or selenium is installed
(``apt-get install chromium chromium-driver``; ``pip install selenium``).
"""

from __future__ import annotations

import shutil

import pytest
from helpers_leaderboard import make_bundle, write_matrix

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def _driver(tmp_path):
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no chromium/chromedriver binary on PATH (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


@pytest.fixture()
def site(tmp_path, monkeypatch):
    from unlearnbench.leaderboard.site import build

    tasks = tmp_path / "tasks"
    write_matrix(tasks)
    monkeypatch.setenv("UNLEARNBENCH_TASKS", str(tasks))
    subs = tmp_path / "subs"
    for method, strength in (("npo", 0.25), ("graddiff", 0.5), ("rmu", 0.0)):
        make_bundle(tmp_path, subs / method, method=method, strength=strength)
    result = build(subs, tmp_path / "site")
    assert len(result["listed"]) == 3
    return tmp_path / "site"


def _column(driver, table, col):
    from selenium.webdriver.common.by import By

    return [r.find_elements(By.TAG_NAME, "td")[col].text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]


def _empty_columns(driver) -> list[str]:
    """'table id: header' of each column of the page's tables whose cells are empty (or n/a) in every
    body row, as the browser renders them."""
    from selenium.webdriver.common.by import By

    out = []
    for table in driver.find_elements(By.TAG_NAME, "table"):
        rows = [
            [c.text.strip() for c in r.find_elements(By.XPATH, "./td|./th")]
            for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        heads = [h.text for h in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert rows, table.get_attribute("id")
        for j in range(max(len(r) for r in rows)):
            if all((r[j] if j < len(r) else "") in ("", "n/a", "–") for r in rows):
                out.append(f"{table.get_attribute('id')}: {heads[j] if j < len(heads) else j}")
    return out


def _console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_site_loads_sorts_and_links_in_headless_chromium(site, tmp_path):
    from selenium.webdriver.common.by import By

    driver = _driver(tmp_path)
    try:
        driver.get((site / "index.html").as_uri())
        assert driver.title == "unlearnbench leaderboard"
        assert _console_errors(driver) == []
        table = driver.find_element(By.CSS_SELECTOR, "table.sortable")
        headers = table.find_elements(By.TAG_NAME, "th")
        assert [h.text for h in headers[:2]] == ["method", "version"]
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.heatmap rect")) == 3 * 2
        legend = driver.find_element(By.CSS_SELECTOR, "svg.legend")
        assert legend.is_displayed() and legend.size["width"] > 300 and legend.size["height"] > 30
        assert len(legend.find_elements(By.TAG_NAME, "rect")) == 50 + 1  # the scale and the n/a swatch
        assert "1 = like the (attacked) oracle" in legend.get_attribute("textContent")
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.sortable")) == 2  # ranking and utility
        assert _empty_columns(driver) == []

        headers[0].click()  # method name, ascending
        assert _column(driver, table, 0) == ["graddiff", "npo", "rmu"]
        assert headers[0].get_attribute("aria-sort") == "ascending"
        headers[0].click()  # and descending
        assert _column(driver, table, 0) == ["rmu", "npo", "graddiff"]

        fq = next(i for i, h in enumerate(headers) if h.text.startswith("FQ after"))
        headers[fq].click()  # numeric sort on data-v, not on the "0.75 ± 0.00" text
        values = [
            float(r.find_elements(By.TAG_NAME, "td")[fq].get_attribute("data-v"))
            for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        assert values == sorted(values) and len(set(values)) == 3

        shot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        driver.find_element(By.LINK_TEXT, "npo").click()
        assert driver.title == "npo on test-mini"
        assert "Verified:" in driver.find_element(By.TAG_NAME, "body").text
        assert _console_errors(driver) == []
        results = driver.find_element(By.ID, "results")
        provenance = driver.find_element(By.ID, "provenance")
        assert results.location["y"] < provenance.location["y"]
        assert driver.execute_script(
            "return arguments[0].compareDocumentPosition(arguments[1]) & 4", results, provenance
        )
        assert _empty_columns(driver) == []
        attack_cells = [
            r
            for r in driver.find_elements(By.CSS_SELECTOR, "#cells tbody tr")
            if r.find_elements(By.TAG_NAME, "td")[1].text == "attack"
        ]
        curves = driver.find_elements(By.CSS_SELECTOR, "#results svg.curve")
        assert len(attack_cells) == len(curves) == 2
        for curve in curves:
            assert curve.is_displayed() and curve.size["width"] > 600 and curve.size["height"] > 200
            assert len(curve.find_elements(By.TAG_NAME, "polyline")) == 5  # FQ-AO, FQ, control FQ; 2 recalls
            labels = [t.get_attribute("textContent") for t in curve.find_elements(By.CSS_SELECTOR, "text.xlabel")]
            assert labels == ["epoch", "epoch"]  # finetune by epochs: one x axis per panel
            assert "forget quality" in curve.get_attribute("textContent")
        shot = tmp_path / "detail.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
