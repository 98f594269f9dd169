"""The dashboard as a viewer sees it: ``raytrade dashboard`` serving seeded run data on
loopback, opened page by page in headless Chromium (Debian's, through its ChromeDriver,
installed by ``make test``). Each page must render its charts and show no exception; a
screenshot of each is saved under ``build/test-artifacts/``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from raytrade.algos.storage.policy_store import PolicyStore
from raytrade.scripts.browser import CHROMIUM, DRIVER, headless_chromium, wait_for_page
from raytrade.scripts.s3_local import free_port

from tests.dashboard_seed import seed_store

ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"
# url path -> charts the page draws from the seeded data
PAGES = {"": 0, "training": 8, "evaluation": 4, "paper": 4, "models": 0, "walk_forward": 0}

pytestmark = pytest.mark.skipif(
    not (shutil.which(CHROMIUM) and shutil.which(DRIVER)) and not os.environ.get("CI"),
    reason="Chromium not installed: `make test` installs it (CI never skips)")


def test_every_page_renders_in_headless_chromium(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    store = PolicyStore((tmp_path / "store").as_uri())
    seed_store(store)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "raytrade.scripts.cli", "dashboard", "--store", store.uri,
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    driver = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "the dashboard never became healthy"
            time.sleep(0.3)
        driver = headless_chromium(tmp_path / "chromium")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for path, charts in PAGES.items():
            driver.get(f"{base}/{path}")
            wait_for_page(driver, charts)
            time.sleep(0.5)  # let the last charts paint before the screenshot
            name = path or "overview"
            driver.save_screenshot(str(ARTIFACTS / f"dashboard_{name}.png"))
            errors = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
            assert not errors, f"{name}: {[e.text for e in errors]}"
            assert "Traceback" not in driver.page_source, name
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(10)
