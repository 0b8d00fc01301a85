"""Everything that touches the Hugging Face Hub: reachability, cache checks, streamed datasets."""
from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

from .errors import HubError, MosaicError, SourceError

# `datasets` builders for single data files given as a streamed dataset's "repo"
DATA_FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}


def offline() -> bool:
    """True when the user asked for no Hub access (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


def reachable(timeout: float = 3.0) -> bool:
    """True when huggingface.co answers on port 443 within `timeout` seconds."""
    if offline():
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def cached(repo: str) -> bool:
    """True when a snapshot of `repo` is already in the local Hugging Face cache."""
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable offline"
        return False


def brief(error: Exception) -> str:
    """An exception as one short line: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


def unavailable(what: str, error: Exception | None = None) -> HubError:
    """The one message for a model or dataset that cannot be fetched."""
    detail = f" ({brief(error)})" if error else ""
    if error is not None and reachable():
        return HubError(f"{what} could not be fetched from the Hugging Face Hub{detail}. Check its name, "
                        "and for a private or gated repository set HF_TOKEN.")
    why = "HF_HUB_OFFLINE is set" if offline() else "the Hugging Face Hub cannot be reached"
    return HubError(
        f"{what} is not in the local cache and {why}{detail}. Connect to the internet once to "
        "download it, or use the offline models (--model lite --captioner labels) and a local dataset.")


def load_streaming(repo: str, split: str):
    """A dataset opened with `streaming=True`: a local folder or data file (no Hub needed), or a
    Hub repository; HubError or SourceError with a clear message when it cannot be opened."""
    path = Path(repo).expanduser()
    if path.exists():
        return _load_local(path, split)
    if repo.startswith(("/", ".", "~")) or path.suffix.lower() in DATA_FILE_BUILDERS:
        raise SourceError(f"Dataset '{repo}' not found: give an existing folder or data file, "
                          "or a Hub repository name such as huggan/wikiart.")
    if not reachable():
        raise unavailable(f"Dataset '{repo}'")
    from datasets import load_dataset

    try:
        return load_dataset(repo, split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 - surfaced as one clear message
        raise unavailable(f"Dataset '{repo}'", e) from e


def _load_local(path: Path, split: str):
    """A local dataset folder, or one Parquet/CSV/JSON/Arrow file (its split is 'train'), streamed."""
    from datasets import load_dataset

    builder = DATA_FILE_BUILDERS.get(path.suffix.lower())
    if path.is_file() and not builder:
        raise SourceError(f"Dataset file '{path.name}' is not one of {', '.join(DATA_FILE_BUILDERS)}: "
                          "give a data file of those kinds or a dataset folder.")
    try:
        if builder and path.is_file():
            return load_dataset(builder, data_files=str(path), split=split, streaming=True)
        return load_dataset(str(path), split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 - surfaced as one clear message
        raise SourceError(f"Dataset '{path.name}' cannot be opened with split '{split}' ({brief(e)}). "
                          "Give a folder or data file that `datasets` reads, and one of its splits.") from e


def rows(ds, repo: str) -> Iterator[dict]:
    """The rows of a streamed dataset; a failure while reading becomes one clear error."""
    it = iter(ds)
    while True:
        try:
            row = next(it)
        except StopIteration:
            return
        except MosaicError:
            raise
        except Exception as e:  # noqa: BLE001 - surfaced as one clear message
            local = Path(repo).expanduser().exists()
            where = "Check the file" if local else "Check the connection and run again (a build resumes)"
            raise (SourceError if local else HubError)(
                f"Reading dataset '{Path(repo).name if local else repo}' failed ({brief(e)}). {where}.") from e
        yield row


def download_dataset(repo: str) -> str:
    """A local snapshot of a Hub dataset repository (from the cache when offline)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo, repo_type="dataset", local_files_only=not reachable())
    except Exception as e:  # noqa: BLE001 - surfaced as one clear message
        raise unavailable(f"Dataset repository '{repo}'", e) from e
