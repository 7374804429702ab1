"""Paired data for training and testing: the `ab` and `split` layouts, a cache and crops on the device.

Training decodes every pair once, resizes it to the load size (the deterministic part of `--preprocess`) and
keeps the result in its stored dtype (uint8, 16-bit or float: see `pixels.py`), on the GPU when it fits. Each
step then gathers a batch of random crops, with the same crop and flip for input and target, in one indexing
kernel on the cache's device, and maps the values to [-1, 1] by the side's coding. The random
plan of an epoch (order, crop offsets, flips) is a pure function of (seed, epoch), so a resumed run sees
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pairforge.errors import PairforgeError, UsageError
from pairforge.train.codings import Coding, Codings, coding_for, dataset_depth
from pairforge.train.config import TrainConfig, size_problem
from pairforge.train.pixels import list_images, read_array, read_image, resize_array, to_channels

CACHE_GPU_FRACTION = 0.3
"""The cache goes to the GPU when it needs at most this fraction of the free GPU memory."""


@dataclass(frozen=True)
class PairFiles:
    """The pairs of one split: `ab` files (A left, B right) or `split` A and B files with the same keys."""

    layout: str
    keys: list[str]
    a: list[Path]
    b: list[Path]

    def __len__(self) -> int:
        return len(self.keys)


def find_pairs(root: Path | None, phase: str, max_size: int | None = None) -> PairFiles:
    """The pairs in `<root>/<phase>`, sorted by key; a missing or empty folder is a UsageError."""
    if root is None:
        raise UsageError("--dataroot is required: the dataset folder that holds train/, val/, test/")
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--dataroot {root}: folder not found")
    split = root / phase
    if (split / "A").is_dir() and (split / "B").is_dir():
        a_files, b_files = list_images(split / "A"), list_images(split / "B")
        missing = sorted(set(a_files) ^ set(b_files))
        if missing:
            side = "B" if missing[0] in a_files else "A"
            raise UsageError(f"{split}: {missing[0]!r} has no {side} image ({len(missing)} unpaired keys)")
        keys = sorted(a_files)[:max_size]
        files = PairFiles("split", keys, [a_files[k] for k in keys], [b_files[k] for k in keys])
    elif split.is_dir():
        ab_files = list_images(split)
        keys = sorted(ab_files)[:max_size]
        files = PairFiles("ab", keys, [ab_files[k] for k in keys], [ab_files[k] for k in keys])
    else:
        raise UsageError(f"--dataroot {root}: no {phase!r} split (expected {split}/ or {split}/A and {split}/B)")
    if not files.keys:
        raise UsageError(f"--dataroot {root}: no images in {split}")
    return files


def read_pair(files: PairFiles, i: int, direction: str, input_nc: int, output_nc: int) -> tuple[np.ndarray, ...]:
    """(input, target) of pair `i` as (H, W, C) arrays of the files' own dtype (see `orient`)."""
    if files.layout == "ab":
        ab = read_array(files.a[i])
        half = ab.shape[1] // 2
        a, b = ab[:, :half], ab[:, half : 2 * half]
    else:
        a, b = read_array(files.a[i]), read_array(files.b[i])
    return orient(a, b, direction, input_nc, output_nc, str(files.a[i]))


def orient(a: np.ndarray, b: np.ndarray, direction: str, input_nc: int, output_nc: int, name: str):
    """(input, target) from the A and B images of a pair: `BtoA` swaps them; then converted to `input_nc` and
    `output_nc` channels (see `pixels.to_channels`). A and B of different sizes are an error."""
    if a.shape[:2] != b.shape[:2]:
        raise PairforgeError(f"{name}: A is {a.shape[1]}x{a.shape[0]} but B is {b.shape[1]}x{b.shape[0]}")
    if direction == "BtoA":
        a, b = b, a
    return to_channels(a, input_nc, "--input_nc"), to_channels(b, output_nc, "--output_nc")


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)


def load_resize(image: np.ndarray, cfg: TrainConfig, coding: Coding) -> np.ndarray:
    """The deterministic, load-time part of `--preprocess` (the reference's resize / scale_width / make_power_2)."""
    height, width = image.shape[:2]
    if cfg.preprocess == "resize_and_crop":
        return resize_array(image, cfg.load_size, coding)
    if cfg.preprocess.startswith("scale_width"):
        target = cfg.load_size[0]
        return resize_array(image, (target, max(int(target * height / width), cfg.crop_size[1])), coding)
    if cfg.preprocess == "none":
        return resize_array(image, (_round_to(width, 4), _round_to(height, 4)), coding)
    return image


def pair_codings(pair: tuple[np.ndarray, np.ndarray], cfg: TrainConfig, depth: tuple[float, float] | None) -> Codings:
    """The codings of a paired dataset whose first (input, target) is `pair` (`depth`: see `dataset_depth`)."""
    inp, tgt = pair
    return Codings(
        input=coding_for(inp.dtype.name, cfg.value_range, depth),
        output=coding_for(tgt.dtype.name, cfg.value_range, depth),
    )


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W, C) -> (C, H, W) tensor to cache: uint16 travels as int16 bits (`Coding.encode` reads them back)."""
    chw = np.ascontiguousarray(array.transpose(2, 0, 1))
    if not chw.flags.writeable:
        chw = chw.copy()
    return torch.from_numpy(chw.view(np.int16) if chw.dtype == np.uint16 else chw)


def cache_dtype(dtype: str) -> torch.dtype:
    return {"uint8": torch.uint8, "uint16": torch.int16, "float32": torch.float32}[dtype]


def stack(arrays: list[np.ndarray], coding: Coding) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) cache tensor padded to the largest image, and each image's (h, w)."""
    sizes = torch.tensor([a.shape[:2] for a in arrays], dtype=torch.long)
    height, width = sizes.max(0).values.tolist()
    images = torch.zeros(len(arrays), arrays[0].shape[2], height, width, dtype=cache_dtype(coding.dtype))
    for i, array in enumerate(arrays):
        images[i, :, : array.shape[0], : array.shape[1]] = to_tensor(array)
    return images, sizes


@dataclass
class PairCache:
    """Input and target images at load size, (N, C, H, W) in their stored dtype, padded to the largest.

    `sizes` holds each pair's (h, w); it stays in host memory, the images may move to the GPU. `codings` says how
    the stored values map to [-1, 1].
    """

    keys: list[str]
    inputs: torch.Tensor
    targets: torch.Tensor
    sizes: torch.Tensor
    codings: Codings

    @classmethod
    def load(cls, files: PairFiles, cfg: TrainConfig) -> PairCache:
        """Decode and resize every pair once, in threads (the decoders release the GIL)."""
        first = read_pair(files, 0, cfg.direction, cfg.input_nc, cfg.output_nc)
        codings = pair_codings(first, cfg, dataset_depth(cfg.dataroot))

        def one(i: int) -> tuple[np.ndarray, np.ndarray]:
            inp, tgt = first if i == 0 else read_pair(files, i, cfg.direction, cfg.input_nc, cfg.output_nc)
            codings.input.check(inp, files.a[i])
            codings.output.check(tgt, files.b[i])
            return load_resize(inp, cfg, codings.input), load_resize(tgt, cfg, codings.output)

        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            pairs = list(pool.map(one, range(len(files))))
        inputs, sizes = stack([inp for inp, _ in pairs], codings.input)
        targets, _ = stack([tgt for _, tgt in pairs], codings.output)
        return cls(files.keys, inputs, targets, sizes, codings)

    @property
    def nbytes(self) -> int:
        return self.inputs.nbytes + self.targets.nbytes

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def place(self, device: torch.device) -> PairCache:
        """On the GPU when it fits comfortably, else in pinned host memory (CPU training: left as is)."""
        if device.type != "cuda":
            return self
        on_gpu = self.nbytes <= CACHE_GPU_FRACTION * torch.cuda.mem_get_info(device)[0]

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device) if on_gpu else t.pin_memory()

        return PairCache(self.keys, move(self.inputs), move(self.targets), self.sizes, self.codings)


def crop_size_for(cfg: TrainConfig, cache: PairCache) -> tuple[int, int]:
    """(width, height) of training crops; checks that it fits every image and the generator."""
    heights, widths = cache.sizes[:, 0], cache.sizes[:, 1]
    if cfg.preprocess in ("scale_width", "none"):  # whole images: they must all have one size
        if heights.unique().numel() > 1 or widths.unique().numel() > 1:
            raise UsageError(
                f"--preprocess {cfg.preprocess}: images load at different sizes; use resize_and_crop or crop"
            )
        crop = (int(widths[0]), int(heights[0]))
    else:
        crop = cfg.crop_size
        smallest = int(cache.sizes.prod(1).argmin())
        if crop[0] > widths.min() or crop[1] > heights.min():
            h, w = cache.sizes[smallest].tolist()
            raise UsageError(
                f"--crop_size {crop[0]}x{crop[1]}: larger than loaded image {cache.keys[smallest]!r} ({w}x{h});"
                " lower --crop_size or raise --load_size"
            )
    problem = size_problem(crop, cfg.netG)
    if problem:
        raise UsageError(f"training size {crop[0]}x{crop[1]} (--preprocess {cfg.preprocess}): {problem}")
    return crop


@dataclass
class EpochPlan:
    """Which pair fills each batch slot of one epoch, and its crop offset and flip (tensors on the cache device)."""

    index: torch.Tensor
    x0: torch.Tensor
    y0: torch.Tensor
    flip: torch.Tensor


class TrainBatches:
    """Random crops of the cache, `batch_size` pairs per step, `ceil(N / batch_size)` steps per epoch.

    The last batch of an epoch is filled up from the start of the epoch's order, so every batch has the same
    shape (which CUDA graphs need). Under DDP the plan is made for the global batch (`batch_size` x `world`)
    and rank `rank` takes its own `batch_size` slots of each: together the ranks see what one process with
    the global batch would.
    """

    def __init__(
        self,
        cache: PairCache,
        cfg: TrainConfig,
        device: torch.device,
        channels_last: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.cache, self.device, self.channels_last = cache, device, channels_last
        self.batch_size, self.seed = cfg.batch_size, cfg.seed
        self.rank, self.global_batch = rank, cfg.batch_size * world  # DDP: this rank's slots of each global batch
        self.flip, self.shuffle = not cfg.no_flip, not cfg.serial_batches
        self.crop = crop_size_for(cfg, cache)
        self.steps_per_epoch = -(-len(cache.keys) // self.global_batch)
        home = cache.inputs.device
        self._rows = torch.arange(self.crop[1], device=home)
        self._cols = torch.arange(self.crop[0], device=home)
        self._in_channels = torch.arange(cache.inputs.shape[1], device=home)
        self._out_channels = torch.arange(cache.targets.shape[1], device=home)

    def plan(self, epoch: int) -> EpochPlan:
        """The order, crop offsets and flips of `epoch` (0-based): a pure function of (seed, epoch)."""
        gen = epoch_generator(self.seed, epoch)
        count = len(self.cache.keys)
        order = torch.randperm(count, generator=gen) if self.shuffle else torch.arange(count)
        index = order[torch.arange(self.steps_per_epoch * self.global_batch) % count]
        return crop_plan(index, self.cache.sizes, self.crop, self.flip, gen, self.cache.inputs.device)

    def batch(self, plan: EpochPlan, step_in_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) float batches in [-1, 1] on the training device: crop i of `plan` (this rank's part)."""
        slots = _rank_slots(step_in_epoch, self.global_batch, self.rank, self.batch_size)
        index, rows, cols = _crop_indices(plan, slots, self._rows, self._cols)
        inputs = _gather(self.cache.inputs, self._in_channels, index, rows, cols)
        targets = _gather(self.cache.targets, self._out_channels, index, rows, cols)
        codings = self.cache.codings
        return (
            _finish(inputs, codings.input, self.device, self.channels_last),
            _finish(targets, codings.output, self.device, self.channels_last),
        )


def _rank_slots(step_in_epoch: int, global_batch: int, rank: int, batch_size: int) -> slice:
    start = step_in_epoch * global_batch + rank * batch_size
    return slice(start, start + batch_size)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The host RNG of one epoch's plan: a pure function of (seed, epoch)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def crop_plan(
    index: torch.Tensor,
    sizes: torch.Tensor,
    crop: tuple[int, int],
    flip_on: bool,
    gen: torch.Generator,
    home: torch.device,
) -> EpochPlan:
    """Random crop offsets and flips for the images `index` (sizes (h, w)), moved to the cache device `home`."""
    sizes = sizes[index]
    room_y, room_x = sizes[:, 0] - crop[1], sizes[:, 1] - crop[0]
    y0 = (torch.rand(len(index), generator=gen) * (room_y + 1)).long().clamp_max(room_y)
    x0 = (torch.rand(len(index), generator=gen) * (room_x + 1)).long().clamp_max(room_x)
    flip = (torch.rand(len(index), generator=gen) < 0.5) & flip_on

    def move(t: torch.Tensor) -> torch.Tensor:  # pinned + non_blocking: no host sync
        return t.pin_memory().to(home, non_blocking=True) if home.type == "cuda" else t

    return EpochPlan(move(index), move(x0), move(y0), move(flip))


def _crop_indices(plan: EpochPlan, slots: slice, rows: torch.Tensor, cols: torch.Tensor):
    index, rows = plan.index[slots], plan.y0[slots, None] + rows
    cols = plan.x0[slots, None] + cols
    cols = torch.where(plan.flip[slots, None], cols.flip(1), cols)
    return index, rows, cols


def _gather(images, channels, index, rows, cols) -> torch.Tensor:
    return images[
        index[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
    ]


def _finish(images: torch.Tensor, coding: Coding, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A gathered batch on the training device, in [-1, 1]. A batch gathered from a host cache goes to the GPU
    through pinned memory (the copy overlaps the previous step); one gathered on the GPU is already there."""
    if images.device.type == "cpu" and device.type == "cuda":
        images = images.pin_memory().to(device, non_blocking=True)
    images = coding.encode(images)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


# ---- unaligned data (CycleGAN) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnalignedFiles:
    """The images of `<root>/<phase>A` and `<root>/<phase>B`, each sorted by key; the domains need not match.
    With `--direction BtoA` the folders are swapped (as the reference does): A is always the input domain."""

    a_keys: list[str]
    a: list[Path]
    b_keys: list[str]
    b: list[Path]


def find_unaligned(root: Path | None, phase: str, direction: str = "AtoB", max_size: int | None = None):
    """The two domains of `<root>/<phase>A|B`; a missing or empty folder is a UsageError."""
    if root is None:
        raise UsageError("--dataroot is required: the dataset folder that holds trainA/, trainB/, testA/, testB/")
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--dataroot {root}: folder not found")
    domains = []
    for side in ("A", "B"):
        folder = root / f"{phase}{side}"
        if not folder.is_dir():
            raise UsageError(f"--dataroot {root}: no {folder.name}/ (the unaligned layout has {phase}A/, {phase}B/)")
        images = list_images(folder)
        if not images:
            raise UsageError(f"--dataroot {root}: no images in {folder}")
        keys = sorted(images)[:max_size]
        domains.append((keys, [images[k] for k in keys]))
    if direction == "BtoA":
        domains.reverse()
    (a_keys, a), (b_keys, b) = domains
    return UnalignedFiles(a_keys, a, b_keys, b)


@dataclass
class ImageCache:
    """One domain's images at load size, (N, C, H, W) in their stored dtype, padded to the largest; `sizes` (h, w)
    on the host; `coding` maps the stored values to [-1, 1]."""

    keys: list[str]
    images: torch.Tensor
    sizes: torch.Tensor
    coding: Coding

    @classmethod
    def load(
        cls,
        keys: list[str],
        paths: list[Path],
        channels: int,
        flag: str,
        cfg: TrainConfig,
        depth: tuple[float, float] | None,
    ) -> ImageCache:
        """One domain's images; `depth` is the dataset's recorded depth range (see `dataset_depth`)."""
        first = read_image(paths[0], channels, flag)
        coding = coding_for(first.dtype.name, cfg.value_range, depth)

        def one(i: int) -> np.ndarray:
            image = first if i == 0 else read_image(paths[i], channels, flag)
            coding.check(image, paths[i])
            return load_resize(image, cfg, coding)

        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            arrays = list(pool.map(one, range(len(paths))))
        images, sizes = stack(arrays, coding)
        return cls(keys, images, sizes, coding)


@dataclass
class UnalignedCache:
    """Both domains of an unaligned dataset (the input domain A with input_nc channels, B with output_nc)."""

    a: ImageCache
    b: ImageCache

    @classmethod
    def load(cls, files: UnalignedFiles, cfg: TrainConfig) -> UnalignedCache:
        depth = dataset_depth(cfg.dataroot)  # the manifest is read once for both domains
        return cls(
            ImageCache.load(files.a_keys, files.a, cfg.input_nc, "--input_nc", cfg, depth),
            ImageCache.load(files.b_keys, files.b, cfg.output_nc, "--output_nc", cfg, depth),
        )

    @property
    def codings(self) -> Codings:
        return Codings(input=self.a.coding, output=self.b.coding)

    @property
    def nbytes(self) -> int:
        return self.a.images.nbytes + self.b.images.nbytes

    @property
    def device(self) -> torch.device:
        return self.a.images.device

    def place(self, device: torch.device) -> UnalignedCache:
        """On the GPU when it fits comfortably, else in pinned host memory (CPU training: left as is)."""
        if device.type != "cuda":
            return self
        on_gpu = self.nbytes <= CACHE_GPU_FRACTION * torch.cuda.mem_get_info(device)[0]

        def move(c: ImageCache) -> ImageCache:
            return ImageCache(c.keys, c.images.to(device) if on_gpu else c.images.pin_memory(), c.sizes, c.coding)

        return UnalignedCache(move(self.a), move(self.b))


class UnalignedBatches:
    """Random crops of both domains, `batch_size` of each per step, `ceil(max(N_A, N_B) / batch_size)` steps per
    epoch (as the reference's unaligned dataset). Each epoch shuffles A (cycling the smaller domain) and draws a
    random B for every A, as the reference does; `--serial_batches` takes both in order (A i with B i mod N_B).
    Crops and flips are drawn independently per domain. The plan is a pure function of (seed, epoch); under
    DDP it is made for the global batch and each rank takes its own slots, as in TrainBatches."""

    def __init__(
        self,
        cache: UnalignedCache,
        cfg: TrainConfig,
        device: torch.device,
        channels_last: bool = False,
        rank: int = 0,
        world: int = 1,
    ):
        self.cache, self.device, self.channels_last = cache, device, channels_last
        self.batch_size, self.seed = cfg.batch_size, cfg.seed
        self.rank, self.global_batch = rank, cfg.batch_size * world  # DDP: this rank's slots of each global batch
        self.flip, self.shuffle = not cfg.no_flip, not cfg.serial_batches
        self.crop = crop_size_for(cfg, cache.a)
        crop_b = crop_size_for(cfg, cache.b)
        if crop_b != self.crop:
            raise UsageError(
                f"--preprocess {cfg.preprocess}: A images load at {self.crop[0]}x{self.crop[1]} but B images at"
                f" {crop_b[0]}x{crop_b[1]}; use resize_and_crop or crop"
            )
        self.count = max(len(cache.a.keys), len(cache.b.keys))
        self.steps_per_epoch = -(-self.count // self.global_batch)
        home = cache.device
        self._rows = torch.arange(self.crop[1], device=home)
        self._cols = torch.arange(self.crop[0], device=home)
        self._a_channels = torch.arange(cache.a.images.shape[1], device=home)
        self._b_channels = torch.arange(cache.b.images.shape[1], device=home)

    def plan(self, epoch: int) -> tuple[EpochPlan, EpochPlan]:
        """(plan of A, plan of B) for `epoch` (0-based)."""
        gen = epoch_generator(self.seed, epoch)
        size_a, size_b = len(self.cache.a.keys), len(self.cache.b.keys)
        slots = self.steps_per_epoch * self.global_batch
        order = torch.randperm(self.count, generator=gen) if self.shuffle else torch.arange(self.count)
        order = order[torch.arange(slots) % self.count]
        index_b = torch.randint(size_b, (slots,), generator=gen) if self.shuffle else order % size_b
        home = self.cache.device
        plan_a = crop_plan(order % size_a, self.cache.a.sizes, self.crop, self.flip, gen, home)
        return plan_a, crop_plan(index_b, self.cache.b.sizes, self.crop, self.flip, gen, home)

    def batch(self, plan: tuple[EpochPlan, EpochPlan], step_in_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(real A, real B) float batches in [-1, 1] on the training device (this rank's part)."""
        slots = _rank_slots(step_in_epoch, self.global_batch, self.rank, self.batch_size)
        out = []
        for one, cache, channels in (
            (plan[0], self.cache.a, self._a_channels),
            (plan[1], self.cache.b, self._b_channels),
        ):
            index, rows, cols = _crop_indices(one, slots, self._rows, self._cols)
            images = _gather(cache.images, channels, index, rows, cols)
            out.append(_finish(images, cache.coding, self.device, self.channels_last))
        return out[0], out[1]
