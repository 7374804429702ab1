"""Whole experiments on one machine: the pix2pix paper's Table 1 (5 loss variants) packed vs one after another.

Builds a recipe from `recipes/cityscapes.toml`'s five variants (l1, gan, cgan, l1_gan, l1_cgan) on a generated
256x256 dataset, then runs the real command twice, on the same machine and in the same run:

  sequential: pairforge run bench.toml --variants all --pack 1 --until train
  packed:     pairforge run bench.toml --variants all --pack 5 --until train

and reports the aggregate images/s (all runs' training images / wall time of the whole command, start-up and
compile included) and its ratio packed / sequential; also each packed run's own steady img/s from its log.

    python benchmarks/pack_speed.py            # GPU, fast mode: U-Net 256, batch 1, 400 steps per variant
    python benchmarks/pack_speed.py --tiny     # the mechanism on a CPU: tiny nets, 64x64, few steps

Why processes (one `pairforge run` per variant; CUDA MPS when its daemon runs) and not CUDA streams in one process
or the variants vmapped into one wide step: processes keep every run exactly as it runs alone (its own CUDA
graph, compile cache, RNG, checkpoints) and isolate failures; a batch-1 pix2pix step is launch-bound (about 2% of
an H100's FLOPs, issue 16), so what several runs need is concurrent kernel launch streams, which separate
processes with their own CUDA graphs give (time-sliced, or overlapped under MPS). A vmapped step would need
variants of identical shapes (no_condition_D changes D's input channels; no_gan has no D) and gives up
per-run CUDA graphs and failure isolation. Target (on one H100): packed >= 3x sequential aggregate img/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pairforge.recipes import RECIPES_DIR, parse_toml

VARIANTS = ("l1", "gan", "cgan", "l1_gan", "l1_cgan")


def make_dataset(root: Path, size: int, count: int) -> None:
    """`count` ab pairs: A = smooth random colour field, B = a pixel-wise function of A."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.uniform(0, 1, (8, 8, 3))
        a = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))
        b = 255 - a[:, :, [2, 0, 1]]
        Image.fromarray(np.concatenate([a, b], axis=1)).save(root / "train" / f"{i:04d}.png")


def write_recipe(folder: Path, dataroot: Path, train: dict) -> Path:
    """The Table-1 recipe's variants over the generated dataset, training only."""
    variants = parse_toml(RECIPES_DIR / "cityscapes.toml")["variants"]
    lines = ['description = "Table 1 variants, pack benchmark"', f'runs_dir = "{folder / "runs"}"', "", "[train]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in ({"dataroot": str(dataroot)} | train).items()]
    for name in VARIANTS:
        options = ", ".join(f"{k} = {json.dumps(v)}" for k, v in variants[name]["train"].items())
        lines += ["", f"[variants.{name}]", f"train = {{ {options} }}"]
    path = folder / "bench.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(recipe: Path, pack: int) -> float:
    """Wall seconds of `pairforge run RECIPE --variants all --pack N --until train`."""
    command = [sys.executable, "-m", "pairforge.cli", "run", str(recipe), "--variants", "all", "--pack", str(pack)]
    command += ["--until", "train"]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def steady_rates(runs: Path) -> dict[str, float]:
    """Each run's mean img/s over its log intervals after the first (warm-up, compile)."""
    rates = {}
    for log in sorted(runs.glob("*/log.jsonl")):
        records = [json.loads(line) for line in log.read_text().splitlines()]
        values = [r["img_per_s"] for r in records if "img_per_s" in r][1:]
        rates[log.parent.name] = round(float(np.mean(values)), 1) if values else 0.0
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU-sized: small networks, 64x64, few steps")
    parser.add_argument("--steps", type=int, default=None, help="training steps per variant")
    args = parser.parse_args()
    if args.tiny:
        size, steps = 64, args.steps or 20
        train = {"netG": "resnet_6blocks", "ngf": 8, "ndf": 8, "load_size": 64, "crop_size": 64, "device": "cpu"}
    else:
        size, steps = 256, args.steps or 400
        train = {"load_size": 286, "crop_size": 256}
    train |= {"max_steps": steps, "n_epochs": 1000, "n_epochs_decay": 0, "print_freq": max(1, steps // 5)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_dataset(tmp / "data", size, 32)
        results = {}
        for label, pack in (("sequential", 1), ("packed", len(VARIANTS))):
            folder = tmp / label
            folder.mkdir()
            seconds = run(write_recipe(folder, tmp / "data", train), pack)
            images = len(VARIANTS) * steps  # batch 1
            results[label] = {"seconds": round(seconds, 1), "aggregate_img_per_s": round(images / seconds, 1)}
            results[label]["per_run_img_per_s"] = steady_rates(folder / "runs")
    ratio = results["packed"]["aggregate_img_per_s"] / results["sequential"]["aggregate_img_per_s"]
    print(f"{'mode':<12}{'seconds':>10}{'aggregate img/s':>18}   per-run steady img/s")
    for label, r in results.items():
        print(f"{label:<12}{r['seconds']:>10}{r['aggregate_img_per_s']:>18}   {r['per_run_img_per_s']}")
    print(f"packed / sequential: {ratio:.2f}x (target on one H100: >= 3x); cores: {os.cpu_count()}")
    print(
        json.dumps({"benchmark": "pack_speed", "tiny": args.tiny, "steps": steps, "ratio": round(ratio, 2), **results})
    )


if __name__ == "__main__":
    main()
