"""Paired training data streamed from `webdataset` shards (`--dataroot` holding `<phase>-NNNNNN.tar`, or a shard
URL pattern such as `data/train-{000000..000031}.tar` or `pipe:curl -s https://host/train-{000000..000031}.tar`).

Nothing is cached: each epoch reads the shards once. With `--serial_batches` samples come in the shards' order,
which is key order, so training equals training on the folder layout of the same data (same pairs, crops, flips
and batches). Otherwise the shard order is shuffled and samples pass through a shuffle buffer of
`SHUFFLE_BUFFER` samples, both seeded by (seed, epoch). Crop offsets and flips are drawn from the same per-epoch
generator as the folder path (`data.epoch_generator`), and a resumed run skips ahead in the epoch's stream, so
`--continue` continues exactly. `--preprocess scale_width` and `none` need every image's size before training
and are not available here.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from pairforge.errors import PairforgeError, UsageError
from pairforge.extras import require
from pairforge.manifest_lines import ManifestLines
from pairforge.train.codings import Codings, dataset_depth
from pairforge.train.config import TrainConfig
from pairforge.train.data import _finish, crop_size_for, epoch_generator, load_resize, orient, pair_codings, to_tensor
from pairforge.train.pixels import decode_array

SHUFFLE_BUFFER = 1000
"""Samples held by the shuffle buffer (their encoded bytes: ~1000 x the size of one pair's files)."""
REMOTE = ("pipe:", "http://", "https://", "gs://", "s3://")


def shard_urls(root: Path | str | None, phase: str) -> list[str] | None:
    """The shard URLs of `phase` when `--dataroot` is a folder of `<phase>-*.tar` shards (and no `<phase>/`
    folder) or a shard pattern; None for any other dataroot (the folder layouts)."""
    if root is None:
        return None
    text = str(root)
    if Path(text).is_dir():
        if (Path(text) / phase).is_dir():  # a folder layout beside the shards is read from its cache
            return None
        shards = sorted(Path(text).glob(f"{phase}-*.tar"))
        return [str(p) for p in shards] or None
    if text.startswith(REMOTE) or text.endswith(".tar") or "{" in text:
        require("webdataset", "a webdataset --dataroot")
        from braceexpand import braceexpand

        return list(braceexpand(text))
    return None


@dataclass(frozen=True)
class ShardFiles:
    """The shards of one split and the keys they hold, sorted (at most --max_dataset_size of them)."""

    urls: list[str]
    keys: list[str]
    total: int

    def __len__(self) -> int:
        return len(self.keys)


def find_shards(root: Path | str, phase: str, max_size: int | None = None) -> ShardFiles:
    """The shards of `phase` and their keys: from the manifest.json beside local shards, else one pass over
    the shards' json members."""
    require("webdataset", "training from webdataset shards")
    urls = shard_urls(root, phase)
    if not urls:
        raise UsageError(f"--dataroot {root}: no {phase}-*.tar shards")
    local = not urls[0].startswith(REMOTE)
    manifest = Path(urls[0]).parent / "manifest.json"
    if local and manifest.is_file():
        keys = sorted(item["key"] for item in ManifestLines(manifest).records("items") if item["split"] == phase)
    else:
        keys = sorted(json.loads(s["json"])["key"] for s in _reader(urls, None))
    if not keys:
        raise UsageError(f"--dataroot {root}: no {phase} samples in {len(urls)} shards")
    return ShardFiles(urls, keys[:max_size], len(keys))


def _reader(urls: list[str], keys: set[str] | None):
    import webdataset as wds

    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False)
    if keys is not None:
        dataset = dataset.select(lambda s: json.loads(s["json"])["key"] in keys)
    return dataset


@dataclass
class ShardStream:
    """The stand-in for data.PairCache when streaming: the shards, read once per epoch, nothing held. The
    codings come from the first sample (every sample of a side must share its dtype)."""

    files: ShardFiles
    cfg: TrainConfig
    codings: Codings

    @classmethod
    def load(cls, files: ShardFiles, cfg: TrainConfig) -> ShardStream:
        if cfg.preprocess in ("scale_width", "none"):
            raise UsageError(f"--preprocess {cfg.preprocess}: not available when streaming shards; use crop")
        first = sample_arrays(next(iter(_reader(files.urls[:1], None))), cfg)
        local = not files.urls[0].startswith(REMOTE)
        depth = dataset_depth(Path(files.urls[0]).parent) if local else None  # prep's depth range, if recorded
        codings = pair_codings(first, cfg, depth)
        return cls(files, cfg, codings)

    def place(self, device: torch.device) -> ShardStream:
        return self

    @property
    def nbytes(self) -> int:
        return 0

    @property
    def device(self) -> str:
        return f"none: streamed from {len(self.files.urls)} shards"

    def samples(self, epoch: int):
        """The raw samples of one epoch, in key order or shuffled by (seed, epoch)."""
        urls, cfg = list(self.files.urls), self.cfg
        keys = set(self.files.keys) if len(self.files) < self.files.total else None
        if cfg.serial_batches:
            return iter(_reader(urls, keys))
        rng = random.Random(cfg.seed * 1_000_003 + epoch)
        rng.shuffle(urls)
        return iter(_reader(urls, keys).shuffle(SHUFFLE_BUFFER, rng=rng))


def sample_arrays(sample: dict, cfg: TrainConfig):
    """(input, target) (H, W, C) arrays of one sample's `a.*` and `b.*` images, exactly as the folder layouts read
    a pair."""
    label = f"{sample.get('__url__')}: sample {sample.get('__key__')!r}"
    sides = {}
    for name, data in sample.items():
        side, _, suffix = name.partition(".")
        if side in ("a", "b") and suffix:
            sides[side] = decode_array(data, f".{suffix}", label)
    if set(sides) != {"a", "b"}:
        raise PairforgeError(f"{label} lacks its a.* or b.* image")
    return orient(sides["a"], sides["b"], cfg.direction, cfg.input_nc, cfg.output_nc, label)


def decode(sample: dict, cfg: TrainConfig, codings: Codings) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) (C, H, W) tensors at load size in their stored dtype, as the folder layouts cache them."""
    inp, tgt = sample_arrays(sample, cfg)
    return to_tensor(load_resize(inp, cfg, codings.input)), to_tensor(load_resize(tgt, cfg, codings.output))


@dataclass
class StreamPlan:
    """One epoch: its stream, the position reached, the first batch (to fill the last one) and the random
    draws of crops and flips for every slot."""

    epoch: int
    stream: object
    uniforms: torch.Tensor
    """(3, slots): crop y, crop x and flip draws, as data.crop_plan draws them."""
    position: int = 0
    first: list = field(default_factory=list)
    last: tuple[int, tuple[torch.Tensor, torch.Tensor]] | None = None


class StreamBatches:
    """Batches of random crops from the stream, with data.TrainBatches' interface (plan, batch,
    steps_per_epoch): `ceil(N / batch_size)` steps per epoch, the last batch filled up from the epoch's start."""

    def __init__(self, cache: ShardStream, cfg: TrainConfig, device: torch.device, channels_last: bool = False):
        self.cache, self.device, self.channels_last = cache, device, channels_last
        self.batch_size, self.seed, self.flip = cfg.batch_size, cfg.seed, not cfg.no_flip
        self.count = len(cache.files)
        self.steps_per_epoch = -(-self.count // cfg.batch_size)
        crop_h, crop_w = cfg.crop_size[1], cfg.crop_size[0]
        self.crop = crop_size_for(cfg, SimpleNamespace(sizes=torch.tensor([[crop_h, crop_w]]), keys=[""]))
        self.pool = ThreadPoolExecutor(cfg.batch_size)

    def plan(self, epoch: int) -> StreamPlan:
        slots = self.steps_per_epoch * self.batch_size
        gen = epoch_generator(self.seed, epoch)
        uniforms = torch.stack([torch.rand(slots, generator=gen) for _ in range(3)])
        return StreamPlan(epoch, self.cache.samples(epoch), uniforms)

    def batch(self, plan: StreamPlan, step_in_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) float batches in [-1, 1] on the training device for step `step_in_epoch`."""
        if plan.last and plan.last[0] == step_in_epoch:
            return plan.last[1]
        start = step_in_epoch * self.batch_size
        if start < plan.position:  # back to an earlier step: read the epoch again
            fresh = self.plan(plan.epoch)
            plan.stream, plan.position, plan.first = fresh.stream, 0, []
        while plan.position < start:  # a resumed run: skip what was trained on
            self._next(plan)
        samples = [self._next(plan) for _ in range(self.batch_size)]
        pairs = list(self.pool.map(lambda s: decode(s, self.cache.cfg, self.cache.codings), samples))
        crops = [self._crop(pair, plan, start + i) for i, pair in enumerate(pairs)]
        codings = (self.cache.codings.input, self.cache.codings.output)
        result = tuple(
            _finish(torch.stack([c[side] for c in crops]), codings[side], self.device, self.channels_last)
            for side in (0, 1)
        )
        plan.last = (step_in_epoch, result)
        return result

    def _next(self, plan: StreamPlan) -> dict:
        """The sample of the next slot: the stream's next one, or the epoch's first ones again past its end."""
        slot = plan.position
        plan.position += 1
        if slot >= self.count:
            return plan.first[slot - self.count]
        try:
            sample = next(plan.stream)
        except StopIteration:
            raise PairforgeError(f"the shards ended after {slot} of {self.count} samples: were they changed?") from None
        if slot < self.batch_size:
            plan.first.append(sample)
        return sample

    def _crop(self, pair, plan: StreamPlan, slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The slot's random crop and flip of both images, as data.crop_plan and data._gather make them."""
        inp, tgt = pair
        (width, height), (_, h, w) = self.crop, inp.shape
        if width > w or height > h:
            raise UsageError(f"--crop_size {width}x{height}: larger than a loaded image ({w}x{h}); lower --crop_size")
        uy, ux, uf = plan.uniforms[:, slot]
        y0 = min(int(uy * (h - height + 1)), h - height)
        x0 = min(int(ux * (w - width + 1)), w - width)
        out = tuple(image[:, y0 : y0 + height, x0 : x0 + width] for image in (inp, tgt))
        if self.flip and uf < 0.5:
            out = tuple(image.flip(-1) for image in out)
        return out
