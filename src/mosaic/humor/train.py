"""Training a humor model: its members one by one with early stopping, then the ridge and the
blend weight on held-out training rows."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..errors import SourceError, UsageError
from ..util import save_figure, write_json
from .config import CONFIG_FILE, RIDGE_FILE, HumorConfig
from .data import Example
from .evaluate import rmse
from .model import HumorModel
from .ridge import TfidfRidge, blend, fit_blend

log = logging.getLogger("mosaic")


def length_batches(lengths: list[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar lengths: shuffle, sort within windows of 50 batches, cut,
    shuffle the batches. Padding shrinks to a few tokens per batch."""
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    for lo in range(0, len(order), window):
        chunk = order[lo:lo + window]
        order[lo:lo + window] = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
    batches = [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train(train_set: list[Example], dev_set: list[Example], out: str | Path, config: HumorConfig,
          max_minutes: float | None = None, progress: bool = True, data: dict | None = None) -> dict:
    """Train `config.members` cross-encoders (different seeds; every second one reads the pairs with
    the edit marked), each with early stopping on `dev_set`. `blend_share` of `train_set` is held
    out: the members' mean and a ridge (TF-IDF and the backbone's embeddings) fitted on the other
    rows are blended with the weight that fits the held-out rows best. The folder is a usable
    model after every member, so a stopped run keeps what it finished."""
    out = Path(out)
    if (out / CONFIG_FILE).exists():
        raise UsageError(f"{out} already holds a humor model: remove it or choose another --out.")
    rows, held = _hold_out(len(train_set), config)
    offset = float(np.mean([train_set[i].score for i in rows]))  # the heads predict the deviation from it
    prompts, answers = [e.prompt for e in train_set], [e.answer for e in train_set]
    dev_prompts, dev_answers = [e.prompt for e in dev_set], [e.answer for e in dev_set]
    y = np.array([e.score for e in train_set], np.float32)
    dev_y = np.array([e.score for e in dev_set], np.float32)
    deadline = None if max_minutes is None else time.time() + max_minutes * 60
    history = {"dev_rmse_of_train_mean": rmse(dev_y, np.full_like(dev_y, offset)), "members": []}
    members, dev_scores, held_scores, ids, start = [], [], [], {}, time.time()

    def save(w: float, ridge_dev: np.ndarray | None = None) -> None:
        final = np.mean(dev_scores, 0)
        if w:
            final = blend(final, ridge_dev, w)
        history.update(blend=w, best_dev_rmse=rmse(dev_y, np.clip(final, *config.scale)),
                       minutes=round((time.time() - start) / 60, 2))
        write_json(out / "history.json", history)
        write_json(out / CONFIG_FILE, {"config": asdict(config), "offset": offset, "data": data or {},
                                       "members": members, "blend": w, "dev_rmse": history["best_dev_rmse"]})

    for k in range(config.members):
        name, marked = f"member-{k + 1}", k % 2 == 1
        torch.manual_seed(config.seed + k)  # the adapter's initial weights, then dropout
        model = HumorModel.new(config, offset=offset)
        config = model.config  # `auto` resolved once; humor.json names the backbone used
        if marked not in ids:
            ids[marked] = model.tokenize(prompts, answers, marked), model.tokenize(dev_prompts, dev_answers, marked)
        pairs, dev_ids = ids[marked]
        log.info("humor: %s of %d%s, %d training and %d dev examples, backbone %s", name, config.members,
                 " (edit marked)" if marked else "", len(rows), len(dev_ids), config.backbone)
        member, scores = train_member(model, [pairs[i] for i in rows], y[rows], dev_ids, dev_y, out / name,
                                      config, config.seed + k, deadline, progress, name)
        history["members"].append(member)
        members.append({"folder": name, "marked": marked})
        dev_scores.append(scores)
        held_scores.append(model.scores([pairs[i] for i in held]))
        save(0.0)
        if member["stopped"] == "time":
            break
    if len(held):
        ridge, w, history["held_out"] = _fit_ridge(model, train_set, rows, held, np.mean(held_scores, 0))
        write_json(out / RIDGE_FILE, ridge.state)
        save(w, ridge.predict(dev_prompts, dev_answers, model.embeddings(dev_prompts, dev_answers)))
    history["stopped"] = history["members"][-1]["stopped"]
    write_json(out / "history.json", history)
    plot_history(history, out / "history.png")
    return history


def _hold_out(n: int, config: HumorConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training rows the members and the ridge learn from, and the `blend_share` of the `n`
    rows held out to weigh them (a permutation seeded by `config.seed`)."""
    order = np.random.default_rng(config.seed).permutation(n)
    held = order[:round(n * config.blend_share)]
    rows = order[len(held):]
    if len(rows) < 5 or (config.blend_share and len(held) < 2):
        raise SourceError(f"{n} training rows are too few to train on and hold {config.blend_share:.0%} out.")
    return rows, held


def _fit_ridge(model: HumorModel, train_set: list[Example], rows: np.ndarray, held: np.ndarray,
               held_mean: np.ndarray) -> tuple[TfidfRidge, float, dict]:
    """The ridge on TF-IDF and the model's embeddings of the training `rows`, its weight against
    the members' mean scores `held_mean` of the `held` rows, and the held-out RMSEs of both and
    of their blend."""
    log.info("humor: the ridge, on TF-IDF and embeddings of %d training rows", len(rows))
    prompts, answers = [e.prompt for e in train_set], [e.answer for e in train_set]
    y = np.array([e.score for e in train_set], np.float32)[held]
    dense = model.embeddings(prompts, answers)
    ridge = TfidfRidge.fit([train_set[i] for i in rows], dense[rows])
    ridge_held = ridge.predict(prompts, answers, dense)[held]
    w = fit_blend(y, held_mean, ridge_held)
    return ridge, w, {"rows": len(held), "cross-encoders": rmse(y, held_mean), "ridge": rmse(y, ridge_held),
                      "blend": rmse(y, blend(held_mean, ridge_held, w))}


def train_member(model: HumorModel, ids: list[dict], y: np.ndarray, dev_ids: list[dict], dev_y: np.ndarray,
                 folder: Path, config: HumorConfig, seed: int, deadline: float | None, progress: bool,
                 name: str) -> tuple[dict, np.ndarray]:
    """Fit one member's adapter and head, evaluating on dev `evals_per_epoch` times an epoch;
    its best state so far is always on disk, and in `model` when it returns. Returns its history
    and its best dev scores (unclipped)."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    y = torch.tensor(y)
    params = model.parameters()
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(ids) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps, pct_start=0.1)
    history = {"evaluations": []}
    best, best_state, best_scores, waited, start, step, losses, stop = math.inf, None, None, 0, time.time(), 0, [], None
    for epoch in range(config.epochs):
        batches = length_batches([len(x["input_ids"]) for x in ids], config.batch_size, rng)
        checkpoints = {round(len(batches) * (i + 1) / config.evals_per_epoch) for i in range(config.evals_per_epoch)}
        model.train_mode(True)
        bar = tqdm(batches, desc=f"{name} epoch {epoch + 1}/{config.epochs}", disable=not progress)
        for i, rows in enumerate(bar, 1):
            loss = torch.nn.functional.mse_loss(model.forward([ids[j] for j in rows]), y[rows].to(model.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
            if deadline is not None and time.time() > deadline:
                stop = "time"
            if i not in checkpoints and not stop:
                continue
            scores = model.scores(dev_ids)
            score = rmse(dev_y, np.clip(scores, *config.scale))
            model.train_mode(True)
            history["evaluations"].append({"epoch": round(epoch + i / len(batches), 3), "step": step,
                                           "train_loss": float(np.mean(losses)), "dev_rmse": score,
                                           "minutes": round((time.time() - start) / 60, 2)})
            losses = []
            log.info("humor: %s epoch %.2f dev RMSE %.4f", name, epoch + i / len(batches), score)
            if score < best:
                best, best_scores, waited = score, scores, 0
                best_state = [p.detach().clone() for p in params]
                model.save_member(folder)
            else:
                waited += 1
            write_json(folder / "history.json", history)
            if waited >= config.patience:
                stop = stop or "patience"
            if stop:
                break
        if stop:
            break
    with torch.no_grad():
        for p, b in zip(params, best_state):
            p.copy_(b)
    history.update(best_dev_rmse=best, stopped=stop or "epochs")
    write_json(folder / "history.json", history)
    return history, best_scores


def plot_history(history: dict, path: Path) -> None:
    """Each member's dev RMSE and running train RMSE by epoch, beside the model's dev RMSE and
    the training mean's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, member in enumerate(history["members"], 1):
        ev = member["evaluations"]
        x = [e["epoch"] for e in ev]
        line, = ax.plot(x, [e["dev_rmse"] for e in ev], "o-", label=f"member {k}: dev RMSE")
        ax.plot(x, [math.sqrt(e["train_loss"]) for e in ev], "s--", color=line.get_color(), alpha=0.5,
                label=f"member {k}: train RMSE (running)")
    ax.axhline(history["best_dev_rmse"], color="black", label="dev RMSE, the model")
    ax.axhline(history["dev_rmse_of_train_mean"], color="grey", ls=":", label="dev RMSE, predicting the mean")
    ax.set(xlabel="epoch", ylabel="RMSE")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)
