"""Pillow's bicubic resize, as `Image.resize` does it in the reference pix2pix/CycleGAN preparation scripts.

Pillow's filter widens with the scale factor when shrinking (antialiased), unlike OpenCV's fixed 4x4 bicubic, so
datasets made by the reference scripts are only reproduced with Pillow itself.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def pillow_bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxW or HxWx3 uint8 array to (width, height) with Pillow's bicubic filter."""
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
