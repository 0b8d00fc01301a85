"""Time from page load to the first result for a first-time visitor, in headless Chromium: clicking
the first example query on the landing, and typing a query into the search box (the Search tab, or
the Caption tab of older layouts) and pressing Enter; p50 and p95 over fresh pages.

Serves the app in-process on the given collections, or measures an app already running (--url), so
the same script times another version of the app for a before/after comparison.

    python bench/first_result.py --collection artifacts/flickr8k [--tries 20] [--query "a dog in the snow"]
    python bench/first_result.py --url http://127.0.0.1:7860/ --label before
        -> bench/results/first_result.json   (one entry per --label)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# A result tile reads "<strength or score> · <label>"; the collection strip and Browse tiles carry no " · ".
RESULT_TILE = "() => [...document.querySelectorAll('.thumbnail-item')].some(e => e.offsetParent && e.innerText.includes(' · '))"


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "tries": len(seconds)}


def first_example(page, url: str) -> float | None:
    """Seconds from navigation to the first result after clicking the first example (None: no examples)."""
    start = time.perf_counter()
    page.goto(url)
    page.get_by_role("tab").first.wait_for(timeout=60_000)
    example = page.locator("#examples button, #examples .gallery-item").first
    try:
        example.wait_for(timeout=10_000)
    except Exception:  # playwright's TimeoutError: a page without example queries
        return None
    example.click()
    page.wait_for_function(RESULT_TILE, timeout=120_000)
    return time.perf_counter() - start


def typed_query(page, url: str, query: str) -> float:
    """Seconds from navigation to the first result for a typed query."""
    start = time.perf_counter()
    page.goto(url)
    box = page.get_by_label("Describe the image")
    page.get_by_role("tab").first.wait_for(timeout=60_000)
    for tab in ("Search", "Caption"):
        if page.get_by_role("tab", name=tab, exact=True).count():
            page.get_by_role("tab", name=tab, exact=True).click()
            break
    box.fill(query)
    box.press("Enter")
    page.wait_for_function(RESULT_TILE, timeout=120_000)
    return time.perf_counter() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--collection", type=Path, action="append", help="a built collection to serve (repeatable)")
    p.add_argument("--url", help="an app already running (instead of --collection)")
    p.add_argument("--tries", type=int, default=20)
    p.add_argument("--query", default="a dog running in the snow")
    p.add_argument("--label", default="current")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "first_result.json")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from playwright.sync_api import sync_playwright

    demo, url = None, args.url
    if not url:
        from mosaic.app import serve

        port = free_port()
        demo = serve(args.collection or [], host="127.0.0.1", port=port, block=False)
        url = f"http://127.0.0.1:{port}/"
    times: dict[str, list[float]] = {"first_example": [], "typed_query": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        for _ in range(args.tries):
            for name in times:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                seconds = first_example(page, url) if name == "first_example" else typed_query(page, url, args.query)
                if seconds is not None:
                    times[name].append(seconds)
                page.close()
        browser.close()
    if demo is not None:
        demo.close()
    result = {name: percentiles(t) or "no example queries on the page" for name, t in times.items()}
    print(args.label, json.dumps(result))
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**previous, args.label: {**result, "query": args.query}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
