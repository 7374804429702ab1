"""Restructuring datasets that already exist: split a flat A|B folder, and convert between layouts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pairforge.errors import UsageError
from pairforge.prep.combine import reconcile
from pairforge.prep.imageio import WHITE, ImageRejected, read_rgb
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import SPLITS, KeyRule, Pair, SplitSpec
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


def scan_ab(root: Path, reuse_from: Path | None = None) -> PairTable:
    """Every image of an `ab` dataset's split folders, as single-source pairs with role `AB`."""
    table = PairTable(reuse_from)
    table.add_folder(root, PLAIN, "AB", by_split=True)
    table.pair(["AB"])
    return table


def scan_flat(root: Path, spec: SplitSpec, seed: int, reuse_from: Path | None = None) -> PairTable:
    """Every image of a flat folder of A|B images, split by `spec`."""
    if any((root / s).is_dir() for s in SPLITS):
        raise UsageError(f"{root} already has train/val/test folders; split takes a flat folder of A|B images")
    table = PairTable(reuse_from)
    table.add_folder(root, PLAIN, "AB")
    table.pair(["AB"], spec, seed)
    return table


def scan_sided(root: Path, layout: str, reuse_from: Path | None = None) -> PairTable:
    """Pairs of a `split` or `unaligned` dataset, matched by key within each split."""
    table = PairTable(reuse_from)
    for split in SPLITS:
        for side in "AB":
            folder = f"{split}/{side}" if layout == "split" else f"{split}{side}"
            if (root / folder).is_dir():
                table.add_folder(root, PLAIN, side, split=split, under=folder)
    table.pair(["A", "B"])
    return table


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
