"""Restructuring datasets that already exist: split a flat A|B folder, and convert between layouts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pairforge.errors import UsageError
from pairforge.prep.combine import reconcile
from pairforge.prep.imageio import WHITE, ImageRejected, read_rgb
from pairforge.prep.pairing import SPLITS, FolderIndex, KeyRule, Pair, Rejection, index_folder, match_pairs
from pairforge.prep.writers import PairImages

PLAIN = KeyRule()


def detect_layout(root: Path) -> str:
    """`unaligned` (trainA/...), `split` (train/A/...) or `ab` (train/*.jpg), from the folders present."""
    if any((root / f"{s}{side}").is_dir() for s in SPLITS for side in "AB"):
        return "unaligned"
    if any((root / s / "A").is_dir() for s in SPLITS):
        return "split"
    if any((root / s).is_dir() for s in SPLITS):
        return "ab"
    raise UsageError(f"{root} holds no dataset layout (no train/, val/, test/, trainA/ or testA/ folders)")


def scan_ab(root: Path) -> tuple[list[Pair], list[Rejection]]:
    """Every image of an `ab` dataset's split folders, as single-source pairs with role `AB`."""
    index = index_folder(root, PLAIN, "AB", by_split=True)
    pairs = [Pair(key, split, {"AB": rel}) for (split, key), rel in index.by_output_key().items()]
    rejected = [r for r in index.rejected if r.paths["AB"] not in SPLITS]
    return pairs, rejected


def flat_index(root: Path) -> FolderIndex:
    if any((root / s).is_dir() for s in SPLITS):
        raise UsageError(f"{root} already has train/val/test folders; split takes a flat folder of A|B images")
    return index_folder(root, PLAIN, "AB", by_split=False)


def scan_sided(root: Path, layout: str) -> tuple[list[Pair], list[Rejection]]:
    """Pairs of a `split` or `unaligned` dataset, matched by key within each split."""
    pairs, rejected = [], []
    for split in SPLITS:
        folders = {side: root / (f"{split}/{side}" if layout == "split" else f"{split}{side}") for side in "AB"}
        if not any(f.is_dir() for f in folders.values()):
            continue
        sides = {side: _index_sub(root, folder, side) for side, folder in folders.items()}
        matched, unmatched = match_pairs(sides["A"], sides["B"])
        pairs += [Pair(key, split, {"A": a, "B": b}) for _, key, a, b in matched]
        rejected += unmatched
    return pairs, rejected


def _index_sub(root: Path, folder: Path, role: str) -> FolderIndex:
    """Index one side's folder with paths relative to the dataset root."""
    index = FolderIndex()
    if not folder.is_dir():
        return index
    prefix = folder.relative_to(root).as_posix()
    inner = index_folder(folder, PLAIN, role, by_split=False)
    index.files = {("", key): f"{prefix}/{rel}" for (_, key), rel in inner.files.items()}
    index.rejected = [Rejection({role: f"{prefix}/{r.paths[role]}"}, r.reason) for r in inner.rejected]
    return index


@dataclass(frozen=True)
class HalvesBuilder:
    """Cuts an A|B image into its halves; keeps the original bytes so an `ab` output is a byte copy."""

    root: Path
    background: tuple[int, int, int] = WHITE

    def __call__(self, pair: Pair) -> PairImages:
        path = self.root / pair.sources["AB"]
        ab = read_rgb(path, self.background)
        width = ab.shape[1]
        if width % 2:
            raise ImageRejected(f"odd width {width}: not an A|B pair image", "odd width")
        ext = path.suffix.lower().lstrip(".").replace("jpeg", "jpg")
        return PairImages(ab[:, : width // 2], ab[:, width // 2 :], ab_bytes=path.read_bytes(), ab_ext=ext)


@dataclass(frozen=True)
class JoinBuilder:
    """Reads the A and B files of a `split`/`unaligned` dataset and reconciles their sizes."""

    root: Path
    size_policy: str = "error"
    background: tuple[int, int, int] = WHITE

    def __call__(self, pair: Pair) -> PairImages:
        a = read_rgb(self.root / pair.sources["A"], self.background)
        b = read_rgb(self.root / pair.sources["B"], self.background)
        return PairImages(*reconcile(a, b, self.size_policy, self.background))
