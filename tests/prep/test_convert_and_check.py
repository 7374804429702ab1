"""`pairforge split`, `unpair`, `pair` and `check`."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.conftest import load, pattern, read_manifest, same_files, save


def ab_image(seed: int, width: int = 24, height: int = 16) -> np.ndarray:
    return np.concatenate([pattern(width, height, seed), pattern(width, height, 100 + seed)], axis=1)


def test_split_copies_files_unchanged_into_deterministic_splits(tmp_path, cli):
    src = tmp_path / "flat"
    for i in range(10):
        save(src / f"{i:02d}.jpg", ab_image(i), quality=90)
    save(src / "odd.jpg", pattern(25, 16, 1))
    result = cli("split", src, tmp_path / "out", "--split", "6,2,2", "--json")
    assert result.code == 0, result.err
    # splits are assigned before decoding: a file rejected while building leaves its split one short
    assert result.json()["planned"] == 10 and sum(result.json()["counts"].values()) == 9
    manifest = read_manifest(tmp_path / "out")
    for item in manifest["items"]:
        out_file = tmp_path / "out" / item["outputs"][0]["path"]
        assert out_file.read_bytes() == (src / item["sources"]["AB"]).read_bytes()
    reasons = {r["paths"]["AB"]: r["reason"] for r in manifest["rejected"]}
    assert len(reasons) == 2 and reasons["odd.jpg"] == "odd width 25: not an A|B pair image"
    assert "beyond --split counts (6,2,2)" in reasons.values()  # 11 inputs, 10 places
    cli("split", src, tmp_path / "again", "--split", "6,2,2", "-q")
    assert same_files(tmp_path / "again") == same_files(manifest)


def test_unpair_then_pair_round_trips_pixels(tmp_path, cli):
    root = tmp_path / "ds"
    for i in range(3):
        save(root / "train" / f"k{i}.png", ab_image(i))
    save(root / "test" / "t0.png", ab_image(7))
    assert cli("unpair", root, "-q").code == 0  # default output: ds_unaligned
    unaligned = tmp_path / "ds_unaligned"
    assert np.array_equal(load(unaligned / "trainA" / "k1.png"), pattern(24, 16, 1))
    assert np.array_equal(load(unaligned / "testB" / "t0.png"), pattern(24, 16, 107))
    (unaligned / "trainB" / "k2.png").unlink()  # now unmatched on the A side
    assert cli("pair", unaligned, tmp_path / "back", "-q").code == 0
    manifest = read_manifest(tmp_path / "back")
    assert {it["key"] for it in manifest["items"]} == {"k0", "k1", "t0"}
    assert {
        "paths": {"A": "trainA/k2.png"},
        "reason": "no matching B file",
        "kind": "no matching B file",
    } in (manifest["rejected"])
    assert np.array_equal(load(tmp_path / "back" / "test" / "t0.png"), ab_image(7))
    assert cli("unpair", root, tmp_path / "sp", "--layout", "split", "-q").code == 0
    assert np.array_equal(load(tmp_path / "sp" / "train" / "B" / "k0.png"), pattern(24, 16, 100))


def test_pair_refuses_an_ab_dataset(tmp_path, cli):
    save(tmp_path / "ds" / "train" / "x.png", ab_image(1))
    result = cli("pair", tmp_path / "ds")
    assert result.code == 2 and "already an ab dataset" in result.err


def test_check_finds_missing_changed_corrupt_and_unexpected_files(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    for i in range(4):
        save(a / f"{i}.png", pattern(16, 16, i))
        save(b / f"{i}.png", pattern(16, 16, 10 + i))
    cli("combine", a, b, out, "--split", "1,0,0", "-q")
    clean = cli("check", out, "--json")
    assert clean.code == 0 and clean.json()["ok"] and clean.json()["files"] == 4
    (out / "train" / "0.png").unlink()
    Image.fromarray(pattern(32, 16, 99)).save(out / "train" / "1.png")
    (out / "train" / "2.png").write_bytes((out / "train" / "2.png").read_bytes()[:50])
    save(out / "train" / "stray.png", pattern(8, 8))
    result = cli("check", out, "--json")
    assert result.code == 1
    problems = {p["path"]: p["problem"] for p in result.json()["problems"]}
    assert problems == {
        "train/0.png": "missing file",
        "train/1.png": "changed file: sha256 differs from the manifest",
        "train/2.png": "changed file: sha256 differs from the manifest",
        "train/stray.png": "unexpected file: not in the manifest",
    }
    table = cli("check", out)
    assert table.code == 1 and "missing file" in table.out


def test_check_without_manifest_is_one_line_error(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    result = cli("check", tmp_path / "empty")
    assert result.code == 1
    assert result.err.count("\n") == 1 and "no manifest.json" in result.err


def test_manifest_is_json_with_sorted_items(tmp_path, cli):
    src = tmp_path / "flat"
    for i in range(5):
        save(src / f"{4 - i}.png", ab_image(i))
    cli("split", src, tmp_path / "out", "--split", "1,0,0", "-q")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [it["key"] for it in manifest["items"]] == ["0", "1", "2", "3", "4"]
