"""Weight files given by flag (segmenters, Inception, LPIPS and VGG backbones): found, hashed and read safely.

Nothing is ever downloaded: a missing file is a one-line error naming the flag and where such a file comes from.
A state_dict is read from safetensors, or from a `.pth`/`.pt` with `torch.load(weights_only=True)` (never unpickled).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pairforge.errors import PairforgeError, UsageError


def require(path: Path | None, flag: str, origin: str) -> Path:
    """`path` if it is a file; else a UsageError naming `flag` and `origin` (where such a file comes from)."""
    if path is None:
        raise UsageError(f"{flag} PATH is required (weights are never downloaded; {origin})")
    if not Path(path).is_file():
        raise UsageError(f"{flag} {path}: file not found (weights are never downloaded; {origin})")
    return Path(path)


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_state_dict(path: Path, flag: str = "") -> dict[str, torch.Tensor]:
    """A state_dict (name -> tensor) from a .safetensors file or a .pth/.pt file (weights_only=True); errors
    name `flag` (the option that gave the file) and the path."""
    where = f"{flag} {path}".strip()
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PairforgeError(f"{where}: cannot read as safetensors or a PyTorch state_dict ({exc})") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PairforgeError(f"{where}: expected a state_dict (a dict of tensors)")
    return state


def load_into(net: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, flag: str) -> None:
    """`net.load_state_dict(state)`, strict, with a one-line error when the file is for another network."""
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise PairforgeError(f"{flag} {path}: weights do not fit the network ({first})") from None
