"""LoRA on the MiniLM text tower (peft), against the frozen tower, in domain and out of domain.

Both models train the same heads with the same schedule (one round of in-batch negatives, no
mining) on the Flickr8k sample's frozen image features. The LoRA model also trains rank-8 adapters
on the query and value projections of MiniLM's top two layers, so its caption embeddings move too.
Both are scored as heads alone and mixed with the zero-shot model (the mix chosen on the
validation images, as `mosaic train` does; the zero-shot text side is the frozen MiniLM), on the
fixed split's 200 test images, the dog subject split (training never sees a dog, see
training_schedules.py), scikit-image's 17 photos and the 30 WikiArt paintings.

    python bench/text_lora.py   -> bench/results/text_lora.{json,md}
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from training_schedules import DATA, RESULTS, SUBJECTS, WORK, subject_split, wikiart_features

EPOCHS = 3
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"], "layers_to_transform": [4, 5]}


class LoraText(torch.nn.Module):
    """MiniLM with LoRA adapters; `frozen` embeds with the adapters switched off (the zero-shot tower)."""

    def __init__(self):
        super().__init__()
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel, AutoTokenizer

        from mosaic.models.lite import minilm_path

        self.tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        self.model = get_peft_model(AutoModel.from_pretrained(minilm_path()), LoraConfig(**LORA))

    def forward(self, texts: list[str]) -> torch.Tensor:
        from mosaic.util import mean_pool

        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        return F.normalize(mean_pool(self.model(**tok).last_hidden_state, tok["attention_mask"]), dim=-1)

    @torch.no_grad()
    def embed(self, texts: list[str], frozen: bool = False) -> torch.Tensor:
        was = self.training
        self.eval()
        if frozen:
            with self.model.disable_adapter():
                out = torch.cat([self(texts[i:i + 256]) for i in range(0, len(texts), 256)])
        else:
            out = torch.cat([self(texts[i:i + 256]) for i in range(0, len(texts), 256)])
        self.train(was)
        return out


def fit(feats: dict, captions: list[str], train_rows: np.ndarray, lora: bool, seed: int = 0):
    """Heads (and adapters when `lora`) trained for EPOCHS on the captions of `train_rows`."""
    from mosaic.models.lite import Heads
    from mosaic.train import TrainConfig, batches, info_nce

    config = TrainConfig(rounds=0, epochs=EPOCHS, negatives=0)
    torch.manual_seed(seed)
    images, owner = torch.from_numpy(feats["images"]), feats["owner"]
    heads = Heads(images.shape[1], feats["texts"].shape[1], config.dim, config.hidden)
    heads.image_mean.copy_(images[train_rows].mean(0))
    heads.image_std.copy_(images[train_rows].std(0) + 1e-6)
    text = LoraText() if lora else None
    params = [{"params": heads.parameters(), "lr": config.lr}]
    if text:
        params.append({"params": [p for p in text.parameters() if p.requires_grad], "lr": 1e-4})
    optimizer = torch.optim.AdamW(params, weight_decay=config.weight_decay)
    caps = np.flatnonzero(np.isin(owner, train_rows))
    frozen = torch.from_numpy(feats["texts"])
    for batch in batches(np.random.default_rng(seed), len(caps), config, "lora" if lora else "frozen", True):
        rows = caps[batch]
        texts = text([captions[i] for i in rows]) if text else frozen[rows]
        loss = info_nce(heads, images, texts, owner[rows], None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    heads.eval()
    return heads, text


def scores(heads, check: dict, mix: float) -> list[float]:
    """t2i R@1, R@10, i2t R@1, R@10 at `mix` on a check: image features, frozen and tuned caption
    embeddings, owners and the item rows to score."""
    from mosaic.evaluate import Pairs, directions
    from mosaic.models.lite import Ensemble

    with torch.no_grad():
        images = Ensemble.of([heads], mix).embed_images(torch.from_numpy(check["images"]))
        frozen = torch.from_numpy(check["texts"])
        trained = F.normalize(heads.text(check["tuned"]), dim=-1)
        texts = trained if mix >= 1 else torch.cat([trained * mix ** 0.5, frozen * (1 - mix) ** 0.5], dim=-1)
    report = directions(Pairs.of_items(images.numpy(), texts.numpy(), check["owner"], check["rows"]))
    return [report[d][m] for d in ("t2i", "i2t") for m in ("R@1", "R@10")]


def with_tuned(text, check: dict) -> dict:
    """The check with its captions embedded by the tuned text tower (the frozen one without LoRA)."""
    return {**check, "tuned": text.embed(check["captions"]) if text else torch.from_numpy(check["texts"])}


def choose(heads, check: dict, tolerance: float = 2.0) -> float:
    """`mosaic train`'s rule: the most zero-shot mix within `tolerance` of the best validation score."""
    from mosaic.train import MIXES

    tried = [(float(m), float(np.mean(scores(heads, check, float(m))))) for m in MIXES]
    best = max(s for _, s in tried)
    return next(m for m, s in tried if s >= best - tolerance)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(os.cpu_count() or 1)
    from mosaic.collection import Collection
    from mosaic.evaluate import split_rows
    from mosaic.sources import skimage_photos
    from mosaic.train import TrainConfig, ood_features, validation_rows

    c = Collection.load(WORK / "flickr8k")
    feats = dict(np.load(WORK / "models" / "flickr8k" / "features.npz"))
    texts = c.captions["text"].to_pylist()
    captions = [texts[i] for i in c.human_captions]
    flickr = {**feats, "captions": captions}
    art = list(csv.DictReader(open(DATA / "wikiart-30" / "metadata.csv", encoding="utf-8")))
    skimage = {**ood_features(WORK / "models" / "flickr8k"), "captions": [p.texts[0] for p in skimage_photos()]}
    wikiart = {**wikiart_features(), "captions": [a["title"] for a in art]}
    for small in (skimage, wikiart):
        small["owner"] = small["rows"] = np.arange(len(small["images"]))
    splits = {"fixed": (split_rows(c.ids(), "train"), split_rows(c.ids(), "test")), "dogs": subject_split(c, SUBJECTS["dogs"])}
    results = {}
    for lora in (False, True):
        name = "LoRA on MiniLM" if lora else "frozen MiniLM"
        for key, (train_rows, test_rows) in splits.items():
            val = validation_rows(c.ids(), train_rows, TrainConfig().validation)
            heads, text = fit(feats, captions, np.setdiff1d(train_rows, val), lora)
            flickr_t, skimage_t, wikiart_t = (with_tuned(text, d) for d in (flickr, skimage, wikiart))
            mix = choose(heads, {**flickr_t, "rows": val})
            checks = {"dogs held out": {**flickr_t, "rows": test_rows}} if key == "dogs" else {
                "in domain": {**flickr_t, "rows": test_rows}, "skimage": skimage_t, "WikiArt": wikiart_t}
            for label, m in (("heads alone", 1.0), ("mixed", mix)):
                row = results.setdefault(f"{name}, {label}", {})
                row[f"mix {key}"] = m
                for check, data in checks.items():
                    row[check] = scores(heads, data, m)
    write(results)


def write(results: dict) -> None:
    checks = ("in domain", "dogs held out", "skimage", "WikiArt")
    lines = ["| model | " + " | ".join(f"{c} t2i R@1 / R@10 | i2t R@1 / R@10" for c in checks) + " |",
             "|---|" + "---|" * (2 * len(checks))]
    for name, r in results.items():
        lines.append(f"| {name} (mix {r['mix fixed']} / {r['mix dogs']}) | " + " | ".join(
            f"{r[c][0]:.1f} / {r[c][1]:.1f} | {r[c][2]:.1f} / {r[c][3]:.1f}" for c in checks) + " |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "text_lora.md").write_text(__doc__.split("\n\n")[1] + f"\n\n{EPOCHS} epochs; recalls in %.\n\n" + table + "\n")
    (RESULTS / "text_lora.json").write_text(json.dumps({"epochs": EPOCHS, "lora": LORA, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
