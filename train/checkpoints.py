"""Checkpoints: one safetensors file with everything a run needs to go on exactly where it stopped.

Tensors: `net.<G|D>.<state_dict key>` (the reference's key names; CycleGAN: `net.G_A.`, `net.G_B.`, `net.D_A.`,
`net.D_B.`), `opt.<G|D>.<param index>.<state>` (Adam moments and step), `state.<name>` (extra model state: the
CycleGAN image pools), `rng.cpu` / `rng.cuda`. Metadata: `format`, `step`, and `config` (the run's
TrainConfig as JSON), so a checkpoint file alone is enough for `pairforge test` and `translate`.
Files are written to a temporary name and os.replace'd into place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from pairforge.errors import PairforgeError
from pairforge.train.config import TrainConfig
from pairforge.train.models import TrainableModel
from pairforge.train.weights import read_state_dict

FORMAT = "pairforge-checkpoint/1"
STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True).contiguous()


def save(path: Path, model: TrainableModel, step: int, **position: int) -> None:
    """Write the model's weights, optimizer state and RNG state at global `step`, atomically; `position`
    (global_batch, steps_per_epoch) goes into the metadata, for resuming with another world size."""
    tensors = {}
    for name, net in model.networks.items():
        tensors |= {f"net.{name}.{key}": _cpu(value) for key, value in net.state_dict().items()}
    for name, opt in model.optimizers.items():
        for index, state in opt.state_dict()["state"].items():
            tensors |= {f"opt.{name}.{index}.{k}": _cpu(v) for k, v in state.items() if torch.is_tensor(v)}
    tensors |= {f"state.{name}": _cpu(value) for name, value in model.state_tensors().items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if model.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(model.device)
    metadata = {"format": FORMAT, "step": str(step), "config": model.cfg.model_dump_json()}
    metadata |= {key: str(value) for key, value in position.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:  # a full disk: no half-written checkpoint left taking the space
        tmp.unlink(missing_ok=True)


def link(source: Path, path: Path) -> None:
    """Make `path` a copy of `source` atomically (a hard link where the filesystem allows: no second write)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a pairforge checkpoint; a file of another kind is a PairforgeError."""
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:
        raise PairforgeError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise PairforgeError(f"{path}: not a pairforge checkpoint (format {metadata.get('format')!r})")
    return metadata


def read_config(path: Path) -> TrainConfig:
    """The TrainConfig stored in a checkpoint."""
    return TrainConfig.model_validate_json(read_metadata(path)["config"])


def load_weights(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state_dict by key name, tolerating a DataParallel `module.` prefix, stale InstanceNorm
    statistics of old reference checkpoints and a missing `num_batches_tracked`; anything else that does
    not fit is a one-line PairforgeError."""
    own = net.state_dict()
    state = {key.removeprefix("module."): value for key, value in state.items()}
    state = {k: v for k, v in state.items() if k in own or not k.endswith(STAT_SUFFIXES)}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in state if k in own and state[k].shape != own[k].shape]
    problems = [
        f"{what} {len(keys)} keys, e.g. {keys[0]}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape for", reshaped))
        if keys
    ]
    if problems:
        raise PairforgeError(
            f"{source}: weights do not fit this network ({'; '.join(problems)}); give the --netG/--netD, --norm,"
            " --ngf/--ndf, --input_nc/--output_nc and --no_dropout it was trained with"
        )
    net.load_state_dict(state, strict=False)


def load(path: Path, model: TrainableModel) -> int:
    """Restore weights, optimizer state and RNG state from `path` into `model`; returns the global step."""
    step = int(read_metadata(path)["step"])
    tensors = load_file(str(path))
    for name, net in model.networks.items():
        prefix = f"net.{name}."
        load_weights(net, {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, str(path))
    for name, opt in model.optimizers.items():
        prefix = f"opt.{name}."
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, _, field = key[len(prefix) :].partition(".")
                state.setdefault(int(index), {})[field] = value
        lrs = [group["lr"] for group in opt.param_groups]
        opt.load_state_dict({**opt.state_dict(), "state": state})
        for group, lr in zip(opt.param_groups, lrs, strict=True):  # keep a captured lr tensor the same object
            group["lr"] = lr
        _match_layouts(opt)
    model.load_state_tensors({k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")})
    torch.set_rng_state(tensors["rng.cpu"])
    if model.device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], model.device)
    return step


def _match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each loaded moment its parameter's memory layout: a checkpoint stores contiguous tensors, while fast
    mode keeps convolution weights channels_last, and fused Adam needs parameters and moments alike."""
    for param, state in opt.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def load_generator(path: Path, net: nn.Module, name: str = "G") -> None:
    """Load one generator's weights (`G`, or CycleGAN's `G_A` / `G_B`) from a pairforge checkpoint
    (.safetensors) or a reference one (.pth)."""
    if path.suffix == ".safetensors":
        read_metadata(path)
        prefix = f"net.{name}."
        with safe_open(str(path), "pt") as f:
            state = {k.removeprefix(prefix): f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
    else:
        state = load_reference(path)
    load_weights(net, state, str(path))


def load_reference(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict saved by pytorch-CycleGAN-and-pix2pix (`latest_net_G.pth`), read with weights_only=True."""
    return read_state_dict(path)
