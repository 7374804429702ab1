"""`pairforge prep kitti` and `prep nyu`: frames/s and peak memory on generated inputs of real frame size.

    python benchmarks/depth_speed.py                # n=100
    python benchmarks/depth_speed.py --n 400

KITTI: n annotated 1242x375 frames (RGB PNG + 16-bit depth PNG). NYU: a labeled-set .mat of n 480x640 frames,
stored as MATLAB v7.3 stores it (HDF5, axes reversed, per-frame gzip chunks). Each runs the real CLI in a subprocess
(start-up included) with default options, and reports the largest process's peak RSS for n and 4n frames: NYU
streams frame by frame, so it must not grow with the file.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import cv2
import h5py
import numpy as np
from prep_speed import run_pairforge


def generate_kitti(root: Path, n: int) -> Path:
    """n annotated frames (camera 2) of one drive, plus the unannotated first and last frames."""
    rng = np.random.default_rng(0)
    drive = "2011_09_26_drive_0001_sync"
    rgb_dir = root / "raw" / "2011_09_26" / drive / "image_02" / "data"
    gt_dir = root / "data_depth_annotated" / "train" / drive / "proj_depth" / "groundtruth" / "image_02"
    rgb_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    base = cv2.resize(rng.integers(0, 255, (24, 78, 3), dtype=np.uint8), (1242, 375), interpolation=cv2.INTER_CUBIC)
    depth = np.tile(np.linspace(2, 80, 1242, dtype=np.float32), (375, 1))
    for i in range(n + 2):
        cv2.imwrite(str(rgb_dir / f"{i:010d}.png"), np.roll(base, i, axis=1))
        if 0 < i <= n:
            sparse = np.where(rng.random((375, 1242)) < 0.3, depth * 256, 0).astype(np.uint16)
            sparse[:120] = 0
            cv2.imwrite(str(gt_dir / f"{i:010d}.png"), sparse)
    return root


def generate_nyu(path: Path, n: int) -> Path:
    """A labeled-set .mat of n real-size frames, stored as MATLAB v7.3 stores them (axes reversed, chunked, gzip)."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        images = f.create_dataset("images", (n, 3, 640, 480), np.uint8, chunks=(1, 3, 640, 480), compression="gzip")
        depths = f.create_dataset("depths", (n, 640, 480), np.float32, chunks=(1, 640, 480), compression="gzip")
        raw = f.create_dataset("rawDepths", (n, 640, 480), np.float32, chunks=(1, 640, 480), compression="gzip")
        base = cv2.resize(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
        plane = np.tile(np.linspace(0.5, 9.5, 640, dtype=np.float32), (480, 1))
        for i in range(n):
            images[i] = np.roll(base, i, axis=1).T
            depths[i] = (plane + i % 3 * 0.1).T
            raw[i] = np.where(rng.random((480, 640)) < 0.8, plane, 0).T
    return path


def bench_kitti(workdir: Path, n: int) -> dict:
    small, large = generate_kitti(workdir / "k_n", n), generate_kitti(workdir / "k_4n", 4 * n)
    seconds, peak_n, summary = run_pairforge(["prep", "kitti", str(small), str(workdir / "out_kn")])
    _, peak_4n, _ = run_pairforge(["prep", "kitti", str(large), str(workdir / "out_k4n")])
    assert summary["written"] == n, summary
    return {
        "benchmark": "prep kitti rgb2depth, 1242x375 frames -> 256x256 color ab (1 random crop)",
        "n": n,
        "frames_per_s": round(n / seconds, 1),
        "peak_rss_mib_n": peak_n,
        "peak_rss_mib_4n": peak_4n,
    }


def bench_nyu(workdir: Path, n: int) -> dict:
    small, large = generate_nyu(workdir / "n_n" / "m.mat", n), generate_nyu(workdir / "n_4n" / "m.mat", 4 * n)
    seconds, peak_n, summary = run_pairforge(["prep", "nyu", str(small), str(workdir / "out_nn"), "--split", "1,0,0"])
    _, peak_4n, _ = run_pairforge(["prep", "nyu", str(large), str(workdir / "out_n4n"), "--split", "1,0,0"])
    assert summary["written"] == n, summary
    return {
        "benchmark": "prep nyu rgb2depth, 480x640 frames from HDF5 -> 256x256 color ab (centre crop)",
        "n": n,
        "frames_per_s": round(n / seconds, 1),
        "peak_rss_mib_n": peak_n,
        "peak_rss_mib_4n": peak_4n,
        "mat_mib_4n": round(large.stat().st_size / 2**20),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="frames per benchmark (and 4n for the memory check)")
    args = parser.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}")
    for bench in (bench_kitti, bench_nyu):
        with tempfile.TemporaryDirectory() as tmp:
            result = bench(Path(tmp), args.n)
        for key, value in result.items():
            print(f"  {key:18s} {value}")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
