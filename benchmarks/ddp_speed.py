"""DDP step time: `pairforge train --gpus N` against one process training the same global batch.

Runs the real CLI (torchrun re-launch, uint8 cache, logging, checkpoint) on generated pairs, in the same run:
  - one process, batch N x B (the baseline: the same work per step, no gradient all-reduce),
  - N ranks x batch B (DDP: each rank half the work, plus the all-reduce of G's and D's gradients).
The baseline runs twice: with every core's OpenMP threads, and with the threads of one rank (cores / N), which
is the per-process budget the ranks get. Reports steady-state seconds per step and images/s (log intervals after
the first) and their ratios; on GPUs the
ideal is N x the baseline's images/s minus the all-reduce, on a CPU the ranks share the same cores, so the
ratio shows DDP's overhead (gloo all-reduce, extra processes) rather than a speed-up.

  python benchmarks/ddp_speed.py                    # CPU: 2 ranks, tiny networks, gloo
  python benchmarks/ddp_speed.py --device cuda --gpus 8 --full   # GPUs: U-Net 256 + PatchGAN, nccl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from train_speed import FULL, INTERVALS, TINY, make_dataset, steady_rate


def run(root: Path, name: str, preset: dict, gpus: int, batch: int, steps: int, device: str, threads: int) -> dict:
    """Train through the CLI with `threads` OpenMP threads per process; returns steady seconds per step and
    images/s of the global batch."""
    command = [sys.executable, "-m", "pairforge.cli", "train", "--dataroot", str(root / "data"),
               "--runs_dir", str(root / "runs"), "--name", name, "--netG", preset["netG"], "--ngf", str(preset["ngf"]),
               "--ndf", str(preset["ndf"]), "--load_size", str(preset["load"]), "--crop_size", str(preset["size"]),
               "--batch_size", str(batch), "--gpus", str(gpus), "--max_steps", str(steps), "--device", device,
               "--print_freq", str(max(1, steps // INTERVALS)), "--display_freq", str(10**9),
               "--save_latest_freq", str(10**9), "--json"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    summary = json.loads(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout)
    rate = steady_rate(root / "runs" / name / "log.jsonl")
    return {
        "ranks": gpus,
        "threads_per_rank": threads,
        "batch_per_rank": batch,
        "global_batch": gpus * batch,
        "img_per_s": round(rate, 2),
        "s_per_step": round(gpus * batch / rate, 4),
        "mode": summary["mode"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=2, help="ranks of the DDP run")
    parser.add_argument("--batch", type=int, default=2, help="batch per rank")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per rank)")
    parser.add_argument("--full", action="store_true", help="U-Net 256 + 70x70 PatchGAN at 256x256 (GPU sizes)")
    args = parser.parse_args()
    preset = FULL if args.full else TINY
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root / "data", preset["size"], preset["train"], 0)
        cores = len(os.sched_getaffinity(0))
        per_rank = max(1, cores // args.gpus)
        single = run(root, "single", preset, 1, args.gpus * args.batch, args.steps, args.device, cores)
        single_1 = run(root, "single_1", preset, 1, args.gpus * args.batch, args.steps, args.device, per_rank)
        ddp = run(root, "ddp", preset, args.gpus, args.batch, args.steps, args.device, per_rank)
    result = {
        "benchmark": f"DDP {args.gpus} ranks x batch {args.batch} vs 1 process x batch {args.gpus * args.batch}",
        "device": args.device,
        "cores": len(os.sched_getaffinity(0)),
        "networks": f"{preset['netG']} ngf {preset['ngf']} + PatchGAN ndf {preset['ndf']}, {preset['size']}px",
        "single": single,
        "single_rank_threads": single_1,
        "ddp": ddp,
        "ratio_img_per_s": round(ddp["img_per_s"] / single["img_per_s"], 2),
        "ratio_vs_single_rank_threads": round(ddp["img_per_s"] / single_1["img_per_s"], 2),
    }
    for key, value in result.items():
        print(f"  {key:18s} {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
