"""The served app under load: does its memory stay flat, and how do concurrent clients fare?

Starts `mosaic serve` in a subprocess on a Flickr8k collection (default: the first 300 images
built with the offline models into a temp folder), sends `--requests` text queries to
/caption_search through gradio_client, a new session every `--per-session` requests (a visitor
opening the page, or a script's Client), while sampling the server's RSS every 50 requests; then
runs 1, 8 and 32 clients at once (threads, each with its own Client and `--per-client` requests)
and reports throughput and p50/p95 latency. `--concurrency` is passed to `mosaic serve`. Results
are kept per `--label` (e.g. before and after a change) and printed side by side.

    python bench/app_load.py [--requests 1000] [--per-session 1] [--per-client 10] [--concurrency N]
                             [--collection PATH] [--label now]     -> bench/results/app_load.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))
SAMPLE_EVERY = 50
CLIENTS = (1, 8, 32)


def build_sample(folder: Path) -> Path:
    from mosaic.build import BuildConfig, build

    config = BuildConfig("captions", str(DATA / "flickr8k-1k"), limit=300, model="lite", captioner="labels")
    return build(config, folder / "flickr", progress=False)


def human_captions(path: Path, n: int) -> list[str]:
    from mosaic.collection import Collection

    captions = Collection.load(path).captions
    human = [t for t, kind in zip(captions["text"].to_pylist(), captions["kind"].to_pylist()) if kind == "human"]
    return random.Random(0).sample(human, min(n, len(human)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(collection: Path, cache: Path, log: Path, concurrency: int | None) -> tuple[subprocess.Popen, str]:
    """`mosaic serve` on a free port, its Gradio cache in `cache`; returns once it answers."""
    import httpx

    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "mosaic", "serve", "--collection", str(collection), "--host", "127.0.0.1",
               "--port", str(port)] + (["--concurrency", str(concurrency)] if concurrency else [])
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"the server exited with {proc.returncode}: see {log}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"the server did not answer within 5 minutes: see {log}")


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def cache_files(cache: Path) -> int:
    return sum(1 for p in cache.rglob("*") if p.is_file())


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def ask(c, name: str, query: str, k: int) -> float:
    start = time.perf_counter()
    c.predict(name, query, "both", k, -1, api_name="/caption_search")
    return time.perf_counter() - start


def memory_run(url: str, pid: int, name: str, queries: list[str], n: int, per_session: int, k: int,
               cache: Path) -> dict:
    """`n` requests from one client, a new session every `per_session` requests, the server's
    RSS sampled every SAMPLE_EVERY requests."""
    c = client(url)
    samples = [(0, rss_mb(pid))]
    for i in range(n):
        if i and i % per_session == 0:
            c.reset_session()
        ask(c, name, queries[i % len(queries)], k)
        if (i + 1) % SAMPLE_EVERY == 0:
            samples.append((i + 1, rss_mb(pid)))
            print(f"{i + 1} requests: server RSS {samples[-1][1]:.0f} MB", file=sys.stderr)
    rss = dict(samples)
    slope = lambda a, b: round((rss[b] - rss[a]) * 1024 / (b - a), 1)  # noqa: E731  KB per request
    return {"requests": n, "per_session": per_session, "rss_mb": {str(i): round(v, 1) for i, v in samples},
            "kb_per_request_first_100": slope(0, 100), "kb_per_request_last_100": slope(n - 100, n),
            "kb_per_request_overall": slope(0, n), "cache_files": cache_files(cache)}


def concurrent_run(url: str, name: str, queries: list[str], clients: int, per_client: int, k: int) -> dict:
    """`clients` threads with a Client each, started together, `per_client` requests each."""
    pool = [client(url) for _ in range(clients)]
    times: list[float] = []
    start_line = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        start_line.wait()
        mine = [ask(pool[i], name, queries[(i * per_client + j) % len(queries)], k) for j in range(per_client)]
        times.extend(mine)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_line.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.asarray(times) * 1000
    print(f"{clients} clients: {len(times) / wall:.2f} requests/s", file=sys.stderr)
    return {"clients": clients, "requests": len(times), "requests_per_s": round(len(times) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1)}


def measure(args, collection: Path, work: Path) -> dict:
    from mosaic.collection import Manifest

    name = Manifest.read(collection).name
    queries = human_captions(collection, 500)
    cache = work / "gradio-cache"
    proc, url = start_server(collection, cache, work / "server.log", args.concurrency)
    try:
        memory = memory_run(url, proc.pid, name, queries, args.requests, args.per_session, args.k, cache)
        load = [concurrent_run(url, name, queries, n, args.per_client, args.k) for n in CLIENTS]
    finally:
        proc.terminate()
        proc.wait(30)
    return {"collection": "Flickr8k sample", "items": Manifest.read(collection).counts["items"], "k": args.k,
            "cores": os.cpu_count(), "serve_concurrency": args.concurrency or "default",
            "memory": memory, "clients": load}


def table(results: dict) -> str:
    """Every label's figures side by side."""
    labels = list(results)
    rows = [("RSS at start (MB)", lambda r: r["memory"]["rss_mb"]["0"]),
            ("RSS at end (MB)", lambda r: r["memory"]["rss_mb"][str(r["memory"]["requests"])]),
            ("KB/request, first 100", lambda r: r["memory"]["kb_per_request_first_100"]),
            ("KB/request, last 100", lambda r: r["memory"]["kb_per_request_last_100"]),
            ("cache files at end", lambda r: r["memory"]["cache_files"])]
    for i, n in enumerate(CLIENTS):
        for key, what in (("requests_per_s", "req/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms")):
            rows.append((f"{n:>2} clients {what}", lambda r, i=i, key=key: r["clients"][i][key]))
    width = max(map(len, labels)) + 2
    lines = [f"{'':26}" + "".join(f"{label:>{width}}" for label in labels)]
    lines += [f"{what:26}" + "".join(f"{get(results[label]):>{width}}" for label in labels) for what, get in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=1000, help="sequential requests while RSS is sampled")
    p.add_argument("--per-session", type=int, default=1, help="requests per session in the memory run")
    p.add_argument("--per-client", type=int, default=10, help="requests per client in the concurrency runs")
    p.add_argument("--concurrency", type=int, help="`mosaic serve --concurrency` (default: the app's own)")
    p.add_argument("-k", type=int, default=12)
    p.add_argument("--collection", type=Path, help="a built Flickr8k collection (default: build the sample)")
    p.add_argument("--label", default="now", help="name of this run in the results (others are kept)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "app_load.json")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        collection = args.collection or build_sample(work)
        result = measure(args, collection, work)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
