"""The fast tier's stand-ins: a deterministic fake dual encoder and a tiny collection built with
it through the real builder, so search, fusion, filters, explanations, query parsing and the
app's handlers run in seconds without model weights or the sample data; `write_drive` does the same
for driving scenes (folders of ordered frames).

The fake encoder embeds a text as the normalised sum of one fixed random vector per word, and an
image as the vector of the colour word nearest its left half (the "subject"), plus half the
vector of its right half's colour (the "background"). So "a red boat" finds red images."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from mosaic.models import DualEncoder, normalize
from mosaic.util import STOPWORDS, words

DIM = 64
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
           "black": (15, 15, 15), "white": (240, 240, 240)}


def word_vector(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def nearest_colour(pixels: np.ndarray) -> str:
    mean = pixels.reshape(-1, 3).mean(0)
    return min(COLOURS, key=lambda name: float(np.sum((np.array(COLOURS[name]) - mean) ** 2)))


class FakeEncoder(DualEncoder):
    spec = "fake"
    dim = DIM

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            ws = [w for w in words(text) if w not in STOPWORDS] or words(text)
            rows.append(np.sum([word_vector(w) for w in ws], axis=0) if ws else np.zeros(DIM, np.float32))
        return normalize(np.array(rows, np.float32).reshape(len(texts), DIM))

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        rows = []
        for im in images:
            pixels = np.asarray(im.convert("RGB"), np.float32)
            half = pixels.shape[1] // 2
            rows.append(word_vector(nearest_colour(pixels[:, :half])) + 0.5 * word_vector(nearest_colour(pixels[:, half:])))
        return normalize(np.array(rows, np.float32))


def picture(subject: str, background: str, size: int = 64) -> Image.Image:
    """A picture whose left half is the subject's colour and right half the background's."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[:, : size // 2] = COLOURS[subject]
    pixels[:, size // 2:] = COLOURS[background]
    return Image.fromarray(pixels)


# (file, subject colour, background colour, style, genre, title, artist)
PAINTINGS = [
    ("red-boat.png", "red", "blue", "Baroque", "marina", "A red boat at sea", "Anna Alba"),
    ("red-coat.png", "red", "white", "Baroque", "portrait", "Lady in a red coat", "Anna Alba"),
    ("red-barn.png", "red", "green", "Rococo", "landscape", "The red barn", "Bruno Berg"),
    ("green-field.png", "green", "blue", "Rococo", "landscape", "Green fields under a blue sky", "Bruno Berg"),
    ("green-dress.png", "green", "black", "Cubism", "portrait", "Woman in green", "Carla Cruz"),
    ("blue-lake.png", "blue", "green", "Rococo", "landscape", "Blue lake in the forest", "Bruno Berg"),
    ("blue-boat.png", "blue", "white", "Cubism", "marina", "A blue boat on a white beach", "Carla Cruz"),
    ("yellow-sun.png", "yellow", "blue", "Cubism", "landscape", "Yellow sun over the sea", "Carla Cruz"),
    ("yellow-hat.png", "yellow", "black", "Baroque", "portrait", "Man with a yellow hat", "Anna Alba"),
    ("black-cat.png", "black", "white", "Rococo", "animal", "A black cat", "Bruno Berg"),
    ("white-horse.png", "white", "green", "Baroque", "animal", "White horse in a green meadow", "Anna Alba"),
    ("white-ship.png", "white", "blue", "Cubism", "marina", "A white ship", "Carla Cruz"),
]


def write_paintings(root: Path) -> Path:
    """A WikiArt-layout folder (metadata.csv + images/) of the paintings above."""
    (root / "images").mkdir(parents=True)
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "artist", "style", "genre", "title"])
        for file, subject, background, style, genre, title, artist in PAINTINGS:
            picture(subject, background).save(root / "images" / file)
            writer.writerow([file, artist, style, genre, title])
    return root


# scene -> its frames in order, each (subject colour, background colour)
SCENES = {
    "city": [("red", "black"), ("red", "white"), ("yellow", "black"), ("blue", "white"), ("red", "green"),
             ("white", "black")],
    "coast": [("blue", "white"), ("white", "blue"), ("green", "blue")],
}


def write_drive(root: Path) -> Path:
    """A driving source folder: one folder of ordered frames a scene, the scenes above."""
    for scene, frames in SCENES.items():
        (root / scene).mkdir(parents=True)
        for i, (subject, background) in enumerate(frames):
            picture(subject, background).save(root / scene / f"frame_{i:04d}.png")
    return root
