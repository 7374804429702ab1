"""`prep celeba --bg grabcut` against true masks: the share of the person kept and of the background removed.

    python benchmarks/grabcut_quality.py            # 100 portraits
    python benchmarks/grabcut_quality.py --n 300

It writes n synthetic aligned portraits (tests/prep/portraits.py: head, hair and shoulders reaching the frame's
sides and bottom, over textured backgrounds; 178x218 JPEGs) as a raw CelebA folder, runs the real CLI
(`prep celeba --bg grabcut --keep-mask --workers 1`) with the default seeds and with user rectangles (among them
0.1,0.05,0.9,1, the default before the portrait seeds), and compares every mask written with the true mask framed
the same way. Per setting it prints the share of the person kept and of the background removed (mean and minimum
over the images) and images/s (the best of alternating runs). The speed of the default against the old default is
also measured on the background removal alone (the same framed photos, alternating rounds, median ratio), as CLI
runs on a shared machine vary more than the difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/prep/portraits.py
from pairforge.prep.folder_tools import framed
from pairforge.prep.transforms.background import grabcut_mask
from pairforge.prep.transforms.resize import resize
from tests.prep.portraits import kept_and_removed, portrait

SIZE = 256
OLD_DEFAULT = "0.1,0.05,0.9,1"
SETTINGS = {
    "default": [],
    "old default": ["--grabcut-rect", OLD_DEFAULT],
    "user rect": ["--grabcut-rect", "0.05,0.05,0.95,1"],
}
TARGETS = {"kept_mean": 0.90, "kept_min": 0.75, "removed_mean": 0.85}
ROUNDS = 3  # of the background removal alone
CLI_ROUNDS = 2  # CLI runs per setting; the fastest counts


def write_celeba(root: Path, n: int) -> dict[str, np.ndarray]:
    """n portraits as `img_align_celeba/NNNNNN.jpg`, all in train; returns {key: true person mask}."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    truths = {}
    for i in range(n):
        key = f"{i + 1:06d}"
        photo, person = portrait(i)
        cv2.imwrite(str(images / f"{key}.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        truths[key] = person
    (root / "list_eval_partition.txt").write_text("".join(f"{key}.jpg 0\n" for key in truths))
    return truths


def framed_truth(person: np.ndarray) -> np.ndarray:
    """The true mask cut and sized as `prep celeba --size 256` cuts and sizes the photo."""
    mask = framed(person.astype(np.uint8), (SIZE, SIZE), "center")
    return resize(mask, (SIZE, SIZE), "nearest") > 0


def score(out: Path, truths: dict[str, np.ndarray]) -> dict:
    """Kept and removed shares of every written mask against the truth: means and minima."""
    shares = [
        kept_and_removed(cv2.imread(str(out / "masks" / "train" / f"{key}.png"), cv2.IMREAD_GRAYSCALE), framed_truth(p))
        for key, p in truths.items()
    ]
    kept, removed = np.array(shares).T
    return {
        "kept_mean": round(float(kept.mean()), 3),
        "kept_min": round(float(kept.min()), 3),
        "removed_mean": round(float(removed.mean()), 3),
        "removed_min": round(float(removed.min()), 3),
    }


def run_cli(src: Path, out: Path, extra: list[str]) -> float:
    """`pairforge prep celeba SRC OUT --bg grabcut --keep-mask --workers 1 EXTRA` in a fresh process: seconds."""
    args = ["prep", "celeba", str(src), str(out), "--bg", "grabcut", "--keep-mask", "--workers", "1", "-q", *extra]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pairforge.cli", *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"pairforge {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return time.perf_counter() - start


def removal_speed(photos: list[np.ndarray]) -> dict:
    """Seconds per image of the default seeds and of the old default rectangle, alternating rounds."""
    old_rect = tuple(float(f) for f in OLD_DEFAULT.split(","))
    seconds: dict[str, list[float]] = {"default": [], "old default": []}
    for _ in range(ROUNDS):
        for name, rect in (("default", None), ("old default", old_rect)):
            start = time.perf_counter()
            for photo in photos:
                grabcut_mask(photo, rect)
            seconds[name].append((time.perf_counter() - start) / len(photos))
    ratios = [old / new for old, new in zip(seconds["old default"], seconds["default"], strict=True)]
    return {
        "default_ms_per_image": round(1000 * statistics.median(seconds["default"]), 1),
        "old_default_ms_per_image": round(1000 * statistics.median(seconds["old default"]), 1),
        "speed_ratio_default_vs_old": round(statistics.median(ratios), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="portraits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        truths = write_celeba(work / "celeba", args.n)
        seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for round_ in range(CLI_ROUNDS):  # alternating, so a busier minute does not favour one setting
            for name, extra in SETTINGS.items():
                seconds[name].append(run_cli(work / "celeba", work / f"{name.replace(' ', '_')}_{round_}", extra))
        for name, extra in SETTINGS.items():
            result = {"setting": name, "grabcut_rect": extra[1] if extra else "portrait", "n": args.n}
            result |= score(work / f"{name.replace(' ', '_')}_0", truths)
            result["cli_images_per_s"] = round(args.n / min(seconds[name]), 1)
            if name == "default":
                result["targets_met"] = all(result[key] >= target for key, target in TARGETS.items())
            print(json.dumps(result), flush=True)
        photos = [framed(portrait(i)[0], (SIZE, SIZE), "center") for i in range(args.n)]
        print(json.dumps(removal_speed(photos)))


if __name__ == "__main__":
    main()
