"""Fast mode (CUDA only): bf16 autocast, channels_last, fused Adam, torch.compile, the step as one CUDA graph.

On by default when training on CUDA (`--no_fast` turns it off; `--no_compile` / `--no_cuda_graph` drop one
piece). On CPU it is a no-op: the step runs eagerly in fp32. The step never reads a value back to the host,
so with a CUDA graph the CPU only copies the next batch into the graph's input buffers and replays it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pairforge.errors import PairforgeError
from pairforge.train.config import TrainConfig

if TYPE_CHECKING:
    from pairforge.train.models import TrainableModel

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(inputs, targets) -> (losses, outputs): one training step, as returned by `build_step`."""


@dataclass(frozen=True)
class Speed:
    """Which speed-ups a run uses; all off is the plain fp32 eager step."""

    amp: bool = False
    channels_last: bool = False
    fused: bool = False
    compile: bool = False
    cuda_graph: bool = False
    notes: tuple[str, ...] = ()
    """What was asked for but turned off, and why (printed when training starts)."""

    @classmethod
    def choose(cls, cfg: TrainConfig, device: torch.device, distributed: bool = False) -> Speed:
        """`--fast` (default: on for CUDA) on a CUDA device; WGAN-GP's double backward cannot be compiled,
        SGD has no capturable tensor learning rate, so those drop compile / the CUDA graph. CycleGAN's image
        pools are capturable (device RNG, tensor indices and count, no host sync). Under DDP the CUDA graph is
        off (with a note): DDP's reducer decides on the host, every step, which gradient buckets to all-reduce,
        which a replayed graph would skip."""
        if device.type != "cuda" or cfg.fast is False:
            return cls()
        graph = cfg.cuda_graph and cfg.optimizer == "adam"
        notes = ("CUDA graph off under DDP (the gradient all-reduce is driven from the host each step)",)
        return cls(
            amp=True,
            channels_last=True,
            fused=True,
            compile=cfg.compile and cfg.gan_mode != "wgangp",
            cuda_graph=graph and not distributed,
            notes=notes if graph and distributed else (),
        )

    def describe(self) -> str:
        names = [n for n in ("amp", "channels_last", "fused", "compile", "cuda_graph") if getattr(self, n)]
        return "fast (" + ", ".join(names).replace("amp", "bf16") + ")" if names else "fp32 eager"


def build_step(model: TrainableModel, speed: Speed, inputs: torch.Tensor, targets: torch.Tensor) -> Step:
    """The model's `train_step`, compiled and/or captured as a CUDA graph as `speed` says.

    `inputs`/`targets` are an example batch (same shapes as every later one). Compilation happens here, in
    warm-up steps whose updates are undone, so a failure is reported before training starts, as one line
    naming the flags that turn the failing piece off (`--debug` shows the traceback).
    """
    if not (speed.compile or speed.cuda_graph):
        return model.train_step
    try:
        if speed.compile:
            use_compile_cache()
            for net in model.networks.values():
                net.compile()
        static_inputs, static_targets = inputs.clone(), targets.clone()
        _warm_up(model, static_inputs, static_targets)
        return _capture(model, static_inputs, static_targets) if speed.cuda_graph else model.train_step
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise PairforgeError(
            f"{speed.describe()} failed to build the training step ({type(exc).__name__}: {first_line});"
            " run again with --no_cuda_graph, --no_compile or --no_fast"
        ) from exc


def _warm_up(model: TrainableModel, inputs: torch.Tensor, targets: torch.Tensor, steps: int = 3) -> None:
    """Run a few steps on a side stream of the model's device (compilation, cuDNN autotuning, optimizer state),
    then undo them: training starts from the same weights, optimizer state and random state as without warm-up,
    so a run resumed from a checkpoint draws what the uninterrupted run drew."""
    saved = _snapshot(model)
    rng = torch.get_rng_state(), torch.cuda.get_rng_state(model.device)
    main = torch.cuda.current_stream(model.device)
    side = torch.cuda.Stream(model.device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        for _ in range(steps):
            model.train_step(inputs, targets)
    main.wait_stream(side)
    _restore(model, saved)
    torch.set_rng_state(rng[0])
    torch.cuda.set_rng_state(rng[1], model.device)


def _capture(model: TrainableModel, static_inputs: torch.Tensor, static_targets: torch.Tensor) -> Step:
    """Capture one (warmed-up) step as a CUDA graph; each call copies the batch in and replays the graph."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(model.device), torch.cuda.graph(graph):
        static_out = model.train_step(static_inputs, static_targets)

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        static_inputs.copy_(inputs)
        static_targets.copy_(targets)
        graph.replay()
        return static_out

    return step


def _snapshot(model: TrainableModel) -> tuple[list[torch.Tensor], dict, dict]:
    """Copies of every weight, buffer, optimizer state tensor and extra model state (image pools)."""
    tensors = [t.detach().clone() for net in model.networks.values() for t in (*net.parameters(), *net.buffers())]
    states = {
        id(p): {k: v.clone() for k, v in state.items() if torch.is_tensor(v)}
        for opt in model.optimizers.values()
        for p, state in opt.state.items()
    }
    return tensors, states, {k: v.detach().clone() for k, v in model.state_tensors().items()}


def _restore(model: TrainableModel, saved: tuple[list[torch.Tensor], dict, dict]) -> None:
    """Put the snapshot back in place (same tensors, so captured addresses stay valid); optimizer state that
    the warm-up created is zeroed, which Adam treats exactly like no state (step 0, zero moments), and so is
    extra state it created (an image pool with fill count 0 is empty)."""
    tensors, states, extra = saved
    live = [t for net in model.networks.values() for t in (*net.parameters(), *net.buffers())]
    with torch.no_grad():
        for target, value in zip(live, tensors, strict=True):
            target.copy_(value)
        for opt in model.optimizers.values():
            for p, state in opt.state.items():
                for key, value in state.items():
                    if not torch.is_tensor(value):
                        continue
                    if id(p) in states:
                        value.copy_(states[id(p)][key])
                    else:
                        value.zero_()
        for key, value in model.state_tensors().items():
            value.copy_(extra[key]) if key in extra else value.zero_()


def use_compile_cache() -> None:
    """Keep compiled kernels in the user's cache folder (`$XDG_CACHE_HOME/pairforge/inductor`, by default
    `~/.cache/pairforge/inductor`), shared by every run of the same shapes: a second run skips most of the
    compilation. A TORCHINDUCTOR_CACHE_DIR set by the user wins."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pairforge" / "inductor"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
