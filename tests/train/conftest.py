"""Fixtures of the trainer tests: small generated datasets and a tiny, fast training config."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pairforge.train.config import TrainConfig

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # one OpenMP thread per xdist worker: no oversubscription of the cores


def blobs(size: int, seed: int) -> np.ndarray:
    """A smooth uint8 RGB image: a colour gradient plus three Gaussian blobs, different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([xx, yy, 1 - xx], -1) * rng.uniform(0.2, 0.6, 3)
    for _ in range(3):
        cy, cx, radius = *rng.uniform(0, 1, 2), rng.uniform(0.1, 0.3)
        image += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))[..., None] * rng.uniform(0, 1, 3)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def invert(a: np.ndarray) -> np.ndarray:
    return 255 - a


def write_ab(root: Path, split: str, count: int, size: int, to_b=invert, seed: int = 0) -> Path:
    """`count` A|B pairs of size x size halves in `<root>/<split>/`; B = to_b(A)."""
    (root / split).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        a = blobs(size, seed * 1000 + i)
        Image.fromarray(np.concatenate([a, to_b(a)], axis=1)).save(root / split / f"p{i:03d}.png")
    return root


@pytest.fixture
def ab_dataset(tmp_path):
    """Factory: an `ab` dataset with train and test splits."""

    def make(train: int = 6, test: int = 3, size: int = 128, to_b=invert) -> Path:
        root = tmp_path / "data"
        write_ab(root, "train", train, size, to_b)
        write_ab(root, "test", test, size, to_b, seed=1)
        return root

    return make


@pytest.fixture
def tiny(tmp_path):
    """Factory: a TrainConfig with tiny networks, 128x128 crops and run output under tmp_path."""

    def make(dataroot: Path, **options) -> TrainConfig:
        values = {
            "dataroot": dataroot,
            "runs_dir": tmp_path / "runs",
            "name": "tiny",
            "netG": "unet_128",
            "ngf": 8,
            "ndf": 8,
            "load_size": 136,
            "crop_size": 128,
            "batch_size": 2,
            "n_epochs": 2,
            "n_epochs_decay": 2,
            "print_freq": 2,
            "device": "cpu",
        }
        return TrainConfig(**(values | options))

    return make
