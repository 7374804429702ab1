"""Layouts that other tools read: the reference trainer's aligned loader and `pairforge.data.PairedDataset`."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pairforge.data import PairedDataset
from pairforge.errors import UsageError
from tests.conftest import load, pattern, read_manifest, save

IMAGE_SUFFIXES = {".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".ppm", ".PPM", ".bmp", ".BMP", ".tif", ".TIF"}
"""The file endings the reference trainer's image-folder loader takes as images."""

NAMES = [f"k{i}" for i in range(8)] + ["v1.2"]


@pytest.fixture
def inputs(tmp_path):
    for i, name in enumerate(NAMES):
        save(tmp_path / "A" / f"{name}.png", pattern(20, 12, seed=i))
        save(tmp_path / "B" / f"{name}.png", pattern(20, 12, seed=50 + i))
    return tmp_path / "A", tmp_path / "B"


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32) / 255)


def combine(cli, inputs, out, layout: str):
    result = cli("combine", *inputs, out, "--layout", layout, "--split", "0.6,0.2,0.2", "--shard-size", "3KB", "-q")
    assert result.code == 0, result.err
    return read_manifest(out)


def reference_walk(folder) -> set[str]:
    """Every image file under `folder`, recursively, as the reference aligned loader collects a phase's files."""
    return {os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
            if os.path.splitext(name)[1] in IMAGE_SUFFIXES}  # fmt: skip


def test_ab_with_split_in_one_folder_is_refused(cli, inputs, tmp_path):
    result = cli("combine", *inputs, tmp_path / "out", "--layout", "ab,split")
    assert result.code == 2
    assert "--layout ab,split" in result.err and "pairforge unpair OUT --layout split" in result.err
    assert not (tmp_path / "out").exists()


def test_reference_aligned_walk_sees_exactly_the_ab_pairs(cli, inputs, tmp_path):
    out = tmp_path / "out"
    manifest = combine(cli, inputs, out, "ab,unaligned,webdataset")
    for phase in ("train", "val", "test"):
        found = reference_walk(out / phase)
        expected = {str(out / o["path"]) for item in manifest["items"] if item["split"] == phase
                    for o in item["outputs"] if o["layout"] == "ab"}  # fmt: skip
        assert found == expected and len(found) == manifest["counts"][phase]
        for path in found:  # each one A|B image: A (20x12) left, B right
            key = os.path.splitext(os.path.basename(path))[0]
            i = NAMES.index(key)
            halves = [pattern(20, 12, seed=i), pattern(20, 12, seed=50 + i)]
            assert np.array_equal(load(path), np.concatenate(halves, axis=1))


def test_paired_dataset_reads_every_layout_alike(cli, inputs, tmp_path):
    combine(cli, inputs, tmp_path / "one", "ab,unaligned,webdataset")
    combine(cli, inputs, tmp_path / "two", "split")
    datasets = [PairedDataset(tmp_path / "one", "train", layout) for layout in ("ab", "unaligned", "webdataset")]
    datasets.append(PairedDataset(tmp_path / "two", "train"))
    keys = datasets[0].keys()
    assert len(keys) == read_manifest(tmp_path / "one")["counts"]["train"] and keys == sorted(keys)
    for dataset in datasets:
        assert dataset.keys() == keys
        for item in dataset:
            i = NAMES.index(item["key"])
            assert item["A"].dtype == torch.float32 and item["A"].shape == (3, 12, 20)
            assert torch.equal(item["A"], as_tensor(pattern(20, 12, seed=i)))
            assert torch.equal(item["B"], as_tensor(pattern(20, 12, seed=50 + i)))
    batch = next(iter(DataLoader(datasets[2], batch_size=4)))
    assert batch["A"].shape == (4, 3, 12, 20) and batch["key"] == keys[:4]


def test_paired_dataset_refuses_what_it_cannot_read(cli, inputs, tmp_path):
    with pytest.raises(UsageError, match=r"no manifest\.json"):
        PairedDataset(tmp_path / "A")
    combine(cli, inputs, tmp_path / "out", "ab")
    with pytest.raises(UsageError, match="layout 'split' not in this dataset"):
        PairedDataset(tmp_path / "out", layout="split")
    with pytest.raises(UsageError, match="no 'valid' pairs"):
        PairedDataset(tmp_path / "out", split="valid")
