"""Build a collection: the same as `mosaic build` (see `python build_assets.py --help`)."""
import sys

from mosaic.cli import main

if __name__ == "__main__":
    main(["build", *sys.argv[1:]])
