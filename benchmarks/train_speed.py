"""Training speed of `pairforge train`: fp32 eager vs fast mode, at batch 1 and batch 16.

Writes an `ab` dataset of generated pairs (A: smooth colour blobs; B: a fixed pixel-wise function of A) to a
temporary folder and runs the real training loop on it (uint8 cache, device crops, logging, checkpoint), the
same seed, config and steps in both modes. Reports, per batch size and mode:
  - steady-state images/s of the whole loop (log intervals after the first, which holds warm-up),
  - the ratio to fp32 eager, peak GPU memory, set-up time (data cache, compile, graph capture),
  - held-out L1 after training (`pairforge test` on unseen pairs): fast and eager must agree within 5%.
Prints a table, then one JSON line. Exit code 1 if a fast run fails or the L1s disagree.

  python benchmarks/train_speed.py          # GPU: U-Net 256 + 70x70 PatchGAN, 256x256 crops (~5 min on an H100)
  python benchmarks/train_speed.py --tiny   # quick check on CPU: small networks, 128x128, few steps
  python benchmarks/train_speed.py --model cycle_gan   # CycleGAN: 2 x resnet_9blocks + 2 x PatchGAN, LSGAN, pool
                                                       # (same pairs written as trainA/trainB; held-out L1 of
                                                       # G_A(testA) against the matching testB image)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pairforge.train.config import TrainConfig
from pairforge.train.devices import resolve_device
from pairforge.train.evaluate import load_generator, run_test
from pairforge.train.loop import train

FULL = {"size": 256, "load": 286, "netG": "unet_256", "ngf": 64, "ndf": 64, "train": 256, "test": 64}
TINY = {"size": 128, "load": 142, "netG": "unet_128", "ngf": 8, "ndf": 8, "train": 32, "test": 8}
CYCLE_FULL = FULL | {"netG": "resnet_9blocks"}
CYCLE_TINY = TINY | {"netG": "resnet_6blocks"}
INTERVALS = 5
"""Log intervals per run; the first is warm-up, the other four are timed."""


def network_options(preset: dict) -> dict:
    """The TrainConfig fields a preset fixes: networks and image sizes."""
    return dict(
        netG=preset["netG"], ngf=preset["ngf"], ndf=preset["ndf"], load_size=preset["load"], crop_size=preset["size"]
    )


def make_dataset(root: Path, size: int, train_count: int, test_count: int, seed: int = 0) -> None:
    """Pairs of size x size halves: A = gradient + random Gaussian blobs, B = inverted, squared, channel-rotated A."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for split, count in (("train", train_count), ("test", test_count)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            a = np.stack([xx, yy, 1 - xx], -1) * rng.uniform(0, 0.5, 3)
            for _ in range(4):
                cy, cx, radius = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
                blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
                a += blob[..., None] * rng.uniform(0, 1, 3)
            a = np.clip(a, 0, 1)
            b = 1 - a[..., [2, 0, 1]] ** 2
            pair = np.concatenate([a, b], axis=1)
            Image.fromarray((pair * 255).round().astype(np.uint8)).save(root / split / f"{i:04d}.png")
            for side, image in (("A", a), ("B", b)):  # the same pairs in the unaligned layout, for cycle_gan
                (root / f"{split}{side}").mkdir(exist_ok=True)
                Image.fromarray((image * 255).round().astype(np.uint8)).save(root / f"{split}{side}" / f"{i:04d}.png")


def steady_rate(log: Path) -> float:
    """images/s over the log intervals after the first."""
    records = [r for r in map(json.loads, log.read_text().splitlines()) if "img_per_s" in r]
    timed = records[1:] or records
    return sum(r["img_per_s"] * r["seconds"] for r in timed) / sum(r["seconds"] for r in timed)


def cycle_heldout_l1(results: Path) -> float:
    """Mean L1 (in [0, 1] units) of G_A(testA image) against the testB image of the same key."""
    images = results / "images"
    values = [
        np.abs(
            np.asarray(Image.open(fake), np.float64)
            - np.asarray(Image.open(images / f"{fake.name[:-11]}_real_B.png"), np.float64)
        ).mean()
        / 255
        for fake in sorted(images.glob("*_fake_B.png"))
    ]
    return round(float(np.mean(values)), 6)


def run_one(
    root: Path, preset: dict, batch_size: int, steps: int, fast: bool, device: str, model: str = "pix2pix", **speed
) -> dict:
    """Train one configuration, then test it on the held-out pairs."""
    name = f"{'fast' if fast else 'eager'}_b{batch_size}"
    cfg = TrainConfig(
        model=model,
        dataroot=root / "data",
        runs_dir=root / "runs",
        name=name,
        **network_options(preset),
        batch_size=batch_size,
        max_steps=steps,
        print_freq=max(1, steps // INTERVALS),
        display_freq=10**9,
        save_latest_freq=10**9,
        save_epoch_freq=10**6,
        fast=fast,
        device=device,
        **speed,
    )
    torch.compiler.reset()
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = train(cfg, overwrite=True, quiet=True)
    total = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    gen = load_generator(str(root / "runs" / name), root / "runs", "latest", resolve_device(device), {})
    metrics = run_test(gen, root / "data", "test", root / "results" / name)
    if model == "cycle_gan":
        metrics["l1"] = cycle_heldout_l1(root / "results" / name)
    return {
        "batch_size": batch_size,
        "mode": summary["mode"],
        "steps": summary["steps"],
        "img_per_s": round(steady_rate(root / "runs" / name / "log.jsonl"), 2),
        "setup_s": round(total - summary["seconds"], 1),
        "peak_gib": None if peak is None else round(peak, 2),
        "heldout_l1": metrics["l1"],
    }


def run_fast(root: Path, preset: dict, batch_size: int, steps: int, device: str, model: str = "pix2pix") -> dict:
    """Fast mode; if it fails, report why and retry without the CUDA graph, then without compile."""
    errors = []
    for speed in ({}, {"cuda_graph": False}, {"cuda_graph": False, "compile": False}):
        try:
            return run_one(root, preset, batch_size, steps, True, device, model, **speed) | {"errors": errors}
        except Exception as exc:  # report and fall back: the benchmark should always print numbers
            errors.append(f"{speed or 'full fast mode'}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            print(f"fast mode failed at batch {batch_size} ({errors[-1]}); retrying with less", file=sys.stderr)
    raise RuntimeError("; ".join(errors))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="small networks, 128x128, few steps (CPU check)")
    parser.add_argument("--batch_sizes", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--steps", default=None, help="steps per batch size (default 1000,320; tiny 40,10)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", choices=("pix2pix", "cycle_gan"), default="pix2pix")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()

    cycle = args.model == "cycle_gan"
    preset = (CYCLE_TINY if cycle else TINY) if args.tiny else (CYCLE_FULL if cycle else FULL)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    default_steps = "40,10" if args.tiny else "1000,320"
    steps = [int(s) for s in (args.steps or default_steps).split(",")]
    if len(steps) != len(batch_sizes):
        parser.error("--steps needs one value per batch size")
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        make_dataset(root / "data", preset["size"], preset["train"], preset["test"])
        results = []
        for batch_size, count in zip(batch_sizes, steps, strict=True):
            eager = run_one(root, preset, batch_size, count, False, args.device, args.model)
            fast = run_fast(root, preset, batch_size, count, args.device, args.model)
            fast["x_eager"] = round(fast["img_per_s"] / eager["img_per_s"], 2)
            fast["l1_rel_diff"] = round(abs(fast["heldout_l1"] - eager["heldout_l1"]) / eager["heldout_l1"], 4)
            results += [eager | {"x_eager": 1.0}, fast]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print_table(results, name, preset, args.model)
    agree = all(r.get("l1_rel_diff", 0) <= 0.05 for r in results)
    failed = any(r.get("errors") for r in results)
    print(
        json.dumps(
            {
                "benchmark": "train_speed",
                "model": args.model,
                "device": name,
                "tiny": args.tiny,
                "l1_agree": agree,
                "results": results,
            }
        )
    )
    return 0 if agree and not failed else 1


def print_table(results: list[dict], device: str, preset: dict, model: str = "pix2pix") -> None:
    nets = f"{preset['netG']} ngf {preset['ngf']} + PatchGAN ndf {preset['ndf']}"
    print(f"\n{model} training loop, {'2 x ' if model == 'cycle_gan' else ''}({nets}),", end=" ")
    print(f"{preset['size']}x{preset['size']} crops, on {device}")
    if device == "cpu":
        print("(fast mode is CUDA-only: on CPU both runs are the fp32 eager loop)")
    header = f"{'batch':>5}  {'mode':<44} {'steps':>5} {'img/s':>9} {'x eager':>7} {'peak GiB':>8} {'setup s':>7}"
    print(header + f" {'held-out L1':>11} {'L1 diff':>7}")
    for r in results:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        diff = f"{r['l1_rel_diff']:.1%}" if "l1_rel_diff" in r else "-"
        print(
            f"{r['batch_size']:>5}  {r['mode']:<44} {r['steps']:>5} {r['img_per_s']:>9.1f} {r['x_eager']:>7.2f}"
            f" {peak:>8} {r['setup_s']:>7.1f} {r['heldout_l1']:>11.4f} {diff:>7}"
        )
        for error in r.get("errors", []):
            print(f"       fast mode fell back: {error}")
    print()


if __name__ == "__main__":
    sys.exit(main())
