"""Composed image retrieval: a reference image and a modification text -> the target image.

Methods, behind one interface (`ComposedSearch.search`):
  sum       zero-shot fusion: normalise((1 - w) * image + w * text)
  slerp     zero-shot fusion: spherical interpolation from the image towards the text, by w
  text      text-to-text: the reference's caption and the modification merged into one query,
            searched against images and captions
  combiner  a trained CLIP4Cir-style combiner (gated MLP) over the image and text embeddings,
            trained by `train_combiner` with rounds of hard-negative mining

CIRR: `load_cirr` reads the release's annotations; `evaluate` gives Recall@1/5/10/50 over the
gallery without the reference and Recall_subset@1/2/3 among the triplet's img_set members (the
reference left out); `submission` writes the test server's JSON files.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import QueryError, SourceError
from .models import caption_images, normalize
from .search import Hit, SearchService
from .train import Rounds, batches
from .util import load_module, save_module

METHODS = ("sum", "slerp", "text", "combiner")
KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)
ASKED_Z = 3.0  # deviations over all tags by which a tag must stand out to count as named by a change
# (on the Flickr8k and WikiArt samples: "in the snow" names snowy field at 3.7, "darker" dark at 4.6, while
# "the same but bigger" and "red" reach no tag above 2.7)


@dataclass
class Triplet:
    pairid: int
    reference: str
    caption: str
    target: str | None  # None in the test split
    members: list[str]  # the img_set: the reference and its near-duplicates


def load_cirr(root: str | Path, split: str = "val") -> list[Triplet]:
    """CIRR triplets of a split from `captions/cap.rc2.<split>.json`."""
    path = Path(root) / "captions" / f"cap.rc2.{split}.json"
    if not path.exists():
        raise SourceError(f"CIRR annotations not found: {path} (expected the CIRR release layout).")
    try:
        rows = json.loads(path.read_text())
        return [Triplet(int(r["pairid"]), r["reference"], r["caption"], r.get("target_hard"), r["img_set"]["members"])
                for r in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(f"{path} is not a CIRR annotation file ({type(e).__name__}: {e}).") from None


class Combiner(torch.nn.Module):
    """CLIP4Cir's combiner: projected image and text features, mixed by an MLP, plus a learnt
    gate between the raw text and image embeddings; output L2-normalised."""

    def __init__(self, dim: int, hidden: int = 512, dropout: float = 0.5):
        super().__init__()
        nn = torch.nn
        self.config = {"dim": dim, "hidden": hidden, "dropout": dropout}
        self.image_proj = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.text_proj = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.mix = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.gate = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 1), nn.Sigmoid())
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.image_proj(image), self.text_proj(text)], dim=-1)
        g = self.gate(h)
        return F.normalize(self.mix(h) + g * text + (1 - g) * image, dim=-1)



class ComposedSearch:
    """Composed queries over one collection's search service."""

    def __init__(self, service: SearchService, combiner: str | Path | Combiner | None = None):
        self.service = service
        if isinstance(combiner, (str, Path)):
            combiner = load_module(Combiner, combiner, "a combiner written by `mosaic composed train`")
        self.combiner = combiner
        if self.combiner is not None and self.combiner.config["dim"] != service.encoder.dim:
            raise QueryError(f"The combiner works on {self.combiner.config['dim']}-d embeddings, "
                             f"the collection on {service.encoder.dim}-d ones.")

    def _reference(self, reference: str | int | Image.Image) -> tuple[np.ndarray, int | None]:
        """The reference's image embedding, and its row when it is an item of the collection."""
        if isinstance(reference, Image.Image):
            return self.service.encoder.encode_images([reference.convert("RGB")]), None
        row = self.service.row(reference)
        return np.asarray(self.service.collection.image_emb[[row]]), row

    def merged_text(self, reference: str | int | Image.Image, text: str) -> str:
        """The `text` method's query: the reference's caption, then the modification."""
        if isinstance(reference, Image.Image):
            spec = self.service.collection.manifest.models["captioner"]
            caption = caption_images([reference.convert("RGB")], spec)[0]
        else:
            caption = self.service.collection.item(self.service.row(reference)).get("caption") or ""
        return f"{caption}, {text}" if caption else text

    def query_vector(self, ref: np.ndarray, text: str, method: str, weight: float = 0.5) -> np.ndarray:
        t = self.service.text_query(text)
        if method == "sum":
            return normalize((1 - weight) * ref + weight * t)
        if method == "slerp":
            theta = float(np.arccos(np.clip(ref[0] @ t[0], -1, 1)))
            if theta < 1e-6:
                return ref
            return normalize((np.sin((1 - weight) * theta) * ref + np.sin(weight * theta) * t) / np.sin(theta))
        if method == "combiner":
            if self.combiner is None:
                raise QueryError("No combiner loaded: train one with `mosaic composed train` and pass --combiner.")
            with torch.no_grad():
                return self.combiner(torch.from_numpy(ref), torch.from_numpy(t)).numpy()
        raise QueryError(f"Unknown method '{method}'. Use one of {', '.join(METHODS)}.")

    def search(self, reference: str | int | Image.Image, text: str, method: str = "sum", k: int = 10,
               weight: float = 0.5, offset: int = 0, distinct: bool = False) -> list[Hit]:
        """The k best targets after the first `offset` (never the reference itself; with
        `distinct`, one of each group of duplicates), each explained by the tags the change's
        words name and the others it raised or lowered from the reference to the hit."""
        if not text.strip():
            raise QueryError("The change is empty. Say what should change, e.g. \"the same but at night\".")
        ref, row = self._reference(reference)
        exclude = () if row is None else (row,)
        if method == "text":
            query = self.merged_text(reference, text)
            ranked = self.service.text_to_image(query, offset + k + 1, "both", distinct=distinct)
            hits = [h for h in ranked if h.row not in exclude][offset:offset + k]
        else:
            query = text
            hits = self.service.by_vector(self.query_vector(ref, text, method, weight), k, exclude, offset, distinct)
        c = self.service.collection
        ref_tags, asked = self.service.tag_profile(ref)[0], self.asked_tags(text)
        for h in hits:
            change = self.service.tag_z[h.row] - ref_tags
            order = [i for i in np.argsort(-change) if i not in asked]
            moved = lambda rows: [{"tag": c.tag_names[i], "change": round(float(change[i]), 2)} for i in rows]  # noqa: E731
            h.explanation = {**h.explanation, "mode": f"composed:{method}", "query": query, "tags_asked": moved(asked),
                             "tags_up": moved([i for i in order[:3] if change[i] > 0]),
                             "tags_down": moved([i for i in order[::-1][:3] if change[i] < 0])}
        return hits

    def asked_tags(self, text: str, n: int = 3) -> list[int]:
        """The tags a modification's words name (up to `n`, the closest first): those whose prompt
        stands out, among all tags, as the nearest to the text (ASKED_Z deviations above the mean)."""
        if not text.strip():
            return []
        sims = (self.service.text_query(text) @ self.service.collection.tag_emb.T)[0]
        z = (sims - sims.mean()) / max(float(sims.std()), 1e-6)
        return [int(i) for i in np.argsort(-z)[:n] if z[i] >= ASKED_Z]

    def scores(self, reference: str, text: str, method: str, weight: float = 0.5) -> np.ndarray:
        """Scores of every item of the collection for one composed query."""
        if method == "text":
            hits = self.service.text_to_image(self.merged_text(reference, text), len(self.service.collection), "both")
            out = np.full(len(self.service.collection), -np.inf, np.float32)
            out[[h.row for h in hits]] = [h.score for h in hits]
            return out
        q = self.query_vector(self._reference(reference)[0], text, method, weight)
        return self.service.exact["image"].scores(q)[0]


def complete(triplets: list[Triplet], service: SearchService) -> list[Triplet]:
    """The triplets whose reference (and target, when known) are items of the collection."""
    have = service.collection.rows_by_id
    return [t for t in triplets if t.reference in have and (t.target is None or t.target in have)]


def rank_one(scores: np.ndarray, triplet: Triplet, rows_by_id: dict[str, int]) -> tuple[list[str], list[str]]:
    """Item ids by score without the reference: over the whole gallery, and over the img_set."""
    ids = list(rows_by_id)
    scores = scores.copy()
    scores[rows_by_id[triplet.reference]] = -np.inf
    order = [ids[i] for i in np.argsort(-scores, kind="stable") if ids[i] != triplet.reference]
    members = {m for m in triplet.members if m != triplet.reference and m in rows_by_id}
    return order, [i for i in order if i in members]


def recalls(rankings: list[tuple[list[str], list[str]]], targets: list[str]) -> dict:
    """Recall@1/5/10/50 and Recall_subset@1/2/3 (%) of target ids in (gallery, subset) rankings."""
    out = {}
    for k in KS:
        out[f"R@{k}"] = round(100 * float(np.mean([t in r[:k] for (r, _), t in zip(rankings, targets)])), 2)
    for k in SUBSET_KS:
        out[f"R_subset@{k}"] = round(100 * float(np.mean([t in s[:k] for (_, s), t in zip(rankings, targets)])), 2)
    return out


def evaluate(search: ComposedSearch, triplets: list[Triplet], method: str, weight: float = 0.5) -> dict:
    """CIRR metrics of a method over the complete triplets that have a target."""
    usable = [t for t in complete(triplets, search.service) if t.target]
    if not usable:
        raise QueryError("None of the triplets has its reference and target in this collection.")
    rows_by_id = search.service.collection.rows_by_id
    rankings = [rank_one(search.scores(t.reference, t.caption, method, weight), t, rows_by_id) for t in usable]
    return {"method": method, "weight": weight, "triplets": len(usable), "gallery": len(rows_by_id),
            **recalls(rankings, [t.target for t in usable])}


def submission(search: ComposedSearch, triplets: list[Triplet], method: str, weight: float = 0.5) -> tuple[dict, dict]:
    """The CIRR test server's two files: top 50 of the gallery and top 3 of the subset per pair."""
    rows_by_id = search.service.collection.rows_by_id
    recall, subset = {"version": "rc2", "metric": "recall"}, {"version": "rc2", "metric": "recall_subset"}
    for t in complete(triplets, search.service):
        order, members = rank_one(search.scores(t.reference, t.caption, method, weight), t, rows_by_id)
        recall[str(t.pairid)], subset[str(t.pairid)] = order[:50], members[:3]
    return recall, subset


@dataclass
class CombinerConfig:
    rounds: int = 2  # hard-negative rounds after the first, plain one
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-4
    hidden: int = 512
    negatives: int = 4
    seed: int = 0


def train_combiner(service: SearchService, triplets: list[Triplet], out: str | Path, config: CombinerConfig,
                   resume: bool = False, progress: bool = True) -> Path:
    """Train a combiner on triplets whose reference and target are in the collection: InfoNCE
    of the composed query against the batch's targets, plus, after round 0, the gallery images
    the current combiner ranks highest among the wrong ones (mined each round, saved)."""
    usable = [t for t in complete(triplets, service) if t.target]
    if not usable:
        raise QueryError("None of the triplets has its reference and target in this collection.")
    out = Path(out)
    rounds = Rounds(out.with_suffix(""), {"collection": str(service.collection.path), "triplets": len(usable),
                                          **asdict(config)}, resume)
    c = service.collection
    gallery = torch.from_numpy(np.array(c.image_emb))
    refs = torch.from_numpy(np.asarray(c.image_emb[[c.rows_by_id[t.reference] for t in usable]]))
    texts = torch.from_numpy(service.encoder.encode_texts([t.caption for t in usable]))
    targets = np.array([c.rows_by_id[t.target] for t in usable])
    ref_rows = np.array([c.rows_by_id[t.reference] for t in usable])

    torch.manual_seed(config.seed)
    model = Combiner(gallery.shape[1], config.hidden)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    rounds.restore(model, optimizer)
    rng = np.random.default_rng(config.seed + rounds.done)
    for r in range(rounds.done, config.rounds + 1):
        negatives = None
        if r > 0 and config.negatives:
            model.eval()
            with torch.no_grad():
                s = model(refs, texts) @ gallery.T
            model.train()
            s[np.arange(len(usable)), targets] = -torch.inf
            s[np.arange(len(usable)), ref_rows] = -torch.inf
            negatives = s.topk(min(config.negatives, len(gallery) - 2), dim=1).indices.numpy()
            rounds.save_negatives(r, negatives)
        losses = []
        for b in batches(rng, len(usable), config, f"round {r}", progress):
            candidates = np.unique(targets[b] if negatives is None else np.concatenate([targets[b], negatives[b].ravel()]))
            logits = model.logit_scale.exp().clamp(max=100) * model(refs[b], texts[b]) @ gallery[candidates].T
            loss = F.cross_entropy(logits, torch.from_numpy(np.searchsorted(candidates, targets[b])))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        rounds.finish({"round": r, "hard_negatives": negatives is not None,
                       "loss": round(float(np.mean(losses[-10:])), 4)}, model, optimizer)
    save_module(model, out, history=rounds.history)
    return out
