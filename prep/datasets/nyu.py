"""`pairforge prep nyu`: the NYU Depth v2 labeled set -> RGB|depth or raw|filled depth pairs.

`nyu_depth_v2_labeled.mat` is MATLAB v7.3, i.e. HDF5, read with h5py one frame at a time (each worker process
opens the file itself). MATLAB stores arrays column-major, so h5py shows them with their axes reversed:
`images` (N, 3, 640, 480) uint8 and `depths`/`rawDepths` (N, 640, 480) float32 metres (0 = no measurement in
rawDepths); transposing a frame gives MATLAB's 480x640 view. Frames are numbered from 1 as in MATLAB and in
`splits.mat`; keys are that number (`0001`), sources name a frame as `nyu_depth_v2_labeled.mat#1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from pairforge.errors import UsageError
from pairforge.extras import require
from pairforge.invocation import command_line
from pairforge.prep.datasets.kitti import (
    CropOpt,
    CropsPerImage,
    CropWidth,
    DepthLayoutOpt,
    DepthResizeOpt,
    EncodingOpt,
    FlipOpt,
    MaxDepthOpt,
    RgbFormatOpt,
    SizeOpt,
    TaskOpt,
    ValidityOpt,
    depth_maker,
    depth_options,
    depth_outputs,
)
from pairforge.prep.imageio import ImageRejected
from pairforge.prep.options import (
    DryRun,
    Executor,
    JsonOut,
    Overwrite,
    Quality,
    Quiet,
    RayAddress,
    Reporting,
    Seed,
    ShardSize,
    Strict,
    Verify,
    Workers,
    execute,
    run_settings,
    source_path,
)
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import Pair, Rejection, SplitSpec, assign_splits
from pairforge.prep.runner import Job
from pairforge.prep.transforms.depth import Crops, DepthCoding, DepthPairMaker

MAT_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
DOWNLOAD = "https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html"
NYU_SCALE = 1000.0  # gray16 in millimetres
DATASETS = {"rgb2depth": ("images", "depths"), "sparse2dense": ("rawDepths", "depths")}

_handle: tuple | None = None  # (file identity, open h5py.File) of this process


def locate(src: Path) -> Path:
    """The labeled .mat: SRC itself, or SRC/nyu_depth_v2_labeled.mat."""
    path = source_path(src)
    mat = path / MAT_NAME if path.is_dir() else path
    if not mat.is_file():
        raise UsageError(f"{mat} does not exist: expected {MAT_NAME} (download: {DOWNLOAD})")
    return mat


def frame_count(mat: Path, names: tuple[str, str]) -> int:
    """The number of frames, after checking the file holds the labeled set's arrays in their stored shapes."""
    import h5py

    try:
        handle = h5py.File(mat, "r")
    except OSError:
        raise UsageError(
            f"{mat} is not a MATLAB v7.3 (HDF5) file: expected {MAT_NAME} (download: {DOWNLOAD})"
        ) from None
    with handle:
        shapes = {}
        for name in names:
            if not isinstance(handle.get(name), h5py.Dataset):
                raise UsageError(f"{mat} has no {name!r} array: is it {MAT_NAME}? (download: {DOWNLOAD})")
            shapes[name] = handle[name].shape
    counts = {shape[0] for shape in shapes.values()}
    planes = {shape[-2:] for shape in shapes.values()}
    colours_ok = all(len(s) == 4 and s[1] == 3 if n == "images" else len(s) == 3 for n, s in shapes.items())
    if len(counts) != 1 or len(planes) != 1 or not colours_ok:
        found = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise UsageError(f"{mat}: expected images (N, 3, W, H) and depths (N, W, H) as h5py shows them, found {found}")
    return counts.pop()


def _open(mat: Path):
    """This process's open handle on `mat`, reopened when the file changes; one file open at a time."""
    import h5py

    global _handle
    stat = mat.stat()
    identity = (str(mat), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if _handle is None or _handle[0] != identity:
        if _handle is not None:
            _handle[1].close()
        _handle = (identity, h5py.File(mat, "r"))
    return _handle[1]


def read_frame(mat: Path, name: str, number: int) -> np.ndarray:
    """Frame `number` (1-based) of array `name` as MATLAB shows it: HxWx3 uint8 RGB, or HxW float32 metres."""
    try:
        stored = _open(mat)[name][number - 1]  # (3, W, H) or (W, H): MATLAB's axes reversed
    except OSError as exc:
        raise ImageRejected(f"unreadable frame: {exc}", "unreadable frame") from None
    frame = np.ascontiguousarray(stored.T)
    return frame if name == "images" else frame.astype(np.float32)


def official_splits(path: Path, frames: int) -> dict[int, str]:
    """Frame number -> train/test from splits.mat (`trainNdxs`, `testNdxs`, 1-based)."""
    from scipy.io import loadmat

    try:
        data = loadmat(path)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise UsageError(f"{path}: not a readable splits.mat ({exc})") from None
    result: dict[int, str] = {}
    for name, split in (("trainNdxs", "train"), ("testNdxs", "test")):
        if name not in data:
            raise UsageError(f"{path} has no {name}: expected the official NYU splits.mat")
        for number in np.asarray(data[name]).ravel().astype(int).tolist():
            if not 1 <= number <= frames:
                raise UsageError(f"{path}: {name} names frame {number}, but {MAT_NAME} has {frames} frames")
            if number in result:
                raise UsageError(f"{path}: frame {number} is in both trainNdxs and testNdxs")
            result[number] = split
    return result


def plan(
    mat: Path, frames: int, names: tuple[str, str], splits: dict[int, str | None], why_not: str, crops: Crops
) -> tuple[list[Pair], list[Rejection]]:
    """One pair per crop window of every frame with a split; frames without one are rejected with `why_not`."""
    pairs, rejected = [], []
    for number in range(1, frames + 1):
        sources = {name: f"{mat.name}#{number}" for name in names}
        split = splits.get(number)
        if split is None:
            rejected.append(Rejection(sources, why_not))
        else:
            pairs += [Pair(crops.key(f"{number:04d}", i), split, sources) for i in range(crops.count)]
    return pairs, rejected


def choose_splits(
    mat: Path, frames: int, splits: Path | None, split: str | None, seed: int
) -> tuple[dict[int, str | None], str, dict]:
    """(frame -> split, reason for frames without one, manifest options): the official splits.mat (given, or
    found beside the .mat when --split is not given), else --split ratios or counts by key hash."""
    if splits is not None and split is not None:
        raise UsageError("give --splits (the official split) or --split, not both")
    if splits is None and split is None and (mat.parent / SPLITS_NAME).is_file():
        splits = mat.parent / SPLITS_NAME
    if splits is not None:
        path = source_path(splits)
        if not path.is_file():
            raise UsageError(f"{path} does not exist: expected the official {SPLITS_NAME} (download: {DOWNLOAD})")
        return official_splits(path, frames), f"not in {path.name}", {"splits": str(path), "split": None}
    spec = SplitSpec.parse(split or "0.8,0.1,0.1")
    by_key = assign_splits([f"{n:04d}" for n in range(1, frames + 1)], spec, seed)
    chosen = {n: by_key[f"{n:04d}"] for n in range(1, frames + 1)}
    return chosen, f"beyond --split counts ({spec})", {"splits": None, "split": str(spec)}


@dataclass(frozen=True)
class NyuBuilder:
    """Reads frame A (images or rawDepths) and B (depths) from the .mat, then crops and encodes them."""

    mat: Path
    names: tuple[str, str]
    maker: DepthPairMaker

    def __call__(self, pair: Pair):
        number = int(self.maker.crops.frame_of(pair.key)[0])
        a, b = (read_frame(self.mat, name, number) for name in self.names)
        return self.maker.make(pair.key, a, b)


def nyu(
    src: Annotated[Path, typer.Argument(help=f"{MAT_NAME}, or the folder holding it (and {SPLITS_NAME}).")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    task: TaskOpt = "rgb2depth",
    splits: Annotated[
        Path | None,
        typer.Option(help=f"Official 795/654 train/test {SPLITS_NAME} (default: the one beside the .mat, if any)."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="Without splits.mat: train,val,test as ratios or counts (default 0.8,0.1,0.1)."),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(min=0, help="sparse2dense: keep only N random measured pixels of rawDepths per pair (0 = all)."),
    ] = 0,
    crop: CropOpt = "center",
    crops_per_image: CropsPerImage = 1,
    crop_width: CropWidth = None,
    flip: FlipOpt = False,
    size: SizeOpt = "256",
    depth_encoding: EncodingOpt = "color",
    max_depth: MaxDepthOpt = 10.0,
    depth_resize: DepthResizeOpt = "masked",
    validity_mask: ValidityOpt = False,
    layout: DepthLayoutOpt = None,
    shard_size: ShardSize = "1GB",
    seed: Seed = 0,
    format_: RgbFormatOpt = None,
    quality: Quality = 95,
    workers: Workers = 0,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    dry_run: DryRun = False,
    overwrite: Overwrite = False,
    verify: Verify = False,
    strict: Strict = False,
    quiet: Quiet = False,
    json_: JsonOut = False,
) -> None:
    """NYU Depth v2 labeled set -> RGB|depth or raw|filled depth pairs, read frame by frame from the .mat.

    A = the RGB frame (rgb2depth) or rawDepths with holes (sparse2dense), B = the filled depths; the official
    795/654 train/test split from splits.mat when present, else --split.

    Examples:

      pairforge prep nyu ~/data/nyu datasets/nyu_depth --size 256

      pairforge prep nyu ~/data/nyu/nyu_depth_v2_labeled.mat datasets/nyu_s2d --task sparse2dense --samples 500
    """
    require("nyu", "pairforge prep nyu")
    if task not in DATASETS:
        raise UsageError(f"--task {task!r}: choose from {', '.join(DATASETS)}")
    if samples and task != "sparse2dense":
        raise UsageError("--samples picks sparse inputs from rawDepths; it needs --task sparse2dense")
    coding = DepthCoding(depth_encoding, max_depth, NYU_SCALE)
    maker = depth_maker(
        crop, crops_per_image, crop_width, flip, size, coding, depth_resize, validity_mask, seed, samples
    )
    layouts, formats = depth_outputs(layout, maker, task == "sparse2dense", format_, quality, shard_size)
    mat = locate(src)
    names = DATASETS[task]
    frames = frame_count(mat, names)
    by_frame, why_not, split_options = choose_splits(mat, frames, splits, split, seed)
    pairs, rejected = plan(mat, frames, names, by_frame, why_not, maker.crops)
    options = {"task": task, **split_options, "samples": samples, **depth_options(maker)}
    job = Job(
        out=out,
        sources={name: mat.parent for name in names},
        pairs=PairTable.of(pairs, rejected),
        builder=NyuBuilder(mat, names, maker),
        layouts=layouts,
        formats=formats,
        options={**options, "format": formats.a.ext, "quality": quality},
        command=command_line(),
    )
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def register(app: typer.Typer) -> None:
    app.command(help=nyu.__doc__)(nyu)
