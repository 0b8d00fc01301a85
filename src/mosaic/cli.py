"""The `mosaic` command line: build, search, eval, train, serve, info."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .humor.config import HumorConfig
from .sources import SOURCES

ARTIFACTS = Path(os.environ.get("MOSAIC_ARTIFACTS", "artifacts"))


def _filters(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: filter '{p}' should look like field=value (e.g. style=Romanticism)")
        out[key] = value
    return out


def _weights(pairs: list[str]) -> dict:
    out = {}
    for p in pairs or []:
        tag, sep, w = p.rpartition("=")
        try:
            out[tag] = float(w)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"error: tag weight '{p}' should look like category:tag=weight (e.g. mood:calm=1)")
    return out


def cmd_build(args) -> None:
    from .build import BuildConfig, build

    if args.workers and args.engine != "ray":
        raise SystemExit("error: --workers sets the number of Ray actors: use it with --engine ray.")
    options = {k: v for k, v in (("images", args.images), ("split", args.split)) if v}
    config = BuildConfig(source=args.source, path=args.path, limit=args.limit, seed=args.seed,
                         model=args.model, captioner=args.captioner, vocab=args.vocab,
                         shard_size=args.shard_size, batch_size=args.batch_size, options=options)
    out = args.out or ARTIFACTS / (args.name or Path(args.path or args.source).name)
    build(config, out, overwrite=args.overwrite, progress=not args.quiet, engine=args.engine, workers=args.workers)
    print(out)


def cmd_search(args) -> None:
    from .search import SearchService

    if args.ray and not args.shard_rows:
        raise SystemExit("error: --ray holds index shards in Ray actors: give --shard-rows too.")
    service = SearchService(_collection_path(args.collection), index=args.index, precision=args.precision,
                            shard_rows=args.shard_rows, ray=args.ray)
    filters, weights = _filters(args.filter), _weights(args.tag)
    if args.image:
        hits = service.image_to_image(_image_or_id(args.image), args.k, filters)
    elif weights or args.mode == "omni":
        hits = service.omni(args.text or "", args.k, filters, weights)
    else:
        hits = service.text_to_image(args.text or "", args.k, args.mode, filters)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    print(f"{'rank':>4}  {'score':>7}  {'id':<32} caption / why")
    for rank, h in enumerate(hits, 1):
        why = ", ".join(w["word"] for w in h.explanation.get("query_words", [])[:2])
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
    print(json.dumps({"name": c.name, "models": m["models"], "dim": m["dim"], "counts": m["counts"],
                      "filters": {k: v[:10] for k, v in c.filter_fields().items()},
                      "tags": c.tag_names, "skipped": m["skipped"][:20]}, indent=2, ensure_ascii=False))


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
        raise SystemExit(f"error: --out {out} should end in .pt")
    config = TrainConfig(rounds=args.rounds, epochs=args.epochs, negatives=args.negatives, seed=args.seed)
    print(train(_collection_path(args.collection), out, config, resume=args.resume, progress=not args.quiet))


def cmd_composed(args) -> None:
    from . import composed
    from .search import SearchService

    service = SearchService(_collection_path(args.collection))
    if args.what == "train":
        config = composed.CombinerConfig(rounds=args.rounds, epochs=args.epochs)
        print(composed.train_combiner(service, composed.load_cirr(args.cirr, args.split), args.out, config,
                                      resume=args.resume, progress=not args.quiet))
        return
    search = composed.ComposedSearch(service, args.combiner)
    if args.what == "search":
        hits = search.search(_image_or_id(args.reference), args.text, args.method, args.k, args.weight)
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    triplets = composed.load_cirr(args.cirr, args.split)
    if args.submission:
        args.submission.mkdir(parents=True, exist_ok=True)
        for name, data in zip(("recall", "recall_subset"), composed.submission(search, triplets, args.method, args.weight)):
            (args.submission / f"{args.split}_{args.method}_{name}.json").write_text(json.dumps(data))
    else:
        print(json.dumps(composed.evaluate(search, triplets, args.method, args.weight), indent=2))


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
            raise SystemExit(f"error: column '{p}' should look like prompt|answer|score|image=<column name>")
        out[role] = name
    return out


def _humor_data(spec: str, columns: dict, captioner: str, limit: int | None = None, need_scores: bool = True):
    from .humor.data import load_examples

    examples = load_examples(spec, captioner=captioner, need_scores=need_scores, **columns)
    return examples[:limit] if limit else examples


def cmd_humor(args) -> None:
    from .humor.data import recenter
    from .humor.evaluate import evaluate, report_text, write_scores
    from .humor.model import HumorModel
    from .humor.train import train

    columns = _columns(args.columns)
    if args.what == "train":
        folder = Path(args.data)
        train_spec, dev_spec = (str(folder / "train.csv"), str(folder / "dev.csv")) if folder.is_dir() \
            else (args.data, args.dev)
        if not dev_spec:
            raise SystemExit("error: give --dev, the data early stopping watches (or a folder with train.csv, dev.csv)")
        train_set = _humor_data(train_spec, columns, args.captioner, args.limit)
        dev_set = _humor_data(dev_spec, columns, args.captioner, args.dev_limit)
        for extra in args.extra or []:
            train_set += recenter(_humor_data(extra, columns, args.captioner), train_set, args.scale)
        config = HumorConfig(backbone=args.backbone, scale=args.scale, max_length=args.max_length,
                             lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                             lora_targets=args.lora_targets.split(","), lora_layers=args.lora_layers,
                             lr=args.lr, batch_size=args.batch_size,
                             epochs=args.epochs, patience=args.patience, members=args.members, seed=args.seed)
        data = {"train": train_spec, "dev": dev_spec, "extra": args.extra or [], "limit": args.limit,
                "columns": columns}
        history = train(train_set, dev_set, args.out, config, args.max_minutes, not args.quiet, data)
        print(f"{args.out}: dev RMSE {history['best_dev_rmse']:.4f} with {len(history['members'])} member(s) and the "
              f"ridge weighted {history['blend']:.2f} (predicting the training mean: "
              f"{history['dev_rmse_of_train_mean']:.4f}); stopped by {history['stopped']}")
        return
    model = HumorModel.load(args.model)
    if args.what == "score":
        rows = _humor_data(args.data, columns, args.captioner, args.limit, need_scores=False)
        print(write_scores(model, rows, args.out or Path(args.data).with_suffix(".scores.csv"), args.explain))
        return
    data = model.info["data"]  # the baselines are fitted on the model's own training data by default
    train_set = _humor_data(args.train or data["train"], data["columns"], args.captioner,
                            None if args.train else data["limit"])
    report = evaluate(model, _humor_data(args.data, columns, args.captioner, args.limit), train_set)
    print(report_text(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


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
          host=args.host, port=args.port, humor=humor)


def default_collections() -> list[Path]:
    """The bundled default collection (built on first use, no download), then every other
    finished collection under the artifacts folder."""
    from .build import BuildConfig, build
    from .collection import SCHEMA_VERSION, read_manifest

    default = build(BuildConfig("skimage"), ARTIFACTS / "skimage")
    others = []
    for path in sorted(p for p in ARTIFACTS.iterdir() if p.is_dir() and p != default):
        m = read_manifest(path)
        if m and m.get("complete") and m.get("schema_version") == SCHEMA_VERSION:
            others.append(path)
        elif m:
            logging.getLogger("mosaic").warning("not serving %s: unfinished or built by another version", path)
    return [default, *others]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mosaic", description="Multimodal search over image collections.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build (or resume) a collection from a source")
    b.add_argument("source", choices=list(SOURCES), help="what kind of source to read")
    b.add_argument("path", nargs="?", help="folder, file or Hub repo of the source")
    b.add_argument("--images", help="images folder (captions and COCO sources)")
    b.add_argument("--split", help="split (CIRR, COCO Karpathy, Hub datasets)")
    b.add_argument("--name", help="collection name (default: the source folder's name)")
    b.add_argument("--out", type=Path, help="output folder (default: artifacts/<name>)")
    b.add_argument("--limit", type=int, help="read at most N records")
    b.add_argument("--seed", type=int, help="with --limit: a seeded shuffle picks the records")
    b.add_argument("--model", default="auto", help="dual encoder spec: auto, lite, open_clip:ViT-B-32/openai, hf:<repo>")
    b.add_argument("--captioner", default="auto", help="captioner spec: auto, labels, blip:<repo>, none")
    b.add_argument("--vocab", help="tag vocabulary: art, driving, photos or a JSON file")
    b.add_argument("--shard-size", type=int, default=256)
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="run the stages here, or in Ray actors (the cluster at $RAY_ADDRESS, else a local one)")
    b.add_argument("--workers", type=int, help="with --engine ray: actors (default: one per CPU, or per GPU)")
    b.add_argument("--overwrite", action="store_true", help="rebuild from scratch")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("search", help="search a collection")
    s.add_argument("collection", help="collection folder or name under artifacts/")
    s.add_argument("text", nargs="?", help="text query")
    s.add_argument("--image", help="query image file, or the id of an item")
    s.add_argument("--mode", default="both", choices=["image", "caption", "both", "omni"],
                   help="text against image embeddings, captions, both, or omni (fused with tags)")
    s.add_argument("--filter", action="append", metavar="FIELD=VALUE")
    s.add_argument("--tag", action="append", metavar="CATEGORY:TAG=WEIGHT")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--index", default="auto", choices=["auto", "exact", "annoy"])
    s.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "int4"])
    s.add_argument("--shard-rows", type=int, help="exact indexes in shards of N rows, merged at query time")
    s.add_argument("--ray", action="store_true", help="with --shard-rows: shards held by Ray actors ($RAY_ADDRESS)")
    s.add_argument("--json", action="store_true", help="print hits as JSON")
    s.set_defaults(func=cmd_search)

    e = sub.add_parser("eval", help="measure retrieval quality")
    e_sub = e.add_subparsers(dest="what", required=True)
    r = e_sub.add_parser("retrieval", help="Recall@1/5/10, MRR, NDCG@10 both ways, human captions as ground truth")
    r.add_argument("collection")
    r.add_argument("--split", default="all", choices=["all", "train", "test"],
                   help="the fixed split by image (test: 200 images chosen by id hash)")
    r.add_argument("--candidates", type=int, help="candidates per query, ground truth included (default: all)")
    r.add_argument("--sweep", action="store_true", help="also pool sizes x precisions, PCA dims, Annoy settings")
    r.add_argument("--json", type=Path, help="write the report as JSON")
    r.add_argument("--csv", type=Path, help="write the report as CSV rows")
    r.add_argument("--plots", type=Path, help="write PNG plots of the sweep to this folder (implies --sweep)")
    r.set_defaults(func=cmd_eval)

    t = sub.add_parser("train", help="train the offline model's projection heads on a captions collection")
    t.add_argument("collection", help="a collection with human captions (e.g. built from Flickr8k)")
    t.add_argument("--out", type=Path, help="checkpoint path (default: artifacts/models/<collection>.pt)")
    t.add_argument("--rounds", type=int, default=3, help="hard-negative mining rounds after the first")
    t.add_argument("--epochs", type=int, default=8, help="epochs per round")
    t.add_argument("--negatives", type=int, default=3, help="hard negatives mined per caption (0: no mining)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", action="store_true", help="continue after the last finished round")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    co = sub.add_parser("composed", help="composed retrieval: reference image + modification text")
    co_sub = co.add_subparsers(dest="what", required=True)
    for name, text in (("search", "one composed query"), ("eval", "CIRR Recall@K and Recall_subset@K"),
                       ("train", "train a combiner on CIRR triplets, with hard-negative rounds")):
        x = co_sub.add_parser(name, help=text)
        x.add_argument("collection", help="a collection of the split's images (e.g. `mosaic build cirr ...`)")
        if name == "search":
            x.add_argument("reference", help="reference image file or item id")
            x.add_argument("text", help="the modification, e.g. 'the same dog but on a beach'")
            x.add_argument("-k", type=int, default=10)
        else:
            x.add_argument("cirr", help="CIRR release folder (captions/cap.rc2.<split>.json)")
            x.add_argument("--split", default="val" if name == "eval" else "train")
        if name == "train":
            x.add_argument("--out", type=Path, default=ARTIFACTS / "models" / "combiner.pt")
            x.add_argument("--rounds", type=int, default=2, help="hard-negative rounds after the first")
            x.add_argument("--epochs", type=int, default=20, help="epochs per round")
            x.add_argument("--resume", action="store_true")
            x.add_argument("--quiet", action="store_true")
        else:
            x.add_argument("--method", default="sum", choices=["sum", "slerp", "text", "combiner"])
            x.add_argument("--weight", type=float, default=0.5, help="text weight for sum and slerp")
            x.add_argument("--combiner", type=Path, help="a trained combiner (for --method combiner)")
        if name == "eval":
            x.add_argument("--submission", type=Path, help="write the CIRR test-server files here instead")
        x.set_defaults(func=cmd_composed)

    d = HumorConfig()
    h = sub.add_parser("humor", help="humor scoring: a cross-encoder with LoRA rates answers to a prompt")
    h_sub = h.add_subparsers(dest="what", required=True)
    for name, text in (("train", "train on rated (prompt, answer) pairs, early stopping on dev"),
                       ("eval", "RMSE, MAE, R^2, Pearson, Spearman, binned accuracy/F1, beside two baselines"),
                       ("score", "score a file of (prompt, answer) rows")):
        x = h_sub.add_parser(name, help=text)
        if name != "train":
            x.add_argument("model", type=Path, help="a folder written by `mosaic humor train`")
        x.add_argument("data", help="CSV/TSV/JSON/JSONL file, hf://user/dataset[:split]"
                                    + (", or a folder with train.csv and dev.csv (Humicroedit)" if name == "train" else ""))
        x.add_argument("--columns", action="append", metavar="ROLE=NAME",
                       help="column names when not prompt/answer/score/image, e.g. answer=caption")
        x.add_argument("--captioner", default="auto", help="captions image prompts: auto, labels, blip:<repo>")
        x.add_argument("--limit", type=int, help="use the first N rows only")
        if name == "train":
            x.add_argument("--dev", help="dev data for early stopping (default: <folder>/dev.csv)")
            x.add_argument("--dev-limit", type=int, help="use the first N dev rows only")
            x.add_argument("--extra", action="append", help="more training data, shifted to the main set's mean "
                                                             "(e.g. FunLines' train_funlines.csv)")
            x.add_argument("--out", type=Path, default=ARTIFACTS / "models" / "humor")
            x.add_argument("--backbone", default=d.backbone, help="auto, minilm (offline) or hf:<repo>")
            x.add_argument("--scale", type=_scale, default=d.scale, help="score range, e.g. 0-4 (default 0-3)")
            x.add_argument("--max-length", type=int, default=d.max_length, help="tokens per prompt + answer pair")
            x.add_argument("--lora-r", type=int, default=d.lora_r)
            x.add_argument("--lora-alpha", type=int, default=d.lora_alpha)
            x.add_argument("--lora-dropout", type=float, default=d.lora_dropout)
            x.add_argument("--lora-targets", default=",".join(d.lora_targets), help="module names, comma-separated")
            x.add_argument("--lora-layers", type=int, default=d.lora_layers,
                           help="adapt the top N transformer layers only (0: all)")
            x.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (one-cycle schedule)")
            x.add_argument("--batch-size", type=int, default=d.batch_size)
            x.add_argument("--epochs", type=int, default=d.epochs, help="at most; training stops when dev RMSE stalls")
            x.add_argument("--patience", type=int, default=d.patience, help="dev evaluations (one an epoch) without gain")
            x.add_argument("--members", type=_positive, default=d.members,
                           help="cross-encoders (every second one reads pairs with the edit marked); their mean is "
                                "blended with a ridge on TF-IDF and embeddings, weighted on 10%% of the training rows "
                                "held out")
            x.add_argument("--max-minutes", type=float, help="stop after this long, keeping the best adapter")
            x.add_argument("--seed", type=int, default=0)
            x.add_argument("--quiet", action="store_true")
        elif name == "eval":
            x.add_argument("--train", help="training data for the baselines (default: the model's own)")
            x.add_argument("--json", type=Path, help="write the report as JSON")
        else:
            x.add_argument("--out", type=Path, help="output CSV (default: <data>.scores.csv)")
            x.add_argument("--explain", action="store_true", help="add the three words that move each score most")
        x.set_defaults(func=cmd_humor)

    pb = sub.add_parser("publish", help="push captions, a collection or the app to the Hugging Face Hub")
    pb_sub = pb.add_subparsers(dest="what", required=True)
    for name, text in (("captions", "a collection's generated captions as a dataset"),
                       ("collection", "a whole collection, loadable as hf://user/repo"),
                       ("space", "the app as a Gradio Space serving a collection")):
        x = pb_sub.add_parser(name, help=text)
        x.add_argument("collection", help="collection folder or name" + (", or hf://user/repo" if name == "space" else ""))
        x.add_argument("--repo", help="user/name of the Hub repository to create or update")
        x.add_argument("--dry-run", action="store_true", help="only write the files that would be uploaded")
        x.add_argument("--out", type=Path, help="folder for those files (needed with --dry-run)")
        if name != "space":
            x.add_argument("--license", default="other", help="license of the dataset card (default: other)")
        if name == "captions":
            x.add_argument("--images", action="store_true", help="include the previews (datasets Image feature)")
            x.add_argument("--embeddings", action="store_true", help="include the image embeddings")
        x.set_defaults(func=cmd_publish)

    a = sub.add_parser("serve", help="start the app (default: the bundled collection and all built ones)")
    a.add_argument("--collection", action="append", help="collection folder or name (repeat for several)")
    a.add_argument("--host", help="address to listen on (default 127.0.0.1, or $GRADIO_SERVER_NAME)")
    a.add_argument("--port", type=int, help="port (default 7860, or $GRADIO_SERVER_PORT)")
    a.add_argument("--humor", type=Path, help="humor model folder (default: artifacts/models/humor when trained)")
    a.set_defaults(func=cmd_serve)

    i = sub.add_parser("info", help="describe a collection")
    i.add_argument("collection")
    i.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mosaic` command; user errors end with one clear line, no traceback."""
    from .collection import CollectionError
    from .hub import HubError
    from .search import QueryError
    from .sources import SourceError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (CollectionError, HubError, QueryError, SourceError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
