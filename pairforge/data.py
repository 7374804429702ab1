"""`PairedDataset`: a dataset that pairforge wrote, as a torch `Dataset`, for your own training loop.

    from torch.utils.data import DataLoader
    from pairforge.data import PairedDataset

    pairs = PairedDataset("datasets/facades", split="train")   # the ab, split, unaligned or webdataset layout
    for batch in DataLoader(pairs, batch_size=16, shuffle=True):
        a, b, keys = batch["A"], batch["B"], batch["key"]        # (N, C, H, W) float32 in [0, 1]

The pairs and their keys come from the dataset's manifest.json, so every layout gives the same items in the same
(key) order; webdataset shards are read by member offset, without the webdataset library.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pairforge.errors import UsageError
from pairforge.manifest_lines import MANIFEST_NAME, ManifestLines
from pairforge.train.codings import DTYPE_MAX
from pairforge.train.pixels import decode_array

LAYOUTS = ("ab", "split", "unaligned", "webdataset")
"""The layouts a PairedDataset reads, in the order it picks one when a dataset has several."""


def _side(path: str, layout: str) -> str:
    """Which side ("A", "B" or "AB") an output file of `layout` holds."""
    if layout == "ab":
        return "AB"
    if layout == "webdataset":
        return path.rsplit("/", 1)[1].split(".")[-2].upper()  # <shard>/<key>.a.<ext>
    return path.split("/")[-2][-1]  # split: <split>/A/<key>, unaligned: <split>A/<key>


class PairedDataset(Dataset):
    """The pairs of one split of a pairforge dataset. Item i is `{"key": str, "A": tensor, "B": tensor}`, each side
    (C, H, W) float32 in [0, 1] (8-bit / 255, 16-bit / 65535, float as stored), or what `transform(item)` returns.
    `layout` picks one of the dataset's layouts (default: the first of ab, split, unaligned, webdataset)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        layout: str | None = None,
        transform: Callable[[dict], object] | None = None,
    ) -> None:
        self.root = Path(root)
        manifest_file = self.root / MANIFEST_NAME
        if not manifest_file.is_file():
            raise UsageError(f"{self.root}: no manifest.json (not a pairforge dataset)")
        lines = ManifestLines(manifest_file)  # records read one at a time: only this split's are kept
        manifest = lines.header
        if manifest.get("incomplete"):
            raise UsageError(f"{self.root}: the run that wrote it did not finish; run the same command again")
        available = [name for name in LAYOUTS if name in manifest.get("layouts", [])]
        layout = layout or (available[0] if available else None)
        if layout not in available:
            raise UsageError(f"{self.root}: layout {layout!r} not in this dataset (it has {', '.join(available)})")
        self.layout, self.transform = layout, transform
        self.items: list[tuple[str, dict[str, str]]] = []
        for item in lines.records("items"):
            if item["split"] == split:
                files = {_side(o["path"], layout): o["path"] for o in item["outputs"] if o["layout"] == layout}
                if "AB" not in files and not {"A", "B"} <= set(files):
                    raise UsageError(f"{self.root}: item {item['key']!r} has no A and B {layout} files (not paired)")
                self.items.append((item["key"], files))
        if not self.items:
            raise UsageError(f"{self.root}: no {split!r} pairs (splits: {', '.join(manifest.get('counts', {}))})")
        self.items.sort()
        self._members = self._index_shards() if layout == "webdataset" else {}

    def _index_shards(self) -> dict[str, tuple[int, int]]:
        """`<shard>/<member>` -> (byte offset, size) of every member of the shards this split uses."""
        shards = {path.split("/")[0] for _, files in self.items for path in files.values()}
        members = {}
        for shard in sorted(shards):
            with tarfile.open(self.root / shard) as tar:
                for member in tar.getmembers():
                    members[f"{shard}/{member.name}"] = (member.offset_data, member.size)
        return members

    def __len__(self) -> int:
        return len(self.items)

    def keys(self) -> list[str]:
        return [key for key, _ in self.items]

    def _read(self, path: str) -> np.ndarray:
        if self.layout != "webdataset":
            return decode_array((self.root / path).read_bytes(), Path(path).suffix, str(self.root / path))
        offset, size = self._members[path]
        with open(self.root / path.split("/")[0], "rb") as shard:
            shard.seek(offset)
            return decode_array(shard.read(size), Path(path).suffix, path)

    def __getitem__(self, index: int):
        key, files = self.items[index]
        if "AB" in files:
            ab = self._read(files["AB"])
            half = ab.shape[1] // 2
            a, b = ab[:, :half], ab[:, half : 2 * half]
        else:
            a, b = self._read(files["A"]), self._read(files["B"])
        item = {"key": key, "A": _tensor(a), "B": _tensor(b)}
        return self.transform(item) if self.transform else item


def _tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) of any stored dtype -> (C, H, W) float32, 8- and 16-bit scaled to [0, 1]."""
    scale = DTYPE_MAX.get(array.dtype.name, 1.0)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float32) / scale)
