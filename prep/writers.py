"""Dataset layouts on disk (CONVENTIONS §1): where each pair's files go and what they contain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pairforge.errors import UsageError
from pairforge.prep.imageio import ImageFormat


@dataclass(frozen=True)
class PairImages:
    """The two sides of one pair as arrays (RGB uint8 unless a layout allows otherwise)."""

    a: np.ndarray
    b: np.ndarray
    # The already-encoded A|B file, when a pair is copied from an `ab` image unchanged (no re-encoding).
    ab_bytes: bytes | None = None
    ab_ext: str = ""


@dataclass(frozen=True)
class Formats:
    """Output encoding of each side; `ab` uses PNG when either side needs exactness."""

    a: ImageFormat
    b: ImageFormat

    @property
    def joint(self) -> ImageFormat:
        return self.a if self.a.ext == "png" else self.b


class Layout:
    """A layout maps one pair to relative output paths and the arrays to encode at those paths."""

    name = ""
    streamed = False
    """True for layouts whose files are members of shards that the parent process writes (webdataset)."""

    def files(self, key: str, split: str, images: PairImages | None, formats: Formats):
        """[(relative path, payload, format)] for this pair: the payload is an array to encode, bytes to write
        as they are, or None when only the paths are needed."""
        raise NotImplementedError


class AbLayout(Layout):
    """`<split>/<key>.<ext>`: A on the left half, B on the right half, plain 8-bit RGB."""

    name = "ab"

    def files(self, key, split, images, formats):
        fmt = formats.joint
        if images is not None and images.ab_bytes is not None and images.ab_ext == fmt.ext:
            return [(f"{split}/{key}.{fmt.ext}", images.ab_bytes, fmt)]
        array = None
        if images is not None:
            for side in (images.a, images.b):
                if side.dtype != np.uint8 or side.ndim != 3 or side.shape[2] != 3:
                    raise ValueError("layout ab needs 8-bit RGB halves; use --layout split for other data")
            if images.a.shape != images.b.shape:
                raise ValueError(f"halves differ in size: {images.a.shape} vs {images.b.shape}")
            array = np.concatenate([images.a, images.b], axis=1)
        return [(f"{split}/{key}.{fmt.ext}", array, fmt)]


class SplitLayout(Layout):
    """`<split>/A/<key>.<ext>` and `<split>/B/<key>.<ext>`: sides may differ in channels, depth and format."""

    name = "split"

    def files(self, key, split, images, formats):
        return [
            (f"{split}/A/{key}.{formats.a.ext}", images.a if images else None, formats.a),
            (f"{split}/B/{key}.{formats.b.ext}", images.b if images else None, formats.b),
        ]


class UnalignedLayout(Layout):
    """`<split>A/<key>.<ext>` and `<split>B/<key>.<ext>`, as CycleGAN's unaligned loader reads them."""

    name = "unaligned"

    def files(self, key, split, images, formats):
        return [
            (f"{split}A/{key}.{formats.a.ext}", images.a if images else None, formats.a),
            (f"{split}B/{key}.{formats.b.ext}", images.b if images else None, formats.b),
        ]


DEFAULT_SHARD_SIZE = 10**9


def shard_key(key: str) -> str:
    """The sample key inside a shard: webdataset splits member names at the first dot, so dots are escaped."""
    return key.replace("%", "%25").replace(".", "%2E")


class WebDatasetLayout(Layout):
    """`<split>-NNNNNN.tar` shards of `<key>.a.<ext>`, `<key>.b.<ext>` and `<key>.json` (the manifest item), as the
    `webdataset` library reads them; `files` gives the members of one pair, `prep/shards.py` writes the shards."""

    name = "webdataset"
    streamed = True

    def __init__(self, shard_size: int = DEFAULT_SHARD_SIZE) -> None:
        self.shard_size = shard_size

    def files(self, key, split, images, formats):
        base = shard_key(key)
        return [
            (f"{base}.a.{formats.a.ext}", images.a if images else None, formats.a),
            (f"{base}.b.{formats.b.ext}", images.b if images else None, formats.b),
        ]


LAYOUTS: dict[str, type[Layout]] = {cls.name: cls for cls in (AbLayout, SplitLayout, UnalignedLayout, WebDatasetLayout)}


def make_layouts(names: list[str], shard_size: int = DEFAULT_SHARD_SIZE) -> list[Layout]:
    unknown = [n for n in names if n not in LAYOUTS]
    if unknown:
        raise UsageError(f"--layout {','.join(unknown)}: choose from {', '.join(LAYOUTS)}")
    if {"ab", "split"} <= set(names):
        raise UsageError(
            "--layout ab,split: both write into <split>/, where the reference trainer's aligned loader would read"
            " split's A/ and B/ files as pairs too; write one here and the other to its own folder"
            " (e.g. pairforge unpair OUT --layout split writes OUT_split)"
        )
    return [WebDatasetLayout(shard_size) if n == "webdataset" else LAYOUTS[n]() for n in names]
