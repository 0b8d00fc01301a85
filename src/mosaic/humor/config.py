"""Humor settings and the names of a model folder's files: standard library only, so the command
line reads its defaults without loading torch."""
from __future__ import annotations

from dataclasses import dataclass, field

ONLINE_BACKBONE = "hf:hotchpotch/japanese-reranker-cross-encoder-large-v1"
OFFLINE_BACKBONE = "minilm"
CONFIG_FILE = "humor.json"
HEAD_FILE = "head.safetensors"
RIDGE_FILE = "ridge.json"


@dataclass
class HumorConfig:
    """A humor model's settings: its backbone, score scale, LoRA adapters and training."""

    backbone: str = "auto"
    scale: tuple[float, float] = (0.0, 3.0)  # Humicroedit; Bokete-style data: (0, 4)
    max_length: int = 64
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    lora_layers: int = 3  # adapters in the top N transformer layers only (0: all); backward stops below them
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    epochs: int = 2
    evals_per_epoch: int = 1
    patience: int = 2  # evaluations without a better dev RMSE before a member stops
    members: int = 1  # cross-encoders; every second one reads the pairs with the edit marked
    blend_share: float = 0.1  # of the training rows, held out to weigh the members against the ridge
    seed: int = 0
