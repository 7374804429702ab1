"""Person windows and pose drawings: square crops around a person's box, and keypoints drawn as a coloured skeleton.

Coordinates follow COCO: a box (x, y, w, h) is continuous (pixel i spans [i, i + 1)); a keypoint (x, y) is the
index of the pixel it marks, so its centre lies at (x + 0.5, y + 0.5); its visibility v is 0 (not labelled),
1 (labelled, occluded) or 2 (visible). A drawing is 8-bit RGB on black: every limb of the skeleton in a colour of its
own and every joint as a dot in a colour of its own, both from an evenly spaced hue wheel (as OpenPose draws poses).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

RGB = tuple[int, int, int]
_SHIFT = 4  # OpenCV draws at 1/16 pixel precision


@dataclass(frozen=True)
class Window:
    """A square window of an image in whole pixels; it may reach past the image edges (padded when cropped)."""

    left: int
    top: int
    side: int

    @classmethod
    def around(cls, box: tuple[float, float, float, float], margin: float) -> Window:
        """The square centred on `box`, its side the box's longer side plus `margin` of it on each side."""
        x, y, w, h = box
        side = max(1, round(max(w, h) * (1 + 2 * margin)))
        return cls(round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), side)

    def _inside(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the part of the window inside a width x height image (empty when x0 >= x1)."""
        return (
            max(self.left, 0),
            max(self.top, 0),
            min(self.left + self.side, width),
            min(self.top + self.side, height),
        )

    def crop(self, image: np.ndarray, fill: int = 0) -> np.ndarray:
        """The window's pixels, side x side, with `fill` where it leaves the image."""
        out = np.full((self.side, self.side, *image.shape[2:]), fill, dtype=image.dtype)
        x0, y0, x1, y1 = self._inside(image.shape[1], image.shape[0])
        if x0 < x1 and y0 < y1:
            out[y0 - self.top : y1 - self.top, x0 - self.left : x1 - self.left] = image[y0:y1, x0:x1]
        return out

    def box_cover(self, box: tuple[float, float, float, float]) -> float:
        """The fraction of the window's area that `box` (x, y, w, h) covers."""
        x, y, w, h = box
        dx = min(x + w, self.left + self.side) - max(x, self.left)
        dy = min(y + h, self.top + self.side) - max(y, self.top)
        return max(dx, 0) * max(dy, 0) / self.side**2

    def mask_cover(self, mask: np.ndarray) -> float:
        """The fraction of the window's area that a binary HxW `mask` covers."""
        x0, y0, x1, y1 = self._inside(mask.shape[1], mask.shape[0])
        if x0 >= x1 or y0 >= y1:
            return 0.0
        return float(np.count_nonzero(mask[y0:y1, x0:x1])) / self.side**2

    def project(self, keypoints: np.ndarray, size: int) -> np.ndarray:
        """Keypoints (K, 3: x, y, v) -> the same in the continuous coordinates of the window resized to `size`."""
        out = keypoints.astype(np.float64)
        scale = size / self.side
        out[:, 0] = (out[:, 0] + 0.5 - self.left) * scale
        out[:, 1] = (out[:, 1] + 0.5 - self.top) * scale
        return out


@lru_cache
def hue_palette(count: int) -> tuple[RGB, ...]:
    """`count` fully saturated colours evenly spaced around the hue wheel, starting at red."""
    return tuple(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(i / count, 1.0, 1.0)) for i in range(count))


def line_width(size: int) -> int:
    """Limb width (and joint radius) in pixels: 4 at 256, in proportion at other sizes."""
    return max(1, round(size / 64))


def _fixed(u: float, v: float) -> tuple[int, int]:
    """Continuous coordinates -> OpenCV's fixed-point pixel-centre coordinates."""
    return round((u - 0.5) * (1 << _SHIFT)), round((v - 0.5) * (1 << _SHIFT))


def render_pose(
    keypoints: np.ndarray, skeleton: tuple[tuple[int, int], ...], size: int, draw_occluded: bool = False
) -> np.ndarray:
    """Draw keypoints (K, 3: continuous x, y in a size x size canvas, v) on black: limbs, then joints on top.

    `skeleton` pairs joint indices (0-based). Joints with v = 0 are never drawn, v = 1 only with `draw_occluded`;
    a limb is drawn when both its joints are."""
    canvas = np.zeros((size, size, 3), np.uint8)
    width = line_width(size)
    shown = keypoints[:, 2] >= (1 if draw_occluded else 2)
    points = [_fixed(u, v) for u, v in keypoints[:, :2]]
    for (i, j), colour in zip(skeleton, hue_palette(len(skeleton)), strict=True):
        if shown[i] and shown[j]:
            cv2.line(canvas, points[i], points[j], colour, width, cv2.LINE_AA, _SHIFT)
    for k, colour in enumerate(hue_palette(len(keypoints))):
        if shown[k]:
            cv2.circle(canvas, points[k], width << _SHIFT, colour, -1, cv2.LINE_AA, _SHIFT)
    return canvas
