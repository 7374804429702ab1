"""Strange inputs end in a rejection with its reason or in one line with the documented exit code (issue 23, 7-9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import pattern, read_manifest, tar_gz
from tests.hostile.conftest import TINY, ab_dataset, accounted, one_line, tree, write_pairs


def test_a_symlink_loop_among_the_inputs_is_rejected_and_the_run_goes_on(home, cli):
    for side in "AB":
        os.symlink("loop.png", home / side / "loop.png")
    os.symlink("dir", home / "A" / "dir")
    out = home / "out"
    result = cli("combine", home / "A", home / "B", out, "--workers", "1", "-q")
    assert result.code == 0, result.err
    manifest = accounted(out, {"A": home / "A", "B": home / "B"})
    reasons = {r["paths"].get("A"): r["reason"] for r in manifest["rejected"]}
    assert "symbolic links" in reasons["loop.png"] and len(manifest["items"]) == 5


def test_broken_images_are_rejected_with_their_reasons(home, cli):
    (home / "A" / "p0.png").write_bytes(b"")
    (home / "A" / "p1.png").write_bytes((home / "A" / "p1.png").read_bytes()[:60])
    (home / "A" / "p2.png").write_bytes(b"not an image at all")
    Image.new("1", (15000, 15000)).save(home / "A" / "p3.png")  # 225 MP in a few KB
    out = home / "out"
    assert cli("combine", home / "A", home / "B", out, "--workers", "1", "-q").code == 0
    reasons = {r["paths"]["A"]: r["reason"] for r in accounted(out, {"A": home / "A", "B": home / "B"})["rejected"]}
    assert reasons["p0.png"] == "empty file (0 bytes)"
    assert reasons["p1.png"].startswith("corrupt image") and reasons["p2.png"].startswith("corrupt image")
    assert reasons["p3.png"].startswith("decompression bomb refused")
    strict = cli("combine", home / "A", home / "B", out, "--workers", "1", "-q", "--strict")
    assert strict.code == 1


def test_a_looping_output_folder_is_one_line(home, cli):
    os.symlink("L2", home / "L1")
    os.symlink("L1", home / "L2")
    before = tree(home)
    assert "symbolic link loop" in one_line(cli("combine", home / "A", home / "B", home / "L1"), 2)
    assert tree(home) == before


def test_an_output_that_is_a_file_is_one_line(home, cli):
    before = tree(home)
    assert "is a file" in one_line(cli("combine", home / "A", home / "B", home / "notes.txt"), 2)
    assert tree(home) == before


def test_wide_and_float_tiffs_are_rejected_with_their_real_reason(home, cli):
    Image.fromarray(np.full((16, 16), 100_000, np.int32)).save(home / "A" / "wide.tif")
    _, data = cv2.imencode(".tiff", np.random.default_rng(0).random((16, 16, 3)).astype(np.float32))
    (home / "A" / "float.tif").write_bytes(data.tobytes())
    Image.fromarray(np.full((16, 16), 0.5, np.float32)).save(home / "A" / "gray.tif")
    for name in ("wide", "float", "gray"):
        Image.fromarray(pattern(16, 16)).save(home / "B" / f"{name}.png")
    out = home / "out"
    assert cli("combine", home / "A", home / "B", out, "--workers", "1", "-q").code == 0
    reasons = {r["paths"]["A"]: r["reason"] for r in accounted(out, {"A": home / "A", "B": home / "B"})["rejected"]}
    assert "100000..100000 beyond 0..65535" in reasons["wide.tif"]
    assert "floating-point" in reasons["float.tif"] and "floating-point" in reasons["gray.tif"]


def test_recipes_that_are_not_utf8_or_are_folders_are_one_line(tmp_path, cli):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    assert "not UTF-8" in one_line(cli("run", bad), 2)
    (tmp_path / "folder.toml").mkdir()
    assert "is a folder" in one_line(cli("run", tmp_path / "folder.toml"), 2)


@pytest.fixture
def serve(home, monkeypatch):
    """Writes an archive beside the home folder's files and returns its file:// URL."""
    monkeypatch.setenv("PAIRFORGE_HOME", str(home / ".cache"))

    def make(files: dict[str, bytes], name: str = "set.tar.gz") -> str:
        path = home / name
        path.write_bytes(tar_gz(files))
        return path.as_uri()

    return make


def test_a_corrupt_image_in_an_archive_is_rejected_and_a_rerun_works(home, cli, serve):
    good = (home / "A" / "p0.png").read_bytes()
    url = serve({"set/train/0.png": good, "set/train/1.png": good[:40], "set/test/0.png": good})
    out = home / "set"
    assert cli("fetch", "set", out, "--url", url, "-q").code == 0
    manifest = read_manifest(out)
    assert [r["paths"]["archive"] for r in manifest["rejected"]] == ["train/1.png"]
    assert "corrupt image" in manifest["rejected"][0]["reason"]
    assert not (out / "train" / "1.png").exists() and len(manifest["items"]) == 2
    again = cli("fetch", "set", out, "--url", url)
    assert again.code == 0 and "already fetched" in again.out


def test_an_archive_bomb_is_refused_before_anything_is_written(home, cli, serve):
    url = serve({"set/train/big.png": bytes(8 * 2**20), "set/train/0.png": (home / "A" / "p0.png").read_bytes()})
    before = tree(home, home / ".cache")
    assert "unpacks" in one_line(cli("fetch", "set", home / "set", "--url", url, "-q"), 1)
    assert tree(home, home / ".cache", home / ".set.download") == before  # the download is kept (resumable)


def test_an_archive_larger_than_the_free_space_is_refused_before_extracting(home, cli, serve, monkeypatch):
    from pairforge.prep import fetch

    url = serve({"set/train/0.png": (home / "A" / "p0.png").read_bytes()})
    monkeypatch.setattr(fetch.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    assert "GiB free" in one_line(cli("fetch", "set", home / "set", "--url", url, "-q"), 1)
    assert not (home / "set").exists()


WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pairforge.prep.executors import LocalPool

    def nothing(state):
        pass

    def report(shard):
        return [os.getpid()]

    if __name__ == "__main__":
        pool = LocalPool(report, nothing, (), 2)
        pids = {pid for _, pids in pool.map_shards([[1], [2], [3], [4]]) for pid in pids}
        print(" ".join(map(str, sorted(pids))), flush=True)
        time.sleep(60)
    """
)


def test_pool_workers_die_with_their_parent(tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(WORKER_SCRIPT)
    parent = subprocess.Popen([sys.executable, script], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert workers
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    survivors = [pid for pid in workers if _alive(pid)]
    for pid in survivors:  # do not leave them running when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has died
    except FileNotFoundError:
        return False


def test_translate_skips_and_reports_unreadable_inputs(home, cli):
    data, runs = ab_dataset(home / "data"), home / "runs"
    assert (
        cli("train", "--dataroot", data, "--runs_dir", runs, "--name", "r", *TINY, "--max_steps", "1", "-q").code == 0
    )
    inputs = home / "in"
    inputs.mkdir()
    Image.fromarray(pattern(32, 32)).save(inputs / "good.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = cli("translate", runs / "r", inputs, home / "out", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["translated"] == 1 and list(summary["skipped"]) == ["broken.png"]
    assert [p.name for p in (home / "out").iterdir()] == ["good.png"]


def test_a_rerun_rebuilds_an_output_damaged_on_disk(home, cli):
    out = home / "out"
    command = ("combine", home / "A", home / "B", out, "--workers", "1", "-q")
    assert cli(*command).code == 0
    damaged = next(out.rglob("*.png"))
    damaged.write_bytes(damaged.read_bytes()[:-20] + bytes(20))
    assert cli(*command).code == 0
    assert cli("check", out, "-q").code == 0


def test_pairs_written_with_the_same_names_twice_are_one_input_each(tmp_path, cli):
    write_pairs(tmp_path / "A", tmp_path / "B", ["x"])
    Image.fromarray(pattern(16, 16, 9)).save(tmp_path / "A" / "x.jpg")  # x.png and x.jpg: the same key
    out = tmp_path / "out"
    assert cli("combine", tmp_path / "A", tmp_path / "B", out, "--workers", "1", "-q").code == 0
    reasons = {
        r["paths"].get("A"): r["reason"] for r in accounted(out, {"A": tmp_path / "A", "B": tmp_path / "B"})["rejected"]
    }
    assert reasons["x.jpg"].startswith("ambiguous key") and reasons["x.png"].startswith("ambiguous key")
