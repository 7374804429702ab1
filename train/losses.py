"""Adversarial losses (`--gan_mode vanilla|lsgan|hinge|wgangp`), the WGAN-GP gradient penalty, reconstruction,
and the VGG perceptual loss (`--lambda_perceptual`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pairforge.errors import PairforgeError
from pairforge.train.weights import load_into, read_state_dict, require

Prediction = torch.Tensor | list[torch.Tensor]
"""A discriminator's output: one patch map, or one per scale (multiscale D)."""


class GANLoss:
    """The adversarial loss of one mode; a list of patch maps (multiscale D) gives the mean over scales.

    vanilla: BCE with logits against 1/0 (the paper); lsgan: least squares against 1/0; wgangp: -D(real) + D(fake);
    hinge: relu(1 - D(real)) + relu(1 + D(fake)) for D and -D(fake) for G.
    """

    def __init__(self, mode: str) -> None:
        if mode not in ("vanilla", "lsgan", "hinge", "wgangp"):
            raise ValueError(f"unknown gan_mode {mode!r}")
        self.mode = mode

    def __call__(self, pred: Prediction, real: bool, for_discriminator: bool = True) -> torch.Tensor:
        if isinstance(pred, list):
            return torch.stack([self(p, real, for_discriminator) for p in pred]).mean()
        if self.mode == "vanilla":
            target = torch.ones_like(pred) if real else torch.zeros_like(pred)
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.mode == "lsgan":
            target = torch.ones_like(pred) if real else torch.zeros_like(pred)
            return F.mse_loss(pred, target)
        if self.mode == "hinge" and for_discriminator:
            return F.relu(1.0 - pred).mean() if real else F.relu(1.0 + pred).mean()
        return -pred.mean() if real else pred.mean()


def gradient_penalty(net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean of (||grad D(x)|| - 1)^2 at random points x between real and fake samples."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    pred = net_d(mixed)
    total = sum(p.float().sum() for p in pred) if isinstance(pred, list) else pred.float().sum()
    (grad,) = torch.autograd.grad(total, mixed, create_graph=True)
    norm = (grad.flatten(1).square().sum(1) + 1e-12).sqrt()  # the epsilon keeps the gradient finite at 0
    return ((norm - 1) ** 2).mean()


def reconstruction_loss(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`--recon_loss l1|l2`: mean absolute or mean squared error."""
    return {"l1": F.l1_loss, "l2": F.mse_loss}[kind]


VGG_FLAG = "--vgg_weights"
VGG_ORIGIN = "use torchvision's vgg16-397923af.pth or vgg19-dcbb9e9d.pth from download.pytorch.org/models/"
VGG_BLOCKS = {13: ("vgg16", (3, 8, 15, 22)), 16: ("vgg19", (3, 8, 17, 26))}
"""conv layers in `features` -> (architecture, indices of relu1_2, relu2_2, relu3_3/3_4, relu4_3/4_4)."""


class PerceptualLoss(nn.Module):
    """Mean over four VGG blocks of the L1 distance between the features of output and target (Johnson et al.
    2016), with torchvision's vgg16/vgg19 `features` loaded from a file; inputs in [-1, 1], 1 or 3 channels."""

    def __init__(self, path: Path | None) -> None:
        import torchvision

        super().__init__()
        path = require(path, VGG_FLAG, VGG_ORIGIN)
        state = {k.removeprefix("features."): v for k, v in read_state_dict(path, VGG_FLAG).items()
                 if k.startswith("features.")}  # fmt: skip
        convs = sum(1 for k, v in state.items() if k.endswith("weight") and v.dim() == 4)
        if convs not in VGG_BLOCKS:
            raise PairforgeError(
                f"{VGG_FLAG} {path}: expected torchvision vgg16 or vgg19 weights ({convs} conv layers)"
            )
        arch, cuts = VGG_BLOCKS[convs]
        features = getattr(torchvision.models, arch)(weights=None).features[: cuts[-1] + 1]
        load_into(features, {k: v for k, v in state.items() if int(k.split(".")[0]) <= cuts[-1]}, path, VGG_FLAG)
        starts = (0, *(c + 1 for c in cuts[:-1]))
        self.blocks = nn.ModuleList(features[a : b + 1] for a, b in zip(starts, cuts, strict=True))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x, y = (((t.expand(-1, 3, -1, -1) + 1) / 2 - self.mean) / self.std for t in (output, target))
        loss = output.new_zeros(())
        for block in self.blocks:
            x, y = block(x), block(y)
            loss = loss + F.l1_loss(x, y)
        return loss / len(self.blocks)
