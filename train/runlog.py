"""What a run leaves on disk and on screen: the run folder, log.jsonl, loss averages, progress, sample grids."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pairforge.errors import UsageError
from pairforge.safety import delete_recorded, run_name

if TYPE_CHECKING:  # torch is imported where tensors are used: `translate` with an .onnx runs without it
    import torch


TRAINING_ENTRIES = (
    "config.json",
    "checkpoints",
    "log.jsonl",
    "samples",
    "results",
    "tensorboard",
    "wandb",
    "report.html",
    "report_losses.png",
)
"""What a run folder holds from training and what follows it (test/eval results, loggers, the report): all that
`train --overwrite` deletes. The recipe runner's `stages/` and `recipe.toml`, and anything else, stay."""
RUN_MARKERS = ("config.json", "checkpoints", "log.jsonl", "stages")
"""A folder holding one of these is a pairforge run; one holding other things only is not, and is never touched."""


@dataclass(frozen=True)
class RunDir:
    """`runs/<name>/`: config.json, checkpoints/, log.jsonl, samples/, results/ (report.html: `pairforge report`)."""

    root: Path

    @classmethod
    def for_training(cls, runs_dir: Path, name: str) -> RunDir:
        """`runs_dir/name`, for a name that stays inside `runs_dir`, and a folder that is new, empty or a run."""
        run = cls(runs_dir / run_name(name))
        if run.root.exists() and not run.root.is_dir():
            raise UsageError(f"run folder {run.root} is a file; choose another --name or --runs_dir")
        if run.root.is_dir() and not any((run.root / m).exists() for m in RUN_MARKERS) and any(run.root.iterdir()):
            raise UsageError(
                f"{run.root} is not a pairforge run (no config.json, checkpoints/ or log.jsonl) and pairforge will"
                " not write into it; choose another --name or --runs_dir"
            )
        return run

    def clear(self) -> None:
        """`--overwrite`: delete what training and its followers wrote here (`TRAINING_ENTRIES`), nothing else;
        when any of it cannot be deleted, nothing is."""
        if self.root.is_dir():
            delete_recorded(self.root, TRAINING_ENTRIES)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def checkpoint(self, which: str | int = "latest") -> Path:
        """`latest` or an epoch number -> its checkpoint file."""
        name = "latest" if str(which) == "latest" else f"epoch_{int(which):03d}"
        return self.checkpoints / f"{name}.safetensors"


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and os.replace: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_png(path: Path, image: np.ndarray) -> None:
    """uint8 (H, W) or (H, W, 3) array -> PNG, atomically."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(tmp)
    os.replace(tmp, path)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """One image in [-1, 1], (C, H, W) -> a uint8 preview: (H, W) gray from the first channel when there are fewer
    than 3, else (H, W, 3) from the first 3 channels."""
    import torch

    array = ((tensor.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return array[0] if array.shape[0] < 3 else array[:3].transpose(1, 2, 0)


def as_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image


def save_grid(path: Path, columns: list[torch.Tensor], rows: int = 4) -> np.ndarray:
    """A PNG with one row per batch item (at most `rows`): column 0 | column 1 | ... (input | output | target);
    returns the grid (uint8, H x W x 3)."""
    count = min(rows, columns[0].shape[0])
    rows_ = [np.concatenate([as_rgb(to_image(col[i])) for col in columns], axis=1) for i in range(count)]
    grid = np.concatenate(rows_, axis=0)
    save_png(path, grid)
    return grid


class JsonlLog:
    """Appends one JSON object per line to log.jsonl, flushed at once (a crash loses nothing already logged).
    Without a path (a DDP rank other than 0) it writes nothing."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a") if path is not None else None

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")
            self.file.flush()

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


class LossMeter:
    """Sums loss tensors on the device; `read` is the only host sync (once per --print_freq steps). `reduce`
    combines the sums of all DDP ranks (every rank reads at the same steps)."""

    def __init__(
        self, names: tuple[str, ...], device: torch.device, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> None:
        self.names, self.reduce = names, reduce or (lambda total: total)
        import torch

        self.total = torch.zeros(len(names), device=device)
        self.count = 0

    def add(self, losses: torch.Tensor) -> None:
        self.total += losses
        self.count += 1

    def read(self) -> dict[str, float]:
        """Means since the last read (NaN/inf stay as they are, for the caller to check); then resets."""
        means = (self.reduce(self.total) / max(1, self.count)).tolist()
        self.total.zero_()
        self.count = 0
        return dict(zip(self.names, means, strict=True))


def non_finite(values: dict[str, float]) -> str | None:
    """The name of the first NaN/inf value, if any."""
    return next((name for name, value in values.items() if not math.isfinite(value)), None)


def progress_bar(quiet: bool) -> Progress:
    """Steps done / total, images per second (from the last read-back) and ETA, on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
