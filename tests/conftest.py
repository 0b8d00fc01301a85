"""Shared fixtures: the sample data in ../shared/data (or $MOSAIC_DATA) and collections built
from it once per test session with the real offline models."""
import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

# The test machines cannot reach the Hugging Face Hub: say so up front instead of timing out.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def data_dir(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"sample data {path} not found: set MOSAIC_DATA to the folder holding {name}/")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(command: list[str], port: int, **popen):
    """Run an app command until it says it serves on `port`, yield its URL, then stop it."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    try:
        for line in proc.stdout:
            if f":{port}" in line:
                break
        else:
            pytest.fail(f"{command} exited with {proc.wait()} before serving")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(30)


def mcp_session(url: str, work):
    """Run `work(session)` in a session of the `mcp` client with the MCP server of the app at `url`
    (Gradio serves it at /gradio_api/mcp/); its answer."""
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def run():
        async with streamablehttp_client(f"{url.rstrip('/')}/gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)
    return asyncio.run(run())


@pytest.fixture(scope="session")
def flickr_dir() -> Path:
    return data_dir("flickr8k-1k")


@pytest.fixture(scope="session")
def wikiart_dir() -> Path:
    return data_dir("wikiart-30")


@pytest.fixture(scope="session")
def flickr(tmp_path_factory, flickr_dir):
    """The first 300 Flickr8k images (1,500 human captions), built with lite + labels, with Annoy
    indexes besides the HNSW graphs."""
    from mosaic.build import BuildConfig, build
    from mosaic.search import SearchService

    out = build(BuildConfig("captions", str(flickr_dir), limit=300, model="lite", captioner="labels",
                            shard_size=128, annoy=True), tmp_path_factory.mktemp("c") / "flickr", progress=False)
    return SearchService(out)


@pytest.fixture(scope="session")
def wikiart(tmp_path_factory, wikiart_dir):
    from mosaic.build import BuildConfig, build
    from mosaic.search import SearchService

    out = build(BuildConfig("wikiart", str(wikiart_dir), model="lite", captioner="labels"),
                tmp_path_factory.mktemp("c") / "wikiart", progress=False)
    return SearchService(out)


@pytest.fixture(scope="session")
def humor_model(tmp_path_factory):
    """A humor model trained by the CLI on 400 Humicroedit rows: two members (plain, edit marked),
    two epochs each (one dev evaluation an epoch), blended with a ridge on TF-IDF and embeddings."""
    from mosaic import cli

    out = tmp_path_factory.mktemp("humor") / "model"
    cli.main(["humor", "train", str(data_dir("humicroedit")), "--limit", "400", "--dev-limit", "150",
              "--members", "2", "--max-length", "48", "--out", str(out), "--quiet"])
    return out


# ---- the fast tier: a fake encoder and a tiny collection built with it ----------------------------
@pytest.fixture(scope="session")
def fake_encoder():
    """The deterministic fake encoder, registered as the model spec `fake`."""
    from fakes import FakeEncoder

    from mosaic import models

    models.ENCODERS["fake"] = lambda name, device: FakeEncoder()
    return models.load_encoder("fake")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, fake_encoder):
    """A search service over twelve coloured 'paintings' (style, genre, artist, title), built by the
    real builder with the fake encoder, no captioner and the art vocabulary."""
    from fakes import write_paintings

    from mosaic.build import BuildConfig, build
    from mosaic.search import SearchService

    root = write_paintings(tmp_path_factory.mktemp("paintings"))
    out = build(BuildConfig("wikiart", str(root), model="fake", captioner="none"),
                tmp_path_factory.mktemp("c") / "paintings", progress=False)
    return SearchService(out)


@pytest.fixture(scope="session")
def drive(tmp_path_factory, fake_encoder):
    """A search service over two tiny driving scenes (fakes.SCENES), built by the real builder with
    the fake encoder, no captioner and the driving vocabulary."""
    from fakes import write_drive

    from mosaic.build import BuildConfig, build
    from mosaic.search import SearchService

    root = write_drive(tmp_path_factory.mktemp("drive"))
    out = build(BuildConfig("driving", str(root), model="fake", captioner="none", vocab="driving"),
                tmp_path_factory.mktemp("c") / "drive", progress=False)
    return SearchService(out)
