"""Generators and discriminators: parameter counts and key names of the reference, output shapes, init."""

from __future__ import annotations

import pytest
import torch

from pairforge.train.config import size_multiple
from pairforge.train.networks import (
    build_discriminator,
    build_generator,
    count_parameters,
    init_weights,
)

# Counts of the reference pytorch-CycleGAN-and-pix2pix code (it prints them rounded: 54.414 M, 41.829 M, 11.378 M,
# 7.838 M for G; 2.769 M for the 70x70 PatchGAN on 3+3 channels).
GENERATOR_PARAMS = [
    ("unet_256", "batch", 54_413_955),
    ("unet_128", "batch", 41_828_995),
    ("resnet_9blocks", "instance", 11_378_179),
    ("resnet_6blocks", "instance", 7_837_699),
    ("resnet_9blocks", "batch", 11_383_427),
    ("unet_256", "instance", 54_409_603),
]
PATCHGAN_PARAMS = {1: 139_585, 2: 666_433, 3: 2_768_705, 4: 6_964_033, 5: 11_159_361}


@pytest.mark.parametrize(("name", "norm", "expected"), GENERATOR_PARAMS)
def test_generator_parameter_counts_equal_the_reference(name, norm, expected):
    with torch.device("meta"):  # shapes only: no memory, no init
        assert count_parameters(build_generator(name, 3, 3, 64, norm, dropout=True)) == expected


def test_discriminator_parameter_counts_equal_the_reference():
    with torch.device("meta"):
        assert count_parameters(build_discriminator("basic", 6, 64, 3, "batch", 1)) == 2_768_705
        for n_layers, expected in PATCHGAN_PARAMS.items():
            assert count_parameters(build_discriminator("n_layers", 6, 64, n_layers, "batch", 1)) == expected
        assert count_parameters(build_discriminator("pixel", 6, 64, 3, "batch", 1)) == 9_024
        assert count_parameters(build_discriminator("multiscale", 6, 64, 3, "batch", 3)) == 3 * 2_768_705


def test_dropout_and_norm_none_change_no_keys_the_reference_would_not():
    with_dropout = build_generator("unet_256", 3, 3, 8, "batch", dropout=True).state_dict().keys()
    assert with_dropout == build_generator("unet_256", 3, 3, 8, "batch", dropout=False).state_dict().keys()
    resnet = build_generator("resnet_6blocks", 3, 3, 8, "none", dropout=False).state_dict()
    assert "model.1.bias" not in resnet and "model.23.bias" in resnet  # bias only on the last conv, as the reference


@pytest.mark.parametrize("name", ["unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_generators_map_images_to_images_in_tanh_range(name, norm):
    side = size_multiple(name) if name.startswith("unet") else 36
    net = build_generator(name, 4, 1, 4, norm, dropout=True)
    with torch.no_grad():
        out = net(torch.randn(2, 4, side, side))
    assert out.shape == (2, 1, side, side)
    assert out.abs().max() <= 1


@pytest.mark.parametrize(("n_layers", "side"), [(1, 126), (2, 62), (3, 30), (4, 14), (5, 6)])
def test_patchgan_output_sizes(n_layers, side):
    net = build_discriminator("n_layers", 6, 4, n_layers, "batch", 1)
    with torch.no_grad():
        assert net(torch.randn(1, 6, 256, 256)).shape == (1, 1, side, side)


def test_pixel_and_multiscale_discriminators():
    x = torch.randn(2, 6, 64, 64)
    with torch.no_grad():
        assert build_discriminator("pixel", 6, 4, 3, "instance", 1)(x).shape == (2, 1, 64, 64)
        maps = build_discriminator("multiscale", 6, 4, 3, "batch", 2)(x)
    assert [m.shape[-1] for m in maps] == [6, 2]


def test_init_is_normal_0_002_with_zero_bias_and_batchnorm_around_one():
    torch.manual_seed(0)
    net = init_weights(build_discriminator("basic", 6, 64, 3, "batch", 1))
    conv, bn, last = net.model[2], net.model[3], net.model[11]
    assert abs(conv.weight.std().item() - 0.02) < 0.001 and abs(conv.weight.mean().item()) < 0.001
    assert torch.all(last.bias == 0) and torch.all(bn.bias == 0)
    assert abs(bn.weight.mean().item() - 1) < 0.01 and 0.01 < bn.weight.std().item() < 0.03
