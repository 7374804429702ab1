"""Adversarial losses (`--gan_mode vanilla|lsgan|hinge|wgangp`), the WGAN-GP gradient penalty, reconstruction."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

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
