"""Training from webdataset shards: the same result as the folder layout of the same data; exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pairforge.errors import UsageError
from pairforge.train.loop import train
from pairforge.train.streaming import ShardStream, StreamBatches, find_shards, shard_urls
from tests.train.conftest import blobs

CPU = torch.device("cpu")


@pytest.fixture
def combined(tmp_path, cli):
    """`combine` of 7 pairs (B = inverted A) into one dataset with both the ab and the webdataset layout."""
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir(), b.mkdir()
    for i in range(7):
        image = blobs(48, i)[:, :40]  # 40x48: crops land at different offsets
        Image.fromarray(image).save(a / f"p{i}.png")
        Image.fromarray(255 - image).save(b / f"p{i}.png")
    out = tmp_path / "data"
    args = ("--layout", "ab,webdataset", "--split", "1,0,0", "--format", "png", "--shard-size", "8KB", "-q")
    assert cli("combine", a, b, out, *args).code == 0
    return out


def pattern_of(root) -> str:
    shards = sorted(p.name for p in root.glob("train-*.tar"))
    assert len(shards) > 1
    return str(root / f"train-{{000000..{len(shards) - 1:06d}}}.tar")


def weights(cfg) -> dict[str, torch.Tensor]:
    return load_file(cfg.runs_dir / cfg.name / "checkpoints" / "latest.safetensors")


def test_streaming_trains_exactly_as_the_folder_layout(combined, tiny):
    options = {"netG": "resnet_6blocks", "load_size": 40, "crop_size": 32, "batch_size": 2, "serial_batches": True}
    folder = tiny(combined, name="folder", max_steps=6, **options)  # 4 steps per epoch: the last one filled up
    streamed = tiny(pattern_of(combined), name="streamed", max_steps=6, **options)
    assert "streamed" not in train(folder, quiet=True)["cache"]  # a folder layout beside shards is preferred
    summary = train(streamed, quiet=True)
    assert summary["steps"] == 6 and "streamed from" in summary["cache"]
    expected, got = weights(folder), weights(streamed)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    resumed = streamed.model_copy(update={"name": "resumed", "max_steps": 3})
    train(resumed, quiet=True)
    train(resumed.model_copy(update={"max_steps": 6}), resume=True, quiet=True)
    assert all(torch.equal(expected[k], v) for k, v in weights(resumed).items())


def test_shuffled_stream_covers_every_pair_once_per_epoch(tmp_path, combined, tiny, cli):
    shards_only = tmp_path / "shards"
    shards_only.mkdir()
    for shard in combined.glob("train-*.tar"):
        (shards_only / shard.name).write_bytes(shard.read_bytes())  # no manifest: keys from one pass
    cfg = tiny(shards_only, preprocess="crop", crop_size=32, netG="resnet_6blocks", batch_size=1, no_flip=True, seed=3)
    assert shard_urls(shards_only, "train") == [str(p) for p in sorted(shards_only.glob("train-*.tar"))]
    files = find_shards(shards_only, "train")
    assert files.keys == [f"p{i}" for i in range(7)]
    first3 = ShardStream.load(find_shards(shards_only, "train", max_size=3), cfg)  # --max_dataset_size 3
    assert sorted(s["__key__"] for s in first3.samples(0)) == ["p0", "p1", "p2"]
    batches = StreamBatches(ShardStream.load(files, cfg), cfg, CPU)
    orders = []
    for epoch in (0, 1):
        plan = batches.plan(epoch)
        firsts = [batches.batch(plan, i)[0] for i in range(7)]
        ab = {f"p{i}": np.array(Image.open(combined / "train" / f"p{i}.png")) for i in range(7)}
        order = []
        for crop in firsts:  # which pair each crop came from: the one whose A contains it
            pixels = ((crop[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
            order += [k for k, image in ab.items() if _contains(image[:, :40], pixels)]
        assert sorted(order) == list(ab)
        orders.append(order)
    assert orders[0] != orders[1]  # each epoch its own order


def _contains(image: np.ndarray, crop: np.ndarray) -> bool:
    h, w = crop.shape[:2]
    return any(
        np.array_equal(image[y : y + h, x : x + w], crop)
        for y in range(image.shape[0] - h + 1)
        for x in range(image.shape[1] - w + 1)
    )


def test_streaming_refuses_whole_image_preprocessing(combined, tiny):
    cfg = tiny(pattern_of(combined), preprocess="none", netG="resnet_6blocks")
    with pytest.raises(UsageError, match="--preprocess none: not available when streaming shards"):
        train(cfg, quiet=True)
