"""The `mosaic` command line: build, update, verify, search, eval, train, composed, humor, publish,
serve, info.

At import this module loads only the standard library and mosaic.errors: each command imports its
library (torch, models, gradio) when it runs, so `mosaic --help` answers at once."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .errors import MosaicError, UsageError

ARTIFACTS = Path(os.environ.get("MOSAIC_ARTIFACTS", "artifacts"))


def _humor_config_class() -> type:
    """HumorConfig: the defaults of `mosaic humor train` and the settings it passes on."""
    from .humor.config import HumorConfig

    return HumorConfig


# ---- commands: each turns its arguments into one call of the library and prints the answer ----
def cmd_build(args) -> None:
    from .build import BuildConfig, build

    options = {k: v for k, v in (("images", args.images), ("split", args.split)) if v}
    config = BuildConfig(source=args.source, path=args.path, limit=args.limit, seed=args.seed,
                         model=args.model, captioner=args.captioner, vocab=args.vocab,
                         shard_size=args.shard_size, batch_size=args.batch_size, annoy=args.annoy, options=options)
    out = args.out or ARTIFACTS / (args.name or Path(args.path or args.source).name)
    build(config, out, overwrite=args.overwrite, progress=not args.quiet, engine=args.engine, workers=args.workers,
          update=args.update)
    print(out)


def cmd_update(args) -> None:
    from .build import BuildConfig, build
    from .collection import Collection

    path = _collection_path(args.collection)
    settings = Collection.load(path).manifest.config
    config = BuildConfig(**{**settings, "limit": args.limit or settings["limit"]})
    build(config, path, progress=not args.quiet, update=True)
    changes = Collection.load(path).manifest.last_update
    print(f"{path}: {len(changes['added'])} added, {len(changes['changed'])} changed, "
          f"{len(changes['removed'])} removed, {changes['unchanged']} unchanged")


def cmd_dedup(args) -> None:
    from .collection import Collection

    c = Collection.load(_collection_path(args.collection))
    groups = c.duplicate_groups
    if args.json:
        print(json.dumps(groups, indent=2, ensure_ascii=False))
        return
    for kind, what in (("exact", "the same bytes"), ("near", "the same picture resized, re-encoded or edited")):
        print(f"{len(groups[kind])} group(s) of {kind} duplicates ({what})")
        for n, group in enumerate(groups[kind], 1):
            print(f"  {n:>3}. " + "  ".join(group))


def cmd_verify(args) -> None:
    from .collection import Collection

    c = Collection.load(_collection_path(args.collection))
    print(f"{c.name}: {len(c)} items; all {c.verify()} files match the checksums written when it was built")


def cmd_search(args) -> None:
    from .query import parse_filters, parse_tag_weights
    from .search import SearchService, sort_hits

    if args.ray and not args.shard_rows:
        raise UsageError("--ray holds index shards in Ray actors: give --shard-rows too.")
    filters, weights = parse_filters(args.filter), parse_tag_weights(args.tag)  # before any model loads
    service = SearchService(_collection_path(args.collection), index=args.index, precision=args.precision,
                            shard_rows=args.shard_rows, ray=args.ray, allow_files=True)
    page = {"offset": args.offset, "distinct": args.distinct}
    if args.image:
        hits = service.image_to_image(_image_or_id(args.image), args.k, filters, **page)
    elif weights or args.mode == "omni":
        hits = service.omni(args.text or "", args.k, filters, weights, **page)
    else:
        hits = service.text_to_image(args.text or "", args.k, args.mode, filters, **page)
    hits = sort_hits(service, hits, args.sort)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    print(f"{'rank':>4}  {'score':>7}  {'id':<32} caption / why")
    for rank, h in enumerate(hits, 1):
        why = ", ".join([w["word"] for w in h.explanation.get("query_words", [])[:2]]
                        + [f"{t['term']} {t['contribution']:+.2f}" for t in h.explanation.get("terms", [])])
        tags = ", ".join(t["tag"] for t in h.explanation.get("tags", []))
        print(f"{rank:>4}  {h.score:7.3f}  {h.id[:32]:<32} {h.caption}")
        if why or tags:
            print(f"{'':>47}why: {why}{' | ' if why and tags else ''}{tags}")


def _image_or_id(value: str):
    """An image file given on the command line, opened; anything else is an item id."""
    from .sources import read_query_image

    return read_query_image(value) if Path(value).is_file() else value


def _collection_path(name: str) -> Path | str:
    """A collection folder, a name under the artifacts folder, or hf://user/repo (kept as is)."""
    if name.startswith("hf://"):
        return name
    path = Path(name)
    return path if path.exists() or path.is_absolute() else ARTIFACTS / name


def cmd_info(args) -> None:
    from .collection import Collection

    c = Collection.load(_collection_path(args.collection))
    m = c.manifest
    print(json.dumps({"name": c.name, "models": m.models, "dim": m.dim, "counts": m.counts,
                      "filters": {k: v[:10] for k, v in c.filter_fields().items()},
                      "tags": c.tag_names, "skipped": m.skipped[:20]}, indent=2, ensure_ascii=False))


def cmd_eval(args) -> None:
    from .collection import Collection
    from .evaluate import METRICS, plot, retrieval, write_csv

    report = retrieval(Collection.load(_collection_path(args.collection)), args.split, args.candidates,
                       sweep=args.sweep or bool(args.plots))
    print(f"{report['collection']} ({report['model']}), {report['split']} split: {report['images']} images, "
          f"{report['captions']} captions, {report['candidates']} candidates per query")
    print(f"{'':<14}" + "".join(f"{m:>9}" for m in METRICS))
    for direction in ("t2i", "i2t"):
        for label, row in ((direction, report[direction]), (f"{direction} random", report["random"][direction])):
            print(f"{label:<14}" + "".join(f"{row[m]:>9}" for m in METRICS))
    for path, write in ((args.json, lambda p: p.write_text(json.dumps(report, indent=2) + "\n")),
                        (args.csv, lambda p: write_csv(report, p))):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
    if args.plots:
        for p in plot(report, args.plots):
            print(p)


def cmd_train(args) -> None:
    from .train import TrainConfig, train

    out = args.out or ARTIFACTS / "models" / f"{Path(args.collection).name}.pt"
    if out.suffix != ".pt":
        raise UsageError(f"--out {out} should end in .pt")
    config = TrainConfig(rounds=args.rounds, epochs=args.epochs, negatives=args.negatives, members=args.members,
                         seed=args.seed, mix_tolerance=args.mix_tolerance)
    print(train(_collection_path(args.collection), out, config, resume=args.resume, progress=not args.quiet))


def cmd_composed_search(args) -> None:
    from .composed import ComposedSearch
    from .search import SearchService

    search = ComposedSearch(SearchService(_collection_path(args.collection)), args.combiner)
    hits = search.search(_image_or_id(args.reference), args.text, args.method, args.k, args.weight)
    print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))


def cmd_composed_eval(args) -> None:
    from . import composed
    from .search import SearchService

    search = composed.ComposedSearch(SearchService(_collection_path(args.collection)), args.combiner)
    triplets = composed.load_cirr(args.cirr, args.split)
    if not args.submission:
        print(json.dumps(composed.evaluate(search, triplets, args.method, args.weight), indent=2))
        return
    args.submission.mkdir(parents=True, exist_ok=True)
    for name, data in zip(("recall", "recall_subset"), composed.submission(search, triplets, args.method, args.weight)):
        (args.submission / f"{args.split}_{args.method}_{name}.json").write_text(json.dumps(data))


def cmd_composed_train(args) -> None:
    from . import composed
    from .search import SearchService

    service = SearchService(_collection_path(args.collection))
    config = composed.CombinerConfig(rounds=args.rounds, epochs=args.epochs)
    print(composed.train_combiner(service, composed.load_cirr(args.cirr, args.split), args.out, config,
                                  resume=args.resume, progress=not args.quiet))


def _scale(text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition("-")
    try:
        if sep and float(lo) < float(hi):
            return float(lo), float(hi)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"'{text}' should look like 0-3")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' should be a whole number, 1 or more")
    return int(text)


def _columns(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        role, sep, name = p.partition("=")
        if not sep or role not in ("prompt", "answer", "score", "image"):
            raise UsageError(f"column '{p}' should look like prompt|answer|score|image=<column name>")
        out[role] = name
    return out


def _humor_data(spec: str, columns: dict, captioner: str, limit: int | None = None, need_scores: bool = True):
    from .humor.data import load_examples

    examples = load_examples(spec, captioner=captioner, need_scores=need_scores, **columns)
    return examples[:limit] if limit else examples


def cmd_humor_train(args) -> None:
    from .humor.data import recenter
    from .humor.train import train

    columns = _columns(args.columns)
    folder = Path(args.data)
    train_spec, dev_spec = (str(folder / "train.csv"), str(folder / "dev.csv")) if folder.is_dir() \
        else (args.data, args.dev)
    if not dev_spec:
        raise UsageError("give --dev, the data early stopping watches (or a folder with train.csv, dev.csv)")
    train_set = _humor_data(train_spec, columns, args.captioner, args.limit)
    dev_set = _humor_data(dev_spec, columns, args.captioner, args.dev_limit)
    for extra in args.extra or []:
        train_set += recenter(_humor_data(extra, columns, args.captioner), train_set, args.scale)
    config = _humor_config_class()(
        backbone=args.backbone, scale=args.scale, max_length=args.max_length, lora_r=args.lora_r,
        lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, lora_targets=args.lora_targets.split(","),
        lora_layers=args.lora_layers, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        patience=args.patience, members=args.members, seed=args.seed)
    data = {"train": train_spec, "dev": dev_spec, "extra": args.extra or [], "limit": args.limit, "columns": columns}
    history = train(train_set, dev_set, args.out, config, args.max_minutes, not args.quiet, data)
    print(f"{args.out}: dev RMSE {history['best_dev_rmse']:.4f} with {len(history['members'])} member(s) and the "
          f"ridge weighted {history['blend']:.2f} (predicting the training mean: "
          f"{history['dev_rmse_of_train_mean']:.4f}); stopped by {history['stopped']}")


def cmd_humor_eval(args) -> None:
    from .humor.evaluate import evaluate, report_text
    from .humor.model import HumorModel

    columns = _columns(args.columns)
    model = HumorModel.load(args.model)
    data = model.info["data"]  # the baselines are fitted on the model's own training data by default
    train_set = _humor_data(args.train or data["train"], data["columns"], args.captioner,
                            None if args.train else data["limit"])
    report = evaluate(model, _humor_data(args.data, columns, args.captioner, args.limit), train_set)
    print(report_text(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def cmd_humor_score(args) -> None:
    from .humor.evaluate import write_scores
    from .humor.model import HumorModel

    columns = _columns(args.columns)
    model = HumorModel.load(args.model)
    rows = _humor_data(args.data, columns, args.captioner, args.limit, need_scores=False)
    print(write_scores(model, rows, args.out or Path(args.data).with_suffix(".scores.csv"), args.explain))


def cmd_publish(args) -> None:
    from .publish import publish

    options = {} if args.what == "space" else {"license": args.license}
    if args.what == "captions":
        options.update(images=args.images, embeddings=args.embeddings)
    print(publish(args.what, str(_collection_path(args.collection)), args.repo, args.out, args.dry_run, **options))


def cmd_serve(args) -> None:
    from .app import serve

    trained = ARTIFACTS / "models" / "humor"
    humor = args.humor or (trained if (trained / "humor.json").exists() else None)
    serve([_collection_path(c) for c in args.collection] if args.collection else default_collections(),
          host=args.host, port=args.port, humor=humor, concurrency=args.concurrency, mcp=args.mcp or None)


def default_collections() -> list[Path]:
    """The bundled default collection (built on first use, no download), then every other
    finished collection under the artifacts folder."""
    from .build import BuildConfig, build
    from .collection import Manifest

    default = build(BuildConfig("skimage"), ARTIFACTS / "skimage")
    others = []
    for path in sorted(p for p in ARTIFACTS.iterdir() if p.is_dir() and p != default):
        m = Manifest.read(path)
        if m and not m.problem():
            others.append(path)
        elif m:
            logging.getLogger("mosaic").warning("not serving %s: %s", path.name, m.problem())
    return [default, *others]


# ---- the parser ----------------------------------------------------------------------------
# Defaults come from the config dataclasses (BuildConfig, TrainConfig, CombinerConfig, HumorConfig),
# whose modules import torch. So the parser lists every command with its one-line help but adds
# arguments (and imports a config) only for the command named on the command line: `mosaic --help`
# imports none of them, `mosaic build --help` only build's, and the help shows the real defaults.
def _add_quiet(p) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_build(p) -> None:
    from .build import ENGINES, BuildConfig
    from .sources import SOURCES

    d = BuildConfig(source="")
    p.add_argument("source", choices=list(SOURCES), help="what kind of source to read")
    p.add_argument("path", nargs="?", help="folder, file or Hub repo of the source")
    p.add_argument("--images", help="images folder (captions and COCO sources)")
    p.add_argument("--split", help="split (CIRR, COCO Karpathy, Hub datasets)")
    p.add_argument("--name", help="collection name (default: the source folder's name)")
    p.add_argument("--out", type=Path, help="output folder (default: artifacts/<name>)")
    p.add_argument("--limit", type=int, default=d.limit, help="read at most N records")
    p.add_argument("--seed", type=int, default=d.seed, help="with --limit: a seeded shuffle picks the records")
    p.add_argument("--model", default=d.model, help="dual encoder spec: auto, lite, lite:<checkpoint of `mosaic train`>, "
                                                    "open_clip:ViT-B-32/openai, hf:<repo> (default: %(default)s)")
    p.add_argument("--captioner", default=d.captioner,
                   help="captioner spec: auto, labels, blip:<repo>, none (default: %(default)s)")
    p.add_argument("--vocab", default=d.vocab,
                   help="tag vocabulary: art, driving, photos or a JSON file (default: the one for the source)")
    p.add_argument("--shard-size", type=int, default=d.shard_size,
                   help="records per shard, the unit a build writes and resumes from (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per model batch (default: %(default)s)")
    p.add_argument("--annoy", action="store_true", help="also write Annoy indexes (searched with `search --index annoy`)")
    p.add_argument("--engine", default=ENGINES[0], choices=ENGINES,
                   help="run the stages here, or in Ray actors (the cluster at $RAY_ADDRESS, else a local one)")
    p.add_argument("--workers", type=int, help="processes (threads off Linux) that read and decode images ahead of "
                   "the models (default: one per core with the model on a GPU, else one); with --engine ray: Ray "
                   "actors (default: one per CPU, or per GPU)")
    p.add_argument("--overwrite", action="store_true", help="rebuild from scratch")
    p.add_argument("--update", action="store_true", help="bring a finished collection up to date with its source: "
                                                         "new and changed images are computed, deleted ones dropped")
    _add_quiet(p)
    p.set_defaults(func=cmd_build)


def _add_update(p) -> None:
    p.add_argument("collection", help="collection folder or name under artifacts/")
    p.add_argument("--limit", type=int, help="read this many records now (a streamed source grows)")
    _add_quiet(p)
    p.set_defaults(func=cmd_update)


def _add_dedup(p) -> None:
    p.add_argument("collection", help="collection folder or name under artifacts/")
    p.add_argument("--json", action="store_true", help="print the groups as JSON")
    p.set_defaults(func=cmd_dedup)


def _add_verify(p) -> None:
    p.add_argument("collection", help="collection folder or name under artifacts/")
    p.set_defaults(func=cmd_verify)


def _add_search(p) -> None:
    p.add_argument("collection", help="collection folder or name under artifacts/")
    p.add_argument("text", nargs="?", help="text query")
    p.add_argument("--image", help="query image file, or the id of an item")
    p.add_argument("--mode", default="both", choices=["image", "caption", "both", "omni"],
                   help="text against image embeddings, captions, both, or omni (fused with tags) (default: %(default)s)")
    p.add_argument("--filter", action="append", metavar="FIELD=VALUE",
                   help="keep items with this value (repeat: values of one field OR'ed, fields AND'ed)")
    p.add_argument("--tag", action="append", metavar="CATEGORY:TAG=WEIGHT",
                   help="weigh a tag's score into the ranking, e.g. mood:calm=1 (repeated tags add up)")
    p.add_argument("-k", type=int, default=10, help="hits to show, 1 to 1000 (default: %(default)s)")
    p.add_argument("--offset", type=int, default=0, help="skip this many hits first: the next page (default: 0)")
    p.add_argument("--distinct", action="store_true", help="only the best of each group of duplicates (exact or near)")
    p.add_argument("--sort", metavar="FIELD", help="order the hits by a metadata field, e.g. taken (-taken: newest "
                                                   "first; default: by relevance)")
    p.add_argument("--index", default="auto", choices=["auto", "exact", "hnsw", "annoy"],
                   help="auto: exact, or the HNSW graphs over a large collection (default: %(default)s)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int4"],
                   help="of the exact index's stored embeddings (default: %(default)s)")
    p.add_argument("--shard-rows", type=int, help="exact indexes in shards of N rows, merged at query time")
    p.add_argument("--ray", action="store_true", help="with --shard-rows: shards held by Ray actors ($RAY_ADDRESS)")
    p.add_argument("--json", action="store_true", help="print hits as JSON")
    p.set_defaults(func=cmd_search)


def _add_eval(p) -> None:
    _add_commands(p, "what", {"retrieval": (
        "Recall@1/5/10, MRR, NDCG@10 both ways, human captions as ground truth", _add_eval_retrieval)})


def _add_eval_retrieval(p) -> None:
    p.add_argument("collection", help="a collection with human captions (e.g. built from Flickr8k)")
    p.add_argument("--split", default="all", choices=["all", "train", "test"],
                   help="the fixed split by image (test: 200 images chosen by id hash) (default: %(default)s)")
    p.add_argument("--candidates", type=int, help="candidates per query, ground truth included (default: all)")
    p.add_argument("--sweep", action="store_true", help="also pool sizes x precisions, PCA dims, Annoy settings")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--csv", type=Path, help="write the report as CSV rows")
    p.add_argument("--plots", type=Path, help="write PNG plots of the sweep to this folder (implies --sweep)")
    p.set_defaults(func=cmd_eval)


def _add_train(p) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    p.add_argument("collection", help="a collection with human captions (e.g. built from Flickr8k)")
    p.add_argument("--out", type=Path, help="checkpoint path (default: artifacts/models/<collection>.pt)")
    p.add_argument("--rounds", type=int, default=d.rounds,
                   help="hard-negative mining rounds after the first (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs per round (default: %(default)s)")
    p.add_argument("--negatives", type=int, default=d.negatives,
                   help="hard negatives mined per caption, 0: no mining (default: %(default)s)")
    p.add_argument("--members", type=int, default=d.members,
                   help="runs trained, each with its own seed; the checkpoint averages their scores (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the first run's heads and batches; run k has seed + k (default: %(default)s)")
    p.add_argument("--mix-tolerance", type=float, default=d.mix_tolerance,
                   help="validation points given up for a more zero-shot, more robust mix; 0 takes the "
                        "best-scoring mix (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue after the last finished round")
    _add_quiet(p)
    p.set_defaults(func=cmd_train)


# ---- composed ----
CIRR_COLLECTION = "a collection of the split's images (e.g. `mosaic build cirr ...`)"
COMPOSE_METHODS = ["sum", "slerp", "text", "combiner"]


def _add_composed(p) -> None:
    _add_commands(p, "what", {
        "search": ("one composed query", _add_composed_search),
        "eval": ("CIRR Recall@K and Recall_subset@K", _add_composed_eval),
        "train": ("train a combiner on CIRR triplets, with hard-negative rounds", _add_composed_train)})


def _add_composed_search(p) -> None:
    p.add_argument("collection", help=CIRR_COLLECTION)
    p.add_argument("reference", help="reference image file or item id")
    p.add_argument("text", help="the modification, e.g. 'the same dog but on a beach'")
    p.add_argument("-k", type=int, default=10, help="hits to show (default: %(default)s)")
    p.add_argument("--method", default="sum", choices=COMPOSE_METHODS, help="how to compose (default: %(default)s)")
    p.add_argument("--weight", type=float, default=0.5, help="text weight for sum and slerp (default: %(default)s)")
    p.add_argument("--combiner", type=Path, help="a trained combiner (for --method combiner)")
    p.set_defaults(func=cmd_composed_search)


def _add_composed_eval(p) -> None:
    p.add_argument("collection", help=CIRR_COLLECTION)
    p.add_argument("cirr", help="CIRR release folder (captions/cap.rc2.<split>.json)")
    p.add_argument("--split", default="val", help="CIRR split: val or test1 (default: %(default)s)")
    p.add_argument("--method", default="sum", choices=COMPOSE_METHODS, help="how to compose (default: %(default)s)")
    p.add_argument("--weight", type=float, default=0.5, help="text weight for sum and slerp (default: %(default)s)")
    p.add_argument("--combiner", type=Path, help="a trained combiner (for --method combiner)")
    p.add_argument("--submission", type=Path, help="write the CIRR test-server files here instead")
    p.set_defaults(func=cmd_composed_eval)


def _add_composed_train(p) -> None:
    from .composed import CombinerConfig

    d = CombinerConfig()
    p.add_argument("collection", help=CIRR_COLLECTION)
    p.add_argument("cirr", help="CIRR release folder (captions/cap.rc2.<split>.json)")
    p.add_argument("--split", default="train", help="CIRR split to train on (default: %(default)s)")
    p.add_argument("--out", type=Path, default=ARTIFACTS / "models" / "combiner.pt",
                   help="combiner checkpoint path (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=d.rounds, help="hard-negative rounds after the first (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs per round (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue after the last finished round")
    _add_quiet(p)
    p.set_defaults(func=cmd_composed_train)


# ---- humor ----
HUMOR_DATA = "CSV/TSV/JSON/JSONL file, hf://user/dataset[:split]"


def _add_humor(p) -> None:
    _add_commands(p, "what", {
        "train": ("train on rated (prompt, answer) pairs, early stopping on dev", _add_humor_train),
        "eval": ("RMSE, MAE, R^2, Pearson, Spearman, binned accuracy/F1, beside two baselines", _add_humor_eval),
        "score": ("score a file of (prompt, answer) rows", _add_humor_score)})


def _add_humor_data(p, data_help: str = HUMOR_DATA) -> None:
    """The data arguments every humor command reads."""
    p.add_argument("data", help=data_help)
    p.add_argument("--columns", action="append", metavar="ROLE=NAME",
                   help="column names when not prompt/answer/score/image, e.g. answer=caption")
    p.add_argument("--captioner", default="auto", help="captions image prompts: auto, labels, blip:<repo> (default: %(default)s)")
    p.add_argument("--limit", type=int, help="use the first N rows only")


def _add_humor_train(p) -> None:
    d = _humor_config_class()()
    _add_humor_data(p, HUMOR_DATA + ", or a folder with train.csv and dev.csv (Humicroedit)")
    p.add_argument("--dev", help="dev data for early stopping (default: <folder>/dev.csv)")
    p.add_argument("--dev-limit", type=int, help="use the first N dev rows only")
    p.add_argument("--extra", action="append", help="more training data, shifted to the main set's mean "
                                                    "(e.g. FunLines' train_funlines.csv)")
    p.add_argument("--out", type=Path, default=ARTIFACTS / "models" / "humor", help="model folder (default: %(default)s)")
    p.add_argument("--backbone", default=d.backbone, help="auto, minilm (offline) or hf:<repo> (default: %(default)s)")
    p.add_argument("--scale", type=_scale, default=d.scale,
                   help=f"score range, e.g. 0-4 (default: {d.scale[0]:g}-{d.scale[1]:g})")
    p.add_argument("--max-length", type=int, default=d.max_length,
                   help="tokens per prompt + answer pair (default: %(default)s)")
    p.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank (default: %(default)s)")
    p.add_argument("--lora-alpha", type=int, default=d.lora_alpha, help="LoRA scaling alpha (default: %(default)s)")
    p.add_argument("--lora-dropout", type=float, default=d.lora_dropout,
                   help="dropout on the adapters' input (default: %(default)s)")
    p.add_argument("--lora-targets", default=",".join(d.lora_targets),
                   help="module names, comma-separated (default: %(default)s)")
    p.add_argument("--lora-layers", type=int, default=d.lora_layers,
                   help="adapt the top N transformer layers only, 0: all (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate, one-cycle schedule (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pairs per training step (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="at most; training stops when dev RMSE stalls (default: %(default)s)")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="dev evaluations (one an epoch) without gain (default: %(default)s)")
    p.add_argument("--members", type=_positive, default=d.members,
                   help="cross-encoders (every second one reads pairs with the edit marked); their mean is blended "
                        "with a ridge on TF-IDF and embeddings, weighted on 10%% of the training rows held out "
                        "(default: %(default)s)")
    p.add_argument("--max-minutes", type=float, help="stop after this long, keeping the best adapter")
    p.add_argument("--seed", type=int, default=d.seed, help="the same seed trains the same model (default: %(default)s)")
    _add_quiet(p)
    p.set_defaults(func=cmd_humor_train)


def _add_humor_eval(p) -> None:
    p.add_argument("model", type=Path, help="a folder written by `mosaic humor train`")
    _add_humor_data(p)
    p.add_argument("--train", help="training data for the baselines (default: the model's own)")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.set_defaults(func=cmd_humor_eval)


def _add_humor_score(p) -> None:
    p.add_argument("model", type=Path, help="a folder written by `mosaic humor train`")
    _add_humor_data(p)
    p.add_argument("--out", type=Path, help="output CSV (default: <data>.scores.csv)")
    p.add_argument("--explain", action="store_true", help="add the three words that move each score most")
    p.set_defaults(func=cmd_humor_score)


# ---- publish ----
def _add_publish(p) -> None:
    _add_commands(p, "what", {
        "captions": ("a collection's generated captions as a dataset", _add_publish_captions),
        "collection": ("a whole collection, loadable as hf://user/repo", _add_publish_collection),
        "space": ("the app as a Gradio Space serving a collection", _add_publish_space)})


def _add_publish_target(p, collection_help: str = "collection folder or name") -> None:
    """What every publish command reads: the collection, and where it goes."""
    p.add_argument("collection", help=collection_help)
    p.add_argument("--repo", help="user/name of the Hub repository to create or update")
    p.add_argument("--dry-run", action="store_true", help="only write the files that would be uploaded")
    p.add_argument("--out", type=Path, help="folder for those files (needed with --dry-run)")
    p.set_defaults(func=cmd_publish)


def _add_publish_captions(p) -> None:
    _add_publish_target(p)
    p.add_argument("--license", help="license of the images, carried over to the card (default: the source Hub "
                                     "dataset's, else other)")
    p.add_argument("--images", action="store_true", help="include the previews (datasets Image feature)")
    p.add_argument("--embeddings", action="store_true", help="include the image embeddings")


def _add_publish_collection(p) -> None:
    _add_publish_target(p)
    p.add_argument("--license", help="license of the images, carried over to the card (default: the source Hub "
                                     "dataset's, else other)")


def _add_publish_space(p) -> None:
    _add_publish_target(p, "collection folder or name, or hf://user/repo")


def _add_serve(p) -> None:
    p.add_argument("--collection", action="append", help="collection folder or name (repeat for several)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    p.add_argument("--humor", type=Path, help="humor model folder (default: artifacts/models/humor when trained)")
    p.add_argument("--concurrency", type=int, help="requests served at once (default: one per CPU core)")
    p.add_argument("--mcp", action="store_true", help="also serve the searches as MCP tools at /gradio_api/mcp/ "
                                                      "(default: on when GRADIO_MCP_SERVER=true)")
    p.set_defaults(func=cmd_serve)


def _add_info(p) -> None:
    p.add_argument("collection", help="collection folder or name under artifacts/")
    p.set_defaults(func=cmd_info)


COMMANDS = {  # name: (one-line help, the function adding its arguments)
    "build": ("build (or resume) a collection from a source", _add_build),
    "update": ("bring a collection up to date with its source (new, changed and deleted images)", _add_update),
    "dedup": ("list the groups of exact and of near duplicates found when the collection was built", _add_dedup),
    "verify": ("check every file of a collection against the checksums written when it was built", _add_verify),
    "search": ("search a collection", _add_search),
    "eval": ("measure retrieval quality", _add_eval),
    "train": ("train the offline model's projection heads on a captions collection", _add_train),
    "composed": ("composed retrieval: reference image + modification text", _add_composed),
    "humor": ("humor scoring: a cross-encoder with LoRA rates answers to a prompt", _add_humor),
    "publish": ("push captions, a collection or the app to the Hugging Face Hub", _add_publish),
    "serve": ("start the app (default: the bundled collection and all built ones)", _add_serve),
    "info": ("describe a collection", _add_info),
}


def _add_commands(p, dest: str, commands: dict, only: str | None = None) -> None:
    """The subcommands of `p`, each listed with its one-line help; only the one named `only` gets
    its arguments (every one when `only` is None)."""
    sub = p.add_subparsers(dest=dest, required=True)
    for name, (text, add) in commands.items():
        command = sub.add_parser(name, help=text)
        if only is None or only == name:
            add(command)


def parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `mosaic` parser, with the arguments of the command `argv` names (of all commands when
    `argv` is None: slower, it imports every config)."""
    p = argparse.ArgumentParser(prog="mosaic", description="Multimodal search over image collections.")
    p.add_argument("--debug", action="store_true", help="on an error, show the full traceback instead of one line")
    # The top level has flags only, so its first word that is not an option names the command.
    named = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    _add_commands(p, "command", COMMANDS, named)
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mosaic` command: a user error (MosaicError) ends with one line
    `error: <message>` and exit status 1, Ctrl-C with one line and status 130; under --debug, both
    with their traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # "Loading faiss." is not news to a user
    args = parser(argv).parse_args(argv)
    try:
        args.func(args)
    except MosaicError as e:
        if args.debug:
            raise
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("stopped (a build, update or training run again goes on from where it stopped)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
