"""`pairforge demo` (and `make demo`): grayscale -> colour on crops of the colour photos that ship inside
scikit-image, then the bundled `demo` recipe on them: prep, a short pix2pix training, test and report.

Runs offline. The raw folders look as users' folders do (mixed formats, a photo without its partner, a truncated
download, stray files); everything goes under `demo-out/` (the recipe's paths).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pairforge.recipes import RECIPES_DIR

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "rocket",
    "motorcycle",
)
TILE = 128
LONG_SIDE = 640
"""Photos are shrunk to at most this many pixels on their long side, then cut into TILE x TILE crops that do not
overlap (so a test crop never shares pixels with a training crop)."""

OUT = Path("demo-out")


def _photo(name: str) -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()


def crops(image: np.ndarray) -> dict[str, np.ndarray]:
    """Non-overlapping TILE x TILE crops of `image` (shrunk to LONG_SIDE), keyed `<row>_<col>`."""
    scale = min(1.0, LONG_SIDE / max(image.shape[:2]))
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    return {
        f"{r}_{c}": image[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
        for r in range(rows)
        for c in range(cols)
    }


def write_raw(raw: Path) -> None:
    """gray/ and photos/ the way users' folders look: mixed formats, and a few broken or stray files."""
    gray, photos = raw / "gray", raw / "photos"
    gray.mkdir(parents=True)
    photos.mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        for key, crop in crops(_photo(name)).items():
            ext = (".png", ".jpg", ".JPG")[i % 3]
            Image.fromarray(crop).save(photos / f"{name}_{key}{ext}", **({"quality": 95} if ext != ".png" else {}))
            Image.fromarray(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)).save(gray / f"{name}_{key}.png")
    (gray / "rocket_0_0.png").unlink()  # a photo without its grayscale partner
    (photos / "broken.jpg").write_bytes((photos / "coffee_0_0.JPG").read_bytes()[:2000])  # truncated download
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gray / "broken.png")
    (photos / ".DS_Store").write_bytes(b"\0")
    (photos / "notes.txt").write_text("shot list\n")


def run_demo(out: Path = OUT) -> None:
    """Write the raw folders under demo-out/raw/demo (once: an earlier demo's are reused), then run the bundled demo
    recipe on them."""
    from pairforge.cli import main as pairforge

    raw = out / "raw"
    if not (raw / "demo").is_dir():  # written once, moved into place whole; later demos reuse it, delete nothing
        scratch = raw / f".demo.tmp-{os.getpid()}"
        write_raw(scratch)
        os.replace(scratch, raw / "demo")
    print(f"raw folders (with a few broken files on purpose): {raw}/demo/gray, {raw}/demo/photos\n")
    argv = ["run", str(RECIPES_DIR / "demo.toml"), "--data-root", str(raw)]
    print("$ pairforge " + " ".join(argv))
    pairforge(argv)
    print(f"\nopen {out}/runs/demo/report.html; the dataset is {out}/datasets/gray2colour (A = gray, B = colour)")


if __name__ == "__main__":
    from pairforge.cli import main

    main(["demo", *sys.argv[1:]])
