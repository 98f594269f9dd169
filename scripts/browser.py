"""Headless Chromium through Selenium and Debian's ChromeDriver (``make test`` installs
both): the dashboard's browser test and its README screenshots use the same browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def headless_chromium(user_data_dir: Path, window: str = "1400,2400") -> Any:
    """A started ``selenium.webdriver.Chrome`` with no GPU, sandbox or network extras;
    ``window`` is ``"width,height"`` in CSS pixels. The caller calls ``quit()``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", f"--window-size={window}",
                 f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(DRIVER))


def wait_for_page(driver: Any, charts: int, timeout_s: float = 60.0) -> None:
    """Wait for a dashboard page's title and then ``charts`` drawn charts (or, with 0,
    a table or a notice)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, timeout_s)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "h1"))
    if charts:
        wait.until(lambda d: len(d.find_elements(
            By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] canvas, "
                             "[data-testid='stVegaLiteChart'] svg")) >= charts)
    else:
        wait.until(lambda d: d.find_elements(
            By.CSS_SELECTOR, "[data-testid='stDataFrame'], [data-testid='stAlert']"))
