"""Humor scoring: cross-encoders with LoRA that rate how funny an answer is for a prompt.

Each cross-encoder (a member) reads `[CLS] prompt [SEP] answer [SEP]`, and a regression head on top
predicts the score's deviation from the training mean; only the LoRA adapters (peft, in the top
layers) and the heads are trained. Members differ in seed, and every second one reads the pairs
with the edit bracketed. The score is the members' mean blended with a ridge on TF-IDF and the
backbone's embeddings of the edit, the replaced words and the answer, weighted on training rows
held out from both. Backbones: `minilm` (offline: the packaged all-MiniLM-L6-v2) or `hf:<repo>`
(the online default is a Japanese reranker, meant for Bokete/Oogiri data); `auto` picks as the
other models do.

Data: the Humicroedit format (`original` with the replaced word marked `<word/>`, `edit`,
`grades`, `meanGrade`), or a generic table with `prompt` (text) or `image`, `answer` and `score`
columns, read from CSV, TSV, JSON, JSONL or `hf://user/dataset[:split]`. Image prompts are
captioned by the captioner, so the model always reads text.

    <out>/humor.json                  settings, scale, training mean, members, blend weight, data
          member-<k>/                 adapter_model.safetensors, adapter_config.json (peft),
                                      head.safetensors, history.json (dev RMSE, train loss)
          ridge.json                  the ridge as plain numbers (vocabularies, idf, weights)
          history.json, history.png   every member's training, held-out RMSEs, the model's dev RMSE
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import hub
from .errors import HubError, SourceError, UsageError
from .models import caption_images, resolve
from .sources import load_image
from .util import default_device, leave_one_out, mean_pool, save_figure, words, write_json

log = logging.getLogger("mosaic")

ONLINE_BACKBONE = "hf:hotchpotch/japanese-reranker-cross-encoder-large-v1"
OFFLINE_BACKBONE = "minilm"
MARKER = re.compile(r"<([^<>]*)/>")
CONFIG_FILE = "humor.json"
HEAD_FILE = "head.safetensors"
RIDGE_FILE = "ridge.json"


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    score: float | None = None


# ---- data ----------------------------------------------------------------------------------------
def read_rows(spec: str) -> list[dict]:
    """The rows of a CSV/TSV/JSON/JSONL file or of `hf://user/dataset[:split]` (default split train)."""
    if spec.startswith("hf://"):
        repo, _, split = spec[5:].partition(":")
        from datasets import load_dataset

        try:
            return list(load_dataset(hub.download_dataset(repo), split=split or "train"))
        except HubError:
            raise
        except Exception as e:  # noqa: BLE001 - surfaced as one clear message
            raise SourceError(f"Cannot read dataset '{repo}': {e}") from None
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"No such data file: {spec}")
    if path.suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))


def humicroedit_example(row: dict) -> Example | None:
    """prompt = the original headline, answer = it with the marked word replaced by the edit,
    score = meanGrade. FunLines rows whose `grades` is "0" lost their judges (their meanGrade 0
    is no rating) and are dropped; grades of 4 (off the 0-3 scale) are already left out of
    meanGrade, which is used as is."""
    original, edit = row["original"], row["edit"]
    if len(MARKER.findall(original)) != 1:
        raise SourceError(f"Humicroedit row {row.get('id')}: 'original' must mark exactly one word as <word/>.")
    if str(row.get("grades", "")).strip() == "0":
        return None
    grade = row.get("meanGrade")
    clean = lambda s: " ".join(s.split())  # noqa: E731
    return Example(clean(MARKER.sub(lambda m: m.group(1), original)),
                   clean(MARKER.sub(lambda m: edit, original)),
                   None if grade in (None, "") else float(grade))


def load_examples(spec: str, prompt: str = "prompt", answer: str = "answer", score: str = "score",
                  image: str = "image", captioner: str = "auto", need_scores: bool = True) -> list[Example]:
    """A dataset as examples; Humicroedit is recognised by its columns."""
    rows = read_rows(spec)
    if not rows:
        raise SourceError(f"{spec} has no rows.")
    columns = set(rows[0])
    if {"original", "edit"} <= columns:
        examples = [e for e in map(humicroedit_example, rows) if e is not None]
    else:
        if answer not in columns or not ({prompt, image} & columns):
            raise SourceError(f"{spec} needs an '{answer}' column and a '{prompt}' or '{image}' column "
                                 f"(it has: {', '.join(sorted(columns))}); name yours with --columns.")
        texts = [str(r.get(prompt) or "").strip() for r in rows]
        missing = [i for i, t in enumerate(texts) if not t]
        if any(not rows[i].get(image) for i in missing):
            raise SourceError(f"{spec}: row {next(i for i in missing if not rows[i].get(image)) + 1} has "
                                 f"neither a prompt ('{prompt}') nor an image ('{image}').")
        captions = caption_prompts([rows[i][image] for i in missing], Path(spec).parent, captioner)
        for i, caption in zip(missing, captions):
            texts[i] = caption
        examples = [Example(t, str(r[answer]).strip(), _score(r.get(score), spec, n))
                    for n, (t, r) in enumerate(zip(texts, rows), 1)]
    if need_scores and any(e.score is None for e in examples):
        raise SourceError(f"{spec}: every row needs a score (column '{score}') for training and evaluation.")
    return examples


def _score(value, spec: str, row: int) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{spec}: row {row} has the score {value!r}, not a number.") from None


def caption_prompts(values: list, root: Path, captioner: str) -> list[str]:
    """Captions for image prompts: paths (relative to the data file), PIL images or datasets
    Image values ({"bytes": ..., "path": ...})."""
    def located(value):
        if isinstance(value, dict) and not value.get("bytes"):
            value = value["path"]
        return root / value if isinstance(value, (str, Path)) else value
    return caption_images([load_image(located(v)) for v in values], captioner)


def recenter(extra: list[Example], main: list[Example], scale: tuple[float, float]) -> list[Example]:
    """Extra training data graded more generously (FunLines: mean 1.27 against Humicroedit's
    0.94) shifted to the main set's mean, so it adds signal without moving the predictions."""
    shift = np.mean([e.score for e in main]) - np.mean([e.score for e in extra])
    return [Example(e.prompt, e.answer, float(np.clip(e.score + shift, *scale))) for e in extra]


# ---- the model -----------------------------------------------------------------------------------
@dataclass
class HumorConfig:
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
    offset: float = 0.0  # the training mean; the heads predict the deviation from it


def backbone_path(spec: str) -> str:
    """Where transformers loads a backbone from: the packaged MiniLM, or a Hub repository."""
    if spec == OFFLINE_BACKBONE:
        from .models.lite import minilm_path

        return minilm_path()
    kind, _, repo = spec.partition(":")
    if kind != "hf" or not repo:
        raise UsageError(f"Unknown humor backbone '{spec}'. Use minilm, hf:<repo> or auto.")
    return repo


class TfidfRidge:
    """Ridge regression on TF-IDF of the answer and of its words missing from the prompt (for
    Humicroedit: the edit), the penalty picked by 5-fold cross-validation. Alone it is the classic
    baseline; a model's ridge also reads dense features (`HumorModel.embeddings`). Kept as plain
    numbers (`state`), so a model folder holds no pickles."""

    ANSWERS = {"ngram_range": (1, 2), "sublinear_tf": True}

    def __init__(self, state: dict):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.state = state
        self.answers = TfidfVectorizer(vocabulary=state["answers"]["vocabulary"], **self.ANSWERS)
        self.answers.idf_ = np.array(state["answers"]["idf"])
        self.edits = TfidfVectorizer(vocabulary=state["edits"]["vocabulary"])
        self.edits.idf_ = np.array(state["edits"]["idf"])

    @staticmethod
    def novel(prompt: str, answer: str) -> str:
        seen = set(words(prompt))
        return " ".join(w for w in words(answer) if w not in seen)

    @classmethod
    def fit(cls, examples: list[Example], dense: np.ndarray | None = None) -> TfidfRidge:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import RidgeCV

        answers = TfidfVectorizer(min_df=2, **cls.ANSWERS).fit([e.answer for e in examples])
        edits = TfidfVectorizer().fit([cls.novel(e.prompt, e.answer) for e in examples])
        state = {name: {"vocabulary": {t: int(i) for t, i in v.vocabulary_.items()}, "idf": v.idf_.tolist()}
                 for name, v in (("answers", answers), ("edits", edits))}
        model = cls({**state, "dense": 0 if dense is None else dense.shape[1], "coef": [], "intercept": 0.0})
        X = model.features([e.prompt for e in examples], [e.answer for e in examples], dense)
        ridge = RidgeCV(alphas=np.logspace(-1, 2, 8), cv=5).fit(X, [e.score for e in examples])
        model.state.update(coef=ridge.coef_.tolist(), intercept=float(ridge.intercept_))
        return model

    def features(self, prompts: list[str], answers: list[str], dense: np.ndarray | None = None):
        from scipy.sparse import csr_matrix, hstack

        edits = map(self.novel, prompts, answers)
        parts = [self.answers.transform(answers), self.edits.transform(edits)]
        return hstack(parts + ([] if dense is None else [csr_matrix(dense)])).tocsr()

    def predict(self, prompts: list[str], answers: list[str], dense: np.ndarray | None = None) -> np.ndarray:
        X = self.features(prompts, answers, dense)
        return X @ np.array(self.state["coef"]) + self.state["intercept"]


def blend(model: np.ndarray, ridge: np.ndarray, w: float) -> np.ndarray:
    """The members' mean and the ridge's scores mixed with the ridge weighted `w`."""
    return (1 - w) * model + w * ridge


def fit_blend(y: np.ndarray, model: np.ndarray, ridge: np.ndarray) -> float:
    """The ridge's weight w in (1 - w) model + w ridge with the least squared error, in [0, 1]."""
    d = model - ridge
    return float(np.clip(np.dot(d, model - y) / max(np.dot(d, d), 1e-12), 0, 1))


class HumorModel:
    """Cross-encoders that share a backbone: each member is a LoRA adapter whose token states,
    averaged, go through its own linear regression head. The score is the members' mean, blended
    with a ridge on TF-IDF and the backbone's embeddings when the folder has one."""

    def __init__(self, config: HumorConfig, folder: Path | None = None, members: list[dict] = (),
                 ridge: TfidfRidge | None = None, blend: float = 0.0, device: str | None = None):
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # the backbone's unused pooler is reported as a warning
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        config.backbone = resolve(config.backbone, ONLINE_BACKBONE, OFFLINE_BACKBONE)
        self.config, self.ridge, self.blend = config, ridge, blend
        self.device = device or default_device()
        path = backbone_path(config.backbone)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            base = AutoModel.from_pretrained(path, add_pooling_layer=False)
        except (OSError, ValueError) as e:
            raise hub.unavailable(f"Humor backbone '{config.backbone}'", e) from e
        self.heads = torch.nn.ModuleDict()
        self.members = list(members) or [{"folder": "default", "marked": False}]
        if not members:  # one new member to train
            n = base.config.num_hidden_layers
            layers = list(range(max(n - config.lora_layers, 0), n)) if config.lora_layers else None
            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=list(config.lora_targets), layers_to_transform=layers)
            self.body = get_peft_model(base, lora)
            # starts at zero: the first predictions are the training mean, and the adapter learns
            # only once the head has found a direction worth following
            self.heads["default"] = torch.nn.Linear(base.config.hidden_size, 1)
            torch.nn.init.zeros_(self.heads["default"].weight)
            torch.nn.init.zeros_(self.heads["default"].bias)
        else:
            from safetensors.torch import load_file

            for i, name in enumerate(m["folder"] for m in members):
                if i == 0:
                    self.body = PeftModel.from_pretrained(base, str(folder / name), adapter_name=name)
                else:
                    self.body.load_adapter(str(folder / name), adapter_name=name)
                self.heads[name] = torch.nn.Linear(base.config.hidden_size, 1)
                self.heads[name].load_state_dict(load_file(str(folder / name / HEAD_FILE)))
        self.body.to(self.device).eval()
        self.heads.to(self.device).eval()
        self.info: dict = {}  # a loaded model's humor.json and history.json

    @classmethod
    def load(cls, folder: str | Path, device: str | None = None) -> HumorModel:
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise SourceError(f"{folder} is not a humor model (no {CONFIG_FILE}); train one with `mosaic humor train`.")
        info = json.loads((folder / CONFIG_FILE).read_text())
        ridge = TfidfRidge(json.loads((folder / RIDGE_FILE).read_text())) if (folder / RIDGE_FILE).exists() else None
        model = cls(HumorConfig(**info["config"]), folder, info["members"], ridge, info["blend"], device)
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
        return self.heads[self.body.active_adapter](self.pooled(pairs))[:, 0] + self.config.offset

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
        return (head(self.states(ids))[:, 0] + self.config.offset).cpu().numpy()

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


# ---- training ------------------------------------------------------------------------------------
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


def mark_edit(prompt: str, answer: str) -> tuple[str, str]:
    """The pair with the words where it differs bracketed in both (Humicroedit: the replaced word
    and its edit), so a member sees what changed; pairs with no word in common stay as they are."""
    p, a = prompt.split(), answer.split()
    n, head, tail = min(len(p), len(a)), 0, 0
    while head < n and p[head] == a[head]:
        head += 1
    while tail < n - head and p[-1 - tail] == a[-1 - tail]:
        tail += 1
    if head + tail == 0 or p == a:
        return prompt, answer
    wrap = lambda w: " ".join(w[:head] + ["[" + " ".join(w[head:len(w) - tail]) + "]"] + w[len(w) - tail:])  # noqa: E731
    return wrap(p), wrap(a)


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
    order = np.random.default_rng(config.seed).permutation(len(train_set))
    held = order[:round(len(order) * config.blend_share)]
    rows = order[len(held):]
    if len(rows) < 5 or (config.blend_share and len(held) < 2):
        raise SourceError(f"{len(train_set)} training rows are too few to train on and hold "
                             f"{config.blend_share:.0%} out.")
    config.offset = float(np.mean([train_set[i].score for i in rows]))
    prompts, answers = [e.prompt for e in train_set], [e.answer for e in train_set]
    dev_prompts, dev_answers = [e.prompt for e in dev_set], [e.answer for e in dev_set]
    y = np.array([e.score for e in train_set], np.float32)
    dev_y = np.array([e.score for e in dev_set], np.float32)
    deadline = None if max_minutes is None else time.time() + max_minutes * 60
    history = {"dev_rmse_of_train_mean": rmse(dev_y, np.full_like(dev_y, config.offset)), "members": []}
    members, dev_scores, held_scores, ids, start = [], [], [], {}, time.time()

    def save(w: float, ridge_dev: np.ndarray | None = None) -> None:
        final = np.mean(dev_scores, 0)
        if w:
            final = blend(final, ridge_dev, w)
        history.update(blend=w, best_dev_rmse=rmse(dev_y, np.clip(final, *config.scale)),
                       minutes=round((time.time() - start) / 60, 2))
        write_json(out / "history.json", history)
        write_json(out / CONFIG_FILE, {"config": asdict(config), "data": data or {}, "members": members,
                                       "blend": w, "dev_rmse": history["best_dev_rmse"]})

    for k in range(config.members):
        name, marked = f"member-{k + 1}", k % 2 == 1
        torch.manual_seed(config.seed + k)  # the adapter's initial weights, then dropout
        model = HumorModel(config)
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
        log.info("humor: the ridge, on TF-IDF and embeddings of %d training rows", len(rows))
        dense = model.embeddings(prompts, answers)
        ridge = TfidfRidge.fit([train_set[i] for i in rows], dense[rows])
        mean, ridge_held = np.mean(held_scores, 0), ridge.predict(prompts, answers, dense)[held]
        w = fit_blend(y[held], mean, ridge_held)
        history["held_out"] = {"rows": len(held), "cross-encoders": rmse(y[held], mean),
                               "ridge": rmse(y[held], ridge_held), "blend": rmse(y[held], blend(mean, ridge_held, w))}
        write_json(out / RIDGE_FILE, ridge.state)
        save(w, ridge.predict(dev_prompts, dev_answers, model.embeddings(dev_prompts, dev_answers)))
    history["stopped"] = history["members"][-1]["stopped"]
    write_json(out / "history.json", history)
    plot_history(history, out / "history.png")
    return history


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


# ---- evaluation ----------------------------------------------------------------------------------
def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(p)) ** 2)))


def metrics(y: np.ndarray, p: np.ndarray, scale: tuple[float, float]) -> dict:
    """Regression errors and correlations; then both sides rounded to the scale's whole grades
    (Humicroedit: 0 not funny .. 3 funny) for accuracy, macro F1 and a confusion matrix."""
    from scipy.stats import pearsonr, spearmanr

    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    flat = np.ptp(p) == 0 or np.ptp(y) == 0
    grades = np.arange(math.ceil(scale[0]), math.floor(scale[1]) + 1)
    yc = np.clip(np.rint(y), grades[0], grades[-1]).astype(int) - grades[0]
    pc = np.clip(np.rint(p), grades[0], grades[-1]).astype(int) - grades[0]
    confusion = np.zeros((len(grades), len(grades)), int)
    np.add.at(confusion, (yc, pc), 1)
    f1s = []
    for g in range(len(grades)):
        tp, fp, fn = confusion[g, g], confusion[:, g].sum() - confusion[g, g], confusion[g].sum() - confusion[g, g]
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"rmse": rmse(y, p), "mae": float(np.mean(np.abs(y - p))),
            "r2": float(1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)),
            "pearson": 0.0 if flat else float(pearsonr(y, p)[0]),
            "spearman": 0.0 if flat else float(spearmanr(y, p)[0]),
            "accuracy": float(np.trace(confusion) / len(y)), "macro_f1": float(np.mean(f1s)),
            "grades": grades.tolist(), "confusion": confusion.tolist()}


def evaluate(model: HumorModel, test_set: list[Example], train_set: list[Example]) -> dict:
    """The model's metrics on `test_set`, each member's and their mean's when there are several,
    beside the two baselines fitted on `train_set`; and how its training went."""
    scale = model.config.scale
    y = np.array([e.score for e in test_set])
    prompts, answers = [e.prompt for e in test_set], [e.answer for e in test_set]
    members, ridge = model.member_scores(prompts, answers), model.ridge_scores(prompts, answers)
    predictions = {"model": model.blended(members.mean(0), ridge)}
    if ridge is not None or len(members) > 1:
        predictions["cross-encoders"] = np.clip(members.mean(0), *scale)
    if len(members) > 1:
        predictions.update({f"member {k}": np.clip(m, *scale) for k, m in enumerate(members, 1)})
    if ridge is not None:
        predictions["tf-idf+emb ridge"] = np.clip(ridge, *scale)
    predictions["train mean"] = np.full(len(y), np.mean([e.score for e in train_set]))
    predictions["tf-idf + ridge"] = np.clip(TfidfRidge.fit(train_set).predict(prompts, answers), *scale)
    history = model.info.get("history", {})
    return {"examples": len(y), "scale": list(scale), "backbone": model.config.backbone,
            "results": {name: metrics(y, p, scale) for name, p in predictions.items()},
            "training": {"config": asdict(model.config), "data": model.info.get("data"), "blend": model.blend,
                         **{k: history.get(k) for k in ("best_dev_rmse", "held_out", "stopped", "minutes")}}}


def write_scores(model: HumorModel, examples: list[Example], out: Path, explain: bool = False) -> Path:
    """A CSV of prompt, answer, score (and, with `explain`, the three words that move it most)."""
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", "answer", "score"] + (["words"] if explain else []))
        if explain:
            for e in examples:
                score, parts = model.explain(e.prompt, e.answer)
                top = sorted(parts, key=lambda w: -abs(w["contribution"]))[:3]
                writer.writerow([e.prompt, e.answer, f"{score:.4f}",
                                 " ".join(f"{w['word']}:{w['contribution']:+.3f}" for w in top)])
        else:
            scores = model.predict([e.prompt for e in examples], [e.answer for e in examples])
            writer.writerows([e.prompt, e.answer, f"{s:.4f}"] for e, s in zip(examples, scores))
    return out


def report_text(report: dict) -> str:
    """The metrics as a table, then each system's confusion matrix (rows: true grade)."""
    keys = ["rmse", "mae", "r2", "pearson", "spearman", "accuracy", "macro_f1"]
    lines = [f"{report['examples']} examples, scale {report['scale'][0]:g}-{report['scale'][1]:g}",
             f"{'system':<16}" + "".join(f"{k:>10}" for k in keys)]
    for name, m in report["results"].items():
        lines.append(f"{name:<16}" + "".join(f"{m[k]:>10.4f}" for k in keys))
    for name, m in report["results"].items():
        lines.append(f"\nconfusion matrix, {name} (rows: true grade, columns: predicted; grades rounded)")
        lines.append("      " + "".join(f"{g:>7}" for g in m["grades"]))
        lines += [f"{g:>6}" + "".join(f"{c:>7}" for c in row) for g, row in zip(m["grades"], m["confusion"])]
    return "\n".join(lines)
