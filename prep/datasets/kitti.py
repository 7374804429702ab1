"""`pairforge prep kitti`: KITTI depth completion -> RGB|depth or sparse|dense depth pairs, in full-height crops.

Also holds the crop, encoding and layout options that every depth preparer shares (`pairforge prep nyu` uses them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from pairforge.errors import UsageError
from pairforge.invocation import command_line
from pairforge.parsing import parse_size
from pairforge.prep.imageio import ImageFormat, ImageRejected, open_image, read_rgb
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
    formats_from,
    layouts_from,
    raw_source,
    run_settings,
    source_path,
)
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import Pair, Rejection, safe_key
from pairforge.prep.runner import Job
from pairforge.prep.transforms.depth import (
    CROP_MODES,
    DEPTH_RESIZES,
    ENCODINGS,
    Crops,
    DepthCoding,
    DepthPairMaker,
    SplitWithValidity,
)
from pairforge.prep.writers import Formats, Layout, SplitLayout

DOWNLOAD = "https://www.cvlibs.net/datasets/kitti/eval_depth.php?benchmark=depth_completion"
RAW_DOWNLOAD = "https://www.cvlibs.net/datasets/kitti/raw_data.php"
ANNOTATED, VELODYNE = "data_depth_annotated", "data_depth_velodyne"
GROUNDTRUTH, VELODYNE_RAW, RGB = "groundtruth", "velodyne_raw", "rgb"
KITTI_SCALE = 256.0  # KITTI's depth PNGs: metres = value / 256
KITTI_SPLITS = ("train", "val")
CAMERAS = {"2": ("image_02",), "3": ("image_03",), "both": ("image_02", "image_03")}
TASKS = ("rgb2depth", "sparse2dense")
DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I")  # Pillow's modes for a 16-bit grayscale PNG

# Options shared by the depth preparers.
TaskOpt = Annotated[
    str,
    typer.Option(help="rgb2depth: A = RGB photo, B = depth. sparse2dense: A = sparse depth, B = denser depth."),
]
CropOpt = Annotated[str, typer.Option(help=f"Full-height windows: {'|'.join(CROP_MODES)} (none = whole frame).")]
CropsPerImage = Annotated[
    int, typer.Option(min=1, help="Windows per frame (more than 1 needs --crop random); keys end _c0, _c1, ...")
]
CropWidth = Annotated[
    int | None, typer.Option(min=1, help="Window width in source pixels (default: the frame height, a square).")
]
FlipOpt = Annotated[bool, typer.Option("--flip", help="Mirror each window with probability 1/2, seeded per frame.")]
SizeOpt = Annotated[str, typer.Option(help="Output size N or WxH of each window.")]
EncodingOpt = Annotated[
    str,
    typer.Option(
        help="color: 8-bit plasma colormap, linear to --max-depth, black = no measurement (loads in any pix2pix "
        "trainer, ab layout). gray8: 8-bit gray 1..255, 0 = no measurement. gray16: exact metres as 16-bit PNG "
        "(KITTI x256, NYU millimetres), 0 = no measurement; needs the split layout."
    ),
]
MaxDepthOpt = Annotated[float, typer.Option(min=0.001, help="Depths beyond this many metres are clipped to it.")]
DepthResizeOpt = Annotated[
    str,
    typer.Option(help="masked: average valid pixels only (holes never blend in); nearest: pick one pixel."),
]
ValidityOpt = Annotated[
    bool,
    typer.Option(
        "--validity-mask", help="Also write <split>/B_valid/<key>.png (255 = measured, 0 = not) in the split layout."
    ),
]
DepthLayoutOpt = Annotated[
    str | None,
    typer.Option(help="ab, split or unaligned, comma-separated (default: ab; split for gray16 or --validity-mask)."),
]
RgbFormatOpt = Annotated[
    str | None, typer.Option("--format", help="png|jpg for the RGB side of a split layout (default png); depth is PNG.")
]


def depth_maker(
    crop: str,
    crops_per_image: int,
    crop_width: int | None,
    flip: bool,
    size: str,
    coding: DepthCoding,
    depth_resize: str,
    validity_mask: bool,
    seed: int,
    samples: int = 0,
) -> DepthPairMaker:
    """Check the shared depth options and turn them into a pair maker."""
    for flag, value, allowed in (
        ("--crop", crop, CROP_MODES),
        ("--depth-encoding", coding.encoding, ENCODINGS),
        ("--depth-resize", depth_resize, DEPTH_RESIZES),
    ):
        if value not in allowed:
            raise UsageError(f"{flag} {value!r}: choose from {', '.join(allowed)}")
    if crops_per_image > 1 and crop != "random":
        raise UsageError(f"--crops-per-image {crops_per_image} needs --crop random (other windows would repeat)")
    if crop_width is not None and crop == "none":
        raise UsageError("--crop-width sets the window of --crop random or center; --crop none keeps the whole frame")
    if coding.encoding == "gray16" and coding.max_depth * coding.scale > 65535:
        most = 65535 / coding.scale
        raise UsageError(f"--max-depth {coding.max_depth:g} does not fit gray16 (x{coding.scale:g}): at most {most:g}")
    crops = Crops(crop, crops_per_image, crop_width, flip)
    return DepthPairMaker(crops, parse_size(size), coding, depth_resize, seed, samples, validity_mask)


def depth_outputs(
    layout: str | None,
    maker: DepthPairMaker,
    a_is_depth: bool,
    format_: str | None,
    quality: int,
    shard_size: str = "1GB",
) -> tuple[list[Layout], Formats]:
    """Layouts and formats for depth pairs: ab only with 8-bit encodings, the validity mask only in split,
    depth always PNG (exact, and colours stay reserved)."""
    eight_bit = maker.coding.eight_bit
    layouts = layouts_from(layout or ("ab" if eight_bit and not maker.validity else "split"), shard_size)
    names = [lay.name for lay in layouts]
    if not eight_bit and "ab" in names:
        raise UsageError("--depth-encoding gray16 writes 16-bit depth, which --layout ab cannot hold; use split")
    if maker.validity:
        if "split" not in names:
            raise UsageError("--validity-mask writes its own image per pair; it needs --layout split")
        layouts = [SplitWithValidity() if isinstance(lay, SplitLayout) else lay for lay in layouts]
    if a_is_depth and format_ == "jpg":
        raise UsageError("--format jpg: both sides are depth, which is always written as PNG")
    formats = formats_from(format_, quality, "png", "png")
    png = ImageFormat("png", quality)
    return layouts, Formats(png if a_is_depth else formats.a, png)


def depth_options(maker: DepthPairMaker) -> dict:
    """The manifest options of the shared depth settings."""
    crops, coding = maker.crops, maker.coding
    return {
        "crop": crops.mode,
        "crops_per_image": crops.count,
        "crop_width": crops.width,
        "flip": crops.flip,
        "size": list(maker.size),
        "depth_encoding": coding.encoding,
        "max_depth": coding.max_depth,
        "depth_scale": coding.scale,
        "depth_resize": maker.depth_resize,
        "validity_mask": maker.validity,
        "seed": maker.seed,
    }


def read_depth(path: Path) -> np.ndarray:
    """A KITTI depth PNG as float32 metres (value / 256, 0 = no measurement); anything but 16-bit gray is refused."""
    img = open_image(path)
    if img.mode not in DEPTH_MODES:
        raise ImageRejected(f"not a 16-bit single-channel depth PNG (mode {img.mode})", "not 16-bit depth")
    return np.asarray(img).astype(np.float32) / KITTI_SCALE


FrameId = tuple[str, str, str]  # (drive, camera, frame)


@dataclass
class FrameIndex:
    """One tree's frames: (drive, camera, frame) -> (split, path relative to the tree's root), and rejections."""

    files: dict[FrameId, tuple[str, str]] = field(default_factory=dict)
    rejected: list[Rejection] = field(default_factory=list)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def depth_folders(root: Path, kind: str, cameras: tuple[str, ...]) -> Iterator[tuple[str, str, str, Path]]:
    """(split, drive, camera, folder) of `root/{train,val}/<drive>/proj_depth/<kind>/<camera>/`."""
    for split in KITTI_SPLITS:
        for drive in _subdirs(root / split):
            for camera in cameras:
                yield split, drive.name, camera, drive / "proj_depth" / kind / camera


def rgb_folders(root: Path, cameras: tuple[str, ...]) -> Iterator[tuple[str, str, str, Path]]:
    """("", drive, camera, folder) of the raw drives `root/<date>/<drive>/<camera>/data/`."""
    for date in _subdirs(root):
        for drive in _subdirs(date):
            for camera in cameras:
                yield "", drive.name, camera, drive / camera / "data"


def index_frames(root: Path, role: str, folders: Iterator[tuple[str, str, str, Path]]) -> FrameIndex:
    index = FrameIndex()
    for split, drive, camera, folder in folders:
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            rel = path.relative_to(root).as_posix()
            frame = (drive, camera, path.stem)
            if path.suffix.lower() != ".png" or not path.is_file():
                index.rejected.append(Rejection({role: rel}, f"not a PNG frame ({path.suffix or 'no extension'})"))
            elif frame in index.files:
                index.rejected.append(Rejection({role: rel}, f"duplicate frame: also {index.files[frame][1]}"))
            else:
                index.files[frame] = (split, rel)
    return index


def pair_frames(a: FrameIndex, b: FrameIndex, a_role: str, crops: Crops) -> tuple[list[Pair], list[Rejection]]:
    """Pairs by (drive, camera, frame), in B's (official) split, one per crop window; one-sided frames are
    rejections, those KITTI leaves unannotated named as such."""
    pairs, rejected = [], [*a.rejected, *b.rejected]
    annotated: dict[tuple[str, str], list[str]] = {}
    for drive, camera, frame in sorted(b.files):
        annotated.setdefault((drive, camera), []).append(frame)
    for frame_id in sorted(a.files.keys() | b.files.keys()):
        if frame_id in a.files and frame_id in b.files:
            split, b_rel = b.files[frame_id]
            sources = {a_role: a.files[frame_id][1], GROUNDTRUTH: b_rel}
            frame_key = safe_key("_".join(frame_id))
            pairs += [Pair(crops.key(frame_key, i), split, sources) for i in range(crops.count)]
        elif frame_id in a.files:
            reason = _unannotated(annotated.get(frame_id[:2], []), frame_id[2])
            rejected.append(Rejection({a_role: a.files[frame_id][1]}, reason))
        else:
            rejected.append(Rejection({GROUNDTRUTH: b.files[frame_id][1]}, f"no matching {a_role} frame"))
    return pairs, rejected


def _unannotated(frames: list[str], frame: str) -> str:
    if not frames:
        return f"no annotated depth: drive and camera not in {ANNOTATED}"
    if frame < frames[0] or frame > frames[-1]:
        return "no annotated depth: KITTI leaves the first and last frames of each drive unannotated"
    return f"no annotated depth: frame missing from {ANNOTATED}"


@dataclass(frozen=True)
class KittiBuilder:
    """Reads A (RGB frame or velodyne_raw depth) and the groundtruth depth of one frame, then crops and encodes."""

    roots: dict[str, Path]
    a_role: str
    maker: DepthPairMaker

    def __call__(self, pair: Pair):
        depth = self._read(pair, GROUNDTRUTH, read_depth)
        a = self._read(pair, self.a_role, read_rgb if self.a_role == RGB else read_depth)
        return self.maker.make(pair.key, a, depth)

    def _read(self, pair: Pair, role: str, reader: Callable[[Path], np.ndarray]) -> np.ndarray:
        """Read one side; a rejection names the side, since the pair has two files."""
        try:
            return reader(self.roots[role] / pair.sources[role])
        except ImageRejected as exc:
            raise ImageRejected(f"{role}: {exc.reason}", exc.kind) from None


def _tree(path: Path, expected: str, download: str) -> Path:
    if not path.is_dir():
        raise UsageError(f"{path} does not exist: expected {expected} (download: {download})")
    return path


def _a_side(task: str, root: Path, rgb_root: Path | None, cameras: tuple[str, ...]) -> tuple[str, Path, FrameIndex]:
    """(role, root, index) of the A side: raw RGB frames for rgb2depth, velodyne_raw depth for sparse2dense."""
    if task == "rgb2depth":
        expected = "raw RGB drives <date>/<drive>/image_0X/data/ (give --rgb-root)"
        rgb = _tree(source_path(rgb_root) if rgb_root else root / "raw", expected, RAW_DOWNLOAD)
        return RGB, rgb, index_frames(rgb, RGB, rgb_folders(rgb, cameras))
    velodyne = _tree(root / VELODYNE, f"{VELODYNE}/{{train,val}}/<drive>/proj_depth/velodyne_raw/", DOWNLOAD)
    return VELODYNE_RAW, velodyne, index_frames(velodyne, VELODYNE_RAW, depth_folders(velodyne, VELODYNE_RAW, cameras))


def kitti(
    src: Annotated[Path, typer.Argument(help=f"KITTI folder holding {ANNOTATED}/ and {VELODYNE}/.")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    task: TaskOpt = "rgb2depth",
    camera: Annotated[str, typer.Option(help="Colour camera: 2 (left), 3 (right) or both.")] = "both",
    rgb_root: Annotated[
        Path | None, typer.Option(help="Raw RGB drives <date>/<drive>/image_0X/data/ (default: SRC/raw).")
    ] = None,
    crop: CropOpt = "random",
    crops_per_image: CropsPerImage = 1,
    crop_width: CropWidth = None,
    flip: FlipOpt = False,
    size: SizeOpt = "256",
    depth_encoding: EncodingOpt = "color",
    max_depth: MaxDepthOpt = 80.0,
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
    """KITTI depth completion -> RGB|depth or sparse|dense depth pairs, in full-height crops.

    A = the RGB frame (rgb2depth) or velodyne_raw (sparse2dense), B = the annotated groundtruth depth; official
    train/val split. RGB frames without annotation (KITTI's first and last of each drive) are rejected, named.

    Examples:

      pairforge prep kitti ~/data/kitti datasets/kitti_depth --crops-per-image 4

      pairforge prep kitti ~/data/kitti datasets/kitti_s2d --task sparse2dense --depth-encoding gray16 --validity-mask
    """
    if task not in TASKS:
        raise UsageError(f"--task {task!r}: choose from {', '.join(TASKS)}")
    if camera not in CAMERAS:
        raise UsageError(f"--camera {camera!r}: choose from {', '.join(CAMERAS)}")
    coding = DepthCoding(depth_encoding, max_depth, KITTI_SCALE)
    maker = depth_maker(crop, crops_per_image, crop_width, flip, size, coding, depth_resize, validity_mask, seed)
    layouts, formats = depth_outputs(layout, maker, task == "sparse2dense", format_, quality, shard_size)
    root = raw_source(src, None, "kitti", f"{ANNOTATED}/ and {VELODYNE}/", DOWNLOAD)
    cameras = CAMERAS[camera]
    gt_root = _tree(root / ANNOTATED, f"{ANNOTATED}/{{train,val}}/<drive>/proj_depth/groundtruth/", DOWNLOAD)
    b_index = index_frames(gt_root, GROUNDTRUTH, depth_folders(gt_root, GROUNDTRUTH, cameras))
    a_role, a_root, a_index = _a_side(task, root, rgb_root, cameras)
    roots = {a_role: a_root, GROUNDTRUTH: gt_root}
    pairs, rejected = pair_frames(a_index, b_index, a_role, maker.crops)
    options = {"task": task, "camera": camera, **depth_options(maker), "format": formats.a.ext, "quality": quality}
    job = Job(
        out=out,
        sources=roots,
        pairs=PairTable.of(pairs, rejected),
        builder=KittiBuilder(roots, a_role, maker),
        layouts=layouts,
        formats=formats,
        options=options,
        command=command_line(),
    )
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def register(app: typer.Typer) -> None:
    app.command(help=kitti.__doc__)(kitti)
