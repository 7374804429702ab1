"""`pairforge prep celeba`: aligned CelebA faces -> Canny edges (A) | face photo (B), background removed.

Raw layout (CONVENTIONS §6): `img_align_celeba/NNNNNN.jpg` (178x218; Kaggle's nested
`img_align_celeba/img_align_celeba/` is accepted too) and, when present, the official `list_eval_partition.txt`
(`000001.jpg 0`: 0 train, 1 val, 2 test). Without it, splits come from `--split` and `--seed`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from pairforge.errors import PairforgeError, UsageError
from pairforge.parsing import parse_list
from pairforge.prep.folder_tools import (
    IMAGE,
    AlphaMatting,
    Bg,
    BgDevice,
    BgFill,
    BgModel,
    Blur,
    Canny,
    Crop,
    EdgesSetup,
    EdgeStyle,
    GrabcutRect,
    KeepMask,
    Size,
    Thickness,
)
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
    raw_source,
    run_settings,
)
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import SPLITS, KeyRule, Pair, Rejection, SplitSpec, assign_splits
from pairforge.prep.transforms.background import PORTRAIT

IMAGES = "img_align_celeba"
PARTITION = "list_eval_partition.txt"
PARTITION_SPLITS = {"0": "train", "1": "val", "2": "test"}
DOWNLOAD = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


@dataclass(frozen=True)
class Limit:
    """`--limit N` (the first N images overall) or `--limit TRAIN,VAL,TEST` (the first N of each split)."""

    total: int | None = None
    per_split: tuple[int, int, int] | None = None

    @classmethod
    def parse(cls, text: str | None) -> Limit:
        if text is None:
            return cls()
        values = parse_list(text, "--limit", int)
        if len(values) == 1 and values[0] > 0:
            return cls(total=values[0])
        if len(values) == 3 and min(values) >= 0:
            return cls(per_split=(values[0], values[1], values[2]))
        raise UsageError(f"--limit {text!r}: expected N > 0 or TRAIN,VAL,TEST counts")

    def full(self, taken: Counter, split: str) -> bool:
        if self.total is not None:
            return sum(taken.values()) >= self.total
        return self.per_split is not None and taken[split] >= self.per_split[SPLITS.index(split)]

    def __str__(self) -> str:
        return str(self.total) if self.total else ",".join(map(str, self.per_split or ()))


def read_partition(path: Path) -> dict[str, str]:
    """`list_eval_partition.txt` -> {image name: split}, in the file's order; a malformed line is fatal."""
    partition = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in PARTITION_SPLITS:
            raise PairforgeError(f"{path} line {number}: expected '<image>.jpg <0|1|2>', got {line.strip()!r}")
        partition[fields[0]] = PARTITION_SPLITS[fields[1]]
    return partition


def scan_celeba(images: Path, partition: dict[str, str] | None, limit: Limit, spec: SplitSpec, seed: int) -> PairTable:
    """Pairs of the images present, in the official (or hashed) splits, cut to `--limit`. Listed images that
    are missing, and images the list does not name, are rejections. Images after the limit are not considered."""
    found = PairTable()
    found.add_folder(images, KeyRule(), IMAGE)
    found.pair([IMAGE])
    present = {pair.key: pair.sources[IMAGE] for pair in found}
    rejected = list(found.rejections())
    if partition is None:
        keys = sorted(present)[: limit.total]
        order = assign_splits(keys, spec, seed)
        entries = [(key, order[key], present[key]) for key in keys]
    else:
        entries = [(Path(name).stem, split, name) for name, split in partition.items()]
        listed = {key for key, _, _ in entries}
        rejected += [
            Rejection({IMAGE: rel}, f"not in {PARTITION}") for key, rel in present.items() if key not in listed
        ]
    pairs: list[Pair] = []
    taken: Counter = Counter()
    for key, split, name in entries:
        if split is None:
            rejected.append(Rejection({IMAGE: name}, f"beyond --split counts ({spec})"))
        elif limit.full(taken, split):
            continue
        elif key not in present:
            rejected.append(Rejection({IMAGE: name}, f"missing: listed in {PARTITION}, not in {IMAGES}/"))
        else:
            pairs.append(Pair(key, split, {IMAGE: present[key]}))
            taken[split] += 1
    return PairTable.of(pairs, rejected)


def celeba(
    src: Annotated[Path, typer.Argument(help=f"The unpacked CelebA folder: {IMAGES}/ and {PARTITION}.")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    limit: Annotated[
        str | None,
        typer.Option("--limit", help="First N images overall, or TRAIN,VAL,TEST first images per split."),
    ] = None,
    size: Size = "256",
    crop: Crop = "center",
    bg: Bg = "rembg",
    bg_model: BgModel = "u2net",
    bg_device: BgDevice = "cpu",
    alpha_matting: AlphaMatting = False,
    bg_fill: BgFill = "white",
    grabcut_rect: GrabcutRect = PORTRAIT,
    canny: Canny = "auto",
    blur: Blur = 1.0,
    thickness: Thickness = 1,
    edge_style: EdgeStyle = "black-on-white",
    keep_mask: KeepMask = False,
    layout: LayoutOpt = "ab",
    shard_size: ShardSize = "1GB",
    split: Annotated[
        str, typer.Option("--split", help=f"train,val,test ratios or counts, used only without {PARTITION}.")
    ] = "0.8,0.1,0.1",
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
    """CelebA aligned faces -> A = Canny edges of the face, B = the face photo with its background removed.

    Official splits from list_eval_partition.txt. --bg rembg needs a model file (never downloaded), grabcut none.
    --bg grabcut's default assumes aligned faces as in img_align_celeba (face centred, shoulders at the bottom).
    For other crops give the subject's rectangle: --grabcut-rect L,T,R,B.

    Examples:

      pairforge prep celeba ~/data/celeba datasets/edges2celeba --limit 7000 --bg-model ~/.u2net/u2net.onnx

      pairforge prep celeba ~/data/celeba datasets/edges2celeba_2k --limit 2000,200,200 --bg grabcut

      pairforge prep celeba ~/data/celeba_wild datasets/edges2wild --bg grabcut --grabcut-rect 0.2,0.1,0.8,1
    """
    expected = f"{IMAGES}/ and {PARTITION}"
    root = raw_source(src, None, "celeba", expected, DOWNLOAD)
    images = root / IMAGES
    if (images / IMAGES).is_dir():  # the Kaggle copy nests the folder in itself
        images = images / IMAGES
    if not images.is_dir():
        raise UsageError(f"{images} does not exist: expected {expected} in {root} (download: {DOWNLOAD})")
    limit_spec = Limit.parse(limit)
    spec = SplitSpec.parse(split)
    setup = EdgesSetup(
        size=size, crop=crop, bg=bg, bg_model=bg_model, bg_device=bg_device, alpha_matting=alpha_matting,
        bg_fill=bg_fill, grabcut_rect=grabcut_rect, canny=canny, blur=blur, thickness=thickness,
        edge_style=edge_style, keep_mask=keep_mask,
    )  # fmt: skip
    builder, options = setup.builder(images, workers)
    partition = read_partition(root / PARTITION) if (root / PARTITION).is_file() else None
    options.update(split=str(spec) if partition is None else PARTITION, limit=str(limit_spec) if limit else None)
    if partition is None:
        options["seed"] = seed
    pairs = scan_celeba(images, partition, limit_spec, spec, seed)
    job = setup.job(images, out, pairs, builder, options, layout, format_, quality, shard_size)
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def register(app: typer.Typer) -> None:
    app.command(help=celeba.__doc__)(celeba)
