"""`test` and `translate` on a known case: a generator whose output is exactly a given grey level."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pairforge.train import checkpoints
from pairforge.train.config import TrainConfig
from pairforge.train.evaluate import image_metrics, load_generator, run_test
from pairforge.train.models import Pix2PixModel
from pairforge.train.translate import translate_folder
from tests.train.conftest import write_ab

CPU = torch.device("cpu")
GREY = 191


def constant_checkpoint(tmp_path, value: int = GREY):
    """A checkpoint whose G outputs `value` everywhere: all weights 0, the last bias atanh(value)."""
    model = Pix2PixModel(TrainConfig(netG="unet_128", ngf=4, ndf=4, crop_size=128), CPU)
    with torch.no_grad():
        for p in model.net_G.parameters():
            p.zero_()
        model.net_G.model.model[3].bias.fill_(math.atanh(value / 127.5 - 1))
    path = tmp_path / "constant.safetensors"
    checkpoints.save(path, model, step=1)
    return path


def test_image_metrics_on_known_values():
    target = np.full((32, 32, 3), 191, np.uint8)
    assert image_metrics(target, target) == {"l1": 0.0, "psnr": 100.0, "ssim": 1.0}
    shifted = image_metrics(target + 10, target)
    assert shifted["l1"] == pytest.approx(10 / 255)
    assert shifted["psnr"] == pytest.approx(20 * math.log10(255 / 10))
    assert 0.99 < shifted["ssim"] < 1.0


@pytest.mark.parametrize(("target", "l1", "psnr"), [(GREY, 0.0, 100.0), (GREY + 10, 10 / 255, 28.1308)])
def test_outputs_page_and_metrics_on_a_known_case(tmp_path, target, l1, psnr):
    data = write_ab(tmp_path / "data", "test", 3, 96, to_b=lambda a: np.full_like(a, target))
    gen = load_generator(str(constant_checkpoint(tmp_path)), tmp_path, "latest", CPU, {})
    results = tmp_path / "results"
    metrics = run_test(gen, data, "test", results)
    assert metrics["count"] == 3 and metrics["l1"] == pytest.approx(l1, abs=1e-6)
    assert metrics["psnr"] == pytest.approx(psnr, abs=1e-3) and metrics["ssim"] > 0.99
    assert json.loads((results / "metrics.json").read_text())["images"][0]["key"] == "p000"
    output = np.array(Image.open(results / "images" / "p001_fake_B.png"))
    assert output.shape == (96, 96, 3) and np.all(output == GREY)  # own size: padded to 128, cropped back
    page = (results / "index.html").read_text()
    assert page.count("<tr>") == 4 and 'src="images/p002_real_A.png"' in page


def test_translate_keeps_each_input_size(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (100, 80), (10, 20, 30)).save(inputs / "wide.png")
    Image.new("L", (64, 64)).save(inputs / "gray.jpg")
    gen = load_generator(str(constant_checkpoint(tmp_path)), tmp_path, "latest", CPU, {})
    assert translate_folder(gen, inputs, tmp_path / "out") == 2
    wide = np.array(Image.open(tmp_path / "out" / "wide.png"))
    assert wide.shape == (80, 100, 3) and np.all(wide == GREY)
    assert Image.open(tmp_path / "out" / "gray.png").size == (64, 64)


def test_eval_and_dropout_switches(tmp_path):
    path = constant_checkpoint(tmp_path)
    default = load_generator(str(path), tmp_path, "latest", CPU, {}).net
    assert default.training  # reference behaviour: BatchNorm statistics of the test image, dropout on
    evaluated = load_generator(str(path), tmp_path, "latest", CPU, {}, eval_mode=True, dropout=True).net
    modes = {type(m).__name__: m.training for m in evaluated.modules()}
    assert modes["BatchNorm2d"] is False and modes["Dropout"] is True
