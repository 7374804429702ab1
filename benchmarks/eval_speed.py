"""`pairforge eval --metrics fcn`: seconds per image and peak memory of the FCN-score, beside the bare forward
passes of the same segmenter on the same input size.

    python benchmarks/eval_speed.py                       # CPU: 8 images at 256, 2 at native 2048x1024
    python benchmarks/eval_speed.py --device cuda --n-native 500 --bf16     # the 500-image GPU target

The segmenter is the FCN-8s architecture (VGG16 backbone, conv1_1 padded by 100, fc6/fc7 as convolutions,
pool3/pool4 skips, Long et al. 2015) with random weights and 19 classes, saved as TorchScript. Inputs are
generated: 256x256 outputs and 2048x1024 gtFine labelIds. `--eval-size 256` segments the outputs at 256
(labels resized NEAREST); `native` upsamples each output to 2048x1024 (bilinear) before segmenting. Each
measurement runs in a fresh process: peak RSS (and peak GPU memory) are its own. Targets (issue 12): peak RSS
under 4 GB at native size on 2 CPU cores; the command within 1.3x of the bare forward passes; 500 native
images in under 2 minutes on one H100.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

NATIVE = (2048, 1024)


class FCN8s(nn.Module):
    """FCN-8s (VGG16): scores at the input's size, cropped with the original's offsets (5, 9, 31)."""

    def __init__(self, classes: int = 19) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for block, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
            for i in range(convs):
                pad = 100 if block == 0 and i == 0 else 1
                layers += [nn.Conv2d(channels, width, 3, padding=pad), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        self.to_pool3, self.to_pool4, self.to_pool5 = (nn.Sequential(*layers[:17]), nn.Sequential(*layers[17:24]),
                                                       nn.Sequential(*layers[24:]))  # fmt: skip
        self.fc = nn.Sequential(
            nn.Conv2d(512, 4096, 7), nn.ReLU(inplace=True), nn.Dropout2d(),
            nn.Conv2d(4096, 4096, 1), nn.ReLU(inplace=True), nn.Dropout2d(),
            nn.Conv2d(4096, classes, 1),
        )  # fmt: skip
        self.score_pool3, self.score_pool4 = nn.Conv2d(256, classes, 1), nn.Conv2d(512, classes, 1)
        self.up2 = nn.ConvTranspose2d(classes, classes, 4, 2, bias=False)
        self.up_pool4 = nn.ConvTranspose2d(classes, classes, 4, 2, bias=False)
        self.up8 = nn.ConvTranspose2d(classes, classes, 16, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        h = self.up2(self.fc(self.to_pool5(pool4)))
        p4 = self.score_pool4(pool4 * 0.01)[:, :, 5 : 5 + h.shape[2], 5 : 5 + h.shape[3]]
        h = self.up_pool4(h + p4)
        p3 = self.score_pool3(pool3 * 0.0001)[:, :, 9 : 9 + h.shape[2], 9 : 9 + h.shape[3]]
        h = self.up8(h + p3)
        return h[:, :, 31 : 31 + x.shape[2], 31 : 31 + x.shape[3]]


def make_inputs(root: Path, n: int) -> Path:
    """n 256x256 outputs and n 2048x1024 labelIds maps; returns the TorchScript segmenter."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    ids = np.array([7, 8, 11, 21, 23, 26, 0], np.uint8)
    for i in range(n):
        Image.fromarray(np.roll(base, i, 1)).resize((256, 256), Image.Resampling.BICUBIC).save(root / f"f{i:04d}.png")
        blocks = ids[rng.integers(0, len(ids), (32, 64))]
        Image.fromarray(np.kron(blocks, np.ones((32, 32), np.uint8))).save(root / f"f{i:04d}_gtFine_labelIds.png")
    torch.manual_seed(0)
    path = root / "fcn8s.pt"
    torch.jit.script(FCN8s().eval()).save(str(path))
    return path


def peak_rss_mib() -> int:
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) // 1024


def measure(kind: str, root: Path, n: int, size: str, device_name: str, bf16: bool, workers: int) -> dict:
    """One measurement in this process: `command` (fcn_score) or `bare` (forward passes on random input)."""
    from pairforge.train.devices import resolve_device
    from pairforge.train.metrics.fcn import FcnProtocol, fcn_score
    from pairforge.train.metrics.inputs import Sample
    from pairforge.train.metrics.segmenters import load_segmenter

    device = resolve_device(device_name)
    seg = load_segmenter(root / "fcn8s.pt", device)
    width, height = NATIVE if size == "native" else (int(size), int(size))
    x = torch.randn(1, 3, height, width, device=device)
    with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for _ in range(3 if device.type == "cuda" else 1):  # warm-up: TorchScript's profiling runs, cuDNN choice
            seg(x)
    del x
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    if kind == "command":
        samples = [Sample(f"f{i:04d}", root / f"f{i:04d}.png", None, root / f"f{i:04d}_gtFine_labelIds.png")
                   for i in range(n)]  # fmt: skip
        protocol = FcnProtocol(None if size == "native" else (width, height))
        result = fcn_score(samples, seg, protocol, device, batch_size=1, workers=workers, bf16=bf16)
        assert result["count"] == n
    else:
        x = torch.randn(1, 3, height, width, device=device)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16), torch.inference_mode():
            for _ in range(n):
                seg(x)
    sync()
    seconds = time.perf_counter() - start
    gpu = torch.cuda.max_memory_allocated() // 2**20 if device.type == "cuda" else None
    return {"kind": kind, "seconds": seconds, "per_image": seconds / n, "peak_rss_mib": peak_rss_mib(), "gpu_mib": gpu}


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-256", type=int, default=8)
    parser.add_argument("--n-native", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)  # kind root n size device
    args = parser.parse_args()
    if args.child:
        kind, root, n, size, device = args.child
        print(json.dumps(measure(kind, Path(root), int(n), size, device, args.bf16, args.workers)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, bf16 {args.bf16}")
    with tempfile.TemporaryDirectory() as tmp:
        make_inputs(Path(tmp), max(args.n_256, args.n_native))
        for size, n in (("256", args.n_256), ("native", args.n_native)):
            if n == 0:
                continue
            bare = run_child("bare", tmp, str(n), size, args.device)
            command = run_child("command", tmp, str(n), size, args.device)
            gpu = f", GPU peak {command['gpu_mib']} MiB (bare {bare['gpu_mib']})" if command["gpu_mib"] else ""
            print(
                f"eval-size {size:>6}: {n} images, FCN-score {command['per_image']:.3f} s/image, bare forward"
                f" {bare['per_image']:.3f} s/image, ratio {command['seconds'] / bare['seconds']:.2f}x (target <= 1.3);"
                f" peak RSS {command['peak_rss_mib']} MiB (bare {bare['peak_rss_mib']}){gpu};"
                f" {n} images in {command['seconds']:.1f} s"
            )


if __name__ == "__main__":
    main()
