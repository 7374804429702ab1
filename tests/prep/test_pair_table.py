"""PairTable: the pairing rules applied on disk, with Python memory that does not grow with the number of files."""

from __future__ import annotations

import random
import string
import tracemalloc

import pytest

from pairforge.prep.combine import find_pairs
from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import KeyRule, Pair, Rejection, SplitSpec, assign_splits


@pytest.mark.parametrize("spec_text", ["0.8,0.1,0.1", "0.5,0,0.5", "170,8,10", "3,0,2"])
@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_splits_follow_the_hash_order_rule_of_assign_splits(spec_text, n):
    rng = random.Random(n)
    keys = sorted({"".join(rng.choices(string.ascii_letters + string.digits, k=6)) for _ in range(n)})
    spec = SplitSpec.parse(spec_text)
    table = PairTable()
    for key in keys:
        table.add_file("X", "", key, f"{key}.png")
    table.pair(["X"], spec, seed=7)
    expected = assign_splits([pair.key for pair in table] + [r.paths["X"][:-4] for r in table.rejections()], spec, 7)
    assert {pair.key: pair.split for pair in table} == {key: split for key, split in expected.items() if split}
    beyond = {r.paths["X"][:-4] for r in table.rejections()}
    assert beyond == {key for key, split in expected.items() if split is None}
    assert len(table) + len(beyond) == len(keys)


def test_pairs_come_back_in_split_then_key_order_whatever_order_they_were_found_in():
    pairs = [Pair(key, split, {"X": f"{key}.png"}) for split in ("val", "train") for key in ("b", "a", "é", "B")]
    table = PairTable.of(pairs, [Rejection({"X": "z.txt"}, "not an image file (.txt)")])
    assert [(p.split, p.key) for p in table] == sorted((p.split, p.key) for p in pairs)
    assert len(table) == 8 and table.extensions == {".png"}
    assert [(r.paths, r.kind) for r in table.rejections()] == [({"X": "z.txt"}, "not an image file")]


def test_one_sided_and_ambiguous_files_are_rejected_with_the_role_they_lack():
    table = PairTable()
    for role, split, key, rel in [
        ("A", "train", "1", "train/1.png"),
        ("B", "train", "1", "train/1.jpg"),
        ("A", "train", "2", "train/2.png"),  # no B
        ("B", "val", "1", "val/1.png"),  # same key, other split: no A
        ("A", "val", "3", "val/3.png"),
        ("A", "val", "3", "val/3.jpg"),  # two A files for one key: neither can pair
        ("B", "val", "3", "val/3.bmp"),
    ]:
        table.add_file(role, split, key, rel)
    table.pair(["A", "B"])
    assert [(p.split, p.key, p.sources) for p in table] == [("train", "1", {"A": "train/1.png", "B": "train/1.jpg"})]
    reasons = {next(iter(r.paths.values())): r.reason for r in table.rejections()}
    assert reasons == {
        "train/2.png": "no matching B file",
        "val/1.png": "no matching A file",
        "val/3.png": "ambiguous key '3': val/3.jpg, val/3.png",
        "val/3.jpg": "ambiguous key '3': val/3.jpg, val/3.png",
        "val/3.bmp": "no matching A file",
    }
    assert table.extensions == {".png", ".jpg"}


def python_peak_while_pairing(root, n: int) -> int:
    """Peak bytes of Python objects while `combine` pairs n files on each side and reads every pair back."""
    for side in "AB":
        (root / side).mkdir(parents=True)
        for i in range(n):
            (root / side / f"{i:06d} photo.jpg").touch()
    tracemalloc.start()
    table = find_pairs(root / "A", root / "B", KeyRule(), KeyRule(), SplitSpec.parse("0.8,0.1,0.1"), 0)
    assert sum(1 for _ in table) == len(table) == n
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_python_memory_of_pairing_does_not_grow_with_the_number_of_files(tmp_path):
    small = python_peak_while_pairing(tmp_path / "small", 1_000)
    large = python_peak_while_pairing(tmp_path / "large", 20_000)
    # a list of pairs would hold about 0.9 KB per pair: 17 MB more for the large folder
    assert large - small < 1_000_000, (small, large)
