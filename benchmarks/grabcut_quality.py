"""`prep celeba --bg grabcut` against true masks: the share of the person kept and of the background removed.

    python benchmarks/grabcut_quality.py            # 100 portraits
    python benchmarks/grabcut_quality.py --n 300

It writes n synthetic aligned portraits (tests/prep/portraits.py: head, hair and shoulders reaching the frame's
sides and bottom, over textured backgrounds; 178x218 JPEGs) as a raw CelebA folder, runs the real CLI
(`prep celeba --bg grabcut --keep-mask --workers 1`) with the default seeds and with user rectangles (among them
0.1,0.05,0.9,1, the default before the portrait seeds), on the default 256 square crop and on the full frame,
and compares every mask written with the true mask framed
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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests/prep/portraits.py
from pairforge.prep.folder_tools import framed
from pairforge.prep.transforms.background import PORTRAIT, grabcut_mask
from pairforge.prep.transforms.resize import resize
from tests.prep.portraits import kept_and_removed, portrait

SIZE = 256
OLD_DEFAULT = "0.1,0.05,0.9,1"


@dataclass(frozen=True)
class Setting:
    """One `prep celeba --bg grabcut` run: the seeds and how the photo is framed before the removal."""

    name: str
    rect: str = PORTRAIT  # the default: no --grabcut-rect flag
    size: tuple[int, int] = (SIZE, SIZE)
    crop: str = "center"

    def flags(self) -> list[str]:
        rect = [] if self.rect == PORTRAIT else ["--grabcut-rect", self.rect]
        return [*rect, "--size", "{}x{}".format(*self.size), "--crop", self.crop]

    def truth(self, person: np.ndarray) -> np.ndarray:
        """The true mask cut and sized as this run cuts and sizes the photo."""
        return resize(framed(person.astype(np.uint8), self.size, self.crop), self.size, "nearest") > 0


FULL_FRAME = {"size": (178, 218), "crop": "none"}
SETTINGS = [
    Setting("default"),
    Setting("old default", OLD_DEFAULT),
    Setting("user rect", "0.05,0.05,0.95,1"),  # 5% margins, touching the bottom
    Setting("default, full frame", **FULL_FRAME),
    Setting("old default, full frame", OLD_DEFAULT, **FULL_FRAME),
]
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


def score(out: Path, truths: dict[str, np.ndarray], setting: Setting) -> dict:
    """Kept and removed shares of every written mask against the truth: means and minima."""
    masks = {key: cv2.imread(str(out / "masks" / "train" / f"{key}.png"), cv2.IMREAD_GRAYSCALE) for key in truths}
    shares = [kept_and_removed(masks[key], setting.truth(person)) for key, person in truths.items()]
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
        seconds: dict[str, list[float]] = {setting.name: [] for setting in SETTINGS}
        for round_ in range(CLI_ROUNDS):  # alternating, so a busier minute does not favour one setting
            for setting in SETTINGS:
                out = work / f"{round_}_{setting.name}"
                seconds[setting.name].append(run_cli(work / "celeba", out, setting.flags()))
        for setting in SETTINGS:
            result = {"setting": setting.name, "grabcut_rect": setting.rect, "n": args.n}
            result |= score(work / f"0_{setting.name}", truths, setting)
            result["cli_images_per_s"] = round(args.n / min(seconds[setting.name]), 1)
            if setting.rect == PORTRAIT:
                result["targets_met"] = all(result[key] >= target for key, target in TARGETS.items())
            print(json.dumps(result), flush=True)
        photos = [framed(portrait(i)[0], (SIZE, SIZE), "center") for i in range(args.n)]
        print(json.dumps(removal_speed(photos)))


if __name__ == "__main__":
    main()
