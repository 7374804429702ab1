"""Helpers of the eval tests: a tiny segmentation network exported by the tests, Cityscapes-like labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn


class TinySeg(nn.Module):
    """3 -> 19 class scores at the input's size; its colour decides the class, so predictions are known."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 19, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def export_seg(folder: Path) -> tuple[Path, Path]:
    """The same tiny network as TorchScript (.pt) and ONNX (.onnx), in `folder`."""
    net = TinySeg().eval()
    example = torch.randn(1, 3, 32, 48)
    ts = folder / "seg.pt"
    torch.jit.trace(net, example).save(str(ts))
    onnx_path = folder / "seg.onnx"
    torch.onnx.export(
        net, (example,), str(onnx_path), dynamo=False, input_names=["x"], output_names=["scores"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "scores": {0: "n", 2: "h", 3: "w"}},
    )  # fmt: skip
    return ts, onnx_path


def label_ids(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A labelIds map with road (7), sidewalk (8), building (11), sky (23) and ignored ids (0, 1)."""
    rng = np.random.default_rng(seed)
    ids = np.array([7, 8, 11, 23, 0, 1], np.uint8)
    return ids[rng.integers(0, len(ids), size=(height, width))]


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A random uint8 RGB image."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def random_inception(path: Path) -> Path:
    """torch-fidelity's InceptionV3 with random weights, saved as a state_dict file (nothing downloaded)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Random(FeatureExtractorInceptionV3):
        def load_state_dict(self, state, strict=True):  # keep the random init instead of the empty file's weights
            return None

    torch.manual_seed(0)
    empty = path.with_name("empty.pth")
    torch.save({}, empty)
    net = Random("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    for module in net.modules():  # He init keeps activations alive through 90+ layers (features differ per image)
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight)
    torch.save(net.state_dict(), path)
    return path
