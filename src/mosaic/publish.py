"""Publishing to the Hugging Face Hub: a collection's generated captions as a dataset, a whole
collection (loaded back with `--collection hf://user/repo`), and the app as a Gradio Space.

Each writes a folder first; `--dry-run --out DIR` stops there, so DIR holds exactly what would be
uploaded. Tokens come from HF_TOKEN or the huggingface_hub login and are only handed to
huggingface_hub: never printed, never written.
"""
from __future__ import annotations

import importlib.metadata as md
import logging
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from . import hub
from .collection import Collection
from .errors import HubError, UsageError

PACKAGE = Path(__file__).resolve().parent  # the installed package: a Space gets a copy
SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
HUB_SOURCES = ("wikiart-hub", "hub")
log = logging.getLogger("mosaic")


def _size_category(n: int) -> str:
    return next((label for limit, label in SIZES if n < limit), "1M<n<10M")


def public_config(config: dict) -> dict:
    """A build's settings as published: local paths cut to their last part (a Hub dataset's name
    stays), so no card or manifest names a folder of the machine that built it."""
    if config["source"] in HUB_SOURCES:
        return config
    local = lambda v: Path(v).name if v else v  # noqa: E731
    return {**config, "path": local(config["path"]), "options": {k: local(v) if k == "images" else v
                                                                 for k, v in config.get("options", {}).items()}}


def build_command(c: Collection) -> str:
    """The `mosaic build` command that made the collection."""
    cfg = public_config(c.manifest.config)
    parts = ["mosaic build", cfg["source"], cfg["path"] or "", f"--name {c.name}"]
    for flag, key in (("--limit", "limit"), ("--seed", "seed"), ("--model", "model"), ("--captioner", "captioner"),
                      ("--vocab", "vocab")):
        if cfg.get(key) is not None:
            parts.append(f"{flag} {cfg[key]}")
    parts += [f"--{k} {v}" for k, v in cfg.get("options", {}).items()]
    return " ".join(p for p in parts if p)


# Licences that allow republishing the images (with attribution, where they ask for it).
OPEN_LICENSES = frozenset({"cc0-1.0", "pddl", "cc-by-2.0", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0",
                           "odc-by", "cdla-permissive-2.0", "mit", "apache-2.0", "bsd-3-clause", "unlicense"})
REPO = "user/name"  # the repository a dry run's card names, until it has one


def source_license(c: Collection, declared: str | None = None) -> str | None:
    """The licence of the collection's images: as declared, else the one on the card of the Hub
    dataset it was built from (when the Hub is reachable), else unknown (None)."""
    cfg = c.manifest.config
    if declared or cfg["source"] not in HUB_SOURCES or not hub.reachable():
        return declared
    from huggingface_hub import DatasetCard

    try:
        found = DatasetCard.load(cfg["path"], repo_type="dataset").data.license
    except Exception:  # noqa: BLE001 - a local file or a repository without a card: unknown
        return None
    return found[0] if isinstance(found, list) and found else found or None


def license_section(c: Collection, license: str | None, images: bool) -> tuple[str, str | None]:
    """The card's licence section, and a warning when it republishes previews of images whose
    licence may not allow it (a restrictive or an unknown one)."""
    origin = f"`{public_config(c.manifest.config)['path']}`"
    known = f"under the licence `{license}`" if license else "under a licence Mosaic does not know"
    text = (f"## Licence\n\nThe images come from {origin}, {known}; the captions, tags and embeddings were "
            "generated from them by Mosaic (human captions, if any, come from the source).")
    if not images or license in OPEN_LICENSES:
        return text, None
    warning = (f"This dataset republishes previews of the images of {origin}, whose licence ({license or 'unknown'}) "
               "may not allow it: check it before making the repository public.")
    return f"{text}\n\n> ⚠️ {warning}", warning


def _card(c: Collection, what: str, body: str, license: str | None, images: bool, extra: dict) -> str:
    """A dataset card the Hub's viewer and search understand: licence (the source's, carried over),
    machine-generated annotations, language, tags, the Parquet data as a config; the body, how the
    collection was built, and its licence (with a warning, see `license_section`)."""
    from huggingface_hub import DatasetCard, DatasetCardData

    cfg = c.manifest.config
    section, warning = license_section(c, license, images)
    if warning:
        log.warning(warning)
    data = DatasetCardData(license=license or "other", task_categories=["image-to-text", "text-to-image"],
                           size_categories=[_size_category(len(c))], pretty_name=f"{c.name} {what}",
                           annotations_creators=["machine-generated"], language=["en"],
                           source_datasets=[f"extended|{cfg['path']}"] if cfg["source"] in HUB_SOURCES else None,
                           tags=["mosaic", "image-captioning", "embeddings", "multimodal"], **extra)
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("mosaic-search", "torch", "open_clip_torch", "transformers"))
    models = c.manifest.models
    text = (f"# {c.name}: {what}\n\n{body}\n\n## How it was built\n\n"
            f"- image-text model: `{models['encoder']}`; captioner: `{models['captioner']}`\n"
            f"- software: {versions}\n- {len(c)} items, {c.manifest.counts['captions']} captions, "
            f"zero-shot tags from the `{cfg['vocab']}` vocabulary\n\n```bash\n{build_command(c)}\n```\n\n{section}\n")
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{text}").content


def parquet_config(files: str) -> dict:
    """The card's `configs`: the dataset viewer and `load_dataset` read `files` as the train split."""
    return {"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": files}]}]}


def embedding_sql(c: Collection) -> str:
    """How to rank the items by similarity to one of them in the Hub's SQL console (DuckDB)."""
    dim, first = c.image_emb.shape[1], c.ids()[0].replace("'", "''")
    return (f"The `image_embedding` column holds each image's L2-normalised embedding from `{c.manifest.models['encoder']}`"
            f" as {dim} float32 values (a fixed-length list), so the Hub's SQL console can rank the images by "
            f"similarity to one of them:\n\n```sql\nSELECT id, caption, array_cosine_similarity(image_embedding::FLOAT[{dim}],"
            f"\n  (SELECT image_embedding::FLOAT[{dim}] FROM train WHERE id = '{first}')) AS similarity\n"
            "FROM train ORDER BY similarity DESC LIMIT 10;\n```")


def captions_folder(c: Collection, out: Path, images: bool = False, embeddings: bool = False,
                    license: str | None = None, repo: str = REPO) -> Path:
    """A Hub dataset of the collection's items: id, generated caption, human captions, the source
    record's fields, and optionally the previews (datasets' Image feature) and image embeddings
    (fixed-length float32 lists). `license` is the images' (see `source_license`)."""
    from datasets import Dataset, Image, List, Value

    rows = c.metadata.to_pylist()
    human = [[] for _ in rows]
    texts = c.captions["text"].to_pylist()
    for i in c.human_captions:
        human[c.caption_items[i]].append(texts[i])
    for row, (record, captions) in enumerate(zip(rows, human)):
        record["human_captions"] = captions
        if embeddings:
            record["image_embedding"] = c.image_emb[row].tolist()
        if images:
            record["image"] = {"bytes": c.thumbnail_bytes(row), "path": f"{record['id']}.jpg"}
    ds = Dataset.from_list(rows)
    if embeddings:
        ds = ds.cast_column("image_embedding", List(Value("float32"), length=c.image_emb.shape[1]))
    if images:
        ds = ds.cast_column("image", Image())
    out.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    columns = ", ".join(f"`{k}`" for k in ds.column_names)
    body = (f"Captions generated by Mosaic for {len(c)} images. Columns: {columns}.\n\n```python\n"
            f"from datasets import load_dataset\n\nds = load_dataset(\"{repo}\", split=\"train\")\n```"
            + (f"\n\n{embedding_sql(c)}" if embeddings else ""))
    (out / "README.md").write_text(_card(c, "generated captions", body, license, images, parquet_config("data/*.parquet")))
    return out


def collection_folder(c: Collection, out: Path, license: str | None = None, repo: str = REPO) -> Path:
    """The whole collection (manifest, metadata, embeddings, previews, indexes) as a dataset repo.
    `license` is the images' (see `source_license`)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in c.manifest.checksums:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(c.path / name, out / name)
    replace(c.manifest, config=public_config(c.manifest.config)).write(out)
    body = ("A complete Mosaic collection (embeddings, previews, indexes). Search it, or serve it in the app:\n\n"
            f"```bash\nmosaic search hf://{repo} \"a query\"\npython demo.py --collection hf://{repo}\n```\n\n"
            "Its items (ids, captions, metadata) load with `datasets`:\n\n```python\nfrom datasets import load_dataset"
            f"\n\nitems = load_dataset(\"{repo}\", split=\"train\")\n```")
    (out / "README.md").write_text(_card(c, "Mosaic collection", body, license, True, parquet_config("metadata.parquet")))
    return out


SPACE_MODELS = {  # the online defaults (models.ONLINE_ENCODER, ONLINE_CAPTIONER): Hub repository -> files to preload
    "timm/vit_base_patch32_clip_224.openai": ["open_clip_config.json", "open_clip_model.safetensors"],
    "Salesforce/blip-image-captioning-base": ["config.json", "preprocessor_config.json", "special_tokens_map.json",
                                              "tokenizer.json", "tokenizer_config.json", "vocab.txt", "model.safetensors"],
}
SPACE_HARDWARE = "cpu-upgrade"  # 8 vCPUs: captioning and concurrent searches; the app needs no GPU
SPACE_STARTUP = "1h"  # the first start builds the default collection (captions, tags) on the CPU
PYTHON = "3.11"  # the Python the app is tested with


def space_front_matter(title: str, app_file: str, collection: str | None = None) -> dict:
    """A Space's README front matter: the SDK pinned to the Gradio installed here, the default CLIP
    and BLIP preloaded into the image at build time (the first start then downloads nothing),
    the models and the Hub collection (hf://user/repo) linked, the hardware it is meant for, and
    a startup timeout that covers building the default collection."""
    import gradio

    datasets = {"datasets": [collection.removeprefix("hf://")]} if (collection or "").startswith("hf://") else {}
    return {"title": title, "emoji": "🧩", "colorFrom": "indigo", "colorTo": "gray", "sdk": "gradio",
            "sdk_version": gradio.__version__, "python_version": PYTHON, "app_file": app_file, "pinned": False,
            "license": "apache-2.0", "short_description": "Multimodal image search that explains its matches",
            "suggested_hardware": SPACE_HARDWARE, "startup_duration_timeout": SPACE_STARTUP,
            "preload_from_hub": [f"{repo} {','.join(files)}" for repo, files in SPACE_MODELS.items()],
            "models": list(SPACE_MODELS), **datasets}


def space_folder(out: Path, collection: str, title: str = "Mosaic") -> Path:
    """A Gradio Space serving `collection`: the package, an app file, the requirements and the
    README front matter. A Hub collection (hf://user/repo) is downloaded by the Space; a local
    one is copied into the Space, which cannot read this machine's folders."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    front = space_front_matter(title, "app.py", collection)
    if not collection.startswith("hf://"):
        collection_folder(Collection.load(collection), out / "collection")
        collection = "collection"
    shutil.copytree(PACKAGE, out / "src" / "mosaic", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (out / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n")
    (out / "app.py").write_text(
        '"""Mosaic Space: serves one collection."""\nimport sys\nfrom pathlib import Path\n\n'
        'sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))\n\n'
        'from mosaic.cli import main  # noqa: E402\n\n'
        f'main(["serve", "--collection", {collection!r}])\n')
    (out / "README.md").write_text(
        f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---\n\n"
        f"# {title}\n\nMultimodal search over `{collection}`: by image, by text, composed, with explanations.\n")
    return out


def pinned_requirements() -> list[str]:
    """Mosaic's dependencies (not the optional extras) pinned to the versions installed here,
    read from the package's own metadata, so a Space runs what was tested."""
    pins = []
    for spec in md.requires("mosaic-search") or []:
        if "extra ==" not in spec:
            name, extras = re.match(r"([\w.-]+)(\[[\w,\s]+\])?", spec).groups()
            pins.append(f"{name}{extras or ''}=={md.version(name).split('+')[0]}")  # no local build tag (+cpu)
    return pins


def upload(folder: Path, repo: str, repo_type: str) -> str:
    """Create (if needed) and fill a Hub repository from `folder`; returns its URL."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise HubError("No Hugging Face token: set HF_TOKEN or log in with `hf auth login`, "
                                 "or use --dry-run --out DIR to write the files only.")
    if not hub.reachable():
        why = "HF_HUB_OFFLINE is set" if hub.offline() else "the Hugging Face Hub cannot be reached"
        raise HubError(f"Publishing to '{repo}' needs the Hugging Face Hub, and {why}. Connect and run the "
                       "command again, or write the files with --dry-run --out DIR and upload that folder later.")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, repo_type=repo_type, exist_ok=True, space_sdk="gradio" if repo_type == "space" else None)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type=repo_type,
                          commit_message="Published with Mosaic")
    except Exception as e:  # noqa: BLE001 - one clear message, never the token
        raise HubError(f"Publishing to '{repo}' failed: {type(e).__name__}: {str(e)[:300]}") from None
    return str(url)


def publish(what: str, source: str, repo: str | None, out: Path | None, dry_run: bool, **options) -> str:
    """`mosaic publish captions|collection|space`: write the folder, then upload it (unless dry run)."""
    if dry_run and out is None:
        raise UsageError("--dry-run needs --out DIR for the files it would upload.")
    if not dry_run and not repo:
        raise UsageError("Give --repo user/name (or --dry-run --out DIR).")
    folder = out or Path(tempfile.mkdtemp(prefix="mosaic-publish-"))
    try:
        if what == "space":
            space_folder(folder, source)
        else:
            c = Collection.load(source)
            license = source_license(c, options.pop("license", None))
            (captions_folder if what == "captions" else collection_folder)(c, folder, license=license,
                                                                          repo=repo or REPO, **options)
        return str(folder) if dry_run else upload(folder, repo, "space" if what == "space" else "dataset")
    finally:
        if out is None:  # a temporary copy, uploaded or not
            shutil.rmtree(folder, ignore_errors=True)
