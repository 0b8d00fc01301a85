"""Everything that touches the Hugging Face Hub: reachability, cache checks, streamed datasets."""
from __future__ import annotations

import os
import socket

from .errors import HubError


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


def unavailable(what: str, error: Exception | None = None) -> HubError:
    """The one message for a model or dataset that cannot be fetched."""
    why = "HF_HUB_OFFLINE is set" if offline() else "the Hugging Face Hub cannot be reached"
    detail = f" ({type(error).__name__}: {error})" if error else ""
    return HubError(
        f"{what} is not in the local cache and {why}{detail}. Connect to the internet once to "
        "download it, or use the offline models (--model lite --captioner labels) and a local dataset.")


def load_streaming(repo: str, split: str):
    """A Hub dataset opened with `streaming=True`, or HubError with a clear message."""
    if not reachable():
        raise unavailable(f"Dataset '{repo}'")
    from datasets import load_dataset

    try:
        return load_dataset(repo, split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 - surfaced as one clear message
        raise unavailable(f"Dataset '{repo}'", e) from e


def download_dataset(repo: str) -> str:
    """A local snapshot of a Hub dataset repository (from the cache when offline)."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo, repo_type="dataset", local_files_only=not reachable())
    except Exception as e:  # noqa: BLE001 - surfaced as one clear message
        raise unavailable(f"Dataset repository '{repo}'", e) from e
