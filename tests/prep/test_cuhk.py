"""`pairforge prep cuhk`: messy CUHK names -> one key per face, fits, sketch channels, splits, --rename-only."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.conftest import load, pattern, read_manifest, save

ARGS = ["--workers", "1", "-q"]
PW, PH = 48, 64  # photos: 768x1024-ish, scaled down
SW, SH = 20, 25  # sketches: 200x250, scaled down
RED, BLUE = (200, 30, 30), (30, 30, 200)
# photo name -> sketch name, as the student set spells them (or misspells them)
FACES = {
    "f-005-01.jpg": "f2-005-01-sz1.jpg",
    "f1-005-01.jpg": "f1-005-01-sz1.jpg",  # f1- stays f1-: a different face from f-005-01
    "F-006-01.JPG": "F2-006-01-SZ1.jpg",
    "m-010-01.jpg": "M2-010-01-sz1.JPG",
    "m1-012-01.jpg": "m1-012-01-sz1.jpg",
    "m-013-01.jpg": "m2-013-01.jpg",  # no -sz1 tag
}
KEYS = ["f-005-01", "f-006-01", "f1-005-01", "m-010-01", "m-013-01", "m1-012-01"]


def photo(seed: int) -> np.ndarray:
    """Red left half, blue right half, a little texture per face."""
    img = np.zeros((PH, PW, 3), np.uint8)
    img[:, : PW // 2], img[:, PW // 2 :] = RED, BLUE
    return (img + pattern(PW, PH, seed) // 16).astype(np.uint8)


def sketch(gray_jpeg: bool) -> np.ndarray:
    """White paper on top, dark strokes below; a tinted RGB scan or a gray JPEG."""
    img = np.full((SH, SW, 3), 250, np.uint8)
    img[SH // 2 :] = (40, 46, 40)
    return img[:, :, 0] if gray_jpeg else img


def make_cuhk(root, photos="photos", sketches="sketches") -> None:
    for i, (photo_name, sketch_name) in enumerate(FACES.items()):
        save(root / photos / photo_name, photo(i), quality=95)
        save(root / sketches / sketch_name, sketch(gray_jpeg=i % 2 == 0), quality=95)


def halves(path):
    img = load(path)
    return img[:, : img.shape[1] // 2], img[:, img.shape[1] // 2 :]


def test_messy_names_pair_by_face_photo_left_sketch_right(tmp_path, cli):
    make_cuhk(tmp_path / "cuhk", photos="Photo", sketches="SKETCHES")
    save(tmp_path / "cuhk" / "Photo" / "f-099-01.jpg", photo(9))  # no sketch
    save(tmp_path / "cuhk" / "SKETCHES" / "f2-098-01-sz1.jpg", sketch(False))  # no photo
    save(tmp_path / "cuhk" / "SKETCHES" / "f-005-01-sz1.jpg", sketch(False))  # a second sketch of f-005-01
    (tmp_path / "cuhk" / "Photo" / "Thumbs.db").write_bytes(b"\0")
    out = tmp_path / "out"
    result = cli("prep", "cuhk", tmp_path / "cuhk", out, "--size", "16", "--split", "1,0,0", *ARGS)
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    items = {it["key"]: it["sources"] for it in manifest["items"]}
    assert sorted(items) == [k for k in KEYS if k != "f-005-01"]
    assert items["m-010-01"] == {"A": "m-010-01.jpg", "B": "M2-010-01-sz1.JPG"}
    assert items["f-006-01"] == {"A": "F-006-01.JPG", "B": "F2-006-01-SZ1.jpg"}
    reasons = {next(iter(r["paths"].items())): r["reason"] for r in manifest["rejected"]}
    assert reasons == {
        ("A", "f-099-01.jpg"): "no matching B file",
        ("B", "f2-098-01-sz1.jpg"): "no matching A file",
        ("A", "f-005-01.jpg"): "no matching B file",
        ("B", "f2-005-01-sz1.jpg"): "ambiguous key 'f-005-01': f-005-01-sz1.jpg, f2-005-01-sz1.jpg",
        ("B", "f-005-01-sz1.jpg"): "ambiguous key 'f-005-01': f-005-01-sz1.jpg, f2-005-01-sz1.jpg",
        ("A", "Thumbs.db"): "not an image file (.db)",
    }
    with Image.open(out / "train" / "m-010-01.jpg") as img:
        assert (img.mode, img.size) == ("RGB", (32, 16))
    left, right = halves(out / "train" / "m-010-01.jpg")
    assert np.abs(left[8, 2].astype(int) - RED).max() < 40 and np.abs(left[8, 13].astype(int) - BLUE).max() < 40
    inner = right[:, 2:].astype(int)  # away from the JPEG seam with the photo
    assert (inner[2] > 220).all() and (inner[13] < 70).all()  # the sketch: paper on top, strokes below
    assert np.abs(inner - inner[:, :, :1]).max() <= 3  # gray content (up to JPEG noise)


def test_fit_modes_on_different_aspects(tmp_path, cli):
    make_cuhk(tmp_path / "cuhk")
    sizes = {}
    for mode in ("cover", "contain", "stretch"):
        out = tmp_path / mode
        args = ["--fit", mode, "--size", "32x16", "--split", "1,0,0", "--format", "png"]
        assert cli("prep", "cuhk", tmp_path / "cuhk", out, *args, *ARGS).code == 0
        left, right = halves(out / "train" / "m-010-01.png")
        sizes[mode] = left.shape, right.shape
        if mode == "contain":  # 48x64 scaled to 12x16, padded white left and right
            assert (left[:, :10] == 255).all() and (left[:, 22:] == 255).all()
            assert np.abs(left[8, 12].astype(int) - RED).max() < 40
        if mode == "cover":  # 48x64 scaled to 32x43, centre rows kept: red then blue, no padding
            assert np.abs(left[:, 4].astype(int) - RED).max() < 40 and np.abs(left[:, 28].astype(int) - BLUE).max() < 40
            assert (right[0] > 220).all() and (right[-1] < 70).all()
        if mode == "stretch":
            assert (right[1] > 220).all() and (right[-2] < 70).all()
    assert set(sizes.values()) == {((16, 32, 3), (16, 32, 3))}


def test_one_channel_sketches_need_a_sided_layout(tmp_path, cli):
    make_cuhk(tmp_path / "cuhk")
    result = cli("prep", "cuhk", tmp_path / "cuhk", tmp_path / "o1", "--sketch-channels", "1", *ARGS)
    assert result.code == 2 and "--layout ab cannot hold" in result.err
    out = tmp_path / "o2"
    args = ["--sketch-channels", "1", "--layout", "unaligned", "--size", "16", "--split", "4,1,1"]
    assert cli("prep", "cuhk", tmp_path / "cuhk", out, *args, *ARGS).code == 0
    with Image.open(next((out / "trainB").iterdir())) as img:
        assert (img.mode, img.size) == ("L", (16, 16))
    with Image.open(next((out / "trainA").iterdir())) as img:
        assert img.mode == "RGB"
    assert read_manifest(out)["counts"] == {"test": 1, "train": 4, "val": 1}


def test_split_counts_are_seeded_and_deterministic(tmp_path, cli):
    make_cuhk(tmp_path / "cuhk")

    def splits(name, *extra):
        out = tmp_path / name
        assert cli("prep", "cuhk", tmp_path / "cuhk", out, "--size", "8", "--split", "3,1,1", *extra, *ARGS).code == 0
        manifest = read_manifest(out)
        assert manifest["counts"] == {"test": 1, "train": 3, "val": 1}
        (beyond,) = manifest["rejected"]
        assert beyond["reason"] == "beyond --split counts (3,1,1)" and set(beyond["paths"]) == {"A", "B"}
        return {it["key"]: it["split"] for it in manifest["items"]}

    first = splits("a")
    assert splits("b") == first
    assert any(splits(f"s{seed}", "--seed", str(seed)) != first for seed in (1, 2, 3))


def test_rename_only_copies_bytes_under_normalised_names(tmp_path, cli):
    make_cuhk(tmp_path / "cuhk")
    (tmp_path / "cuhk" / "sketches" / "m1-012-01-sz1.jpg").write_bytes(b"\xff\xd8\xff broken")
    out = tmp_path / "renamed"
    result = cli(
        "prep", "cuhk", tmp_path / "cuhk", out, "--rename-only", "--split", "1,0,0", "--json", "--workers", "2"
    )
    assert result.code == 0, result.err
    assert result.json()["written"] == 5
    assert sorted(p.name for p in (out / "photos").iterdir()) == [f"{k}.jpg" for k in KEYS if k != "m1-012-01"]
    assert sorted(p.name for p in (out / "sketches").iterdir()) == [f"{k}.jpg" for k in KEYS if k != "m1-012-01"]
    src = tmp_path / "cuhk"
    assert (out / "sketches" / "m-010-01.jpg").read_bytes() == (src / "sketches" / "M2-010-01-sz1.JPG").read_bytes()
    assert (out / "photos" / "f-006-01.jpg").read_bytes() == (src / "photos" / "F-006-01.JPG").read_bytes()
    manifest = read_manifest(out)
    assert manifest["layouts"] == ["renamed"] and manifest["options"]["rename_only"] is True
    (rejected,) = manifest["rejected"]
    assert rejected["paths"] == {"A": "m1-012-01.jpg", "B": "m1-012-01-sz1.jpg"}
    assert rejected["reason"].startswith("corrupt image:")
    assert cli("check", out, "-q").code == 0


def test_missing_folders_are_usage_errors(tmp_path, cli):
    result = cli("prep", "cuhk", tmp_path / "nowhere", tmp_path / "out")
    assert result.code == 2 and "photo(s)/ and sketch(es)/" in result.err
    (tmp_path / "cuhk" / "photos").mkdir(parents=True)
    (tmp_path / "cuhk" / "Photo").mkdir()
    result = cli("prep", "cuhk", tmp_path / "cuhk", tmp_path / "out")
    assert result.code == 2 and "several photo/photos folders (Photo, photos)" in result.err
    result = cli("prep", "cuhk", tmp_path / "cuhk", tmp_path / "out", "--photos", tmp_path / "cuhk" / "photos")
    assert result.code == 2 and "no sketch/sketches folder" in result.err and "--sketches" in result.err
    assert "Traceback" not in result.err
