"""Training logs in the tools people use: TensorBoard and Weights & Biases, beside log.jsonl (`--logger`).

The loop hands every logger the same scalars it writes to log.jsonl (at --print_freq) and the sample grid it
saves to samples/ (at --display_freq), from the one training process. A logger that fails (disk full, a
broken wandb service) prints one warning and is switched off: logging never stops a run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from pairforge.errors import UsageError
from pairforge.train.config import TrainConfig


def _hparams(cfg: TrainConfig) -> dict[str, bool | float | int | str]:
    """The config as flat values TensorBoard's and W&B's hparams accept (others as text)."""
    values = json.loads(cfg.model_dump_json())
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in values.items()}


class TensorBoardLogger:
    """Event files in `<run>/tensorboard/`: scalars, sample grids (`samples`) and the config as hparams."""

    def __init__(self, cfg: TrainConfig, run_root: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError:
            raise UsageError("--logger tensorboard: tensorboard is not installed (pip install tensorboard)") from None
        self.writer = SummaryWriter(log_dir=str(run_root / "tensorboard"))
        for summary in hparams(_hparams(cfg), {}):  # experiment, session start and end, in the run's own file
            self.writer.file_writer.add_summary(summary)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def image(self, step: int, grid: np.ndarray) -> None:
        self.writer.add_image("samples", grid, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A W&B run in `<run>/wandb/` named after the run; `WANDB_MODE=offline` works without a network."""

    def __init__(self, cfg: TrainConfig, run_root: Path) -> None:
        try:
            import wandb
        except ImportError:
            raise UsageError("--logger wandb: wandb is not installed (pip install 'pairforge[wandb]')") from None
        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "pairforge"),
            name=cfg.name,
            dir=str(run_root),
            config=_hparams(cfg),
            reinit="finish_previous",
        )

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def image(self, step: int, grid: np.ndarray) -> None:
        self.run.log({"samples": self.wandb.Image(grid)}, step=step)

    def close(self) -> None:
        self.run.finish()


FACTORIES = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def _warn(name: str, exc: Exception) -> None:
    print(f"warning: --logger {name} failed ({type(exc).__name__}: {exc}); it is off", file=sys.stderr)


class Loggers:
    """Every logger of `--logger`, called together; one that raises warns once and is dropped."""

    def __init__(self, names: list[str], cfg: TrainConfig, run_root: Path) -> None:
        """Start each logger; one that is not installed is a UsageError, one that fails to start warns."""
        self.active = {}
        for name in names:
            try:
                self.active[name] = FACTORIES[name](cfg, run_root)
            except UsageError:
                raise
            except Exception as exc:
                _warn(name, exc)

    def _each(self, method: str, *args: object) -> None:
        for name, logger in list(self.active.items()):
            try:
                getattr(logger, method)(*args)
            except Exception as exc:
                _warn(name, exc)
                del self.active[name]

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._each("scalars", step, values)

    def image(self, step: int, grid: np.ndarray) -> None:
        self._each("image", step, grid)

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._each("close")
