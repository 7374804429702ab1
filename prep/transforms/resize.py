"""Resizing, fitting to a size (cover/contain/stretch), padding and cropping of HxW[xC] arrays."""

from __future__ import annotations

import cv2
import numpy as np

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST_EXACT,
}
INTERPOLATION_NAMES = ("auto", *INTERPOLATIONS)
FITS = ("cover", "contain", "stretch")


def resize(image: np.ndarray, size: tuple[int, int], interpolation: str = "auto") -> np.ndarray:
    """Resize to (width, height). `auto` is area averaging when shrinking and bicubic when enlarging."""
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    if interpolation == "auto":
        shrinking = width * height < image.shape[0] * image.shape[1]
        interpolation = "area" if shrinking else "bicubic"
    out = cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])
    return out.reshape(height, width, *image.shape[2:])  # cv2 drops a trailing channel axis of 1


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    top = (image.shape[0] - height) // 2
    left = (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width]


def pad_to(image: np.ndarray, size: tuple[int, int], fill: int | tuple[int, ...] = 0) -> np.ndarray:
    """Pad evenly on all sides (centred) to (width, height) with a constant fill."""
    width, height = size
    top = (height - image.shape[0]) // 2
    left = (width - image.shape[1]) // 2
    canvas = np.empty((height, width, *image.shape[2:]), dtype=image.dtype)
    canvas[...] = fill
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


def fit(
    image: np.ndarray,
    size: tuple[int, int],
    mode: str = "cover",
    interpolation: str = "auto",
    fill: int | tuple[int, ...] = 0,
) -> np.ndarray:
    """Fit to (width, height): `cover` scales to fill then centre-crops, `contain` scales to fit then pads,
    `stretch` resizes ignoring the aspect ratio."""
    width, height = size
    h, w = image.shape[:2]
    if mode == "stretch":
        return resize(image, size, interpolation)
    scale = max(width / w, height / h) if mode == "cover" else min(width / w, height / h)
    scaled = (
        max(width if mode == "cover" else 1, round(w * scale)),
        max(height if mode == "cover" else 1, round(h * scale)),
    )
    if mode == "contain":
        scaled = (min(width, scaled[0]), min(height, scaled[1]))
    resized = resize(image, scaled, interpolation)
    if mode == "cover":
        return center_crop(resized, size)
    if mode == "contain":
        return pad_to(resized, size, fill)
    raise ValueError(f"unknown fit {mode!r}; choose from {', '.join(FITS)}")
