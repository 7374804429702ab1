"""Adversarial losses, the gradient penalty and reconstruction losses on values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pairforge.train.losses import GANLoss, gradient_penalty, reconstruction_loss


def test_vanilla_and_lsgan_against_real_and_fake_labels():
    zero, two = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 2.0)
    assert GANLoss("vanilla")(zero, real=True).item() == pytest.approx(math.log(2))
    assert GANLoss("vanilla")(two, real=False).item() == pytest.approx(math.log(1 + math.exp(2)))
    assert GANLoss("lsgan")(two, real=True).item() == pytest.approx(1.0)
    assert GANLoss("lsgan")(two, real=False).item() == pytest.approx(4.0)


def test_hinge_and_wgangp_differ_for_discriminator_and_generator():
    pred = torch.tensor([0.5, -2.0])
    hinge = GANLoss("hinge")
    assert hinge(pred, real=True).item() == pytest.approx((0.5 + 3.0) / 2)
    assert hinge(pred, real=False).item() == pytest.approx((1.5 + 0.0) / 2)
    assert hinge(pred, real=True, for_discriminator=False).item() == pytest.approx(0.75)
    assert GANLoss("wgangp")(pred, real=True).item() == pytest.approx(0.75)
    assert GANLoss("wgangp")(pred, real=False).item() == pytest.approx(-0.75)


def test_multiscale_predictions_average_over_scales():
    maps = [torch.zeros(1, 1, 4, 4), torch.full((1, 1, 2, 2), 2.0)]
    assert GANLoss("lsgan")(maps, real=True).item() == pytest.approx((1.0 + 1.0) / 2)


def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared():
    critic = nn.Conv2d(2, 1, 2, bias=False)
    nn.init.constant_(critic.weight, 0.5)  # 8 weights of 0.5: gradient norm sqrt(2) everywhere
    real, fake = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx((math.sqrt(2) - 1) ** 2, rel=1e-5)


def test_reconstruction_losses():
    a, b = torch.zeros(4), torch.tensor([1.0, -1.0, 2.0, 0.0])
    assert reconstruction_loss("l1")(a, b).item() == pytest.approx(1.0)
    assert reconstruction_loss("l2")(a, b).item() == pytest.approx(1.5)
