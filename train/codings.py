"""What stored pixel values mean: how one side's values map to the network's [-1, 1] and back, and to units.

8-bit data always maps 0..255 to [-1, 1]. 16-bit and float data map by `--value_range` (given in the dataset's
units), else by the depth range a prep manifest records (`max_depth` metres, stored as metres x `depth_scale`,
0 = no measurement), else by the dtype's range (16-bit 0..65535, float 0..1). A run records its codings in
config.json and in every checkpoint, so `test` and `translate` write outputs in the same units. No torch import
at module level: the CLI's --help stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from pairforge.errors import PairforgeError
from pairforge.manifest_lines import manifest_header

if TYPE_CHECKING:
    import torch

DTYPE_MAX = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}


class Coding(BaseModel):
    """How the stored values of one side map to the network's [-1, 1] (`low` -> -1, `high` -> +1), and to units."""

    model_config = ConfigDict(frozen=True)

    dtype: Literal["uint8", "uint16", "float32"] = "uint8"
    low: float = 0.0
    high: float = 255.0
    unit: str = ""
    """The physical unit of the values, e.g. "m" for depth ("" = plain pixel values)."""
    per_unit: float = 1.0
    """Stored values per unit (a depth manifest's `depth_scale`)."""
    invalid_zero: bool = False
    """A stored 0 means "no measurement" (depth): metrics skip it and resizing never blends it in."""

    def encode(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored values (uint8, uint16 kept as int16 bits, or float32) -> float in [-1, 1]."""
        import torch

        values = stored.to(torch.int32) & 0xFFFF if self.dtype == "uint16" else stored
        return values.float().sub_(self.low).mul_(2.0 / (self.high - self.low)).sub_(1.0)

    def decode(self, network: torch.Tensor) -> np.ndarray:
        """Float (C, H, W) in [-1, 1] -> (H, W, C) array of the stored dtype (rounded and clipped for integers)."""
        unit = (network.detach().float().cpu().clamp(-1, 1) + 1) / 2
        return self.from_unit(unit.permute(1, 2, 0).numpy())

    def to_unit(self, stored: np.ndarray) -> np.ndarray:
        """Stored values -> float32 in [0, 1] (`low` -> 0, `high` -> 1): what an exported model takes."""
        return ((stored.astype(np.float32) - self.low) / (self.high - self.low)).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Float in [0, 1] -> the stored dtype (rounded and clipped for integers)."""
        values = np.clip(unit, 0, 1) * (self.high - self.low) + self.low
        if self.dtype == "float32":
            return values.astype(np.float32)
        return np.clip(np.rint(values), 0, DTYPE_MAX[self.dtype]).astype(self.dtype)

    def check(self, array: np.ndarray, path: Path) -> None:
        """Every image of a side has the side's dtype (one coding per side)."""
        if array.dtype.name != self.dtype:
            raise PairforgeError(f"{path}: {array.dtype.name} pixels where {self.dtype} is expected (one per side)")

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.dtype} {self.low / self.per_unit:g}..{self.high / self.per_unit:g}{unit} -> [-1, 1]"


class Codings(BaseModel):
    """The codings of a run's input and output (recorded in config.json and in every checkpoint)."""

    model_config = ConfigDict(frozen=True)

    input: Coding = Coding()
    output: Coding = Coding()

    def swapped(self) -> Codings:
        return Codings(input=self.output, output=self.input)


def dataset_depth(root: Path | None) -> tuple[float, float] | None:
    """(max_depth, depth_scale) of a dataset whose prep manifest records 16-bit depth, else None (read from the
    manifest's header alone, never its items)."""
    options = (manifest_header(root) or {}).get("options", {})
    if options.get("depth_encoding") != "gray16":
        return None
    return float(options["max_depth"]), float(options["depth_scale"])


def coding_for(dtype: str, value_range: tuple[float, float] | None, depth: tuple[float, float] | None) -> Coding:
    """The coding of one side stored as `dtype`, given `--value_range` and the dataset's recorded depth range."""
    if dtype == "uint8":
        return Coding()
    unit, per_unit, invalid_zero = "", 1.0, False
    if depth is not None and dtype == "uint16":
        unit, per_unit, invalid_zero = "m", depth[1], True
    if value_range is not None:
        low, high = value_range[0] * per_unit, value_range[1] * per_unit
    elif invalid_zero:
        low, high = 0.0, depth[0] * per_unit
    else:
        low, high = 0.0, DTYPE_MAX[dtype]
    return Coding(dtype=dtype, low=low, high=high, unit=unit, per_unit=per_unit, invalid_zero=invalid_zero)
