"""Scale: the manifest is read one record at a time; a re-run keeps only files that match the previous manifest
(size and mtime, else sha256; always sha256 under --verify) and rebuilds the rest; pools take work as it comes."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from pairforge.errors import PairforgeError
from pairforge.prep.check import check_dataset
from pairforge.prep.executors import IN_FLIGHT, LocalPool
from pairforge.prep.manifest import Manifest, ManifestBuilder, ManifestReader
from tests.conftest import pattern, read_manifest, same_files, save


def write_manifest_of(root: Path, n: int) -> None:
    builder = ManifestBuilder(Manifest(command=["test"], sources={"A": "/a"}, options={}, layouts=["ab"]))
    for i in range(n):
        output = {"layout": "ab", "path": f"train/{i:06d}.jpg", "sha256": f"{i:064x}", "width": 64, "height": 32}
        builder.add_item({"key": f"{i:06d}", "split": "train", "sources": {"A": f"{i:06d}.jpg"}, "outputs": [output]})
    builder.write(root)


def reading_peak(root: Path) -> int:
    tracemalloc.start()
    reader = ManifestReader(root)
    count = sum(1 for _ in reader.items())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == reader.item_count
    return peak


def test_reading_a_manifest_takes_the_same_memory_for_1k_and_20k_items(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    small.mkdir()
    large.mkdir()
    write_manifest_of(small, 1_000)
    write_manifest_of(large, 20_000)
    assert (large / "manifest.json").stat().st_size > 15 * (small / "manifest.json").stat().st_size
    small_peak, large_peak = reading_peak(small), reading_peak(large)
    assert large_peak < small_peak * 1.2 + 20_000, (small_peak, large_peak)


def test_items_are_validated_one_at_a_time_as_they_are_read(tmp_path):
    write_manifest_of(tmp_path, 50)
    path = tmp_path / "manifest.json"
    path.write_text(path.read_text().replace('"key": "000040"', '"key": 40'))
    items = ManifestReader(tmp_path).items()
    assert [next(items).key for _ in range(40)][-1] == "000039"  # read before the bad record is reached
    with pytest.raises(PairforgeError, match=r"not a valid manifest \(items\.40\.key: Input should be a valid string"):
        next(items)


def test_a_manifest_rewritten_by_another_tool_is_still_read(tmp_path, cli):
    a, b, out = make_inputs(tmp_path, 6)
    assert cli("combine", a, b, out, "-q").code == 0
    manifest = read_manifest(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=4, sort_keys=True))
    reader = ManifestReader(out)
    assert [it.key for it in reader.items()] == [it["key"] for it in manifest["items"]]
    assert reader.header.options == manifest["options"] and check_dataset(out).ok


def make_inputs(tmp_path: Path, n: int) -> tuple[Path, Path, Path]:
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(n):
        save(a / f"{i:02d}.png", pattern(16, 16, i))
        save(b / f"{i:02d}.png", pattern(16, 16, 40 + i))
    return a, b, tmp_path / "out"


def tamper(path: Path, keep_mtime: bool) -> None:
    """Same size, other bytes; the modification time moves on, or is put back as it was."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    assert path.stat().st_size == before.st_size


def test_a_re_run_rebuilds_damaged_and_missing_outputs_and_keeps_the_rest(tmp_path, cli):
    a, b, out = make_inputs(tmp_path, 8)
    assert cli("combine", a, b, out, "--split", "1,0,0", "-q").code == 0
    good = {p.name: p.read_bytes() for p in (out / "train").iterdir()}
    tamper(out / "train" / "03.png", keep_mtime=False)
    (out / "train" / "05.png").unlink()
    assert not check_dataset(out).ok
    again = cli("combine", a, b, out, "--split", "1,0,0", "--json")
    assert again.code == 0, again.err
    assert {k: again.json()[k] for k in ("written", "rebuilt", "skipped")} == {"written": 2, "rebuilt": 2, "skipped": 6}
    assert {p.name: p.read_bytes() for p in (out / "train").iterdir()} == good
    assert check_dataset(out).ok and check_dataset(out, workers=1).ok
    assert not (out / ".manifest.previous.json").exists()


def test_re_runs_keep_the_manifest_one_record_per_line(tmp_path, cli):
    a, b, out = make_inputs(tmp_path, 4)
    for _ in range(3):  # each re-run copies the unchanged items' lines
        assert cli("combine", a, b, out, "-q").code == 0
        items = [line for line in (out / "manifest.json").read_text().splitlines() if '"key"' in line]
        assert len(items) == 4 and all(line.startswith('  {"key": ') for line in items)


def test_a_same_size_same_mtime_tamper_is_caught_by_check_and_rebuilt_under_verify(tmp_path, cli):
    a, b, out = make_inputs(tmp_path, 6)
    assert cli("combine", a, b, out, "--split", "1,0,0", "-q").code == 0
    good = (out / "train" / "02.png").read_bytes()
    tamper(out / "train" / "02.png", keep_mtime=True)
    cheap = cli("combine", a, b, out, "--split", "1,0,0", "--json")
    assert (cheap.json()["skipped"], cheap.json()["rebuilt"]) == (6, 0)  # size and mtime as recorded: trusted
    assert [p for p, _ in check_dataset(out).problems] == ["train/02.png"]
    verified = cli("combine", a, b, out, "--split", "1,0,0", "--verify", "--json")
    assert (verified.json()["skipped"], verified.json()["rebuilt"]) == (5, 1)
    assert (out / "train" / "02.png").read_bytes() == good and check_dataset(out).ok


def test_files_with_new_mtimes_but_the_same_bytes_are_re_hashed_and_kept(tmp_path, cli):
    a, b, out = make_inputs(tmp_path, 5)
    assert cli("combine", a, b, out, "-q").code == 0
    before = same_files(out)
    for path in out.rglob("*.png"):
        os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # a copy that did not keep the times
    again = cli("combine", a, b, out, "--json").json()
    assert (again["skipped"], again["written"]) == (5, 0)
    assert same_files(out) == before
    recorded = {o["path"]: o["mtime_ns"] for it in read_manifest(out)["items"] for o in it["outputs"]}
    assert recorded == {p: (out / p).stat().st_mtime_ns for p in recorded}  # the next re-run's cheap check passes


def test_the_local_pool_takes_shards_as_it_needs_them(tmp_path):
    pulled = []

    def shards():
        for i in range(100):
            pulled.append(i)
            yield [i]

    pool = LocalPool(_double, _no_init, (), 2)
    try:
        results = pool.map_shards(shards())
        first = next(results)
        assert first == ([0], [("done", {"value": 0})])
        assert len(pulled) <= 2 * IN_FLIGHT + 1  # not all 100 up front
        assert [shard[0] for shard, _ in results] == list(range(1, 100))
    finally:
        pool.close()


def _double(shard: list[int]) -> list[tuple[str, dict]]:
    return [("done", {"value": 2 * i}) for i in shard]


def _no_init(state: tuple) -> None:
    pass
