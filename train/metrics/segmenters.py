"""Segmentation networks given as files, behind one interface: float NCHW batch on the device -> class scores.

`.pt`/`.ts`: TorchScript (`torch.jit.load`, no unpickling); `.onnx`: onnxruntime (CUDA provider on a GPU when
installed). The network's output is N x classes x H x W scores at the input's size (a tuple's first element).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pairforge.errors import PairforgeError, UsageError

ORIGIN = "export a segmentation network to TorchScript (.pt) or ONNX (.onnx), e.g. an FCN-8s trained on Cityscapes"


class Segmenter(Protocol):
    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class TorchScriptSegmenter:
    def __init__(self, path: Path, device: torch.device) -> None:
        try:
            self.net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as exc:
            raise PairforgeError(f"--seg-model {path}: not a TorchScript file ({str(exc).splitlines()[0]})") from None

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = self.net(images)
        return out[0] if isinstance(out, tuple | list) else out


class OnnxSegmenter:
    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:
            raise PairforgeError(
                f"--seg-model {path}: not a readable ONNX model ({str(exc).splitlines()[0]})"
            ) from None
        self.input = self.session.get_inputs()[0].name
        self.device = device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().float().cpu().numpy()
        out = self.session.run(None, {self.input: np.ascontiguousarray(array)})[0]
        return torch.from_numpy(out).to(self.device)


def load_segmenter(path: Path, device: torch.device) -> Segmenter:
    """The loader that the file's suffix names."""
    if path.suffix == ".onnx":
        return OnnxSegmenter(path, device)
    if path.suffix in (".pt", ".ts", ".torchscript"):
        return TorchScriptSegmenter(path, device)
    raise UsageError(f"--seg-model {path}: expected a TorchScript .pt or an ONNX .onnx file")
