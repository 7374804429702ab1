"""`pairforge translate`: a folder of images without targets through a generator, each output at its input's
size. Torch-free, so that an exported `.onnx` model (onnx_model.py) runs where PyTorch is not installed; a
checkpoint brings torch in through `evaluate.Generator`."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from rich.progress import Progress

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.codings import Coding, Codings
from pairforge.train.config import TrainConfig
from pairforge.train.pixels import list_images, read_image, resize_array, write_array


class Translator(Protocol):
    """What translate needs of a generator: `evaluate.Generator` (torch) or `onnx_model.OnnxGenerator`."""

    cfg: TrainConfig

    @property
    def codings(self) -> Codings: ...

    def seed(self, seed: int) -> None: ...

    def sized(self, image: np.ndarray, coding: Coding) -> np.ndarray: ...

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


def translate_folder(
    gen: Translator,
    in_dir: Path,
    out_dir: Path,
    seed: int = 0,
    progress: Progress | None = None,
    skipped: dict[str, str] | None = None,
) -> int:
    """Translate every image in `in_dir` into `<out_dir>/<stem>.png` (.tiff for what PNG cannot hold), at the
    input's size; returns how many. An input that cannot be read is skipped and goes into `skipped` (file name ->
    reason): one corrupt file does not stop the folder."""
    if not in_dir.is_dir():
        raise UsageError(f"IN_DIR {in_dir}: folder not found")
    images = list_images(in_dir)
    if not images:
        raise UsageError(f"IN_DIR {in_dir}: no images")
    gen.seed(seed)
    codings = gen.codings
    task = progress.add_task("translate", total=len(images), rate="") if progress else None
    done = 0
    for key, path in images.items():
        try:
            image = read_image(path, gen.cfg.input_nc, "--input_nc")
        except PairforgeError as exc:
            if skipped is not None:
                skipped[path.name] = str(exc).removeprefix(f"{path}: ")
            if progress:
                progress.advance(task)
            continue
        codings.input.check(image, path)
        output = gen(gen.sized(image, codings.input))
        height, width = image.shape[:2]
        write_array(out_dir / f"{key}.png", resize_array(output, (width, height), codings.output))
        done += 1
        if progress:
            progress.advance(task)
    return done
