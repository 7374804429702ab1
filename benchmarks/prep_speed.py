"""Prep throughput: pairforge commands against a single-process loop doing the same work, on generated inputs.

    python benchmarks/prep_speed.py                 # every benchmark
    python benchmarks/prep_speed.py combine --n 3000

Each benchmark prints pairs/s of pairforge (all cores, the real CLI in a subprocess) and of the baseline loop
measured in the same run, their ratio, and pairforge's peak memory (largest process; combine: for n/4 and n
inputs, to show it does not grow with the dataset). Both sides run as their users run them, each in a fresh
Python process timed from start to exit, start-up and imports included. `combine` keeps every round's outputs
until it ends (see SLOW_CREATE_MS): about 8 GB of disk for the default --n 8000.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def generate_jpeg_pairs(folder: Path, n: int, size: int = 256) -> tuple[Path, Path]:
    """n photo-like 256x256 JPEG pairs (A, B) with the same names."""
    a_dir, b_dir = folder / "A", folder / "B"
    a_dir.mkdir(parents=True, exist_ok=True)
    b_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    for i in range(n):
        image = np.roll(base, i, axis=1)
        noisy = cv2.add(image, rng.integers(0, 30, image.shape, dtype=np.uint8))
        cv2.imwrite(str(a_dir / f"{i:06d}.jpg"), noisy, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(b_dir / f"{i:06d}.jpg"), 255 - noisy, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return a_dir, b_dir


def opencv_combine_loop(a_dir: Path, b_dir: Path, out: Path) -> int:
    """The baseline: what combine_A_and_B.py does, in one process."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for a_path in sorted(a_dir.iterdir()):
        a = cv2.imread(str(a_path))
        b = cv2.imread(str(b_dir / a_path.name))
        cv2.imwrite(str(out / a_path.name), np.concatenate([a, b], axis=1), [cv2.IMWRITE_JPEG_QUALITY, 95])
        count += 1
    return count


def run_pairforge(args: list[str]) -> tuple[float, int, dict]:
    """Run `pairforge ARGS --json` in a fresh process: (seconds, peak RSS of its largest process in MiB, summary)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pairforge.cli", *args, "--json"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"pairforge {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return seconds, peak_mib, json.loads(proc.stdout)


def run_baseline(name: str, *args: Path) -> tuple[float, int]:
    """Run baseline loop `name` the way its users run such a script, in a fresh Python process (start-up and
    imports included, as for pairforge's CLI): (seconds, count)."""
    start = time.perf_counter()
    command = [sys.executable, __file__, "--baseline", name, *map(str, args)]
    count = int(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return time.perf_counter() - start, count


COMBINE_ROUNDS = 5
"""The loop and pairforge alternate this many times; the median ratio is reported (a shared VM's disk and CPU
vary by +-20% between minutes)."""

SLOW_CREATE_MS = 0.2
"""Creating an empty file normally takes 0.01-0.05 ms. On ext4 without a journal, for 1-6 minutes after many
files were deleted, each new inode is found by scanning past every recently freed one in its block group
(`recently_deleted()` in fs/ext4/ialloc.c), under a lock: creating a file then takes 0.3-0.8 ms, one at a time
whatever the number of processes, and the benchmark measures the filesystem, not pairforge. So no round
deletes anything (everything goes when the benchmark ends), and the cost is probed and reported."""


def flush_writes() -> None:
    """Called (untimed) before each timed run: the previous runs' written data goes to disk first. Otherwise the
    kernel's writeback of 1.4 GB a round (flushing starts past 10% of memory dirty) lands inside later runs, on
    the core that the single-process loop leaves idle but that pairforge's second worker needs: with back-to-back
    runs the second round was the slowest every time. A command's own writes still count in its time."""
    os.sync()


def file_create_ms(folder: Path, files: int = 500) -> float:
    """Milliseconds to create one empty file in a new sub-folder of `folder`."""
    probe = folder / f"create_probe_{time.monotonic_ns()}"
    probe.mkdir(parents=True)
    start = time.perf_counter()
    for i in range(files):
        os.close(os.open(probe / f"{i:06d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    return (time.perf_counter() - start) * 1000 / files


def bench_combine(workdir: Path, n: int) -> dict:
    a_dir, b_dir = generate_jpeg_pairs(workdir / "raw", n)
    quarter_a, quarter_b = workdir / "quarter" / "A", workdir / "quarter" / "B"
    quarter_a.mkdir(parents=True)
    quarter_b.mkdir(parents=True)
    for name in sorted(os.listdir(a_dir))[: n // 4]:
        os.link(a_dir / name, quarter_a / name)
        os.link(b_dir / name, quarter_b / name)
    _, peak_quarter, _ = run_pairforge(["combine", str(quarter_a), str(quarter_b), str(workdir / "out_quarter")])
    create_ms = file_create_ms(workdir)
    if create_ms > SLOW_CREATE_MS:
        print(f"warning: one file create takes {create_ms:.2f} ms (many files deleted lately?), see SLOW_CREATE_MS")
    rounds = []
    for i in range(COMBINE_ROUNDS):
        flush_writes()
        base_s, base_n = run_baseline("combine", a_dir, b_dir, workdir / f"baseline_{i}")
        flush_writes()
        pf_s, peak_n, summary = run_pairforge(["combine", str(a_dir), str(b_dir), str(workdir / f"out_{i}")])
        assert summary["written"] == base_n == n, summary
        rounds.append((base_s / pf_s, base_n / base_s, n / pf_s, summary["pairs_per_second"]))
    ratio, base_rate, pf_rate, in_run = sorted(rounds)[len(rounds) // 2]
    return {
        "benchmark": "combine 256x256 JPEG pairs",
        "n": n,
        "baseline": "single-process OpenCV read-concatenate-write loop",
        "baseline_pairs_per_s": round(base_rate, 1),
        "pairforge_pairs_per_s": round(pf_rate, 1),
        "pairforge_in_run_pairs_per_s": in_run,
        "ratio": round(ratio, 2),
        "ratios_of_rounds": [round(r[0], 2) for r in rounds],
        "file_create_ms": round(create_ms, 3),
        "peak_rss_mib_n_over_4": peak_quarter,
        "peak_rss_mib_n": peak_n,
    }


CITYSCAPES_DISTINCT = 48  # full-size frames are slow to generate; further frames are hard links to these
CITYSCAPES_MAX = 192  # --n is capped here: enough frames that start-up (about 2 s) stops dominating
CITYSCAPES_COLOURS = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (107, 142, 35),
        (70, 130, 180),
        (220, 20, 60),
        (0, 0, 142),
        (0, 0, 0),
    ],
    dtype=np.uint8,
)


def generate_cityscapes(root: Path, n: int, cities: int = 4) -> Path:
    """n frames of the raw Cityscapes train split at full size: 2048x1024 RGB photo PNGs of about 2.5 MB (the real
    ones are 2-2.5 MB) and RGBA `_gtFine_color.png` label maps of random polygons. Frames beyond the first
    CITYSCAPES_DISTINCT are hard links to those, under their own names."""
    rng = np.random.default_rng(0)
    h, w = 1024, 2048
    noise = rng.normal(0, 0.8, (h, w + CITYSCAPES_DISTINCT, 3)).astype(np.float32)
    files = []
    for i in range(n):
        city = f"city{i % cities}"
        stem = f"{city}_{i:06d}_000019"
        photo_path = root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png"
        label_path = root / "gtFine" / "train" / city / f"{stem}_gtFine_color.png"
        photo_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        if i >= CITYSCAPES_DISTINCT:
            os.link(files[i % CITYSCAPES_DISTINCT][0], photo_path)
            os.link(files[i % CITYSCAPES_DISTINCT][1], label_path)
            continue
        files.append((photo_path, label_path))
        coarse = rng.integers(0, 255, (16, 32, 3), dtype=np.uint8)
        smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(photo_path), np.clip(smooth + noise[:, i : i + w], 0, 255).astype(np.uint8))
        label = np.zeros((h, w, 4), np.uint8)
        for _ in range(40):
            colour = CITYSCAPES_COLOURS[rng.integers(len(CITYSCAPES_COLOURS))]
            points = rng.integers(0, (w, h), (6, 2)).astype(np.int32)
            cv2.fillPoly(label, [points], [int(c) for c in colour[::-1]])
        label[:, :, 3] = 255  # opaque, as the official files
        cv2.imwrite(str(label_path), label)
    return root


def pillow_cityscapes_loop(root: Path, out: Path, size: int = 256) -> int:
    """The baseline: the same work in one process with Pillow: decode, photo area-resized (BOX), label NEAREST,
    side by side, PNG (compression level 3, as pairforge writes)."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for photo_path in sorted((root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png")):
        name = photo_path.name.replace("_leftImg8bit", "_gtFine_color")
        label_path = root / "gtFine" / "train" / photo_path.parent.name / name
        photo = Image.open(photo_path).convert("RGB").resize((size, size), Image.Resampling.BOX)
        label = Image.open(label_path).convert("RGB").resize((size, size), Image.Resampling.NEAREST)
        pair = Image.new("RGB", (2 * size, size))
        pair.paste(photo, (0, 0))
        pair.paste(label, (size, 0))
        pair.save(out / f"{photo_path.stem}.png", compress_level=3)
        count += 1
    return count


def bench_cityscapes(workdir: Path, n: int) -> dict:
    frames = min(n, CITYSCAPES_MAX)
    root = generate_cityscapes(workdir / "raw", frames)
    base_s, base_n = run_baseline("cityscapes", root, workdir / "baseline")
    pf_s, peak, summary = run_pairforge(["prep", "cityscapes", str(root), str(workdir / "out")])
    assert summary["written"] == base_n == frames, summary
    return {
        "benchmark": "prep cityscapes, 2048x1024 PNG photo + RGBA colour label -> 256x256 A|B PNG",
        "n": frames,
        "baseline": "single-process Pillow decode-resize-concatenate-encode loop",
        "baseline_pairs_per_s": round(base_n / base_s, 2),
        "pairforge_pairs_per_s": round(frames / pf_s, 2),
        "ratio": round(base_s / pf_s, 2),
        "peak_rss_mib": peak,
    }


# COCO's person keypoint schema: 17 keypoints and the official skeleton (1-based joint indices).
COCO_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
                 [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]  # fmt: skip
# Where each keypoint sits in its person's box, as fractions of width and height.
BODY = [(0.5, 0.08), (0.45, 0.06), (0.55, 0.06), (0.4, 0.08), (0.6, 0.08), (0.3, 0.25), (0.7, 0.25), (0.2, 0.4),
        (0.8, 0.4), (0.15, 0.55), (0.85, 0.55), (0.38, 0.55), (0.62, 0.55), (0.38, 0.75), (0.62, 0.75),
        (0.38, 0.95), (0.62, 0.95)]  # fmt: skip


def generate_coco(root: Path, n: int) -> Path:
    """n 640x480 photos in val2017/, each with two well-separated, fully annotated people."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
    images, anns = [], []
    for i in range(1, n + 1):
        name = f"{i:012d}.jpg"
        cv2.imwrite(str(root / "val2017" / name), np.roll(texture, i * 7, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append({"id": i, "file_name": name, "width": 640, "height": 480})
        for j, box in enumerate([(40, 60, 160, 360), (400, 80, 150, 340)]):
            x, y, w, h = box
            kps = [v for fx, fy in BODY for v in (round(x + fx * w), round(y + fy * h), 2)]
            anns.append({"id": i * 10 + j, "image_id": i, "category_id": 1, "iscrowd": 0, "bbox": list(box),
                         "area": w * h, "num_keypoints": 17, "keypoints": kps,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})  # fmt: skip
    category = {"id": 1, "name": "person", "supercategory": "person", "skeleton": COCO_SKELETON,
                "keypoints": [f"k{k}" for k in range(17)]}  # fmt: skip
    data = {"images": images, "annotations": anns, "categories": [category]}
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    return root


def coco_pose_loop(root: Path, out: Path, size: int = 256) -> int:
    """The baseline: the same crop, render and encode per person, in one process, with no checks or manifest."""
    from pairforge.prep.transforms.pose import Window, render_pose

    data = json.loads((root / "annotations" / "person_keypoints_val2017.json").read_text())
    names = {image["id"]: image["file_name"] for image in data["images"]}
    skeleton = tuple((a - 1, b - 1) for a, b in data["categories"][0]["skeleton"])
    out.mkdir(parents=True)
    for ann in data["annotations"]:
        photo = cv2.imread(str(root / "val2017" / names[ann["image_id"]]))
        window = Window.around(tuple(ann["bbox"]), 0.15)
        crop = cv2.resize(window.crop(photo), (size, size), interpolation=cv2.INTER_AREA)
        pose = render_pose(window.project(np.array(ann["keypoints"]).reshape(17, 3), size), skeleton, size)
        image = np.concatenate([pose, crop], axis=1)
        cv2.imwrite(str(out / f"{ann['id']}.png"), image, [cv2.IMWRITE_PNG_COMPRESSION, 3])  # as pairforge
    return len(data["annotations"])


def bench_coco_pose(workdir: Path, n: int) -> dict:
    n = min(n, 400)
    root = generate_coco(workdir / "coco", n)
    base_s, persons = run_baseline("coco-pose", root, workdir / "baseline")
    pf_s, peak, summary = run_pairforge(["prep", "coco-pose", str(root), str(workdir / "out")])
    assert summary["written"] == persons, summary
    return {
        "benchmark": "prep coco-pose, 640x480 photos, 2 people each -> 256x256 pose|person PNG",
        "persons": persons,
        "baseline": "single-process crop-render-encode loop with the same transforms",
        "baseline_persons_per_s": round(persons / base_s, 1),
        "pairforge_persons_per_s": round(persons / pf_s, 1),
        "ratio": round(base_s / pf_s, 2),
        "peak_rss_mib": peak,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ray_head(cpus: int, temp_dir: Path) -> Iterator[str]:
    """A running Ray cluster of `cpus` CPUs on this machine (`ray start --head --block`, ended by its pid), as a
    user with a cluster has it: started once, before any job. Its own temp dir keeps other drivers on this
    machine from finding it. Yields its address."""
    from ray.util import get_node_ip_address

    port = free_port()
    command = "from ray.scripts.scripts import main; main()"
    head = subprocess.Popen(
        [sys.executable, "-c", command, "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}",
         "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"{get_node_ip_address()}:{port}"  # where Ray binds and where a driver here looks for the raylet
    try:
        probe = f"import ray; ray.init(address={address!r}, logging_level='ERROR'); ray.shutdown()"
        for _ in range(120):  # up to a minute for the head to accept drivers
            try:
                if subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30).returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.5)
        yield address
    finally:
        head.terminate()
        head.wait(60)


def bench_ray(workdir: Path, n: int) -> dict:
    """combine on Ray against the local process pool, same inputs, same cores: on a cluster that is already
    running (what a user with a cluster sees) and on a local instance started by the command itself."""
    cpus = len(os.sched_getaffinity(0))
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # the head and every driver (ray start's default with a token)
    a_dir, b_dir = generate_jpeg_pairs(workdir / "raw", n)
    combine = ["combine", str(a_dir), str(b_dir)]
    local_s, _, local = run_pairforge([*combine, str(workdir / "local")])
    with ray_head(cpus, workdir / "ray") as address:
        ray_args = ["--executor", "ray", "--ray-address", address]
        warm_s, _, warm = run_pairforge([*combine, str(workdir / "ray_cluster"), *ray_args])
    cold_s, _, cold = run_pairforge([*combine, str(workdir / "ray_cold"), "--executor", "ray"])
    assert warm["written"] == cold["written"] == local["written"] == n, (warm, cold)
    return {
        "benchmark": "combine 256x256 JPEG pairs: --executor ray vs local",
        "n": n,
        "local_pairs_per_s": round(n / local_s, 1),
        "ray_cluster_pairs_per_s": round(n / warm_s, 1),
        "ratio": round(local_s / warm_s, 2),
        "local_in_run_pairs_per_s": local["pairs_per_second"],
        "ray_cluster_in_run_pairs_per_s": warm["pairs_per_second"],
        "ray_cold_start_pairs_per_s": round(n / cold_s, 1),
        "ratio_cold_start": round(local_s / cold_s, 2),
    }


BENCHMARKS: dict[str, Callable[[Path, int], dict]] = {
    "ray": bench_ray,
    "combine": bench_combine,
    "cityscapes": bench_cityscapes,
    "coco-pose": bench_coco_pose,
}


BASELINES = {"combine": opencv_combine_loop, "cityscapes": pillow_cityscapes_loop, "coco-pose": coco_pose_loop}


def main() -> None:
    if sys.argv[1:2] == ["--baseline"]:  # run_baseline's child process: the loop alone, its count on stdout
        print(BASELINES[sys.argv[2]](*map(Path, sys.argv[3:])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    parser.add_argument("--n", type=int, default=8000, help="pairs per benchmark (coco-pose: images, at most 400)")
    parser.add_argument(
        "--workdir", type=Path, help="where inputs and outputs go (default: the system's temporary folder)"
    )
    args = parser.parse_args()
    print(f"cores: {len(os.sched_getaffinity(0))}")
    for name in args.names or BENCHMARKS:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            result = BENCHMARKS[name](Path(tmp), args.n)
        for key, value in result.items():
            print(f"  {key:24s} {value}")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
