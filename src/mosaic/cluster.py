"""Ray, for the builds and indexes that run on a cluster."""
from __future__ import annotations

import logging
import os

from .errors import UsageError


def ray_session():
    """The `ray` module, connected to the cluster at $RAY_ADDRESS, or to a local one it starts."""
    try:
        import ray
    except ImportError:
        raise UsageError("Running on Ray needs Ray: pip install 'ray[data]'.") from None
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), logging_level=logging.WARNING)
    return ray
