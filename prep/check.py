"""`pairforge check`: verify a dataset on disk against its manifest and the layout rules."""

from __future__ import annotations

import io
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pairforge.prep.imageio import ImageRejected, open_image, sha256_bytes, sha256_file
from pairforge.prep.manifest import MANIFEST_NAME, OutputRecord, ShardRecord, read_manifest


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


def check_dataset(root: Path, workers: int = 4) -> CheckReport:
    """Every recorded file exists, is unchanged (sha256), decodes, has its recorded size and obeys its layout;
    no unrecorded image sits in the dataset; the counts add up."""
    manifest = read_manifest(root)
    report = CheckReport(root, items=len(manifest.items))
    if manifest.incomplete:
        problem = "incomplete: the command that writes this dataset was interrupted; run it again to finish"
        report.problems.append((MANIFEST_NAME, problem))
        return report
    outputs = [o for item in manifest.items for o in item.outputs if o.layout != "webdataset"]
    members = [o for item in manifest.items for o in item.outputs if o.layout == "webdataset"]
    report.files = len(outputs) + len(members)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for output, problem in zip(outputs, pool.map(lambda o: _check_file(root, o), outputs), strict=True):
            if problem:
                report.problems.append((output.path, problem))
    report.problems += check_shards(root, manifest.shards, members)
    recorded = {o.path for o in outputs} | {s.path for s in manifest.shards}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel not in recorded and rel != MANIFEST_NAME and not path.name.startswith("."):
            report.problems.append((rel, "unexpected file: not in the manifest"))
    counted = Counter(item.split for item in manifest.items)
    if dict(counted) != manifest.counts:
        report.problems.append((MANIFEST_NAME, f"counts mismatch: {manifest.counts} recorded, {dict(counted)} items"))
    return report


def _check_file(root: Path, output: OutputRecord) -> str | None:
    path = root / output.path
    if not path.is_file():
        return "missing file"
    if sha256_file(path) != output.sha256:
        return "changed file: sha256 differs from the manifest"
    try:
        img = open_image(path)
    except ImageRejected as exc:
        return exc.reason
    if img.size != (output.width, output.height):
        return f"size changed: {img.width}x{img.height}, manifest says {output.width}x{output.height}"
    if output.layout == "ab" and img.width % 2:
        return f"odd width {img.width}: halves of an A|B image must be equal"
    if output.layout == "ab" and img.mode != "RGB":
        return f"mode {img.mode}: ab images must be plain 8-bit RGB"
    return None


def check_shards(root: Path, shards: list[ShardRecord], members: list[OutputRecord]) -> list[tuple[str, str]]:
    """The `webdataset` layout: each shard exists, is unchanged and holds its recorded samples; each member
    recorded as `<shard>/<name>` is there with its sha256 and image size."""
    problems = []
    expected = {o.path: o for o in members}
    for shard in shards:
        path = root / shard.path
        if not path.is_file():
            problems.append((shard.path, "missing file"))
            continue
        if sha256_file(path) != shard.sha256:
            problems.append((shard.path, "changed file: sha256 differs from the manifest"))
        with tarfile.open(path) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
            for name in names:
                output = expected.pop(f"{shard.path}/{name}", None)
                if output is not None:
                    problems += [(output.path, p) for p in [_check_member(tar.extractfile(name).read(), output)] if p]
        if len({n.partition(".")[0] for n in names}) != shard.count:
            problems.append((shard.path, f"count mismatch: {shard.count} samples recorded"))
    problems += [(path, "missing file") for path in expected]
    return problems


def _check_member(data: bytes, output: OutputRecord) -> str | None:
    if sha256_bytes(data) != output.sha256:
        return "changed file: sha256 differs from the manifest"
    with Image.open(io.BytesIO(data)) as img:
        if img.size != (output.width, output.height):
            return f"size changed: {img.width}x{img.height}, manifest says {output.width}x{output.height}"
    return None
