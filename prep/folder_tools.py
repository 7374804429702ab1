"""`pairforge edges` (edges -> photo pairs) and `pairforge rmbg` (background removal) for any folder of photos.

`prep celeba` builds its pairs with the same builder. A is the edge drawing, B the photo (background removed
with `--bg rembg|grabcut`); `--keep-mask` also writes each subject mask as `masks/<split>/<key>.png`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from pairforge.errors import UsageError
from pairforge.extras import require
from pairforge.invocation import command_line
from pairforge.parsing import parse_choices, parse_size
from pairforge.prep.imageio import ImageFormat, read_rgb, sha256_file
from pairforge.prep.options import (
    DryRun,
    Executor,
    FormatOpt,
    JsonOut,
    LayoutOpt,
    Overwrite,
    Quality,
    Quiet,
    RayAddress,
    Reporting,
    Seed,
    ShardSize,
    SplitOpt,
    Strict,
    Verify,
    Workers,
    execute,
    formats_from,
    layouts_from,
    pairing_reuse,
    run_settings,
    source_path,
)
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import KeyRule, Pair, SplitSpec, has_split_folders
from pairforge.prep.runner import Job, default_workers, require_inputs
from pairforge.prep.transforms.background import (
    BG_DEVICES,
    BG_METHODS,
    PORTRAIT,
    RGB,
    Remover,
    close_model,
    composite,
    open_model,
    parse_fill,
    parse_grabcut,
)
from pairforge.prep.transforms.edges import EDGE_STYLES, EdgeSpec, edge_image, parse_canny
from pairforge.prep.transforms.resize import center_crop, resize
from pairforge.prep.writers import Formats, Layout, PairImages

IMAGE = "image"  # the role of the single source of every pair
FLAT = "all"  # the "split" of an rmbg output written flat, when its input had no train/val/test folders
CROPS = ("center", "none")
PNG = ImageFormat("png")

Size = Annotated[str, typer.Option("--size", help="Output size N or WxH.")]
Crop = Annotated[
    str, typer.Option("--crop", help="center: centre crop to the aspect of --size, then resize; none: resize only.")
]
Bg = Annotated[str, typer.Option("--bg", help=f"Background removal: {'|'.join(BG_METHODS)}.")]
BgModel = Annotated[
    str,
    typer.Option(
        "--bg-model", help="rembg model: an .onnx file, or a model name in rembg's folder ($U2NET_HOME). No downloads."
    ),
]
BgDevice = Annotated[str, typer.Option("--bg-device", help=f"onnxruntime device for rembg: {'|'.join(BG_DEVICES)}.")]
AlphaMatting = Annotated[bool, typer.Option("--alpha-matting", help="rembg alpha matting of soft edges (slow).")]
BgFill = Annotated[str, typer.Option("--bg-fill", help="Colour of the removed background: white|black|#RRGGBB.")]
GrabcutRect = Annotated[
    str,
    typer.Option(
        "--grabcut-rect",
        help=f"GrabCut's start: {PORTRAIT} (an aligned head-and-shoulders portrait, face centred, shoulders on the "
        "bottom edge, as CelebA's) or the subject's rectangle L,T,R,B in fractions of the image (outside it is "
        "background).",
    ),
]
Canny = Annotated[
    str, typer.Option("--canny", help="Canny thresholds LOW,HIGH, or auto (from the subject's median intensity).")
]
Blur = Annotated[float, typer.Option("--blur", help="Gaussian blur sigma before Canny (0 = none).", min=0)]
Thickness = Annotated[int, typer.Option("--thickness", help="Edge line thickness in pixels.", min=1)]
EdgeStyle = Annotated[str, typer.Option("--edge-style", help=f"{'|'.join(EDGE_STYLES)}.")]
KeepMask = Annotated[bool, typer.Option("--keep-mask", help="Also write the subject masks: masks/<split>/<key>.png.")]


@dataclass(frozen=True)
class SubjectPair(PairImages):
    """An edges -> photo pair and the subject mask it was made with (None without background removal)."""

    mask: np.ndarray | None = None


@dataclass(frozen=True)
class Cutout:
    """One background-removed image (RGB, or RGBA when transparent) and its mask."""

    image: np.ndarray
    mask: np.ndarray


def _folder(split: str) -> str:
    return "" if split == FLAT else f"{split}/"


class MaskLayout(Layout):
    """`masks/<split>/<key>.png`: the 8-bit subject mask (255 subject, 0 background)."""

    name = "mask"

    def files(self, key, split, images, formats):
        return [(f"masks/{_folder(split)}{key}.png", images.mask if images else None, PNG)]


class ImagesLayout(Layout):
    """`[<split>/]<key>.<ext>`: one image per input, in the input's folder structure (RGBA is written as PNG)."""

    name = "images"

    def files(self, key, split, images, formats):
        payload = images.image if images else None
        if payload is not None and payload.shape[2] == 4:
            _, buf = cv2.imencode(".png", cv2.cvtColor(payload, cv2.COLOR_RGBA2BGRA))
            payload = buf.tobytes()
        return [(f"{_folder(split)}{key}.{formats.a.ext}", payload, formats.a)]


def framed(photo: np.ndarray, size: tuple[int, int], crop: str) -> np.ndarray:
    """The photo cut to the aspect ratio of `size` (`center`) or not (`none`), shrunk to `size` when larger:
    background removal runs at this resolution, never above the photo's own."""
    if crop == "center":
        height, width = photo.shape[:2]
        scale = min(width / size[0], height / size[1])
        photo = center_crop(photo, (min(width, round(size[0] * scale)), min(height, round(size[1] * scale))))
    return resize(photo, size) if photo.shape[0] * photo.shape[1] > size[0] * size[1] else photo


@dataclass(frozen=True)
class EdgesBuilder:
    """Photo -> cropped -> background removed -> resized -> (edges of the subject, photo)."""

    root: Path
    size: tuple[int, int]
    crop: str
    remover: Remover
    fill: RGB
    edges: EdgeSpec

    def __call__(self, pair: Pair) -> SubjectPair:
        photo = framed(read_rgb(self.root / pair.sources[IMAGE], self.fill), self.size, self.crop)
        colours, alpha = self.remover(photo)
        if alpha is None:
            photo = resize(photo, self.size)
            return SubjectPair(edge_image(photo, self.edges), photo)
        photo = resize(composite(colours, alpha, self.fill), self.size)
        alpha = resize(alpha, self.size, "bilinear")
        return SubjectPair(edge_image(photo, self.edges, alpha >= 128), photo, mask=alpha)


@dataclass(frozen=True)
class CutoutBuilder:
    """Photo -> background removed: filled with a colour, or kept as alpha (`fill` None)."""

    root: Path
    remover: Remover
    fill: RGB | None

    def __call__(self, pair: Pair) -> Cutout:
        colours, alpha = self.remover(read_rgb(self.root / pair.sources[IMAGE]))
        if self.fill is None:
            return Cutout(np.dstack([colours, alpha]), alpha)
        return Cutout(composite(colours, alpha, self.fill), alpha)


def make_remover(
    bg: str, bg_model: str, bg_device: str, alpha_matting: bool, rect_text: str, workers: int
) -> tuple[Remover, dict]:
    """The background remover for `--bg` and the options it records. A rembg model is loaded here once, so a
    missing or broken model is a usage error before any work starts."""
    if bg not in BG_METHODS:
        raise UsageError(f"--bg {bg!r}: choose from {', '.join(BG_METHODS)}")
    if bg == "rembg":
        require("celeba", "--bg rembg")
        workers = workers or default_workers()
        model = open_model(bg_model, bg_device, threads=max(1, default_workers() // workers))
        if workers > 1:
            close_model(model)  # the worker processes open their own
        path = Path(model.path)
        options = {"bg_model": path.name, "bg_model_sha256": sha256_file(path)}
        return Remover("rembg", model, alpha_matting), {"bg": bg, **options, "alpha_matting": alpha_matting}
    if alpha_matting:
        raise UsageError("--alpha-matting works with --bg rembg only")
    if bg == "grabcut":
        rect = parse_grabcut(rect_text)
        return Remover("grabcut", rect=rect), {"bg": bg, "grabcut_rect": PORTRAIT if rect is None else list(rect)}
    return Remover(), {"bg": bg}


@dataclass(frozen=True)
class EdgesSetup:
    """The parsed edges/background flags shared by `edges` and `prep celeba`."""

    size: str
    crop: str
    bg: str
    bg_model: str
    bg_device: str
    alpha_matting: bool
    bg_fill: str
    grabcut_rect: str
    canny: str
    blur: float
    thickness: int
    edge_style: str
    keep_mask: bool

    def builder(self, root: Path, workers: int) -> tuple[EdgesBuilder, dict]:
        """The builder for pairs read from `root`, and every option it implies (for the manifest)."""
        if self.crop not in CROPS:
            raise UsageError(f"--crop {self.crop!r}: choose from {', '.join(CROPS)}")
        if self.keep_mask and self.bg == "none":
            raise UsageError("--keep-mask needs background removal: --bg rembg or --bg grabcut")
        size = parse_size(self.size)
        fill = parse_fill(self.bg_fill)
        edges = EdgeSpec(parse_canny(self.canny), self.blur, self.thickness, self.edge_style)
        remover, bg_options = make_remover(
            self.bg, self.bg_model, self.bg_device, self.alpha_matting, self.grabcut_rect, workers
        )
        options = {
            "size": list(size),
            "crop": self.crop,
            **bg_options,
            "bg_fill": list(fill),
            "canny": list(edges.thresholds) if edges.thresholds else "auto",
            "blur": self.blur,
            "thickness": self.thickness,
            "edge_style": self.edge_style,
        }
        return EdgesBuilder(root, size, self.crop, remover, fill, edges), options

    def job(
        self,
        root: Path,
        out: Path,
        pairs: PairTable,
        builder,
        options: dict,
        layout: str,
        format_,
        quality,
        shard_size="1GB",
    ) -> Job:
        """The job writing `pairs` with the A side as PNG and the B side as JPEG."""
        formats = formats_from(format_, quality, "png", "jpg")
        options.update(format=[formats.a.ext, formats.b.ext], quality=quality)
        return Job(
            out=out,
            sources={IMAGE: root},
            pairs=pairs,
            builder=builder,
            layouts=layouts_from(layout, shard_size) + ([MaskLayout()] if self.keep_mask else []),
            formats=formats,
            options=options,
            command=command_line(),
        )


def scan_folder(root: Path, spec: SplitSpec | None, seed: int, reuse_from: Path | None = None) -> PairTable:
    """Images of a flat folder, or of its train/val/test folders (their split kept). A flat folder is split by
    `spec` from the key hash, or written as one group (`FLAT`) when `spec` is None."""
    table = PairTable(reuse_from)
    table.add_folder(root, KeyRule(), IMAGE, has_split_folders(root))
    table.pair([IMAGE], spec, seed, flat=FLAT)
    return table


def edges(
    src: Annotated[Path, typer.Argument(help="Folder of photos (flat, or with train/val/test sub-folders).")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    size: Size = "256",
    crop: Crop = "center",
    bg: Bg = "none",
    bg_model: BgModel = "u2net",
    bg_device: BgDevice = "cpu",
    alpha_matting: AlphaMatting = False,
    bg_fill: BgFill = "white",
    grabcut_rect: GrabcutRect = "0.05,0.05,0.95,0.95",
    canny: Canny = "auto",
    blur: Blur = 1.0,
    thickness: Thickness = 1,
    edge_style: EdgeStyle = "black-on-white",
    keep_mask: KeepMask = False,
    layout: LayoutOpt = "ab",
    shard_size: ShardSize = "1GB",
    split: SplitOpt = "0.8,0.1,0.1",
    seed: Seed = 0,
    format_: FormatOpt = None,
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
    """Edges -> photo pairs from any folder of photos: A = Canny edges, B = the photo (edges PNG, photos JPEG).

    Examples:

      pairforge edges shoes/ datasets/edges2shoes --size 256 --canny auto --thickness 2

      pairforge edges portraits/ datasets/edges2portraits --bg grabcut --bg-fill white
    """
    require_inputs(src)
    root = source_path(src)
    spec = SplitSpec.parse(split)
    setup = EdgesSetup(
        size=size, crop=crop, bg=bg, bg_model=bg_model, bg_device=bg_device, alpha_matting=alpha_matting,
        bg_fill=bg_fill, grabcut_rect=grabcut_rect, canny=canny, blur=blur, thickness=thickness,
        edge_style=edge_style, keep_mask=keep_mask,
    )  # fmt: skip
    builder, options = setup.builder(root, workers)
    if not has_split_folders(root):
        options.update(split=str(spec), seed=seed)
    pairs = scan_folder(root, spec, seed, pairing_reuse(out, verify))
    job = setup.job(root, out, pairs, builder, options, layout, format_, quality, shard_size)
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def rmbg(
    src: Annotated[Path, typer.Argument(help="Folder of photos (flat, or with train/val/test sub-folders).")],
    out: Annotated[Path, typer.Argument(help="Output folder, with the same structure and keys.")],
    bg: Annotated[str, typer.Option("--bg", help="rembg|grabcut.")] = "rembg",
    bg_model: BgModel = "u2net",
    bg_device: BgDevice = "cpu",
    alpha_matting: AlphaMatting = False,
    bg_fill: Annotated[
        str, typer.Option("--bg-fill", help="transparent (RGBA PNG) or a colour: white|black|#RRGGBB.")
    ] = "transparent",
    grabcut_rect: GrabcutRect = "0.05,0.05,0.95,0.95",
    keep_mask: KeepMask = False,
    format_: FormatOpt = None,
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
    """Remove the background of every photo in a folder: transparent PNGs, or filled with a colour.

    Examples:

      pairforge rmbg photos/ photos_cut --bg-model ~/.u2net/u2net_human_seg.onnx

      pairforge rmbg photos/ photos_white --bg grabcut --bg-fill white
    """
    require_inputs(src)
    root = source_path(src)
    parse_choices(bg, "--bg", ("rembg", "grabcut"))
    fill = None if bg_fill.strip().lower() == "transparent" else parse_fill(bg_fill)
    if fill is None and format_ == "jpg":
        raise UsageError("--format jpg cannot hold transparency; use --bg-fill COLOUR or --format png")
    fmt = format_ or ("png" if fill is None else "jpg")
    remover, options = make_remover(bg, bg_model, bg_device, alpha_matting, grabcut_rect, workers)
    options.update(bg_fill=list(fill) if fill else "transparent", format=fmt, quality=quality)
    pairs = scan_folder(root, None, 0, pairing_reuse(out, verify))
    job = Job(
        out=out,
        sources={IMAGE: root},
        pairs=pairs,
        builder=CutoutBuilder(root, remover, fill),
        layouts=[ImagesLayout()] + ([MaskLayout()] if keep_mask else []),
        formats=Formats(ImageFormat(fmt, quality), ImageFormat(fmt, quality)),
        options=options,
        command=command_line(),
    )
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def register(app: typer.Typer) -> None:
    """Add `edges` and `rmbg` to the root app."""
    for command in (edges, rmbg):
        app.command(help=command.__doc__)(command)
