"""`pairforge prep cuhk`: the CUHK face sketch set (CUFS students) -> photo|sketch pairs, messy names normalised.

Photos are named like `f-005-01.jpg` or `m1-012-01.jpg`, their sketches like `F2-005-01-sz1.jpg` or
`m1-012-01-sz1.JPG`. Every file gets one key per face: lower case, the `-sz<N>` tag dropped, and the sketch
prefixes `f2-`/`m2-` mapped to the photos' `f-`/`m-` (while `f1-`/`m1-` stay). A = photo, B = sketch.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import cv2
import typer

from pairforge.errors import UsageError
from pairforge.invocation import command_line
from pairforge.parsing import parse_size
from pairforge.prep.combine import default_format, find_pairs
from pairforge.prep.imageio import WHITE, ImageRejected, open_image, read_bytes, read_rgb
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
    raw_source,
    run_settings,
    source_path,
)
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import KeyRule, Pair, SplitSpec, safe_key
from pairforge.prep.runner import Job
from pairforge.prep.transforms.resize import FITS, fit
from pairforge.prep.writers import Formats, Layout, PairImages

DOWNLOAD = "https://mmlab.ie.cuhk.edu.hk/archive/facesketch.html (CUHK student set)"
PHOTO_FOLDERS = ("photo", "photos")
SKETCH_FOLDERS = ("sketch", "sketches")
SIZE_TAG = re.compile(r"-sz\d+$")
SECOND_SET = re.compile(r"^([fm])2-")
MAGIC = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}


@dataclass(frozen=True)
class FaceName(KeyRule):
    """A CUHK file name -> its face key: lower case, `-sz<N>` dropped; on sketches `f2-`/`m2-` -> `f-`/`m-`."""

    sketch: bool = False

    def key_of(self, name: str) -> str:
        key = SIZE_TAG.sub("", safe_key(Path(name).stem).lower())
        return SECOND_SET.sub(r"\1-", key) if self.sketch else key


@dataclass(frozen=True)
class FaceBuilder:
    """Fits the photo and the sketch to `size`; the sketch becomes gray (luma), written with 1 or 3 channels."""

    photos: Path
    sketches: Path
    size: tuple[int, int] = (256, 256)
    fit_mode: str = "cover"
    sketch_channels: int = 3

    def __call__(self, pair: Pair) -> PairImages:
        photo = fit(read_rgb(self.photos / pair.sources["A"]), self.size, self.fit_mode, fill=WHITE)
        gray = cv2.cvtColor(read_rgb(self.sketches / pair.sources["B"]), cv2.COLOR_RGB2GRAY)
        sketch = fit(gray, self.size, self.fit_mode, fill=255)
        return PairImages(photo, sketch if self.sketch_channels == 1 else cv2.cvtColor(sketch, cv2.COLOR_GRAY2RGB))


@dataclass(frozen=True)
class FileCopies:
    """Both source files' bytes, to be written unchanged."""

    a: bytes
    b: bytes


@dataclass(frozen=True)
class CopyBuilder:
    """Reads both files of a pair as bytes, after checking that each decodes and is in its side's format."""

    photos: Path
    sketches: Path
    formats: Formats

    def __call__(self, pair: Pair) -> FileCopies:
        return FileCopies(
            _checked_bytes(self.photos / pair.sources["A"], self.formats.a.ext),
            _checked_bytes(self.sketches / pair.sources["B"], self.formats.b.ext),
        )


def _checked_bytes(path: Path, ext: str) -> bytes:
    data = read_bytes(path)
    open_image(path, data)  # a damaged file is rejected, not copied
    found = next((kind for magic, kind in MAGIC.items() if data.startswith(magic)), "other")
    if found != ext:
        reason = f"format differs: a {found} file among {ext} files (--rename-only copies bytes, names them .{ext})"
        raise ImageRejected(reason)
    return data


class RenamedLayout(Layout):
    """`photos/<key>.<ext>` and `sketches/<key>.<ext>`: the source files under their normalised names."""

    name = "renamed"

    def files(self, key, split, images, formats):
        return [
            (f"photos/{key}.{formats.a.ext}", images.a if images else None, formats.a),
            (f"sketches/{key}.{formats.b.ext}", images.b if images else None, formats.b),
        ]


def copy_formats(pairs: PairTable, quality: int) -> Formats:
    """Per side, the extension of copied files: png when most sources of that side are PNG, else jpg."""
    return formats_from(None, quality, *(_common_ext(pairs, role) for role in ("A", "B")))


def _common_ext(pairs: PairTable, role: str) -> str:
    counts = Counter(Path(p.sources[role]).suffix.lower() == ".png" for p in pairs)
    return "png" if counts[True] > counts[False] else "jpg"


def _face_folder(src: Path, given: Path | None, names: tuple[str, ...], flag: str) -> Path:
    """`given`, else the one sub-folder of SRC named like `names` in any case."""
    if given is not None:
        path = source_path(given)
        if not path.is_dir():
            raise UsageError(f"{flag} {path} does not exist")
        return path
    found = [p for p in sorted(src.iterdir()) if p.is_dir() and p.name.lower() in names]
    if len(found) > 1:
        raise UsageError(
            f"{src} holds several {'/'.join(names)} folders ({', '.join(p.name for p in found)}); use {flag}"
        )
    if not found:
        raise UsageError(
            f"{src} holds no {'/'.join(names)} folder (any case): expected the photos/ and sketches/ of the CUHK "
            f"student set, or {flag} (download: {DOWNLOAD})"
        )
    return found[0]


def output_plan(
    layout: str, sketch_channels: int, format_: str | None, quality: int, pairs: PairTable, shard_size: str = "1GB"
):
    """Layouts and formats of a full run; a 1-channel sketch cannot go into the RGB A|B image."""
    if sketch_channels not in (1, 3):
        raise UsageError(f"--sketch-channels {sketch_channels}: choose 1 or 3")
    layouts = layouts_from(layout, shard_size)
    if sketch_channels == 1 and any(lay.name == "ab" for lay in layouts):
        raise UsageError(
            "--sketch-channels 1 writes 1-channel sketches, which --layout ab cannot hold (A|B images are RGB); "
            "use --layout split or unaligned, or --sketch-channels 3"
        )
    fmt = format_ or default_format(pairs)
    return layouts, formats_from(fmt, quality, fmt, fmt)


def cuhk(
    src: Annotated[Path, typer.Argument(help="Folder holding photo(s)/ and sketch(es)/ (any case).")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    photos: Annotated[Path | None, typer.Option(help="The photos folder, when not under SRC.")] = None,
    sketches: Annotated[Path | None, typer.Option(help="The sketches folder, when not under SRC.")] = None,
    rename_only: Annotated[
        bool,
        typer.Option(
            "--rename-only",
            help="Only copy the files, unchanged, to OUT/photos and OUT/sketches under their normalised names.",
        ),
    ] = False,
    size: Annotated[str, typer.Option(help="Output size of each half: N or WxH.")] = "256",
    fit_: Annotated[
        str,
        typer.Option(
            "--fit", help="cover: scale to fill, centre-crop. contain: scale to fit, pad white. stretch: ignore aspect."
        ),
    ] = "cover",
    sketch_channels: Annotated[int, typer.Option(help="3 (gray as RGB) or 1 (needs --layout split or unaligned).")] = 3,
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
    """CUHK face photos + sketches -> A = photo, B = sketch, one key per face from the messy names
    (f2-005-01-sz1.JPG -> f-005-01); files without a partner are rejected, named; splits seeded.

    Examples:

      pairforge prep cuhk ~/data/cuhk datasets/cuhk --split 170,8,10

      pairforge prep cuhk ~/data/cuhk datasets/cuhk_cyclegan --layout unaligned --sketch-channels 1

      pairforge prep cuhk ~/data/cuhk cuhk_renamed --rename-only
    """
    if fit_ not in FITS:
        raise UsageError(f"--fit {fit_!r}: choose from {', '.join(FITS)}")
    size_wh = parse_size(size)
    spec = SplitSpec.parse(split)
    root = raw_source(src, None, "cuhk", "photo(s)/ and sketch(es)/", DOWNLOAD)
    photo_root = _face_folder(root, photos, PHOTO_FOLDERS, "--photos")
    sketch_root = _face_folder(root, sketches, SKETCH_FOLDERS, "--sketches")
    pairs = find_pairs(
        photo_root, sketch_root, FaceName(), FaceName(sketch=True), spec, seed, pairing_reuse(out, verify)
    )
    options = {"rename_only": rename_only, "split": str(spec), "seed": seed}
    if rename_only:
        layouts, formats = [RenamedLayout()], copy_formats(pairs, quality)
        builder = CopyBuilder(photo_root, sketch_root, formats)
    else:
        layouts, formats = output_plan(layout, sketch_channels, format_, quality, pairs, shard_size)
        builder = FaceBuilder(photo_root, sketch_root, size_wh, fit_, sketch_channels)
        options |= {"size": list(size_wh), "fit": fit_, "sketch_channels": sketch_channels}
        options |= {"format": formats.a.ext, "quality": quality}
    job = Job(
        out=out,
        sources={"A": photo_root, "B": sketch_root},
        pairs=pairs,
        builder=builder,
        layouts=layouts,
        formats=formats,
        options=options,
        command=command_line(),
    )
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def register(app: typer.Typer) -> None:
    app.command(help=cuhk.__doc__)(cuhk)
