"""--lambda_perceptual: VGG features from a weights file the test saves (random weights), in the pix2pix G loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.config import make_config
from pairforge.train.losses import PerceptualLoss
from pairforge.train.models import Pix2PixModel


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    """A random vgg16 `features` state_dict as safetensors, and the network it came from."""
    torch.manual_seed(0)
    net = torchvision.models.vgg16().features
    path = tmp_path_factory.mktemp("vgg") / "vgg16.safetensors"
    save_file({f"features.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path, net.eval()


def test_loss_equals_a_direct_computation(vgg):
    path, net = vgg
    torch.manual_seed(1)
    output, target = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    x, y, expected = ((output + 1) / 2 - mean) / std, ((target + 1) / 2 - mean) / std, 0.0
    with torch.no_grad():
        for index, layer in enumerate(net[:23]):
            x, y = layer(x), layer(y)
            if index in (3, 8, 15, 22):  # relu1_2, relu2_2, relu3_3, relu4_3
                expected += F.l1_loss(x, y).item() / 4
        loss = PerceptualLoss(path)
        assert loss(output, target).item() == pytest.approx(expected, rel=1e-5)
        assert loss(output, output).item() == 0
        assert loss(output[:, :1], target[:, :1]).item() > 0  # grayscale outputs are repeated to 3 channels


def test_pix2pix_trains_with_it(vgg, tmp_path):
    path, _ = vgg
    cfg = make_config(netG="unet_128", ngf=4, ndf=4, lambda_perceptual=10.0, vgg_weights=path, device="cpu")
    model = Pix2PixModel(cfg, torch.device("cpu"))
    assert model.loss_names == ("G_GAN", "G_L1", "G_perceptual", "D_real", "D_fake")
    torch.manual_seed(0)
    losses, _ = model.train_step(torch.rand(1, 3, 128, 128) * 2 - 1, torch.rand(1, 3, 128, 128) * 2 - 1)
    assert losses.shape == (5,) and losses[2] > 0
    assert not any(p.requires_grad for p in model.perceptual.parameters())


def test_weight_file_errors(tmp_path):
    with pytest.raises(UsageError, match="--lambda_perceptual needs --vgg_weights PATH"):
        make_config(lambda_perceptual=1.0)
    with pytest.raises(UsageError, match=r"--vgg_weights .*missing\.pth: file not found"):
        PerceptualLoss(tmp_path / "missing.pth")
    alexnet = tmp_path / "alexnet.pth"
    torch.save(torchvision.models.alexnet().state_dict(), alexnet)
    with pytest.raises(PairforgeError, match="expected torchvision vgg16 or vgg19 weights"):
        PerceptualLoss(alexnet)
