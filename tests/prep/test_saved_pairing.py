"""The pairing saved in the output folder: reused while the input folders are unchanged, never when one changed."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from pairforge.prep import pair_table, saved_pairing
from pairforge.prep.saved_pairing import NAME
from tests.conftest import pattern, read_manifest, save

TICK_S = 0.05
"""Longer than a file system clock tick (1-10 ms): a folder changed after it is seen to change."""


@pytest.fixture
def listings(monkeypatch):
    """The folders listed in this test (a list that grows), every folder taken as settled (not just changed)."""
    listed = []
    real = pair_table.PairTable._add_entries

    def counted(self, root, prefix, *args):
        listed.append(f"{root.name}/{prefix}")
        return real(self, root, prefix, *args)

    monkeypatch.setattr(pair_table.PairTable, "_add_entries", counted)
    monkeypatch.setattr(saved_pairing, "SETTLE_S", -60.0)
    return listed


def make_inputs(root, names_a, names_b):
    for folder, names in (("A", names_a), ("B", names_b)):
        for i, name in enumerate(names):
            save(root / folder / name, pattern(16, 16, seed=i))
    return root / "A", root / "B"


def dataset(out) -> tuple[list, list]:
    manifest = read_manifest(out)
    items = [(it["split"], it["key"], it["sources"], it["outputs"]) for it in manifest["items"]]
    return items, manifest["rejected"]


def test_an_unchanged_re_run_takes_the_saved_pairing_and_verify_lists_again(tmp_path, cli, listings):
    names = [f"{i:02d}.png" for i in range(8)]
    a, b = make_inputs(tmp_path, [*names, "only_a.png"], [*names, "x.png", "x.jpg"])
    (a / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    first = cli("combine", a, b, out, "--json", "--workers", "1")
    assert first.code == 0 and first.json()["written"] == 8 and first.json()["rejected"] == 4
    assert sorted(listings) == ["A/", "B/"] and (out / NAME).is_file()
    made = dataset(out)

    listings.clear()
    again = cli("combine", a, b, out, "--json")
    assert again.code == 0, again.err
    assert (again.json()["skipped"], again.json()["rejected"]) == (8, 4)
    assert listings == [] and dataset(out) == made  # the same pairs, splits and rejections, no folder listed

    verified = cli("combine", a, b, out, "--json", "--verify")
    assert verified.json()["skipped"] == 8 and sorted(listings) == ["A/", "B/"] and dataset(out) == made


def test_a_file_added_or_removed_in_any_listed_folder_is_seen(tmp_path, cli, listings):
    names = [f"train/{i}.png" for i in range(4)] + [f"val/{i}.png" for i in range(2)]
    a, b = make_inputs(tmp_path, names, names)
    out = tmp_path / "out"
    assert cli("combine", a, b, out, "-q", "--workers", "1").code == 0
    assert sorted(listings) == ["A/", "A/train/", "A/val/", "B/", "B/train/", "B/val/"]
    time.sleep(TICK_S)
    save(a / "train" / "new.png", pattern(16, 16, seed=9))  # the top folders A/ and B/ do not change
    save(b / "train" / "new.png", pattern(16, 16, seed=9))
    (b / "val" / "1.png").unlink()
    listings.clear()
    again = cli("combine", a, b, out, "--json").json()
    assert len(listings) == 6 and (again["written"], again["skipped"], again["rejected"]) == (1, 5, 1)
    items, rejected = dataset(out)
    assert [(split, key) for split, key, *_ in items if split == "train"][-1] == ("train", "new")
    assert rejected[0]["paths"] == {"A": "val/1.png"} and rejected[0]["reason"] == "no matching B file"


def test_folders_changed_just_before_their_listing_are_not_trusted(tmp_path, cli, listings, monkeypatch):
    a, b = make_inputs(tmp_path, ["1.png", "2.png"], ["1.png", "2.png"])
    out = tmp_path / "out"
    everything_train = ("--split", "1,0,0")
    assert cli("combine", a, b, out, *everything_train, "-q").code == 0 and (out / NAME).is_file()
    monkeypatch.setattr(saved_pairing, "SETTLE_S", 2.0)  # as it is: A/ and B/ were just written
    save(a / "3.png", pattern(16, 16, seed=3))
    save(b / "3.png", pattern(16, 16, seed=3))
    again = cli("combine", a, b, out, *everything_train, "--json").json()
    assert again["written"] == 1 and not (out / NAME).exists()  # the saved one no longer holds: deleted
    listings.clear()
    assert cli("combine", a, b, out, *everything_train, "--json").json()["skipped"] == 3 and len(listings) == 2


def test_other_pairing_options_list_again(tmp_path, cli, listings):
    a, b = make_inputs(tmp_path, ["p1_x.png", "p2_x.png"], ["p1_y.png", "p2_y.png"])
    out = tmp_path / "out"
    first = cli("combine", a, b, out, "--json", "--match", r"(?P<key>p\d)_")
    assert first.json()["written"] == 2
    listings.clear()
    other = cli("combine", a, b, out, "--json", "--overwrite", "--a-suffix", "_x", "--b-suffix", "_y")
    assert other.json()["written"] == 2 and len(listings) == 2  # a plan saved for --match is not taken


def test_a_damaged_saved_pairing_is_ignored_and_replaced(tmp_path, cli, listings):
    a, b = make_inputs(tmp_path, ["1.png", "2.png"], ["1.png", "2.png"])
    out = tmp_path / "out"
    cli("combine", a, b, out, "-q")
    made = dataset(out)
    (out / NAME).write_bytes(b"not a database")
    listings.clear()
    again = cli("combine", a, b, out, "--json")
    assert again.code == 0 and again.json()["skipped"] == 2 and len(listings) == 2 and dataset(out) == made
    listings.clear()
    assert cli("combine", a, b, out, "--json").json()["skipped"] == 2 and listings == []  # replaced by a good one


def test_a_full_disk_while_saving_the_pairing_is_one_line(tmp_path, cli, monkeypatch):
    def full(*args):
        exc = sqlite3.OperationalError("database or disk is full")
        exc.sqlite_errorcode = sqlite3.SQLITE_FULL
        raise exc

    monkeypatch.setattr(saved_pairing, "SETTLE_S", -60.0)
    monkeypatch.setattr(saved_pairing, "save", full)
    a, b = make_inputs(tmp_path, ["1.png"], ["1.png"])
    result = cli("combine", a, b, tmp_path / "out", "-q")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"error: saving the pairing in {tmp_path / 'out'} (database or disk is full)")


def test_a_rename_is_seen_even_with_the_folder_mtime_set_back(tmp_path, cli, listings):
    """Tools that restore times (`touch -d`, rsync, tar) can put a folder's mtime back, never its ctime."""
    a, b = make_inputs(tmp_path, ["1.png", "2.png"], ["1.png", "2.png"])
    out = tmp_path / "out"
    assert cli("combine", a, b, out, "--split", "1,0,0", "-q").code == 0
    before = b.stat()
    time.sleep(TICK_S)
    (b / "2.png").rename(b / "3.png")
    os.utime(b, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert b.stat().st_mtime_ns == before.st_mtime_ns
    again = cli("combine", a, b, out, "--split", "1,0,0", "--json").json()
    assert (again["skipped"], again["rejected"]) == (1, 2) and len(listings) == 4
    assert sorted(r["paths"].popitem()[1] for r in read_manifest(out)["rejected"]) == ["2.png", "3.png"]
