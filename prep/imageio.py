"""Reading any image safely and writing arrays atomically.

Reading applies EXIF orientation and refuses decompression bombs. `to_rgb8` converts every mode to 8-bit RGB
explicitly:

- grayscale (`L`, `1`) is replicated to three channels;
- palette (`P`) is expanded through its palette (and its transparency, if any);
- alpha (`RGBA`, `LA`, `PA`) is composited over a background colour (white unless told otherwise);
- 16-bit grayscale (`I;16`, `I`) is scaled linearly, 0..65535 -> 0..255, then replicated; 32-bit integer images
  with values outside 0..65535 are refused (scaling them would clip silently);
- `CMYK` and `YCbCr` go through Pillow's conversion; floating-point images (TIFF `F`, float32/64 samples) are
  refused with a reason that says so (they are data, not photos).

Arrays are RGB (not OpenCV's BGR) everywhere in pairforge.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO

# OpenCV's own decoder refuses images over this many pixels, like Pillow below (set before cv2 is imported).
os.environ.setdefault("CV_IO_MAX_IMAGE_PIXELS", "180000000")
import cv2
import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".gif"}
)
# Larger images are refused as decompression bombs (Pillow's default limit is 89 MP and only warns).
MAX_PIXELS = 180_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

WHITE = (255, 255, 255)
StrPath = str | os.PathLike[str]


class ImageRejected(Exception):
    """This input cannot become part of a dataset; the message is the manifest's `reason`."""

    def __init__(self, reason: str, kind: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind or reason.split(":")[0]


def is_image_name(path: StrPath) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def read_bytes(path: StrPath) -> bytes:
    """The file's bytes; unreadable and empty files become an `ImageRejected`."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ImageRejected(f"cannot read file: {exc.strerror}", "cannot read file") from None
    if not data:
        raise ImageRejected("empty file (0 bytes)", "empty file")
    return data


def open_image(path: StrPath, data: bytes | None = None, exif: bool = True) -> Image.Image:
    """Decode fully, with EXIF orientation applied (unless `exif` is False); every failure becomes an
    `ImageRejected`."""
    data = read_bytes(path) if data is None else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                return ImageOps.exif_transpose(img) if exif else img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected(f"decompression bomb refused (over {MAX_PIXELS} pixels)", "too large") from None
    except UnidentifiedImageError:
        if _tiff_sample_format(data) == TIFF_FLOAT:
            raise ImageRejected(FLOAT_REASON, "unsupported image") from None
        raise ImageRejected("corrupt image: not a recognised image format", "corrupt image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"corrupt image: {exc}", "corrupt image") from None


TIFF_FLOAT = 3  # the TIFF SampleFormat tag's value for IEEE floating point
FLOAT_REASON = "unsupported image: floating-point samples are data, not a photo (convert to 8- or 16-bit)"


def _tiff_sample_format(data: bytes) -> int | None:
    """The SampleFormat of a TIFF Pillow cannot open (float RGB, float64), read from its first directory."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    try:
        directory = TiffImagePlugin.ImageFileDirectory_v2(data[:8])
        fh = io.BytesIO(data)
        fh.seek(directory.next)
        directory.load(fh)
        return (directory.get(339) or (None,))[0]
    except (OSError, SyntaxError, ValueError, struct.error):
        return None


def to_rgb8(img: Image.Image, background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Any Pillow image -> HxWx3 uint8 RGB, by the rules in this module's docstring."""
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I"):
        wide = np.asarray(img)
        if mode == "I" and wide.size and (wide.min() < 0 or wide.max() > 65535):
            raise ImageRejected(
                f"unsupported image: 32-bit integer values {wide.min()}..{wide.max()} beyond 0..65535"
                " (convert to 16-bit, choosing the range)",
                "unsupported image",
            )
        wide = wide.astype(np.float32)
        gray = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        raise ImageRejected(FLOAT_REASON, "unsupported image")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return np.asarray(canvas.convert("RGB"))
    return np.asarray(img.convert("RGB"))


def read_rgb(path: StrPath, background: tuple[int, int, int] = WHITE, exif: bool = True) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB (see module docstring for the conversions).

    `exif=False` keeps the stored pixel order, for annotations made on it (COCO's are)."""
    data = read_bytes(path)
    if _is_plain_8bit(data):
        flags = cv2.IMREAD_COLOR_RGB | (0 if exif else cv2.IMREAD_IGNORE_ORIENTATION)
        try:
            return cv2.imdecode(np.frombuffer(data, np.uint8), flags)  # applies EXIF orientation unless ignored
        except cv2.error:
            pass  # e.g. over the pixel limit: Pillow below gives the precise reason
    return to_rgb8(open_image(path, data, exif), background)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_plain_8bit(data: bytes) -> bool:
    """A complete JPEG, or a complete 8-bit gray/RGB PNG without transparency: OpenCV decodes these faster than
    Pillow with the same result. Everything else (alpha, palette, 16-bit, truncated files) goes through Pillow."""
    if data[:3] == b"\xff\xd8\xff":
        return data.rstrip(b"\0")[-2:] == b"\xff\xd9"
    if data[:8] == _PNG_SIGNATURE and len(data) > 33 and data[-8:-4] == b"IEND":
        bit_depth, color_type = data[24], data[25]
        return bit_depth == 8 and color_type in (0, 2) and b"tRNS" not in data[: data.find(b"IDAT")]
    return False


@dataclass(frozen=True)
class ImageFormat:
    """How outputs are encoded: `png` (lossless) or `jpg` (with `quality`)."""

    ext: str = "png"
    quality: int = 95

    def __post_init__(self) -> None:
        if self.ext not in ("png", "jpg"):
            raise ValueError(f"unknown image format {self.ext!r}")


def encode(array: np.ndarray, fmt: ImageFormat) -> bytes:
    """RGB/gray uint8 or uint16 array -> encoded bytes (deterministic for the same input and library)."""
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if fmt.ext == "jpg":
        if array.dtype != np.uint8:
            raise ValueError("JPEG holds 8-bit data only; use --format png for 16-bit outputs")
        ok, buf = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, fmt.quality])
    else:
        ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError(f"could not encode a {array.shape} {array.dtype} array as {fmt.ext}")
    return buf.tobytes()


@contextmanager
def atomic_file(path: StrPath, mode: str = "wb") -> Iterator[IO]:
    """A file to write `path` through: a temporary file in the destination folder, moved into place by
    `os.replace` when the block ends without an error, deleted otherwise."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")  # unique per process; one writer per output
    try:
        with _open_creating_folder(tmp, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _open_creating_folder(path: str, mode: str) -> IO:
    """Open for writing; the folder is made only when missing (not one mkdir call per file)."""
    encoding = None if "b" in mode else "utf-8"
    try:
        return open(path, mode, encoding=encoding)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, mode, encoding=encoding)


def write_atomic(path: StrPath, data: bytes) -> None:
    """Write `data` to `path` atomically (see `atomic_file`)."""
    with atomic_file(path) as fh:
        fh.write(data)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: StrPath) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def image_size(path: StrPath) -> tuple[int, int]:
    """(width, height) from the header only."""
    with Image.open(path) as img:
        return img.size
