"""The collections the app serves. Each is checked when the app starts (checksums, up to
VERIFY_LIMIT items): a damaged one is left out with one log line naming it and the fix. While the
app runs, a collection whose folder an update replaced (`mosaic update`) is reloaded at its next
request: the manifest file's identity is compared at every request (one stat call)."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from ..collection import Collection, Files
from ..errors import CollectionError, QueryError
from ..humor.model import HumorModel
from ..search import SearchService

VERIFY_LIMIT = 20_000  # items; larger collections are checksummed by `mosaic verify`, not at every start
log = logging.getLogger("mosaic")


def stamp(path: Path) -> tuple[int, int] | None:
    """The identity of a collection's manifest file (inode, modification time), None while an
    update swaps the folder."""
    try:
        st = os.stat(Files(path).manifest)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def load_service(path: Path, verify_limit: int = VERIFY_LIMIT) -> SearchService:
    """A collection's search service, its files checked against their checksums first when it
    holds up to `verify_limit` items."""
    collection = Collection.load(path)
    if len(collection) <= verify_limit:
        collection.verify()
    return SearchService(collection)


class Library:
    """The collections the app serves, by name, each with its search service (reloaded when an
    update replaced its folder), and the humor model when there is one."""

    def __init__(self, paths: list[str | Path], humor: str | Path | None = None, verify_limit: int = VERIFY_LIMIT):
        self.humor = HumorModel.load(humor) if humor else None
        self.services: dict[str, SearchService] = {}
        self.verify_limit = verify_limit
        self._stamps: dict[str, tuple[int, int] | None] = {}
        self._reloading = threading.Lock()
        for path in map(Path, paths):
            try:
                service = load_service(path, verify_limit)
            except CollectionError as e:
                log.error("Not serving %s: %s", path, e)
                continue
            name = service.collection.name
            while name in self.services:
                name += "+"
            self.services[name], self._stamps[name] = service, stamp(path)
        if not self.services:
            raise CollectionError("No collection to serve: " + ("none of those given can be served (see above)."
                                                                if paths else "build one with `mosaic build`."))

    def __getitem__(self, name: str) -> SearchService:
        if name not in self.services:
            raise QueryError(f"Unknown collection '{name}'. This app serves: {', '.join(self.services)}.")
        path = self.services[name].collection.path
        if stamp(path) not in (None, self._stamps[name]):
            self._reload(name, path)
        return self.services[name]

    def _reload(self, name: str, path: Path) -> None:
        """Load the collection that replaced `name`'s folder (once, whichever request sees it
        first); a damaged one is logged and the loaded one kept."""
        with self._reloading:
            now = stamp(path)
            if now in (None, self._stamps[name]):
                return
            self._stamps[name] = now
            try:
                self.services[name] = load_service(path, self.verify_limit)
            except CollectionError as e:
                log.error("Not reloading %s: %s", path, e)
                return
            log.info("Reloaded %s: %d items", name, len(self.services[name].collection))
