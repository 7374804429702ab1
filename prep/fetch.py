"""`pairforge fetch`: the standard pix2pix and CycleGAN datasets, downloaded, verified, safely extracted and
given a manifest like every other pairforge dataset."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pairforge.errors import UsageError
from pairforge.prep.convert import detect_layout
from pairforge.prep.download import DownloadError
from pairforge.prep.imageio import ImageRejected, is_image_name, open_image, sha256_file
from pairforge.prep.manifest import (
    MANIFEST_NAME,
    ItemRecord,
    Manifest,
    OutputRecord,
    RejectedRecord,
    manifest_path,
    read_manifest,
)
from pairforge.prep.pairing import SPLITS
from pairforge.safety import delete_recorded

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip"


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # pix2pix (ab layout) or cyclegan (unaligned layout)
    size_mb: int  # approximate archive size, for --list
    about: str

    @property
    def url(self) -> str:
        return (PIX2PIX_URL if self.kind == "pix2pix" else CYCLEGAN_URL).format(name=self.name)


CATALOGUE = {
    e.name: e
    for e in [
        Entry("facades", "pix2pix", 29, "400 facade label maps <-> photos (CMP Facades)"),
        Entry("cityscapes", "pix2pix", 99, "2975 street photos <-> semantic labels, 256x256"),
        Entry("maps", "pix2pix", 239, "1096 aerial photos <-> Google maps"),
        Entry("edges2shoes", "pix2pix", 2165, "50k shoe edges -> photos"),
        Entry("edges2handbags", "pix2pix", 8600, "137k handbag edges -> photos"),
        Entry("night2day", "pix2pix", 1900, "20k night -> day webcam pairs"),
        Entry("horse2zebra", "cyclegan", 111, "ImageNet horses <-> zebras"),
        Entry("apple2orange", "cyclegan", 75, "ImageNet apples <-> oranges"),
        Entry("summer2winter_yosemite", "cyclegan", 126, "Flickr Yosemite summer <-> winter"),
        Entry("monet2photo", "cyclegan", 291, "Monet paintings <-> landscape photos"),
        Entry("cezanne2photo", "cyclegan", 267, "Cezanne paintings <-> landscape photos"),
        Entry("ukiyoe2photo", "cyclegan", 279, "Ukiyo-e prints <-> landscape photos"),
        Entry("vangogh2photo", "cyclegan", 292, "Van Gogh paintings <-> landscape photos"),
        Entry("iphone2dslr_flower", "cyclegan", 324, "iPhone <-> DSLR flower photos"),
    ]
}

# Refuse archives that would unpack beyond these (decompression bombs). Images are compressed already: a real
# dataset archive unpacks to about its own size; a ratio over MAX_RATIO is a bomb (zip: per member).
MAX_MEMBERS = 2_000_000
MAX_UNPACKED_BYTES = 200 * 2**30
MAX_RATIO = 100
SLACK_BYTES = 64 * 2**20  # free space kept beyond the unpacked size


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    is_dir: bool
    packed: int | None = None  # a zip member's compressed size (tar.gz compresses the whole stream)


def archive_members(archive: Path) -> list[Member]:
    """List (and so fully read and CRC-check) the archive, refusing anything unsafe before extracting."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad:
                    raise DownloadError(f"{archive.name}: corrupt archive (CRC error in {bad})")
                members = [_zip_member(info) for info in zf.infolist()]
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = [_tar_member(info) for info in tf.getmembers()]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DownloadError(f"{archive.name}: corrupt or unreadable archive ({exc})") from None
    total = sum(m.size for m in members)
    if len(members) > MAX_MEMBERS or total > MAX_UNPACKED_BYTES:
        raise DownloadError(f"{archive.name}: refused, it would unpack to more than {MAX_UNPACKED_BYTES >> 30} GiB")
    ratios = [(m.size / max(1, m.packed), m.name) for m in members if m.packed is not None]
    ratios.append((total / max(1, archive.stat().st_size), "the whole archive"))
    ratio, where = max(ratios)
    if ratio > MAX_RATIO:
        raise DownloadError(f"{archive.name}: refused, {where} unpacks {ratio:.0f}x its packed size (a bomb?)")
    return members


def check_free_space(members: list[Member], folder: Path, archive: Path) -> None:
    """Refuse, before writing anything, an archive whose images would not fit in the free space of `folder`."""
    need = sum(m.size for m in members if not m.is_dir and is_image_name(m.name))
    free = shutil.disk_usage(folder).free
    if need + SLACK_BYTES > free:
        raise DownloadError(
            f"{archive.name}: unpacks to {need / 2**30:.2f} GiB but {folder} has {free / 2**30:.2f} GiB free;"
            " free space (or choose another folder) and run the same command again"
        )


def _safe_name(name: str) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name):
        raise DownloadError(f"unsafe archive: member {name!r} would be written outside the output folder")
    return name


def _tar_member(info: tarfile.TarInfo) -> Member:
    _safe_name(info.name)
    if not (info.isfile() or info.isdir()):
        raise DownloadError(f"unsafe archive: member {info.name!r} is a link or special file")
    return Member(info.name, info.size, info.isdir())


def _zip_member(info: zipfile.ZipInfo) -> Member:
    _safe_name(info.filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DownloadError(f"unsafe archive: member {info.filename!r} is a symbolic link")
    return Member(info.filename, info.file_size, info.is_dir(), info.compress_size)


def extract(archive: Path, scratch: Path) -> tuple[Path, list[str]]:
    """Extract the image members into `scratch` (a new folder of this run's), each checked against its declared
    size while it is written; a single top folder is unwrapped. Returns the extracted root and the member names
    that were not extracted because they are not images."""
    members = archive_members(archive)
    check_free_space(members, scratch.parent, archive)
    wanted = [m for m in members if not m.is_dir and is_image_name(m.name)]
    names = {m.name for m in wanted}
    skipped = [m.name for m in members if not m.is_dir and m.name not in names]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in wanted:
                with zf.open(member.name) as src:
                    _copy_bounded(src, scratch / member.name, member, archive)
    else:
        with tarfile.open(archive, "r:*") as tf:
            for member in wanted:
                with tf.extractfile(member.name) as src:
                    _copy_bounded(src, scratch / member.name, member, archive)
    entries = [p for p in scratch.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    return (entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch), skipped


def _copy_bounded(src, dest: Path, member: Member, archive: Path) -> None:
    """Copy one member, refusing it the moment it grows beyond its declared size (a lying header)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with dest.open("wb") as fh:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > member.size:
                raise DownloadError(f"{archive.name}: refused, member {member.name!r} is larger than it declares")
            fh.write(chunk)


def previous_files(target: Path, source: str, overwrite: bool) -> list[str] | None:
    """What an earlier fetch wrote in `target` (to be replaced), [] for a new or empty folder, None when it already
    holds this archive's dataset. A folder pairforge did not write, or one holding files it did not write, is
    refused whatever the flags: fetch never empties a user's folder."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"output {target} is a file, not a folder; give a folder for the dataset")
    if not manifest_path(target).is_file():
        if target.is_dir() and any(target.iterdir()):
            raise UsageError(
                f"{target} is not empty and has no manifest.json: pairforge did not write it and will not write"
                " into it; choose a new or empty folder"
            )
        return []
    previous = read_manifest(target)
    if not overwrite:
        if previous.sources.get("archive") == source:
            return None
        raise UsageError(f"{target} holds another dataset fetched by pairforge; use --overwrite or another folder")
    written = {MANIFEST_NAME} | {o.path for item in previous.items for o in item.outputs}
    written |= {r.paths["archive"] for r in previous.rejected if r.kind == "outside the split folders"}
    unknown = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if not p.is_dir())
    unknown = [rel for rel in unknown if rel not in written]
    if unknown:
        raise UsageError(
            f"--overwrite: {target} holds files pairforge did not write ({unknown[0]}"
            f"{f' and {len(unknown) - 1} more' if len(unknown) > 1 else ''}); move them out or choose another folder"
        )
    return sorted(written)


def put_in_place(root: Path, target: Path, replaced: list[str]) -> None:
    """Replace the earlier fetch's files in `target` (only those) by the extracted dataset at `root`."""
    delete_recorded(target, replaced)
    if not target.exists():
        os.replace(root, target)
        return
    for child in root.iterdir():  # an existing, now empty, folder (perhaps the working directory) stays
        os.replace(child, target / child.name)


def index_extracted(root: Path, url: str, options: dict, command: list[str], skipped: list[str]) -> Manifest:
    """A manifest for an extracted dataset: one item per image, in the layout found on disk."""
    layout = detect_layout(root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p) and p.name[0] != ".")
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda p: _output(root, p, layout), files))
    items, rejected = (
        [],
        [RejectedRecord(paths={"archive": n}, reason="not an image file", kind="not an image file") for n in skipped],
    )
    for path, output in zip(files, records, strict=True):
        rel = path.relative_to(root)
        split, role = _split_and_role(rel, layout)
        if isinstance(output, ImageRejected):  # removed: the dataset holds only images that decode
            path.unlink()
            rejected.append(RejectedRecord(paths={"archive": rel.as_posix()}, reason=output.reason, kind=output.kind))
            continue
        if split is None:
            rejected.append(
                RejectedRecord(
                    paths={"archive": rel.as_posix()},
                    reason="outside the split folders",
                    kind="outside the split folders",
                )
            )
            continue
        items.append(ItemRecord(key=path.stem, split=split, sources={role: rel.as_posix()}, outputs=[output]))
    return Manifest(
        command=command, sources={"archive": url}, options=options, layouts=[layout], items=items, rejected=rejected
    )


def _split_and_role(rel: Path, layout: str) -> tuple[str | None, str]:
    top = rel.parts[0]
    if layout == "unaligned" and top[:-1] in SPLITS and top[-1] in "AB" and len(rel.parts) == 2:
        return top[:-1], top[-1]
    if layout == "ab" and top in SPLITS and len(rel.parts) == 2:
        return top, "AB"
    return None, ""


def _output(root: Path, path: Path, layout: str) -> OutputRecord | ImageRejected:
    try:
        width, height = open_image(path, exif=False).size
    except ImageRejected as exc:
        return exc
    return OutputRecord(
        layout=layout, path=path.relative_to(root).as_posix(), sha256=sha256_file(path), width=width, height=height
    )
