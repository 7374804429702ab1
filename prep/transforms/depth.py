"""Depth maps as training images: validity, validity-aware resizing, sparse sampling, crops and encodings.

Depth is a float32 HxW array in metres; 0 (or NaN, or a negative value) means "no measurement" (invalid).
Encodings, all of which keep invalid pixels apart from every valid depth:

- `gray16`: uint16 single channel, metres x `scale` (KITTI's own x256, or millimetres x1000 for NYU); 0 = invalid.
- `color`: 8-bit RGB through the plasma colormap (CIELAB lightness rises strictly with depth), linear over
  0..max-depth; invalid pixels are black, a colour no depth maps to.
- `gray8`: 8-bit gray replicated to RGB, 1..255 linear over 0..max-depth; 0 = invalid.

Depths beyond max-depth are clipped to it in every encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pairforge.prep.imageio import ImageFormat, ImageRejected
from pairforge.prep.pairing import key_rng
from pairforge.prep.transforms.resize import resize
from pairforge.prep.writers import PairImages, SplitLayout

ENCODINGS = ("color", "gray8", "gray16")
DEPTH_RESIZES = ("masked", "nearest")
CROP_MODES = ("random", "center", "none")
INVALID_RGB = (0, 0, 0)
VALID_DIR = "B_valid"
_EPS = 1e-6


def _colormap() -> np.ndarray:
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_PLASMA)
    return np.ascontiguousarray(lut[:, 0, ::-1])  # BGR -> RGB


COLORMAP = _colormap()  # 256 x RGB uint8: index 0 = 0 m, 255 = max-depth


def valid_mask(depth: np.ndarray) -> np.ndarray:
    """Where a depth map holds a measurement: finite and positive."""
    return np.isfinite(depth) & (depth > 0)


def resize_depth(depth: np.ndarray, size: tuple[int, int], mode: str = "masked") -> np.ndarray:
    """Resize depth to (width, height) without ever mixing invalid pixels into valid ones.

    `masked` averages only the valid pixels under each output pixel (area weights when shrinking, bilinear when
    enlarging); an output pixel with no valid contributor stays invalid (0). `nearest` picks one source pixel.
    Either way every output depth lies within the valid depths around it: a hole never becomes a near value.
    """
    width, height = size
    if depth.shape[:2] == (height, width):
        return depth
    if mode == "nearest":
        return cv2.resize(depth, size, interpolation=cv2.INTER_NEAREST_EXACT)
    valid = valid_mask(depth)
    shrinking = width * height < depth.shape[0] * depth.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    weight = cv2.resize(valid.astype(np.float32), size, interpolation=interpolation)
    total = cv2.resize(np.where(valid, depth, 0).astype(np.float32), size, interpolation=interpolation)
    return np.where(weight > _EPS, total / np.maximum(weight, _EPS), 0).astype(np.float32)


def sample_points(depth: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Keep `count` valid pixels drawn uniformly without replacement (all when fewer); the rest become invalid."""
    candidates = np.flatnonzero(valid_mask(depth))
    keep = rng.choice(candidates, size=min(count, candidates.size), replace=False)
    sparse = np.zeros(depth.shape, np.float32)
    sparse.flat[keep] = depth.flat[keep]
    return sparse


def validity_image(depth: np.ndarray) -> np.ndarray:
    """The measured pixels as an 8-bit single-channel mask: 255 measured, 0 not."""
    return np.where(valid_mask(depth), 255, 0).astype(np.uint8)


@dataclass(frozen=True)
class DepthCoding:
    """One of ENCODINGS with its range: `max_depth` metres (clip, and 8-bit scale), `scale` gray16 units/metre."""

    encoding: str = "color"
    max_depth: float = 80.0
    scale: float = 256.0

    def encode(self, depth: np.ndarray) -> np.ndarray:
        valid = valid_mask(depth)
        clipped = np.minimum(np.where(valid, depth, 0), self.max_depth)
        if self.encoding == "gray16":  # a valid depth below one unit stays valid (1), never 0
            return np.where(valid, np.clip(np.rint(clipped * self.scale), 1, 65535), 0).astype(np.uint16)
        fraction = clipped / self.max_depth
        if self.encoding == "gray8":
            gray = np.where(valid, 1 + np.rint(fraction * 254), 0).astype(np.uint8)
            return np.repeat(gray[:, :, None], 3, axis=2)
        rgb = COLORMAP[np.rint(fraction * 255).astype(np.uint8)]
        rgb[~valid] = INVALID_RGB
        return rgb

    def decode(self, image: np.ndarray) -> np.ndarray:
        """The inverse of `encode` (up to its quantisation): metres, 0 where invalid. Colours decode to the
        nearest colormap entry or to invalid when nearest to the reserved colour."""
        if self.encoding == "gray16":
            return image.astype(np.float32) / self.scale
        if self.encoding == "gray8":
            gray = image[..., 0].astype(np.float32)
            return np.where(gray > 0, (gray - 1) / 254 * self.max_depth, 0).astype(np.float32)
        palette = np.vstack([COLORMAP, INVALID_RGB]).astype(np.float32)
        pixels = image.reshape(-1, 3).astype(np.float32)
        distance = (pixels**2).sum(1, keepdims=True) - 2 * pixels @ palette.T + (palette**2).sum(1)
        index = distance.argmin(1)
        depth = np.where(index < 256, index / 255 * self.max_depth, 0).astype(np.float32)
        return depth.reshape(image.shape[:2])

    @property
    def eight_bit(self) -> bool:
        return self.encoding != "gray16"


@dataclass(frozen=True)
class DepthPairImages(PairImages):
    """A pair plus the validity mask of its depth side B, for `SplitWithValidity`."""

    valid: np.ndarray | None = None


class SplitWithValidity(SplitLayout):
    """The `split` layout plus `<split>/B_valid/<key>.png`: 255 where B holds a measurement, 0 where not."""

    def files(self, key, split, images, formats):
        mask = images.valid if images is not None else None
        return [*super().files(key, split, images, formats), (f"{split}/{VALID_DIR}/{key}.png", mask, ImageFormat())]


@dataclass(frozen=True)
class Crops:
    """Per frame, `count` windows of full height and `width` (default: the frame height), positions random
    (seeded per frame), centred, or `none` (the whole frame); with `flip`, each window is mirrored with p=1/2."""

    mode: str = "random"
    count: int = 1
    width: int | None = None
    flip: bool = False

    def key(self, frame_key: str, index: int) -> str:
        return frame_key if self.count == 1 else f"{frame_key}_c{index}"

    def frame_of(self, key: str) -> tuple[str, int]:
        """(frame key, window index) of an output key made by `key`."""
        if self.count == 1:
            return key, 0
        frame_key, index = key.rsplit("_c", 1)
        return frame_key, int(index)

    def window(self, frame_key: str, index: int, frame_w: int, frame_h: int, seed: int) -> tuple[int, int, bool]:
        """(left, width, mirrored) of window `index`; draws are the same on every run and with or without flip."""
        width = frame_w if self.mode == "none" else self.width or frame_h
        if width > frame_w:
            raise ImageRejected(
                f"frame {frame_w}x{frame_h} is narrower than the crop width {width}", "frame too narrow"
            )
        rng = key_rng(frame_key, seed)
        lefts = rng.integers(0, frame_w - width + 1, size=self.count)
        flips = rng.random(self.count) < 0.5
        left = int(lefts[index]) if self.mode == "random" else (frame_w - width) // 2
        return left, width, bool(self.flip and flips[index])


@dataclass(frozen=True)
class DepthPairMaker:
    """Turns one frame's A (RGB, or depth for sparse-to-dense) and depth B into one cropped, resized, encoded pair.

    With `samples`, a depth A keeps only that many measured pixels (drawn per output key after resizing)."""

    crops: Crops
    size: tuple[int, int]
    coding: DepthCoding
    depth_resize: str = "masked"
    seed: int = 0
    samples: int = 0
    validity: bool = False

    def make(self, key: str, a: np.ndarray, b: np.ndarray) -> DepthPairImages:
        (ha, wa), (hb, wb) = a.shape[:2], b.shape[:2]
        if (ha, wa) != (hb, wb):
            raise ImageRejected(f"size mismatch {wa}x{ha} vs depth {wb}x{hb}", "size mismatch")
        frame_key, index = self.crops.frame_of(key)
        left, width, mirrored = self.crops.window(frame_key, index, wa, ha, self.seed)
        a, b = a[:, left : left + width], b[:, left : left + width]
        if mirrored:
            a, b = a[:, ::-1], b[:, ::-1]
        b = resize_depth(np.ascontiguousarray(b), self.size, self.depth_resize)
        if a.ndim == 2:
            a = resize_depth(np.ascontiguousarray(a), self.size, self.depth_resize)
            if self.samples:
                a = sample_points(a, self.samples, key_rng(f"{key}/samples", self.seed))
            a = self.coding.encode(a)
        else:
            a = resize(np.ascontiguousarray(a), self.size)
        valid = validity_image(b) if self.validity else None
        return DepthPairImages(a, self.coding.encode(b), valid=valid)
