"""`pairforge prep celeba`, `pairforge edges` and `pairforge rmbg` on miniature raw layouts."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from pairforge.prep.imageio import read_rgb
from pairforge.prep.transforms.edges import EdgeSpec, edge_image
from pairforge.prep.transforms.resize import fit
from tests.conftest import load, read_manifest, same_files, save
from tests.prep.portraits import kept_and_removed, portrait
from tests.prep.rembg_model import threshold_model

QUICK = ["--size", "64", "--workers", "1", "-q"]
GREEN = (0, 255, 0)


def face(seed: int, width: int = 178, height: int = 218) -> np.ndarray:
    """An aligned-CelebA look-alike: a bright face (skin, hair, eyes, mouth) on a dark textured background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 25 * ((xx + 2 * yy + seed * 7) // 9 % 2)
    image = np.stack([20 + stripes, 35 + stripes // 2, 60 + stripes], -1) + rng.integers(0, 20, (height, width, 3))
    cx, cy = width // 2, int(height * 0.55)

    def ellipse(x, y, rx, ry):
        return ((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2 <= 1

    image[ellipse(cx, cy - 30, 62, 55)] = (190, 150, 90)  # hair
    image[ellipse(cx, cy, 50, 66)] = (225, 190, 160) - seed % 5 * np.array([4, 4, 4])  # skin
    for ex in (cx - 20, cx + 20):
        image[ellipse(ex, cy - 12, 9, 5)] = (170, 130, 120)  # eyes
    image[ellipse(cx, cy + 30, 18, 6)] = (200, 120, 120)  # mouth
    return image.clip(0, 255).astype(np.uint8)


def subject_of(size: tuple[int, int] = (178, 218), margin: int = 0) -> np.ndarray:
    """Where `face` draws the subject (hair or skin), resized to `size`; grown (or shrunk) by `margin` pixels."""
    yy, xx = np.mgrid[0:218, 0:178]
    cx, cy = 89, int(218 * 0.55)
    hair = ((xx - cx) / 62) ** 2 + ((yy - cy + 30) / 55) ** 2 <= 1
    subject = (hair | (((xx - cx) / 50) ** 2 + ((yy - cy) / 66) ** 2 <= 1)).astype(np.uint8)
    subject = fit(subject, size, "stretch", "nearest")
    kernel = np.ones((2 * abs(margin) + 1,) * 2, np.uint8)
    return (cv2.dilate(subject, kernel) if margin > 0 else cv2.erode(subject, kernel)) > 0


def celeba(root, names, partition: dict[str, int] | None = None):
    """A raw CelebA folder: `img_align_celeba/<name>` JPEGs and, if given, `list_eval_partition.txt`."""
    for i, name in enumerate(names):
        save(root / "img_align_celeba" / name, face(i), quality=90)
    if partition is not None:
        (root / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, s in partition.items()))
    return root


def halves(path):
    image = load(path)
    return image[:, : image.shape[1] // 2], image[:, image.shape[1] // 2 :]


def test_partition_is_honoured_and_messy_inputs_are_rejected_with_reasons(tmp_path, cli):
    names = [f"{i:06d}.jpg" for i in range(1, 9)]
    src = celeba(tmp_path / "celeba", names, {f"{i:06d}.jpg": (0, 0, 0, 0, 0, 1, 1, 2, 2)[i - 1] for i in range(1, 10)})
    images = src / "img_align_celeba"
    jpeg = (images / "000004.jpg").read_bytes()
    (images / "000004.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # truncated
    (images / "000005.jpg").write_bytes(b"")  # zero bytes
    save(images / "000010.jpg", face(10), quality=90)  # not in the list
    (images / "Thumbs.db").write_bytes(b"\0")
    out = tmp_path / "out"
    result = cli("prep", "celeba", src, out, "--bg", "none", *QUICK[:-1], "--json")
    assert result.code == 0, result.err
    assert result.json()["counts"] == {"test": 1, "train": 3, "val": 2}
    manifest = read_manifest(out)
    splits = {it["key"]: it["split"] for it in manifest["items"]}
    assert splits == {"000001": "train", "000002": "train", "000003": "train", "000006": "val", "000007": "val"} | {
        "000008": "test"
    }
    reasons = {r["paths"]["image"]: r["reason"] for r in manifest["rejected"]}
    assert reasons["000004.jpg"].startswith("corrupt image:")
    assert reasons["000005.jpg"] == "empty file (0 bytes)"
    assert reasons["000009.jpg"] == "missing: listed in list_eval_partition.txt, not in img_align_celeba/"
    assert reasons["000010.jpg"] == "not in list_eval_partition.txt"
    assert reasons["Thumbs.db"] == "not an image file (.db)"
    assert manifest["options"]["split"] == "list_eval_partition.txt"
    # A = edges of B, B = the photo centre-cropped and resized; the ab file is PNG because A is exact
    a, b = halves(out / "train" / "000002.png")
    photo = cv2.resize(read_rgb(images / "000002.jpg")[20:198], (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(b, photo)
    assert np.array_equal(a, edge_image(photo, EdgeSpec(blur=1.0)))
    assert set(np.unique(a)) == {0, 255} and (a == 0).mean() < 0.3  # black lines on white
    assert cli("prep", "celeba", src, out, "--bg", "none", *QUICK, "--strict").code == 1


def test_limit_takes_the_first_images_overall_or_per_split(tmp_path, cli):
    names = [f"{i:06d}.jpg" for i in (1, 2, 4, 5, 6, 7, 8)]  # 000003 is listed but missing
    partition = {f"{i:06d}.jpg": (0, 0, 0, 0, 0, 1, 1, 2)[i - 1] for i in range(1, 9)}
    src = celeba(tmp_path / "celeba", names, partition)
    base = ["--bg", "none", "--size", "16", "--workers", "1", "--json"]
    result = cli("prep", "celeba", src, tmp_path / "o1", "--limit", "3", *base)
    manifest = read_manifest(tmp_path / "o1")
    assert [it["key"] for it in manifest["items"]] == ["000001", "000002", "000004"]
    assert [r["paths"]["image"] for r in manifest["rejected"]] == ["000003.jpg"]  # inside the window
    assert manifest["options"]["limit"] == "3"
    result = cli("prep", "celeba", src, tmp_path / "o2", "--limit", "1,2,0", *base)
    assert result.json()["counts"] == {"train": 1, "val": 2}
    assert read_manifest(tmp_path / "o2")["rejected"] == []  # 000003 lies beyond the first train image
    result = cli("prep", "celeba", src, tmp_path / "o3", "--limit", "1,2", *base)
    assert result.code == 2 and "--limit '1,2'" in result.err


def test_without_partition_file_splits_come_from_split_and_seed(tmp_path, cli):
    src = celeba(tmp_path / "celeba", [f"{i:06d}.jpg" for i in range(1, 7)])
    args = ["--bg", "none", "--size", "16", "--workers", "1", "--split", "3,1,1", "--json"]
    first = cli("prep", "celeba", src, tmp_path / "o1", *args)
    assert first.code == 0, first.err
    assert first.json()["counts"] == {"test": 1, "train": 3, "val": 1}
    manifest = read_manifest(tmp_path / "o1")
    assert [r["reason"] for r in manifest["rejected"]] == ["beyond --split counts (3,1,1)"]
    assert manifest["options"]["split"] == "3,1,1" and manifest["options"]["seed"] == 0
    cli("prep", "celeba", src, tmp_path / "o2", *args)
    assert same_files(tmp_path / "o2") == same_files(manifest)  # same keys, splits and bytes


def test_rembg_removes_the_background_with_a_model_file_and_keeps_masks(tmp_path, cli):
    src = celeba(tmp_path / "celeba", ["000001.jpg", "000002.jpg"], {"000001.jpg": 0, "000002.jpg": 2})
    model = threshold_model(tmp_path / "models" / "u2net_human_seg.onnx")
    out = tmp_path / "out"
    args = ["--bg-model", model, "--bg-fill", "#00ff00", "--keep-mask", "--layout", "split", "--canny", "20,60"]
    result = cli("prep", "celeba", src, out, *args, "--crop", "none", "--size", "89x109", "--format", "png", "-q")
    assert result.code == 0, result.err
    a, b = load(out / "train" / "A" / "000001.png"), load(out / "train" / "B" / "000001.png")
    mask = np.asarray(Image.open(out / "masks" / "train" / "000001.png"))
    assert mask.dtype == np.uint8 and mask.shape == (109, 89)
    inside, outside = subject_of((89, 109), -3), ~subject_of((89, 109), 3)  # a soft edge between
    assert (mask[inside] == 255).all() and (mask[outside] == 0).all()
    photo = cv2.resize(read_rgb(src / "img_align_celeba" / "000001.jpg"), (89, 109), interpolation=cv2.INTER_AREA)
    assert np.array_equal(b[mask == 255], photo[mask == 255])  # the subject keeps its pixels
    assert (b[mask == 0] == GREEN).all()  # the background is the fill colour
    edges = a[:, :, 0] == 0
    assert edges.any() and (mask[edges] >= 128).all()  # edges only on the subject
    manifest = read_manifest(out)
    assert manifest["layouts"] == ["split", "mask"]
    assert manifest["options"]["bg_model"] == "u2net_human_seg.onnx"
    assert manifest["options"]["bg_model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert sorted(o["path"] for it in manifest["items"] for o in it["outputs"] if o["layout"] == "mask") == [
        "masks/test/000002.png",
        "masks/train/000001.png",
    ]
    assert cli("check", out, "-q").code == 0


def test_default_formats_are_png_edges_and_jpeg_photos(tmp_path, cli):
    src = celeba(tmp_path / "celeba", ["000001.jpg"], {"000001.jpg": 0})
    rect = ["--grabcut-rect", "0.1,0.05,0.9,1"]
    result = cli("prep", "celeba", src, tmp_path / "out", "--bg", "grabcut", *rect, "--layout", "unaligned,ab", *QUICK)
    assert result.code == 0, result.err
    assert (tmp_path / "out" / "trainA" / "000001.png").is_file()
    assert (tmp_path / "out" / "trainB" / "000001.jpg").is_file()
    assert (tmp_path / "out" / "train" / "000001.png").is_file()
    b = load(tmp_path / "out" / "trainB" / "000001.jpg")
    assert (b[:, :3] > 240).all()  # grabcut: the sides outside the rectangle are background, filled white
    assert read_manifest(tmp_path / "out")["options"]["grabcut_rect"] == [0.1, 0.05, 0.9, 1.0]


def test_grabcut_by_default_keeps_the_whole_person_of_aligned_portraits(tmp_path, cli):
    truths = {}
    for seed in range(4):
        photo, truths[f"{seed + 1:06d}"] = portrait(seed)
        save(tmp_path / "celeba" / "img_align_celeba" / f"{seed + 1:06d}.jpg", photo, quality=95)
    out = tmp_path / "out"
    result = cli(
        "prep", "celeba", tmp_path / "celeba", out, "--bg", "grabcut", "--keep-mask", "--split", "4,0,0", *QUICK
    )
    assert result.code == 0, result.err
    shares = []
    for key, person in truths.items():
        mask = np.asarray(Image.open(out / "masks" / "train" / f"{key}.png"))
        truth = cv2.resize(person[20:198].astype(np.uint8), (64, 64), interpolation=cv2.INTER_NEAREST) > 0
        shares.append(kept_and_removed(mask, truth))
    kept, removed = np.array(shares).T
    assert kept.mean() >= 0.9 and kept.min() >= 0.75 and removed.mean() >= 0.85
    assert read_manifest(out)["options"]["grabcut_rect"] == "portrait"


def test_missing_model_is_one_line_usage_error_and_nothing_is_downloaded(tmp_path, cli, monkeypatch):
    import pooch

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(pooch, "retrieve", no_download)
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "home"))
    src = celeba(tmp_path / "celeba", ["000001.jpg"], {"000001.jpg": 0})
    for extra in ([], ["--bg-model", tmp_path / "nope.onnx"], ["--bg-model", "isnet-general-use"]):
        result = cli("prep", "celeba", src, tmp_path / "out", *extra, *QUICK)
        assert result.code == 2
        assert result.err.count("\n") == 1 and "--bg-model" in result.err and "Traceback" not in result.err
    threshold_model(tmp_path / "home" / "u2net.onnx")  # rembg's own model folder holds the default model
    assert cli("prep", "celeba", src, tmp_path / "out", *QUICK).code == 0
    assert len(read_manifest(tmp_path / "out")["items"]) == 1


def test_layout_errors_are_usage_errors(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    result = cli("prep", "celeba", tmp_path / "empty", tmp_path / "out", "--bg", "none")
    assert result.code == 2 and "img_align_celeba" in result.err and "CelebA.html" in result.err
    src = celeba(tmp_path / "celeba", ["000001.jpg"])
    (src / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg train\n")
    result = cli("prep", "celeba", src, tmp_path / "out", "--bg", "none", "-q")
    assert result.code == 1 and "line 2" in result.err
    result = cli("prep", "celeba", src, tmp_path / "out", "--bg", "none", "--keep-mask", "-q")
    assert result.code == 2 and "--keep-mask" in result.err


def test_kaggles_nested_image_folder_is_accepted(tmp_path, cli):
    src = tmp_path / "celeba"
    save(src / "img_align_celeba" / "img_align_celeba" / "000001.jpg", face(1), quality=90)
    (src / "list_eval_partition.txt").write_text("000001.jpg 1\n")
    result = cli("prep", "celeba", src, tmp_path / "out", "--bg", "none", "--size", "16", "--json")
    assert result.code == 0, result.err
    assert result.json()["counts"] == {"val": 1}


def test_two_workers_each_open_the_model_and_match_one_worker(tmp_path, cli):
    names = [f"{i:06d}.jpg" for i in range(1, 9)]
    src = celeba(tmp_path / "celeba", names, dict.fromkeys(names, 0))
    model = threshold_model(tmp_path / "models" / "u2net.onnx")
    args = ["--bg-model", model, "--size", "48", "-q"]
    assert cli("prep", "celeba", src, tmp_path / "w1", *args, "--workers", "1").code == 0
    assert cli("prep", "celeba", src, tmp_path / "w2", *args, "--workers", "2").code == 0
    one, two = read_manifest(tmp_path / "w1"), read_manifest(tmp_path / "w2")
    assert len(two["items"]) == 8 and two["rejected"] == []
    assert [it["outputs"] for it in same_files(one)] == [it["outputs"] for it in same_files(two)]
    result = cli("prep", "celeba", src, tmp_path / "w2", *args[:-1], "--workers", "1", "--json")
    assert result.json()["skipped"] == 8  # a re-run resumes


def test_edges_command_pairs_any_folder(tmp_path, cli):
    src = tmp_path / "shoes"
    for i in range(5):
        save(src / f"shoe {i}.png", face(i, 40, 30))
    out = tmp_path / "out"
    args = ["--size", "32", "--canny", "50,150", "--thickness", "2", "--edge-style", "white-on-black"]
    result = cli("edges", src, out, *args, "--split", "3,1,1", "--workers", "1", "--json")
    assert result.code == 0, result.err
    assert result.json()["counts"] == {"test": 1, "train": 3, "val": 1}
    item = read_manifest(out)["items"][0]
    a, b = halves(out / item["outputs"][0]["path"])
    photo = cv2.resize(read_rgb(src / item["sources"]["image"])[:, 5:35], (32, 32), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(b, photo)
    assert np.array_equal(a, edge_image(photo, EdgeSpec((50, 150), 1.0, 2, "white-on-black")))
    assert item["key"].startswith("shoe_")


def test_rmbg_writes_transparent_or_filled_images_with_the_input_structure(tmp_path, cli):
    src = tmp_path / "photos"
    save(src / "train" / "a.jpg", face(1), quality=95)
    save(src / "test" / "b.png", face(2))
    model = threshold_model(tmp_path / "models" / "u2net.onnx")
    result = cli("rmbg", src, tmp_path / "cut", "--bg-model", model, "--keep-mask", "--workers", "1", "-q")
    assert result.code == 0, result.err
    assert cli("check", tmp_path / "cut", "-q").code == 0
    with Image.open(tmp_path / "cut" / "test" / "b.png") as img:
        assert img.mode == "RGBA"
        rgba = np.asarray(img)
    mask = np.asarray(Image.open(tmp_path / "cut" / "masks" / "test" / "b.png"))
    assert np.array_equal(rgba[:, :, 3], mask)
    assert np.array_equal(rgba[:, :, :3], face(2))  # colours untouched, transparency carries the removal
    assert (mask[subject_of(margin=-3)] == 255).all() and (mask[~subject_of(margin=3)] == 0).all()
    result = cli("rmbg", src, tmp_path / "white", "--bg", "grabcut", "--bg-fill", "white", "--workers", "1", "-q")
    assert result.code == 0, result.err
    filled = load(tmp_path / "white" / "train" / "a.jpg")
    assert (filled[:, :5] > 235).all()
    result = cli("rmbg", src, tmp_path / "x", "--bg", "grabcut", "--format", "jpg")
    assert result.code == 2 and "transparency" in result.err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--bg", "magic"], "--bg"),
        (["--bg", "none", "--bg-fill", "pink"], "--bg-fill"),
        (["--bg", "none", "--canny", "9,3"], "--canny"),
        (["--bg", "none", "--crop", "left"], "--crop"),
        (["--bg", "none", "--edge-style", "red"], "--edge-style"),
        (["--bg", "none", "--alpha-matting"], "--alpha-matting"),
        (["--bg", "grabcut", "--grabcut-rect", "0.5,0,0.4,1"], "--grabcut-rect"),
        (["--bg", "rembg", "--bg-device", "tpu"], "--bg-device"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(tmp_path, cli, flags, named):
    src = celeba(tmp_path / "celeba", ["000001.jpg"])
    result = cli("prep", "celeba", src, tmp_path / "out", *flags)
    assert result.code == 2, result.err
    assert named in result.err and result.err.count("\n") == 1
