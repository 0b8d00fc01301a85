"""`mosaic train`: contrastive training of the offline dual encoder's projection heads on a
captions collection, with iterative hard-negative mining.

Towers (EfficientNet-Lite0, MiniLM) stay frozen: their outputs for the collection's previews and
human captions are computed once and cached. Round 0 trains the heads with a symmetric InfoNCE
loss (in-batch negatives, learnable temperature); every later round first mines, with the current
heads, the highest-ranked wrong training images of each training caption, then trains on with
those images added to the batches as extra negatives. `members` runs, each with its own seed (its
own initial heads, batches and mined negatives), are trained this way, and the checkpoint averages
their scores (`Ensemble`).

Heads trained on one collection fit its domain and lose the zero-shot model's breadth, so the
checkpoint also ensembles them with the zero-shot model (`Ensemble.mix`, WiSE-FT in score space). The mix
is chosen on a validation share of the train split that training never sees: the most zero-shot
mix whose validation score (mean of R@1 and R@10, both directions) is within `mix_tolerance`
points of the best. The test split (evaluate.split_rows) and an out-of-domain check (scikit-image's
bundled photos and their written descriptions) are scored after each round and for the final
mix, for the record; neither chooses anything.

    <out>.pt          the final heads: `--model lite:<out>.pt` for build, search and the app
    <out>/            features.npz, history.json (every member's rounds, the mix, the final checks)
    <out>/member-K/   round_N.pt, negatives_N.npy, history.json (what --resume reads)
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .collection import Collection
from .errors import CollectionError, UsageError
from .evaluate import Pairs, directions, split_rows
from .models.lite import Ensemble, Heads, LiteEncoder, ZeroShot
from .util import save_figure, save_module, write_json

log = logging.getLogger("mosaic")


@dataclass
class TrainConfig:
    rounds: int = 2  # hard-negative rounds after the first, plain one
    epochs: int = 8  # per round
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.1
    dim: int = 256
    hidden: int = 512
    negatives: int = 3  # mined per training caption; one of them joins each batch (0: no mining)
    validation: float = 0.125  # share of the train images held out to choose the mix
    mix_tolerance: float = 2.0  # points of validation score given up for a more zero-shot (robust) mix
    members: int = 3  # runs, seeded seed, seed + 1, ...; the checkpoint averages their scores
    seed: int = 0

    def __post_init__(self):
        if self.members < 1:
            raise UsageError("--members must be at least 1")


MIXES = np.round(np.linspace(0, 1, 11), 2)  # weights of the trained heads tried (0: zero-shot alone)


class Rounds:
    """An iterative training run on disk: its settings, each finished round's checkpoint and
    entry in history.json, and the negatives mined for it; what `--resume` continues from."""

    def __init__(self, work: Path, settings: dict, resume: bool):
        if work.exists() and not resume:
            raise CollectionError(f"{work} exists: use --resume to continue it, or remove it to start over.")
        work.mkdir(parents=True, exist_ok=True)
        self.work, self.file = work, work / "history.json"
        self.history = json.loads(self.file.read_text()) if self.file.exists() else {"settings": settings, "rounds": []}
        if self.history["settings"] != settings:
            raise CollectionError(f"{work} was trained with other settings; remove it to start over.")

    @property
    def done(self) -> int:
        return len(self.history["rounds"])

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.done:
            state = torch.load(self.work / f"round_{self.done - 1}.pt", weights_only=True)
            model.load_state_dict(state["state"])
            optimizer.load_state_dict(state["optimizer"])
            log.info("%s: resuming after round %d", self.work.name, self.done - 1)

    def save_negatives(self, r: int, negatives: np.ndarray) -> None:
        np.save(self.work / f"negatives_{r}.npy", negatives)

    def finish(self, entry: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        torch.save({"state": model.state_dict(), "optimizer": optimizer.state_dict()},
                   self.work / f"round_{entry['round']}.pt")
        self.history["rounds"].append(entry)
        write_json(self.file, self.history)


def batches(rng: np.random.Generator, n: int, config, label: str, progress: bool):
    """Shuffled index batches over `n` examples for `config.epochs` epochs, with a progress bar."""
    for _ in tqdm(range(config.epochs), desc=label, unit="epoch", disable=not progress):
        order = rng.permutation(n)
        for lo in range(0, n, config.batch_size):
            yield order[lo:lo + config.batch_size]


def tower_features(c: Collection, work: Path, progress: bool = True) -> dict:
    """Frozen-tower outputs for every item's preview and every human caption (cached)."""
    cache = work / "features.npz"
    if cache.exists():
        return dict(np.load(cache))
    human = c.human_captions
    if not len(human):
        raise CollectionError(f"Collection '{c.name}' has no human captions to train on.")
    encoder = LiteEncoder()
    images = []
    for lo in tqdm(range(0, len(c), 32), desc="image features", unit="batch", disable=not progress):
        images.append(encoder.image_features([c.thumbnail(r) for r in range(lo, min(lo + 32, len(c)))]))
    texts = c.captions["text"].to_pylist()
    features = {"images": np.concatenate(images), "texts": encoder.text.encode([texts[i] for i in human]),
                "owner": c.caption_items[human]}
    np.savez(cache, **features)
    return features


def ood_features(work: Path) -> dict:
    """Frozen-tower outputs of the out-of-domain check: scikit-image's bundled photos and their
    written descriptions (cached)."""
    from .sources import skimage_photos

    cache = work / "out_of_domain.npz"
    if not cache.exists():
        records = list(skimage_photos())
        encoder = LiteEncoder()
        np.savez(cache, images=encoder.image_features([r.image.convert("RGB") for r in records]),
                 texts=encoder.text.encode([r.texts[0] for r in records]))
    return dict(np.load(cache))


def validation_rows(ids: list[str], train_rows: np.ndarray, share: float) -> np.ndarray:
    """A fixed share of the train images (by a hash of their ids), held out to choose the mix."""
    n = max(1, round(share * len(train_rows)))
    order = sorted(train_rows, key=lambda r: hashlib.sha1(f"validation:{ids[r]}".encode()).hexdigest())
    return np.sort(np.asarray(order[:n], np.int64))


def info_nce(heads: Heads, images: torch.Tensor, texts: torch.Tensor, owner: np.ndarray,
             extra: torch.Tensor | None) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of captions and their images (several captions of one image
    are all positives for it); `extra` images are negatives for the captions only."""
    unique, target = np.unique(owner, return_inverse=True)
    zi = heads.embed_images(images[unique] if extra is None else torch.cat([images[unique], extra]))
    zt = heads.embed_texts(texts)
    logits = heads.logit_scale.exp().clamp(max=100) * zt @ zi.T
    t2i = F.cross_entropy(logits, torch.from_numpy(target))
    per_image = logits[:, :len(unique)].T
    positive = torch.from_numpy(target[None, :] == np.arange(len(unique))[:, None])
    i2t = (per_image.logsumexp(1) - per_image.masked_fill(~positive, -torch.inf).logsumexp(1)).mean()
    return (t2i + i2t) / 2


def mine(heads: Heads, images: torch.Tensor, texts: torch.Tensor, owner: np.ndarray, train: np.ndarray,
         n: int) -> np.ndarray:
    """For each training caption, the `n` training images the current heads rank highest among the
    wrong ones: (captions, n) item rows."""
    heads.eval()
    with torch.no_grad():
        scores = heads.embed_texts(texts) @ heads.embed_images(images[train]).T
    heads.train()
    scores[torch.from_numpy(train[None, :] == owner[:, None])] = -torch.inf
    return train[scores.topk(n, dim=1).indices.numpy()]


def embedded_pairs(heads: Heads | Ensemble, images: torch.Tensor, texts: torch.Tensor, owner: np.ndarray,
                   rows: np.ndarray) -> Pairs:
    """The items `rows` and their captions, embedded by the heads (in eval mode)."""
    was_training = heads.training
    heads.eval()
    with torch.no_grad():
        pairs = Pairs.of_items(heads.embed_images(images).numpy(), heads.embed_texts(texts).numpy(), owner, rows)
    heads.train(was_training)
    return pairs


def evaluate_heads(heads: Heads | Ensemble, images: torch.Tensor, texts: torch.Tensor, owner: np.ndarray,
                   rows: np.ndarray) -> dict:
    """Both directions over the items `rows` (all of them as candidates)."""
    return directions(embedded_pairs(heads, images, texts, owner, rows))


def checks(heads: Heads | Ensemble, images, texts, owner, test_rows, ood: dict) -> dict:
    """The test split and the out-of-domain check, scored with the heads as they are."""
    n = len(ood["images"])
    return {"test": evaluate_heads(heads, images, texts, owner, test_rows),
            "out_of_domain": evaluate_heads(heads, torch.from_numpy(ood["images"]), torch.from_numpy(ood["texts"]),
                                            np.arange(n), np.arange(n))}


def checks_line(report: dict) -> str:
    """`checks`' text->image recalls, for the log."""
    return ", ".join(f"{name.replace('_', ' ')} t2i R@1 {report[name]['t2i']['R@1']:.1f} R@10 {report[name]['t2i']['R@10']:.1f}"
                     for name in ("test", "out_of_domain"))


def summary_score(report: dict) -> float:
    """One number for a retrieval report: the mean of R@1 and R@10 in both directions."""
    return float(np.mean([report[d][m] for d in ("t2i", "i2t") for m in ("R@1", "R@10")]))


def choose_mix(heads: Ensemble, images, texts, owner, rows: np.ndarray, tolerance: float) -> tuple[float, list[dict]]:
    """The most zero-shot mix (see the module docstring) whose score on the validation `rows` is
    within `tolerance` points of the best, and every mix's score."""
    tried = []
    for mix in MIXES:
        heads.config["mix"] = float(mix)
        tried.append({"mix": float(mix), "score": round(summary_score(evaluate_heads(heads, images, texts, owner, rows)), 2)})
    best = max(t["score"] for t in tried)
    chosen = next(t["mix"] for t in tried if t["score"] >= best - tolerance)
    heads.config["mix"] = chosen
    return chosen, tried


def train(collection: str | Path, out: str | Path, config: TrainConfig, resume: bool = False,
          progress: bool = True, split: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Train (or resume) heads on a collection's train split; returns the final checkpoint.
    `split`: other (train, test) item rows than the fixed split (evaluate.split_rows)."""
    c = Collection.load(collection)
    out = Path(out)
    work = out.with_suffix("")
    if work.exists() and not resume:
        raise CollectionError(f"{work} exists: use --resume to continue it, or remove it to start over.")
    if (work / "round_0.pt").exists():
        raise CollectionError(f"{work} holds a training of one run, from before ensembles: remove it to start over.")
    train_rows, test_rows = split or (split_rows(c.ids(), "train"), split_rows(c.ids(), "test"))
    custom = {"test_rows": hashlib.sha1(np.asarray(test_rows, np.int64).tobytes()).hexdigest()} if split else {}
    zero_shot = {**asdict(ZeroShot()), "prompts": list(ZeroShot().prompts)}  # as history.json reads back
    settings = {"collection": str(Path(collection)), "items": len(c), **custom, **asdict(config), "zero_shot": zero_shot}

    work.mkdir(parents=True, exist_ok=True)
    feats = tower_features(c, work, progress)
    images, texts = torch.from_numpy(feats["images"]), torch.from_numpy(feats["texts"])
    owner = feats["owner"]
    ood = ood_features(work)
    val_rows = validation_rows(c.ids(), train_rows, config.validation)
    data = {"images": images, "texts": texts, "owner": owner, "train_rows": np.setdiff1d(train_rows, val_rows),
            "test_rows": test_rows, "ood": ood}
    shaping = {key: v for key, v in settings.items() if key not in ("mix_tolerance", "members")}  # a run's rounds
    runs = [Rounds(work / f"member-{k}", {**shaping, "seed": config.seed + k}, resume) for k in range(config.members)]
    ensemble = Ensemble.of([train_member(run, data, config, progress) for run in runs])

    mix, tried = choose_mix(ensemble, images, texts, owner, val_rows, config.mix_tolerance)
    history = {"settings": settings, "members": [run.history["rounds"] for run in runs],
               "mix": {"chosen": mix, "validation_images": len(val_rows), "tried": tried},
               "final": checks(ensemble, images, texts, owner, test_rows, ood)}
    log.info("mix %.1f: %s", mix, checks_line(history["final"]))
    write_json(work / "history.json", history)
    plot_history(history, work / "history.png")
    save_module(ensemble, out, history=history)
    return out


def train_member(rounds: Rounds, data: dict, config: TrainConfig, progress: bool) -> Heads:
    """One run's heads, trained (or resumed) round by round as the module docstring says."""
    images, texts, owner, train_rows = data["images"], data["texts"], data["owner"], data["train_rows"]
    train_caps = np.flatnonzero(np.isin(owner, train_rows))
    seed = rounds.history["settings"]["seed"]
    torch.manual_seed(seed)
    heads = Heads(images.shape[1], texts.shape[1], config.dim, config.hidden, zero_shot=rounds.history["settings"]["zero_shot"])
    heads.image_mean.copy_(images[train_rows].mean(0))
    heads.image_std.copy_(images[train_rows].std(0) + 1e-6)
    optimizer = torch.optim.AdamW(heads.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rounds.restore(heads, optimizer)
    rng = np.random.default_rng(seed + rounds.done)

    for r in range(rounds.done, config.rounds + 1):
        negatives = None
        if r > 0 and config.negatives:
            negatives = mine(heads, images, texts[train_caps], owner[train_caps], train_rows, config.negatives)
            rounds.save_negatives(r, negatives)
        losses = []
        for batch in batches(rng, len(train_caps), config, f"seed {seed}, round {r}", progress):
            extra = None
            if negatives is not None:  # one mined image per caption, never a batch positive
                picked = negatives[batch, rng.integers(0, config.negatives, len(batch))]
                extra = images[np.setdiff1d(picked, owner[train_caps[batch]])]
            loss = info_nce(heads, images, texts[train_caps[batch]], owner[train_caps[batch]], extra)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        entry = {"round": r, "hard_negatives": negatives is not None, "loss": round(float(np.mean(losses[-20:])), 4),
                 "temperature": round(float(1 / heads.logit_scale.detach().exp()), 4),
                 **checks(heads, images, texts, owner, data["test_rows"], data["ood"])}
        rounds.finish(entry, heads, optimizer)
        log.info("seed %d, round %d: loss %.3f, %s", seed, r, entry["loss"], checks_line(entry))
    return heads.eval()


def plot_history(history: dict, path: Path) -> None:
    """Text->image R@1 and R@10 of the heads alone at each round (the mean over the members), on
    the test split and out of domain; and the validation score of each mix, the chosen one marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_round, by_mix) = plt.subplots(1, 2, figsize=(9, 3.5))
    members = history["members"]
    x = [r["round"] for r in members[0]]
    for check, style in (("test", "o-"), ("out_of_domain", "s--")):
        for metric in ("R@1", "R@10"):
            by_round.plot(x, np.mean([[r[check]["t2i"][metric] for r in m] for m in members], 0), style,
                          label=f"{check.replace('_', ' ')}, t2i {metric}")
    by_round.set(xlabel=f"round (heads alone, mean of {len(members)})", ylabel="%", xticks=x)
    by_round.legend(fontsize=7)
    tried = history["mix"]["tried"]
    by_mix.plot([t["mix"] for t in tried], [t["score"] for t in tried], "o-", label="validation score")
    by_mix.axvline(history["mix"]["chosen"], color="black", ls=":", label=f"chosen: {history['mix']['chosen']}")
    by_mix.set(xlabel="mix (0: zero-shot, 1: heads alone)", ylabel="mean of R@1 and R@10, both directions")
    by_mix.legend(fontsize=7)
    for ax in (by_round, by_mix):
        ax.grid(alpha=0.3)
    save_figure(fig, path)
