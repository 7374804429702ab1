"""One evaluation: every requested metric over the same samples, with the protocol, the weight files' sha256
and the library versions, as written to metrics.json."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from pairforge import __version__
from pairforge.errors import UsageError
from pairforge.train.evaluate import _mean, image_metrics
from pairforge.train.metrics import fidelity as fid_module
from pairforge.train.metrics import lpips as lpips_module
from pairforge.train.metrics.fcn import FcnProtocol, fcn_score
from pairforge.train.metrics.inputs import EvalInputs
from pairforge.train.metrics.segmenters import ORIGIN as SEG_ORIGIN
from pairforge.train.metrics.segmenters import load_segmenter
from pairforge.train.weights import require, sha256

METRICS = ("pixel", "fcn", "fid", "kid", "is", "lpips")
LIBRARIES = ("torch", "torchvision", "pillow", "numpy", "onnxruntime", "torch-fidelity", "lpips", "cityscapesscripts")


@dataclass
class EvalOptions:
    metrics: list[str]
    device: torch.device
    fcn: FcnProtocol | None = None
    seg_model: Path | None = None
    seg_tile: int | None = None
    seg_halo: int = 0
    inception_weights: Path | None = None
    lpips_net: str = "alex"
    lpips_backbone: Path | None = None
    batch_size: int = 8
    workers: int = 0
    bf16: bool = False


def evaluate(inputs: EvalInputs, options: EvalOptions, progress: Progress | None = None) -> dict:
    """metrics.json's content: top-level scalars (l1, psnr, ssim, fcn_*, fid, kid, is, lpips), then details."""
    samples, metrics = inputs.samples, options.metrics
    paired = [s for s in samples if s.real is not None]
    if {"pixel", "lpips"} & set(metrics) and len(paired) != len(samples):
        raise UsageError("--metrics pixel/lpips compare outputs with targets: give --real DIR")
    result: dict = {"tool": f"pairforge {__version__}", "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "source": inputs.source, "count": len(samples), "metrics": metrics}  # fmt: skip
    rows = [{"key": s.key} for s in samples]
    weights: dict[str, dict] = {}
    if "pixel" in metrics:
        for row, s in zip(rows, samples, strict=True):
            row |= image_metrics(_pixels(s.fake), _pixels(s.real))
        result |= {name: _mean(rows, name) for name in ("l1", "psnr", "ssim")}
    if "fcn" in metrics:
        path = require(options.seg_model, "--seg-model", SEG_ORIGIN)
        weights["--seg-model"] = _file(path)
        seg = load_segmenter(path, options.device)
        fcn = fcn_score(samples, seg, options.fcn, options.device, options.batch_size, options.workers,
                        options.seg_tile, options.seg_halo, options.bf16, progress)  # fmt: skip
        result |= {f"fcn_{k}": fcn[k] for k in ("pixel_acc", "class_acc", "class_iou")}
        tiles = {"tile": options.seg_tile, "halo": options.seg_halo, "bf16": options.bf16}
        result["fcn"] = {"protocol": options.fcn.record() | tiles} | fcn
    wanted = [m for m in ("fid", "kid", "is") if m in metrics]
    if wanted:
        path = require(options.inception_weights, fid_module.FLAG, fid_module.ORIGIN)
        weights[fid_module.FLAG] = _file(path)
        reals = [s.real for s in paired] or None
        scores = fid_module.fidelity([s.fake for s in samples], reals, wanted, path, options.device)
        result |= scores
        result["fidelity"] = fid_module.settings(wanted)
    if "lpips" in metrics:
        path = require(options.lpips_backbone, lpips_module.FLAG, lpips_module.origin(options.lpips_net))
        weights[lpips_module.FLAG] = _file(path)
        model = lpips_module.build(options.lpips_net, path, options.device)
        distances = lpips_module.lpips_distances(model, [(s.fake, s.real) for s in samples], options.device)
        for row, value in zip(rows, distances, strict=True):
            row["lpips"] = value
        result["lpips"] = _mean(rows, "lpips")
        result["lpips_settings"] = {"net": options.lpips_net, "version": "0.1", "shipped_linear_layers":
                                    _file(lpips_module.linear_weights(options.lpips_net))}  # fmt: skip
    result["weights"] = weights
    result["versions"] = _versions()
    result["images"] = rows
    return result


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def _file(path: Path) -> dict:
    return {"path": str(path), "sha256": sha256(path)}


def _versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
