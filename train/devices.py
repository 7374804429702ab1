"""The device a command runs on, resolved once into one indexed `torch.device`.

PyTorch treats `cuda` and `cuda:0` as different devices in comparisons, while tensors always carry an index:
every device pairforge hands around is therefore indexed (`cuda` -> `cuda:<current>`), and made the current
device, so that streams, CUDA graphs and `torch.cuda.*` calls without a device argument land on it too.
"""

from __future__ import annotations

import torch

from pairforge.errors import UsageError


def resolve_device(name: str, make_current: bool = True) -> torch.device:
    """`--device auto|cpu|cuda|cuda:N` -> cpu or `cuda:N` (auto takes the GPU when there is one).

    With `make_current`, a CUDA device becomes the current one (`torch.cuda.set_device`); a process that only
    launches others (`--gpus`) passes False and never touches the GPU itself.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise UsageError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
    count = torch.cuda.device_count()
    index = device.index if device.index is not None else (torch.cuda.current_device() if make_current else 0)
    if index >= count:
        raise UsageError(f"--device {name}: this machine has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}")
    device = torch.device("cuda", index)
    if make_current:
        torch.cuda.set_device(device)
    return device
