"""The dashboard as a viewer sees it: ``raytrade dashboard`` serving seeded run data (with
evaluations shaped like the demo's: curves of different lengths, halted baselines) on
loopback, every page of its navigation opened in headless Chromium (Debian's, through its
ChromeDriver, installed by ``make test``). Each page must show its title and draw its
charts, and no page may show Streamlit's exception box or its "This app has encountered
an error" text. A screenshot of each page is saved under ``build/test-artifacts/``.

Without Chromium, ChromeDriver or Selenium the test FAILS, saying how to install them;
set ``RAYTRADE_SKIP_BROWSER=1`` to skip it on purpose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.dashboard.navigation import PAGES
from raytrade.scripts.browser import (
    SKIP_ENV,
    browser_missing,
    headless_chromium,
    page_errors,
    wait_for_page,
)
from raytrade.scripts.s3_local import free_port

from tests.dashboard_seed import seed_store

ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
CHARTS = {"training": 8, "evaluation": 6, "paper": 4, "live": 2}
"""Charts a page draws from the seeded data (pages not named: a table or a notice)."""


@pytest.fixture
def browser_ready() -> None:
    """Skip only when asked to; a missing browser is a failure, not a silent skip."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser test skipped on purpose")
    missing = browser_missing()
    if missing is not None:
        pytest.fail(f"the dashboard's browser test needs Chromium and ChromeDriver, "
                    f"{missing}: `make browser` installs them (`make test` does), or set "
                    f"{SKIP_ENV}=1 to skip this test on purpose", pytrace=False)


def _serve(store_uri: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "raytrade.scripts.cli", "dashboard", "--store", store_uri,
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.read() == b"ok":
                    return server, base
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            out = server.stdout.read() if server.stdout else ""
            raise AssertionError(f"the dashboard never became healthy:\n{out}")
        time.sleep(0.3)


def test_every_page_renders_in_headless_chromium_without_an_exception(
        tmp_path: Path, browser_ready: None) -> None:
    from selenium.webdriver.common.by import By

    assert set(CHARTS) <= {p.name for p in PAGES}
    store = PolicyStore((tmp_path / "store").as_uri())
    seed_store(store)
    server, base = _serve(store.uri)
    driver = None
    failures: dict[str, list[str]] = {}
    try:
        driver = headless_chromium(tmp_path / "chromium")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for spec in PAGES:
            driver.get(f"{base}/{spec.url_path}")
            wait_for_page(driver, CHARTS.get(spec.name, 0))
            time.sleep(0.5)  # the rest of the run (and an exception at its end) paints
            driver.save_screenshot(str(ARTIFACTS / f"dashboard_{spec.name}.png"))
            errors = page_errors(driver)
            titles = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1")]
            if spec.title not in titles:
                errors.append(f"title {spec.title!r} not shown (h1: {titles})")
            if "Traceback" in driver.page_source:
                errors.append("a traceback on the page")
            if errors:
                failures[spec.name] = errors
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(10)
    assert not failures, failures
