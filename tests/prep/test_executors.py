"""Executors: a worker that dies never loses a pair; Ray builds the same dataset as the local pool."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pairforge.errors import Interrupted
from pairforge.prep.check import check_dataset
from pairforge.prep.combine import CombineBuilder
from pairforge.prep.imageio import ImageFormat
from pairforge.prep.manifest import ManifestReader
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import Pair
from pairforge.prep.runner import Job, RunSettings, run_job
from pairforge.prep.writers import AbLayout, Formats, PairImages
from tests.conftest import pattern, same_files, save


@dataclass(frozen=True)
class CrashingBuilder:
    """Kills its worker process on some keys, like a segfaulting decoder would."""

    inner: CombineBuilder
    fatal_keys: tuple[str, ...]

    def __call__(self, pair: Pair) -> PairImages:
        if pair.key in self.fatal_keys:
            os._exit(3)
        return self.inner(pair)


def make_job(tmp_path: Path, n: int, builder_for=lambda b: b) -> Job:
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(n):
        save(a / f"{i:02d}.png", pattern(16, 16, i))
        save(b / f"{i:02d}.png", pattern(16, 16, 50 + i))
    pairs = [Pair(f"{i:02d}", "train", {"A": f"{i:02d}.png", "B": f"{i:02d}.png"}) for i in range(n)]
    fmt = ImageFormat("png")
    return Job(
        out=tmp_path / "out", sources={"A": a, "B": b}, pairs=PairTable.of(pairs),
        builder=builder_for(CombineBuilder(a, b)), layouts=[AbLayout()], formats=Formats(fmt, fmt),
        options={}, command=["test"],
    )  # fmt: skip


@pytest.mark.parametrize("fatal", [("07",), ("03", "31")])
def test_a_crashing_worker_loses_no_pair(tmp_path, fatal):
    job = make_job(tmp_path, 40, lambda b: CrashingBuilder(b, fatal))
    run_job(job, RunSettings(workers=2, progress=False))
    manifest = ManifestReader(job.out)
    assert [it.key for it in manifest.items()] == [f"{i:02d}" for i in range(40) if f"{i:02d}" not in fatal]
    rejected = list(manifest.rejected())
    assert [r.paths for r in rejected] == [{"A": f"{k}.png", "B": f"{k}.png"} for k in fatal]
    assert all(r.reason.startswith("worker crashed while building this pair") for r in rejected)


@dataclass(frozen=True)
class CtrlCBuilder:
    """Builds pairs until `key`, where the user presses Ctrl-C."""

    inner: CombineBuilder
    key: str

    def __call__(self, pair: Pair) -> PairImages:
        if pair.key == self.key:
            raise KeyboardInterrupt
        return self.inner(pair)


def test_an_interrupted_first_run_is_marked_and_a_re_run_finishes_it(tmp_path):
    job = make_job(tmp_path, 12, lambda b: CtrlCBuilder(b, "05"))
    with pytest.raises(Interrupted, match=r"^interrupted: 5 of 12 pairs are in .*; run the same command again"):
        run_job(job, RunSettings(workers=1, progress=False))
    assert ManifestReader(job.out).header.incomplete
    assert sorted(p.name for p in (job.out / "train").iterdir()) == [f"{i:02d}.png" for i in range(5)]  # no temp
    assert [problem for _, problem in check_dataset(job.out).problems] == [
        "incomplete: the command that writes this dataset was interrupted; run it again to finish"
    ]

    finished = run_job(replace(job, builder=job.builder.inner), RunSettings(workers=2, progress=False))
    assert (finished.skipped, finished.written) == (5, 7)
    assert check_dataset(job.out).ok
    fresh = replace(job, out=tmp_path / "fresh", builder=job.builder.inner)
    run_job(fresh, RunSettings(workers=2, progress=False))
    assert same_files(job.out) == same_files(fresh.out)


def test_unknown_executor_and_missing_ray_are_one_line_errors(tmp_path, cli, monkeypatch):
    save(tmp_path / "A" / "x.png", pattern(8, 8))
    save(tmp_path / "B" / "x.png", pattern(8, 8))
    result = cli("combine", tmp_path / "A", tmp_path / "B", tmp_path / "o", "--executor", "dask")
    assert result.code == 2 and "choose from local, ray" in result.err


@pytest.mark.slow
def test_ray_builds_the_same_dataset_as_the_local_pool(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    here = Path(__file__)  # Ray workers import CrashingBuilder as pytest named its module
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(here.parent), str(here.parents[2])]))
    local = make_job(tmp_path, 24)
    run_job(local, RunSettings(workers=2, progress=False))
    on_ray = make_job(tmp_path, 24, lambda b: CrashingBuilder(b, ("05",)))
    on_ray.out = tmp_path / "ray_out"
    run_job(on_ray, RunSettings(workers=2, progress=False, executor="ray"))
    local_items = {item["key"]: item for item in same_files(local.out)}
    ray_items = same_files(on_ray.out)
    assert len(ray_items) == 23
    for item in ray_items:
        assert item == local_items[item["key"]]  # same paths, sizes and sha256: byte-identical files
    rejected = list(ManifestReader(on_ray.out).rejected())
    assert [r.paths["A"] for r in rejected] == ["05.png"]
    assert rejected[0].kind == "worker crashed"


FORKED_AFTER_OPENCV = """
import sys, cv2, numpy as np
from pairforge.cli import main
image = np.random.default_rng(0).random((1500, 1500, 3), dtype=np.float32)
for _ in range(3):  # OpenCV's thread pool is busy in this process before the workers are forked
    cv2.GaussianBlur(cv2.resize(image, (1200, 1200)), (5, 5), 1)
assert "torch" not in sys.modules  # so the pool forks
main(["combine", sys.argv[1], sys.argv[2], sys.argv[3], "--workers", "2", "-q"])
"""


def test_workers_forked_after_the_parent_used_opencv_do_not_hang(tmp_path):
    for i in range(12):
        save(tmp_path / "A" / f"{i}.png", pattern(32, 32, i))
        save(tmp_path / "B" / f"{i}.png", pattern(32, 32, 50 + i))
    args = [sys.executable, "-c", FORKED_AFTER_OPENCV, tmp_path / "A", tmp_path / "B", tmp_path / "out"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert ManifestReader(tmp_path / "out").item_count == 12
