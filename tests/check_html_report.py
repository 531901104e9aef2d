"""Renders `fxpipe report --html`'s page in a real headless Chromium (the system's, driven by
Playwright) and prints what the Rust test asserts, as one JSON object on stdout:

- requests: every URL the page asked for (it must only be the file itself);
- charts: width and height of each chart's SVG as laid out;
- bands: band -> accounts, from the creditworthiness table;
- versions: table -> Delta version, from the page's header;
- text: the page's visible text.

Usage: check_html_report.py PAGE.html SCREENSHOT.png

Exit status 3 (and a line on stderr) when no browser can be started, so the caller can tell
"cannot test here" from a failure.
"""

import json
import pathlib
import sys

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main():
    page_path = pathlib.Path(sys.argv[1]).resolve()
    screenshot = sys.argv[2]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        print(f"no playwright: {e}", file=sys.stderr)
        sys.exit(3)
    if not pathlib.Path(CHROMIUM).exists():
        print(f"no browser at {CHROMIUM}", file=sys.stderr)
        sys.exit(3)
    url = page_path.as_uri()
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def route(r):
            requests.append(r.request.url)
            if r.request.url == url:
                r.continue_()
            else:
                r.abort()

        page.route("**/*", route)
        # Requests that bypass routing (none should exist) still show up here.
        page.on("request", lambda req: requests.append(req.url) if req.url != url else None)
        page.goto(url, wait_until="load")
        charts = page.eval_on_selector_all(
            "svg.chart",
            "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; })",
        )
        bands = page.eval_on_selector_all(
            "#bands td[data-band]",
            "els => Object.fromEntries(els.map(e => [e.dataset.band, e.textContent]))",
        )
        versions = page.eval_on_selector_all(
            "#versions .version",
            "els => Object.fromEntries(els.map(e => [e.dataset.table, e.textContent]))",
        )
        text = page.inner_text("body")
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    print(
        json.dumps(
            {
                "requests": requests,
                "charts": charts,
                "bands": bands,
                "versions": versions,
                "text": text,
            }
        )
    )


if __name__ == "__main__":
    main()
