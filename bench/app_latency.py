"""Latency of a text query through the app's API (gradio_client -> /caption_search), with and
without the client downloading the result images, and as an MCP tool call (the `mcp` client ->
caption_search), against the same query on the search service directly, on the Flickr8k sample
collection (offline models). The paths take turns query by query.

    python bench/app_latency.py [--queries 100] [--collection artifacts/flickr8k]
        -> bench/results/app_latency.json     (without --collection, the sample is built first)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "mean_ms": round(float(ms.mean()), 1)}


async def interleaved(paths: dict, mcp_call, queries: list[str], warmup: int = 5) -> dict[str, list[float]]:
    """Each query through every path in turn (the order rotating from query to query), so that the
    paths share the machine's load alike; `mcp_call` is the MCP path's coroutine. The first
    `warmup` queries are not timed."""
    names = [*paths, "mcp"]
    out = {n: [] for n in names}
    for i, q in enumerate(queries[:warmup] + queries):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            await mcp_call(q) if name == "mcp" else paths[name](q)
            if i >= warmup:
                out[name].append(time.perf_counter() - start)
    return out


async def measure(url: str, name: str, k: int, paths: dict, queries: list[str]) -> dict[str, list[float]]:
    """`interleaved` with the MCP path: caption_search tool calls in one session of the `mcp` client."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(f"{url}gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()

            async def call(q: str) -> None:
                result = await session.call_tool("caption_search", {"collection": name, "text": q, "target": "both",
                                                                    "k": k, "min_score": 0})
                assert not result.isError, result.content
            return await interleaved(paths, call, queries)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("-k", type=int, default=12)
    p.add_argument("--collection", type=Path, help="a built Flickr8k collection (default: build the sample)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "app_latency.json")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from gradio_client import Client

    from mosaic.app import serve
    from mosaic.build import BuildConfig, build
    from mosaic.search import SearchService

    path = args.collection or build(BuildConfig("captions", str(DATA / "flickr8k-1k"), model="lite",
                                                captioner="labels"), Path(tempfile.mkdtemp()) / "flickr8k")
    service = SearchService(path)
    captions = service.collection.captions
    human = [t for t, kind in zip(captions["text"].to_pylist(), captions["kind"].to_pylist()) if kind == "human"]
    queries = random.Random(0).sample(human, args.queries)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = serve([path], host="127.0.0.1", port=port, block=False, mcp=True)
    name, url = service.collection.name, f"http://127.0.0.1:{port}/"
    paths = {"service": lambda q: service.text_to_image(q, args.k, "both")}
    for label, download in (("api", False), ("api_with_images", True)):
        client = Client(url, verbose=False, download_files=download)
        paths[label] = lambda q, c=client: c.predict(name, q, "both", args.k, 0, api_name="/caption_search")
    times = {label: percentiles(t) for label, t in asyncio.run(measure(url, name, args.k, paths, queries)).items()}
    demo.close()

    result = {"collection": "Flickr8k sample", "items": len(service.collection), "queries": len(queries),
              "k": args.k, "target": "both", "model": service.collection.manifest.models["encoder"], **times,
              "api_over_service_p50": round(times["api"]["p50_ms"] / times["service"]["p50_ms"], 2),
              "mcp_over_api_p50": round(times["mcp"]["p50_ms"] / times["api"]["p50_ms"], 2)}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
