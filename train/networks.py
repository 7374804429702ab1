"""Generators and discriminators of pix2pix/CycleGAN.

Module nesting and layer order follow the reference pytorch-CycleGAN-and-pix2pix, so parameter counts and
state_dict key names are the same (`model.model.1.model.2.weight`, ...) and its checkpoints load unchanged.
As in the reference, convolutions have a bias only when followed by InstanceNorm (or by nothing, at the ends).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NormFactory = Callable[[int], nn.Module]


def norm_layer(norm: str) -> NormFactory:
    """A constructor `channels -> module` for `--norm batch|instance|none`."""
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown norm {norm!r}")


class UnetBlock(nn.Module):
    """One level of the U-Net: down-conv, the inner levels, up-conv, and (below the top) a skip concat."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        norm: str,
        inner: UnetBlock | None = None,
        input_nc: int | None = None,
        outermost: bool = False,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_layer(norm), norm == "instance"
        down = nn.Conv2d(input_nc or outer_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        up_in = inner_nc if inner is None else inner_nc * 2
        if outermost:
            layers = [down, inner, nn.ReLU(True), nn.ConvTranspose2d(up_in, outer_nc, 4, 2, 1), nn.Tanh()]
        elif inner is None:  # innermost: 1x1 at the bottleneck, no norm after its down-conv
            up = nn.ConvTranspose2d(up_in, outer_nc, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, make_norm(outer_nc)]
        else:
            up = nn.ConvTranspose2d(up_in, outer_nc, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, make_norm(inner_nc), inner, nn.ReLU(True), up]
            layers += [make_norm(outer_nc), *([nn.Dropout(0.5)] if dropout else [])]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with `num_downs` halvings (8 for 256x256 inputs: the bottleneck is 1x1)."""

    def __init__(
        self, input_nc: int, output_nc: int, num_downs: int, ngf: int = 64, norm: str = "batch", dropout: bool = True
    ) -> None:
        super().__init__()
        block = UnetBlock(ngf * 8, ngf * 8, norm)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, norm, block, dropout=dropout)
        for mult in (4, 2, 1):
            block = UnetBlock(ngf * mult, ngf * mult * 2, norm, block)
        self.model = UnetBlock(output_nc, ngf, norm, block, input_nc=input_nc, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResnetBlock(nn.Module):
    """Two reflect-padded 3x3 convolutions with a residual connection."""

    def __init__(self, dim: int, norm: str, dropout: bool) -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim), nn.ReLU(True)]
        layers += [nn.Dropout(0.5)] if dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s generator: 7x7 stem, two stride-2 downs, `n_blocks` residual blocks, two ups."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm: str = "batch",
        dropout: bool = False,
        n_blocks: int = 9,
    ) -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), norm == "instance"
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias)]
        layers += [make_norm(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias)]
            layers += [make_norm(ngf * mult * 2), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            up = nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias)
            layers += [up, make_norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: `n_layers` stride-2 convs then two stride-1 convs; 3 layers = 70x70 receptive field."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), norm == "instance"
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=bias), make_norm(out)]
            layers += [nn.LeakyReLU(0.2, True)]
            channels = out
        layers += [nn.Conv2d(channels, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN (PixelGAN): classifies every pixel on its own."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "batch") -> None:
        super().__init__()
        make_norm, bias = norm_layer(norm), norm == "instance"
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            make_norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD-style: `num_D` PatchGANs on the input downsampled 1x, 2x, 4x...; returns one map per scale."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch", num_D: int = 2) -> None:
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(input_nc, ndf, n_layers, norm) for _ in range(num_D))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


def build_generator(name: str, input_nc: int, output_nc: int, ngf: int, norm: str, dropout: bool) -> nn.Module:
    """`--netG unet_256|unet_128|resnet_9blocks|resnet_6blocks`."""
    if name.startswith("unet_"):
        num_downs = {"unet_256": 8, "unet_128": 7}[name]
        return UnetGenerator(input_nc, output_nc, num_downs, ngf, norm, dropout)
    n_blocks = {"resnet_9blocks": 9, "resnet_6blocks": 6}[name]
    return ResnetGenerator(input_nc, output_nc, ngf, norm, dropout, n_blocks)


def build_discriminator(name: str, input_nc: int, ndf: int, n_layers: int, norm: str, num_D: int) -> nn.Module:
    """`--netD basic|n_layers|pixel|multiscale` (basic = n_layers with 3 layers)."""
    if name == "pixel":
        return PixelDiscriminator(input_nc, ndf, norm)
    if name == "multiscale":
        return MultiscaleDiscriminator(input_nc, ndf, n_layers, norm, num_D)
    return NLayerDiscriminator(input_nc, ndf, 3 if name == "basic" else n_layers, norm)


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Reference init: conv/linear weights by `init_type` (normal = N(0, gain)), biases 0, BatchNorm N(1, gain)."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            if init_type == "normal":
                nn.init.normal_(module.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(module.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(module.weight, gain=gain)
            else:
                raise ValueError(f"unknown init_type {init_type!r}")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
