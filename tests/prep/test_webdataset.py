"""`--layout webdataset`: tar shards that read back (with the webdataset library) to the pairs of the other layouts."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import webdataset as wds
from PIL import Image

from tests.conftest import load, pattern, read_manifest, save


def read_shards(out, split: str) -> dict[str, dict]:
    """Samples of a split's shards, read by the webdataset library: key -> {a, b (bytes), json (dict)}."""
    urls = sorted(str(p) for p in out.glob(f"{split}-*.tar"))
    samples = {}
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        item = json.loads(sample["json"])
        samples[item["key"]] = {"a": sample["a.png"], "b": sample["b.png"], "json": item, "url": sample["__url__"]}
    return samples


def make_inputs(tmp_path, names):
    a, b = tmp_path / "A", tmp_path / "B"
    for i, name in enumerate(names):
        save(a / f"{name}.png", pattern(24, 16, seed=i))
        save(b / f"{name}.png", pattern(24, 16, seed=100 + i))
    return a, b


def test_combine_webdataset_holds_the_pairs_of_the_other_layouts(tmp_path, cli):
    names = [f"im{i:02d}" for i in range(9)] + ["v1.2"]  # a key with a dot
    a, b = make_inputs(tmp_path, names)
    out = tmp_path / "out"
    args = ("--split", "0.7,0.3,0", "--format", "png", "--shard-size", "5KB", "--workers", "2", "-q")
    result = cli("combine", a, b, out, "--layout", "ab,unaligned,webdataset", *args)
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    shards = manifest["shards"]
    assert {s["path"] for s in shards} == {p.name for p in out.glob("*.tar")} and len(shards) > 2
    assert {split: sum(s["count"] for s in shards if s["split"] == split) for split in ("train", "val")} == {
        split: manifest["counts"][split] for split in ("train", "val")
    }
    for split in ("train", "val"):
        samples = read_shards(out, split)
        keys = sorted(it["key"] for it in manifest["items"] if it["split"] == split)
        assert sorted(samples) == keys
        for key, sample in samples.items():
            assert sample["a"] == (out / f"{split}A" / f"{key}.png").read_bytes()  # the unaligned layout's bytes
            assert sample["b"] == (out / f"{split}B" / f"{key}.png").read_bytes()
            ab = load(out / split / f"{key}.png")
            side_a = np.array(Image.open(io.BytesIO(sample["a"])))
            side_b = np.array(Image.open(io.BytesIO(sample["b"])))
            assert np.array_equal(np.concatenate([side_a, side_b], axis=1), ab)  # the ab layout's pixels
            assert sample["json"] == {"key": key, "split": split, "sources": {"A": f"{key}.png", "B": f"{key}.png"}}
        urls = [sample["url"] for _, sample in sorted(samples.items())]
        assert urls == sorted(urls)  # shards hold the keys in order
    with tarfile.open(next(out.glob("*.tar"))) as tar:
        assert all(m.mtime == 0 for m in tar.getmembers())
    assert cli("check", out, "-q").code == 0


def test_webdataset_rerun_is_byte_identical_and_check_finds_changes(tmp_path, cli):
    a, b = make_inputs(tmp_path, [f"k{i}" for i in range(6)])
    out = tmp_path / "out"
    args = ("--layout", "webdataset", "--split", "1,0,0", "--format", "png", "--shard-size", "4KB", "-q")
    assert cli("combine", a, b, out, *args, "--workers", "2").code == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    items = read_manifest(out)["items"]
    assert [o["path"].split("/")[1] for o in items[0]["outputs"]] == ["k0.a.png", "k0.b.png"]
    assert cli("combine", a, b, out, *args, "--workers", "1").code == 0
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == first
    assert not (out / ".webdataset.tmp").exists()
    shard = sorted(out.glob("*.tar"))[-1]
    data = bytearray(shard.read_bytes())
    data[600] ^= 0xFF  # inside the first member's image bytes (after its 512-byte tar header)
    shard.write_bytes(bytes(data))
    result = cli("check", out, "--json")
    assert result.code == 1 and "sha256 differs" in result.out


def test_shard_size_is_checked(tmp_path, cli):
    a, b = make_inputs(tmp_path, ["k"])
    result = cli("combine", a, b, tmp_path / "out", "--layout", "webdataset", "--shard-size", "lots")
    assert result.code == 2 and "--shard-size 'lots': expected a size such as 1GB" in result.err
