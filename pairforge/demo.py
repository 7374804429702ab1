"""`make demo`: a messy raw folder from scikit-image's bundled photos, then `recipes/demo.toml` on it: prep,
a short pix2pix training, test and report.

Runs offline: every image ships inside the scikit-image package. Usage: `python -m pairforge.demo`; everything
goes under `demo-out/` (the recipe's paths).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from pairforge.cli import main as pairforge
from pairforge.recipes import RECIPES_DIR

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "colorwheel",
    "camera",
    "brick",
    "grass",
    "moon",
    "coins",
    "page",
    "logo",
)


def write_raw(raw: Path) -> None:
    """photos/ and edges/ the way users' folders look: mixed formats and modes, and a few broken files."""
    from skimage import data

    photos, edges = raw / "photos", raw / "edges"
    photos.mkdir(parents=True)
    edges.mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        image = getattr(data, name)()
        ext = ".png" if image.ndim == 2 or image.shape[2] == 4 else (".JPG" if i % 3 == 0 else ".jpg")
        Image.fromarray(image).save(photos / f"{name}{ext}", **({"quality": 95} if ext != ".png" else {}))
        gray = image if image.ndim == 2 else cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2GRAY)
        Image.fromarray(255 - cv2.Canny(gray, 80, 160)).save(edges / f"{name}.png")
    (edges / "rocket.png").unlink()  # a photo without its edge map
    (photos / "broken.jpg").write_bytes((photos / "coffee.jpg").read_bytes()[:2000])  # truncated download
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(edges / "broken.png")
    (photos / ".DS_Store").write_bytes(b"\0")
    (photos / "notes.txt").write_text("shot list\n")


OUT = Path("demo-out")


def run(out: Path = OUT) -> int:
    """Write the raw folders under demo-out/raw/demo, then run recipes/demo.toml on them."""
    raw = out / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    write_raw(raw / "demo")
    print(f"raw folders (with a few broken files on purpose): {raw}/demo/photos, {raw}/demo/edges\n")
    argv = ["run", str(RECIPES_DIR / "demo.toml"), "--data-root", str(raw)]
    print("$ pairforge " + " ".join(argv))
    try:
        pairforge(argv)
    except SystemExit as exc:
        if exc.code:
            return int(exc.code)
    print(f"\nopen {out}/runs/demo/report.html; the dataset is {out}/datasets/edges2photos (A = edges, B = photo)")
    return 0


if __name__ == "__main__":
    sys.exit(run())
