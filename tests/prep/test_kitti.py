"""`pairforge prep kitti`: a miniature KITTI depth tree (real folder and file names, 16-bit PNGs, unannotated
first/last frames, a corrupt and an 8-bit depth file) -> pairing, crops, encodings, validity, errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from pairforge.prep.transforms.depth import COLORMAP, DepthCoding, resize_depth
from tests.conftest import load, read_manifest, same_files, save, truncated_png

W, H = 48, 16  # real frames are 1242x375
DATE = "2011_09_26"
DRIVES = {"train": f"{DATE}_drive_0001_sync", "val": f"{DATE}_drive_0002_sync"}
UNANNOTATED_DRIVE = "2011_09_28_drive_0016_sync"
RAW_FRAMES, ANNOTATED_FRAMES = range(6), range(1, 5)
CORRUPT = ("train", "image_03", 2)
EIGHT_BIT = ("val", "image_02", 3)


def frame_name(i: int) -> str:
    return f"{i:010d}.png"


def rgb_frame(frame: int, camera: str) -> np.ndarray:
    """R = 5 * column, G = 10 * row: every pixel tells where it came from."""
    yy, xx = np.mgrid[0:H, 0:W]
    return np.dstack([xx * 5, yy * 10, np.full((H, W), frame * 20 + int(camera[-1]))]).astype(np.uint8)


def groundtruth(frame: int) -> np.ndarray:
    """uint16, metres * 256: column x is x + 1 metres (+ row / 256); no LiDAR in the top rows, scattered holes."""
    yy, xx = np.mgrid[0:H, 0:W]
    depth = ((xx + 1 + frame) * 256 + yy).astype(np.uint16)
    depth[:4] = 0
    depth[(xx * 7 + yy * 3) % 5 == 0] = 0
    return depth


def velodyne(frame: int) -> np.ndarray:
    depth = groundtruth(frame)
    yy, xx = np.mgrid[0:H, 0:W]
    depth[(xx + yy) % 3 != 0] = 0
    return depth


def make_kitti(root):
    """`root/data_depth_annotated`, `root/data_depth_velodyne` and `root/raw/<date>/<drive>/...` as unpacked."""
    for split, drive in DRIVES.items():
        for camera in ("image_02", "image_03"):
            raw = root / "raw" / DATE / drive
            for i in RAW_FRAMES:
                save(raw / camera / "data" / frame_name(i), rgb_frame(i, camera))
                save(raw / "image_00" / "data" / frame_name(i), rgb_frame(i, camera)[:, :, 0])  # grayscale camera
            (raw / camera / "timestamps.txt").write_text("2011-09-26 13:02:25.964389445\n")
            for i in ANNOTATED_FRAMES:
                for tree, kind, data in (
                    ("data_depth_annotated", "groundtruth", groundtruth(i)),
                    ("data_depth_velodyne", "velodyne_raw", velodyne(i)),
                ):
                    path = root / tree / split / drive / "proj_depth" / kind / camera / frame_name(i)
                    if kind == "groundtruth" and (split, camera, i) == CORRUPT:
                        truncated_png(path)
                    elif kind == "groundtruth" and (split, camera, i) == EIGHT_BIT:
                        save(path, (data // 256).astype(np.uint8))
                    else:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        assert cv2.imwrite(str(path), data)
    for i in range(2):  # a raw drive that the depth benchmark does not cover
        save(root / "raw" / "2011_09_28" / UNANNOTATED_DRIVE / "image_02" / "data" / frame_name(i), rgb_frame(i, "2"))
    return root


@pytest.fixture
def kitti_root(tmp_path):
    return make_kitti(tmp_path / "kitti")


def read16(path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "I;16", img.mode
        return np.asarray(img).astype(np.uint16)


def paths_of(manifest: dict) -> list[str]:
    seen = [f"{r}:{p}" for it in manifest["items"] for r, p in it["sources"].items()]
    return sorted(set(seen + [f"{r}:{p}" for rej in manifest["rejected"] for r, p in rej["paths"].items()]))


def test_rgb2depth_pairs_by_drive_camera_frame_in_official_splits(kitti_root, tmp_path, cli):
    out = tmp_path / "out"
    result = cli("prep", "kitti", kitti_root, out, "--size", "16", "--workers", "1", "--json")
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    assert manifest["counts"] == {"train": 7, "val": 7}
    assert manifest["layouts"] == ["ab"] and manifest["options"]["depth_encoding"] == "color"
    keys = {it["key"] for it in manifest["items"]}
    assert f"{DRIVES['train']}_image_02_0000000001" in keys
    assert f"{DRIVES['train']}_image_03_0000000002" not in keys  # corrupt depth
    item = next(it for it in manifest["items"] if it["key"] == f"{DRIVES['val']}_image_03_0000000004")
    assert item["split"] == "val"
    assert item["sources"] == {
        "rgb": f"{DATE}/{DRIVES['val']}/image_03/data/0000000004.png",
        "groundtruth": f"val/{DRIVES['val']}/proj_depth/groundtruth/image_03/0000000004.png",
    }
    assert load(out / item["outputs"][0]["path"]).shape == (16, 32, 3)
    reasons = {path: r["reason"] for r in manifest["rejected"] for path in r["paths"].values()}
    first = f"{DATE}/{DRIVES['train']}/image_02/data/0000000000.png"
    assert reasons[first] == "no annotated depth: KITTI leaves the first and last frames of each drive unannotated"
    assert reasons[f"2011_09_28/{UNANNOTATED_DRIVE}/image_02/data/0000000001.png"].startswith(
        "no annotated depth: drive and camera not in data_depth_annotated"
    )
    assert reasons[f"train/{DRIVES['train']}/proj_depth/groundtruth/image_03/0000000002.png"].startswith(
        "groundtruth: corrupt image"
    )
    assert reasons[f"val/{DRIVES['val']}/proj_depth/groundtruth/image_02/0000000003.png"] == (
        "groundtruth: not a 16-bit single-channel depth PNG (mode L)"
    )
    assert result.json()["rejected_by_reason"] == {
        "no annotated depth": 10,
        "corrupt image": 1,
        "not 16-bit depth": 1,
    }
    # every RGB frame of cameras 2/3 and every groundtruth PNG is an item or a rejection; image_00 is not read
    rgb = [
        f"rgb:{p.relative_to(kitti_root / 'raw').as_posix()}" for p in (kitti_root / "raw").rglob("image_0[23]/data/*")
    ]
    gt = kitti_root / "data_depth_annotated"
    depth = [f"groundtruth:{p.relative_to(gt).as_posix()}" for p in gt.rglob("*.png")]
    assert paths_of(manifest) == sorted(rgb + depth)


def test_camera_choice_and_strict(kitti_root, tmp_path, cli):
    out = tmp_path / "out"
    assert cli("prep", "kitti", kitti_root, out, "--camera", "3", "--size", "16", "--workers", "1", "-q").code == 0
    manifest = read_manifest(out)
    assert all("_image_03_" in it["key"] for it in manifest["items"]) and len(manifest["items"]) == 7
    again = cli("prep", "kitti", kitti_root, out, "--camera", "3", "--size", "16", "--strict", "--json")
    assert again.code == 1 and again.json()["skipped"] == 7  # resumed; --strict: rejections fail the run


def crop_geometry(rgb: np.ndarray) -> tuple[int, bool]:
    """(left column in the source frame, mirrored) of a crop, read from its R = 5 * column pixels."""
    columns = rgb[0, :, 0].astype(int) // 5
    assert (rgb[:, :, 0] == rgb[:1, :, 0]).all()  # full height: every row is the same source columns
    step = np.diff(columns)
    assert (step == 1).all() or (step == -1).all()
    return int(columns.min()), bool(step[0] < 0)


def test_random_full_height_crops_are_aligned_seeded_and_reproducible(kitti_root, tmp_path, cli):
    args = ["--camera", "2", "--crops-per-image", "3", "--crop-width", "12", "--size", "12x16", "--flip"]
    args += ["--depth-encoding", "gray16", "--validity-mask"]
    out = tmp_path / "out"
    assert cli("prep", "kitti", kitti_root, out, *args, "--workers", "1", "-q").code == 0
    manifest = read_manifest(out)
    assert manifest["layouts"] == ["split"]
    assert len(manifest["items"]) == 3 * 7
    geometry = {}
    for item in manifest["items"]:
        split, key = item["split"], item["key"]
        frame = int(key.split("_c")[0][-10:])
        rgb, depth = load(out / split / "A" / f"{key}.png"), read16(out / split / "B" / f"{key}.png")
        assert rgb.shape == (16, 12, 3) and depth.shape == (16, 12)
        left, mirrored = crop_geometry(rgb)
        geometry[key] = (left, mirrored)
        expected = groundtruth(frame)[:, left : left + 12]
        expected = expected[:, ::-1] if mirrored else expected
        assert np.array_equal(depth, expected)  # same window and flip as the RGB, metres x256 exactly
        valid = np.asarray(Image.open(out / split / "B_valid" / f"{key}.png"))
        assert np.array_equal(valid, np.where(expected > 0, 255, 0))
    assert {k.rsplit("_c", 1)[1] for k in geometry} == {"0", "1", "2"}
    assert len({left for left, _ in geometry.values()}) > 3  # positions vary across windows and frames
    assert {mirrored for _, mirrored in geometry.values()} == {True, False}
    # a re-run (in parallel) gives byte-identical files; another seed moves the windows
    again = tmp_path / "again"
    assert cli("prep", "kitti", kitti_root, again, *args, "--workers", "2", "-q").code == 0
    assert same_files(again) == same_files(manifest)
    other = tmp_path / "other"
    assert cli("prep", "kitti", kitti_root, other, *args, "--seed", "1", "--workers", "1", "-q").code == 0
    assert [it["outputs"] for it in same_files(other)] != [it["outputs"] for it in same_files(manifest)]


def test_sparse2dense_gray16_round_trips_metres(kitti_root, tmp_path, cli):
    out = tmp_path / "out"
    args = ["--task", "sparse2dense", "--depth-encoding", "gray16", "--crop", "none", "--size", f"{W}x{H}"]
    result = cli("prep", "kitti", kitti_root, out, *args, "--workers", "1", "--json")
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    assert len(manifest["items"]) == 14 and manifest["options"]["depth_scale"] == 256
    item = next(it for it in manifest["items"] if it["key"] == f"{DRIVES['train']}_image_02_0000000003")
    assert item["sources"]["velodyne_raw"] == f"train/{DRIVES['train']}/proj_depth/velodyne_raw/image_02/0000000003.png"
    sparse, dense = read16(out / "train/A" / f"{item['key']}.png"), read16(out / "train/B" / f"{item['key']}.png")
    assert np.array_equal(sparse, velodyne(3)) and np.array_equal(dense, groundtruth(3))
    coding = DepthCoding("gray16", 80, 256)
    metres = coding.decode(dense)
    assert np.array_equal(metres, groundtruth(3) / np.float32(256))  # decodes back to the same metres
    assert (metres[:4] == 0).all()  # no measurement stays 0
    reasons = {r["reason"] for r in manifest["rejected"]}
    assert "not 16-bit depth" in result.json()["rejected_by_reason"]
    assert reasons & {"no matching velodyne_raw frame", "no annotated depth"} == set()


def test_color_map_is_monotonic_and_invalid_stays_reserved():
    lab = cv2.cvtColor(COLORMAP[None].astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[0]
    assert (np.diff(lab[:, 0]) > 0).all()  # lightness rises strictly with depth
    assert len({tuple(c) for c in COLORMAP}) == 256
    assert np.sqrt((COLORMAP.astype(float) ** 2).sum(1)).min() > 100  # black is far from every depth colour
    coding = DepthCoding("color", 80, 256)
    depth = np.linspace(0, 100, 2000, dtype=np.float32).reshape(40, 50)  # includes 0 (invalid) and > max
    image = coding.encode(depth)
    assert (image[0, 0] == 0).all() and (image.reshape(-1, 3)[1:] != 0).any(1).all()
    decoded = coding.decode(image)
    assert decoded[0, 0] == 0
    flat = decoded.ravel()[1:]
    assert (np.diff(flat) >= 0).all()  # monotonic
    assert np.abs(flat - np.minimum(depth.ravel()[1:], 80)).max() <= 80 / 255 / 2 + 1e-4
    gray = DepthCoding("gray8", 80, 256)
    assert gray.encode(depth)[0, 0, 0] == 0 and gray.encode(depth).reshape(-1, 3)[1:, 0].min() == 1


def far_with_holes(rng) -> np.ndarray:
    depth = np.full((H, W), 60.0, np.float32)
    depth[rng.random((H, W)) < 0.6] = 0
    return depth


@pytest.mark.parametrize("size", [(7, 5), (13, 9), (100, 40)])
def test_masked_resize_never_turns_holes_into_near_depth(size):
    depth = far_with_holes(np.random.default_rng(0))
    naive = cv2.resize(depth, size, interpolation=cv2.INTER_AREA if size[0] < W else cv2.INTER_LINEAR)
    assert ((naive > 0) & (naive < 59)).any()  # plain interpolation would invent near depth
    for mode in ("masked", "nearest"):
        resized = resize_depth(depth, size, mode)
        assert resized.shape == (size[1], size[0])
        valid = resized[resized > 0]
        assert valid.size and np.allclose(valid, 60, atol=1e-3)
        assert (resized == 0).any() or mode == "masked"


def test_resized_color_output_keeps_holes_reserved(tmp_path, cli):
    root = tmp_path / "kitti"
    drive = DRIVES["train"]
    depth = far_with_holes(np.random.default_rng(1))
    depth[:, : W // 2] = 0  # half the window has no measurement at all
    for i in range(3):
        save(root / "raw" / DATE / drive / "image_02" / "data" / frame_name(i), rgb_frame(i, "image_02"))
        path = root / "data_depth_annotated" / "train" / drive / "proj_depth/groundtruth/image_02" / frame_name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), np.rint(depth * 256).astype(np.uint16))
    out = tmp_path / "out"
    args = ["--crop", "none", "--size", "20x8", "--layout", "split", "--validity-mask", "--workers", "1", "-q"]
    assert cli("prep", "kitti", root, out, *args).code == 0
    key = f"{drive}_image_02_0000000001"
    image = load(out / "train" / "B" / f"{key}.png")
    metres = DepthCoding("color", 80, 256).decode(image)
    measured = metres > 0
    assert np.allclose(metres[measured], 60, atol=80 / 255)  # no near colour from holes
    assert (image[~measured] == 0).all() and (image[:, :10] == 0).all()  # holes stay black
    mask = np.asarray(Image.open(out / "train" / "B_valid" / f"{key}.png"))
    assert np.array_equal(mask > 0, measured)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--depth-encoding", "gray16", "--layout", "ab"], "--layout ab cannot hold"),
        (["--validity-mask", "--layout", "ab"], "needs --layout split"),
        (["--crops-per-image", "2", "--crop", "center"], "needs --crop random"),
        (["--crop", "none", "--crop-width", "8"], "keeps the whole frame"),
        (["--task", "sparse2dense", "--format", "jpg"], "always written as PNG"),
        (["--depth-encoding", "gray16", "--max-depth", "300"], "at most 255.996"),
        (["--task", "depth2rgb"], "choose from rgb2depth, sparse2dense"),
        (["--camera", "1"], "choose from 2, 3, both"),
        (["--rgb-root", "nowhere"], "expected raw RGB drives"),
    ],
)
def test_bad_options_are_one_line_usage_errors(kitti_root, tmp_path, cli, args, message):
    result = cli("prep", "kitti", kitti_root, tmp_path / "out", *args)
    assert result.code == 2 and message in result.err, result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


def test_missing_trees_name_what_is_expected(tmp_path, cli):
    (tmp_path / "kitti").mkdir()
    result = cli("prep", "kitti", tmp_path / "kitti", tmp_path / "out")
    assert result.code == 2
    assert "data_depth_annotated/{train,val}/<drive>/proj_depth/groundtruth/" in result.err
    assert "cvlibs.net" in result.err
    (tmp_path / "kitti" / "data_depth_annotated").mkdir()
    result = cli("prep", "kitti", tmp_path / "kitti", tmp_path / "out", "--task", "sparse2dense")
    assert result.code == 2 and "data_depth_velodyne" in result.err
