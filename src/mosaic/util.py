"""Small helpers shared by retrieval, training and humor scoring: words, atomic files, figures,
devices, checkpoints of modules and leave-one-out variants. Heavy libraries load on first use."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

STOPWORDS = set("a an the of on in at to with and or is are was were be its it this that his her their by for "
                "from as into up down out over while some very".split())


def words(text: str) -> list[str]:
    """Lower-cased words (letters, digits, apostrophes and hyphens)."""
    return re.findall(r"[\w'-]+", text.lower())


def leave_one_out(tokens: list[str]) -> list[str]:
    """The text without each token in turn: how much a score drops for each variant is that
    token's share of it."""
    return [" ".join(tokens[:i] + tokens[i + 1:]) for i in range(len(tokens))]


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically: a reader (or a killed writer) never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_figure(fig, path: Path) -> Path:
    """A matplotlib figure saved as PNG (its folder made), then closed."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def default_device() -> str:
    """CUDA when there is a GPU, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def mean_pool(hidden, mask):
    """Mean token states of a transformer's output (batch, tokens, dim), padding left out."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def save_module(module, path: Path, **extra) -> None:
    """A module with a `config` dict (its constructor's arguments) and its weights, written
    atomically; `load_module` rebuilds it."""
    import torch

    tmp = Path(path).with_suffix(".tmp")
    torch.save({"config": module.config, "state": module.state_dict(), **extra}, tmp)
    os.replace(tmp, path)


def load_module(cls, path: Path, what: str, upgrade=None):
    """A module saved by `save_module`, in eval mode; a file that is not one is a SourceError
    saying it should be `what`. `upgrade` rewrites a checkpoint of an older layout first."""
    import torch

    from .errors import SourceError

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        ckpt = upgrade(ckpt) if upgrade else ckpt
        module = cls(**ckpt["config"])
        module.load_state_dict(ckpt["state"])
    except Exception as e:  # noqa: BLE001 - garbage bytes fail inside the unpickler in any way (IndexError too)
        raise SourceError(f"{Path(path).name} is not {what} ({type(e).__name__}).") from None
    return module.eval()


def chunks(iterable, size: int):
    """Lists of `size` consecutive items of an iterable (the last one shorter)."""
    chunk = []
    for x in iterable:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
