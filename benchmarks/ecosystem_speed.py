"""Cost of the ecosystem features in the training loop: `--logger tensorboard` and streaming from shards.

Writes an `ab` dataset of generated pairs, converts its unaligned copy to `--layout webdataset` shards with
`pairforge pair` (the same pairs, matched by key), and runs the real training loop four times with the same
seed and steps:
  - baseline: the folder layout (uint8 cache), no logger,
  - tensorboard: the same with `--logger tensorboard` and a sample grid at every log interval (the worst case),
  - streamed: the shards, `--serial_batches` (key order), and streamed + shuffled (shard order + buffer).
Reports steady-state images/s (log intervals after the first) and the ratio to the baseline, then one JSON line.
The logger is meant to cost nothing measurable (ratio ~1.0); streaming pays for decoding in the loop.

  python benchmarks/ecosystem_speed.py          # GPU: U-Net 256, 256x256 crops, batch 16
  python benchmarks/ecosystem_speed.py --tiny   # quick check on CPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from train_speed import FULL, INTERVALS, TINY, make_dataset, network_options, steady_rate

from pairforge.cli import main as pairforge
from pairforge.train.config import TrainConfig
from pairforge.train.devices import resolve_device
from pairforge.train.loop import train


def run(root: Path, name: str, dataroot: Path | str, preset: dict, batch: int, steps: int, device: str, **extra):
    values = dict(
        dataroot=dataroot,
        runs_dir=root / "runs",
        name=name,
        **network_options(preset),
        batch_size=batch,
        n_epochs=1000,
        n_epochs_decay=0,
        max_steps=steps,
        print_freq=steps // INTERVALS,
        display_freq=10**9,
        save_latest_freq=10**9,
        device=device,
    )
    train(TrainConfig(**(values | extra)), quiet=True)
    return round(steady_rate(root / "runs" / name / "log.jsonl"), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small networks and images: a quick CPU check")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    preset = TINY if args.tiny else FULL
    batch, steps = (4, 40) if args.tiny else (16, 500)
    device = str(resolve_device(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root / "ab", preset["load"], preset["train"], preset["test"])
        try:
            pairforge(["pair", str(root / "ab"), str(root / "wds"), "--layout", "webdataset", "--format", "png", "-q"])
        except SystemExit as exc:
            if exc.code:
                return 1
        rates = {
            "baseline": run(root, "base", root / "ab", preset, batch, steps, device),
            "tensorboard": run(
                root, "tb", root / "ab", preset, batch, steps, device, logger="tensorboard", display_freq=steps // 5
            ),
            "streamed_serial": run(root, "ss", root / "wds", preset, batch, steps, device, serial_batches=True),
            "streamed_shuffled": run(root, "sh", root / "wds", preset, batch, steps, device),
        }
    base = rates["baseline"]
    print(f"device {device}, {preset['netG']} at {preset['size']}px, batch {batch}, {steps} steps")
    for name, rate in rates.items():
        print(f"  {name:18s} {rate:9.2f} img/s   x{rate / base:.2f} of baseline")
    ratios = {k: round(v / base, 3) for k, v in rates.items()}
    print(json.dumps({"device": device, "img_per_s": rates, "ratio": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
