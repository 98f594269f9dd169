"""Screenshots of a running dashboard's pages (the README's tour is made with this).

    python scripts/dashboard_screenshots.py --url http://127.0.0.1:8501 \\
        --out dashboard/screenshots --pages overview:0 paper:4 training:8

Each ``PAGE:CHARTS`` waits for that many drawn charts, then saves ``<out>/<page>.png``;
a page that shows Streamlit's exception box is reported and the script exits 1 (no
screenshot of a broken page goes into the README). Needs the test extras (selenium) and
Chromium (``make test`` installs both); prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from raytrade.scripts.browser import headless_chromium, page_errors, wait_for_page


def main() -> None:
    """Parse arguments, open every page, save the PNGs."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the dashboard's base URL")
    ap.add_argument("--out", required=True, help="folder for the PNG files")
    ap.add_argument("--pages", nargs="+", default=["overview:0", "paper:4", "training:8"],
                    help="PAGE:CHARTS (overview is the root page)")
    ap.add_argument("--window", default="1400,1800", help="browser width,height (px)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    broken: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as profile:
        driver = headless_chromium(Path(profile), args.window)
        try:
            for item in args.pages:
                page, _, charts = item.partition(":")
                driver.get(f"{args.url}/{'' if page == 'overview' else page}")
                wait_for_page(driver, int(charts or 0))
                time.sleep(1.0)  # the last charts paint after they appear
                errors = page_errors(driver)
                if errors:
                    broken[page] = errors
                    continue
                path = out / f"{page}.png"
                driver.save_screenshot(str(path))
                saved.append(str(path))
        finally:
            driver.quit()
    print(json.dumps({"url": args.url, "saved": saved, "broken": broken}))
    if broken:
        sys.exit(1)


if __name__ == "__main__":
    main()
