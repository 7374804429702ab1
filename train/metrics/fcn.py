"""The FCN-score (pix2pix paper, Table 1): segment images with a pre-trained network and compare the
prediction with the labels the images were made from, through one confusion matrix kept on the device.

Protocol (recorded in metrics.json):
- `eval_size` N or WxH: images are resized to that size (if they differ) with `resize_filter`, labels with
  NEAREST (never interpolated); `native`: images are upsampled to each label's resolution with `resize_filter`
  (bilinear is what the original script's `scipy.misc.imresize` did), labels stay as they are.
- Labels: Cityscapes gtFine labelIds mapped to the 19 trainIds by `cityscapesscripts` (255 = ignore).
- Input: pixels / 255 * `scale`, channels in `channel_order`, then (x - mean) / std.
Reading and resizing run in DataLoader workers, in batches; the network and the matrix run on the device.
`tile` segments native images in tiles of that size with `halo` pixels of context on each side; the result
equals the whole-image one when the halo covers the network's receptive field (and tiles are multiples of
its output stride). With a halo, running out of memory switches to tiles by itself (`predict_fitting`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress
from torch.utils.data import DataLoader, Dataset

from pairforge.errors import PairforgeError, UsageError
from pairforge.resources import is_out_of_memory
from pairforge.train.metrics.confusion import IGNORE, Confusion, scores
from pairforge.train.metrics.inputs import Sample
from pairforge.train.metrics.segmenters import Segmenter

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@cache
def cityscapes_lut() -> np.ndarray:
    """256-entry uint8 table labelId -> trainId from cityscapesscripts (unknown and ignored ids -> 255)."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError:
        raise UsageError(
            "--seg-classes cityscapes19 needs cityscapesscripts: pip install 'pairforge[cityscapes]'"
        ) from None
    table = np.full(256, IGNORE, np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < IGNORE:
            table[label.id] = label.trainId
    return table


def class_names(classes: str) -> list[str]:
    from cityscapesscripts.helpers.labels import trainId2label

    return [trainId2label[i].name for i in range(19)]


@dataclass(frozen=True)
class FcnProtocol:
    """Everything that changes the numbers."""

    eval_size: tuple[int, int] | None  # (width, height), or None for native
    resize_filter: str = "bilinear"
    classes: str = "cityscapes19"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: float = 1.0
    channel_order: str = "RGB"
    real: bool = False

    def record(self) -> dict:
        record = asdict(self) | {"label_resize": "nearest (PIL)", "image_resize": f"{self.resize_filter} (PIL)"}
        record["eval_size"] = "native" if self.eval_size is None else "x".join(map(str, self.eval_size))
        return record


class FcnDataset(Dataset):
    """(image uint8 HxWx3, trainId label uint8 HxW) at the protocol's size, one sample at a time."""

    def __init__(self, samples: list[Sample], protocol: FcnProtocol) -> None:
        self.samples, self.protocol = samples, protocol

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample, p = self.samples[i], self.protocol
        path = sample.real if p.real else sample.fake
        image = _read(path, "RGB")
        label = read_label(sample.label)
        size = p.eval_size or label.size
        if image.size != size:
            image = image.resize(size, FILTERS[p.resize_filter])
        if label.size != size:
            label = label.resize(size, Image.Resampling.NEAREST)
        return torch.from_numpy(np.array(image)), torch.from_numpy(cityscapes_lut()[np.array(label)])


def _read(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except (OSError, Image.DecompressionBombError) as exc:
        raise PairforgeError(f"{path}: cannot read image ({exc})") from None


def read_label(path: Path) -> Image.Image:
    """A gtFine labelIds PNG (8-bit, one channel), never converted or interpolated."""
    with Image.open(path) as img:
        if img.mode not in ("L", "P"):
            raise PairforgeError(f"{path}: not an 8-bit labelIds map (mode {img.mode}); expected *_gtFine_labelIds.png")
        img.load()
        return img if img.mode == "L" else Image.fromarray(np.array(img))


def _same_size(items: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Collate: stack runs of consecutive samples of the same size (native labels may differ in size)."""
    groups: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
    for item in items:
        if groups and groups[-1][0][0].shape == item[0].shape:
            groups[-1].append(item)
        else:
            groups.append([item])
    return [(torch.stack([i for i, _ in g]), torch.stack([lab for _, lab in g])) for g in groups]


def normalise(images: torch.Tensor, protocol: FcnProtocol) -> torch.Tensor:
    """uint8 NxHxWx3 -> float NCHW as the segmenter expects it."""
    x = images.permute(0, 3, 1, 2).float() * (protocol.scale / 255.0)
    if protocol.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(protocol.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(protocol.std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def predict(
    seg: Segmenter, x: torch.Tensor, tile: int | None = None, halo: int = 0, classes: int | None = None
) -> torch.Tensor:
    """Per-pixel argmax class (N x H x W) of the segmenter's scores (`classes` of them, when given), whole or in
    tiles with `halo` context."""
    height, width = x.shape[2:]
    if not tile or (tile >= height and tile >= width):
        return _argmax(seg(x), x, classes)
    pred = torch.empty(x.shape[0], height, width, dtype=torch.long, device=x.device)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(height, y0 + tile), min(width, x0 + tile)
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            window = x[:, :, ya : min(height, y1 + halo), xa : min(width, x1 + halo)]
            pred[:, y0:y1, x0:x1] = _argmax(seg(window), window, classes)[:, y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return pred


MIN_TILE, TILE_STEP = 64, 32
"""Out-of-memory tiling halves the tile (a multiple of TILE_STEP, FCN-8s's output stride) down to MIN_TILE."""


def predict_fitting(
    seg: Segmenter, x: torch.Tensor, tile: int | None, halo: int, classes: int | None
) -> tuple[torch.Tensor, int | None]:
    """`predict`, and when memory runs short (GPU or host) with a `halo` given, again in tiles half the size
    (the same result: the halo covers the receptive field); returns the prediction and the tile that fitted.
    Without a halo, tiling could change the result, so running short is a one-line error instead."""
    while True:
        try:
            return predict(seg, x, tile, halo, classes), tile
        except Exception as exc:  # TorchScript and onnxruntime report running out of memory in their own errors
            if not is_out_of_memory(exc):
                raise
            side = (tile or max(x.shape[2:])) // 2 // TILE_STEP * TILE_STEP
            if not halo or side < MIN_TILE:
                raise PairforgeError(
                    f"out of memory segmenting {x.shape[0]} x {x.shape[2]}x{x.shape[3]}"
                    + (f" in tiles of {tile}" if tile else "")
                    + ": lower --batch-size, or give --seg-halo covering the network's receptive field so that"
                    " pairforge tiles the images (--seg-tile N to choose the tile)"
                ) from None
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            tile = side


def _argmax(scores_: torch.Tensor, x: torch.Tensor, classes: int | None) -> torch.Tensor:
    wrong_classes = classes is not None and scores_.dim() == 4 and scores_.shape[1] != classes
    if scores_.dim() != 4 or scores_.shape[2:] != x.shape[2:] or wrong_classes:
        expected = f"N x {classes or 'classes'} x {x.shape[2]} x {x.shape[3]}"
        raise PairforgeError(f"--seg-model: expected {expected} scores, got {tuple(scores_.shape)}")
    return scores_.argmax(1)


def batches(samples: list[Sample], protocol: FcnProtocol, batch_size: int, workers: int) -> Iterator:
    """(images, labels) uint8 batches of one size, read and resized by `workers` processes."""
    loader = DataLoader(
        FcnDataset(samples, protocol), batch_size=batch_size, num_workers=workers, collate_fn=_same_size
    )
    try:
        for groups in loader:
            yield from groups
    except PairforgeError as exc:  # from a worker: keep the original one-line message, not the worker traceback
        raise PairforgeError(
            str(exc).strip().splitlines()[-1].removeprefix("pairforge.errors.PairforgeError: ")
        ) from None


def fcn_score(
    samples: list[Sample],
    seg: Segmenter,
    protocol: FcnProtocol,
    device: torch.device,
    batch_size: int = 1,
    workers: int = 0,
    tile: int | None = None,
    halo: int = 0,
    bf16: bool = False,
    progress: Progress | None = None,
) -> dict:
    """pixel_acc, class_acc, class_iou, the per-class table and the confusion matrix of `samples`."""
    unlabeled = [s.key for s in samples if s.label is None]
    if unlabeled:
        raise UsageError(
            f"FCN-score: no gtFine labelIds for {unlabeled[0]!r} ({len(unlabeled)} of {len(samples)} images);"
            " a run needs a dataset made by `pairforge prep cityscapes`, folders need --labels DIR"
        )
    missing = [s.label for s in samples if not s.label.is_file()]
    if missing:
        raise UsageError(f"{missing[0]}: label file not found ({len(missing)} of {len(samples)} missing)")
    names = class_names(protocol.classes)
    confusion = Confusion(len(names), device)
    task = progress.add_task("fcn-score", total=len(samples), rate="") if progress else None
    for images, labels in batches(samples, protocol, batch_size, workers):
        x = normalise(images.to(device, non_blocking=True), protocol)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            pred, tile = predict_fitting(seg, x, tile, halo, len(names))  # a tile that fitted is kept
        confusion.update(pred, labels.to(device, non_blocking=True))
        if progress:
            progress.advance(task, images.shape[0])
    matrix = confusion.matrix()
    result = scores(matrix)
    table = [
        {"class": n, "acc": a, "iou": i}
        for n, a, i in zip(names, result.pop("per_class_acc"), result.pop("per_class_iou"), strict=True)
    ]
    return result | {"per_class": table, "confusion": matrix.tolist(), "count": len(samples), "tile": tile}
