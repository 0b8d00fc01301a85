"""Scene playback rate in the app: frames shown per second against the intended rate
(tabs.FRAME_SECONDS), in headless Chromium, on the driving sample built with the offline models.

    python bench/scene_playback.py [--seconds 10] [--tries 3]   -> bench/results/scene_playback.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from first_result import CHROMIUM_ARGS, free_port

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def frame_on_screen(page) -> int:
    return int(re.search(r"frame (\d+) of", page.locator(".timeline + small").inner_text()).group(1))


def play(page, url: str, seconds: float) -> float:
    """Frames per second over `seconds` of playback from frame 1 of the first scene."""
    page.goto(url)
    page.get_by_role("tab", name="Scenes").click()
    page.locator('.timeline [data-frame="1"]').click()
    page.wait_for_function("() => /frame 1 of/.test(document.querySelector('.timeline + small').innerText)",
                           timeout=60_000)
    page.get_by_role("button", name="▶ Play").click()
    page.wait_for_function("() => !/frame 1 of/.test(document.querySelector('.timeline + small').innerText)",
                           timeout=60_000)
    start, first = time.perf_counter(), frame_on_screen(page)
    time.sleep(seconds)
    frames = frame_on_screen(page) - first
    page.get_by_role("button", name="Pause").click()
    return frames / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--tries", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scene_playback.json")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from playwright.sync_api import sync_playwright

    from mosaic.app import serve
    from mosaic.app.tabs import FRAME_SECONDS
    from mosaic.build import BuildConfig, build

    with tempfile.TemporaryDirectory() as tmp:
        collection = build(BuildConfig("driving", str(DATA / "driving"), model="lite", captioner="labels"),
                           Path(tmp) / "driving", progress=False)
        port = free_port()
        demo = serve([collection], host="127.0.0.1", port=port, block=False)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            rates = [play(browser.new_page(), f"http://127.0.0.1:{port}/", args.seconds) for _ in range(args.tries)]
            browser.close()
        demo.close()
    result = {"intended_fps": 1 / FRAME_SECONDS, "measured_fps": [round(r, 2) for r in rates],
              "ratio": round(sorted(rates)[len(rates) // 2] * FRAME_SECONDS, 2)}
    print(json.dumps(result))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
