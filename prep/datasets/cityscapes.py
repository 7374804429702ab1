"""`pairforge prep cityscapes`: Cityscapes photos and fine labels -> photo|label pairs (the pix2pix paper's setting).

Pairs by the `<city>_<seq>_<frame>` stem within each official split. A = photo, B = label map in the official
Cityscapes colours; label->photo is the trainer's `--direction BtoA`, as with the reference dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from pairforge.errors import UsageError
from pairforge.extras import require
from pairforge.invocation import command_line
from pairforge.parsing import parse_size
from pairforge.prep.imageio import ImageRejected, open_image, read_bytes, read_rgb
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
from pairforge.prep.transforms.pillow_resize import pillow_bicubic
from pairforge.prep.transforms.resize import resize
from pairforge.prep.writers import PairImages

DOWNLOAD = "https://www.cityscapes-dataset.com/downloads/ (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip)"
PHOTO_FOLDERS = ("leftImg8bit", "leftImg8bit_trainvaltest/leftImg8bit")
LABEL_FOLDERS = ("gtFine", "gtFine_trainvaltest/gtFine")
LABEL_SOURCES = {"color": "color", "labelIds": "labelIds", "trainIds": "labelIds"}  # --label-source -> gtFine file
PHOTO_RESAMPLES = ("area", "bicubic")
LABEL_RESAMPLES = ("nearest", "bicubic")
PHOTO, LABEL = "photo", "label"
PHOTO_NAME = re.compile(r"(?P<key>.+_\d+_\d+)_leftImg8bit\.png", re.IGNORECASE)
LABEL_NAME = re.compile(r"(?P<key>.+_\d+_\d+)_gtFine_(?P<kind>[A-Za-z]+)\.(?:png|json)", re.IGNORECASE)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray+alpha", 6: "RGBA"}


@cache
def palette(label_source: str) -> np.ndarray:
    """256x3 uint8 lookup table from a gtFine labelIds value to its official colour (unknown ids: black).
    For `trainIds`, the 19 training classes keep their colours and every ignored id (trainId 255) is black."""
    from cityscapesscripts.helpers.labels import labels

    table = np.zeros((256, 3), np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and (label_source == "labelIds" or 0 <= label.trainId < 255):
            table[label.id] = label.color
    return table


def split_map(keep_val: bool, include_test: bool) -> dict[str, str]:
    """Official split -> output split: train -> train, val -> test (as the reference) or val; test on request."""
    splits = {"train": "train", "val": "val" if keep_val else "test"}
    if include_test:
        splits["test"] = "test"
    return splits


def index_tree(table: PairTable, root: Path, role: str, splits: dict[str, str], wanted: str | None) -> None:
    """Add the files of `root/<official split>/**` to `table` by (output split, key). Photos when `wanted` is
    None; otherwise the gtFine files of kind `wanted`, other gtFine kinds (instanceIds, polygons, ...) being
    skipped unconsidered."""
    for official, split in splits.items():
        folder = root / official
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file():
                rel = path.relative_to(root).as_posix()
                key, reason = _key_of(path.relative_to(folder), wanted)
                if reason:
                    table.reject([Rejection({role: rel}, reason)])
                elif key:
                    table.add_file(role, split, key, rel)


def _key_of(rel: Path, wanted: str | None) -> tuple[str | None, str | None]:
    """(key, None) for a file to pair, (None, reason) for a rejected one, (None, None) for a skipped companion."""
    if any(part.startswith(".") for part in rel.parts):
        return None, "hidden file"
    if wanted is None:
        found = PHOTO_NAME.fullmatch(rel.name)
        return (safe_key(found["key"]), None) if found else (None, "not a Cityscapes photo name (*_leftImg8bit.png)")
    found = LABEL_NAME.fullmatch(rel.name)
    if not found:
        return None, "not a Cityscapes gtFine name (*_gtFine_<kind>.png)"
    is_wanted = found["kind"].lower() == wanted.lower() and rel.suffix.lower() == ".png"
    return (safe_key(found["key"]), None) if is_wanted else (None, None)


def read_label(path: Path, label_source: str) -> np.ndarray:
    """The label file, decoded once: HxWx3 RGB colours (`color`, alpha dropped) or an HxW uint8 map of label ids.

    The PNG header says what the file holds before decoding, so a 16-bit or RGB file in place of an 8-bit
    labelIds map is refused rather than misread. A damaged file goes to Pillow, which names what is wrong."""
    data = read_bytes(path)
    complete = data[:8] == PNG_SIGNATURE and len(data) > 33 and data[-8:-4] == b"IEND"
    if complete:
        depth, colour_type = data[24], data[25]
        stored = f"{depth}-bit {PNG_COLOUR_TYPES.get(colour_type, 'unknown')} PNG"
        if label_source == "color" and (depth != 8 or colour_type not in (2, 3, 6)):
            raise ImageRejected(f"not an 8-bit RGB(A) colour label ({stored})", "not a colour label")
        if label_source != "color" and (depth != 8 or colour_type != 0):
            raise ImageRejected(f"not an 8-bit single-channel labelIds map ({stored})", "not 8-bit labelIds")
        flags = cv2.IMREAD_COLOR_RGB if label_source == "color" else cv2.IMREAD_UNCHANGED
        array = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        if array is not None:
            return array
    open_image(path, data)  # raises with Pillow's reason
    raise ImageRejected("corrupt image: not a complete PNG file")


@dataclass(frozen=True)
class CityscapesBuilder:
    """Reads one photo and its label file, resizes both to `size` and renders the label in the official colours.

    Labels are resized by nearest neighbour (ids first, then coloured) so that every pixel keeps an exact palette
    colour, or, with `bicubic`, coloured first and blurred by Pillow as the reference dataset was made."""

    photos: Path
    labels: Path
    label_source: str = "color"
    size: tuple[int, int] = (256, 256)
    photo_resample: str = "area"
    label_resample: str = "nearest"

    def __call__(self, pair: Pair) -> PairImages:
        photo = read_rgb(self.photos / pair.sources[PHOTO])
        label = read_label(self.labels / pair.sources[LABEL], self.label_source)
        (hp, wp), (hl, wl) = photo.shape[:2], label.shape[:2]
        if abs(wp * hl - wl * hp) > 0.01 * wp * hl:
            raise ImageRejected(f"size mismatch: photo {wp}x{hp} vs label {wl}x{hl} (aspect ratios differ)")
        photo = pillow_bicubic(photo, self.size) if self.photo_resample == "bicubic" else resize(photo, self.size)
        return PairImages(photo, self.render(label))

    def render(self, label: np.ndarray) -> np.ndarray:
        if self.label_resample == "bicubic":
            return pillow_bicubic(self._colour(label), self.size)
        return self._colour(resize(label, self.size, "nearest"))

    def _colour(self, label: np.ndarray) -> np.ndarray:
        return label if self.label_source == "color" else palette(self.label_source)[label]


def _tree(src: Path, given: Path | None, candidates: tuple[str, ...], what: str) -> Path:
    """The photo or label tree: `given`, else the first of `candidates` under SRC."""
    if given is not None:
        path = source_path(given)
        if not path.is_dir():
            raise UsageError(f"{path} does not exist: expected the unzipped {what} folder (download: {DOWNLOAD})")
        return path
    for candidate in candidates:
        if (src / candidate).is_dir():
            return src / candidate
    names = " or ".join(f"{c}/" for c in candidates)
    raise UsageError(f"{src} holds no {names}: expected the unzipped {what} folder (download: {DOWNLOAD})")


def find_pairs(photos: Path, labels: Path, label_source: str, splits: dict[str, str]) -> PairTable:
    """Pairs by (split, key) of photos and label files; one-sided files are rejections."""
    table = PairTable()
    index_tree(table, photos, PHOTO, splits, None)
    index_tree(table, labels, LABEL, splits, LABEL_SOURCES[label_source])
    table.pair([PHOTO, LABEL])
    return table


def cityscapes(
    src: Annotated[Path, typer.Argument(help="Cityscapes folder holding leftImg8bit/ and gtFine/ (as unzipped).")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    photos: Annotated[Path | None, typer.Option(help="The leftImg8bit folder, when not under SRC.")] = None,
    labels: Annotated[Path | None, typer.Option(help="The gtFine folder, when not under SRC.")] = None,
    label_source: Annotated[
        str,
        typer.Option(
            help="color: the _gtFine_color.png files (alpha dropped). labelIds: all 34 classes from "
            "_gtFine_labelIds.png in the official colours. trainIds: the 19 training classes, ignored ones black."
        ),
    ] = "color",
    size: Annotated[str, typer.Option(help="Output size of each half: N (square, as the reference) or WxH.")] = "256",
    photo_resample: Annotated[
        str, typer.Option(help="area (OpenCV) or bicubic (Pillow's, as the reference script).")
    ] = "area",
    label_resample: Annotated[
        str,
        typer.Option(help="nearest keeps exact palette colours; bicubic blurs labels as the reference dataset did."),
    ] = "nearest",
    keep_val: Annotated[
        bool, typer.Option("--keep-val", help="Write val/ (default: val goes to test/, as the reference).")
    ] = False,
    include_test: Annotated[
        bool,
        typer.Option("--include-test", help="Also write the official test split (its labels are dummies)."),
    ] = False,
    layout: LayoutOpt = "ab",
    shard_size: ShardSize = "1GB",
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
    """Cityscapes photos + fine labels -> A = photo, B = colour label map (label->photo: --direction BtoA);
    train -> train, val -> test as the reference; pairs by city_seq_frame, unmatched files rejected.

    Examples:

      pairforge prep cityscapes ~/data/cityscapes datasets/cityscapes

      pairforge prep cityscapes ~/data/cityscapes datasets/cityscapes_512 --size 512x256 --label-source trainIds

      pairforge prep cityscapes ~/data/cityscapes datasets/cs_ref --photo-resample bicubic --label-resample bicubic
    """
    for flag, value, allowed in (
        ("--label-source", label_source, tuple(LABEL_SOURCES)),
        ("--photo-resample", photo_resample, PHOTO_RESAMPLES),
        ("--label-resample", label_resample, LABEL_RESAMPLES),
    ):
        if value not in allowed:
            raise UsageError(f"{flag} {value!r}: choose from {', '.join(allowed)}")
    if label_source != "color":  # the official palette comes from cityscapesscripts
        require("cityscapes", f"--label-source {label_source}")
    if include_test and not keep_val:
        raise UsageError("--include-test writes the official test split to test/; add --keep-val so val goes to val/")
    size_wh = parse_size(size)
    root = raw_source(src, None, "cityscapes", "leftImg8bit/ and gtFine/", DOWNLOAD)
    photo_root = _tree(root, photos, PHOTO_FOLDERS, "leftImg8bit")
    label_root = _tree(root, labels, LABEL_FOLDERS, "gtFine")
    pairs = find_pairs(photo_root, label_root, label_source, split_map(keep_val, include_test))
    formats = formats_from(format_, quality, "jpg", "png")
    options = {
        "label_source": label_source,
        "size": list(size_wh),
        "photo_resample": photo_resample,
        "label_resample": label_resample,
        "keep_val": keep_val,
        "include_test": include_test,
        "format": {"A": formats.a.ext, "B": formats.b.ext},
        "quality": quality,
    }
    job = Job(
        out=out,
        sources={PHOTO: photo_root, LABEL: label_root},
        pairs=pairs,
        builder=CityscapesBuilder(photo_root, label_root, label_source, size_wh, photo_resample, label_resample),
        layouts=layouts_from(layout, shard_size),
        formats=formats,
        options=options,
        command=command_line(),
    )
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def register(app: typer.Typer) -> None:
    app.command(help=cityscapes.__doc__)(cityscapes)
