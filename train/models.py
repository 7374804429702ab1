"""pix2pix (Isola et al. 2017) and CycleGAN (Zhu et al. 2017), as the reference trains them.

pix2pix: one step = forward G, update D on (input, output) vs (input, target), then update G to fool D and match
the target. Variants: `--no_condition_D` (D sees outputs only), `--no_gan` (reconstruction only), `--noise_nc`.
CycleGAN: generators G_A (A -> B) and G_B (B -> A), discriminators D_A (judges B images) and D_B (judges A
images); one step = update both G (GAN + cycle + identity), then both D on fakes drawn from image pools.
A model exposes `networks` and `optimizers` by name, plus `state_tensors` (extra state such as the image pools),
which is all the checkpoint code needs. Under torchrun each network is also wrapped in DistributedDataParallel
(`ddp_*`) for the passes whose gradients train it; a pass through a network whose weights are frozen for the
update (D during G's update) uses the plain network, so that DDP never waits for gradients that do not come.
"""

from __future__ import annotations

import itertools
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from pairforge.train.config import TrainConfig
from pairforge.train.distributed import data_parallel
from pairforge.train.fast import Speed
from pairforge.train.losses import GANLoss, PerceptualLoss, gradient_penalty, reconstruction_loss
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
    """What the loop, the fast mode and the checkpoints need from a model (pix2pix, CycleGAN)."""

    cfg: TrainConfig
    device: torch.device
    loss_names: tuple[str, ...]
    optimizers: dict[str, torch.optim.Optimizer]

    @property
    def networks(self) -> dict[str, nn.Module]: ...

    def set_lr(self, lr: float) -> None: ...

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def state_tensors(self) -> dict[str, torch.Tensor]: ...

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...


def build_model(cfg: TrainConfig, device: torch.device, speed: Speed | None = None) -> TrainableModel:
    """The model `cfg.model` names."""
    return (CycleGANModel if cfg.model == "cycle_gan" else Pix2PixModel)(cfg, device, speed)


def set_lr(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    """Set every optimizer's learning rate (in place when it is a tensor captured by a CUDA graph)."""
    for opt in optimizers.values():
        for group in opt.param_groups:
            if torch.is_tensor(group["lr"]):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr


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
        self.ddp_G = data_parallel(self.net_G, cfg.sync_bn)
        self.ddp_D = data_parallel(self.net_D, cfg.sync_bn) if self.net_D is not None else None
        self.optimizers = {
            name: make_optimizer(net.parameters(), cfg, self.speed, device) for name, net in self.networks.items()
        }
        self.gan_loss = GANLoss(cfg.gan_mode)
        self.recon_loss = reconstruction_loss(cfg.recon_loss)
        self.perceptual = PerceptualLoss(cfg.vgg_weights).to(device) if cfg.lambda_perceptual > 0 else None
        g_names = ("G_L1" if cfg.recon_loss == "l1" else "G_L2",) + ("G_perceptual",) * (self.perceptual is not None)
        self.loss_names = g_names if cfg.no_gan else ("G_GAN", *g_names, "D_real", "D_fake")

    @property
    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.net_G} | ({"D": self.net_D} if self.net_D is not None else {})

    def set_lr(self, lr: float) -> None:
        set_lr(self.optimizers, lr)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def _autocast(self) -> torch.autocast:
        # cache_enabled=False: autocast's weight cache must not outlive a CUDA graph capture
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.speed.amp, cache_enabled=False)

    def _d_input(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        return outputs if self.cfg.no_condition_D else torch.cat([inputs, outputs], 1)

    def train_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One D update then one G update; returns (losses in `loss_names` order, G's outputs), both detached,
        without reading anything back to the host."""
        with self._autocast():
            outputs = generate(self.ddp_G, inputs, self.cfg.noise_nc)
        d_losses = self._update_D(inputs, targets, outputs.detach()) if self.net_D is not None else []
        g_losses = self._update_G(inputs, targets, outputs)
        losses = torch.stack([loss.float() for loss in (*g_losses, *d_losses)])
        return losses.detach(), outputs.detach()

    def _update_D(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> list[torch.Tensor]:
        net_d, optimizer = self.ddp_D, self.optimizers["D"]
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
            if self.perceptual is not None:
                losses.append(self.perceptual(outputs.float(), targets) * self.cfg.lambda_perceptual)
            if self.net_D is not None:  # the plain D: its weights are frozen here
                loss_gan = self.gan_loss(self.net_D(self._d_input(inputs, outputs)), real=True, for_discriminator=False)
                losses = [loss_gan, *losses]
        sum(losses).backward()
        optimizer.step()
        return losses


class ImagePool:
    """The reference's history of generated images (Shrivastava et al. 2017), kept on the device.

    Until `size` fakes are stored, a query stores each fake and returns it. Once full, each fake is, with
    probability 0.5, swapped with a stored one chosen at random (the stored one is returned), else returned as
    is. A batch is handled in one go, a few kernels whatever its size: the device RNG and tensor indices, no
    host sync, fit for a CUDA graph (the fill count is a device tensor). At batch 1 (CycleGAN's default) this is
    the reference's rule exactly; within a larger batch a slot is touched at most once (a fake whose draw hits
    a slot already taken by an earlier fake of the same batch is returned as is), so a stored fake is never
    returned twice. `size` 0 returns the fakes unchanged.
    """

    def __init__(self, size: int, device: torch.device) -> None:
        self.size = size
        self.count = torch.zeros(1, dtype=torch.long, device=device)
        self.images: torch.Tensor | None = None

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return fakes
        fakes = fakes.detach().float()  # stored in fp32 whatever the autocast dtype: checkpoints stay portable
        if self.images is None or self.images.shape[1:] != fakes.shape[1:]:  # first query, or a new crop size
            self.images = torch.zeros(self.size, *fakes.shape[1:], device=fakes.device)
            self.count.zero_()
        n, device = fakes.shape[0], fakes.device
        position = self.count + torch.arange(n, device=device)  # where each fake would go while filling
        filling = position < self.size
        swap = ~filling & (torch.rand(n, device=device) < 0.5)
        slot = torch.where(filling, position.clamp(max=self.size - 1), torch.randint(self.size, (n,), device=device))
        writes = filling | swap
        if n > 1:  # a slot written by an earlier fake of this batch is not touched again
            earlier = torch.ones(n, n, dtype=torch.bool, device=device).tril(-1)  # [i, j]: j comes before i
            taken = ((slot[:, None] == slot[None, :]) & writes[None, :] & earlier).any(1)
            writes, swap = writes & ~taken, swap & ~taken
        stored = self.images.index_select(0, slot)
        # each slot's incoming fake (at most one writes it now): row s of `hits` marks the fake that writes slot s
        hits = (slot[None, :] == torch.arange(self.size, device=device)[:, None]) & writes[None, :]
        incoming = fakes.index_select(0, hits.int().argmax(1))
        pool_shape = (self.size,) + (1,) * (fakes.dim() - 1)
        self.images.copy_(torch.where(hits.any(1).view(pool_shape), incoming, self.images))
        self.count.add_(n).clamp_(max=self.size)
        return torch.where(swap.view((n,) + (1,) * (fakes.dim() - 1)), stored, fakes)

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        images = {} if self.images is None else {f"{prefix}.images": self.images}
        return {f"{prefix}.count": self.count} | images

    def load(self, prefix: str, tensors: dict[str, torch.Tensor]) -> None:
        if f"{prefix}.count" in tensors:
            self.count.copy_(tensors[f"{prefix}.count"])
        if f"{prefix}.images" in tensors:
            self.images = tensors[f"{prefix}.images"].to(self.count.device)


class CycleGANModel:
    """G_A, G_B, D_A, D_B, one optimizer for both G and one for both D (as the reference), two image pools."""

    def __init__(self, cfg: TrainConfig, device: torch.device, speed: Speed | None = None) -> None:
        self.cfg, self.device, self.speed = cfg, device, speed or Speed()
        torch.manual_seed(cfg.seed)
        dropout = not cfg.no_dropout
        nets = {
            "G_A": build_generator(cfg.netG, cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.norm, dropout),
            "G_B": build_generator(cfg.netG, cfg.output_nc, cfg.input_nc, cfg.ngf, cfg.norm, dropout),
            "D_A": build_discriminator(cfg.netD, cfg.output_nc, cfg.ndf, cfg.n_layers_D, cfg.norm, cfg.num_D),
            "D_B": build_discriminator(cfg.netD, cfg.input_nc, cfg.ndf, cfg.n_layers_D, cfg.norm, cfg.num_D),
        }
        memory_format = torch.channels_last if self.speed.channels_last else torch.preserve_format
        self._networks = {
            name: init_weights(net, cfg.init_type, cfg.init_gain).to(device, memory_format=memory_format).train()
            for name, net in nets.items()
        }
        self.net_G_A, self.net_G_B, self.net_D_A, self.net_D_B = self._networks.values()
        self.ddp = {name: data_parallel(net, cfg.sync_bn) for name, net in self._networks.items()}
        self.optimizers = {
            "G": make_optimizer(
                itertools.chain(self.net_G_A.parameters(), self.net_G_B.parameters()), cfg, self.speed, device
            ),
            "D": make_optimizer(
                itertools.chain(self.net_D_A.parameters(), self.net_D_B.parameters()), cfg, self.speed, device
            ),
        }
        self.pool_A, self.pool_B = ImagePool(cfg.pool_size, device), ImagePool(cfg.pool_size, device)  # fakes of A, B
        self.gan_loss = GANLoss(cfg.gan_mode)
        identity = cfg.lambda_identity > 0
        self.loss_names = (
            ("D_A", "G_A", "cycle_A") + ("idt_A",) * identity + ("D_B", "G_B", "cycle_B") + ("idt_B",) * identity
        )

    @property
    def networks(self) -> dict[str, nn.Module]:
        return self._networks

    def set_lr(self, lr: float) -> None:
        set_lr(self.optimizers, lr)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The image pools (live tensors): saved in checkpoints so that a resumed run continues exactly."""
        return self.pool_A.state("pool.A") | self.pool_B.state("pool.B")

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.pool_A.load("pool.A", tensors)
        self.pool_B.load("pool.B", tensors)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.speed.amp, cache_enabled=False)

    def train_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both G updated, then both D; returns (losses in `loss_names` order, fake B), detached, no host sync."""
        cfg = self.cfg
        g_a, g_b = self.ddp["G_A"], self.ddp["G_B"]
        with self._autocast():
            fake_B = g_a(real_A)
            rec_A = g_b(fake_B)
            fake_A = g_b(real_B)
            rec_B = g_a(fake_A)
        # ---- G_A and G_B -----------------------------------------------------------------------------------
        self.net_D_A.requires_grad_(False)
        self.net_D_B.requires_grad_(False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self._autocast():  # the plain Ds: their weights are frozen here
            loss_G_A = self.gan_loss(self.net_D_A(fake_B), real=True, for_discriminator=False)
            loss_G_B = self.gan_loss(self.net_D_B(fake_A), real=True, for_discriminator=False)
            loss_cycle_A = F.l1_loss(rec_A.float(), real_A) * cfg.lambda_A
            loss_cycle_B = F.l1_loss(rec_B.float(), real_B) * cfg.lambda_B
            a_side, b_side = [loss_G_A, loss_cycle_A], [loss_G_B, loss_cycle_B]
            if cfg.lambda_identity > 0:  # G_A should leave B images alone, G_B A images
                idt_A, idt_B = g_a(real_B), g_b(real_A)
                a_side.append(F.l1_loss(idt_A.float(), real_B) * cfg.lambda_B * cfg.lambda_identity)
                b_side.append(F.l1_loss(idt_B.float(), real_A) * cfg.lambda_A * cfg.lambda_identity)
        sum(a_side + b_side).backward()
        self.optimizers["G"].step()
        # ---- D_A and D_B, on fakes from the pools -------------------------------------------------------------
        self.net_D_A.requires_grad_(True)
        self.net_D_B.requires_grad_(True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        loss_D_A = self._backward_D(self.ddp["D_A"], real_B, self.pool_B.query(fake_B))
        loss_D_B = self._backward_D(self.ddp["D_B"], real_A, self.pool_A.query(fake_A))
        self.optimizers["D"].step()
        losses = torch.stack([loss.float() for loss in (loss_D_A, *a_side, loss_D_B, *b_side)])
        return losses.detach(), fake_B.detach()

    def _backward_D(self, net_d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            loss = 0.5 * (self.gan_loss(net_d(real), real=True) + self.gan_loss(net_d(fake.detach()), real=False))
            if self.cfg.gan_mode == "wgangp":
                loss = loss + self.cfg.lambda_gp * gradient_penalty(net_d, real, fake.detach().to(real.dtype))
        loss.backward()
        return loss
