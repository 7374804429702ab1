"""`pairforge check`: verify a dataset on disk against its manifest and the layout rules.

The manifest is read one item at a time; the files are hashed and decoded by worker processes, a batch of
records at a time, so memory stays flat and the check runs on every core. The recorded paths are kept as 64-bit
hashes (8 bytes a file) to find unrecorded files afterwards.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import tarfile
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pairforge.prep.executors import LocalPool, run_sharded
from pairforge.prep.imageio import ImageRejected, open_image, sha256_bytes, sha256_file
from pairforge.prep.manifest import MANIFEST_NAME, ManifestReader, OutputRecord, ShardRecord
from pairforge.prep.runner import default_workers
from pairforge.prep.writers import WebDatasetLayout

BATCH = 64
"""Files per task sent to a worker."""
WALK_BATCH = 65536
"""Files on disk looked up together among the recorded paths."""
UNEXPECTED = "unexpected file: not in the manifest"


@dataclass
class CheckReport:
    root: Path
    items: int = 0
    files: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(p.split(":")[0] for _, p in self.problems).most_common())


FileRecord = tuple[str, str, int, int, str]
"""(path, sha256, width, height, layout) of one recorded file: what a worker needs to check it."""


def check_dataset(root: Path, workers: int = 0) -> CheckReport:
    """Every recorded file exists, is unchanged (sha256), decodes, has its recorded size and obeys its layout;
    no unrecorded file sits in the dataset; the counts add up. `workers` processes (0 = all cores) check files."""
    reader = ManifestReader(root)
    manifest = reader.header
    report = CheckReport(root, items=reader.item_count)
    if manifest.incomplete:
        problem = "incomplete: the command that writes this dataset was interrupted; run it again to finish"
        report.problems.append((MANIFEST_NAME, problem))
        return report
    recorded = array("Q", (path_hash(shard.path) for shard in manifest.shards))
    counted: Counter[str] = Counter()
    members = MemberChecks(root, {shard.path: shard for shard in manifest.shards})

    def files() -> Iterator[FileRecord]:
        for item in reader.items():
            counted[item.split] += 1
            for output in item.outputs:
                report.files += 1
                if output.layout == WebDatasetLayout.name:
                    members.add(output)
                else:
                    recorded.append(path_hash(output.path))
                    yield output.path, output.sha256, output.width, output.height, output.layout

    batches = iter(lambda it=files(): list(itertools.islice(it, BATCH)), [])
    report.problems += _checked(root, batches, workers)
    report.problems += members.finish()
    report.problems += unexpected_files(root, np.sort(np.frombuffer(recorded, dtype=np.uint64)))
    if dict(counted) != manifest.counts:
        report.problems.append((MANIFEST_NAME, f"counts mismatch: {manifest.counts} recorded, {dict(counted)} items"))
    return report


def _checked(root: Path, batches: Iterator[list[FileRecord]], workers: int) -> list[tuple[str, str]]:
    """The problems of every file of `batches`, checked by a pool of processes (in this one with one worker)."""
    workers = workers or default_workers()
    if workers <= 1:
        _init_checker(os.fspath(root))
        return [problem for batch in batches for _, problem in _check_batch(batch) if problem]
    pool = LocalPool(_check_batch, _init_checker, os.fspath(root), workers)
    problems = []
    try:
        for status, problem in run_sharded(pool, batches, _file_paths):
            if status == "rejected":  # the worker crashed on this file (a decoder bug): a problem like another
                problems.append((problem["paths"]["file"], "corrupt image: the decoder crashed on it"))
            elif problem:
                problems.append(problem)
    finally:
        pool.close()
    return problems


def _file_paths(record: FileRecord) -> dict[str, str]:
    return {"file": record[0]}


_ROOT = ""


def _init_checker(root: str) -> None:
    global _ROOT
    _ROOT = root


def _check_batch(batch: list[FileRecord]) -> list[tuple[str, tuple[str, str] | None]]:
    return [("checked", _problem(record)) for record in batch]


def _problem(record: FileRecord) -> tuple[str, str] | None:
    rel, sha256, width, height, layout = record
    problem = _file_problem(f"{_ROOT}/{rel}", sha256, width, height, layout)
    return (rel, problem) if problem else None


def _file_problem(path: str, sha256: str, width: int, height: int, layout: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return "missing file"
    except OSError as exc:
        return f"cannot read file: {exc.strerror}"
    if sha256_bytes(data) != sha256:
        return "changed file: sha256 differs from the manifest"
    try:
        img = open_image(path, data)
    except ImageRejected as exc:
        return exc.reason
    if img.size != (width, height):
        return f"size changed: {img.width}x{img.height}, manifest says {width}x{height}"
    if layout == "ab" and img.width % 2:
        return f"odd width {img.width}: halves of an A|B image must be equal"
    if layout == "ab" and img.mode != "RGB":
        return f"mode {img.mode}: ab images must be plain 8-bit RGB"
    return None


def path_hash(rel: str) -> int:
    """A 64-bit hash of a dataset-relative path (a collision among a million paths: odds about 1 in 10^7)."""
    return int.from_bytes(hashlib.blake2b(rel.encode(), digest_size=8).digest(), "little")


def unexpected_files(root: Path, recorded: np.ndarray) -> list[tuple[str, str]]:
    """Files under `root` (but the manifest and hidden files) whose path hash is not among the sorted `recorded`."""
    problems = []
    found = (rel for rel in _files_under(os.fspath(root), "") if rel != MANIFEST_NAME)
    while batch := list(itertools.islice(found, WALK_BATCH)):
        hashes = np.fromiter((path_hash(rel) for rel in batch), dtype=np.uint64, count=len(batch))
        where = np.minimum(np.searchsorted(recorded, hashes), max(0, len(recorded) - 1))
        known = recorded[where] == hashes if len(recorded) else np.zeros(len(batch), bool)
        problems += [(rel, UNEXPECTED) for rel, ok in zip(batch, known, strict=True) if not ok]
    return sorted(problems)


def _files_under(folder: str, prefix: str) -> Iterator[str]:
    """Relative paths of the files under `folder` but hidden ones, taken from each directory as it is read (a
    folder of a million files is never listed whole)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _files_under(entry.path, f"{prefix}{entry.name}/")
            elif not entry.name.startswith("."):
                yield prefix + entry.name


class MemberChecks:
    """The `webdataset` layout: each shard exists, is unchanged and holds its recorded samples; each member
    recorded as `<shard>/<name>` is there with its sha256 and image size. Members come grouped by shard (items
    are in (split, key) order, as the shards are): each shard is read once its members have all been seen."""

    def __init__(self, root: Path, shards: dict[str, ShardRecord]):
        self.root, self.shards = root, shards
        self.current: str | None = None
        self.members: dict[str, OutputRecord] = {}
        self.checked: set[str] = set()
        self.problems: list[tuple[str, str]] = []

    def add(self, output: OutputRecord) -> None:
        shard = output.path.rpartition("/")[0]
        if shard != self.current:
            self._check_current()
            self.current = shard
        self.members[output.path] = output

    def finish(self) -> list[tuple[str, str]]:
        self._check_current()
        for path in sorted(self.shards.keys() - self.checked):
            self._check(path, {})
        return self.problems

    def _check_current(self) -> None:
        if self.current is not None:
            self._check(self.current, self.members)
        self.current, self.members = None, {}

    def _check(self, path: str, members: dict[str, OutputRecord]) -> None:
        shard = self.shards.get(path)
        if shard is None or not (self.root / path).is_file():
            self.problems += [(path, "missing file")] if shard is not None else []
            self.problems += [(member, "missing file") for member in members]
            self.checked.add(path)
            return
        first = path not in self.checked
        self.checked.add(path)
        if first and sha256_file(self.root / path) != shard.sha256:
            self.problems.append((path, "changed file: sha256 differs from the manifest"))
        with tarfile.open(self.root / path) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
            for name in names:
                output = members.pop(f"{path}/{name}", None)
                if output is not None:
                    problem = _member_problem(tar.extractfile(name).read(), output)
                    self.problems += [(output.path, problem)] if problem else []
        if first and len({n.partition(".")[0] for n in names}) != shard.count:
            self.problems.append((path, f"count mismatch: {shard.count} samples recorded"))
        self.problems += [(member, "missing file") for member in members]


def _member_problem(data: bytes, output: OutputRecord) -> str | None:
    if sha256_bytes(data) != output.sha256:
        return "changed file: sha256 differs from the manifest"
    with Image.open(io.BytesIO(data)) as img:
        if img.size != (output.width, output.height):
            return f"size changed: {img.width}x{img.height}, manifest says {output.width}x{output.height}"
    return None
