"""Any size and any type through train, test and translate: odd sizes come back at their size and alignment;
16-bit, float, TIFF, .npy, 1 and 4+ channel data keep their type; depth is scored in metres."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

from pairforge.errors import PairforgeError
from pairforge.train.codings import Coding, Codings, coding_for
from pairforge.train.config import TrainConfig
from pairforge.train.evaluate import Generator, run_padded
from pairforge.train.loop import train
from pairforge.train.pixels import read_array, to_channels, write_array
from pairforge.train.translate import translate_folder
from tests.prep.test_nyu import make_mat, make_splits
from tests.train.conftest import blobs
from tests.train.test_train_evaluate import GREY, constant_checkpoint

CPU = torch.device("cpu")
RESNET = {"netG": "resnet_6blocks", "ngf": 4, "ndf": 4, "device": "cpu", "n_epochs": 1, "n_epochs_decay": 0}


class Identity(nn.Module):
    """Returns its input; fails unless both sides are multiples of `multiple` (as a U-Net would)."""

    def __init__(self, multiple: int) -> None:
        super().__init__()
        self.multiple = multiple
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % self.multiple == 0 and x.shape[-1] % self.multiple == 0, x.shape
        return x


def test_a_300x200_image_comes_back_300x200_and_aligned(tmp_path):
    photo = blobs(300, 3)[:200]  # 300 wide, 200 high: not a multiple of anything the U-Net needs
    Image.fromarray(photo).save((tmp_path / "in").mkdir() or tmp_path / "in" / "odd.png")
    net = Identity(256)
    gen = Generator(net, TrainConfig(netG="unet_256", no_dropout=True), Path("x"), None, CPU)
    assert translate_folder(gen, tmp_path / "in", tmp_path / "out") == 1
    assert net.sizes == [(256, 512)]  # padded up to the next valid size
    assert np.array_equal(np.array(Image.open(tmp_path / "out" / "odd.png")), photo)  # cropped back, no shift


def test_padding_is_reflect_and_never_reaches_the_output():
    seen = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x)
        return x * 2

    inputs = torch.arange(2 * 6 * 5, dtype=torch.float32).reshape(1, 2, 6, 5)
    out = run_padded(spy, inputs, 4)
    assert out.shape == inputs.shape and torch.equal(out, inputs * 2)
    assert seen[0].shape == (1, 2, 8, 8)
    assert torch.equal(seen[0][..., 6, :5], inputs[..., 4, :])  # row 6 mirrors row 4
    tiny = run_padded(spy, torch.ones(1, 1, 2, 3), 8)  # pads larger than the image: replicate
    assert tiny.shape == (1, 1, 2, 3) and seen[-1].shape == (1, 1, 8, 8)


def test_translate_cli_with_a_checkpoint_keeps_odd_sizes_and_test_size_resizes_first(tmp_path, cli):
    checkpoint = constant_checkpoint(tmp_path)  # unet_128: G outputs GREY everywhere
    Image.fromarray(blobs(300, 1)[:200]).save((tmp_path / "in").mkdir() or tmp_path / "in" / "a.jpg")
    result = cli("translate", checkpoint, tmp_path / "in", tmp_path / "out", "--device", "cpu", "-q")
    assert result.code == 0, result.err
    output = np.array(Image.open(tmp_path / "out" / "a.png"))
    assert output.shape == (200, 300, 3) and (output == GREY).all()
    args = ["--test_size", "128", "--device", "cpu", "-q"]
    assert cli("translate", checkpoint, tmp_path / "in", tmp_path / "sized", *args).code == 0
    assert np.array(Image.open(tmp_path / "sized" / "a.png")).shape == (200, 300, 3)  # resized back
    bad = cli("translate", checkpoint, tmp_path / "in", tmp_path / "o", "--test_size", "0")
    assert bad.code == 2 and "--test_size '0'" in bad.err


def test_files_keep_their_dtype_and_channels(tmp_path):
    rgb16 = (np.random.default_rng(0).random((5, 7, 3)) * 65535).astype(np.uint16)
    path = write_array(tmp_path / "rgb16.png", rgb16)
    assert path.suffix == ".png" and np.array_equal(read_array(path), rgb16)  # 16-bit colour PNG, RGB order
    gray16 = rgb16[:, :, :1]
    assert np.array_equal(np.asarray(Image.open(write_array(tmp_path / "g.png", gray16))), gray16[:, :, 0])
    floats = np.random.default_rng(1).random((4, 6, 5)).astype(np.float32)
    assert write_array(tmp_path / "f.png", floats).suffix == ".tiff"  # PNG cannot hold float or 5 channels
    assert np.array_equal(read_array(tmp_path / "f.tiff"), floats)
    np.save(tmp_path / "d.npy", floats[:, :, 0].astype(np.float64))
    assert read_array(tmp_path / "d.npy").shape == (4, 6, 1) and read_array(tmp_path / "d.npy").dtype == np.float32
    tifffile.imwrite(tmp_path / "t.tif", gray16[:, :, 0])
    assert read_array(tmp_path / "t.tif").dtype == np.uint16
    np.save(tmp_path / "o.npy", np.array([{"x": 1}], dtype=object))
    with pytest.raises(PairforgeError, match=r"o\.npy: cannot read image"):  # never unpickled
        read_array(tmp_path / "o.npy")


def test_channel_conversions_are_explicit():
    rgba = np.dstack([blobs(8, 0), np.full((8, 8), 7, np.uint8)])
    expected_gray = np.asarray(Image.fromarray(rgba[:, :, :3]).convert("L"))
    assert np.array_equal(to_channels(rgba, 1, "--input_nc")[:, :, 0], expected_gray)  # Pillow's luma exactly
    assert np.array_equal(to_channels(rgba, 3, "--input_nc"), rgba[:, :, :3])  # alpha only kept for 4
    gray = rgba[:, :, :1]
    assert np.array_equal(to_channels(gray, 4, "--input_nc")[:, :, 3], np.full((8, 8), 255))
    with pytest.raises(PairforgeError, match="--output_nc 5: the image has 3 channels"):
        to_channels(rgba[:, :, :3], 5, "--output_nc")


def test_codings_map_ranges_and_units_both_ways():
    depth = coding_for("uint16", None, (10.0, 1000.0))  # a prep manifest: max 10 m, stored in millimetres
    assert (depth.low, depth.high, depth.unit, depth.invalid_zero) == (0.0, 10000.0, "m", True)
    metres = coding_for("uint16", (0, 5), (10.0, 1000.0))
    assert metres.high == 5000.0
    stored = torch.tensor([[[0, 2500, 5000, 65535]]], dtype=torch.int32).to(torch.int16)  # uint16 bits
    assert metres.encode(stored).flatten().tolist() == [-1.0, 0.0, 1.0, pytest.approx(25.214)]
    assert metres.decode(torch.tensor([[[-1.0, 0.0, 1.0]]])).ravel().tolist() == [0, 2500, 5000]
    assert coding_for("uint8", (0, 5), None) == Coding()  # 8-bit images always map 0..255
    assert coding_for("float32", None, None).high == 1.0


def nyu_gray16(tmp_path: Path, cli) -> Path:
    """`pairforge prep nyu` rgb2depth with 16-bit depth in the split layout (64x48, depth in mm)."""
    raw = tmp_path / "nyu"
    make_mat(raw / "nyu_depth_v2_labeled.mat")
    make_splits(raw / "splits.mat")
    out = tmp_path / "nyu16"
    args = ["--crop", "none", "--size", "64x48", "--depth-encoding", "gray16", "--max-depth", "10", "--workers", "1"]
    assert cli("prep", "nyu", raw, out, *args, "-q").code == 0
    return out


def test_16bit_depth_trains_and_tests_in_metres(tmp_path, cli):
    data = nyu_gray16(tmp_path, cli)
    run = ["--dataroot", data, "--output_nc", "1", "--preprocess", "none", "--runs_dir", tmp_path / "runs"]
    tiny = ["--netG", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--device", "cpu", "--max_steps", "3", "-q"]
    assert cli("train", *run, *tiny, "--name", "depth").code == 0
    config = json.loads((tmp_path / "runs" / "depth" / "config.json").read_text())
    assert config["codings"]["output"] | {"high": 10000.0} == config["codings"]["output"]
    assert config["codings"]["output"]["unit"] == "m" and config["codings"]["input"]["dtype"] == "uint8"

    result = cli("test", tmp_path / "runs" / "depth", "--phase", "test", "--device", "cpu", "--json")
    assert result.code == 0, result.err
    metrics = json.loads((tmp_path / "runs" / "depth" / "results" / "test_latest" / "metrics.json").read_text())
    assert metrics["unit"] == "m" and metrics["count"] == 1 and {"mae", "rmse", "abs_rel", "delta1"} <= set(metrics)
    fake = Image.open(tmp_path / "runs" / "depth" / "results" / "test_latest" / "images" / "0003_fake_B.png")
    assert fake.mode == "I;16" and fake.size == (64, 48)  # 16-bit single channel, like the target
    predicted = np.asarray(fake).astype(np.float64) / 1000  # millimetres -> metres
    target = np.asarray(Image.open(data / "test" / "B" / "0003.png")).astype(np.float64) / 1000
    valid = target > 0
    assert metrics["images"][0]["valid_pixels"] == valid.sum()
    assert metrics["mae"] == pytest.approx(np.abs(predicted - target)[valid].mean(), rel=1e-5)
    assert metrics["rmse"] == pytest.approx(np.sqrt(((predicted - target)[valid] ** 2).mean()), rel=1e-5)


def test_masked_depth_is_scored_only_where_measured(tmp_path):
    from pairforge.train.evaluate import score

    coding = coding_for("uint16", None, (10.0, 1000.0))
    target = np.array([[[0], [2000]], [[4000], [1000]]], np.uint16)
    output = np.array([[[9000], [2500]], [[4000], [1000]]], np.uint16)
    Image.fromarray(np.array([[255, 255], [255, 0]], np.uint8)).save(tmp_path / "mask.png")
    row = score(output, target, coding, tmp_path / "mask.png")  # hole at (0, 0), masked out at (1, 1)
    assert row["valid_pixels"] == 2 and row["mae"] == pytest.approx(0.25) and row["rmse"] == pytest.approx(0.125**0.5)
    assert row["abs_rel"] == pytest.approx(0.125) and row["delta1"] == 0.5  # 2.5 / 2 is not below 1.25


def test_four_channel_input_and_16bit_gray_pix2pix_train(tmp_path):
    root = tmp_path / "rgba"
    for i in range(3):
        rgba = np.dstack([blobs(64, i), (blobs(64, i + 9)[:, :, 0] > 128).astype(np.uint8) * 255])
        Image.fromarray(rgba, "RGBA").save(
            (root / "train" / "A").mkdir(parents=True, exist_ok=True) or root / "train" / "A" / f"k{i}.png"
        )
        depth = blobs(64, i)[:, :, 1].astype(np.uint16) * 200
        Image.fromarray(depth).save((root / "train" / "B").mkdir(exist_ok=True) or root / "train" / "B" / f"k{i}.png")
    cfg = TrainConfig(
        dataroot=root,
        input_nc=4,
        output_nc=1,
        value_range="0,51000",
        preprocess="none",
        runs_dir=tmp_path / "runs",
        name="rgba",
        max_steps=2,
        **RESNET,
    )
    summary = train(cfg, quiet=True)
    assert summary["steps"] == 2
    saved = TrainConfig.model_validate_json((tmp_path / "runs" / "rgba" / "config.json").read_text())
    assert saved.codings == Codings(input=Coding(), output=Coding(dtype="uint16", low=0, high=51000))
    assert saved.value_range == (0.0, 51000.0) and saved.input_nc == 4
