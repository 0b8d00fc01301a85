"""Trust: builds killed at every stage resume to the same collection; damaged files are found;
two builds of one collection at once cannot both write.

Kills: a reference build of the first N Flickr8k images (offline models), then, for each kill
point, `mosaic build` in a subprocess SIGKILLed as soon as the point is reached, run again to the
end, and compared with the reference (same ids, captions and previews; embeddings within 1e-5).
Damage: each corruption of a copy of the reference must stop `Collection.load` (sizes, shapes,
unreadable files) or `Collection.verify` (checksums) with a CollectionError. Concurrency: a
second build started while the first runs must stop with the lock's message, and the first must
finish. Prints the counts and writes JSON.

    python bench/trust.py [--limit 64] [--json bench/results/trust.json]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from mosaic.collection import Collection, Manifest  # noqa: E402
from mosaic.errors import CollectionError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOSAIC_DATA", ROOT.parent / "shared" / "data"))


def shards_written(n):
    return lambda out: (m := _manifest(out)) is not None and len(m.shards) >= n


def _manifest(out):
    try:
        return Manifest.read(out)
    except CollectionError:  # caught mid-write: not yet
        return None


KILL_POINTS = {
    "before the first shard": lambda out: (out / "manifest.json").exists(),
    "after shard 1": shards_written(1),
    "after shard 3": shards_written(3),
    "after the last shard": shards_written(8),
    "merging shards": lambda out: (out / "metadata.parquet").exists(),
    "building Annoy indexes": lambda out: (out / "index").exists(),
    "after the last index": lambda out: (out / "index" / "omni.ann").exists(),
}


def build_command(limit, out):
    return [sys.executable, "-m", "mosaic", "build", "captions", str(DATA / "flickr8k-1k"), "--limit", str(limit),
            "--shard-size", str(limit // 8), "--model", "lite", "--captioner", "labels", "--out", str(out), "--quiet"]


def kill_at(command, out, reached, timeout=300):
    """Run `command`, SIGKILL it once `reached(out)`; True when it was killed (not finished first)."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.time()
    while proc.poll() is None and time.time() - start < timeout:
        if reached(out):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.wait()
    return False


def same(a: Collection, b: Collection) -> bool:
    arrays = ("image_emb", "text_emb", "omni_emb", "tags")
    return (a.ids() == b.ids() and a.captions.equals(b.captions) and a.metadata.equals(b.metadata)
            and all(np.allclose(getattr(a, n), getattr(b, n), atol=1e-5) for n in arrays)
            and a.files.thumbs.read_bytes() == b.files.thumbs.read_bytes() and not a.files.shards.exists())


def kills(limit, tmp: Path, reference: Collection) -> list[dict]:
    rows = []
    for name, reached in KILL_POINTS.items():
        out = tmp / f"killed-{len(rows)}"
        killed = kill_at(build_command(limit, out), out, reached)
        resumed = subprocess.run(build_command(limit, out), capture_output=True, text=True)
        ok = resumed.returncode == 0 and same(Collection.load(out), reference)
        rows.append({"point": name, "killed": killed, "resumed_identical": ok})
        print(f"kill {name:<24} killed={killed!s:<5} resumed to the same collection: {ok}")
        shutil.rmtree(out)
    return rows


UPDATE_POINTS = {
    "update: staging started": lambda out: _staging(out).exists(),
    "update: staged shard 2": lambda out: (m := _manifest(_staging(out))) is not None and len(m.shards) >= 2,
    "update: staging indexes": lambda out: (_staging(out) / "index").exists(),
    "update: old moved aside": lambda out: out.with_name(f".{out.name}.old").exists(),
}


def _staging(out):
    return out.with_name(f".{out.name}.update")


def update_kills(limit, tmp: Path, reference: Collection) -> list[dict]:
    """An update reading more records (--limit 1.5x), killed at each point, must leave the old
    collection or the new one; running it again must reach the new one."""
    grown = int(limit * 1.5)
    subprocess.run(build_command(grown, tmp / "grown"), check=True)
    new = Collection.load(tmp / "grown")
    update = lambda out: [sys.executable, "-m", "mosaic", "update", str(out), "--limit", str(grown), "--quiet"]  # noqa: E731
    rows = []
    for name, reached in UPDATE_POINTS.items():
        out = tmp / f"updated-{len(rows)}"
        shutil.copytree(reference.path, out)
        killed = kill_at(update(out), out, reached)
        now = Collection.load(out)
        state = "old" if same(now, reference) else "new" if same(now, new) else "mixed"
        resumed = subprocess.run(update(out), capture_output=True, text=True)
        ok = state != "mixed" and resumed.returncode == 0 and same(Collection.load(out), new)
        rows.append({"point": name, "killed": killed, "state_after_kill": state, "resumed_identical": ok})
        print(f"kill {name:<28} killed={killed!s:<5} left: {state:<5} updated to the new collection: {ok}")
        shutil.rmtree(out)
    return rows


def overwrite_middle(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 512] = np.random.default_rng(0).bytes(512)
    path.write_bytes(bytes(data))


def cut(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


CORRUPTIONS = {
    "random bytes in image_emb.npy": lambda c: overwrite_middle(c / "image_emb.npy"),
    "random bytes in thumbs.bin": lambda c: overwrite_middle(c / "thumbs.bin"),
    "image_emb.npy halved": lambda c: cut(c / "image_emb.npy", (c / "image_emb.npy").stat().st_size // 2),
    "text_emb.npy header cut": lambda c: (c / "text_emb.npy").write_bytes((c / "text_emb.npy").read_bytes()[60:]),
    "manifest.json cut": lambda c: cut(c / "manifest.json", 100),
    "metadata.parquet cut to 10 rows": lambda c: pq.write_table(pq.read_table(c / "metadata.parquet").slice(0, 10),
                                                                 c / "metadata.parquet"),
    "index/image.ann truncated": lambda c: cut(c / "index" / "image.ann", 1000),
    "index/caption.ann emptied": lambda c: cut(c / "index" / "caption.ann", 0),
    "thumbs.bin truncated": lambda c: cut(c / "thumbs.bin", 100),
    "thumbs.npy removed": lambda c: (c / "thumbs.npy").unlink(),
    "tags.npy: last value made inf": lambda c: _last_value_inf(c / "tags.npy"),
}


def _last_value_inf(path):
    data = bytearray(path.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"
    path.write_bytes(bytes(data))


def damage(tmp: Path, reference: Collection) -> list[dict]:
    rows = []
    for name, corrupt in CORRUPTIONS.items():
        copy = shutil.copytree(reference.path, tmp / "damaged")
        corrupt(copy)
        found = None
        try:
            Collection.load(copy).verify()
        except CollectionError as e:
            found = str(e)
        rows.append({"corruption": name, "detected": found is not None, "message": found})
        print(f"damage {name:<34} detected: {found is not None}")
        shutil.rmtree(copy)
    return rows


def concurrent(limit, tmp: Path) -> dict:
    out = tmp / "concurrent"
    first = subprocess.Popen(build_command(limit, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "manifest.json").exists() and first.poll() is None:
        time.sleep(0.01)
    second = subprocess.run(build_command(limit, out), capture_output=True, text=True)
    first.wait()
    row = {"second_stopped": second.returncode != 0 and "being written by another" in second.stderr,
           "second_message": second.stderr.strip().splitlines()[-1] if second.stderr else "",
           "first_finished": first.returncode == 0 and Collection.load(out).manifest.complete}
    print(f"two builds at once: second stopped {row['second_stopped']}, first finished {row['first_finished']}")
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=64)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "trust.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(build_command(args.limit, tmp / "reference"), check=True)
        reference = Collection.load(tmp / "reference")
        result = {"items": args.limit, "kills": kills(args.limit, tmp, reference),
                  "update_kills": update_kills(args.limit, tmp, reference),
                  "damage": damage(tmp, reference), "concurrent": concurrent(args.limit, tmp)}
    killed = [k for k in result["kills"] + result["update_kills"] if k["killed"]]
    result["summary"] = {"kills_survived": sum(k["resumed_identical"] for k in killed), "kills_tried": len(killed),
                         "damage_detected": sum(d["detected"] for d in result["damage"]),
                         "damage_tried": len(result["damage"])}
    s = result["summary"]
    print(f"kills survived {s['kills_survived']}/{s['kills_tried']}, damage detected "
          f"{s['damage_detected']}/{s['damage_tried']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
