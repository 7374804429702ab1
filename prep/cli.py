"""`pairforge prep <dataset>` and the folder commands: `combine`, `split`, `pair`, `unpair`, `check`."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pkgutil
import shutil
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.table import Table

from pairforge.errors import UsageError
from pairforge.invocation import command_line
from pairforge.parsing import parse_direction, parse_list, parse_size
from pairforge.prep import datasets, folder_tools
from pairforge.prep.check import check_dataset
from pairforge.prep.combine import JOIN_POLICIES, SIZE_POLICIES, CombineBuilder, default_format, find_pairs
from pairforge.prep.convert import HalvesBuilder, JoinBuilder, detect_layout, scan_ab, scan_flat, scan_sided
from pairforge.prep.download import Retry, fetch_file, verify
from pairforge.prep.fetch import (
    CATALOGUE,
    CYCLEGAN_URL,
    PIX2PIX_URL,
    extract,
    index_extracted,
    previous_files,
    put_in_place,
)
from pairforge.prep.imageio import WHITE
from pairforge.prep.manifest import write_manifest
from pairforge.prep.options import (
    DataRoot,
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
    key_value_table,
    layouts_from,
    pairing_reuse,
    run_settings,
    source_path,
)
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import KeyRule, SplitSpec
from pairforge.prep.progress import byte_columns, progress_bar
from pairforge.prep.runner import Job, RunSettings, require_inputs
from pairforge.prep.transforms.resize import INTERPOLATION_NAMES
from pairforge.prep.writers import Layout
from pairforge.safety import real_path, scratch_folder

prep_app = typer.Typer(
    no_args_is_help=True,
    help="Build aligned datasets from the raw layouts of public datasets.\n\n"
    "Example: pairforge prep cityscapes ~/data/cityscapes datasets/cityscapes --size 256",
)


def register_datasets() -> None:
    """Every module in `prep/datasets/` adds its own `pairforge prep <name>` command via `register(app)`."""
    for info in pkgutil.iter_modules(datasets.__path__):
        module = importlib.import_module(f"{datasets.__name__}.{info.name}")
        module.register(prep_app)


register_datasets()


def parse_background(text: str) -> tuple[int, int, int]:
    values = parse_list(text, "--background", int, length=3)
    if not all(0 <= v <= 255 for v in values):
        raise UsageError(f"--background {text!r}: expected R,G,B with values 0..255")
    return values[0], values[1], values[2]


def combine(
    a_dir: Annotated[Path, typer.Argument(help="Folder of A images (flat, or with train/val/test sub-folders).")],
    b_dir: Annotated[Path, typer.Argument(help="Folder of B images, same shape as A_DIR.")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
    a_suffix: Annotated[str, typer.Option(help="Suffix stripped from A stems (0001_A.jpg -> 0001).")] = "",
    b_suffix: Annotated[str, typer.Option(help="Suffix stripped from B stems (0001_B.jpg -> 0001).")] = "",
    match: Annotated[
        str | None,
        typer.Option(help="Regex with a named group (?P<key>...) that extracts the key from names."),
    ] = None,
    size_policy: Annotated[
        str, typer.Option(help=f"When A and B differ in size: {'|'.join(SIZE_POLICIES)}.")
    ] = "error",
    size: Annotated[str | None, typer.Option(help="Resize both halves to N or WxH.")] = None,
    interpolation: Annotated[str, typer.Option(help=f"{'|'.join(INTERPOLATION_NAMES)}.")] = "auto",
    direction: Annotated[
        str,
        typer.Option(help="AB (or AtoB) puts A on the left, BA (or BtoA) puts B on the left.", parser=parse_direction),
    ] = "AB",
    background: Annotated[str, typer.Option(help="R,G,B under transparent pixels and padding.")] = "255,255,255",
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
    """Pair two folders of images by file key into an A|B dataset; nothing is dropped silently.

    Examples:

      pairforge combine photos/ sketches/ datasets/faces --size 256

      pairforge combine A/ B/ out --a-suffix _A --b-suffix _B --size-policy resize-b --layout ab,unaligned
    """
    require_inputs(a_dir, b_dir)
    for name, value, allowed in (
        ("--size-policy", size_policy, SIZE_POLICIES),
        ("--interpolation", interpolation, INTERPOLATION_NAMES),
    ):
        if value not in allowed:
            raise UsageError(f"{name} {value!r}: choose from {', '.join(allowed)}")
    size_wh = parse_size(size) if size else None
    if size_policy == "resize" and size_wh is None:
        raise UsageError("--size-policy resize needs --size N or WxH")
    split_spec = SplitSpec.parse(split)
    pairs = find_pairs(
        source_path(a_dir),
        source_path(b_dir),
        KeyRule.build(a_suffix, match),
        KeyRule.build(b_suffix, match),
        split_spec,
        seed,
        pairing_reuse(out, verify),
    )
    fmt = format_ or default_format(pairs)
    options = {
        "a_suffix": a_suffix,
        "b_suffix": b_suffix,
        "match": match,
        "size_policy": size_policy,
        "size": list(size_wh) if size_wh else None,
        "interpolation": interpolation,
        "direction": "AB" if direction == "AtoB" else "BA",
        "background": list(parse_background(background)),
        "split": str(split_spec),
        "seed": seed,
        "format": fmt,
        "quality": quality,
    }
    builder = CombineBuilder(
        source_path(a_dir),
        source_path(b_dir),
        size_policy,
        size_wh,
        interpolation,
        tuple(options["background"]) if background else WHITE,
        direction == "BtoA",
    )
    job = Job(
        out=out,
        sources={"A": source_path(a_dir), "B": source_path(b_dir)},
        pairs=pairs,
        builder=builder,
        layouts=layouts_from(layout, shard_size),
        formats=formats_from(fmt, quality, fmt, fmt),
        options=options,
        command=command_line(),
    )
    execute(
        job, run_settings(workers, overwrite, dry_run, executor, ray_address, verify), Reporting(quiet, json_, strict)
    )


def split(
    src: Annotated[Path, typer.Argument(help="Flat folder of A|B images.")],
    out: Annotated[Path, typer.Argument(help="Output dataset folder.")],
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
    """Split a flat folder of A|B images into train/val/test, deterministically (files are copied unchanged).

    Example:

      pairforge split combined/ datasets/facades --split 0.8,0.1,0.1 --seed 0
    """
    require_inputs(src)
    root = source_path(src)
    spec = SplitSpec.parse(split)
    pairs = scan_flat(root, spec, seed, pairing_reuse(out, verify))
    fmt = format_ or default_format(pairs)
    options = {"split": str(spec), "seed": seed, "format": fmt, "quality": quality}
    _run_conversion(
        root,
        out,
        "AB",
        pairs,
        HalvesBuilder(root),
        layouts_from("ab"),
        fmt,
        quality,
        options,
        run_settings(workers, overwrite, dry_run, executor, ray_address, verify),
        Reporting(quiet, json_, strict),
    )


def unpair(
    root: Annotated[Path, typer.Argument(help="An ab dataset.")],
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: ROOT_<layout>).")] = None,
    layout: LayoutOpt = "unaligned",
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
    """Cut an ab dataset's A|B images into an unaligned (trainA/trainB) or split (train/A, train/B) dataset.

    Example:

      pairforge unpair datasets/faces            # writes datasets/faces_unaligned
    """
    require_inputs(root)
    src = source_path(root)
    if detect_layout(src) != "ab":
        raise UsageError(f"{root} is not an ab dataset (found {detect_layout(src)}); use pairforge pair")
    pairs = scan_ab(src, pairing_reuse(out, verify))
    fmt = format_ or default_format(pairs)
    target = out or src.with_name(f"{src.name}_{layout.split(',')[0]}")
    _run_conversion(
        src,
        target,
        "AB",
        pairs,
        HalvesBuilder(src),
        layouts_from(layout, shard_size),
        fmt,
        quality,
        {"format": fmt, "quality": quality},
        run_settings(workers, overwrite, dry_run, executor, ray_address, verify),
        Reporting(quiet, json_, strict),
    )


def pair(
    root: Annotated[Path, typer.Argument(help="A split (train/A, train/B) or unaligned (trainA, trainB) dataset.")],
    out: Annotated[Path | None, typer.Argument(help="Output folder (default: ROOT_ab).")] = None,
    size_policy: Annotated[
        str,
        typer.Option(help=f"When A and B differ in size: {'|'.join(JOIN_POLICIES)}."),
    ] = "error",
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
    """Join the A and B files of a split or unaligned dataset, matched by key, into A|B images.

    Example:

      pairforge pair datasets/faces_unaligned datasets/faces_ab
    """
    require_inputs(root)
    if size_policy not in JOIN_POLICIES:
        raise UsageError(f"--size-policy {size_policy!r}: choose from {', '.join(JOIN_POLICIES)}")
    src = source_path(root)
    kind = detect_layout(src)
    if kind == "ab":
        raise UsageError(f"{root} is already an ab dataset; use pairforge unpair to convert it")
    pairs = scan_sided(src, kind, pairing_reuse(out, verify))
    fmt = format_ or default_format(pairs)
    target = out or src.with_name(f"{src.name}_ab")
    options = {"from_layout": kind, "size_policy": size_policy, "format": fmt, "quality": quality}
    _run_conversion(
        src,
        target,
        "root",
        pairs,
        JoinBuilder(src, size_policy),
        layouts_from(layout, shard_size),
        fmt,
        quality,
        options,
        run_settings(workers, overwrite, dry_run, executor, ray_address, verify),
        Reporting(quiet, json_, strict),
    )


def _run_conversion(
    src: Path,
    out: Path,
    role: str,
    pairs: PairTable,
    builder,
    layouts: list[Layout],
    fmt: str,
    quality: int,
    options: dict,
    settings: RunSettings,
    reporting: Reporting,
) -> None:
    job = Job(
        out=out,
        sources={role: src},
        pairs=pairs,
        builder=builder,
        layouts=layouts,
        formats=formats_from(fmt, quality, fmt, fmt),
        options=options,
        command=command_line(),
    )
    execute(job, settings, reporting)


def mirror_url(url: str) -> str:
    """The same file name under `$PAIRFORGE_MIRROR` when it is set."""
    mirror = os.environ.get("PAIRFORGE_MIRROR")
    return f"{mirror.rstrip('/')}/{Path(urlparse(url).path).name}" if mirror else url


def check(
    root: Annotated[Path, typer.Argument(help="A dataset folder with manifest.json.")],
    quiet: Quiet = False,
    json_: JsonOut = False,
) -> None:
    """Verify a dataset against its manifest: missing or changed files, sizes, corrupt images, layout rules.

    Exits 1 when anything is wrong. Example:

      pairforge check datasets/faces
    """
    require_inputs(root)
    report = check_dataset(root)
    if json_:
        print(
            json.dumps(
                {
                    "root": str(root),
                    "items": report.items,
                    "files": report.files,
                    "ok": report.ok,
                    "problems": [{"path": p, "problem": q} for p, q in report.problems],
                },
                indent=1,
            )
        )
    elif not quiet:
        console = Console()
        table = key_value_table(f"check: {root}")
        table.add_row("items", str(report.items))
        table.add_row("files", str(report.files))
        table.add_row("problems", str(len(report.problems)))
        for kind, count in report.by_kind().items():
            table.add_row(f"  {kind}", str(count))
        console.print(table)
        for path, problem in report.problems[:20]:
            console.print(f"  [red]{path}[/red]: {problem}")
        if len(report.problems) > 20:
            console.print(f"  ... and {len(report.problems) - 20} more (use --json for all)")
    if not report.ok:
        raise typer.Exit(1)


def fetch(
    name: Annotated[str | None, typer.Argument(help="Dataset name (see --list).")] = None,
    out: Annotated[
        Path | None, typer.Argument(help="Output folder (default: DATA_ROOT/NAME or datasets/NAME).")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the datasets with their sizes and URLs.")] = False,
    url: Annotated[str | None, typer.Option(help="Download from this URL instead (a mirror, or file://).")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 of the archive.")] = None,
    retries: Annotated[int, typer.Option(help="Download attempts before giving up.", min=1)] = 4,
    data_root: DataRoot = None,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
) -> None:
    """Download a standard pix2pix/CycleGAN dataset: resumable, verified, safely extracted, with a manifest.

    Examples:

      pairforge fetch --list

      pairforge fetch facades datasets/facades

      PAIRFORGE_MIRROR=https://mirror.example/pix2pix pairforge fetch maps
    """
    if list_ or name is None:
        table = Table(title="pairforge fetch: datasets", title_justify="left")
        for column in ("name", "model", "size", "about"):
            table.add_column(column)
        for entry in CATALOGUE.values():
            table.add_row(entry.name, entry.kind, f"~{entry.size_mb} MB", entry.about)
        Console().print(table)
        print(f"from {PIX2PIX_URL} and {CYCLEGAN_URL}")
        return
    entry = CATALOGUE.get(name)
    if entry is None and url is None:
        raise UsageError(f"unknown dataset {name!r}; see pairforge fetch --list (or give --url)")
    source = url or mirror_url(entry.url) if entry else url
    target = real_path(out or (data_root or Path("datasets")) / name)
    replaced = previous_files(target, source, overwrite)
    if replaced is None:
        if not quiet:
            print(f"{target}: already fetched from {source} (use --overwrite to fetch again)")
        return
    download_dir = target.with_name(f".{target.name}.download")
    archive = download_dir / Path(urlparse(source).path).name
    with progress_bar(not quiet, archive.name, byte_columns(), None) as update:
        fetch_file(source, archive, Retry(tries=retries), lambda done, total: update(completed=done, total=total))
    verify(source, archive, sha256)
    scratch = scratch_folder(target.parent, f".{target.name}.extracting-")
    try:
        root, skipped = extract(archive, scratch)
        manifest = index_extracted(root, source, {"name": name, "url": source}, command_line(), skipped)
        write_manifest(root, manifest)
        put_in_place(root, target, replaced)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # this run's own folder (empty once moved into place)
    archive.unlink()
    with contextlib.suppress(OSError):
        download_dir.rmdir()
    if not quiet:
        counts = ", ".join(f"{k} {v}" for k, v in manifest.finalize().counts.items())
        print(f"{target}: {manifest.layouts[0]} dataset, {counts}; {len(skipped)} non-image files skipped")


def register(app: typer.Typer) -> None:
    """Add `prep <dataset>` and the folder commands to the root app."""
    app.add_typer(prep_app, name="prep")
    for command in (combine, split, pair, unpair, check, fetch):
        app.command(help=command.__doc__)(command)
    folder_tools.register(app)
