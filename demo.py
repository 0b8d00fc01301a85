"""Mosaic's app. `python demo.py` builds (once, no download) and serves the bundled default
collection plus every collection already built under artifacts/; `--collection PATH` (repeatable)
serves those instead. The same as `mosaic serve`, and the entry point of the Hugging Face Space."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # runs from a clone, e.g. on a Space

from mosaic.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["serve", *sys.argv[1:]])
