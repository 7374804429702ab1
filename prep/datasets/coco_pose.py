"""`pairforge prep coco-pose`: COCO person keypoints -> A = the pose drawn on black, B = the person's photo crop.

The annotation files are parsed once, in the parent, with pycocotools' `COCO`. Selection keeps person instances with
`iscrowd` 0, at least `--min-keypoints` labelled keypoints and a box of at least `--min-area` pixels, whose square crop
no other person's box (nor a crowd region) covers more than `--max-overlap` of; every other instance, and every image
without a person, is a rejection with its reason. The builder carries what the workers need as a compact table (crop
window, keypoints, annotated image size, and the segmentation only with `--mask-background`, rasterised in the
workers): about 260 bytes a person plus 4 bytes a polygon coordinate, so some 10-30 MB for train2017's 262k person
annotations (a few tens of thousands pass), pickled once per worker.

COCO annotates the stored pixels, so photos are read without applying EXIF orientation.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from pairforge.errors import PairforgeError, UsageError
from pairforge.extras import require
from pairforge.invocation import command_line
from pairforge.prep.imageio import ImageRejected, read_rgb
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
from pairforge.prep.pairing import Pair, Rejection, SplitSpec, assign_splits, safe_key
from pairforge.prep.runner import Job
from pairforge.prep.transforms.background import composite
from pairforge.prep.transforms.pose import Window, render_pose
from pairforge.prep.transforms.resize import resize
from pairforge.prep.writers import PairImages

DOWNLOAD = "https://cocodataset.org/#download"
ANNOTATIONS = "annotations"
SETS = ("train2017", "val2017")
EXPECTED = "annotations/person_keypoints_{train,val}2017.json with train2017/ and val2017/"
IMAGE, ANNOTATION = "image", "annotation"
BLACK = (0, 0, 0)


def annotation_name(image_set: str) -> str:
    return f"person_keypoints_{image_set}.json"


def official_split(image_set: str) -> str | None:
    """COCO's sets as pix2pix splits: train* -> train, val* -> test (COCO's test set has no annotations)."""
    if image_set.startswith("train"):
        return "train"
    return "test" if image_set.startswith("val") else None


@dataclass(frozen=True)
class AnnotationSet:
    """One annotation file, the folder of the images it describes, and its official split (None if unknown)."""

    file: Path
    images: Path
    split: str | None


def annotation_sets(root: Path, annotations: Path | None, images: Path | None) -> list[AnnotationSet]:
    """`--annotations FILE [--images DIR]`, or every official keypoints file found under ROOT/annotations/."""
    if annotations is None:
        if images is not None:
            raise UsageError("--images needs --annotations: the keypoints file that describes those images")
        sets = [
            AnnotationSet(root / ANNOTATIONS / annotation_name(name), root / name, official_split(name))
            for name in SETS
            if (root / ANNOTATIONS / annotation_name(name)).is_file()
        ]
        if not sets:
            raise UsageError(f"{root / ANNOTATIONS} has no person keypoints file: expected {EXPECTED} ({DOWNLOAD})")
    else:
        file = source_path(annotations)
        if not file.is_file():
            raise UsageError(f"--annotations {file} does not exist")
        name = file.stem.removeprefix("person_keypoints_")
        sets = [AnnotationSet(file, source_path(images) if images else root / name, official_split(name))]
    for aset in sets:
        if not aset.images.is_dir():
            raise UsageError(f"{aset.images} does not exist: expected the images of {aset.file.name} (or --images DIR)")
    return sets


def load_coco(file: Path):
    """The file parsed by pycocotools (its progress prints are silenced); unreadable -> one-line error."""
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(file))
    except (OSError, ValueError, AssertionError, KeyError, TypeError) as exc:
        raise PairforgeError(f"{file}: not a readable COCO annotation file ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class Skeleton:
    """The person category of a keypoints file: its id, keypoint names and limbs (0-based joint pairs)."""

    category: int
    names: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, coco, file: Path) -> Skeleton:
        cats = coco.loadCats(coco.getCatIds(catNms=["person"]))
        names = tuple(cats[0].get("keypoints") or ()) if cats else ()
        limbs = tuple((i - 1, j - 1) for i, j in cats[0].get("skeleton") or ()) if cats else ()
        if not names or not limbs or not all(0 <= k < len(names) for limb in limbs for k in limb):
            raise PairforgeError(f"{file}: no person category with keypoints and a skeleton (a person_keypoints file?)")
        return cls(cats[0]["id"], names, limbs)


@dataclass(frozen=True)
class Selection:
    """Which person instances become pairs (`--min-keypoints`, `--min-area`, `--margin`, `--max-overlap`)."""

    min_keypoints: int
    min_area: float
    margin: float
    max_overlap: float

    def own_problem(self, ann: dict, keypoint_count: int) -> str | None:
        """Why this instance alone cannot be a pair, or None."""
        if ann.get("iscrowd"):
            return "crowd annotation (iscrowd=1)"
        values = len(ann.get("keypoints") or ())
        if values != 3 * keypoint_count:
            return f"malformed keypoints ({values} values, expected {3 * keypoint_count})"
        count = ann.get("num_keypoints", 0)
        if count < self.min_keypoints:
            return f"too few keypoints ({count} < --min-keypoints {self.min_keypoints})"
        width, height = ann["bbox"][2:]
        if width * height < self.min_area:
            return f"person too small (box {width:.0f}x{height:.0f} < --min-area {self.min_area:g} px)"
        return None

    def overlap_problem(self, coco, ann: dict, window: Window, anns: list[dict], crowds: dict) -> str | None:
        """Why another person of the image spoils this crop, or None. Crowd masks are decoded once into `crowds`."""
        limit = f" > --max-overlap {self.max_overlap:.0%}"
        for other in anns:
            cover = window.box_cover(other["bbox"])
            if other["id"] == ann["id"] or cover <= self.max_overlap:
                continue  # a box covers at least what its mask covers
            if not other.get("iscrowd"):
                return f"another person overlaps the crop (annotation {other['id']} covers {cover:.0%}{limit})"
            if other["id"] not in crowds:
                crowds[other["id"]] = coco.annToMask(other)
            cover = window.mask_cover(crowds[other["id"]])
            if cover > self.max_overlap:
                return f"a crowd region overlaps the crop (annotation {other['id']} covers {cover:.0%}{limit})"
        return None


# An instance's segmentation as the workers get it: polygons as float32 arrays (compact to pickle), or RLE as is.
Segmentation = tuple[np.ndarray, ...] | dict


def compact(segmentation: list | dict) -> Segmentation:
    if isinstance(segmentation, dict):
        return segmentation
    return tuple(np.asarray(polygon, np.float32) for polygon in segmentation)


@dataclass
class Person:
    """A selected instance, before its split is known."""

    key: str
    sources: dict[str, str]
    split: str | None
    window: Window
    keypoints: list[float]
    image_size: tuple[int, int]
    segmentation: Segmentation | None


def scan_set(
    aset: AnnotationSet, image_root: Path, selection: Selection, with_masks: bool
) -> tuple[list[Person], list[Rejection], Skeleton]:
    """The selected people of one annotation file, the rejected instances and images, and its skeleton."""
    coco = load_coco(aset.file)
    scan = SetScan(coco, aset, Skeleton.of(coco, aset.file), selection, with_masks, aset.images.relative_to(image_root))
    people: list[Person] = []
    rejected: list[Rejection] = []
    for image_id in sorted(coco.getImgIds()):
        found, refused = scan.image(image_id)
        people += found
        rejected += refused
    return people, rejected, scan.skeleton


@dataclass(frozen=True)
class SetScan:
    """Selects the people of one image of an annotation file."""

    coco: object
    aset: AnnotationSet
    skeleton: Skeleton
    selection: Selection
    with_masks: bool
    folder: Path  # of the images, relative to the image root

    def image(self, image_id) -> tuple[list[Person], list[Rejection]]:
        image = self.coco.imgs[image_id]
        rel = f"{self.folder.as_posix()}/{image['file_name']}"
        ids = self.coco.getAnnIds(imgIds=[image_id], catIds=[self.skeleton.category])
        anns = sorted(self.coco.loadAnns(ids), key=_id)
        if not anns:
            return [], [Rejection({IMAGE: rel}, "no person annotated")]
        chosen, rejected, crowds = [], [], {}
        for ann in anns:
            sources = {IMAGE: rel, ANNOTATION: f"{self.aset.file.name}#{ann['id']}"}
            reason = self.selection.own_problem(ann, len(self.skeleton.names))
            window = None if reason else Window.around(ann["bbox"], self.selection.margin)
            reason = reason or self.selection.overlap_problem(self.coco, ann, window, anns, crowds)
            if reason:
                rejected.append(Rejection(sources, reason))
                continue
            key = safe_key(f"{image_id:0>12}_{ann['id']}")
            segmentation = compact(ann["segmentation"]) if self.with_masks else None
            size = (image["width"], image["height"])
            chosen.append(Person(key, sources, self.aset.split, window, ann["keypoints"], size, segmentation))
        if chosen and not (self.aset.images / image["file_name"]).is_file():
            reason = f"missing image file (listed in {self.aset.file.name})"
            return [], rejected + [Rejection(person.sources, reason) for person in chosen]
        return chosen, rejected


def _id(ann: dict):
    return ann["id"]


def assign(people: list[Person], spec: SplitSpec | None, seed: int) -> tuple[list[Pair], list[Rejection]]:
    """Pairs in key order (people of one image stay neighbours). Without `--split` each keeps its set's split;
    with it whole images are assigned, so a photo never lands in two splits."""
    splits = {person.key: person.split for person in people}
    rejected = []
    if spec is not None:
        by_image = assign_splits(sorted({person.sources[IMAGE] for person in people}), spec, seed)
        splits = {person.key: by_image[person.sources[IMAGE]] for person in people}
        rejected = [Rejection(p.sources, f"beyond --split counts ({spec})") for p in people if not splits[p.key]]
    pairs = [Pair(p.key, splits[p.key], p.sources) for p in sorted(people, key=lambda p: p.key) if splits[p.key]]
    return pairs, rejected


@dataclass(frozen=True)
class PeopleTable:
    """What the workers need per person, as arrays indexed through `rows` (small to pickle)."""

    rows: dict[str, int]
    windows: np.ndarray  # (N, 3) int64: left, top, side
    keypoints: np.ndarray  # (N, K, 3) float32: COCO x, y, v
    image_sizes: np.ndarray  # (N, 2) int32: width, height as annotated
    masks: tuple[Segmentation, ...]  # each person's segmentation with --mask-background, else empty

    @classmethod
    def of(cls, people: list[Person], keypoint_count: int) -> PeopleTable:
        return cls(
            rows={person.key: row for row, person in enumerate(people)},
            windows=np.array([(p.window.left, p.window.top, p.window.side) for p in people], np.int64).reshape(-1, 3),
            keypoints=np.array([p.keypoints for p in people], np.float32).reshape(-1, keypoint_count, 3),
            image_sizes=np.array([p.image_size for p in people], np.int32).reshape(-1, 2),
            masks=tuple(p.segmentation for p in people if p.segmentation is not None),
        )


@lru_cache(maxsize=1)
def read_photo(path: Path) -> np.ndarray:
    """The stored pixels (no EXIF rotation), read once for the consecutive people of one image."""
    photo = read_rgb(path, exif=False)
    photo.flags.writeable = False
    return photo


def decode_mask(segmentation: Segmentation, width: int, height: int) -> np.ndarray:
    """The instance's HxW mask, 255 on the person, rasterised by pycocotools (as `COCO.annToRLE` does)."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
    else:
        rle = mask_utils.merge(mask_utils.frPyObjects([p.tolist() for p in segmentation], height, width))
    return mask_utils.decode(rle) * np.uint8(255)


@dataclass(frozen=True)
class CocoPoseBuilder:
    """A = the person's keypoints drawn on black, B = the photo's square crop around the person (both size x size)."""

    image_root: Path
    table: PeopleTable
    limbs: tuple[tuple[int, int], ...]
    size: int
    draw_occluded: bool

    def __call__(self, pair: Pair) -> PairImages:
        row = self.table.rows[pair.key]
        photo = read_photo(self.image_root / pair.sources[IMAGE])
        width, height = (int(v) for v in self.table.image_sizes[row])
        if photo.shape[:2] != (height, width):
            found = f"{photo.shape[1]}x{photo.shape[0]}"
            raise ImageRejected(f"image size mismatch: file is {found}, annotation says {width}x{height}")
        window = Window(*(int(v) for v in self.table.windows[row]))
        keypoints = window.project(self.table.keypoints[row], self.size)
        pose = render_pose(keypoints, self.limbs, self.size, self.draw_occluded)
        crop = resize(window.crop(photo), (self.size, self.size))
        if self.table.masks:
            alpha = resize(window.crop(decode_mask(self.table.masks[row], width, height)), (self.size, self.size))
            crop = composite(crop, alpha, BLACK)
        return PairImages(pose, crop)


def coco_pose(
    src: Annotated[Path, typer.Argument(help="The COCO folder: annotations/, train2017/, val2017/.")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    annotations: Annotated[
        Path | None, typer.Option(help="One person_keypoints_*.json instead of SRC/annotations/'s official ones.")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="The images of --annotations (default: SRC/<set>, e.g. SRC/val2017).")
    ] = None,
    min_keypoints: Annotated[int, typer.Option(min=0, help="Fewest labelled keypoints (num_keypoints).")] = 8,
    min_area: Annotated[float, typer.Option(min=0, help="Smallest person box, in pixels (96x96 = 9216).")] = 9216,
    margin: Annotated[float, typer.Option(min=0, help="Room around the box, per side, in its longer side.")] = 0.15,
    max_overlap: Annotated[
        float, typer.Option(min=0, max=1, help="Most of a crop another person's box or a crowd region may cover.")
    ] = 0.1,
    size: Annotated[int, typer.Option(min=8, help="Side of both square halves.")] = 256,
    draw_occluded: Annotated[
        bool, typer.Option("--draw-occluded", help="Also draw keypoints labelled occluded (v=1).")
    ] = False,
    mask_background: Annotated[
        bool,
        typer.Option("--mask-background", help="Black out all but the person in the photo (instance segmentation)."),
    ] = False,
    layout: LayoutOpt = "ab",
    shard_size: ShardSize = "1GB",
    split: Annotated[
        str | None,
        typer.Option(help="train,val,test ratios or counts of images (default: train2017 -> train, val2017 -> test)."),
    ] = None,
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
    """COCO person keypoints -> A = the pose drawn on black (PNG), B = the person's square photo crop (JPEG).

    One person per pair: crowds, few keypoints, small people and crops another person covers are rejected, named.

    Keys are <image id>_<annotation id>. Splits: train2017 -> train, val2017 -> test.

    Examples:

      pairforge prep coco-pose ~/data/coco datasets/pose2person

      pairforge prep coco-pose ~/data/coco datasets/pose2person_512 --size 512 --mask-background --draw-occluded
    """
    require("coco", "pairforge prep coco-pose")
    root = raw_source(src, None, "coco", EXPECTED, DOWNLOAD)
    spec = SplitSpec.parse(split) if split else None
    sets = annotation_sets(root, annotations, images)
    if spec is None and any(aset.split is None for aset in sets):
        raise UsageError(f"cannot tell the split of {sets[0].file.name} from its name: give --split")
    selection = Selection(min_keypoints, min_area, margin, max_overlap)
    image_root = sets[0].images.parent
    people, rejected, skeletons = [], [], set()
    for aset in sets:
        found, refused, skeleton = scan_set(aset, image_root, selection, mask_background)
        people += found
        rejected += refused
        skeletons.add(skeleton)
    if len(skeletons) > 1:
        raise PairforgeError(f"{', '.join(s.file.name for s in sets)} disagree on the person keypoints or skeleton")
    skeleton = skeletons.pop()
    pairs, beyond = assign(people, spec, seed)
    formats = formats_from(format_, quality, "png", "jpg")
    options = {
        "annotations": [aset.file.name for aset in sets],
        "min_keypoints": min_keypoints,
        "min_area": min_area,
        "margin": margin,
        "max_overlap": max_overlap,
        "size": size,
        "draw_occluded": draw_occluded,
        "mask_background": mask_background,
        "split": str(spec) if spec else "official",
        "seed": seed if spec else None,
        "format": [formats.a.ext, formats.b.ext],
        "quality": quality,
    }
    table = PeopleTable.of(people, len(skeleton.names))
    job = Job(
        out=out,
        sources={IMAGE: image_root, ANNOTATION: sets[0].file.parent},
        pairs=PairTable.of(pairs, rejected + beyond),
        builder=CocoPoseBuilder(image_root, table, skeleton.limbs, size, draw_occluded),
        layouts=layouts_from(layout, shard_size),
        formats=formats,
        options=options,
        command=command_line(),
    )
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def register(app: typer.Typer) -> None:
    app.command("coco-pose", help=coco_pose.__doc__)(coco_pose)
