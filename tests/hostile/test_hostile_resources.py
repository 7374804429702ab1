"""A full disk, a read-only output or no memory ends the run: one line, exit 1, and a re-run finishes it (issue 23,
5 and 8). Full disks are simulated in-process: the low-level write raises ENOSPC (no tmpfs without root)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from pairforge.prep import pair_table, runner
from tests.conftest import CliResult, read_manifest
from tests.hostile.conftest import TINY, ab_dataset, accounted, one_line, tree, write_pairs


def failing_after(calls: int, error: OSError, real):
    """`real`, raising `error` from its call number `calls` + 1 on."""
    count = {"n": 0}

    def write(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise error
        return real(*args, **kwargs)

    return write


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "the disk quota is exceeded"),
        (OSError(errno.EROFS, "Read-only file system"), "the filesystem is read-only"),
    ],
)
def test_a_full_disk_while_writing_pairs_stops_the_run_and_a_rerun_finishes(home, cli, monkeypatch, error, cause):
    out = home / "out"
    command = ("combine", home / "A", home / "B", out, "--workers", "1", "-q")
    monkeypatch.setattr(runner, "write_atomic", failing_after(2, error, runner.write_atomic))
    outside = tree(home, out)
    line = one_line(cli(*command), 1)
    assert cause in line and f"2 of 5 pairs are in {out}" in line and "then run the same command again" in line
    assert read_manifest(out)["incomplete"] is True
    monkeypatch.undo()
    again = cli(*command[:-1], "--json")
    assert again.code == 0, again.err
    assert again.json()["skipped"] == 2 and again.json()["written"] == 3 and again.json()["rejected"] == 0
    assert len(accounted(out, {"A": home / "A", "B": home / "B"})["items"]) == 5
    assert tree(home, out) == outside


def test_an_unwritable_output_folder_stops_the_run(home, cli, monkeypatch):
    out = home / "out"

    def refuse(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(runner, "write_atomic", refuse)
    line = one_line(cli("combine", home / "A", home / "B", out, "--workers", "1", "-q"), 1)
    assert "cannot write the output: Permission denied" in line and "0 of 5 pairs" in line


def test_out_of_memory_stops_the_run_instead_of_rejecting_every_pair(home, cli):
    out = home / "out"  # a million pixels square: OpenCV cannot allocate the 3 TB
    line = one_line(cli("combine", home / "A", home / "B", out, "--size", "1000000", "--workers", "1", "-q"), 1)
    assert "out of memory" in line and "0 of 5 pairs" in line and "fewer --workers" in line


def test_out_of_memory_in_pool_workers_stops_the_run(home, cli):
    out = home / "out"
    line = one_line(cli("combine", home / "A", home / "B", out, "--size", "1000000", "--workers", "2", "-q"), 1)
    assert "out of memory" in line


def test_a_full_disk_while_writing_the_manifest_is_one_line_and_a_rerun_finishes(home, cli, monkeypatch):
    from pairforge.prep import manifest

    out = home / "out"
    command = ("combine", home / "A", home / "B", out, "--workers", "1", "-q")
    real = manifest.atomic_file
    full = OSError(errno.ENOSPC, "No space left on device", str(out / ".manifest.json.1.tmp"))
    monkeypatch.setattr(manifest, "atomic_file", failing_after(1, full, real))  # the first (started) write passes
    assert "no space left on the device" in one_line(cli(*command), 1)
    monkeypatch.undo()
    assert cli(*command).code == 0
    assert len(accounted(out, {"A": home / "A", "B": home / "B"})["items"]) == 5


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_one(home, cli, monkeypatch):
    from pairforge.train import checkpoints

    data, runs = ab_dataset(home / "data"), home / "runs"
    assert (
        cli("train", "--dataroot", data, "--runs_dir", runs, "--name", "r", *TINY, "--max_steps", "1", "-q").code == 0
    )
    latest = runs / "r" / "checkpoints" / "latest.safetensors"
    saved = latest.read_bytes()

    def full(tensors, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", full)
    result = cli("train", "--name", "r", "--runs_dir", runs, "--continue", "--max_steps", "2", "-q")
    assert "no space left on the device" in one_line(result, 1)
    assert latest.read_bytes() == saved
    assert [p.name for p in latest.parent.iterdir()] == [latest.name]  # no half-written temporary file left


def test_the_stale_temporary_files_of_a_killed_run_are_removed_and_only_those(home, cli):
    out = home / "out"
    command = ("combine", home / "A", home / "B", out, "--workers", "1", "-q", "--split", "1,0,0")
    assert cli(*command).code == 0
    dead = 2**22 + 12345  # above pid_max's default: no such process
    stale = [out / "train" / f".p1.png.{dead}.tmp", out / f".manifest.json.{dead}.tmp"]
    kept = [
        out / "train" / ".mine.tmp",
        out / "train" / f"notes.{dead}.tmp",
        out / "train" / f".p2.png.{os.getpid()}.tmp",
    ]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert cli(*command).code == 0
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_a_interrupted_run_counts_the_pairs_on_disk(home, cli, monkeypatch):
    from contextlib import contextmanager

    out = home / "out"
    real = runner.progress_bar

    @contextmanager
    def interrupt_after_three(*args, **kwargs):
        with real(*args, **kwargs) as update:
            calls = {"n": 0}

            def counting(**values):
                calls["n"] += 1
                if calls["n"] == 3:
                    raise KeyboardInterrupt
                update(**values)

            yield counting

    monkeypatch.setattr(runner, "progress_bar", interrupt_after_three)
    line = one_line(cli("combine", home / "A", home / "B", out, "--workers", "1", "-q"), 130)
    on_disk = len(list(out.rglob("*.png")))
    assert on_disk == 3 and f"{on_disk} of 5 pairs are in {out}" in line
    monkeypatch.undo()  # the same command finishes the dataset, byte for byte as one uninterrupted run
    assert cli("combine", home / "A", home / "B", out, "--workers", "1", "-q").code == 0
    assert cli("combine", home / "A", home / "B", home / "clean", "--workers", "1", "-q").code == 0
    assert tree(out, out / "manifest.json") == tree(home / "clean", home / "clean" / "manifest.json")


def test_ctrl_c_on_a_real_pool_is_one_line_with_the_count_on_disk(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: workers print nothing, the count is exact."""
    write_pairs(tmp_path / "A", tmp_path / "B", [f"p{i:03d}" for i in range(200)], size=32)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pairforge.cli", "combine", "A", "B", "out", "--size", "512", "--workers", "2"]
    run = subprocess.Popen([*command, "-q"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list(out.glob("*/*.png")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGINT)
    err = run.communicate(timeout=60)[1]
    if run.returncode == 0:
        pytest.skip("the run finished before the interrupt")
    line = one_line(CliResult(run.returncode, "", err), 130)
    assert f"{len(list(out.glob('*/*.png')))} of 200 pairs are in out" in line


def test_ctrl_c_with_webdataset_is_one_line(home, cli, monkeypatch):
    from pairforge.prep import shards

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shards.ShardSink, "add", interrupt)
    out = home / "out"
    line = one_line(cli("combine", home / "A", home / "B", out, "--layout", "webdataset", "--workers", "1", "-q"), 130)
    assert "rebuilt on the next run" in line
    assert not list(out.glob("*.tar"))


def test_out_of_gpu_memory_while_training_is_one_line(home, cli, monkeypatch):
    import torch

    from pairforge.train import loop

    def no_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(loop, "build_model", no_memory)
    result = cli("train", "--dataroot", ab_dataset(home / "data"), "--runs_dir", home / "runs", *TINY, "-q")
    assert "out of GPU memory; use fewer --workers or smaller sizes or batches" in one_line(result, 1)


def test_a_full_temporary_disk_while_pairing_is_one_line_and_writes_nothing(home, cli, monkeypatch):
    """SQLite's temporary pairing database cannot grow: its page limit stands in for a full disk."""
    real_init = pair_table.PairTable.__init__

    def no_room(self, *args):
        real_init(self, *args)
        self._db.execute("PRAGMA max_page_count = 5")  # the pages its empty tables take

    monkeypatch.setattr(pair_table.PairTable, "__init__", no_room)
    out = home / "out"
    line = one_line(cli("combine", home / "A", home / "B", out, "-q"), 1)
    assert "pairing needs temporary disk space" in line and "database or disk is full" in line, line
    assert "set TMPDIR to a folder with room" in line
    assert not out.exists()
