"""Files pair on their exact (NFC-normalised) names; the filesystem-safe form only names the output (issue 23, 4)."""

from __future__ import annotations

import unicodedata

import numpy as np
from PIL import Image

from pairforge.prep.pair_table import PairTable
from pairforge.prep.pairing import safe_key
from tests.conftest import load, pattern
from tests.hostile.conftest import accounted, tree


def write(folder, name, seed):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pattern(8, 8, seed)).save(folder / f"{name}.png")


def test_different_names_never_pair_and_equal_names_always_do(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    nfd = unicodedata.normalize("NFD", "café")
    sides = {  # name on A -> name on B (None: no partner)
        "猫": None,
        "café": nfd,  # the same name, stored decomposed (as macOS writes it)
        "cafè": None,
        "a+b": "a+b",
        "a&b": "a&b",
        "Foo": None,
    }
    for seed, (name, partner) in enumerate(sides.items()):
        write(a, name, 10 * seed)
        if partner:
            write(b, partner, 10 * seed + 1)
    for seed, name in enumerate(["犬", "foo"]):
        write(b, name, 100 + seed)
    before = tree(tmp_path, out)
    result = cli("combine", a, b, out, "--workers", "1", "--split", "1,0,0", "--json")
    assert result.code == 0, result.err
    assert tree(tmp_path, out) == before
    manifest = accounted(out, {"A": a, "B": b})
    pairs = {item["sources"]["A"]: item for item in manifest["items"]}
    assert sorted(pairs) == sorted(["café.png", "a+b.png", "a&b.png"])
    assert pairs["café.png"]["sources"]["B"] == f"{nfd}.png"
    assert pairs["a+b.png"]["sources"]["B"] == "a+b.png" and pairs["a&b.png"]["sources"]["B"] == "a&b.png"
    paths = [item["outputs"][0]["path"] for item in manifest["items"]]
    assert len(set(paths)) == 3 and all(path.isascii() for path in paths)
    for seed, name in ((30, "a+b"), (40, "a&b")):  # each output holds its own pair's pixels
        image = load(out / pairs[f"{name}.png"]["outputs"][0]["path"])
        assert np.array_equal(image[:, :8], pattern(8, 8, seed))
        assert np.array_equal(image[:, 8:], pattern(8, 8, seed + 1))
    unpaired = {r["paths"].get("A") or r["paths"].get("B") for r in manifest["rejected"]}
    assert unpaired == {"猫.png", "cafè.png", "Foo.png", "犬.png", "foo.png"}


def output_keys(keys) -> dict[str, str]:
    """Each key -> the output name a PairTable gives the file keyed by it."""
    table = PairTable()
    for key in keys:
        table.add_file("X", "", key, f"{key}.png")
    table.pair(["X"])
    return {pair.sources["X"].removesuffix(".png"): pair.key for pair in table}


def test_output_keys_are_distinct_deterministic_and_plain_names_unchanged():
    keys = ["a b", "a_b", "A_B", "plain", "猫", "犬", "x" * 3]
    names = output_keys(keys)
    assert names == output_keys(reversed(keys))
    assert names["plain"] == "plain" and names["xxx"] == "xxx"
    assert len({name.casefold() for name in names.values()}) == len(keys)
    assert all(name.startswith(safe_key(key)) for key, name in names.items())
    # a suffixed name that equals another key's plain name still gets its own output
    taken = names["a b"]
    again = output_keys(["a b", "a_b", taken])
    assert len({name.casefold() for name in again.values()}) == 3
