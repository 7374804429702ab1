"""An exported `.onnx` generator run by onnxruntime and NumPy alone: `pairforge translate` (and `test`) work with
it where PyTorch is not installed.

It behaves as `evaluate.Generator` does: stored values in, stored values out, through the run's codings (recorded
in the file's metadata by `pairforge export`), each image padded (reflect) to the generator's size multiple and
cropped back. The exported model takes and returns [0, 1] (`Coding.to_unit` / `from_unit`). No torch import here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.codings import Coding, Codings
from pairforge.train.config import TrainConfig, make_config, size_multiple
from pairforge.train.pixels import resize_array

CONFIG_KEY = "pairforge_config"
"""ONNX metadata key that holds the run's TrainConfig as JSON."""


def onnx_session(path: Path):
    """An onnxruntime CPU session; a missing onnxruntime or an unreadable file is a one-line error."""
    try:
        import onnxruntime
    except ImportError:
        raise UsageError(f"{path}: running .onnx models needs onnxruntime (pip install 'pairforge[export]')") from None
    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise PairforgeError(f"{path}: not a readable ONNX model ({exc})") from None


@dataclass
class OnnxGenerator:
    """An exported generator with the interface of `evaluate.Generator` that `test` and `translate` use."""

    session: Any
    cfg: TrainConfig
    checkpoint: Path
    size: tuple[int, int] | None = None
    run: None = None
    back: None = None

    @property
    def codings(self) -> Codings:
        return self.cfg.codings or Codings()

    def seed(self, seed: int) -> None:
        """Nothing is random in an exported model (dropout is off)."""

    def sized(self, image: np.ndarray, coding: Coding) -> np.ndarray:
        return resize_array(image, self.size, coding) if self.size else image

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """(H, W, C) input in the input's stored dtype, any size -> output in the output's dtype, same size."""
        height, width = image.shape[:2]
        multiple = size_multiple(self.cfg.netG)
        pad_h, pad_w = -height % multiple, -width % multiple
        mode = "reflect" if pad_h < height and pad_w < width else "edge"
        unit = np.pad(self.codings.input.to_unit(image), ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
        dtype = np.float16 if self.session.get_inputs()[0].type == "tensor(float16)" else np.float32
        output = self.session.run(None, {"input": unit.transpose(2, 0, 1)[None].astype(dtype)})[0]
        return self.codings.output.from_unit(output[0, :, :height, :width].transpose(1, 2, 0).astype(np.float32))


def load_onnx(path: Path, options: dict, eval_mode: bool = False, dropout: bool | None = None) -> OnnxGenerator:
    """An exported .onnx file with the run's config from its metadata (`options` may change test-time ones)."""
    if eval_mode or dropout is not None:
        raise UsageError("--eval / --test_dropout: fixed when the model was exported (pairforge export --eval)")
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file")
    session = onnx_session(path)
    metadata = session.get_modelmeta().custom_metadata_map
    if CONFIG_KEY not in metadata:
        raise UsageError(f"{path}: not exported by pairforge export (no {CONFIG_KEY} metadata)")
    return OnnxGenerator(session, make_config(**(json.loads(metadata[CONFIG_KEY]) | options)), path)
