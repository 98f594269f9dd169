"""Headless Chromium through Selenium and Debian's ChromeDriver (``make test`` installs
both through ``make browser``): the dashboard's browser test and its README screenshots use
the same browser, wait for a page the same way and read Streamlit's error boxes the same
way."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SKIP_ENV = "RAYTRADE_SKIP_BROWSER"
"""Set to ``1`` to skip the browser test explicitly; without it a missing browser fails."""
EXCEPTION_BOX = "[data-testid='stException']"
"""Streamlit's element for an uncaught exception of a page (also with error details
hidden from viewers, where it holds the generic text below)."""
GENERIC_ERROR = "This app has encountered an error"
"""Start of the text Streamlit shows instead of the exception when details are hidden."""
_CHARTS = ("[data-testid='stVegaLiteChart'] canvas, "
           "[data-testid='stVegaLiteChart'] svg")


def browser_missing() -> str | None:
    """Why the browser cannot run here (Chromium, ChromeDriver or Selenium missing), or
    None when it can."""
    missing = [p for p in (CHROMIUM, DRIVER) if not os.access(p, os.X_OK)]
    if importlib.util.find_spec("selenium") is None:
        missing.append("the selenium package (test extras)")
    return ("not installed: " + ", ".join(missing)) if missing else None


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


def page_errors(driver: Any) -> list[str]:
    """The texts of Streamlit's exception boxes on the open page, and the page's text
    if it holds Streamlit's generic error message anywhere else; empty when clean."""
    from selenium.webdriver.common.by import By

    boxes = [e.text or "(exception box)" for e in
             driver.find_elements(By.CSS_SELECTOR, EXCEPTION_BOX)]
    body = driver.find_element(By.TAG_NAME, "body").text
    if GENERIC_ERROR in body and not any(GENERIC_ERROR in b for b in boxes):
        boxes.append(body)
    return boxes


def wait_for_page(driver: Any, charts: int, timeout_s: float = 60.0) -> None:
    """Wait for a dashboard page's title and then ``charts`` drawn charts (or, with 0,
    a table or a notice); returns early when the page shows an exception box, so the
    caller's :func:`page_errors` check reports it instead of a timeout."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def failed(d: Any) -> bool:
        return bool(d.find_elements(By.CSS_SELECTOR, EXCEPTION_BOX))

    wait = WebDriverWait(driver, timeout_s)
    wait.until(lambda d: failed(d) or d.find_elements(By.CSS_SELECTOR, "h1"))
    if charts:
        wait.until(lambda d: failed(d) or len(d.find_elements(By.CSS_SELECTOR, _CHARTS))
                   >= charts)
    else:
        wait.until(lambda d: failed(d) or d.find_elements(
            By.CSS_SELECTOR, "[data-testid='stDataFrame'], [data-testid='stAlert']"))
