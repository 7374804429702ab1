"""Pixels of any type: image files as (H, W, C) arrays of their own dtype and channels, and back.

Files are read keeping their dtype: 8-bit and 16-bit PNG (colour included), JPEG, BMP and WebP through OpenCV;
TIFF through tifffile; `.npy` through NumPy (never pickles). Channels are then converted explicitly to what the
network takes (`to_channels`). Outputs are written back in their own dtype and channels (`write_array`). What the
values mean (their range and units) is `codings.py`'s job.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pairforge.errors import PairforgeError
from pairforge.train.codings import DTYPE_MAX, Coding

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy"}
PNG_CHANNELS = (1, 3, 4)


def read_array(path: Path) -> np.ndarray:
    """An image file as an (H, W, C) array of its own dtype: uint8, uint16 or float32 (RGB order)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PairforgeError(f"{path}: cannot read image ({exc.strerror})") from None
    return decode_array(data, path.suffix, str(path))


def decode_array(data: bytes, suffix: str, name: str) -> np.ndarray:
    """The bytes of an image file (its type told by `suffix`) as (H, W, C) of its own dtype; `name` for errors."""
    suffix = suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(io.BytesIO(data), allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(io.BytesIO(data))
        else:
            array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if array is None:
                raise ValueError("not a decodable image")
            if array.ndim == 3 and array.shape[2] in (3, 4):
                array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    except (OSError, ValueError) as exc:  # tifffile's TiffFileError is a ValueError
        raise PairforgeError(f"{name}: cannot read image ({exc})") from None
    return _as_hwc(array, name)


def list_images(folder: Path) -> dict[str, Path]:
    """Image files directly in `folder`, by stem."""
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()}


def read_image(path: Path, channels: int, flag: str) -> np.ndarray:
    """One image file as (H, W, `channels`) of its own dtype (`flag` names the channel option in errors)."""
    return to_channels(read_array(path), channels, flag)


def _as_hwc(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise PairforgeError(f"{name}: expected an H x W or H x W x C image, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    if array.dtype not in (np.uint8, np.uint16):
        raise PairforgeError(f"{name}: {array.dtype} pixels are not supported (uint8, uint16 or float)")
    return array


def to_channels(array: np.ndarray, channels: int, flag: str) -> np.ndarray:
    """Convert (H, W, C) to `channels`: colour -> gray by ITU-R 601 luma (as Pillow's "L"), gray -> colour by
    repetition, alpha dropped for 3 and added (opaque) for 4; anything else is an error naming `flag`."""
    have = array.shape[2]
    if have == channels:
        return array
    if channels == 1 and have in (2, 3, 4):
        return array[:, :, :1] if have == 2 else luma(array[:, :, :3])
    if channels in (3, 4) and have <= 4:
        colour = array[:, :, :3] if have >= 3 else np.repeat(array[:, :, :1], 3, axis=2)
        if channels == 3:
            return colour
        opaque = np.full_like(array[:, :, :1], DTYPE_MAX[array.dtype.name])
        return np.concatenate([colour, array[:, :, 1:2] if have == 2 else opaque], axis=2)
    raise PairforgeError(f"{flag} {channels}: the image has {have} channels")


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W, 1) gray: R 0.299 + G 0.587 + B 0.114, in Pillow's exact integer arithmetic."""
    if rgb.dtype.kind == "f":
        return (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
    wide = rgb.astype(np.int64)
    gray = (wide[:, :, 0] * 19595 + wide[:, :, 1] * 38470 + wide[:, :, 2] * 7471 + 0x8000) >> 16
    return gray.astype(rgb.dtype)[:, :, None]


def resize_array(array: np.ndarray, size: tuple[int, int], coding: Coding) -> np.ndarray:
    """Resize (H, W, C) to (width, height): bicubic (Pillow's for 8-bit images, as the reference; OpenCV's for
    the rest), nearest for data where 0 means "no measurement" (a hole must not blend into its neighbours)."""
    width, height = size
    if array.shape[:2] == (height, width):
        return array
    if array.dtype == np.uint8 and array.shape[2] in PNG_CHANNELS:
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        image = Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)
        return _as_hwc(np.array(image.resize(size, Image.Resampling.BICUBIC)), "resized")
    interpolation = cv2.INTER_NEAREST_EXACT if coding.invalid_zero else cv2.INTER_CUBIC
    resized = cv2.resize(array, size, interpolation=interpolation)
    return resized[:, :, None] if resized.ndim == 2 else resized


def write_array(path: Path, array: np.ndarray) -> Path:
    """Write (H, W, C) atomically in a format that keeps its dtype and channels: PNG for 8/16-bit with 1, 3 or 4
    channels, else TIFF (the suffix of `path` is replaced by .tiff). Returns the path written."""
    png = array.dtype != np.float32 and array.shape[2] in PNG_CHANNELS
    path = path if png else path.with_suffix(".tiff")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    if png:
        bgr = array if array.shape[2] == 1 else array[:, :, ::-1] if array.shape[2] == 3 else array[:, :, [2, 1, 0, 3]]
        ok, encoded = cv2.imencode(".png", np.ascontiguousarray(bgr))
        if not ok:
            raise PairforgeError(f"{path}: PNG encoding failed")
        tmp.write_bytes(encoded.tobytes())
    else:
        import tifffile

        if array.shape[2] == 1:
            tifffile.imwrite(tmp, array[:, :, 0], photometric="minisblack")
        else:
            tifffile.imwrite(tmp, array, photometric="minisblack", planarconfig="contig")
    os.replace(tmp, path)
    return path
