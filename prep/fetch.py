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

from pairforge.prep.convert import detect_layout
from pairforge.prep.download import DownloadError
from pairforge.prep.imageio import image_size, is_image_name, sha256_file
from pairforge.prep.manifest import ItemRecord, Manifest, OutputRecord, RejectedRecord
from pairforge.prep.pairing import SPLITS

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

# Refuse archives that would unpack beyond these (decompression bombs).
MAX_MEMBERS = 2_000_000
MAX_UNPACKED_BYTES = 200 * 2**30


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    is_dir: bool


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
    if len(members) > MAX_MEMBERS or sum(m.size for m in members) > MAX_UNPACKED_BYTES:
        raise DownloadError(f"{archive.name}: refused, it would unpack to more than {MAX_UNPACKED_BYTES >> 30} GiB")
    return members


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
    return Member(info.filename, info.file_size, info.is_dir())


def extract(archive: Path, out: Path) -> list[str]:
    """Extract image files atomically into `out` (via a temporary sibling folder); a single top folder is
    unwrapped. Returns the member names that were not extracted because they are not images."""
    members = archive_members(archive)
    wanted = [m.name for m in members if not m.is_dir and is_image_name(m.name)]
    skipped = [m.name for m in members if not m.is_dir and m.name not in set(wanted)]
    tmp = out.with_name(f".{out.name}.extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp, members=wanted)
    else:
        with tarfile.open(archive, "r:*") as tf:
            tf.extractall(tmp, members=[tf.getmember(n) for n in wanted], filter="data")
    entries = [p for p in tmp.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    shutil.rmtree(out, ignore_errors=True)
    os.replace(root, out)
    shutil.rmtree(tmp, ignore_errors=True)
    return skipped


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


def _output(root: Path, path: Path, layout: str) -> OutputRecord:
    width, height = image_size(path)
    return OutputRecord(
        layout=layout, path=path.relative_to(root).as_posix(), sha256=sha256_file(path), width=width, height=height
    )
