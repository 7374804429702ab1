"""`pairforge export`: a trained generator as an ONNX or TorchScript file, checked against PyTorch.

The exported model takes float (N, input_nc, H, W) in [0, 1] and returns (N, output_nc, H, W) in [0, 1]: the
run's [-1, 1] normalisation is baked in. Height and width are dynamic: any multiple of the generator's size
multiple (256 for unet_256, 128 for unet_128, 4 for the ResNet generators). Test-time behaviour is fixed at
export: dropout is off (an exported model is deterministic); BatchNorm normalises each image by its own
statistics, as `pairforge test` does by default (one image per batch), or uses the running statistics (`--eval`).

ONNX goes through torch's TorchScript-based exporter (`dynamo=False`) with dynamic height/width axes. The
dynamo exporter cannot do that for a U-Net: probed at its smallest size the 1x1 bottleneck pins H and W to the
probe's (a constraint violation), so it would give fixed-size models only; the TorchScript-based one traces the
convolutions without shape guards, and the round-trip check below proves the dynamic sizes work.

After writing, the file is loaded back (onnxruntime / `torch.jit.load`) and run on a probe image at the export
size and at a larger one; the largest difference from the PyTorch generator must stay under 1e-4 (2e-2 with
`--half`), or the export fails and nothing is left at OUT. The run's TrainConfig travels with the model (ONNX
metadata `pairforge_config`, TorchScript extra file `config.json`), so `translate` resizes as the run did.
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.config import TrainConfig, size_multiple
from pairforge.train.evaluate import load_generator
from pairforge.train.onnx_model import CONFIG_KEY, onnx_session

FORMATS = ("onnx", "torchscript")
TOLERANCE = {False: 1e-4, True: 2e-2}
"""Largest allowed difference from the fp32 PyTorch generator, in [0, 1] units: fp32, and --half."""


class Deployable(nn.Module):
    """G with the normalisation baked in: [0, 1] in, [0, 1] out."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x * 2 - 1) + 1) * 0.5


class ImageStatsNorm(nn.Module):
    """BatchNorm as `pairforge test` runs it (one image per batch, training mode): each image normalised by its
    own statistics, then the learned scale and shift. Unlike training-mode BatchNorm it does not mix the images
    of a batch, and it exports with a dynamic batch size."""

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def deployable(net: nn.Module, eval_mode: bool) -> Deployable:
    """A copy of G in eval mode (no dropout); without `eval_mode` every BatchNorm becomes an ImageStatsNorm."""
    net = copy.deepcopy(net).cpu().float().eval()
    if not eval_mode:
        for parent in list(net.modules()):
            for name, child in parent.named_children():
                if isinstance(child, nn.BatchNorm2d):
                    setattr(parent, name, ImageStatsNorm(child))
    return Deployable(net).eval()


def probe(channels: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A reproducible smooth image in [0, 1], (1, channels, H, W): a gradient plus uniform noise."""
    width, height = size
    gen = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, width)[None, None, None, :] * torch.linspace(0, 1, height)[None, None, :, None]
    return (0.5 * ramp + 0.5 * torch.rand(1, channels, height, width, generator=gen)).clamp(0, 1)


def export(
    source: str,
    out: Path,
    fmt: str = "onnx",
    size: tuple[int, int] = (256, 256),
    half: bool = False,
    eval_mode: bool = False,
    runs_dir: Path = Path("runs"),
    which: str = "latest",
    options: dict | None = None,
) -> dict:
    """Export the generator of a run or checkpoint to `out`, verify it, return a summary with `max_diff`."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose from {', '.join(FORMATS)}")
    gen = load_generator(source, runs_dir, which, torch.device("cpu"), options or {}, eval_mode, dropout=False)
    cfg = gen.cfg
    if cfg.noise_nc:
        raise UsageError(f"{gen.checkpoint}: generators with --noise_nc take random noise; they cannot be exported")
    multiple = size_multiple(cfg.netG)
    if size[0] % multiple or size[1] % multiple:
        raise UsageError(f"--size {size[0]}x{size[1]}: --netG {cfg.netG} needs sides divisible by {multiple}")
    model = deployable(gen.net, eval_mode)
    probes = [probe(cfg.input_nc, size), probe(cfg.input_nc, (size[0] + multiple, size[1] + 2 * multiple), 1)]
    with torch.no_grad():
        expected = [model(p) for p in probes]
    if half:
        model = model.half()
    dtype = torch.float16 if half else torch.float32
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        write = _write_onnx if fmt == "onnx" else _write_torchscript
        write(model, probes[0].to(dtype), tmp, cfg)
        run = _onnx_runner(tmp) if fmt == "onnx" else _torchscript_runner(tmp)
        diff = max(float((run(p.to(dtype)).float() - e).abs().max()) for p, e in zip(probes, expected, strict=True))
        if not diff < TOLERANCE[half]:
            raise PairforgeError(
                f"{out}: the exported model differs from the PyTorch generator by {diff:.3g} (limit"
                f" {TOLERANCE[half]:g}); nothing written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "checkpoint": str(gen.checkpoint),
        "out": str(out),
        "format": fmt,
        "dtype": "float16" if half else "float32",
        "batchnorm": "running statistics" if eval_mode else "per-image statistics",
        "input": f"(N, {cfg.input_nc}, H, W) in [0, 1], H and W multiples of {multiple}",
        "checked_sizes": ", ".join(f"{p.shape[3]}x{p.shape[2]}" for p in probes),
        "max_diff": diff,
    }


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, cfg: TrainConfig) -> None:
    import onnx

    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript-based exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
            opset_version=17,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    proto.metadata_props.add(key=CONFIG_KEY, value=cfg.model_dump_json())
    onnx.checker.check_model(proto)
    path.write_bytes(proto.SerializeToString())


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, cfg: TrainConfig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (example,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"config.json": cfg.model_dump_json()})


def _onnx_runner(path: Path):
    session = onnx_session(path)

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])

    return run


def _torchscript_runner(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run
