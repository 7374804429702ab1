"""`pairforge prep coco-pose`: selection, crop geometry, pose drawing, overlap rule, mask, splits and manifest,
on a miniature COCO layout with the real keypoints schema."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairforge.prep.transforms.pose import hue_palette
from tests.conftest import load, read_manifest

NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
]  # fmt: skip
SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10], [9, 11],
    [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]  # fmt: skip
# Where each keypoint sits in its person's box (fractions of width, height).
LAYOUT = [
    (0.5, 0.08), (0.45, 0.06), (0.55, 0.06), (0.4, 0.08), (0.6, 0.08), (0.3, 0.25), (0.7, 0.25), (0.2, 0.4),
    (0.8, 0.4), (0.15, 0.55), (0.85, 0.55), (0.38, 0.55), (0.62, 0.55), (0.38, 0.75), (0.62, 0.75), (0.38, 0.95),
    (0.62, 0.95),
]  # fmt: skip
EARS, WRISTS, ANKLE = (3, 4), (9, 10), 16  # the right ankle's dot is drawn last
BACKGROUND, BLOB = (120, 110, 100), (255, 255, 255)
W, H = 200, 160
FAST = ["--min-area", "1000", "--workers", "1", "-q"]


def keypoints(box, labelled: int = 17) -> list[int]:
    """COCO's flat [x, y, v] * 17: the first `labelled` placed in the box (wrists occluded, v=1), ears unlabelled."""
    x, y, w, h = box
    flat = []
    for index, (fx, fy) in enumerate(LAYOUT):
        if index >= labelled or index in EARS:
            flat += [0, 0, 0]
        else:
            flat += [round(x + fx * w), round(y + fy * h), 1 if index in WRISTS else 2]
    return flat


def person(ann_id: int, image_id: int, box, labelled: int = 17) -> dict:
    """A person annotation; its polygon is the middle half of the box's width, full height."""
    x, y, w, h = box
    poly = [x + w / 4, y, x + 3 * w / 4, y, x + 3 * w / 4, y + h, x + w / 4, y + h]
    kps = keypoints(box, labelled)
    return {
        "segmentation": [poly],
        "num_keypoints": sum(1 for v in kps[2::3] if v > 0),
        "area": w * h / 2,
        "iscrowd": 0,
        "keypoints": kps,
        "image_id": image_id,
        "bbox": list(box),
        "category_id": 1,
        "id": ann_id,
    }


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with a (maybe empty) run of 0s."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"counts": [0, *runs] if flat[0] else runs, "size": list(mask.shape)}


def as_rle(ann: dict) -> dict:
    """The same person with its polygon given as uncompressed RLE instead."""
    mask = np.zeros((H, W), bool)
    x0, y0, x1, _, _, y1, *_ = (round(v) for v in ann["segmentation"][0])
    mask[y0:y1, x0:x1] = True
    return {**ann, "segmentation": uncompressed_rle(mask)}


def crowd(ann_id: int, image_id: int, left: int) -> dict:
    """A crowd region covering columns >= left, as uncompressed RLE (as COCO stores crowds)."""
    mask = np.zeros((H, W), bool)
    mask[:, left:] = True
    return {
        "segmentation": uncompressed_rle(mask),
        "num_keypoints": 0,
        "area": (W - left) * H,
        "iscrowd": 1,
        "keypoints": [0] * 51,
        "image_id": image_id,
        "bbox": [left, 0, W - left, H],
        "category_id": 1,
        "id": ann_id,
    }


def photo(boxes=()) -> np.ndarray:
    """A plain photo with a white 7x7 blob centred on the right-ankle keypoint of each box."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = BACKGROUND
    for box in boxes:
        ax, ay = keypoints(box)[3 * ANKLE : 3 * ANKLE + 2]
        img[ay - 3 : ay + 4, ax - 3 : ax + 4] = BLOB
    return img


def jpeg(path: Path, array: np.ndarray, exif_orientation: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": 95}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(array).save(path, "JPEG", **kwargs)


CLEAN = (70, 20, 40, 100)  # window: side 130, left 25, top 5
BORDER = (0, 30, 40, 100)  # window: side 130, left -45, top 15 (45 padded columns)
OVERLAPPING = [(50, 20, 40, 100), (75, 25, 40, 100)]  # each box covers 24% of the other's crop


def write_set(root: Path, image_set: str, images: dict[int, np.ndarray | str | None], anns: list[dict]) -> None:
    """annotations/person_keypoints_<set>.json and <set>/<id>.jpg; an image value of None is not written,
    "corrupt" is a truncated JPEG, a tuple (array, orientation) has an EXIF orientation tag."""
    entries = []
    for image_id, content in images.items():
        name = f"{image_id:012d}.jpg"
        entries.append({"license": 1, "file_name": name, "coco_url": "", "height": H, "width": W, "id": image_id})
        path = root / image_set / name
        if isinstance(content, str):
            buf = io.BytesIO()
            Image.fromarray(photo()).save(buf, "JPEG")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        elif isinstance(content, tuple):
            jpeg(path, *content)
        elif content is not None:
            jpeg(path, content)
    category = {"supercategory": "person", "id": 1, "name": "person", "keypoints": NAMES, "skeleton": SKELETON}
    data = {
        "info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
        "licenses": [{"url": "", "id": 1, "name": "test"}],
        "images": entries,
        "annotations": anns,
        "categories": [category],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"person_keypoints_{image_set}.json").write_text(json.dumps(data))


@pytest.fixture
def coco(tmp_path) -> Path:
    root = tmp_path / "coco"
    val_images = {
        1: photo([CLEAN]),  # a clean person, one with too few keypoints, one too small
        2: photo([(10, 30, 30, 100)]),  # a crowd, a person inside it, a person clear of it (padded)
        3: photo(OVERLAPPING),
        4: photo([BORDER]),
        5: None,  # listed, file missing
        6: "corrupt",
        7: photo(),  # nobody
    }
    val_anns = [
        person(101, 1, CLEAN),
        person(102, 1, (165, 115, 20, 30), labelled=3),
        person(103, 1, (2, 2, 12, 16)),
        crowd(201, 2, 130),
        person(202, 2, (120, 30, 40, 100)),
        person(203, 2, (10, 30, 30, 100)),
        person(301, 3, OVERLAPPING[0]),
        person(302, 3, OVERLAPPING[1]),
        as_rle(person(401, 4, BORDER)),
        person(501, 5, CLEAN),
        person(601, 6, CLEAN),
    ]
    write_set(root, "val2017", val_images, val_anns)
    # EXIF says "rotate 90": COCO annotates the stored pixels, so it must be ignored.
    write_set(root, "train2017", {9: (photo([CLEAN]), 6)}, [person(901, 9, CLEAN)])
    return root


def halves(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = load(path)
    w = img.shape[1] // 2
    return img[:, :w], img[:, w:]


def centroid(weights: np.ndarray) -> np.ndarray:
    """(x, y) of the weighted centre of an HxW weight map, in pixel indices."""
    ys, xs = np.mgrid[: weights.shape[0], : weights.shape[1]]
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


def test_selection_rejections_keys_splits_and_manifest(coco, tmp_path, cli):
    out = tmp_path / "out"
    result = cli("prep", "coco-pose", coco, out, "--size", "64", "--min-area", "1000", "--workers", "1", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["counts"] == {"train": 1, "test": 3}
    assert summary["rejected_by_reason"] == {
        "crowd annotation": 1,
        "too few keypoints": 1,
        "person too small": 1,
        "a crowd region overlaps the crop": 1,
        "another person overlaps the crop": 2,
        "missing image file": 1,
        "corrupt image": 1,
        "no person annotated": 1,
    }
    manifest = read_manifest(out)
    items = {it["key"]: it for it in manifest["items"]}
    assert sorted(items) == ["000000000001_101", "000000000002_203", "000000000004_401", "000000000009_901"]
    assert items["000000000009_901"]["split"] == "train"  # written: the EXIF tag did not rotate it
    assert items["000000000001_101"]["sources"] == {
        "image": "val2017/000000000001.jpg",
        "annotation": "person_keypoints_val2017.json#101",
    }
    assert items["000000000001_101"]["outputs"][0]["path"] == "test/000000000001_101.png"
    assert (out / "test" / "000000000001_101.png").is_file()
    assert manifest["sources"] == {"image": str(coco), "annotation": str(coco / "annotations")}
    assert manifest["options"]["split"] == "official"
    assert manifest["options"]["format"] == ["png", "jpg"]
    # Every annotation is accounted for exactly once; the image without people is named too.
    refs = [it["sources"]["annotation"] for it in manifest["items"]]
    refs += [r["paths"]["annotation"] for r in manifest["rejected"] if "annotation" in r["paths"]]
    every = [101, 102, 103, 201, 202, 203, 301, 302, 401, 501, 601, 901]
    assert sorted(int(ref.split("#")[1]) for ref in refs) == every
    reasons = {
        r["paths"].get("annotation", r["paths"]["image"]).split("#")[-1]: r["reason"] for r in manifest["rejected"]
    }
    assert reasons["102"] == "too few keypoints (3 < --min-keypoints 8)"
    assert reasons["202"].startswith("a crowd region overlaps the crop (annotation 201 covers 54%")
    assert reasons["501"] == "missing image file (listed in person_keypoints_val2017.json)"
    assert reasons["601"].startswith("corrupt image:")
    assert reasons["val2017/000000000007.jpg"] == "no person annotated"

    check = cli("check", out, "--json")
    assert check.code == 0, check.out


def test_crop_window_and_pose_pixels_are_exact(coco, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("prep", "coco-pose", coco, out, "--size", "130", "--format", "png", *FAST).code == 0
    limbs, joints = hue_palette(len(SKELETON)), hue_palette(17)
    source = load(coco / "val2017" / "000000000001.jpg")
    pose, crop = halves(out / "test" / "000000000001_101.png")
    assert crop.shape == (130, 130, 3)
    assert np.abs(crop.astype(int) - source[5:135, 25:155]).max() <= 2  # square window, 15% margin, no resize
    kps = np.array(keypoints(CLEAN)).reshape(17, 3)
    for joint in (0, ANKLE):
        at = (kps[joint, 1] - 5, kps[joint, 0] - 25)  # photo pixel -> the same pixel of both halves
        assert tuple(pose[at]) == joints[joint]
    assert crop[kps[ANKLE, 1] - 5, kps[ANKLE, 0] - 25].min() > 245  # the white blob on the ankle
    shoulders = (kps[5, :2] + kps[6, :2]) // 2 - (25, 5)
    assert tuple(pose[shoulders[1], shoulders[0]]) == limbs[SKELETON.index([6, 7])]
    colours = {tuple(c) for c in pose.reshape(-1, 3)}
    assert not colours & {joints[i] for i in EARS + WRISTS}  # v=0 never drawn, v=1 only with --draw-occluded
    assert pose[:20, :20].max() == 0  # black canvas

    source = load(coco / "val2017" / "000000000004.jpg")
    pose, crop = halves(out / "test" / "000000000004_401.png")
    assert crop[:, :45].max() == 0 and pose[:, :45].max() == 0  # the window leaves the image: padded black
    assert np.abs(crop[:, 45:].astype(int) - source[15:145, :85]).max() <= 2


def test_keypoints_land_on_the_same_pixels_after_resizing(coco, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("prep", "coco-pose", coco, out, "--size", "96", *FAST).code == 0
    assert hue_palette(17)[ANKLE] == (255, 0, 90)
    for key in ("000000000001_101", "000000000004_401", "000000000002_203"):
        pose, crop = halves(out / "test" / f"{key}.png")
        blob = np.clip(crop.mean(axis=2) - 130, 0, None)  # the white blob on the ankle in the photo
        x, y = np.rint(centroid(blob)).astype(int)
        near = pose[y - 3 : y + 4, x - 3 : x + 4].astype(float)
        dot = near[:, :, 2]  # blue: the ankle's dot, blended over black or its limbs (whose blue is 0)
        offset = centroid(dot) + np.array([x - 3, y - 3]) - centroid(blob)
        assert np.abs(offset).max() < 0.3, key  # in output pixels


def test_draw_occluded_adds_the_occluded_wrists(coco, tmp_path, cli):
    wrists = {hue_palette(17)[i] for i in WRISTS}
    for flag, expected in (([], set()), (["--draw-occluded"], wrists)):
        out = tmp_path / f"out{len(flag)}"
        assert cli("prep", "coco-pose", coco, out, "--size", "128", *flag, *FAST).code == 0
        pose, _ = halves(out / "test" / "000000000001_101.png")
        assert {tuple(c) for c in pose.reshape(-1, 3)} & wrists == expected


def test_overlap_rule_follows_max_overlap(coco, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("prep", "coco-pose", coco, out, "--size", "64", "--max-overlap", "0.3", *FAST).code == 0
    manifest = read_manifest(out)
    keys = {it["key"] for it in manifest["items"]}
    assert {"000000000003_301", "000000000003_302"} <= keys  # 24% each: allowed now, two distinct pairs
    assert "000000000002_202" not in keys  # the crowd still covers 54% of its crop
    _, first = halves(out / "test" / "000000000003_301.png")
    _, second = halves(out / "test" / "000000000003_302.png")
    assert not np.array_equal(first, second)  # same pose drawing, each crop centred on its own person


def test_mask_background_blanks_all_but_the_person(coco, tmp_path, cli):
    plain, masked = tmp_path / "plain", tmp_path / "masked"
    args = ("--size", "130", "--format", "png", *FAST)
    assert cli("prep", "coco-pose", coco, plain, *args).code == 0
    assert cli("prep", "coco-pose", coco, masked, *args, "--mask-background").code == 0
    for key in ("000000000001_101", "000000000004_401"):  # a polygon, and an RLE segmentation
        pose_plain, crop_plain = halves(plain / "test" / f"{key}.png")
        pose, crop = halves(masked / "test" / f"{key}.png")
        assert np.array_equal(pose, pose_plain)
        # The person spans the middle half of its box: crop columns 55..75, rows 15..115 in both.
        assert crop[:, :53].max() == 0 and crop[:, 77:].max() == 0 and crop[:13].max() == 0, key
        assert np.array_equal(crop[17:113, 57:73], crop_plain[17:113, 57:73]), key
        assert crop_plain[20:, 47:53].min() > 90  # it was photo there before


def test_split_option_assigns_whole_images(coco, tmp_path, cli):
    out = tmp_path / "out"
    args = ("--size", "32", "--max-overlap", "0.3", "--split", "0.5,0,0.5", "--seed", "3", *FAST)
    assert cli("prep", "coco-pose", coco, out, *args).code == 0
    manifest = read_manifest(out)
    splits = {it["key"]: it["split"] for it in manifest["items"]}
    assert splits["000000000003_301"] == splits["000000000003_302"]
    assert set(splits.values()) <= {"train", "test"}
    assert manifest["options"]["split"] == "0.5,0,0.5" and manifest["options"]["seed"] == 3

    counted = tmp_path / "counted"
    result = cli("prep", "coco-pose", coco, counted, "--size", "32", "--split", "2,0,0", "--min-area", "1000", "--json")
    summary = result.json()  # counts are of images: 2 of the 5 with a selected person (one of them corrupt)
    assert summary["counts"] == {"train": 2} and summary["rejected_by_reason"]["beyond --split counts"] == 3


def test_two_workers_give_identical_files_and_a_rerun_resumes(coco, tmp_path, cli):
    one, two = tmp_path / "one", tmp_path / "two"
    assert cli("prep", "coco-pose", coco, one, "--size", "48", "--max-overlap", "0.3", *FAST).code == 0
    result = cli("prep", "coco-pose", coco, two, "--size", "48", "--max-overlap", "0.3", "--min-area", "1000",
                 "--workers", "2", "--json")  # fmt: skip
    assert result.code == 0 and result.json()["written"] == 6
    digests = [{it["key"]: it["outputs"][0]["sha256"] for it in read_manifest(d)["items"]} for d in (one, two)]
    assert digests[0] == digests[1]
    again = cli("prep", "coco-pose", coco, two, "--size", "48", "--max-overlap", "0.3", "--min-area", "1000", "--json")
    assert again.json()["skipped"] == 6 and again.json()["written"] == 0


def test_other_layouts_with_annotations_and_images(coco, tmp_path, cli):
    custom = tmp_path / "custom"
    (custom / "imgs").mkdir(parents=True)
    (coco / "val2017" / "000000000001.jpg").rename(custom / "imgs" / "000000000001.jpg")
    ann = custom / "people.json"
    ann.write_text((coco / "annotations" / "person_keypoints_val2017.json").read_text())
    (tmp_path / "unused").mkdir()
    base = ("prep", "coco-pose", tmp_path / "unused", tmp_path / "out")
    base += ("--annotations", ann, "--images", custom / "imgs")
    no_split = cli(*base, *FAST)
    assert no_split.code == 2 and "give --split" in no_split.err
    result = cli(*base, "--size", "32", "--split", "1,0,0", "--min-area", "1000", "--json")
    assert result.code == 0, result.err
    items = read_manifest(tmp_path / "out")["items"]
    assert [(it["key"], it["sources"]["image"]) for it in items] == [("000000000001_101", "imgs/000000000001.jpg")]


def test_bad_inputs_are_one_line_errors(coco, tmp_path, cli):
    missing = cli("prep", "coco-pose", tmp_path / "nowhere", tmp_path / "o")
    assert missing.code == 2 and "does not exist" in missing.err and "cocodataset.org" in missing.err
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("prep", "coco-pose", empty, tmp_path / "o")
    assert result.code == 2 and "person_keypoints_{train,val}2017.json" in result.err
    result = cli("prep", "coco-pose", coco, tmp_path / "o", "--images", coco / "val2017")
    assert result.code == 2 and "--images needs --annotations" in result.err
    (coco / "annotations" / "person_keypoints_val2017.json").write_text('{"images": [')
    result = cli("prep", "coco-pose", coco, tmp_path / "o")
    assert result.code == 1 and "not a readable COCO annotation file" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    help_text = cli("prep", "coco-pose", "--help").out
    assert "Examples:" in help_text and "--mask-background" in help_text
