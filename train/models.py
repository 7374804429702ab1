"""pix2pix (Isola et al. 2017): a conditional GAN with a reconstruction term, as the reference trains it.

One step = forward G, update D on (input, output) vs (input, target), then update G to fool D and match the
target. Variants: `--no_condition_D` (D sees outputs only), `--no_gan` (reconstruction only), `--noise_nc`.
A model exposes `networks` and `optimizers` by name ("G", "D"), which is all the checkpoint code needs.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from pairforge.train.config import TrainConfig
from pairforge.train.fast import Speed
from pairforge.train.losses import GANLoss, gradient_penalty, reconstruction_loss
from pairforge.train.networks import build_discriminator, build_generator, init_weights


def make_generator(cfg: TrainConfig) -> nn.Module:
    """G as `cfg` describes it (noise channels are extra input channels), initialised as the reference does."""
    dropout = not cfg.no_dropout
    net = build_generator(cfg.netG, cfg.input_nc + cfg.noise_nc, cfg.output_nc, cfg.ngf, cfg.norm, dropout)
    return init_weights(net, cfg.init_type, cfg.init_gain)


def generate(net_g: nn.Module, inputs: torch.Tensor, noise_nc: int = 0) -> torch.Tensor:
    """G(inputs), with `noise_nc` fresh N(0, 1) channels appended to the input."""
    if noise_nc:
        noise = torch.randn(inputs.shape[0], noise_nc, *inputs.shape[2:], device=inputs.device, dtype=inputs.dtype)
        inputs = torch.cat([inputs, noise], 1)
    return net_g(inputs)


def make_optimizer(params, cfg: TrainConfig, speed: Speed, device: torch.device) -> torch.optim.Optimizer:
    """Adam(lr, (beta1, beta2)) as in the paper, or SGD with momentum. Under a CUDA graph Adam is fused and
    capturable, with the learning rate as a device tensor so that the decay reaches the captured step."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    if speed.cuda_graph:
        lr = torch.tensor(cfg.lr, device=device)
        return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=True, capturable=True)
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=speed.fused or None)


class TrainableModel(Protocol):
    """What the loop, the fast mode and the checkpoints need from a model (pix2pix now, CycleGAN later)."""

    cfg: TrainConfig
    device: torch.device
    loss_names: tuple[str, ...]
    optimizers: dict[str, torch.optim.Optimizer]

    @property
    def networks(self) -> dict[str, nn.Module]: ...

    def set_lr(self, lr: float) -> None: ...

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class Pix2PixModel:
    """G, D, their optimizers and the training step."""

    def __init__(self, cfg: TrainConfig, device: torch.device, speed: Speed | None = None) -> None:
        self.cfg, self.device, self.speed = cfg, device, speed or Speed()
        torch.manual_seed(cfg.seed)
        self.net_G = make_generator(cfg)
        self.net_D: nn.Module | None = None
        if not cfg.no_gan:
            d_input_nc = cfg.output_nc if cfg.no_condition_D else cfg.input_nc + cfg.output_nc
            net_d = build_discriminator(cfg.netD, d_input_nc, cfg.ndf, cfg.n_layers_D, cfg.norm, cfg.num_D)
            self.net_D = init_weights(net_d, cfg.init_type, cfg.init_gain)
        memory_format = torch.channels_last if self.speed.channels_last else torch.preserve_format
        for net in self.networks.values():
            net.to(device, memory_format=memory_format).train()
        self.optimizers = {
            name: make_optimizer(net.parameters(), cfg, self.speed, device) for name, net in self.networks.items()
        }
        self.gan_loss = GANLoss(cfg.gan_mode)
        self.recon_loss = reconstruction_loss(cfg.recon_loss)
        recon_name = "G_L1" if cfg.recon_loss == "l1" else "G_L2"
        self.loss_names = (recon_name,) if cfg.no_gan else ("G_GAN", recon_name, "D_real", "D_fake")

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.net_G} | ({"D": self.net_D} if self.net_D is not None else {})

    def set_lr(self, lr: float) -> None:
        """Set every optimizer's learning rate (in place when it is a tensor captured by a CUDA graph)."""
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(lr)
                else:
                    group["lr"] = lr

    def _autocast(self) -> torch.autocast:
        # cache_enabled=False: autocast's weight cache must not outlive a CUDA graph capture
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.speed.amp, cache_enabled=False)

    def _d_input(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return outputs if self.cfg.no_condition_D else torch.cat([inputs, outputs], 1)

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One D update then one G update; returns (losses in `loss_names` order, G's outputs), both detached,
        without reading anything back to the host."""
        with self._autocast():
            outputs = generate(self.net_G, inputs, self.cfg.noise_nc)
        d_losses = self._update_D(inputs, targets, outputs.detach()) if self.net_D is not None else []
        g_losses = self._update_G(inputs, targets, outputs)
        losses = torch.stack([loss.float() for loss in (*g_losses, *d_losses)])
        return losses.detach(), outputs.detach()

    def _update_D(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> list[torch.Tensor]:
        net_d, optimizer = self.net_D, self.optimizers["D"]
        net_d.requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        real, fake = self._d_input(inputs, targets), self._d_input(inputs, outputs)
        with self._autocast():
            loss_fake = self.gan_loss(net_d(fake), real=False)
            loss_real = self.gan_loss(net_d(real), real=True)
            loss = 0.5 * (loss_fake + loss_real)
            if self.cfg.gan_mode == "wgangp":
                loss = loss + self.cfg.lambda_gp * gradient_penalty(net_d, real, fake)
        loss.backward()
        optimizer.step()
        net_d.requires_grad_(False)  # G's update needs gradients through D, not for D's weights
        return [loss_real, loss_fake]

    def _update_G(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> list[torch.Tensor]:
        optimizer = self.optimizers["G"]
        optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss_recon = self.recon_loss(outputs.float(), targets) * self.cfg.lambda_L1
            losses = [loss_recon]
            if self.net_D is not None:
                loss_gan = self.gan_loss(self.net_D(self._d_input(inputs, outputs)), real=True, for_discriminator=False)
                losses = [loss_gan, loss_recon]
        sum(losses).backward()
        optimizer.step()
        return losses
