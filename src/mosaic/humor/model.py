"""The humor model: cross-encoders (LoRA adapters on one backbone, each with a regression head)
blended with the ridge; built fresh to train (`HumorModel.new`) or from a folder (`HumorModel.load`)."""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .. import hub
from ..errors import SourceError, UsageError
from ..models import resolve
from ..util import default_device, leave_one_out, mean_pool
from .config import CONFIG_FILE, HEAD_FILE, OFFLINE_BACKBONE, ONLINE_BACKBONE, RIDGE_FILE, HumorConfig
from .data import mark_edit
from .ridge import TfidfRidge, blend


def backbone_path(spec: str) -> str:
    """Where transformers loads a backbone from: the packaged MiniLM, or a Hub repository."""
    if spec == OFFLINE_BACKBONE:
        from ..models.lite import minilm_path

        return minilm_path()
    kind, _, repo = spec.partition(":")
    if kind != "hf" or not repo:
        raise UsageError(f"Unknown humor backbone '{spec}'. Use minilm, hf:<repo> or auto.")
    return repo


class HumorModel:
    """Cross-encoders that share a backbone: each member is a LoRA adapter whose token states,
    averaged, go through its own linear regression head. The score is the members' mean, blended
    with a ridge on TF-IDF and the backbone's embeddings when the folder has one."""

    def __init__(self, config: HumorConfig, tokenizer, body, heads: torch.nn.ModuleDict, members: list[dict],
                 offset: float = 0.0, ridge: TfidfRidge | None = None, blend: float = 0.0, device: str | None = None):
        """A model from its parts, moved to `device` (default: a GPU when there is one); `new` and
        `load` build them. `offset` is the training mean, which the heads' outputs are added to."""
        self.config, self.tokenizer, self.members, self.offset = config, tokenizer, list(members), offset
        self.ridge, self.blend, self.device = ridge, blend, device or default_device()
        self.body, self.heads = body.to(self.device).eval(), heads.to(self.device).eval()
        self.info: dict = {}  # a loaded model's humor.json and history.json

    @staticmethod
    def _backbone(config: HumorConfig) -> tuple[HumorConfig, object, torch.nn.Module]:
        """What `new` and `load` share: a copy of `config` with `auto` resolved, the backbone's
        tokenizer and the backbone itself (HubError when it cannot be had)."""
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # the backbone's unused pooler is reported as a warning
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        config = replace(config, backbone=resolve(config.backbone, ONLINE_BACKBONE, OFFLINE_BACKBONE))
        path = backbone_path(config.backbone)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            base = AutoModel.from_pretrained(path, add_pooling_layer=False)
        except (OSError, ValueError) as e:
            raise hub.unavailable(f"Humor backbone '{config.backbone}'", e) from e
        return config, tokenizer, base

    @classmethod
    def new(cls, config: HumorConfig, device: str | None = None, offset: float = 0.0) -> HumorModel:
        """One fresh member to train: LoRA adapters in the top `config.lora_layers` layers and a
        head that starts at zero, so its first predictions are `offset` (the training mean)."""
        from peft import LoraConfig, get_peft_model

        config, tokenizer, base = cls._backbone(config)
        n = base.config.num_hidden_layers
        layers = list(range(max(n - config.lora_layers, 0), n)) if config.lora_layers else None
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.lora_targets), layers_to_transform=layers)
        body = get_peft_model(base, lora)
        # starts at zero: the first predictions are the training mean, and the adapter learns
        # only once the head has found a direction worth following
        head = torch.nn.Linear(base.config.hidden_size, 1)
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
        members = [{"folder": "default", "marked": False}]
        return cls(config, tokenizer, body, torch.nn.ModuleDict({"default": head}), members, offset, device=device)

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> HumorModel:
        """A trained model from its folder: every member's adapter and head, the ridge and the
        blend weight; `info` holds its humor.json and history.json."""
        from peft import PeftModel
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise SourceError(f"{folder} is not a humor model (no {CONFIG_FILE}); train one with `mosaic humor train`.")
        info = json.loads((folder / CONFIG_FILE).read_text())
        ridge = TfidfRidge(json.loads((folder / RIDGE_FILE).read_text())) if (folder / RIDGE_FILE).exists() else None
        settings = dict(info["config"])
        # folders written by earlier versions keep the training mean in the settings
        offset = settings.pop("offset") if "offset" in settings else info["offset"]
        config, tokenizer, base = cls._backbone(HumorConfig(**settings))
        names = [m["folder"] for m in info["members"]]
        body = PeftModel.from_pretrained(base, str(folder / names[0]), adapter_name=names[0])
        for name in names[1:]:
            body.load_adapter(str(folder / name), adapter_name=name)
        heads = torch.nn.ModuleDict({name: torch.nn.Linear(base.config.hidden_size, 1) for name in names})
        for name, head in heads.items():
            head.load_state_dict(load_file(str(folder / name / HEAD_FILE)))
        model = cls(config, tokenizer, body, heads, info["members"], offset, ridge, info["blend"], device)
        history = folder / "history.json"
        model.info = {**info, "history": json.loads(history.read_text()) if history.exists() else {}}
        return model

    def save_member(self, folder: Path) -> None:
        """The member being trained: its adapter and head."""
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        self.body.save_pretrained(str(folder))
        save_file({k: v.contiguous() for k, v in self.heads["default"].state_dict().items()}, str(folder / HEAD_FILE))

    def parameters(self) -> list[torch.nn.Parameter]:
        """What training changes: the LoRA matrices and the head."""
        return [p for p in self.body.parameters() if p.requires_grad] + list(self.heads.parameters())

    def train_mode(self, on: bool) -> None:
        """Dropout on (training) or off (scoring) in the adapters and the heads."""
        self.body.train(on)
        self.heads.train(on)

    def tokenize(self, prompts: list[str], answers: list[str], marked: bool = False) -> list[dict]:
        """`[CLS] prompt [SEP] answer [SEP]` (the backbone's own special tokens), once per pair;
        `marked`: with the words where they differ bracketed (see `mark_edit`)."""
        if marked:
            pairs = list(map(mark_edit, prompts, answers))
            prompts, answers = [p for p, _ in pairs], [a for _, a in pairs]
        enc = self.tokenizer(list(prompts), list(answers), truncation=True, max_length=self.config.max_length)
        return [dict(zip(enc.keys(), values)) for values in zip(*enc.values())]

    def pooled(self, ids: list[dict]) -> torch.Tensor:
        """The mean token states of tokenised inputs (active adapter), padded to the longest."""
        batch = self.tokenizer.pad(ids, return_tensors="pt").to(self.device)
        return mean_pool(self.body(**batch).last_hidden_state, batch["attention_mask"])

    def forward(self, pairs: list[dict]) -> torch.Tensor:
        """The active member's scores (unclipped) for tokenised pairs."""
        return self.heads[self.body.active_adapter](self.pooled(pairs))[:, 0] + self.offset

    @torch.inference_mode()
    def states(self, ids: list[dict], batch_size: int = 128) -> torch.Tensor:
        """`pooled` over many inputs, in batches of similar length (they pad little)."""
        self.train_mode(False)
        order = np.argsort([len(x["input_ids"]) for x in ids], kind="stable")
        out = torch.empty(len(ids), self.body.config.hidden_size, device=self.device)
        for lo in range(0, len(ids), batch_size):
            rows = order[lo:lo + batch_size]
            out[torch.from_numpy(rows)] = self.pooled([ids[i] for i in rows]).float()
        return out

    @torch.inference_mode()
    def scores(self, ids: list[dict]) -> np.ndarray:
        """The active member's scores (unclipped) for tokenised pairs."""
        head = self.heads[self.body.active_adapter]
        return (head(self.states(ids))[:, 0] + self.offset).cpu().numpy()

    def member_scores(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        """Each member's scores (unclipped), one row per member, each reading the pairs its way."""
        views, out = {}, []
        for member in self.members:
            if member["marked"] not in views:
                views[member["marked"]] = self.tokenize(prompts, answers, member["marked"])
            self.body.set_adapter(member["folder"])
            out.append(self.scores(views[member["marked"]]))
        return np.array(out)

    def embeddings(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        """The ridge's dense features of each pair: the backbone's own (adapters off) mean token
        states, unit length, of the answer's words missing from the prompt (Humicroedit: the edit),
        of the prompt's words missing from the answer (what it replaced), and of the answer."""
        texts = [*map(TfidfRidge.novel, prompts, answers), *map(TfidfRidge.novel, answers, prompts), *answers]
        ids = self.tokenizer(texts, truncation=True, max_length=self.config.max_length)["input_ids"]
        with self.body.disable_adapter():
            states = self.states([{"input_ids": x} for x in ids], batch_size=256)
        return np.hstack(np.split(torch.nn.functional.normalize(states, dim=-1).cpu().numpy(), 3))

    def ridge_scores(self, prompts: list[str], answers: list[str]) -> np.ndarray | None:
        """The ridge's scores (unclipped), or None for a model without one."""
        if self.ridge is None:
            return None
        dense = self.embeddings(prompts, answers) if self.ridge.state.get("dense") else None
        return self.ridge.predict(prompts, answers, dense)

    def predict(self, prompts: list[str], answers: list[str]) -> np.ndarray:
        """Scores on the dataset's scale."""
        return self.blended(self.member_scores(prompts, answers).mean(0), self.ridge_scores(prompts, answers))

    def blended(self, cross_encoder: np.ndarray, ridge: np.ndarray | None) -> np.ndarray:
        """The members' mean score blended with the ridge's (when there is one), clipped to the scale."""
        if ridge is not None:
            cross_encoder = blend(cross_encoder, ridge, self.blend)
        return np.clip(cross_encoder, *self.config.scale)

    def explain(self, prompt: str, answer: str) -> tuple[float, list[dict]]:
        """The score and each answer word's share of it: the score minus the score of the answer
        without that word (leave-one-out; positive = the word makes it funnier)."""
        tokens = answer.split()
        variants = [answer, *leave_one_out(tokens)]
        scores = self.predict([prompt] * len(variants), variants)
        return float(scores[0]), [{"word": w, "contribution": float(scores[0] - s)} for w, s in zip(tokens, scores[1:])]

    def rank(self, prompt: str, answers: list[str]) -> list[dict]:
        """Answers scored and explained, funniest first."""
        scored = [dict(zip(("score", "words"), self.explain(prompt, a)), answer=a) for a in answers]
        return sorted(scored, key=lambda r: -r["score"])
