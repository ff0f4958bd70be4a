"""The 8x8 digits example repository (scikit-learn's load_digits, no download): a DVC repository
like the Shuttle one (flywheel.data.examples), for models that take an image tensor.

Each image is one row: px0..px63 (row-major, integers 0..16, as the dataset ships them) and the
`digit` target. Two revisions of the same path, data/digits.csv:

- tag `original`: the scanned digits as they are;
- tag `shifted`: the same digits scanned by a worse device: moved one pixel to the right (the left
  column blank) with sensor noise (Gaussian, sd NOISE_SD, rounded and clipped to 0..16). The pixel
  distributions move (a DriftMonitor over the pixels sees it) and a model trained on `original`
  loses accuracy on them, so a model retrained on `shifted` wins.

The images are shuffled once (SEED); the first TRAIN_ROWS are committed, the rest are never
committed and serve as traffic (`frame(..., part="traffic")`), of either revision.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.data import dvcenv, examples

TARGET = "digit"
PIXELS = [f"px{i}" for i in range(64)]
DATA_PATH = "data/digits.csv"
REVISIONS = ("original", "shifted")
TRAIN_ROWS = 1400  # of 1797 images; the other 397 are traffic
NOISE_SD = 2.0
SEED = 0


@functools.cache
def _images() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images [N, 64] (int64) and their digits, shuffled once."""
    from sklearn import datasets

    data = datasets.load_digits()
    order = np.random.default_rng(SEED).permutation(len(data.target))
    return data.data[order].astype(np.int64), data.target[order].astype(np.int64)


def shift(images: np.ndarray, seed: int = SEED) -> np.ndarray:
    """The images one pixel to the right (left column blank), with rounded Gaussian noise."""
    grid = np.asarray(images, dtype=np.float64).reshape(-1, 8, 8)
    moved = np.zeros_like(grid)
    moved[:, :, 1:] = grid[:, :, :-1]
    noisy = moved + np.random.default_rng(seed + 1).normal(0.0, NOISE_SD, size=moved.shape)
    return np.clip(np.rint(noisy), 0, 16).astype(np.int64).reshape(len(grid), 64)


def frame(revision: str = "original", part: str = "train", labelled: bool = True) -> pd.DataFrame:
    """The rows of one revision: part="train" is what the repository commits, part="traffic" the
    images never committed (what a server would see). labelled=False drops the digit."""
    if revision not in REVISIONS:
        raise ValueError(f"revision must be one of {REVISIONS}, got {revision!r}")
    if part not in ("train", "traffic"):
        raise ValueError("part must be 'train' or 'traffic'")
    images, digits = _images()
    rows = slice(0, TRAIN_ROWS) if part == "train" else slice(TRAIN_ROWS, None)
    pixels = images[rows] if revision == "original" else shift(images)[rows]
    out = pd.DataFrame(pixels, columns=PIXELS)
    if labelled:
        out[TARGET] = digits[rows]
    return out


def make_repo(root: Path, *, remote: dict[str, str] | None = None) -> examples.ExampleRepo:
    """Create a git + DVC repository at `root` (empty or absent) with the tags `original` and
    `shifted` (both data/digits.csv), pushed to a local DVC remote `<root>.dvc-remote` beside it
    (or `remote`), as flywheel.data.examples.make_repo does for the Shuttle data."""
    dvcenv.ensure_offline()
    root = root.resolve()
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    remote_dir = examples.init_repo(root, remote)
    commits, hashes = {}, {}
    messages = {
        "original": "Data: 8x8 digits as scanned",
        "shifted": "Data: 8x8 digits from the new scanner (one pixel right, noisier)",
    }
    for tag in REVISIONS:
        commits[tag], hashes[tag] = examples.commit_rows(root, frame(tag), tag, messages[tag], path=DATA_PATH)
    return examples.ExampleRepo(root, remote_dir, DATA_PATH, commits, hashes)


def main(argv: list[str]) -> int:
    return examples.run_cli(argv, "flywheel.data.digits", make_repo)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
