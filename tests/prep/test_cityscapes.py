"""`pairforge prep cityscapes`: pairing by stem, official colours after resizing, splits, messy inputs, layouts."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.conftest import load, pattern, read_manifest, save, truncated_png

# A few rows of the official Cityscapes label table, typed here as an independent check: id -> colour, trainId.
ROAD, SIDEWALK, DYNAMIC, POLEGROUP, CAR, UNLABELED = 7, 8, 5, 18, 26, 0
COLOURS = {
    ROAD: (128, 64, 128),
    SIDEWALK: (244, 35, 232),
    DYNAMIC: (111, 74, 0),
    POLEGROUP: (153, 153, 153),
    CAR: (0, 0, 142),
    UNLABELED: (0, 0, 0),
}
IGNORED_IN_TRAINING = {DYNAMIC, POLEGROUP, UNLABELED}
W, H = 64, 32
FRAMES = {  # official split -> (city, seq, frame)
    "train": [("aachen", 0, 19), ("aachen", 1, 19), ("zurich", 3, 19)],
    "val": [("frankfurt", 0, 294)],
    "test": [("berlin", 0, 19)],
}
ARGS = ["--workers", "1", "-q"]


def label_ids(seed: int) -> np.ndarray:
    """Random ids from COLOURS in 4x2 blocks, so that any nearest-neighbour 4:1 x 2:1 reduction picks block values."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(list(COLOURS), size=(H // 2, W // 4)).astype(np.uint8)
    return np.repeat(np.repeat(blocks, 2, axis=0), 4, axis=1)


def colourise(ids: np.ndarray, train: bool = False) -> np.ndarray:
    out = np.zeros((*ids.shape, 3), np.uint8)
    for label_id, colour in COLOURS.items():
        out[ids == label_id] = (0, 0, 0) if train and label_id in IGNORED_IN_TRAINING else colour
    return out


def stem(city: str, seq: int, frame: int) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def make_frame(root, split, city, seq, frame, seed, photos="leftImg8bit", labels="gtFine", label=True, photo=True):
    """One frame as the official zips hold it: RGB photo PNG; RGBA colour, 8-bit labelIds, 16-bit instanceIds, json."""
    name = stem(city, seq, frame)
    if photo:
        save(root / photos / split / city / f"{name}_leftImg8bit.png", pattern(W, H, seed))
    if label:
        gt = root / labels / split / city
        ids = label_ids(seed)
        save(gt / f"{name}_gtFine_labelIds.png", ids)
        rgba = np.dstack([colourise(ids), np.full(ids.shape, 255, np.uint8)])
        save(gt / f"{name}_gtFine_color.png", rgba)
        instances = ids.astype(np.uint16) * 1000 + (ids == CAR)
        save(gt / f"{name}_gtFine_instanceIds.png", instances)
        (gt / f"{name}_gtFine_polygons.json").write_text(json.dumps({"imgHeight": H, "imgWidth": W, "objects": []}))


def make_cityscapes(root, **kwargs) -> None:
    seed = 0
    for split, frames in FRAMES.items():
        for city, seq, frame in frames:
            make_frame(root, split, city, seq, frame, seed, **kwargs)
            seed += 1


def halves(path):
    img = load(path)
    return img[:, : img.shape[1] // 2], img[:, img.shape[1] // 2 :]


def test_pairs_by_stem_photo_left_exact_official_colours_after_nearest(tmp_path, cli):
    make_cityscapes(tmp_path / "cs")
    out = tmp_path / "out"
    result = cli("prep", "cityscapes", tmp_path / "cs", out, "--size", "16", *ARGS)
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    keys = {it["key"]: it["split"] for it in manifest["items"]}
    assert keys == {
        "aachen_000000_000019": "train",
        "aachen_000001_000019": "train",
        "zurich_000003_000019": "train",
        "frankfurt_000000_000294": "test",  # val -> test, as the reference
    }
    assert manifest["rejected"] == []  # instanceIds, labelIds, polygons and the test split are not considered
    item = next(it for it in manifest["items"] if it["key"] == "aachen_000001_000019")
    assert item["sources"] == {
        "photo": "train/aachen/aachen_000001_000019_leftImg8bit.png",
        "label": "train/aachen/aachen_000001_000019_gtFine_color.png",
    }
    assert item["outputs"][0]["path"] == "train/aachen_000001_000019.png"
    with Image.open(out / "train" / "aachen_000001_000019.png") as img:
        assert (img.mode, img.size) == ("RGB", (32, 16))
    photo, label = halves(out / "train" / "aachen_000001_000019.png")
    expected_photo = pattern(W, H, 1).reshape(16, 2, 16, 4, 3).mean(axis=(1, 3))
    assert np.abs(photo - expected_photo).max() <= 1  # area average of the photo on the left
    assert np.array_equal(label, colourise(label_ids(1)[::2, ::4]))  # exact palette colours on the right


def test_label_sources_and_wide_size(tmp_path, cli):
    make_cityscapes(tmp_path / "cs")
    outputs = {}
    for source in ("color", "labelIds", "trainIds"):
        out = tmp_path / source
        result = cli("prep", "cityscapes", tmp_path / "cs", out, "--size", "32x16", "--label-source", source, *ARGS)
        assert result.code == 0, result.err
        assert read_manifest(out)["options"]["label_source"] == source
        outputs[source] = halves(out / "test" / "frankfurt_000000_000294.png")[1]
        assert outputs[source].shape == (16, 32, 3)
    ids = label_ids(3)[::2, ::2]
    assert np.array_equal(outputs["color"], colourise(ids))
    assert np.array_equal(outputs["labelIds"], colourise(ids))  # rendered with the official palette
    assert np.array_equal(outputs["trainIds"], colourise(ids, train=True))  # 19 classes, ignored ids black
    assert (outputs["trainIds"][ids == DYNAMIC] == 0).all()
    assert (outputs["trainIds"][ids == ROAD] == COLOURS[ROAD]).all()


def test_bicubic_reproduces_the_reference_script(tmp_path, cli):
    make_cityscapes(tmp_path / "cs")
    out = tmp_path / "out"
    args = ["--photo-resample", "bicubic", "--label-resample", "bicubic", "--size", "16"]
    assert cli("prep", "cityscapes", tmp_path / "cs", out, *args, *ARGS).code == 0
    photo, label = halves(out / "train" / "zurich_000003_000019.png")
    gt = tmp_path / "cs" / "gtFine" / "train" / "zurich"
    with Image.open(gt / "zurich_000003_000019_gtFine_color.png") as img:  # what the reference script does
        reference_label = np.asarray(img.convert("RGB").resize((16, 16)))
    assert np.array_equal(label, reference_label)
    assert np.array_equal(photo, np.asarray(Image.fromarray(pattern(W, H, 2)).resize((16, 16))))
    colours = {tuple(c) for c in label.reshape(-1, 3)}
    assert colours - set(COLOURS.values())  # blurred labels: colours outside the palette


def test_every_messy_input_is_paired_or_rejected_with_a_reason(tmp_path, cli):
    root, out = tmp_path / "cs", tmp_path / "out"
    make_cityscapes(root)
    make_frame(root, "train", "bremen", 0, 19, 20, label=False)  # photo without label
    make_frame(root, "train", "bremen", 1, 19, 21, photo=False)  # label without photo
    make_frame(root, "train", "ulm", 0, 19, 22)
    truncated_png(root / "leftImg8bit/train/ulm/ulm_000000_000019_leftImg8bit.png", W, H)
    make_frame(root, "train", "erfurt", 0, 19, 25)
    truncated_png(root / "gtFine/train/erfurt/erfurt_000000_000019_gtFine_labelIds.png", W, H)
    make_frame(root, "train", "jena", 0, 19, 23)  # a 16-bit map where the 8-bit labelIds belong
    save(root / "gtFine/train/jena/jena_000000_000019_gtFine_labelIds.png", label_ids(0).astype(np.uint16) * 300)
    make_frame(root, "train", "weimar", 0, 19, 24)  # label of another aspect ratio
    save(root / "gtFine/train/weimar/weimar_000000_000019_gtFine_labelIds.png", np.zeros((H, H), np.uint8))
    (root / "leftImg8bit/train/aachen/notes.txt").write_text("mine")
    (root / "leftImg8bit/train/aachen/.DS_Store").write_bytes(b"\0")
    (root / "gtFine/train/aachen/aachen_thumbnail.png").write_bytes(b"")
    result = cli("prep", "cityscapes", root, out, "--label-source", "labelIds", "--size", "16", "--json", *ARGS[:2])
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    assert result.json()["written"] == 4
    reasons = {tuple(sorted(r["paths"].items())): r["reason"] for r in manifest["rejected"]}
    photo = "train/{0}/{0}_000000_000019_leftImg8bit.png".format
    label = "train/{0}/{0}_{1:06d}_000019_gtFine_labelIds.png".format
    assert reasons[(("photo", photo("bremen")),)] == "no matching label file"
    assert reasons[(("label", label("bremen", 1)),)] == "no matching photo file"
    assert reasons[(("label", label("ulm", 0)), ("photo", photo("ulm")))].startswith("corrupt image:")
    assert reasons[(("label", label("erfurt", 0)), ("photo", photo("erfurt")))].startswith("corrupt image:")
    pair = (("label", label("jena", 0)), ("photo", photo("jena")))
    assert reasons[pair] == "not an 8-bit single-channel labelIds map (16-bit gray PNG)"
    pair = (("label", label("weimar", 0)), ("photo", photo("weimar")))
    assert reasons[pair] == "size mismatch: photo 64x32 vs label 32x32 (aspect ratios differ)"
    assert reasons[(("photo", "train/aachen/notes.txt"),)] == "not a Cityscapes photo name (*_leftImg8bit.png)"
    assert reasons[(("photo", "train/aachen/.DS_Store"),)] == "hidden file"
    assert reasons[(("label", "train/aachen/aachen_thumbnail.png"),)].startswith("not a Cityscapes gtFine name")
    assert len(reasons) == 9
    assert cli("prep", "cityscapes", root, tmp_path / "o2", "--strict", *ARGS).code == 1


def test_zip_folder_names_keep_val_include_test_and_unaligned(tmp_path, cli):
    root = tmp_path / "downloads"
    make_cityscapes(root, photos="leftImg8bit_trainvaltest/leftImg8bit", labels="gtFine_trainvaltest/gtFine")
    out = tmp_path / "out"
    result = cli("prep", "cityscapes", root, out, "--size", "16", "--keep-val", "--layout", "ab,unaligned", *ARGS)
    assert result.code == 0, result.err
    assert read_manifest(out)["counts"] == {"train": 3, "val": 1}
    assert sorted(p.name for p in (out / "valA").iterdir()) == ["frankfurt_000000_000294.jpg"]  # photos as A
    assert np.array_equal(load(out / "valB" / "frankfurt_000000_000294.png"), colourise(label_ids(3)[::2, ::4]))

    result = cli("prep", "cityscapes", root, tmp_path / "o2", "--include-test", *ARGS)
    assert result.code == 2 and "--keep-val" in result.err
    photos, labels = root / "leftImg8bit_trainvaltest" / "leftImg8bit", root / "gtFine_trainvaltest" / "gtFine"
    args = ["--photos", photos, "--labels", labels, "--keep-val", "--include-test", "--size", "16"]
    assert cli("prep", "cityscapes", tmp_path, tmp_path / "o3", *args, *ARGS).code == 0
    assert read_manifest(tmp_path / "o3")["counts"] == {"test": 1, "train": 3, "val": 1}


def test_two_workers_give_the_same_bytes_and_a_rerun_resumes(tmp_path, cli):
    make_cityscapes(tmp_path / "cs")
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli("prep", "cityscapes", tmp_path / "cs", one, "--size", "16", *ARGS).code == 0
    assert cli("prep", "cityscapes", tmp_path / "cs", two, "--size", "16", "--workers", "2", "-q").code == 0

    def hashes(root):
        return {o["path"]: o["sha256"] for it in read_manifest(root)["items"] for o in it["outputs"]}

    assert hashes(one) == hashes(two) and len(hashes(one)) == 4
    rerun = cli("prep", "cityscapes", tmp_path / "cs", two, "--size", "16", "--json", *ARGS[:2])
    assert rerun.json()["skipped"] == 4


def test_missing_input_and_bad_options_are_usage_errors(tmp_path, cli):
    result = cli("prep", "cityscapes", tmp_path / "nowhere", tmp_path / "out")
    assert result.code == 2
    assert "leftImg8bit/ and gtFine/" in result.err and "cityscapes-dataset.com" in result.err
    (tmp_path / "cs" / "leftImg8bit").mkdir(parents=True)
    result = cli("prep", "cityscapes", tmp_path / "cs", tmp_path / "out")
    assert result.code == 2 and "gtFine/ or gtFine_trainvaltest/gtFine/" in result.err
    result = cli("prep", "cityscapes", tmp_path / "cs", tmp_path / "out", "--label-source", "instanceIds")
    assert result.code == 2 and "color, labelIds, trainIds" in result.err
    assert "Traceback" not in result.err
