"""`pairforge combine`: the user's two folders of images -> pairs, matched by key, sizes reconciled."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pairforge.errors import UsageError
from pairforge.prep.imageio import WHITE, ImageRejected, read_rgb
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import KeyRule, Pair, SplitSpec, has_split_folders
from pairforge.prep.transforms.resize import center_crop, pad_to, resize
from pairforge.prep.writers import PairImages

SIZE_POLICIES = ("error", "resize-b", "resize", "pad", "crop")
# Joining an existing split/unaligned dataset has no --size to resize both halves to.
JOIN_POLICIES = tuple(p for p in SIZE_POLICIES if p != "resize")
LOSSLESS = frozenset({".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".gif"})


def find_pairs(
    a_dir: Path,
    b_dir: Path,
    a_rule: KeyRule,
    b_rule: KeyRule,
    split: SplitSpec,
    seed: int,
    reuse_from: Path | None = None,
) -> PairTable:
    """Pair files of two folders by key, within official splits when both have `train/val/test` sub-folders,
    otherwise assigning splits from the key hash (or take the pairing saved in `reuse_from`, see `PairTable`)."""
    by_split = has_split_folders(a_dir), has_split_folders(b_dir)
    if by_split[0] != by_split[1]:
        with_splits, without = (a_dir, b_dir) if by_split[0] else (b_dir, a_dir)
        raise UsageError(f"{with_splits} has train/val/test sub-folders but {without} has not; use the same shape")
    table = PairTable(reuse_from)
    table.add_folder(a_dir, a_rule, "A", by_split[0])
    table.add_folder(b_dir, b_rule, "B", by_split[0])
    table.pair(["A", "B"], split, seed)
    return table


def default_format(pairs: PairTable) -> str:
    """PNG when any input is lossless (exactness is kept), JPEG when every input is already lossy."""
    return "png" if pairs.extensions & LOSSLESS else "jpg"


def reconcile(a: np.ndarray, b: np.ndarray, policy: str, background=WHITE) -> tuple[np.ndarray, np.ndarray]:
    """Make both halves one size by `--size-policy` (`resize` leaves it to the final `--size`)."""
    if a.shape == b.shape or policy == "resize":
        return a, b
    (ha, wa), (hb, wb) = a.shape[:2], b.shape[:2]
    if policy == "error":
        raise ImageRejected(f"size mismatch {wa}x{ha} vs {wb}x{hb} with --size-policy error", "size mismatch")
    if policy == "resize-b":
        return a, resize(b, (wa, ha))
    if policy == "pad":
        size = (max(wa, wb), max(ha, hb))
        return pad_to(a, size, background), pad_to(b, size, background)
    if policy == "crop":
        size = (min(wa, wb), min(ha, hb))
        return center_crop(a, size), center_crop(b, size)
    raise ValueError(f"unknown size policy {policy!r}")


@dataclass(frozen=True)
class CombineBuilder:
    """Reads A and B, reconciles their sizes, optionally resizes both, and orders them by direction."""

    a_root: Path
    b_root: Path
    size_policy: str = "error"
    size: tuple[int, int] | None = None
    interpolation: str = "auto"
    background: tuple[int, int, int] = WHITE
    b_on_left: bool = False

    def __call__(self, pair: Pair) -> PairImages:
        a = read_rgb(os.path.join(self.a_root, pair.sources["A"]), self.background)
        b = read_rgb(os.path.join(self.b_root, pair.sources["B"]), self.background)
        a, b = reconcile(a, b, self.size_policy, self.background)
        if self.size is not None:
            a, b = resize(a, self.size, self.interpolation), resize(b, self.size, self.interpolation)
        return PairImages(b, a) if self.b_on_left else PairImages(a, b)
