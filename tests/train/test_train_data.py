"""Reading ab and split layouts, the cache, same crop/flip on both sides, epoch plans, size errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.codings import Coding
from pairforge.train.config import make_config
from pairforge.train.data import PairCache, TrainBatches, find_pairs, load_resize, read_pair
from tests.train.conftest import blobs, write_ab

CPU = torch.device("cpu")


def batches_for(cfg, root) -> TrainBatches:
    return TrainBatches(PairCache.load(find_pairs(root, cfg.phase), cfg), cfg, CPU)


def test_random_crops_and_flips_are_the_same_for_input_and_target(ab_dataset, tiny):
    root = ab_dataset(train=5, size=64)
    cfg = tiny(root, load_size=64, crop_size=48, netG="resnet_6blocks", batch_size=4)  # no resize: exact values
    batches = batches_for(cfg, root)
    assert batches.steps_per_epoch == 2  # 5 pairs, batch 4: the last batch is filled from the epoch's start
    seen_flip = seen_offset = False
    for epoch in range(6):
        plan = batches.plan(epoch)
        seen_flip |= bool(plan.flip.any())
        seen_offset |= bool((plan.x0 > 0).any() and (plan.y0 > 0).any())
        for i in range(batches.steps_per_epoch):
            inputs, targets = batches.batch(plan, i)
            assert inputs.shape == targets.shape == (4, 3, 48, 48)
            assert torch.allclose(targets, -inputs, atol=1e-6)  # B = 255 - A survives the joint crop and flip
    assert seen_flip and seen_offset


def test_crop_matches_the_resized_image_and_flip_mirrors_it(ab_dataset, tiny):
    root = ab_dataset(train=1, size=64)
    cfg = tiny(root, load_size=72, crop_size=64, netG="resnet_6blocks", batch_size=1)
    batches = batches_for(cfg, root)
    a, _ = read_pair(find_pairs(root, "train"), 0, "AtoB", 3, 3)
    full = torch.from_numpy(load_resize(a, cfg, Coding())).permute(2, 0, 1).float() / 127.5 - 1
    for epoch in range(8):
        plan = batches.plan(epoch)
        x0, y0 = int(plan.x0[0]), int(plan.y0[0])
        crop = full[:, y0 : y0 + 64, x0 : x0 + 64]
        expected = crop.flip(-1) if plan.flip[0] else crop
        assert torch.allclose(batches.batch(plan, 0)[0][0], expected, atol=1e-6)


def test_epoch_plans_depend_only_on_seed_and_epoch(ab_dataset, tiny):
    root = ab_dataset(train=8, size=64)
    cfg = tiny(root, load_size=80, crop_size=64, netG="resnet_6blocks")
    one, two = batches_for(cfg, root), batches_for(cfg, root)
    assert torch.equal(one.plan(3).index, two.plan(3).index) and torch.equal(one.plan(3).x0, two.plan(3).x0)
    assert not torch.equal(one.plan(3).index, one.plan(4).index)
    serial = batches_for(cfg.model_copy(update={"serial_batches": True, "no_flip": True}), root)
    assert serial.plan(5).index.tolist() == list(range(8)) and not serial.plan(5).flip.any()


def test_split_layout_with_direction_and_grayscale(tmp_path, tiny):
    root = tmp_path / "split"
    for i in range(3):
        (root / "train" / "A").mkdir(parents=True, exist_ok=True)
        (root / "train" / "B").mkdir(parents=True, exist_ok=True)
        Image.fromarray(blobs(32, i)).save(root / "train" / "A" / f"k{i}.png")
        Image.fromarray(blobs(32, i)[:, :, 0]).save(root / "train" / "B" / f"k{i}.png")
    files = find_pairs(root, "train")
    assert files.layout == "split" and files.keys == ["k0", "k1", "k2"]
    inp, tgt = read_pair(files, 1, "BtoA", 1, 3)
    assert inp.shape == (32, 32, 1) and tgt.shape == (32, 32, 3) and inp.dtype == np.uint8
    assert np.array_equal(inp[:, :, 0], blobs(32, 1)[:, :, 0])
    cfg = tiny(root, direction="BtoA", input_nc=1, load_size=32, crop_size=32, netG="resnet_6blocks")
    inputs, targets = batches_for(cfg, root).batch(batches_for(cfg, root).plan(0), 0)
    assert inputs.shape == (2, 1, 32, 32) and targets.shape == (2, 3, 32, 32)


def test_unpaired_split_keys_and_missing_folders_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match=r"--dataroot .*nope: folder not found"):
        find_pairs(tmp_path / "nope", "train")
    with pytest.raises(UsageError, match="no 'val' split"):
        find_pairs(write_ab(tmp_path / "ab", "train", 1, 16), "val")
    (tmp_path / "s" / "train" / "A").mkdir(parents=True)
    (tmp_path / "s" / "train" / "B").mkdir(parents=True)
    Image.fromarray(blobs(16, 0)).save(tmp_path / "s" / "train" / "A" / "x.png")
    with pytest.raises(UsageError, match="'x' has no B image"):
        find_pairs(tmp_path / "s", "train")


def test_corrupt_image_is_a_one_line_error(tmp_path):
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "train" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(PairforgeError, match=r"bad\.png: cannot read image"):
        read_pair(find_pairs(tmp_path / "d", "train"), 0, "AtoB", 3, 3)


def test_crop_that_does_not_fit_the_images_or_the_generator(ab_dataset, tiny):
    root = ab_dataset(train=2, size=64)
    with pytest.raises(UsageError, match=r"--crop_size 96x96: larger than loaded image"):
        batches_for(tiny(root, netG="resnet_6blocks", preprocess="crop", crop_size=96, load_size=96), root)
    message = (
        r"--crop_size 300x200: --netG unet_256 needs sides divisible by 256 \(smallest valid: 256x256;"
        r" nearest: 256x256\)"
    )
    with pytest.raises(UsageError, match=message):  # before any data is read
        make_config(dataroot=root, netG="unet_256", load_size="320x240", crop_size="300x200")
    with pytest.raises(
        UsageError, match=r"--crop_size 62: --netG resnet_6blocks needs sides divisible by 4 .* nearest: 64x64"
    ):
        make_config(dataroot=root, netG="resnet_6blocks", load_size=64, crop_size=62)
    odd = tiny(root, netG="resnet_6blocks", preprocess="scale_width", load_size=66, crop_size=64)
    with pytest.raises(UsageError, match=r"training size 66x66 \(--preprocess scale_width\): .* nearest: 64x64"):
        batches_for(odd, root)


def test_scale_width_keeps_aspect(tiny, tmp_path):
    cfg = tiny(tmp_path, preprocess="scale_width", load_size=128, crop_size=128)
    assert load_resize(np.zeros((100, 200, 3), np.uint8), cfg, Coding()).shape == (128, 128, 3)  # h: max(64, crop)
    assert load_resize(np.zeros((300, 100, 3), np.uint8), cfg, Coding()).shape == (384, 128, 3)


def test_rectangular_crops_and_scale_width_and_crop(tmp_path, tiny):
    root = write_ab(tmp_path / "wide", "train", 3, 64)  # 64x64 halves
    cfg = tiny(root, netG="resnet_6blocks", load_size="96x72", crop_size="64x48", batch_size=3)
    inputs, targets = batches_for(cfg, root).batch(batches_for(cfg, root).plan(0), 0)
    assert inputs.shape == targets.shape == (3, 3, 48, 64)  # (N, C, H, W): WxH on the command line
    cfg = tiny(root, netG="resnet_6blocks", preprocess="scale_width_and_crop", load_size=80, crop_size="64x32")
    assert batches_for(cfg, root).batch(batches_for(cfg, root).plan(0), 0)[0].shape == (2, 3, 32, 64)
