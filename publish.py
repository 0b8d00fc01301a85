"""Publish to the Hugging Face Hub: `python publish.py captions|collection|space ...`, the same
as `mosaic publish` (see `python publish.py --help`)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # runs from a clone

from mosaic.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["publish", *sys.argv[1:]])
